//! The fuzz harness shared by the test binaries that fuzz a reader (crates/grafter-data/tests/data/fuzz.rs,
//! tests/onnx_backbone/fuzz.rs).
//!
//! Each target runs in a child process — the test binary re-executed with
//! `GRAFTER_FUZZ_TARGET` set — under an address-space limit (`prlimit --as`, 4 GiB) and a
//! timeout, so that an abort (an allocation the limit refuses), a hang and a panic are all
//! seen and told apart. Case `k` of a target is a function of `(target, k)`: the report names
//! the case, and `GRAFTER_FUZZ_FIRST=k GRAFTER_FUZZ_CASES=1` replays it alone. The budget is
//! `GRAFTER_FUZZ_CASES` cases per target (default: the target's own, sized for CI); a longer
//! run by hand with e.g. `GRAFTER_FUZZ_CASES=100000` (and `GRAFTER_FUZZ_TIMEOUT_SECS` for a
//! target slower than 10 cases a second).
//!
//! A case passes when the reader returns, with a value or a typed error.
//!
//! **Corpus.** Before its mutated cases a target replays, unmutated, every file of
//! `tests/fixtures/corrupt/<target>/` — inputs that once crashed, hung or exhausted memory,
//! minimised — and mutates them as further seeds. `GRAFTER_FUZZ_SAVE=DIR` keeps each case's
//! input as `DIR/<target>/case-<k>.bin` while it runs (a panicking case's stays, as does the
//! one an abort or a timeout stopped at): the file to minimise and add to the corpus.

use std::io::{BufRead, BufReader};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};

pub const TARGET_ENV: &str = "GRAFTER_FUZZ_TARGET";
pub const ADDRESS_SPACE: u64 = 4 << 30;

/// One fuzz target: its seed inputs, and what it does with one mutated input (`dir` is a
/// scratch folder of the case).
pub struct Target {
    pub name: &'static str,
    pub seeds: fn(&Path) -> Vec<Vec<u8>>,
    /// Turns a seed into a case's input ([`mutate`]: byte-level; a target may know its format).
    pub mutate: fn(&[u8], &mut StdRng) -> Vec<u8>,
    pub run: fn(&[u8], &Path),
    /// Cases per run unless `GRAFTER_FUZZ_CASES` says otherwise.
    pub cases: usize,
}

