//! kill −9 at every file operation of a run: the run, in a child process (this test binary
//! re-executed), kills itself with SIGKILL at one chosen operation of its [`FileWriter`] —
//! before the N-th write, halfway through it (half the bytes written, not synced), after it
//! (written and synced, not yet renamed), before the N-th rename, before the N-th directory
//! sync (the rename done, not yet durable) or before the N-th removal of an old checkpoint —
//! and this process then finishes the run. Every operation of an uninterrupted run is a kill
//! point, so each crash window of every file the loop writes is hit once.
//!
//! Afterwards the folder must equal the uninterrupted run's, file for file and byte for byte
//! (the lock file, which records its holder's pid, aside), with no temporary file left and no
//! clean-up by hand; the epochs the crash cost are counted. `GRAFTER_SOAK_POINT_EPOCHS` sets
//! the run's length (default 3) and `GRAFTER_SOAK_POINT_EVERY` keeps every k-th kill point
//! (default 1: all of them).

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use burn::tensor::Device;
use grafter::checkpoint::{FileWriter, FsWriter, sync_dir};
use grafter::prelude::*;
use grafter::{FitOutcome, LinearHead};

use crate::common::{TinyCnn, classifier, config, dataset, params};

const CHILD_DIR: &str = "GRAFTER_SOAK_POINT_DIR";
const CHILD_POINT: &str = "GRAFTER_SOAK_POINT";
const TEST: &str =
    "soak_points::a_run_killed_at_each_file_operation_resumes_to_the_uninterrupted_folder";

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A file operation of the run, as the writer sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    Write,
    Rename,
    Sync,
    Remove,
}

/// Where within an operation the process dies: only writes have a middle and an after.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Before,
    Mid,
    After,
}

impl Phase {
    fn parse(s: &str) -> Phase {
        match s {
            "before" => Phase::Before,
            "mid" => Phase::Mid,
            _ => Phase::After,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Phase::Before => "before",
            Phase::Mid => "mid",
            Phase::After => "after",
        }
    }
}

/// Writes through [`FsWriter`], recording every operation, and kills the process with SIGKILL
/// at `kill` (the 1-based index of an operation, and the phase).
#[derive(Debug, Default)]
struct KillingWriter {
    ops: Mutex<Vec<(Op, PathBuf)>>,
    kill: Option<(usize, Phase)>,
}

impl KillingWriter {
    fn killing_at(index: usize, phase: Phase) -> Self {
        Self {
            kill: Some((index, phase)),
            ..Self::default()
        }
    }

    /// Records the operation; returns its index.
    fn record(&self, op: Op, path: &Path) -> usize {
        let mut ops = self.ops.lock().unwrap();
        ops.push((op, path.to_path_buf()));
        ops.len()
    }

    fn dies_at(&self, index: usize, phase: Phase) -> bool {
        self.kill == Some((index, phase))
    }

    fn die_if(&self, index: usize, phase: Phase, path: &Path) {
        if self.dies_at(index, phase) {
            die(index, phase, path);
        }
    }
}

/// SIGKILL to this process: no destructor, no flush, no unwinding — as `kill -9` from outside.
fn die(index: usize, phase: Phase, path: &Path) -> ! {
    eprintln!("KILLED AT {index} {} {}", phase.name(), path.display());
    // SAFETY: kill(2) on this process's own id; nothing is touched afterwards.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    loop {
        std::thread::park();
    }
}

