//! Decoding any supported file to 8-bit RGB, upright, within size limits.
//!
//! Grayscale, grayscale+alpha, RGBA, CMYK (JPEG) and 16-bit images become RGB8 (alpha is
//! dropped, as PIL's `convert("RGB")` does). The EXIF orientation of JPEG/PNG/WebP files is
//! applied, so a phone photo taken in portrait is not fed to the network sideways. An animated
//! GIF yields its first frame.

use std::fs::File;
use std::io::{Cursor, Read};
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageReader, Limits, RgbImage};

/// Why a file was not decoded. The path is not part of it: the caller that knows which file
/// it read adds it ([`BadFiles`](crate::BadFiles), [`PredictError`](crate::predict::PredictError)).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The operating system refused an operation (`what`: open, read, metadata).
    #[error("cannot {what}: {reason}")]
    Io {
        /// The operation.
        what: &'static str,
        /// The system's message.
        reason: String,
    },
    /// A directory stands where an image file was listed.
    #[error("is a directory, not an image file")]
    Directory,
    /// A FIFO, socket or device stands where an image file was listed; `replaced` when it was
    /// a regular file at the check and something else once opened.
    #[error("not a regular file{}", if *.replaced { " (replaced after it was listed)" } else { "" })]
    NotRegularFile {
        /// Swapped between the check and the open.
        replaced: bool,
    },
    /// The file is empty.
    #[error("empty file (0 bytes)")]
    Empty,
    /// The file is larger than [`DecodeLimits::max_file_bytes`].
    #[error("file of {len} bytes is above the limit of {limit} bytes")]
    FileTooLarge {
        /// Its length.
        len: u64,
        /// The limit.
        limit: u64,
    },
    /// The file grew above [`DecodeLimits::max_file_bytes`] while it was read.
    #[error("file grew above the limit of {limit} bytes while being read")]
    FileGrew {
        /// The limit.
        limit: u64,
    },
    /// Width or height is zero.
    #[error("zero-sized image ({width}x{height})")]
    ZeroSized {
        /// Width in the header.
        width: u32,
        /// Height in the header.
        height: u32,
    },
    /// A side is longer than [`DecodeLimits::max_side`].
    #[error("absurd dimensions {width}x{height} (largest side accepted: {max_side})")]
    SideTooLong {
        /// Width in the header.
        width: u32,
        /// Height in the header.
        height: u32,
        /// The limit.
        max_side: u32,
    },
    /// More pixels than [`DecodeLimits::max_pixels`] (a decompression bomb).
    #[error("absurd dimensions {width}x{height} (more than {max_pixels} pixels)")]
    TooManyPixels {
        /// Width in the header.
        width: u32,
        /// Height in the header.
        height: u32,
        /// The limit.
        max_pixels: u64,
    },
    /// The content matches no supported image format.
    #[error("not an image (content matches no supported format)")]
    NotAnImage,
    /// The format is known but its header is broken.
    #[error("unreadable image header: {0}")]
    Header(String),
    /// The header was fine, the pixel data is not.
    #[error("cannot decode: {0}")]
    Pixels(String),
    /// A JPEG that ends before its image data does (`what` says where).
    #[error("truncated JPEG ({what})")]
    TruncatedJpeg {
        /// What is missing.
        what: &'static str,
    },
}

fn io(what: &'static str) -> impl Fn(std::io::Error) -> DecodeError {
    move |e| DecodeError::Io {
        what,
        reason: e.to_string(),
    }
}

/// Size limits checked from the file's length and the image header, before any buffer is
/// allocated: a 100000×100000 header (a "decompression bomb") or a multi-gigabyte file is
/// refused instead of exhausting memory.
///
/// ```
/// use grafter_data::DecodeLimits;
/// let l = DecodeLimits::default();
/// assert!(l.check(512, 384).is_ok());
/// assert!(l.check(100_000, 100_000).is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest accepted width or height.
    pub max_side: u32,
    /// Largest accepted width × height (PIL's decompression-bomb error threshold by default).
    pub max_pixels: u64,
    /// Largest accepted file, in bytes (256 MiB by default: far above any photo, and the
    /// most [`decode_file`] ever reads into memory).
    pub max_file_bytes: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_side: 32_768,
            max_pixels: 178_956_970,
            max_file_bytes: 256 << 20,
        }
    }
}

impl DecodeLimits {
    /// `Ok` when a `width × height` image is acceptable, the reason otherwise.
    pub fn check(&self, width: u32, height: u32) -> Result<(), DecodeError> {
        if width == 0 || height == 0 {
            return Err(DecodeError::ZeroSized { width, height });
        }
        if width > self.max_side || height > self.max_side {
            return Err(DecodeError::SideTooLong {
                width,
                height,
                max_side: self.max_side,
            });
        }
        if width as u64 * height as u64 > self.max_pixels {
            return Err(DecodeError::TooManyPixels {
                width,
                height,
                max_pixels: self.max_pixels,
            });
        }
        Ok(())
    }

