//! What a cache file of the fine-tune loop was computed from, as 16 hex digits: the file is
//! reused by a later run only when this matches.
//!
//! It covers the backbone through its features of the source's first batch (weights,
//! BatchNorm statistics, preprocessing and architecture all show there, and computing one
//! batch is cheap next to the whole pass), and the data through every pixel and label of
//! the source's evaluation pass, with its sample names when it has them. Decoding the data
//! once more costs a small fraction of the backbone pass the file saves.

use burn::tensor::{Device, Tensor, TensorData};

use crate::source::{DataSource, EpochRequest, Labels};
use crate::{Backbone, GrafterError, Result};

/// 64-bit FNV-1a over 8-byte words (a word-wise variant: fast enough to hash every pixel).
struct Hasher(u64);

impl Hasher {
    fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    fn word(&mut self, w: u64) {
        self.0 = (self.0 ^ w).wrapping_mul(0x0000_0100_0000_01b3);
    }

    fn floats(&mut self, values: &[f32]) {
        self.word(values.len() as u64);
        for v in values {
            self.word(u64::from(v.to_bits()));
        }
    }

    fn bytes(&mut self, bytes: &[u8]) {
        self.word(bytes.len() as u64);
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.word(u64::from_le_bytes(w));
        }
    }
}

/// The fingerprint of `backbone` (in inference mode, on `device`) over `source`.
pub(super) fn fingerprint<B: Backbone>(
    backbone: &B,
    source: &dyn DataSource,
    batch_size: usize,
    device: &Device,
) -> Result<String> {
    let mut h = Hasher::new();
    h.bytes(b"grafter feature cache 1");
    h.word(source.len() as u64);
    h.word(source.num_classes() as u64);
    let request = EpochRequest {
        epoch: 0,
        seed: 0,
        batch_size,
        train: false,
    };
    for (i, batch) in source.batches(request).enumerate() {
        let batch = batch?;
        batch.validate()?;
        h.floats(&batch.images);
        match &batch.labels {
            Labels::Classes(c) => c.iter().for_each(|&c| h.word(c as u64)),
            Labels::MultiHot { values, .. } => h.floats(values),
        }
        if i == 0 {
            let x = Tensor::<4>::from_data(TensorData::new(batch.images, batch.shape), device);
            let features = backbone
                .forward_features(x)
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .map_err(|e| GrafterError::Data(format!("cannot read features: {e:?}")))?;
            h.floats(&features);
        }
    }
    for i in 0..source.len() {
        if let Some(name) = source.sample_name(i) {
            h.bytes(name.as_bytes());
        }
    }
    Ok(format!("{:016x}", h.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Preprocess;
    use crate::feature_cache::CachedFeatures;
    use crate::source::InMemoryDataset;

    #[test]
    fn any_pixel_or_label_changes_the_fingerprint() {
        let device = Device::flex();
        let id = CachedFeatures::new(1, Preprocess::imagenet());
        let data =
            |pixels: Vec<f32>, labels| InMemoryDataset::new(pixels, [1, 1, 2], labels, 2).unwrap();
        let fp = |d: &InMemoryDataset| fingerprint(&id, d, 1, &device).unwrap();
        let base = fp(&data(vec![1.0, 2.0, 3.0, 4.0], vec![0, 1]));
        assert_eq!(base.len(), 16);
        assert_eq!(base, fp(&data(vec![1.0, 2.0, 3.0, 4.0], vec![0, 1])));
        // the second sample lies past the first batch: only the data hash sees it
        assert_ne!(base, fp(&data(vec![1.0, 2.0, 3.0, 4.5], vec![0, 1])));
        assert_ne!(base, fp(&data(vec![1.0, 2.0, 3.0, 4.0], vec![0, 0])));
    }
}
