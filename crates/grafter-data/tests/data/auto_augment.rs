//! grafter-data's `AugmentOp` against torchvision's `_apply_op` on PIL images, and its
//! magnitude tables against torchvision's `_augmentation_space`, on the fixtures of
//! `tests/fixtures/make_augment_fixtures.py`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use grafter_data::image::RgbImage;
use grafter_data::{AugmentOp, AutoAugment, DecodeLimits, decode};
use rand::SeedableRng;
use rand::rngs::StdRng;

/// `$GRAFTER_TORCH_FIXTURES/augment`, or `None` after a recorded skip.
fn fixtures() -> Option<PathBuf> {
    let dir = std::env::var_os("GRAFTER_TORCH_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../.cache/torch-fixtures"
            ))
        })
        .join("augment");
    if dir.join("meta.json").is_file() {
        return Some(dir);
    }
    let msg = format!(
        "augmentation fixtures not found in {}; make them with `tests/fixtures/make_augment_fixtures.py` (needs torchvision)",
        dir.display()
    );
    crate::skip::skip_unless_required("GRAFTER_REQUIRE_TORCH_FIXTURES", &msg);
    None
}

/// Per operation, over all its cases: the worst level difference and how many values differ
/// from torchvision (printed as a table before the test asks for none).
#[derive(Default, Debug)]
struct Diff {
    cases: usize,
    max_level: u8,
    differing: usize,
    values: usize,
}

#[test]
fn every_operation_matches_torchvision_on_pil() {
    let Some(dir) = fixtures() else { return };
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
    let mut images = BTreeMap::new();
    for name in meta["images"].as_object().unwrap().keys() {
        let img = decode::decode_file(&dir.join(format!("{name}.png")), &DecodeLimits::default())
            .unwrap();
        images.insert(name.clone(), img);
    }
    let mut diffs: BTreeMap<&str, Diff> = BTreeMap::new();
    let cases = meta["cases"].as_array().unwrap();
    for case in cases {
        let op = AugmentOp::from_name(case["op"].as_str().unwrap()).unwrap();
        let img = &images[case["image"].as_str().unwrap()];
        let ours = op.apply(img, case["magnitude"].as_f64().unwrap());
        let theirs = std::fs::read(dir.join(case["file"].as_str().unwrap())).unwrap();
        assert_eq!(ours.as_raw().len(), theirs.len(), "{case}");
        let d = diffs.entry(op.name()).or_default();
        d.cases += 1;
        for (a, b) in ours.as_raw().iter().zip(&theirs) {
            let level = a.abs_diff(*b);
            d.max_level = d.max_level.max(level);
            d.differing += usize::from(level > 0);
            d.values += 1;
        }
    }
    for (op, d) in &diffs {
        let share = d.differing as f64 / d.values as f64;
        println!(
            "AUGMENT {op:<12} {:>3} cases: max {} level(s), {:.3}% of values differ",
            d.cases,
            d.max_level,
            100.0 * share
        );
    }
    assert_eq!(
        diffs.len(),
        AugmentOp::ALL.len(),
        "every operation is covered"
    );
    for (op, d) in &diffs {
        assert_eq!(d.differing, 0, "{op} differs from torchvision: {d:?}");
    }
}

#[test]
fn magnitude_tables_match_torchvision() {
    let Some(dir) = fixtures() else { return };
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
    let bins = meta["bins"].as_u64().unwrap() as usize;
    for (name, size) in meta["images"].as_object().unwrap() {
        let (w, h) = (
            size["width"].as_u64().unwrap() as u32,
            size["height"].as_u64().unwrap() as u32,
        );
        for (policy, wide) in [("wide", true), ("rand", false)] {
            let table = meta["magnitudes"][name][policy].as_object().unwrap();
            assert_eq!(table.len(), AugmentOp::ALL.len());
            for (op_name, entry) in table {
                let op = AugmentOp::from_name(op_name).unwrap();
                assert_eq!(op.signed(), entry[1].as_bool().unwrap(), "{op_name}");
                for (bin, want) in entry[0].as_array().unwrap().iter().enumerate() {
                    let want = want.as_f64().unwrap();
                    let got = op.magnitude(bin, bins, w, h, wide);
                    assert!(
                        (got - want).abs() <= 1e-5 * want.abs().max(1.0),
                        "{policy} {op_name} bin {bin} on {w}x{h}: {got} vs torchvision {want}"
                    );
                }
            }
        }
    }
}

#[test]
fn a_policy_is_a_function_of_its_seed() {
    let img = RgbImage::from_fn(40, 30, |x, y| {
        image_pixel((x * 7 + y * 3) as u8, (x * y) as u8, (x + y * 5) as u8)
    });
    for policy in [
        AutoAugment::trivial_augment_wide(),
        AutoAugment::rand_augment(),
    ] {
        let run = |seed| policy.apply(&img, &mut StdRng::seed_from_u64(seed));
        assert_eq!(run(3), run(3), "{policy:?}");
        let distinct: std::collections::HashSet<Vec<u8>> =
            (0..16).map(|s| run(s).into_raw()).collect();
        assert!(
            distinct.len() > 4,
            "{policy:?}: {} distinct outputs",
            distinct.len()
        );
    }
}

fn image_pixel(r: u8, g: u8, b: u8) -> grafter_data::image::Rgb<u8> {
    grafter_data::image::Rgb([r, g, b])
}