    fn image_limits(&self) -> Limits {
        let mut l = Limits::default();
        l.max_image_width = Some(self.max_side);
        l.max_image_height = Some(self.max_side);
        // RGBA16 is the widest intermediate the decoders produce.
        l.max_alloc = Some(self.max_pixels.saturating_mul(8).max(64 << 20));
        l
    }
}

/// Reads and decodes `path` to upright RGB8.
///
/// Only a regular file of at most [`DecodeLimits::max_file_bytes`] is read (see
/// `open_regular`).
pub fn decode_file(path: &Path, limits: &DecodeLimits) -> Result<RgbImage, DecodeError> {
    let file = open_regular(path)?;
    let len = file.metadata().map_err(io("read file metadata"))?.len();
    let limit = limits.max_file_bytes;
    if len > limit {
        return Err(DecodeError::FileTooLarge { len, limit });
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(io("read"))?;
    if bytes.len() as u64 > limit {
        return Err(DecodeError::FileGrew { limit });
    }
    decode_bytes(&bytes, limits)
}

/// Opens `path` for reading only if it is a regular file (a symbolic link to one is fine).
///
/// A FIFO, socket or device in place of an image would block the reader forever or never
/// end: the type is checked before opening, the open itself does not block (`O_NONBLOCK`,
/// harmless for regular files) in case the file was swapped in between, and the type of
/// what was actually opened is checked again.
pub(crate) fn open_regular(path: &Path) -> Result<File, DecodeError> {
    let meta = std::fs::metadata(path).map_err(io("read file metadata"))?;
    if meta.is_dir() {
        return Err(DecodeError::Directory);
    }
    if !meta.is_file() {
        return Err(DecodeError::NotRegularFile { replaced: false });
    }
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path).map_err(io("open"))?;
    let opened = file.metadata().map_err(io("read file metadata"))?;
    if !opened.is_file() {
        return Err(DecodeError::NotRegularFile { replaced: true });
    }
    Ok(file)
}

/// Decodes an in-memory file to upright RGB8.
///
/// ```
/// use grafter_data::decode::decode_bytes;
/// use grafter_data::DecodeLimits;
/// let mut png = Vec::new();
/// image::GrayImage::from_pixel(3, 2, image::Luma([200]))
///     .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
///     .unwrap();
/// let rgb = decode_bytes(&png, &DecodeLimits::default()).unwrap();
/// assert_eq!((rgb.width(), rgb.height()), (3, 2));
/// assert_eq!(rgb.get_pixel(0, 0).0, [200, 200, 200]);
/// ```
pub fn decode_bytes(bytes: &[u8], limits: &DecodeLimits) -> Result<RgbImage, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(io("read"))?;
    let format = reader.format().ok_or(DecodeError::NotAnImage)?;
    reader.limits(limits.image_limits());
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| DecodeError::Header(e.to_string()))?;
    let (w, h) = decoder.dimensions();
    limits.check(w, h)?;
    if format == image::ImageFormat::Jpeg {
        check_jpeg_complete(bytes)?;
    }
    // A broken EXIF block must not lose the picture: fall back to "as stored".
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img =
        DynamicImage::from_decoder(decoder).map_err(|e| DecodeError::Pixels(e.to_string()))?;
    img.apply_orientation(orientation);
    Ok(match img {
        DynamicImage::ImageRgb8(rgb) => rgb,
        other => other.into_rgb8(),
    })
}

