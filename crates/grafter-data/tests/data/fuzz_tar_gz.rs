//! Seeded mutation fuzzing of `.tar.gz` extraction (`grafter_data::archive`, the path a
//! Food-101 download takes): a small image-folder data set, tarred and gzipped for real
//! (Huffman-coded, so a flipped bit changes the decoded bytes), mutated in its gzip header
//! (flags, optional fields), its deflate stream and its trailer (CRC-32, length), or anywhere
//! by the harness's byte mutations (bit flips, truncations, byte runs). Every case must extract
//! exactly the data set or be refused with an error naming a file of the case; no panic, no
//! hang, no allocation beyond the harness's limit. 2000 cases in the test command (about a
//! second).

use std::io::Write;
use std::path::Path;

use grafter_data::ExtractLimits;
use grafter_data::image::ImageFormat;
use rand::Rng;
use rand::rngs::StdRng;

use crate::common::{picture, write};
use crate::fuzz::tar;
use crate::fuzz_harness::{Target, drive, mutate};

/// The data set's files: two classes of small PNGs and a text file, as (path, bytes).
fn files() -> Vec<(String, Vec<u8>)> {
    let dir = tempfile::tempdir().unwrap();
    let mut out = Vec::new();
    for (class, name) in [(0, "cat/0.png"), (1, "cat/1.png"), (2, "dog/0.png")] {
        let path = dir.path().join("x.png");
        write(&path, &picture(12, 10, class, 0), ImageFormat::Png);
        out.push((name.to_string(), std::fs::read(&path).unwrap()));
    }
    out.push(("classes.txt".into(), b"cat\ndog\n".to_vec()));
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

fn seeds(_: &Path) -> Vec<Vec<u8>> {
    let files = files();
    let mut entries: Vec<(&str, &[u8], u8)> = vec![("cat/", b"", b'5'), ("dog/", b"", b'5')];
    entries.extend(files.iter().map(|(n, b)| (n.as_str(), b.as_slice(), b'0')));
    vec![gzip(&tar(&entries))]
}

/// Aims at the gzip container a third of the time: header bytes (flags set to announce
/// optional fields that are not there, or cleared), the trailer's CRC and length, or a bit of
/// the deflate stream; the harness's byte mutations otherwise.
fn mutate_gz(seed: &[u8], rng: &mut StdRng) -> Vec<u8> {
    let mut v = seed.to_vec();
    let n = v.len();
    match rng.random_range(0..6) {
        0 => v[3] = rng.random(), // FLG: FTEXT FHCRC FEXTRA FNAME FCOMMENT, reserved bits
        1 => v[rng.random_range(n - 8..n)] ^= 1 << rng.random_range(0..8), // CRC-32, ISIZE
        2 => v[rng.random_range(10..n - 8)] ^= 1 << rng.random_range(0..8), // deflate data
        _ => return mutate(seed, rng),
    }
    v
}

fn extract(input: &[u8], dir: &Path) {
    let archive = dir.join("case.tar.gz");
    std::fs::write(&archive, input).unwrap();
    let out = dir.join("out");
    let limits = ExtractLimits {
        max_entries: 64,
        max_entry_bytes: 1 << 20,
        max_total_bytes: 4 << 20,
        ..ExtractLimits::default()
    };
    // the harness tallies these
    match grafter_data::archive::extract_tar_with_limits(&archive, &out, &limits) {
        Ok(extracted) => {
            // what comes out is the data set, byte for byte, or nothing at all
            let files = files();
            assert_eq!(extracted.files, files.len());
            for (name, bytes) in files {
                assert!(
                    std::fs::read(out.join(&name)).is_ok_and(|b| b == bytes),
                    "{name} extracted with other bytes than archived"
                );
            }
            println!("OUTCOME extracted");
        }
        Err(e) => {
            let text = e.to_string();
            assert!(
                text.contains(&dir.display().to_string()),
                "the error names no file of the case: {text}"
            );
            assert!(!out.exists(), "a refused archive left {}", out.display());
            let why = if text.contains("checksum") {
                "refused_crc"
            } else if text.contains("deflate") || text.contains("gzip") {
                "refused_gzip"
            } else if text.contains("corrupt archive") || text.contains("not a tar") {
                "refused_tar"
            } else {
                "refused_other"
            };
            println!("OUTCOME {why}");
        }
    }
}

/// The seed extracts to the data set (the fuzz cases start from an archive that works).
#[test]
fn the_tar_gz_seed_extracts() {
    let dir = tempfile::tempdir().unwrap();
    let seed = &seeds(dir.path())[0];
    extract(seed, dir.path());
    assert!(dir.path().join("out/dog/0.png").is_file());
}

#[test]
fn fuzz_tar_gz_extraction() {
    drive(
        Target {
            name: "tar_gz",
            seeds,
            mutate: mutate_gz,
            run: extract,
            cases: 2000,
        },
        "fuzz_tar_gz::fuzz_tar_gz_extraction",
    )
    .unwrap();
}
