//! Seeded mutation fuzzing of grafter-data's readers: image decoding (then the evaluation
//! transform), CSV/JSONL lists and feature-cache files.
//!
//! Each target runs in a child process — this test binary re-executed with
//! `GRAFTER_FUZZ_TARGET` set — under an address-space limit (`prlimit --as`, 4 GiB) and a
//! timeout, so that an abort (an allocation the limit refuses), a hang and a panic are all
//! seen and told apart. Case `k` of a target is a function of `(target, k)`: the report names
//! the case, and `GRAFTER_FUZZ_FIRST=k GRAFTER_FUZZ_CASES=1` replays it alone. The budget is
//! `GRAFTER_FUZZ_CASES` cases per target (default 3000: about a second each in CI); a longer run by hand
//! with e.g. `GRAFTER_FUZZ_CASES=100000`.
//!
//! A case passes when the reader returns, with a value or a typed error.

use std::io::{BufRead, BufReader};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use grafter_core::Preprocess;
use grafter_data::image::ImageFormat;
use grafter_data::{DecodeLimits, FeatureCache, ImageDataset, ListOptions, Transform, decode};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};

use crate::common::{picture, write};

const TARGET_ENV: &str = "GRAFTER_FUZZ_TARGET";
const ADDRESS_SPACE: u64 = 4 << 30;

/// One fuzz target: its seed inputs, and what it does with one mutated input (`dir` is a
/// scratch folder of the case).
struct Target {
    name: &'static str,
    seeds: fn(&Path) -> Vec<Vec<u8>>,
    run: fn(&[u8], &Path),
}

fn cases() -> usize {
    std::env::var("GRAFTER_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000)
}

/// A few byte-level mutations: bit flips, boundary values, saturated multi-byte integers,
/// truncation, duplicated and inserted runs, swaps.
fn mutate(seed: &[u8], rng: &mut StdRng) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..rng.random_range(1..=8) {
        if v.is_empty() {
            v.push(rng.random());
            continue;
        }
        let i = rng.random_range(0..v.len());
        match rng.random_range(0..7) {
            0 => v[i] ^= 1 << rng.random_range(0..8),
            1 => v[i] = *[0u8, 1, 0x7F, 0x80, 0xFF].choose(rng).unwrap_or(&0),
            2 => {
                let end = (i + 8).min(v.len());
                let fill = *[0u8, 0xFF].choose(rng).unwrap_or(&0);
                v[i..end].fill(fill);
            }
            3 => v.truncate(i),
            4 => {
                let len = rng.random_range(1..=16.min(v.len() - i));
                let run = v[i..i + len].to_vec();
                v.splice(i..i, run);
            }
            5 => {
                let extra: Vec<u8> = (0..rng.random_range(1..8)).map(|_| rng.random()).collect();
                v.splice(i..i, extra);
            }
            _ => {
                let j = rng.random_range(0..v.len());
                v.swap(i, j);
            }
        }
    }
    v
}

/// Parent: runs `target` in a child process; the summary line, or what went wrong (panics,
/// an abort, a timeout). Child (`GRAFTER_FUZZ_TARGET` = the target's name): runs the cases.
fn drive(target: Target, test_name: &str) -> Result<String, String> {
    if let Ok(running) = std::env::var(TARGET_ENV) {
        // a child runs its own target and nothing else
        if running == target.name {
            child(&target);
        }
        return Ok("child".into());
    }
    let exe = std::env::current_exe().unwrap();
    let mut cmd = if Command::new("prlimit").arg("--version").output().is_ok() {
        let mut c = Command::new("prlimit");
        c.arg(format!("--as={ADDRESS_SPACE}")).arg("--").arg(&exe);
        c
    } else {
        println!("prlimit not found: fuzzing without an address-space limit");
        Command::new(&exe)
    };
    cmd.args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env(TARGET_ENV, target.name)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    let timeout = Duration::from_secs(60 + cases() as u64 / 10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let lines = lines.join().unwrap();
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
    }
    let last_case = lines
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("CASE "))
        .unwrap_or("none");
    let panics: Vec<&String> = lines.iter().filter(|l| l.starts_with("PANIC")).collect();
    let done = lines.iter().find(|l| l.starts_with("DONE"));
    for l in panics.iter().take(10) {
        println!("{l}");
    }
    match (status, done) {
        (Some(s), Some(done)) if s.success() => {
            println!("FUZZ {:<14} {done}", target.name);
            if panics.is_empty() {
                Ok(done.clone())
            } else {
                Err(format!(
                    "{}: {} cases panicked (replay one with GRAFTER_FUZZ_FIRST=k GRAFTER_FUZZ_CASES=1)",
                    target.name,
                    panics.len()
                ))
            }
        }
        (Some(s), _) => Err(format!(
            "{}: the child died ({s}) at case {last_case}: an abort, or an allocation beyond {} GiB\n{stderr}",
            target.name,
            ADDRESS_SPACE >> 30
        )),
        (None, _) => Err(format!(
            "{}: timeout after {timeout:?} at case {last_case}",
            target.name
        )),
    }
}

fn child(target: &Target) {
    let first: usize = std::env::var("GRAFTER_FUZZ_FIRST")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let scratch = tempfile::tempdir().unwrap();
    let seeds = (target.seeds)(scratch.path());
    // a panic is counted, not printed by the default hook
    std::panic::set_hook(Box::new(|_| {}));
    let started = Instant::now();
    let (mut panics, mut slowest) = (0, (Duration::ZERO, 0));
    let n = cases();
    for k in first..first + n {
        println!("CASE {k}");
        let mut rng = StdRng::seed_from_u64(k as u64 ^ 0x5EED_F022);
        let seed = &seeds[k % seeds.len()];
        let input = mutate(seed, &mut rng);
        let dir = scratch.path().join(format!("case{k}"));
        std::fs::create_dir_all(&dir).unwrap();
        let t = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| (target.run)(&input, &dir)));
        slowest = slowest.max((t.elapsed(), k));
        if let Err(payload) = outcome {
            panics += 1;
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            println!("PANIC case {k}: {msg}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "DONE {n} cases in {secs:.1} s ({:.0}/s), {panics} panics, slowest case {} ({:.1} ms)",
        n as f64 / secs.max(1e-9),
        slowest.1,
        slowest.0.as_secs_f64() * 1e3
    );
}

