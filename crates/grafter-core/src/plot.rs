//! Pictures people would rather see than read: training curves and confusion matrices (SVG).

use plotters::prelude::*;

use crate::finetune::LrFindResult;
use crate::history::EpochRecord;
use crate::{GrafterError, Result};

/// Points of one curve: (epoch, value).
type Curve = Vec<(f64, f64)>;

fn plot_err<E: std::fmt::Display>(e: E) -> GrafterError {
    GrafterError::Plot(e.to_string())
}

/// Loss (left) and top-1 accuracy (right) per epoch, train and validation, as an SVG document.
pub fn curves_svg(history: &[EpochRecord]) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, 400)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let (left, right) = root.split_horizontally(480);
        let epochs = history.len().max(1) as f64;
        let series = |f: &dyn Fn(&EpochRecord) -> f64| -> Curve {
            history
                .iter()
                .map(|r| ((r.epoch + 1) as f64, f(r)))
                .filter(|(_, y)| y.is_finite())
                .collect()
        };
        let panels = [
            (
                &left,
                "loss",
                series(&|r| r.train.loss),
                series(&|r| r.valid.loss),
            ),
            (
                &right,
                "top-1 accuracy",
                series(&|r| r.train.top1),
                series(&|r| r.valid.top1),
            ),
        ];
        for (area, title, train, valid) in panels {
            let ymax = train
                .iter()
                .chain(&valid)
                .map(|p| p.1)
                .fold(0.0f64, f64::max)
                .max(1e-3)
                * 1.05;
            let mut chart = ChartBuilder::on(area)
                .caption(title, ("sans-serif", 20))
                .margin(12)
                .x_label_area_size(32)
                .y_label_area_size(48)
                .build_cartesian_2d(0.5..epochs + 0.5, 0.0..ymax)
                .map_err(plot_err)?;
            chart
                .configure_mesh()
                .x_desc("epoch")
                .draw()
                .map_err(plot_err)?;
            for (data, colour, label) in [(train, BLUE, "train"), (valid, RED, "validation")] {
                chart
                    .draw_series(LineSeries::new(data.clone(), colour.stroke_width(2)))
                    .map_err(plot_err)?
                    .label(label)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(2))
                    });
                chart
                    .draw_series(data.into_iter().map(|p| Circle::new(p, 3, colour.filled())))
                    .map_err(plot_err)?;
            }
            chart
                .configure_series_labels()
                .border_style(BLACK)
                .background_style(WHITE.mix(0.8))
                .draw()
                .map_err(plot_err)?;
        }
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}

/// The learning-rate range test: raw and smoothed loss against the rate (log scale), with the
/// steepest-descent and valley suggestions marked, as an SVG document.
pub fn lr_find_svg(result: &LrFindResult) -> Result<String> {
    let points = |ys: &[f64]| -> Curve {
        result
            .lrs
            .iter()
            .zip(ys)
            .filter(|(_, y)| y.is_finite())
            .map(|(lr, y)| (lr.log10(), *y))
            .collect()
    };
    let (raw, smooth) = (points(&result.losses), points(&result.smoothed));
    let xs = || smooth.iter().map(|p| p.0);
    let xmin = xs().fold(f64::INFINITY, f64::min);
    let xmax = xs().fold(f64::NEG_INFINITY, f64::max);
    let (xmin, xmax) = if xmin < xmax {
        (xmin, xmax)
    } else {
        (-7.0, 1.0)
    };
    let lo = smooth.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let first = smooth.first().map_or(1.0, |p| p.1);
    // the divergence at the end would squash the interesting part
    let hi = smooth
        .iter()
        .map(|p| p.1)
        .fold(f64::NEG_INFINITY, f64::max)
        .min(first * 1.5)
        .max(lo + 1e-3);
    let lo = if lo.is_finite() {
        lo - 0.05 * (hi - lo)
    } else {
        0.0
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 440)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("learning-rate range test", ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(xmin..xmax, lo..hi)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc("learning rate")
            .y_desc("loss")
            .x_label_formatter(&|x| format!("1e{x:.1}"))
            .draw()
            .map_err(plot_err)?;
        let clip = |c: Curve| -> Curve { c.into_iter().filter(|p| p.1 <= hi).collect() };
        chart
            .draw_series(LineSeries::new(clip(raw), BLUE.mix(0.3).stroke_width(1)))
            .map_err(plot_err)?
            .label("loss")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLUE.mix(0.3)));
        chart
            .draw_series(LineSeries::new(clip(smooth), BLUE.stroke_width(2)))
            .map_err(plot_err)?
            .label("smoothed")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLUE.stroke_width(2)));
        for (lr, colour, name) in [
            (result.steepest, RED, "steepest"),
            (result.valley, GREEN, "valley"),
        ] {
            if let Some(lr) = lr {
                let x = lr.log10();
                chart
                    .draw_series(LineSeries::new(
                        vec![(x, lo), (x, hi)],
                        colour.stroke_width(2),
                    ))
                    .map_err(plot_err)?
                    .label(format!("{name} {lr:.1e}"))
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(2))
                    });
            }
        }
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw()
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}

/// A confusion matrix (`counts[true][predicted]`) as a row-normalised heat map, as SVG.
pub fn confusion_svg(counts: &[Vec<u64>], class_names: &[String]) -> Result<String> {
    let k = counts.len();
    if k == 0 {
        return Err(GrafterError::Config(
            "a confusion matrix needs at least one class".into(),
        ));
    }
    let cell = (720 / k).clamp(4, 48) as u32;
    let side = cell * k as u32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (side + 180, side + 160)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "confusion matrix (rows: true, columns: predicted)",
                ("sans-serif", 16),
            )
            .margin(10)
            .x_label_area_size(if k <= 30 { 110 } else { 20 })
            .y_label_area_size(if k <= 30 { 140 } else { 20 })
            .build_cartesian_2d(0..k, 0..k)
            .map_err(plot_err)?;
        let name = |i: usize| match i {
            i if i >= k => String::new(),
            i => class_names.get(i).cloned().unwrap_or_else(|| i.to_string()),
        };
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(k.min(30))
            .y_labels(k.min(30))
            .x_label_formatter(&|i| name(*i))
            .y_label_formatter(&|i| k.checked_sub(1 + *i).map(name).unwrap_or_default())
            .x_label_style(
                ("sans-serif", 11)
                    .into_font()
                    .transform(FontTransform::Rotate90),
            )
            .y_label_style(("sans-serif", 11))
            .draw()
            .map_err(plot_err)?;
        chart
            .draw_series(counts.iter().enumerate().flat_map(|(t, row)| {
                let total = row.iter().sum::<u64>().max(1) as f64;
                row.iter().enumerate().map(move |(p, &c)| {
                    let v = c as f64 / total;
                    let shade = (255.0 * (1.0 - v)) as u8;
                    // true class 0 on top
                    Rectangle::new(
                        [(p, k - 1 - t), (p + 1, k - t)],
                        RGBColor(shade, shade, 255).filled(),
                    )
                })
            }))
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confusion_matrix_renders_every_cell() {
        let counts = vec![vec![5, 1], vec![0, 4]];
        let svg = confusion_svg(&counts, &["cat".into(), "dog".into()]).unwrap();
        assert!(svg.starts_with("<svg"));
        assert!(svg.matches("<rect").count() >= 4);
        assert!(svg.contains("cat") && svg.contains("dog"));
    }
}
