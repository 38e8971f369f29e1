//! Resizing RGB8 images, with the two engines that were measured.
//!
//! `fast_image_resize` (SIMD convolution) was measured against `image::imageops::resize` on
//! this project's workload (a ~512×384 JPEG-sized image to a 256 shorter side, bilinear) by
//! `benches/loader.rs` (group `resize`); the faster one, `fast_image_resize`, is the default.
//! Both implement PIL's *convolution* resampling: the filter support grows with the
//! downscaling factor (antialiasing), as `PIL.Image.resize` and hence torchvision's `Resize`
//! on PIL images do — so our output matches PIL within one 8-bit level (see
//! `crates/grafter-data/tests/data/eval_reference.rs`), unlike OpenCV-style fixed 2×2 bilinear sampling.

use fast_image_resize as fr;
use grafter_core::Interpolation;
use image::RgbImage;

/// Which library resizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ResizeEngine {
    /// `fast_image_resize` (the default; faster, matches PIL within 1/255).
    #[default]
    FastImageResize,
    /// `image::imageops::resize` (kept for the benchmark and as a reference).
    ImageCrate,
}

/// Resizes the region `crop = [left, top, width, height]` of `src` (the whole image when
/// `None`) to `width × height`.
///
/// ```
/// use grafter_core::Interpolation;
/// use grafter_data::{resize_rgb8, ResizeEngine};
/// let src = image::RgbImage::from_pixel(64, 48, image::Rgb([10, 20, 30]));
/// let out = resize_rgb8(&src, None, 32, 24, Interpolation::Bilinear, ResizeEngine::default());
/// assert_eq!(out.dimensions(), (32, 24));
/// assert_eq!(out.get_pixel(5, 5).0, [10, 20, 30]);
/// ```
pub fn resize_rgb8(
    src: &RgbImage,
    crop: Option<[u32; 4]>,
    width: u32,
    height: u32,
    interpolation: Interpolation,
    engine: ResizeEngine,
) -> RgbImage {
    let [left, top, cw, ch] = crop.unwrap_or([0, 0, src.width(), src.height()]);
    if cw == width && ch == height {
        return image::imageops::crop_imm(src, left, top, cw, ch).to_image();
    }
    match engine {
        ResizeEngine::FastImageResize => {
            fast(src, [left, top, cw, ch], width, height, interpolation)
        }
        ResizeEngine::ImageCrate => {
            let filter = match interpolation {
                Interpolation::Nearest => image::imageops::FilterType::Nearest,
                Interpolation::Bilinear => image::imageops::FilterType::Triangle,
                Interpolation::Bicubic => image::imageops::FilterType::CatmullRom,
            };
            let view = image::imageops::crop_imm(src, left, top, cw, ch);
            image::imageops::resize(&*view, width, height, filter)
        }
    }
}

fn fast(
    src: &RgbImage,
    crop: [u32; 4],
    width: u32,
    height: u32,
    interp: Interpolation,
) -> RgbImage {
    thread_local! {
        static RESIZER: std::cell::RefCell<fr::Resizer> = std::cell::RefCell::new(fr::Resizer::new());
    }
    let alg = match interp {
        Interpolation::Nearest => fr::ResizeAlg::Nearest,
        Interpolation::Bilinear => fr::ResizeAlg::Convolution(fr::FilterType::Bilinear),
        Interpolation::Bicubic => fr::ResizeAlg::Convolution(fr::FilterType::CatmullRom),
    };
    let view =
        fr::images::ImageRef::new(src.width(), src.height(), src.as_raw(), fr::PixelType::U8x3)
            .expect("an RgbImage buffer always fits its dimensions");
    let mut dst = fr::images::Image::new(width, height, fr::PixelType::U8x3);
    let options = fr::ResizeOptions::new().resize_alg(alg).crop(
        crop[0] as f64,
        crop[1] as f64,
        crop[2] as f64,
        crop[3] as f64,
    );
    RESIZER.with(|r| {
        r.borrow_mut()
            .resize(&view, &mut dst, &options)
            .expect("same pixel type and a crop inside the image")
    });
    RgbImage::from_raw(width, height, dst.into_vec()).expect("U8x3 buffer of the right size")
}