fn image_seeds(dir: &Path) -> Vec<Vec<u8>> {
    let img = picture(16, 12, 3, 0);
    [
        ("a.png", ImageFormat::Png),
        ("a.jpg", ImageFormat::Jpeg),
        ("a.gif", ImageFormat::Gif),
        ("a.bmp", ImageFormat::Bmp),
        ("a.webp", ImageFormat::WebP),
    ]
    .into_iter()
    .map(|(name, format)| {
        let path = dir.join(name);
        write(&path, &img, format);
        std::fs::read(path).unwrap()
    })
    .collect()
}

fn decode_then_transform(input: &[u8], _dir: &Path) {
    let limits = DecodeLimits {
        max_pixels: 1 << 22,
        ..DecodeLimits::default()
    };
    if let Ok(img) = decode::decode_bytes(input, &limits) {
        let t = Transform::new(Preprocess::imagenet().with_input_size(32, 32));
        let x = t.eval(&img);
        assert_eq!(x.len(), 3 * 32 * 32);
    }
}

fn list_seeds(_dir: &Path) -> Vec<Vec<u8>> {
    vec![
        b"path,label\na.png,x\nsub/b.png,y\n".to_vec(),
        b"{\"path\":\"a.png\",\"label\":\"x\"}\n{\"path\":\"sub/b.png\",\"label\":\"y\"}\n"
            .to_vec(),
        b"path,labels\na.png,x;y\nsub/b.png,y\n".to_vec(),
    ]
}

fn read_list(input: &[u8], dir: &Path) {
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    let img = picture(8, 8, 1, 0);
    write(&dir.join("a.png"), &img, ImageFormat::Png);
    write(&dir.join("sub/b.png"), &img, ImageFormat::Png);
    for name in ["l.csv", "l.jsonl"] {
        let list = dir.join(name);
        std::fs::write(&list, input).unwrap();
        let read = if name.ends_with("csv") {
            ImageDataset::from_csv(&list, ListOptions::default())
        } else {
            ImageDataset::from_jsonl(&list, ListOptions::default())
        };
        if let Ok(ds) = read {
            // whatever a list says, its samples stay inside its folder
            for sample in ds.samples() {
                assert!(sample.path.starts_with(dir), "{}", sample.path.display());
            }
        }
    }
}

fn cache_seeds(_dir: &Path) -> Vec<Vec<u8>> {
    let header = r#"{"samples":2,"views":1,"feature_shape":[1,1,2],"num_classes":2,"precision":"F32","classes":[0,1],"multi_hot":null,"fingerprint":"fp"}"#;
    let mut bytes: Vec<u8> = (0..4).flat_map(|i| (i as f32).to_le_bytes()).collect();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&(header.len() as u64).to_le_bytes());
    bytes.extend_from_slice(b"GRFTFC01");
    vec![bytes]
}

fn open_cache(input: &[u8], dir: &Path) {
    let path = dir.join("f.cache");
    std::fs::write(&path, input).unwrap();
    if let Ok(cache) = FeatureCache::open(&path, "fp") {
        assert!(cache.views() >= 1);
    }
}

#[test]
fn fuzz_image_decoding_and_transform() {
    drive(
        Target {
            name: "decode",
            seeds: image_seeds,
            run: decode_then_transform,
        },
        "fuzz::fuzz_image_decoding_and_transform",
    )
    .unwrap();
}

#[test]
fn fuzz_csv_and_jsonl_lists() {
    drive(
        Target {
            name: "lists",
            seeds: list_seeds,
            run: read_list,
        },
        "fuzz::fuzz_csv_and_jsonl_lists",
    )
    .unwrap();
}

#[test]
fn fuzz_feature_cache_files() {
    drive(
        Target {
            name: "feature_cache",
            seeds: cache_seeds,
            run: open_cache,
        },
        "fuzz::fuzz_feature_cache_files",
    )
    .unwrap();
}

/// The harness itself: a panic is reported as one, an abort kills only the child and is
/// reported with its case.
#[test]
fn the_harness_tells_panics_and_aborts_apart() {
    fn panics_on_odd_first_byte(input: &[u8], _dir: &Path) {
        assert!(input.first().is_none_or(|b| b % 2 == 0), "odd");
    }
    fn aborts_on_a_zero(input: &[u8], _dir: &Path) {
        if input.contains(&0) {
            std::process::abort();
        }
    }
    let seeds = |_: &Path| vec![vec![1u8, 2, 3, 4, 5, 6, 7, 8]];
    let test = "fuzz::the_harness_tells_panics_and_aborts_apart";
    let panicking = drive(
        Target {
            name: "selftest_panic",
            seeds,
            run: panics_on_odd_first_byte,
        },
        test,
    );
    let aborting = drive(
        Target {
            name: "selftest_abort",
            seeds,
            run: aborts_on_a_zero,
        },
        test,
    );
    if std::env::var(TARGET_ENV).is_ok() {
        return;
    }
    assert!(
        panicking.as_ref().is_err_and(|e| e.contains("panicked")),
        "{panicking:?}"
    );
    assert!(
        aborting.as_ref().is_err_and(|e| e.contains("died")),
        "{aborting:?}"
    );
}
