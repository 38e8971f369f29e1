//! A folder full of bad and odd files: the loader finishes, reports every bad file with its
//! reason, and loads every good one.

use std::path::{Path, PathBuf};

use grafter_core::Preprocess;
use grafter_core::source::{DataSource, EpochRequest};
use grafter_data::image::{self, DynamicImage, ImageFormat, RgbImage};
use grafter_data::{DecodeLimits, FoundAt, ImageDataset, ImageLoader, decode};

use crate::common::{SIDE, jpeg_bytes, picture, write};

/// A JPEG with an EXIF APP1 block whose orientation is `orientation` (6 = rotate 90° CW).
fn jpeg_with_orientation(img: &RgbImage, orientation: u8) -> Vec<u8> {
    let jpg = jpeg_bytes(img);
    let tiff: Vec<u8> = [
        &b"II*\0"[..],
        &[8, 0, 0, 0],
        &[1, 0],
        &[0x12, 0x01, 3, 0, 1, 0, 0, 0, orientation, 0, 0, 0],
        &[0, 0, 0, 0],
    ]
    .concat();
    let payload = [&b"Exif\0\0"[..], &tiff].concat();
    let len = (payload.len() + 2) as u16;
    [
        &jpg[..2],
        &[0xFF, 0xE1],
        &len.to_be_bytes(),
        &payload,
        &jpg[2..],
    ]
    .concat()
}

/// A BMP header claiming 100000×100000 pixels, with no pixel data.
fn huge_bmp_header() -> Vec<u8> {
    let mut b = Vec::new();
    b.extend(b"BM");
    b.extend(1_000_000u32.to_le_bytes()); // file size (a lie)
    b.extend([0u8; 4]);
    b.extend(54u32.to_le_bytes()); // pixel data offset
    b.extend(40u32.to_le_bytes()); // BITMAPINFOHEADER
    b.extend(100_000i32.to_le_bytes());
    b.extend(100_000i32.to_le_bytes());
    b.extend(1u16.to_le_bytes());
    b.extend(24u16.to_le_bytes());
    b.extend([0u8; 24]);
    b
}

fn encode(img: DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), format)
        .unwrap();
    out
}

struct Tree {
    good: Vec<PathBuf>,
    bad: Vec<(PathBuf, &'static str)>,
}

fn build(root: &Path) -> Tree {
    let a = root.join("a");
    let b = root.join("b");
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let pic = |c| picture(40, 20, c, 1);
    let mut good = Vec::new();
    let mut bad = Vec::new();
    let put = |p: PathBuf, bytes: Vec<u8>| {
        std::fs::write(&p, bytes).unwrap();
        p
    };

    // Good, some of them odd.
    good.push(put(a.join("plain.jpg"), jpeg_bytes(&pic(0))));
    good.push(put(a.join("UPPER.JPG"), jpeg_bytes(&pic(0))));
    good.push(put(
        a.join("gray.png"),
        encode(
            DynamicImage::ImageLuma8(image::GrayImage::from_pixel(9, 7, image::Luma([90]))),
            ImageFormat::Png,
        ),
    ));
    good.push(put(
        a.join("rgba.png"),
        encode(
            DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(
                9,
                7,
                image::Rgba([1, 2, 3, 0]),
            )),
            ImageFormat::Png,
        ),
    ));
    good.push(put(
        a.join("deep16.png"),
        encode(
            DynamicImage::ImageRgb16(image::ImageBuffer::from_pixel(
                9,
                7,
                image::Rgb([65535u16, 0, 30000]),
            )),
            ImageFormat::Png,
        ),
    ));
    good.push(put(
        a.join("really_a_png.jpg"),
        encode(DynamicImage::ImageRgb8(pic(0)), ImageFormat::Png),
    ));
    good.push(put(
        b.join("lossless.webp"),
        encode(DynamicImage::ImageRgb8(pic(1)), ImageFormat::WebP),
    ));
    good.push(put(
        b.join("bitmap.bmp"),
        encode(DynamicImage::ImageRgb8(pic(1)), ImageFormat::Bmp),
    ));
    good.push(put(b.join("anim.gif"), {
        let mut out = Vec::new();
        {
            let mut enc = image::codecs::gif::GifEncoder::new(&mut out);
            for v in 0..2 {
                let f = image::DynamicImage::ImageRgb8(picture(10, 8, 1, v)).to_rgba8();
                enc.encode_frame(image::Frame::new(f)).unwrap();
            }
        }
        out
    }));
    good.push(put(
        b.join("rotated.jpg"),
        jpeg_with_orientation(&pic(1), 6),
    ));

