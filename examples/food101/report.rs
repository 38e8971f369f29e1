//! What a run leaves behind besides checkpoints: which data and weights it used, the test
//! metrics, the confusion matrix, and the preprocessing a predictor needs.

use std::path::Path;

use grafter::history::EpochRecord;
use grafter::plot::confusion_svg;
use grafter::{FitOutcome, Metrics, Preprocess};
use serde::Serialize;

/// Which data and weights a run used, stated in its output and in `run.json`.
#[derive(Serialize)]
pub struct Provenance {
    pub data: String,
    pub weights: String,
    pub pretrained: bool,
    pub backbone: String,
}

#[derive(Serialize)]
struct RunJson<'a> {
    provenance: &'a Provenance,
    epochs: usize,
    best_valid_top1: f64,
    test: &'a Metrics,
}

/// Writes `path` through a temporary file and a rename: never half-written.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// `run.json`, `test_metrics.json`, `preprocess.json` and `confusion.svg` under `out`.
pub fn write(
    out: &Path,
    provenance: &Provenance,
    preprocess: &Preprocess,
    history: &[EpochRecord],
    test: &Metrics,
    class_names: &[String],
) -> Result<(), Box<dyn std::error::Error>> {
    let io = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
    let best = history.iter().map(|r| r.valid.top1).fold(0.0, f64::max);
    let run = RunJson {
        provenance,
        epochs: history.len(),
        best_valid_top1: best,
        test,
    };
    for (name, text) in [
        ("run.json", serde_json::to_string_pretty(&run)?),
        ("test_metrics.json", serde_json::to_string_pretty(test)?),
        ("preprocess.json", serde_json::to_string_pretty(preprocess)?),
        (
            "confusion.svg",
            confusion_svg(&test.confusion, class_names)?,
        ),
    ] {
        let path = out.join(name);
        write_atomic(&path, text.as_bytes()).map_err(|e| io(&path, e))?;
    }
    Ok(())
}

/// The closing lines: data, weights, validation and test accuracy, files written.
pub fn print_summary<B, H>(
    out: &Path,
    provenance: &Provenance,
    outcome: &FitOutcome<B, H>,
    test: &Metrics,
    onnx: &Path,
) {
    let pct = |v: f64| format!("{:.1}%", 100.0 * v);
    println!();
    println!("== food101 run summary ({})", out.display());
    println!("backbone : {}", provenance.backbone);
    println!("weights  : {}", provenance.weights);
    println!("data     : {}", provenance.data);
    if let Some(best) = &outcome.best {
        println!(
            "best validation epoch {}: monitored value {:.4}",
            best.epoch + 1,
            best.value
        );
    }
    let chance = 1.0 / test.per_class.len().max(1) as f64;
    println!(
        "test     : top-1 {}{} on {} images (chance {})",
        pct(test.top1),
        test.top5
            .map(|t| format!(", top-5 {}", pct(t)))
            .unwrap_or_default(),
        test.samples,
        pct(chance)
    );
    if !provenance.pretrained {
        println!(
            "           (RANDOMLY INITIALISED backbone: not representative of transfer learning)"
        );
    }
    println!(
        "files    : best.bpk, metrics.jsonl, curves.svg, confusion.svg, classes.json, \
         preprocess.json, run.json, {}",
        onnx.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    );
    println!(
        "predict  : cargo run --release --example predict -- --run {} IMAGE...",
        out.display()
    );
}
