//! kill −9 soak: a run in a child process (this test binary re-executed) is killed with SIGKILL
//! at random moments — mid-step, mid-evaluation, mid-checkpoint — and restarted each time
//! (resuming when a checkpoint exists, starting afresh otherwise) until it finishes. The run
//! folder it leaves must equal an uninterrupted run's: the same weights bit for bit and the
//! same `metrics.jsonl`, byte for byte.
//!
//! `GRAFTER_SOAK_KILLS` kills (default 12; a longer soak by hand with e.g. 200), at delays drawn
//! from a seeded generator (`GRAFTER_SOAK_SEED`, default 1), so a failing soak replays.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use burn::tensor::Device;
use grafter::prelude::*;
use grafter::{FitOutcome, LinearHead};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::common::{TinyCnn, classifier, config, dataset, params};

const CHILD_DIR: &str = "GRAFTER_SOAK_DIR";
const TEST: &str = "soak::a_run_killed_at_random_moments_resumes_to_the_uninterrupted_result";

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The soaked run: dropout, a phase change, EMA and accumulation, ten epochs.
fn run(dir: &Path, resume: bool) -> grafter::Result<FitOutcome<TinyCnn, LinearHead>> {
    let device = Device::flex();
    let cfg = config(10)
        .with_accumulate_steps(2)
        .with_ema(Some(grafter::Ema::new(0.9)))
        .with_keep_checkpoints(2);
    let policy = || TwoPhase::new(2, 10.0);
    let fine_tune = if resume {
        FineTune::resume(dir)?.progress(false)
    } else {
        FineTune::new(cfg, policy()).out_dir(dir)
    };
    fine_tune.fit(
        classifier(&device, 31, 0.3),
        &dataset(16, 1),
        &dataset(4, 2),
        &device,
    )
}

/// In the child: resume when the folder holds a checkpoint, else start; exit 0 when done.
fn child(dir: &Path) {
    let outcome = match run(dir, true) {
        Ok(done) => done,
        Err(_) => run(dir, false).unwrap(),
    };
    println!("SOAK DONE after {} epochs", outcome.history.len());
}

#[test]
fn a_run_killed_at_random_moments_resumes_to_the_uninterrupted_result() {
    if let Some(dir) = std::env::var_os(CHILD_DIR) {
        child(Path::new(&dir));
        return;
    }
    let _rng = crate::common::rng_lock();
    let kills = env_or("GRAFTER_SOAK_KILLS", 20);
    let mut rng = StdRng::seed_from_u64(env_or("GRAFTER_SOAK_SEED", 1));
    let straight_dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let straight = run(straight_dir.path(), false).unwrap();
    let in_process = started.elapsed();

    let exe = std::env::current_exe().unwrap();
    let stderr_path = straight_dir.path().join("child-stderr.txt");
    let spawn = |dir: &Path| {
        Command::new(&exe)
            .args([TEST, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR, dir)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap()
    };
    // the kill window: one uninterrupted child, start-up included
    let scratch = tempfile::tempdir().unwrap();
    let started = Instant::now();
    assert!(spawn(scratch.path()).wait().unwrap().success());
    let run_time = started.elapsed();

    let log = |d: &Path| std::fs::read_to_string(d.join("metrics.jsonl")).unwrap();
    let epochs_done = |d: &Path| {
        std::fs::read_to_string(d.join("metrics.jsonl")).map_or(0, |l| l.lines().count())
    };
    let mut killed_at = vec![0usize; 11];
    let (mut killed, mut starts, mut rounds) = (0, 0, 0);
    let soak = Instant::now();
    // rounds: a run folder restarted until its run finishes, then checked; a fresh folder
    // while kills are left
    while killed < kills {
        rounds += 1;
        let dir = tempfile::tempdir().unwrap();
        loop {
            starts += 1;
            assert!(starts < 10 * kills + 50, "the run never finished");
            let mut child = spawn(dir.path());
            // kill somewhere within one uninterrupted run's time (or after it finished)
            let ms = rng.random_range(0..=run_time.as_millis().max(1) as u64);
            let deadline = Instant::now() + Duration::from_millis(ms);
            let status = loop {
                if let Some(status) = child.try_wait().unwrap() {
                    break Some(status);
                }
                if Instant::now() >= deadline {
                    child.kill().unwrap(); // SIGKILL
                    child.wait().unwrap();
                    break None;
                }
                std::thread::sleep(Duration::from_millis(1));
            };
            match status {
                None => {
                    killed += 1;
                    killed_at[epochs_done(dir.path()).min(10)] += 1;
                }
                Some(s) if s.success() => break,
                Some(s) => {
                    let err = std::fs::read_to_string(&stderr_path).unwrap_or_default();
                    panic!("after {killed} kills the restarted run failed ({s}):\n{err}");
                }
            }
        }
        let soaked = run(dir.path(), true).unwrap();
        assert_eq!(soaked.history, straight.history, "round {rounds}");
        assert_eq!(
            params(&soaked.model),
            params(&straight.model),
            "round {rounds}"
        );
        assert_eq!(log(dir.path()), log(straight_dir.path()), "round {rounds}");
    }
    println!(
        "SOAK {killed} kills in {rounds} runs ({starts} starts), {:.1} s (one run: {:.2} s in a child, {:.2} s in process); kills by epochs already done: {killed_at:?}",
        soak.elapsed().as_secs_f64(),
        run_time.as_secs_f64(),
        in_process.as_secs_f64()
    );
}
