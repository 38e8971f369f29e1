//! A minimal PNG encoder (8-bit RGB, zlib "stored" blocks: no compression) and the confusion
//! matrix drawn as a heat map: what TensorBoard's image tab shows. Small images only, so the
//! missing compression costs nothing worth a dependency.

/// An RGB image: `width × height` pixels, row-major `[r, g, b]` bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct Rgb {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width · height · 3` bytes.
    pub pixels: Vec<u8>,
}

/// The PNG file of `image`.
pub fn encode_png(image: &Rgb) -> Vec<u8> {
    let row = image.width as usize * 3;
    // each scanline: filter type 0 (none), then its bytes
    let mut raw = Vec::with_capacity((row + 1) * image.height as usize);
    for line in image.pixels.chunks(row.max(1)).take(image.height as usize) {
        raw.push(0);
        raw.extend_from_slice(line);
    }
    let mut zlib = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(65_535).collect();
    if blocks.is_empty() {
        zlib.extend_from_slice(&[1, 0, 0, 0xFF, 0xFF]);
    }
    for (i, block) in blocks.iter().enumerate() {
        zlib.push(u8::from(i + 1 == blocks.len()));
        let len = block.len() as u16;
        zlib.extend_from_slice(&len.to_le_bytes());
        zlib.extend_from_slice(&(!len).to_le_bytes());
        zlib.extend_from_slice(block);
    }
    zlib.extend_from_slice(&adler32(&raw).to_be_bytes());

    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut header = Vec::new();
    header.extend_from_slice(&image.width.to_be_bytes());
    header.extend_from_slice(&image.height.to_be_bytes());
    header.extend_from_slice(&[8, 2, 0, 0, 0]); // 8 bits, RGB, deflate, no filter, no interlace
    chunk(&mut png, b"IHDR", &header);
    chunk(&mut png, b"IDAT", &zlib);
    chunk(&mut png, b"IEND", &[]);
    png
}

/// `confusion[true][predicted]` as a heat map: one `cell × cell` square per entry, white for
/// none of the true class's images to full blue for all of them (each row normalised, so
/// rare classes are as visible as common ones), true classes down, predictions across.
pub fn confusion_heat_map(confusion: &[Vec<u64>], cell: u32) -> Rgb {
    let k = confusion.len();
    let side = k as u32 * cell;
    let mut pixels = vec![0u8; (side * side * 3) as usize];
    for (t, row) in confusion.iter().enumerate() {
        let total: u64 = row.iter().sum();
        for (p, &count) in row.iter().enumerate().take(k) {
            let share = if total == 0 {
                0.0
            } else {
                count as f64 / total as f64
            };
            // white (255, 255, 255) → blue (8, 48, 107), as matplotlib's "Blues"
            let mix = |white: f64, blue: f64| (white + (blue - white) * share).round() as u8;
            let colour = [mix(255.0, 8.0), mix(255.0, 48.0), mix(255.0, 107.0)];
            for y in t as u32 * cell..(t as u32 + 1) * cell {
                for x in p as u32 * cell..(p as u32 + 1) * cell {
                    let at = ((y * side + x) * 3) as usize;
                    pixels[at..at + 3].copy_from_slice(&colour);
                }
            }
        }
    }
    Rgb {
        width: side,
        height: side,
        pixels,
    }
}

fn chunk(png: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    png.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = png.len();
    png.extend_from_slice(kind);
    png.extend_from_slice(data);
    let crc = crc32(&png[start..]);
    png.extend_from_slice(&crc.to_be_bytes());
}

/// CRC-32 (IEEE, reflected polynomial 0xEDB88320), as PNG chunks carry.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= byte as u32;
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in data {
        a = (a + byte as u32) % 65_521;
        b = (b + a) % 65_521;
    }
    (b << 16) | a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_match_their_published_check_values() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
    }

    #[test]
    fn a_heat_map_colours_each_row_by_its_share() {
        let map = confusion_heat_map(&[vec![2, 0], vec![1, 1]], 2);
        assert_eq!((map.width, map.height), (4, 4));
        let px = |x: u32, y: u32| {
            let at = ((y * 4 + x) * 3) as usize;
            [map.pixels[at], map.pixels[at + 1], map.pixels[at + 2]]
        };
        assert_eq!(px(0, 0), [8, 48, 107]); // all of class 0 predicted 0
        assert_eq!(px(3, 1), [255, 255, 255]); // none predicted 1
        assert_eq!(px(2, 3), [132, 152, 181]); // half of class 1
        let png = encode_png(&map);
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&png[12..16], b"IHDR");
    }
}
