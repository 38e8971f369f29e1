//! One writer per run folder: a second run on a folder another run is writing is refused with
//! `GrafterError::RunInUse` naming the folder and the holder, whether the first runs in this
//! process or in another; the folder is free again once the first ends — or is killed with
//! SIGKILL, which leaves no stale lock.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, Sender, channel};

use burn::tensor::Device;
use grafter::finetune::{Observer, StepInfo};
use grafter::prelude::*;
use grafter::{FitOutcome, GrafterError, LinearHead};

use crate::common::{TinyCnn, classifier, config, dataset};

const CHILD_DIR: &str = "GRAFTER_LOCK_CHILD_DIR";
const CHILD_TEST: &str = "run_lock::a_run_killed_with_sigkill_leaves_its_folder_free";

/// Two epochs of the tiny model in `dir`, watched by `observer`.
fn fit(
    dir: &Path,
    observer: impl Observer + 'static,
) -> grafter::Result<FitOutcome<TinyCnn, LinearHead>> {
    let device = Device::flex();
    FineTune::new(config(2), TrainAll)
        .out_dir(dir)
        .observer(observer)
        .fit(
            classifier(&device, 5, 0.0),
            &dataset(4, 1),
            &dataset(2, 2),
            &device,
        )
}

/// Holds the run at its first step of epoch 1 (epoch 0's checkpoint on disk): says so on
/// `started`, then waits for `release`.
struct Gate {
    started: Option<Sender<()>>,
    release: Receiver<()>,
}

impl Observer for Gate {
    fn on_step(&mut self, step: &StepInfo) {
        if step.epoch == 1
            && let Some(started) = self.started.take()
        {
            started.send(()).unwrap();
            let _ = self.release.recv();
        }
    }
}

/// Does nothing: the run it watches is not held.
struct Quiet;
impl Observer for Quiet {}

fn refused(result: grafter::Result<FitOutcome<TinyCnn, LinearHead>>, dir: &Path) -> Option<String> {
    match result {
        Err(GrafterError::RunInUse { path, holder }) => {
            assert_eq!(path, dir);
            holder
        }
        Err(e) => panic!("expected RunInUse, got: {e}"),
        Ok(_) => panic!("a second run wrote a folder another run holds"),
    }
}

#[test]
fn a_second_run_in_one_process_is_refused_until_the_first_ends() {
    let _rng = crate::common::rng_lock();
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("run-001");
    let (started_tx, started) = channel();
    let (release, release_rx) = channel();
    let first = {
        let dir = dir.clone();
        std::thread::spawn(move || {
            fit(
                &dir,
                Gate {
                    started: Some(started_tx),
                    release: release_rx,
                },
            )
        })
    };
    started.recv().unwrap();
    let holder = refused(fit(&dir, Quiet), &dir);
    let pid = format!("pid {}", std::process::id());
    assert!(holder.is_some_and(|h| h.starts_with(&pid)));
    // resuming is writing too: the folder reads as a resumable run, but is refused
    let device = Device::flex();
    let resumed = FineTune::resume(&dir).unwrap().progress(false).fit(
        classifier(&device, 5, 0.0),
        &dataset(4, 1),
        &dataset(2, 2),
        &device,
    );
    refused(resumed, &dir);
    release.send(()).unwrap();
    let done = first.join().unwrap().unwrap();
    assert_eq!(done.history.len(), 2);
    // the first run ended: its folder is free, and resumes (nothing left to train)
    let again = FineTune::resume(&dir)
        .unwrap()
        .progress(false)
        .fit(
            classifier(&device, 5, 0.0),
            &dataset(4, 1),
            &dataset(2, 2),
            &device,
        )
        .unwrap();
    assert_eq!(again.history, done.history);
}

/// Prints `HOLDING` at its first step, then sleeps until killed.
struct Hold;
impl Observer for Hold {
    fn on_step(&mut self, _: &StepInfo) {
        println!("HOLDING");
        loop {
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    }
}

/// A child process killed when the test ends, passed or failed (it would sleep forever).
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_run_killed_with_sigkill_leaves_its_folder_free() {
    if let Some(dir) = std::env::var_os(CHILD_DIR) {
        let _ = fit(Path::new(&dir), Hold);
        return;
    }
    let _rng = crate::common::rng_lock();
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("run-001");
    let mut child = KillOnDrop(
        Command::new(std::env::current_exe().unwrap())
            .args([CHILD_TEST, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR, &dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let child = &mut child.0;
    // libtest prints the test's name before it, on the same line
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(
        lines.any(|l| l.is_ok_and(|l| l.ends_with("HOLDING"))),
        "the child never reached its first step"
    );
    let holder = refused(fit(&dir, Quiet), &dir).unwrap_or_default();
    assert!(
        holder.starts_with(&format!("pid {} on ", child.id())),
        "{holder}"
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // the lock died with its process: the folder (config.json, no checkpoint) starts afresh
    let done = fit(&dir, Quiet).unwrap();
    assert_eq!(done.history.len(), 2);
}