/// The JPEG decoder is lenient: a truncated file decodes "successfully" with grey where the
/// data stopped. A complete JPEG has an end-of-image marker (FF D9) after its last
/// start-of-scan (FF DA); entropy-coded data never contains either byte pair.
fn check_jpeg_complete(bytes: &[u8]) -> Result<(), DecodeError> {
    let last_sos = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]);
    let last_eoi = bytes.windows(2).rposition(|w| w == [0xFF, 0xD9]);
    match (last_sos, last_eoi) {
        (Some(s), Some(e)) if e > s => Ok(()),
        (None, _) => Err(DecodeError::TruncatedJpeg {
            what: "no image data",
        }),
        _ => Err(DecodeError::TruncatedJpeg {
            what: "no end-of-image marker after the image data",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_jpeg_is_refused_and_complete_one_decodes() {
        let img = RgbImage::from_fn(160, 120, |x, y| {
            image::Rgb([(x * 7 + y * 3) as u8, (x * y) as u8, (y * 11) as u8])
        });
        let mut jpg = Vec::new();
        img.write_to(&mut Cursor::new(&mut jpg), image::ImageFormat::Jpeg)
            .unwrap();
        assert!(decode_bytes(&jpg, &DecodeLimits::default()).is_ok());
        let cut = &jpg[..jpg.len() * 3 / 4];
        let err = decode_bytes(cut, &DecodeLimits::default()).unwrap_err();
        assert!(matches!(err, DecodeError::TruncatedJpeg { .. }), "{err}");
    }

    #[test]
    fn sixteen_bit_and_rgba_become_rgb8() {
        let img16 = image::ImageBuffer::<image::Rgb<u16>, _>::from_pixel(
            2,
            2,
            image::Rgb([65535, 0, 32896]),
        );
        let mut png = Vec::new();
        DynamicImage::ImageRgb16(img16)
            .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let rgb = decode_bytes(&png, &DecodeLimits::default()).unwrap();
        assert_eq!(rgb.get_pixel(1, 1).0, [255, 0, 128]);
    }
    /// An 8×8 CMYK JPEG written by PIL (`Image.new("RGB", (8, 8), (220, 30, 40)).convert("CMYK")`).
    const CMYK_JPEG: &[u8] = &[
        0xff, 0xd8, 0xff, 0xee, 0x00, 0x0e, 0x41, 0x64, 0x6f, 0x62, 0x65, 0x00, 0x64, 0x00, 0x00,
        0x00, 0x00, 0x00, 0xff, 0xdb, 0x00, 0x43, 0x00, 0x02, 0x01, 0x01, 0x01, 0x01, 0x01, 0x02,
        0x01, 0x01, 0x01, 0x02, 0x02, 0x02, 0x02, 0x02, 0x04, 0x03, 0x02, 0x02, 0x02, 0x02, 0x05,
        0x04, 0x04, 0x03, 0x04, 0x06, 0x05, 0x06, 0x06, 0x06, 0x05, 0x06, 0x06, 0x06, 0x07, 0x09,
        0x08, 0x06, 0x07, 0x09, 0x07, 0x06, 0x06, 0x08, 0x0b, 0x08, 0x09, 0x0a, 0x0a, 0x0a, 0x0a,
        0x0a, 0x06, 0x08, 0x0b, 0x0c, 0x0b, 0x0a, 0x0c, 0x09, 0x0a, 0x0a, 0x0a, 0xff, 0xc0, 0x00,
        0x14, 0x08, 0x00, 0x08, 0x00, 0x08, 0x04, 0x43, 0x11, 0x00, 0x4d, 0x11, 0x00, 0x59, 0x11,
        0x00, 0x4b, 0x11, 0x00, 0xff, 0xc4, 0x00, 0x1f, 0x00, 0x00, 0x01, 0x05, 0x01, 0x01, 0x01,
        0x01, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x03, 0x04,
        0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0xff, 0xc4, 0x00, 0xb5, 0x10, 0x00, 0x02, 0x01,
        0x03, 0x03, 0x02, 0x04, 0x03, 0x05, 0x05, 0x04, 0x04, 0x00, 0x00, 0x01, 0x7d, 0x01, 0x02,
        0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51, 0x61, 0x07, 0x22,
        0x71, 0x14, 0x32, 0x81, 0x91, 0xa1, 0x08, 0x23, 0x42, 0xb1, 0xc1, 0x15, 0x52, 0xd1, 0xf0,
        0x24, 0x33, 0x62, 0x72, 0x82, 0x09, 0x0a, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x25, 0x26, 0x27,
        0x28, 0x29, 0x2a, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45, 0x46, 0x47,
        0x48, 0x49, 0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63, 0x64, 0x65, 0x66,
        0x67, 0x68, 0x69, 0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x83, 0x84, 0x85,
        0x86, 0x87, 0x88, 0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0xa2,
        0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8,
        0xb9, 0xba, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3, 0xd4, 0xd5,
        0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xe1, 0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea,
        0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa, 0xff, 0xda, 0x00, 0x0e, 0x04,
        0x43, 0x00, 0x4d, 0x00, 0x59, 0x00, 0x4b, 0x00, 0x00, 0x3f, 0x00, 0xfd, 0x70, 0xaf, 0xc7,
        0x7a, 0xfc, 0x9f, 0xaf, 0xdf, 0xca, 0xff, 0xd9,
    ];

    #[test]
    fn cmyk_jpeg_becomes_rgb8() {
        let rgb = decode_bytes(CMYK_JPEG, &DecodeLimits::default()).unwrap();
        assert_eq!(rgb.dimensions(), (8, 8));
        let px = rgb.get_pixel(3, 3).0;
        for (got, want) in px.iter().zip([220u8, 30, 40]) {
            assert!((*got as i32 - want as i32).abs() <= 12, "{px:?}");
        }
    }
}
