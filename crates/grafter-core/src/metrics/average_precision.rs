//! Average precision (the area under the precision-recall step curve) and its mean over the
//! labels of a multi-label task, as scikit-learn's `average_precision_score`.

/// Average precision of `scores` against the binary `truth`:
/// `AP = Σ_n (R_n − R_{n−1}) · P_n` over the distinct score thresholds, highest first (tied
/// scores form one threshold), exactly scikit-learn's definition (no interpolation). `None`
/// when there is no positive (recall is undefined).
///
/// ```
/// use grafter_core::metrics::average_precision;
///
/// // sklearn.metrics.average_precision_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.8333…
/// let ap = average_precision(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]).unwrap();
/// assert!((ap - 5.0 / 6.0).abs() < 1e-12);
/// ```
pub fn average_precision(scores: &[f32], truth: &[bool]) -> Option<f64> {
    let positives = truth.iter().filter(|&&t| t).count();
    if positives == 0 || scores.len() != truth.len() {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut fp, mut last_tp) = (0usize, 0usize, 0usize);
    let mut ap = 0.0;
    for (i, &j) in order.iter().enumerate() {
        if truth[j] {
            tp += 1;
        } else {
            fp += 1;
        }
        let threshold_ends = order
            .get(i + 1)
            .is_none_or(|&next| scores[next] != scores[j]);
        if threshold_ends && tp > last_tp {
            let recall_gain = (tp - last_tp) as f64 / positives as f64;
            ap += recall_gain * tp as f64 / (tp + fp) as f64;
            last_tp = tp;
        }
    }
    Some(ap)
}

/// Mean average precision over the `k` labels of row-major `[N, k]` scores and 0/1 targets
/// (scikit-learn's `average_precision_score(average="macro")`), over the labels with at
/// least one positive; `None` when no label has one.
pub fn mean_average_precision(scores: &[f32], targets: &[f32], k: usize) -> Option<f64> {
    if k == 0 || scores.len() != targets.len() {
        return None;
    }
    let n = scores.len() / k;
    let aps: Vec<f64> = (0..k)
        .filter_map(|c| {
            let s: Vec<f32> = (0..n).map(|i| scores[i * k + c]).collect();
            let t: Vec<bool> = (0..n).map(|i| targets[i * k + c] > 0.5).collect();
            average_precision(&s, &t)
        })
        .collect();
    (!aps.is_empty()).then(|| aps.iter().sum::<f64>() / aps.len() as f64)
}
