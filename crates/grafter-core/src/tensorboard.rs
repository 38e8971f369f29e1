//! TensorBoard event files, written directly: `tensorboard --logdir runs/` shows a grafter run
//! beside PyTorch and Keras ones, with no TensorFlow or protobuf library involved.
//!
//! An event file is a sequence of TFRecords (`u64` length, masked CRC-32C of the length, the
//! bytes, masked CRC-32C of the bytes), each holding one `Event` protocol buffer. The few
//! messages needed are encoded by hand here; `tests/finetune/tensorboard.rs` reads the files
//! back with the `tensorboard` package's own loader.
//!
//! [`TensorBoard`] is an [`Observer`]: attach it with `FineTune::observer` and every step's
//! loss and learning rate and every epoch's metrics land in `events.out.tfevents.*`.
//!
//! ```
//! use grafter_core::tensorboard::EventWriter;
//!
//! let dir = tempfile::tempdir()?;
//! let mut events = EventWriter::create(dir.path())?;
//! events.scalar("train/loss", 0, 1.25)?;
//! events.flush()?;
//! assert!(events.path().file_name().unwrap().to_str().unwrap().starts_with("events.out.tfevents."));
//! # Ok::<(), std::io::Error>(())
//! ```

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::finetune::{Observer, StepInfo};
use crate::history::EpochRecord;
use crate::png::{confusion_heat_map, encode_png};

/// Appends events to one `events.out.tfevents.<seconds>.<host>` file.
pub struct EventWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl EventWriter {
    /// A new event file in `dir` (created if needed), starting with the version event
    /// TensorBoard expects first.
    pub fn create(dir: impl AsRef<Path>) -> io::Result<Self> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir)?;
        let now = wall_time();
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "grafter".into());
        let host: String = host
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        let path = dir.join(format!(
            "events.out.tfevents.{}.{host}.{}",
            now as u64,
            std::process::id()
        ));
        let mut writer = Self {
            out: BufWriter::new(File::create(&path)?),
            path,
        };
        let mut event = Vec::new();
        field_f64(&mut event, 1, now);
        field_bytes(&mut event, 3, b"brain.Event:2");
        writer.record(&event)?;
        Ok(writer)
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A scalar `value` of `tag` at `step`.
    pub fn scalar(&mut self, tag: &str, step: u64, value: f32) -> io::Result<()> {
        let mut v = Vec::new();
        field_bytes(&mut v, 1, tag.as_bytes());
        field_f32(&mut v, 2, value);
        self.summary(step, &v)
    }

    /// An image of `tag` at `step`, already encoded (PNG or JPEG bytes) and `width × height`.
    pub fn image(
        &mut self,
        tag: &str,
        step: u64,
        encoded: &[u8],
        width: u32,
        height: u32,
    ) -> io::Result<()> {
        let mut image = Vec::new();
        field_varint(&mut image, 1, height as u64);
        field_varint(&mut image, 2, width as u64);
        field_varint(&mut image, 3, 3); // RGB
        field_bytes(&mut image, 4, encoded);
        let mut v = Vec::new();
        field_bytes(&mut v, 1, tag.as_bytes());
        field_bytes(&mut v, 4, &image);
        self.summary(step, &v)
    }

    /// Pushes buffered events to the file (TensorBoard reads it while it grows).
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// An `Event { wall_time, step, summary { value } }`.
    fn summary(&mut self, step: u64, value: &[u8]) -> io::Result<()> {
        let mut summary = Vec::new();
        field_bytes(&mut summary, 1, value);
        let mut event = Vec::new();
        field_f64(&mut event, 1, wall_time());
        field_varint(&mut event, 2, step);
        field_bytes(&mut event, 5, &summary);
        self.record(&event)
    }

    /// One TFRecord.
    fn record(&mut self, data: &[u8]) -> io::Result<()> {
        let len = (data.len() as u64).to_le_bytes();
        self.out.write_all(&len)?;
        self.out.write_all(&masked_crc(&len).to_le_bytes())?;
        self.out.write_all(data)?;
        self.out.write_all(&masked_crc(data).to_le_bytes())
    }
}

/// An [`Observer`] that logs a run to TensorBoard: `train/loss` and `train/lr` per step, the
/// training and validation loss, top-1 and top-5 per epoch (`train/…`, `valid/…`, at the epoch's
/// last step), and the validation confusion matrix as a heat map image (`valid/confusion`,
/// rows normalised; single-label and binary tasks).
///
/// An observer cannot fail the run: a write error is logged once and logging stops.
pub struct TensorBoard {
    writer: Option<EventWriter>,
}

impl TensorBoard {
    /// Logs into a new event file in `dir` (for instance the run folder).
    pub fn new(dir: impl AsRef<Path>) -> io::Result<Self> {
        Ok(Self {
            writer: Some(EventWriter::create(dir)?),
        })
    }

    fn write(&mut self, f: impl FnOnce(&mut EventWriter) -> io::Result<()>) {
        if let Some(w) = self.writer.as_mut()
            && let Err(e) = f(w)
        {
            log::warn!("TensorBoard logging to {} stopped: {e}", w.path().display());
            self.writer = None;
        }
    }
}

impl Observer for TensorBoard {
    fn on_step(&mut self, step: &StepInfo) {
        let s = step.step as u64;
        self.write(|w| {
            w.scalar("train/loss", s, step.loss as f32)?;
            w.scalar("train/lr", s, step.lr as f32)
        });
    }

    fn on_epoch_end(&mut self, epoch: &EpochRecord) {
        let s = epoch.step as u64;
        self.write(|w| {
            for (split, m) in [("train", &epoch.train), ("valid", &epoch.valid)] {
                w.scalar(&format!("{split}/epoch_loss"), s, m.loss as f32)?;
                w.scalar(&format!("{split}/top1"), s, m.top1 as f32)?;
                if let Some(top5) = m.top5 {
                    w.scalar(&format!("{split}/top5"), s, top5 as f32)?;
                }
            }
            w.scalar("epoch", s, epoch.epoch as f32)?;
            let confusion = &epoch.valid.confusion;
            if !confusion.is_empty() {
                // about 256 pixels a side, at least 2 per class
                let cell = (256 / confusion.len() as u32).max(2);
                let map = confusion_heat_map(confusion, cell);
                let png = encode_png(&map);
                w.image("valid/confusion", s, &png, map.width, map.height)?;
            }
            w.flush()
        });
    }
}

fn wall_time() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn field_varint(out: &mut Vec<u8>, field: u32, v: u64) {
    varint(out, (field as u64) << 3);
    varint(out, v);
}

fn field_f64(out: &mut Vec<u8>, field: u32, v: f64) {
    varint(out, ((field as u64) << 3) | 1);
    out.extend_from_slice(&v.to_le_bytes());
}

fn field_f32(out: &mut Vec<u8>, field: u32, v: f32) {
    varint(out, ((field as u64) << 3) | 5);
    out.extend_from_slice(&v.to_le_bytes());
}

fn field_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    varint(out, ((field as u64) << 3) | 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// TFRecord's masked CRC-32C.
fn masked_crc(data: &[u8]) -> u32 {
    let crc = crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), bytewise.
fn crc32c(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut t = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0x82F6_3B78 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    };
    !data.iter().fold(!0u32, |c, &b| {
        TABLE[((c ^ b as u32) & 0xFF) as usize] ^ (c >> 8)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_check_value_and_varints() {
        // the standard check value of CRC-32C
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        let mut v = Vec::new();
        varint(&mut v, 300);
        assert_eq!(v, [0xAC, 0x02]);
    }
}
