//! What a finished run leaves besides its checkpoints: which data and weights it used and its
//! test metrics (`run.json`, `test_metrics.json`, `confusion.svg`), the files a predictor
//! needs ([`save_for_prediction`]), and a closing summary for the terminal.
//!
//! ```no_run
//! # use grafter::{Backbone, FitOutcome, LinearHead, Metrics};
//! # fn demo(outcome: FitOutcome<grafter::zoo::AnyBackbone, LinearHead>, test: Metrics,
//! #         classes: grafter::data::ClassNames, weights: grafter::zoo::Weights)
//! #         -> Result<(), Box<dyn std::error::Error>> {
//! use grafter::run_report::RunReport;
//!
//! let report = RunReport {
//!     data: "my photos".into(),
//!     backbone: "resnet50".into(),
//!     weights,
//!     preprocess: outcome.model.backbone.preprocess(),
//! };
//! report.write("runs/photos", &outcome, &test, &classes)?;
//! println!("{}", report.summary("runs/photos", &outcome, &test));
//! # Ok(()) }
//! ```

use std::fmt::Write as _;
use std::path::Path;

use grafter_core::checkpoint::{FsWriter, write_atomic};
use grafter_core::plot::confusion_svg;
use grafter_core::{Backbone, FitOutcome, Head, Metrics, Preprocess};
use grafter_data::{ClassNames, DataError, save_for_prediction};
use grafter_onnx::{OnnxBackboneExport, OnnxHead};
use grafter_zoo::Weights;

/// Which data and weights a run used, stated in `run.json` and in the summary.
#[derive(Clone, Debug)]
pub struct RunReport {
    /// The data, in words (a path, "the demo set"…).
    pub data: String,
    /// The backbone's name (a zoo name or an ONNX file).
    pub backbone: String,
    /// Pretrained (and from where), or a random initialisation (and why).
    pub weights: Weights,
    /// The evaluation preprocessing the model was validated with.
    pub preprocess: Preprocess,
}

impl RunReport {
    /// Writes into `dir`: `run.json` (data, weights and their provenance, epochs, best
    /// validation top-1, test metrics), `test_metrics.json`, `confusion.svg`, and
    /// [`save_for_prediction`]'s `model.onnx`, `classes.json` and `preprocess.json`; every
    /// file through a temporary file and a rename.
    pub fn write<B, H>(
        &self,
        dir: impl AsRef<Path>,
        outcome: &FitOutcome<B, H>,
        test: &Metrics,
        classes: &ClassNames,
    ) -> Result<(), DataError>
    where
        B: Backbone + OnnxBackboneExport,
        H: Head + OnnxHead,
    {
        let dir = dir.as_ref();
        save_for_prediction(dir, &outcome.model, classes, &self.preprocess)?;
        let best = outcome
            .history
            .iter()
            .map(|r| r.valid.top1)
            .fold(0.0, f64::max);
        let run = serde_json::json!({
            "data": self.data, "backbone": self.backbone, "weights": self.weights.to_string(),
            "pretrained": matches!(self.weights, Weights::Pretrained(_)),
            "weights_provenance": self.weights,
            "epochs": outcome.history.len(), "best_valid_top1": best, "test": test,
        });
        let json = |name: &str, text: serde_json::Result<String>| {
            text.map_err(|e| DataError::Format {
                path: dir.join(name),
                message: e.to_string(),
            })
        };
        for (name, text) in [
            (
                "run.json",
                json("run.json", serde_json::to_string_pretty(&run))?,
            ),
            (
                "test_metrics.json",
                json("test_metrics.json", serde_json::to_string_pretty(test))?,
            ),
            (
                "confusion.svg",
                confusion_svg(&test.confusion, classes.names())?,
            ),
        ] {
            write_atomic(&FsWriter, &dir.join(name), text.as_bytes())?;
        }
        Ok(())
    }

    /// The closing lines: backbone, weights, data, best epoch, test accuracy against chance,
    /// and a warning when the backbone started from a random initialisation.
    pub fn summary<B, H>(
        &self,
        dir: impl AsRef<Path>,
        outcome: &FitOutcome<B, H>,
        test: &Metrics,
    ) -> String {
        let pct = |v: f64| format!("{:.1}%", 100.0 * v);
        let mut s = format!("\n== run summary ({})\n", dir.as_ref().display());
        let _ = writeln!(
            s,
            "backbone : {}\nweights  : {}\ndata     : {}",
            self.backbone, self.weights, self.data
        );
        if let Some(best) = &outcome.best {
            let _ = writeln!(
                s,
                "best     : epoch {} (monitored value {:.4})",
                best.epoch + 1,
                best.value
            );
        }
        let top5 = test.top5.map(|t| format!(", top-5 {}", pct(t)));
        let _ = writeln!(
            s,
            "test     : top-1 {}{} on {} images (chance {})",
            pct(test.top1),
            top5.unwrap_or_default(),
            test.samples,
            pct(1.0 / test.per_class.len().max(1) as f64)
        );
        if let Weights::Random { .. } = self.weights {
            s.push_str(
                "           (RANDOMLY INITIALISED backbone: not representative of transfer learning)\n",
            );
        }
        s
    }
}