impl FileWriter for KillingWriter {
    fn write(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let n = self.record(Op::Write, path);
        self.die_if(n, Phase::Before, path);
        if self.dies_at(n, Phase::Mid) {
            std::fs::write(path, &bytes[..bytes.len() / 2])?;
            die(n, Phase::Mid, path);
        }
        FsWriter.write(path, bytes)?;
        self.die_if(n, Phase::After, path);
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let n = self.record(Op::Rename, to);
        self.die_if(n, Phase::Before, to);
        std::fs::rename(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let n = self.record(Op::Sync, dir);
        self.die_if(n, Phase::Before, dir);
        sync_dir(dir)
    }

    fn remove_dir(&self, dir: &Path) -> io::Result<()> {
        let n = self.record(Op::Remove, dir);
        self.die_if(n, Phase::Before, dir);
        std::fs::remove_dir_all(dir)
    }
}

/// The run: dropout, a phase change, EMA, accumulation and two kept checkpoints (so old ones
/// are pruned), through `writer`; resumed when the folder holds a checkpoint.
fn run(
    dir: &Path,
    writer: Arc<dyn FileWriter>,
) -> grafter::Result<FitOutcome<TinyCnn, LinearHead>> {
    let device = Device::flex();
    let epochs = env_or("GRAFTER_SOAK_POINT_EPOCHS", 3);
    let fine_tune = if dir.join("latest").exists() {
        FineTune::resume(dir)?.progress(false)
    } else {
        let cfg = config(epochs)
            .with_accumulate_steps(2)
            .with_ema(Some(grafter::Ema::new(0.9)))
            .with_keep_checkpoints(2);
        FineTune::new(cfg, TwoPhase::new(1, 10.0)).out_dir(dir)
    };
    fine_tune.writer(writer).fit(
        classifier(&device, 31, 0.3),
        &dataset(16, 1),
        &dataset(4, 2),
        &device,
    )
}

/// Every file under `dir` but the lock, by path relative to `dir`: its bytes, or for a
/// burnpack record (`.bpk`) its tensors' names, types, shapes and bytes. Parameter ids are
/// left out: a fresh process draws new ones, so two equal runs write different ids (a resumed
/// run keeps the checkpoint's). The optimiser's state is keyed by them (`<id>.momentum…`):
/// its keys are renamed after the parameters of the checkpoint's `model.bpk`.
fn folder(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else if entry.file_name() != "run.lock" {
                let rel = path.strip_prefix(root).unwrap().to_path_buf();
                let content = if entry.file_name() == "optimizer.bpk" {
                    let names = record(&path.with_file_name("model.bpk"))
                        .into_iter()
                        .filter_map(|t| Some((t.id?.to_string(), t.name)))
                        .collect();
                    flatten(record(&path), &names)
                } else if path.extension().is_some_and(|e| e == "bpk") {
                    flatten(record(&path), &BTreeMap::new())
                } else {
                    std::fs::read(&path).unwrap()
                };
                out.insert(rel, content);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// One tensor of a burnpack record.
struct RecordTensor {
    name: String,
    id: Option<u64>,
    header: String,
    data: Vec<u8>,
}

fn record(path: &Path) -> Vec<RecordTensor> {
    let bytes = burn_pack::Bytes::from_bytes_vec(std::fs::read(path).unwrap());
    let reader = burn_pack::Reader::from_bytes(bytes).unwrap();
    let tensors = reader.into_tensors().unwrap().into_iter().map(|tensor| {
        let (name, dtype, shape, id, data) = tensor.into_parts().unwrap();
        RecordTensor {
            name,
            id,
            header: format!("{dtype:?} {shape:?}"),
            data: data.to_vec(),
        }
    });
    tensors.collect()
}

/// The tensors, ids left out, a leading `<id>.` in a name replaced by that parameter's name,
/// sorted by name, as one byte string.
fn flatten(tensors: Vec<RecordTensor>, names: &BTreeMap<String, String>) -> Vec<u8> {
    let mut named: Vec<(String, RecordTensor)> = tensors
        .into_iter()
        .map(|t| {
            let name = match t.name.split_once('.') {
                Some((id, rest)) if names.contains_key(id) => format!("{}.{rest}", names[id]),
                _ => t.name.clone(),
            };
            (name, t)
        })
        .collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = Vec::new();
    for (name, t) in named {
        out.extend(format!("{name} {}\n", t.header).into_bytes());
        out.extend_from_slice(&t.data);
    }
    out
}

/// Bytes in temporaries (`.NAME.tmp-PID` files and folders) under `dir`.
fn temporary_bytes(dir: &Path, inside_temporary: bool) -> u64 {
    let mut bytes = 0;
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let temporary = inside_temporary || entry.file_name().to_string_lossy().contains(".tmp-");
        if entry.path().is_dir() {
            bytes += temporary_bytes(&entry.path(), temporary);
        } else if temporary {
            bytes += entry.metadata().unwrap().len();
        }
    }
    bytes
}

/// The epoch an operation belongs to: the checkpoint it writes, or the latest checkpoint
/// written before it (its logs, `latest`, `best.bpk`); 0 before the first.
fn epochs_trained(ops: &[(Op, PathBuf)], index: usize) -> usize {
    ops[..index]
        .iter()
        .rev()
        .find_map(|(_, p)| {
            p.components().find_map(|c| {
                let c = c.as_os_str().to_string_lossy();
                let c = c.trim_start_matches('.');
                c.strip_prefix("epoch-")
                    .map(|rest| rest[..4].parse::<usize>().unwrap())
            })
        })
        .unwrap_or(0)
}

/// The epochs the checkpoint `latest` names hold (0 without one).
fn epochs_saved(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("latest"))
        .ok()
        .and_then(|n| n.trim().strip_prefix("epoch-").map(|e| e.parse().unwrap()))
        .unwrap_or(0)
}

#[test]
fn a_run_killed_at_each_file_operation_resumes_to_the_uninterrupted_folder() {
    if let Some(dir) = std::env::var_os(CHILD_DIR) {
        let point = std::env::var(CHILD_POINT).unwrap();
        let (index, phase) = point.split_once(':').unwrap();
        let writer = KillingWriter::killing_at(index.parse().unwrap(), Phase::parse(phase));
        run(Path::new(&dir), Arc::new(writer)).unwrap();
        panic!("the run passed kill point {point} without dying");
    }
    let _rng = crate::common::rng_lock();
    let started = Instant::now();
    let straight_dir = tempfile::tempdir().unwrap();
    let recorder = Arc::new(KillingWriter::default());
    let straight = run(straight_dir.path(), recorder.clone()).unwrap();
    let in_process = started.elapsed();
    let ops = recorder.ops.lock().unwrap().clone();
    let expected = folder(straight_dir.path());

    let every = env_or("GRAFTER_SOAK_POINT_EVERY", 1).max(1);
    let points: Vec<(usize, Op, Phase)> = ops
        .iter()
        .enumerate()
        .flat_map(|(i, (op, _))| {
            let phases: &[Phase] = match op {
                Op::Write => &[Phase::Before, Phase::Mid, Phase::After],
                _ => &[Phase::Before],
            };
            phases.iter().map(move |&ph| (i + 1, *op, ph))
        })
        .step_by(every)
        .collect();

    let exe = std::env::current_exe().unwrap();
    let soak = Instant::now();
    let mut by_kind: BTreeMap<(Op, Phase), usize> = BTreeMap::new();
    let mut redone: BTreeMap<usize, usize> = BTreeMap::new();
    let mut left_behind = 0u64;
    for &(index, op, phase) in &points {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(&exe)
            .args([TEST, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR, dir.path())
            .env(CHILD_POINT, format!("{index}:{}", phase.name()))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let killed = format!("KILLED AT {index} {} ", phase.name());
        assert!(
            !out.status.success() && stderr.contains(&killed),
            "kill point {index} ({op:?} {phase:?} {}) was not reached: {}\n{stderr}",
            ops[index - 1].1.display(),
            out.status
        );
        let saved = epochs_saved(dir.path());
        let soaked = run(dir.path(), Arc::new(FsWriter)).unwrap_or_else(|e| {
            panic!("resume after a kill at {index} ({op:?} {phase:?}) failed: {e}")
        });
        let at = format!("kill at operation {index} ({op:?} {phase:?})");
        assert_eq!(soaked.history, straight.history, "{at}");
        assert_eq!(params(&soaked.model), params(&straight.model), "{at}");
        let left = temporary_bytes(dir.path(), false);
        left_behind += left;
        assert_eq!(left, 0, "{at}: temporary files left behind");
        let got = folder(dir.path());
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            expected.keys().collect::<Vec<_>>(),
            "{at}: the folder's files"
        );
        for (path, bytes) in &expected {
            if got[path] != *bytes {
                let names = |b: &[u8]| {
                    String::from_utf8_lossy(b)
                        .lines()
                        .filter(|l| l.contains("F32") || l.contains("I64"))
                        .map(|l| l.chars().filter(|c| !c.is_control()).collect::<String>())
                        .take(6)
                        .collect::<Vec<_>>()
                };
                panic!(
                    "{at}: {} differs\n{:?}\n{:?}",
                    path.display(),
                    names(&got[path]),
                    names(bytes)
                );
            }
        }
        *by_kind.entry((op, phase)).or_default() += 1;
        *redone
            .entry(epochs_trained(&ops, index).saturating_sub(saved))
            .or_default() += 1;
    }
    println!(
        "SOAK POINTS {} kills at {} file operations of one run ({} epochs, {:.2} s in process), \
         all resumed bit for bit in {:.1} s; by operation: {by_kind:?}; epochs redone per \
         crash: {redone:?}; temporary bytes left: {left_behind}",
        points.len(),
        ops.len(),
        straight.history.len(),
        in_process.as_secs_f64(),
        soak.elapsed().as_secs_f64()
    );
}
