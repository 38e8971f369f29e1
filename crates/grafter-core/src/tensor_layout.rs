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
    for i in 0..r {
        for j in 0..c {
            t[j * r + i] = v[i * c + j];
        }
    }
    TensorData::new(t, [c, r])
}