    // Bad, each for its own reason.
    let jpg = jpeg_bytes(&picture(160, 120, 1, 3));
    bad.push((put(a.join("empty.jpg"), Vec::new()), "empty file"));
    bad.push((
        put(a.join("truncated.jpg"), jpg[..jpg.len() * 3 / 4].to_vec()),
        "truncated JPEG",
    ));
    bad.push((
        put(a.join("text.jpg"), b"hello, I am not a picture".to_vec()),
        "not an image",
    ));
    bad.push((put(a.join("bomb.bmp"), huge_bmp_header()), "100000"));
    bad.push((
        put(
            b.join("corrupt.png"),
            [&b"\x89PNG\r\n\x1a\n"[..], &[7u8; 40]].concat(),
        ),
        "unreadable image header",
    ));
    bad.push((
        put(b.join("notes.txt"), b"some notes".to_vec()),
        "unknown extension '.txt'",
    ));
    bad.push((
        put(b.join("README"), b"readme".to_vec()),
        "no file extension",
    ));
    bad.push((
        put(root.join("stray.jpg"), jpeg_bytes(&pic(0))),
        "file outside the class folders",
    ));
    std::fs::create_dir_all(b.join("folder.jpg")).unwrap();
    bad.push((b.join("folder.jpg"), "is a directory"));
    std::os::unix::fs::symlink(b.join("loop.jpg"), b.join("loop.jpg")).unwrap();
    bad.push((b.join("loop.jpg"), "metadata"));
    std::os::unix::fs::symlink(b.join("gone.png"), b.join("dangling.png")).unwrap();
    bad.push((b.join("dangling.png"), "metadata"));

    // Unreadable: permission denied, unless the tests run as root (who reads anything).
    let locked = put(a.join("locked.jpg"), jpeg_bytes(&pic(0)));
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    if std::fs::read(&locked).is_ok() {
        good.push(locked);
    } else {
        bad.push((locked, "Permission denied"));
    }
    Tree { good, bad }
}

#[test]
fn every_bad_file_is_reported_and_every_good_one_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let tree = build(dir.path());
    assert!(tree.bad.len() >= 10);
    let ds = ImageDataset::image_folder(dir.path()).unwrap();
    let loader =
        ImageLoader::new(ds, Preprocess::imagenet().with_input_size(SIDE, SIDE)).prefetch(2);
    let request = EpochRequest {
        epoch: 0,
        seed: 3,
        batch_size: 4,
        train: true,
    };
    let loaded: usize = loader.batches(request).map(|b| b.unwrap().shape[0]).sum();
    let report = loader.bad_files();

    for (path, why) in &tree.bad {
        let entry = report
            .find(path)
            .unwrap_or_else(|| panic!("{} not reported:\n{}", path.display(), report.summary()));
        assert!(
            entry.reason.contains(why),
            "{}: '{}' lacks '{why}'",
            path.display(),
            entry.reason
        );
    }
    assert_eq!(report.len(), tree.bad.len(), "{}", report.summary());
    assert_eq!(loaded, tree.good.len(), "{}", report.summary());
    assert_eq!(
        loader.len(),
        tree.good.len() + 1,
        "the truncated JPEG passes the header scan"
    );
    let truncated = report.find(dir.path().join("a/truncated.jpg")).unwrap();
    assert_eq!(truncated.found, FoundAt::Load { epoch: 0 });
    assert_eq!(report.found_at_load(), 1);
    assert!(report.summary().contains("found while loading"));

    // A second pass skips the known-bad file and reports nothing new.
    let again: usize = loader
        .batches(EpochRequest {
            epoch: 1,
            ..request
        })
        .map(|b| b.unwrap().shape[0])
        .sum();
    assert_eq!(again, loaded);
    assert_eq!(loader.bad_files().len(), report.len());

    // verify() moves load-time failures to the scan report: no short batch afterwards.
    let verified = ImageDataset::image_folder(dir.path()).unwrap().verify();
    assert_eq!(verified.len(), tree.good.len());
    assert!(
        verified
            .bad_files()
            .find(dir.path().join("a/truncated.jpg"))
            .is_some()
    );
}

#[test]
fn odd_files_decode_to_upright_rgb8() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path());
    let l = DecodeLimits::default();
    let rotated = decode::decode_file(&dir.path().join("b/rotated.jpg"), &l).unwrap();
    assert_eq!(
        rotated.dimensions(),
        (20, 40),
        "EXIF orientation 6 turns 40x20 upright"
    );
    let gif = decode::decode_file(&dir.path().join("b/anim.gif"), &l).unwrap();
    assert_eq!(gif.dimensions(), (10, 8));
    let first = picture(10, 8, 1, 0);
    let diff = gif
        .pixels()
        .zip(first.pixels())
        .map(|(a, b)| {
            (0..3)
                .map(|c| (a[c] as i32 - b[c] as i32).abs())
                .max()
                .unwrap()
        })
        .max()
        .unwrap();
    assert!(
        diff < 40,
        "the first GIF frame (palette-quantised) is decoded, diff {diff}"
    );
    let gray = decode::decode_file(&dir.path().join("a/gray.png"), &l).unwrap();
    assert_eq!(gray.get_pixel(0, 0).0, [90, 90, 90]);
    let rgba = decode::decode_file(&dir.path().join("a/rgba.png"), &l).unwrap();
    assert_eq!(rgba.get_pixel(0, 0).0, [1, 2, 3]);
    let deep = decode::decode_file(&dir.path().join("a/deep16.png"), &l).unwrap();
    assert_eq!(deep.get_pixel(0, 0).0, [255, 0, 117]);
    write(
        &dir.path().join("x.png"),
        &picture(3, 3, 0, 0),
        ImageFormat::Png,
    );
}
