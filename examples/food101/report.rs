//! What a run leaves besides checkpoints: which data and weights it used, the test metrics,
//! the confusion matrix and the preprocessing a predictor needs.

use std::path::Path;

use grafter::history::EpochRecord;
use grafter::plot::confusion_svg;
use grafter::zoo::Weights;
use grafter::{FitOutcome, Metrics, Preprocess};
/// Which data and weights a run used, stated in its output and in `run.json`.
pub struct Run {
    pub data: String,
    pub backbone: String,
    /// Pretrained (and from where), or a random initialisation (and why).
    pub weights: Weights,
    pub preprocess: Preprocess,
}

/// `run.json`, `test_metrics.json`, `preprocess.json` and `confusion.svg` under `out`, each
/// written through a temporary file and a rename.
pub fn write(
    out: &Path,
    run: &Run,
    history: &[EpochRecord],
    test: &Metrics,
    class_names: &[String],
) -> Result<(), Box<dyn std::error::Error>> {
    let pretrained = matches!(run.weights, Weights::Pretrained(_));
    let best = history.iter().map(|r| r.valid.top1).fold(0.0, f64::max);
    let run_json = serde_json::json!({
        "data": run.data, "backbone": run.backbone, "weights": run.weights.to_string(),
        "pretrained": pretrained, "weights_provenance": run.weights,
        "epochs": history.len(), "best_valid_top1": best, "test": test,
    });
    for (name, text) in [
        ("run.json", serde_json::to_string_pretty(&run_json)?),
        ("test_metrics.json", serde_json::to_string_pretty(test)?),
        (
            "preprocess.json",
            serde_json::to_string_pretty(&run.preprocess)?,
        ),
        (
            "confusion.svg",
            confusion_svg(&test.confusion, class_names)?,
        ),
    ] {
        let (path, tmp) = (out.join(name), out.join(format!("{name}.tmp")));
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

/// The closing lines: data, weights, validation and test accuracy, files written.
pub fn print_summary<B, H>(out: &Path, run: &Run, outcome: &FitOutcome<B, H>, test: &Metrics) {
    let pct = |v: f64| format!("{:.1}%", 100.0 * v);
    println!("\n== food101 run summary ({})", out.display());
    println!(
        "backbone : {}\nweights  : {}\ndata     : {}",
        run.backbone, run.weights, run.data
    );
    if let Some(best) = &outcome.best {
        println!(
            "best validation epoch {}: monitored value {:.4}",
            best.epoch + 1,
            best.value
        );
    }
    let top5 = test
        .top5
        .map(|t| format!(", top-5 {}", pct(t)))
        .unwrap_or_default();
    let chance = pct(1.0 / test.per_class.len().max(1) as f64);
    println!(
        "test     : top-1 {}{top5} on {} images (chance {chance})",
        pct(test.top1),
        test.samples
    );
    if let Weights::Random { .. } = run.weights {
        println!(
            "           (RANDOMLY INITIALISED backbone: not representative of transfer learning)"
        );
    }
    println!(
        "files    : best.bpk, metrics.jsonl, curves.svg, class_report.json, top_losses.json, \
         confusion.svg, classes.json, preprocess.json, run.json, model.onnx (and lr_find.svg \
         with --lr auto, TensorBoard events with --tensorboard)"
    );
    println!(
        "predict  : cargo run --release --example predict -- --run {} IMAGE...",
        out.display()
    );
}
