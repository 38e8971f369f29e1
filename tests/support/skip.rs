//! How a test ends when the machine lacks something it needs (reference fixtures, real data, a
//! GPU adapter): a failure where README's test script made that thing and says so through a
//! `GRAFTER_REQUIRE_*` switch, otherwise a `SKIPPED` line and a record the script counts.
//!
//! The harness swallows what a passing test prints, so a skip that only printed would look
//! like a pass. `tests/run.sh` sets `GRAFTER_SKIP_LOG` to a file; every skip appends one line
//! (`test name<TAB>reason`) there and the script ends with the count and the reasons.

use std::io::Write;

/// Fails the test with `reason` when the environment variable `require` is `1`; otherwise
/// prints `SKIPPED: reason` and records the skip in `$GRAFTER_SKIP_LOG`. The caller returns
/// early after it.
pub fn skip_unless_required(require: &str, reason: &str) {
    if std::env::var(require).is_ok_and(|v| v == "1") {
        panic!("{require}=1 but {reason}");
    }
    skip(reason);
}

/// Prints `SKIPPED: reason` and records the skip in `$GRAFTER_SKIP_LOG` (for what no switch
/// can require, such as a tool the operating system lacks).
pub fn skip(reason: &str) {
    eprintln!("SKIPPED: {reason}");
    let Some(log) = std::env::var_os("GRAFTER_SKIP_LOG") else {
        return;
    };
    let test = std::thread::current()
        .name()
        .unwrap_or("unnamed test")
        .to_string();
    let line = format!("{test}\t{}\n", reason.replace(['\n', '\t'], " "));
    // One write per line on a file opened for appending: lines from parallel tests interleave
    // whole.
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = written {
        panic!("cannot record a skip in {}: {e}", log.to_string_lossy());
    }
}