fn cases(target: &Target) -> usize {
    std::env::var("GRAFTER_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(target.cases)
}

/// A few byte-level mutations: bit flips, boundary values, saturated multi-byte integers,
/// truncation, duplicated and inserted runs, swaps.
pub fn mutate(seed: &[u8], rng: &mut StdRng) -> Vec<u8> {
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
pub fn drive(target: Target, test_name: &str) -> Result<String, String> {
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
    // sized for ≥ 10 cases a second; a slow target run long by hand sets its own
    let timeout = std::env::var("GRAFTER_FUZZ_TIMEOUT_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(
            Duration::from_secs(60 + cases(&target) as u64 / 10),
            Duration::from_secs,
        );
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
            // what the cases came to, when the target says (`OUTCOME <word>` lines)
            let mut outcomes = std::collections::BTreeMap::<&str, usize>::new();
            for l in &lines {
                if let Some(word) = l.strip_prefix("OUTCOME ") {
                    *outcomes.entry(word).or_default() += 1;
                }
            }
            let outcomes = if outcomes.is_empty() {
                String::new()
            } else {
                format!("; outcomes {outcomes:?}")
            };
            println!("FUZZ {:<14} {done}{outcomes}", target.name);
            if panics.is_empty() {
                Ok(done.clone())
            } else {
                Err(format!(
                    "{}: {} cases panicked, the first: {} (replay a mutated case k with \
                     GRAFTER_FUZZ_FIRST=k GRAFTER_FUZZ_CASES=1)",
                    target.name,
                    panics.len(),
                    panics[0]
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
    let corpus = corpus(target.name);
    let mut seeds = (target.seeds)(scratch.path());
    seeds.extend(corpus.iter().map(|(_, bytes)| bytes.clone()));
    let save = std::env::var_os("GRAFTER_FUZZ_SAVE")
        .map(|dir| std::path::PathBuf::from(dir).join(target.name));
    if let Some(dir) = &save {
        std::fs::create_dir_all(dir).unwrap();
    }
    // a panic is counted and reported with where it happened, not printed by the default hook
    static WHERE: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());
    std::panic::set_hook(Box::new(|info| {
        if let (Some(l), Ok(mut w)) = (info.location(), WHERE.lock()) {
            *w = format!("{}:{}", l.file(), l.line());
            // a panic inside std or a dependency: also the project's innermost frame
            if !l.file().contains("crates/grafter") {
                let trace = std::backtrace::Backtrace::force_capture().to_string();
                if let Some(frame) = trace.lines().find(|f| f.contains("/crates/grafter")) {
                    w.push_str(&format!(" (from {})", frame.trim()));
                }
            }
        }
    }));
    let started = Instant::now();
    let (mut panics, mut slowest) = (0, (Duration::ZERO, String::new()));
    let n = cases(target);
    // the corpus as it is (once, not by a replay of one mutated case), then the mutated cases
    let replayed = if first == 0 { corpus.len() } else { 0 };
    let inputs = corpus[..replayed]
        .iter()
        .map(|(name, bytes)| (format!("corpus/{name}"), bytes.clone()))
        .chain((first..first + n).map(|k| {
            let mut rng = StdRng::seed_from_u64(k as u64 ^ 0x5EED_F022);
            (
                k.to_string(),
                (target.mutate)(&seeds[k % seeds.len()], &mut rng),
            )
        }));
    for (case, input) in inputs {
        println!("CASE {case}");
        let saved = save
            .as_ref()
            .map(|d| d.join(format!("case-{}.bin", case.replace('/', "-"))));
        if let Some(path) = &saved {
            std::fs::write(path, &input).unwrap();
        }
        let dir = scratch.path().join("case");
        std::fs::create_dir_all(&dir).unwrap();
        let t = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| (target.run)(&input, &dir)));
        if t.elapsed() > slowest.0 {
            slowest = (t.elapsed(), case.clone());
        }
        match outcome {
            Err(payload) => {
                panics += 1;
                let msg = payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                let at = WHERE.lock().map(|w| w.clone()).unwrap_or_default();
                println!("PANIC case {case} at {at}: {msg}");
            }
            Ok(()) => {
                if let Some(path) = &saved {
                    let _ = std::fs::remove_file(path);
                }
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "DONE {n} cases and {replayed} corpus files in {secs:.1} s ({:.0}/s), {panics} panics, slowest case {} ({:.1} ms), peak memory {}",
        (n + replayed) as f64 / secs.max(1e-9),
        slowest.1,
        slowest.0.as_secs_f64() * 1e3,
        peak_memory()
    );
}

/// The target's corpus: every file of the workspace's `tests/fixtures/corrupt/<target>/`, by
/// name.
pub fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let corrupt = crate::workspace::root().join("tests/fixtures/corrupt");
    assert!(corrupt.is_dir(), "no corpus folder {}", corrupt.display());
    let dir = corrupt.join(target);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_file())
        .map(|e| {
            let bytes = std::fs::read(e.path()).unwrap();
            (e.file_name().to_string_lossy().into_owned(), bytes)
        })
        .collect();
    files.sort();
    files
}

/// The child's peak resident memory over all its cases (Linux's `VmHWM`), seeds and test
/// binary included: what the worst case cost, below the address-space limit.
fn peak_memory() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let kb: u64 = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()?;
            Some(format!("{} MiB", kb / 1024))
        })
        .unwrap_or_else(|| "unknown (no /proc/self/status)".into())
}
