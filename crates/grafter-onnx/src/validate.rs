//! Checks of node attributes a hostile or broken file may set to anything.
//!
//! Burn asserts (panics) on a zero group or stride, an axis past the rank or a shape that does
//! not fit, and allocates whatever a padding asks for. Every attribute the interpreter or a
//! module constructor will index with, divide by or allocate from is checked here first, so
//! a bad graph is a typed error at load, never a panic or an abort at the first forward.
//! Each function returns the reason as text; the importer adds the file and node name.

/// The largest kernel size, stride, dilation or padding accepted (per side, per axis).
///
/// Real CNNs stay in the tens; the cap only has to keep a forged value from sizing an
/// allocation (a padding of 2^40 asks for terabytes) or overflowing a product of strides.
pub(crate) const MAX_EXTENT: usize = 1 << 16;

/// Each of `values` (a kernel, stride or dilation) must be in `1..=MAX_EXTENT`.
pub(crate) fn positive_extents(what: &str, values: &[usize]) -> Result<(), String> {
    match values.iter().find(|&&v| v == 0 || v > MAX_EXTENT) {
        Some(v) => Err(format!("{what} {v} is outside 1..={MAX_EXTENT}")),
        None => Ok(()),
    }
}

/// Each padding must be at most `MAX_EXTENT`.
pub(crate) fn pads(values: &[usize]) -> Result<(), String> {
    match values.iter().find(|&&v| v > MAX_EXTENT) {
        Some(v) => Err(format!(
            "padding {v} is above the limit of {MAX_EXTENT} per side"
        )),
        None => Ok(()),
    }
}

/// ONNX axes count from the end when negative (`-1` = last). Each must be in
/// `-rank..rank`; the result is absolute.
pub(crate) fn axes(axes: &[i64], rank: usize) -> Result<Vec<usize>, String> {
    let r = rank as i64;
    axes.iter()
        .map(|&a| {
            if (-r..r).contains(&a) {
                Ok(if a < 0 { (a + r) as usize } else { a as usize })
            } else {
                Err(format!(
                    "axis {a} is out of range for a tensor of rank {rank}"
                ))
            }
        })
        .collect()
}

/// An axis already made absolute (onnx-ir's normalised attributes) must be below `limit`.
pub(crate) fn axis_below(axis: usize, limit: usize, rank: usize) -> Result<(), String> {
    if axis < limit {
        Ok(())
    } else {
        Err(format!(
            "axis {axis} is out of range for a tensor of rank {rank}"
        ))
    }
}

/// A Reshape target: `-1` at most once, `0` copies an input axis, anything else positive,
/// and the product of the explicit dimensions must not overflow.
pub(crate) fn reshape_dims(shape: &[i64]) -> Result<(), String> {
    if let Some(d) = shape.iter().find(|&&d| d < -1) {
        return Err(format!(
            "Reshape dimension {d} is invalid (only -1 may be negative)"
        ));
    }
    if shape.iter().filter(|&&d| d == -1).count() > 1 {
        return Err("Reshape infers more than one dimension (-1 appears twice)".into());
    }
    shape
        .iter()
        .filter(|&&d| d > 0)
        .try_fold(1usize, |acc, &d| acc.checked_mul(d as usize))
        .map(|_| ())
        .ok_or_else(|| format!("Reshape target {shape:?} has more elements than can be addressed"))
}

/// A Transpose permutation must name each axis of the input exactly once.
pub(crate) fn perm(perm: &[i64], rank: usize) -> Result<Vec<usize>, String> {
    let mut sorted = perm.to_vec();
    sorted.sort_unstable();
    if sorted != (0..rank as i64).collect::<Vec<_>>() {
        return Err(format!(
            "Transpose perm {perm:?} is not a permutation of the {rank} axes"
        ));
    }
    Ok(perm.iter().map(|&p| p as usize).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_accept_minus_rank_to_rank_minus_one_only() {
        assert_eq!(axes(&[-4, -1, 0, 3], 4).unwrap(), vec![0, 3, 0, 3]);
        assert!(axes(&[-5], 4).unwrap_err().contains("-5"));
        assert!(axes(&[4], 4).is_err());
        assert!(axes(&[i64::MIN], 4).is_err());
    }

    #[test]
    fn reshape_dims_refuse_below_minus_one_double_inference_and_overflow() {
        assert!(reshape_dims(&[0, -1, 8]).is_ok());
        assert!(reshape_dims(&[1, -5]).is_err());
        assert!(reshape_dims(&[-1, -1]).is_err());
        assert!(reshape_dims(&[i64::MAX, i64::MAX]).is_err());
    }

    #[test]
    fn perm_must_be_a_permutation() {
        assert_eq!(perm(&[0, 2, 3, 1], 4).unwrap(), vec![0, 2, 3, 1]);
        assert!(perm(&[0, 1, 1, 9], 4).is_err());
        assert!(perm(&[0, 1], 4).is_err());
    }

    #[test]
    fn extents_and_pads_are_capped() {
        assert!(positive_extents("stride", &[1, MAX_EXTENT]).is_ok());
        assert!(positive_extents("stride", &[0]).is_err());
        assert!(pads(&[1 << 40]).unwrap_err().contains("1099511627776"));
    }
}
