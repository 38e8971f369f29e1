//! Layout conversions of host tensors shared by the weight importers (the zoo's ONNX weight
//! reader and grafter-onnx's graph importer), so neither depends on the other.

use burn::tensor::TensorData;

/// The transpose of a 2-D tensor, as f32.
///
/// ONNX `Gemm`/`MatMul` weights are `[out, in]` or `[in, out]` depending on `transB`;
/// Burn's `Linear` wants `[in, out]`. Any float element type is converted to f32 first.
///
/// ```
/// use burn::tensor::TensorData;
/// use grafter_core::tensor_layout::transpose2;
///
/// let t = transpose2(TensorData::new(vec![1f32, 2., 3., 4., 5., 6.], [2, 3]));
/// assert_eq!(t.shape().to_vec(), vec![3, 2]);
/// assert_eq!(t.into_vec::<f32>().unwrap(), vec![1., 4., 2., 5., 3., 6.]);
/// ```
pub fn transpose2(data: TensorData) -> TensorData {
    let shape = data.shape().to_vec();
    let (r, c) = (shape[0], shape[1]);
    let v = data
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap_or_default();
    let mut t = vec![0f32; v.len()];
    // In square tiles: a classifier weight is hundreds of MB (VGG16's first fully connected
    // layer, 25088 × 4096), and a plain row-by-row transpose writes every element into a
    // different cache line.
    const TILE: usize = 32;
    for i0 in (0..r).step_by(TILE) {
        for j0 in (0..c).step_by(TILE) {
            let j1 = (j0 + TILE).min(c);
            for i in i0..(i0 + TILE).min(r) {
                for (j, &x) in (j0..j1).zip(&v[i * c + j0..i * c + j1]) {
                    t[j * r + i] = x;
                }
            }
        }
    }
    TensorData::new(t, [c, r])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiled_transpose_equals_the_definition_on_ragged_shapes() {
        for (r, c) in [(1, 1), (1, 70), (37, 70), (64, 32), (33, 65)] {
            let v: Vec<f32> = (0..r * c).map(|x| x as f32).collect();
            let t = transpose2(TensorData::new(v.clone(), [r, c]));
            assert_eq!(t.shape().to_vec(), vec![c, r]);
            let t = t.try_into_vec::<f32>().unwrap();
            for i in 0..r {
                for j in 0..c {
                    assert_eq!(t[j * r + i], v[i * c + j], "{r}x{c} at ({i}, {j})");
                }
            }
        }
    }
}
