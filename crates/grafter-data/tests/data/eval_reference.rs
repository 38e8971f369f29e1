//! The evaluation transform against PIL + numpy (tests/fixtures/make_image_fixtures.py):
//! within one 8-bit level per pixel, before and after normalisation.
//!
//! Both sides resample with PIL's convolution bilinear filter (support widened by the
//! downscaling factor, i.e. antialiased, as torchvision's `Resize` on PIL images);
//! `fast_image_resize` implements the same filter, so the only differences are rounding of
//! fixed-point coefficients (at most one level). OpenCV-style 2×2 bilinear would not hold
//! the bound when downscaling.

use std::path::{Path, PathBuf};

use grafter_core::{ChannelOrder, Preprocess};
use grafter_data::{DecodeLimits, ResizeEngine, Transform, decode};

/// `$GRAFTER_FIXTURES/images`, or `None` with a SKIPPED message (a failure with
/// `GRAFTER_REQUIRE_FIXTURES=1`).
fn fixtures() -> Option<PathBuf> {
    let root = std::env::var_os("GRAFTER_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../.cache/fixtures"
            ))
        });
    let dir = root.join("images");
    if dir.join("meta.json").is_file() {
        return Some(dir);
    }
    let msg = format!(
        "image fixtures not found in {}; make them with `python3 tests/fixtures/make_image_fixtures.py` (needs pillow, numpy)",
        dir.display()
    );
    crate::skip::skip_unless_required("GRAFTER_REQUIRE_FIXTURES", &msg);
    None
}

/// Reads a little-endian `.npy` of `u1` or `f4` values: (values as f32, shape).
fn npy(path: &Path) -> (Vec<f32>, Vec<usize>) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..6], b"\x93NUMPY", "{}", path.display());
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        _ => (
            u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize,
            12,
        ),
    };
    let header = std::str::from_utf8(&bytes[start..start + header_len]).unwrap();
    assert!(header.contains("'fortran_order': False"), "{header}");
    let shape_text = header
        .split("'shape': (")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap();
    let shape: Vec<usize> = shape_text
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let data = &bytes[start + header_len..];
    let values = if header.contains("'<f4'") {
        data.chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect()
    } else if header.contains("'|u1'") {
        data.iter().map(|&b| b as f32).collect()
    } else {
        panic!("unsupported dtype in {header}")
    };
    (values, shape)
}

fn preprocess(case: &serde_json::Value) -> Preprocess {
    let f3 = |k: &str| {
        let v: Vec<f32> = case[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        [v[0], v[1], v[2]]
    };
    let size: Vec<usize> = case["input_size"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    Preprocess {
        mean: f3("mean"),
        std: f3("std"),
        pixel_scale: case["pixel_scale"].as_f64().unwrap() as f32,
        channel_order: if case["bgr"].as_bool().unwrap() {
            ChannelOrder::Bgr
        } else {
            ChannelOrder::Rgb
        },
        input_size: [size[0], size[1]],
        crop_ratio: case["crop_ratio"].as_f64().unwrap() as f32,
        interpolation: grafter_core::Interpolation::Bilinear,
    }
}

#[test]
fn eval_transform_matches_pil_within_one_level() {
    let Some(dir) = fixtures() else { return };
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
    let cases = meta["cases"].as_array().unwrap();
    assert!(cases.len() >= 5);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let p = preprocess(case);
        assert_eq!(
            p.resize_size() as u64,
            case["resize_size"].as_u64().unwrap(),
            "{name}"
        );
        let img = decode::decode_file(&dir.join(format!("{name}.png")), &DecodeLimits::default())
            .unwrap();
        let (crop, crop_shape) = npy(&dir.join(format!("{name}.crop_u8.npy")));
        let (expected, shape) = npy(&dir.join(format!("{name}.expected.npy")));
        let [h, w] = p.input_size;
        assert_eq!(shape, vec![3, h, w], "{name}");
        assert_eq!(crop_shape, vec![h, w, 3], "{name}");

        for engine in [ResizeEngine::FastImageResize, ResizeEngine::ImageCrate] {
            let t = Transform::new(p.clone()).with_engine(engine);
            let ours = t.eval_rgb8(&img);
            let level = ours
                .as_raw()
                .iter()
                .zip(&crop)
                .map(|(a, b)| (*a as f32 - b).abs())
                .fold(0f32, f32::max);
            eprintln!("{name} ({engine:?}): max difference {level} level(s)");
            if engine == ResizeEngine::FastImageResize {
                assert!(level <= 1.0, "{name}: {level} levels off PIL");
                let x = t.eval(&img);
                for c in 0..3 {
                    let bound = p.pixel_scale / 255.0 / p.std[c] + 1e-4;
                    let plane = &x[c * h * w..(c + 1) * h * w];
                    let want = &expected[c * h * w..(c + 1) * h * w];
                    let err = plane
                        .iter()
                        .zip(want)
                        .map(|(a, b)| (a - b).abs())
                        .fold(0f32, f32::max);
                    assert!(err <= bound, "{name} channel {c}: {err} > {bound}");
                }
            }
        }
    }
}
