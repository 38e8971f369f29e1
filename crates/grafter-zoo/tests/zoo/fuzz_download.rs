//! Fuzzing of the weight downloader (`grafter_zoo::download::Downloader`) against a loopback
//! server that answers every request with a mutated response: the status set to a redirect,
//! an error, 206 or 416, `Content-Length` and `Content-Range` set to edge values (0, ±1 off,
//! doubled, 2⁶³, negative, not a number), `Transfer-Encoding: chunked` with malformed chunk
//! sizes, bodies cut short or running over, or the response's bytes mutated. Each case
//! downloads with the published SHA-256 and size, with the size only, or with neither (a
//! third each). It must end with a typed error naming the URL or the file, or with a file
//! that passes the checks asked for — the published bytes under a digest, the published
//! length under a size (a same-length body of other bytes is what a size alone cannot catch)
//! — and never leave a file at the destination that fails them; within the harness's memory
//! limit and timeout (tests/support/fuzz_harness.rs), so a hang is a failure. 200 cases in
//! the test command.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use grafter_zoo::download::Downloader;
use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use sha2::{Digest, Sha256};

use crate::fuzz_harness::{Target, drive, mutate};

/// The published file.
fn body() -> Vec<u8> {
    (0..4096u32).map(|i| (i * 7 % 251) as u8).collect()
}

fn response(head: &[String], body: &[u8]) -> Vec<u8> {
    let mut out = head.join("\r\n").into_bytes();
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body);
    out
}

fn seeds(_: &Path) -> Vec<Vec<u8>> {
    let b = body();
    let n = b.len();
    vec![
        response(
            &[
                "HTTP/1.1 200 OK".into(),
                format!("Content-Length: {n}"),
                "Connection: close".into(),
            ],
            &b,
        ),
        // a length-less body, ended by closing the connection
        response(&["HTTP/1.1 200 OK".into(), "Connection: close".into()], &b),
        response(
            &[
                "HTTP/1.1 206 Partial Content".into(),
                format!("Content-Range: bytes 0-{}/{n}", n - 1),
                format!("Content-Length: {n}"),
                "Connection: close".into(),
            ],
            &b,
        ),
    ]
}

/// Header values worth sending in place of a length or a range.
fn odd_number(rng: &mut StdRng, n: usize) -> String {
    [
        "0".to_string(),
        format!("{}", n - 1),
        format!("{}", n + 1),
        format!("{}", 2 * n),
        format!("{}", 1u64 << 63),
        "18446744073709551615".into(),
        "-1".into(),
        "abc".into(),
        String::new(),
    ]
    .choose(rng)
    .unwrap()
    .clone()
}

/// Rewrites the status, lengths, ranges, encoding or body (two cases in three), or mutates
/// the response's bytes.
fn mutate_response(seed: &[u8], rng: &mut StdRng) -> Vec<u8> {
    if rng.random_range(0..3) == 0 {
        return mutate(seed, rng);
    }
    let split = seed
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(seed.len());
    let mut head: Vec<String> = String::from_utf8_lossy(&seed[..split])
        .split("\r\n")
        .map(str::to_string)
        .collect();
    let n = body().len();
    let mut body = seed.get(split + 4..).unwrap_or_default().to_vec();
    for _ in 0..rng.random_range(1..=3) {
        match rng.random_range(0..6) {
            0 => {
                let status = [
                    "200 OK",
                    "206 Partial Content",
                    "301 Moved Permanently",
                    "302 Found",
                    "404 Not Found",
                    "416 Range Not Satisfiable",
                    "500 Internal Server Error",
                    "999 Odd",
                    "0",
                ];
                head[0] = format!("HTTP/1.1 {}", status.choose(rng).unwrap());
            }
            1 => {
                head.retain(|h| !h.starts_with("Content-Length"));
                head.push(format!("Content-Length: {}", odd_number(rng, n)));
            }
            2 => {
                head.retain(|h| !h.starts_with("Content-Range"));
                let (a, b, t) = (odd_number(rng, n), odd_number(rng, n), odd_number(rng, n));
                head.push(format!("Content-Range: bytes {a}-{b}/{t}"));
            }
            3 => {
                head.retain(|h| !h.starts_with("Content-Length"));
                head.push("Transfer-Encoding: chunked".into());
                let size = *["1000", "ffffffffffffffff", "zz", "-5", "0"]
                    .choose(rng)
                    .unwrap();
                let mut chunked = format!("{size}\r\n").into_bytes();
                chunked.extend_from_slice(&body);
                chunked.extend_from_slice(b"\r\n0\r\n\r\n");
                body = chunked;
            }
            4 => body.truncate(rng.random_range(0..=body.len())),
            _ => {
                let extra = rng.random_range(1..5000);
                body.extend((0..extra).map(|_| rng.random::<u8>()));
            }
        }
    }
    response(&head, &body)
}

/// Serves `reply` to up to four connections on 127.0.0.1, for at most five seconds.
fn serve(reply: Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}/weights.bin", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut served = 0;
        while served < 4 && Instant::now() < deadline {
            match listener.accept() {
                Ok((mut stream, _)) => {
                    served += 1;
                    let _ = stream.set_nonblocking(false);
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16384 {
                        match stream.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(k) => head.extend_from_slice(&buf[..k]),
                        }
                    }
                    let _ = stream.write_all(&reply);
                    let _ = stream.flush();
                    let _ = stream.shutdown(std::net::Shutdown::Both);
                }
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
    });
    url
}

fn run(input: &[u8], dir: &Path) {
    let published = body();
    let digest = format!("{:x}", Sha256::digest(&published));
    let url = serve(input.to_vec());
    let dest = dir.join("weights.bin");
    // which checks this case asks for: a function of the case, so it replays
    let checks = input.iter().fold(0u8, |a, &b| a.wrapping_add(b)) % 3;
    let (sha, size) = match checks {
        0 => (Some(digest.as_str()), Some(published.len() as u64)),
        1 => (None, Some(published.len() as u64)),
        _ => (None, None),
    };
    let downloader = Downloader::new()
        .progress(false)
        .retries(1)
        .env_proxy(false)
        .connect_timeout(Duration::from_secs(2))
        .response_timeout(Duration::from_secs(2))
        .stall_timeout(Duration::from_millis(500));
    let outcome = match downloader.download_exact(&url, &dest, sha, size) {
        Ok(path) => {
            let got = std::fs::read(&path).unwrap();
            match checks {
                0 => assert!(
                    got == published,
                    "a digest-checked download kept other bytes"
                ),
                1 => assert_eq!(got.len(), published.len(), "a size-checked download"),
                _ => {}
            }
            match (got == published, checks) {
                (true, _) => "downloaded",
                (false, 1) => "downloaded_other_bytes_of_the_size",
                (false, _) => "downloaded_other_bytes_unchecked",
            }
        }
        Err(e) => {
            let text = e.to_string();
            assert!(
                text.contains(&url) || text.contains(&dest.display().to_string()),
                "the error names neither the URL nor the file: {text}"
            );
            if let Ok(left) = std::fs::read(&dest) {
                match checks {
                    0 => assert!(left == published, "a failed download left other bytes"),
                    1 => assert_eq!(left.len(), published.len(), "a failed download left"),
                    _ => {}
                }
            }
            "refused"
        }
    };
    println!("OUTCOME {outcome}");
}

/// The seeds download (the cases start from responses that work).
#[test]
fn the_download_seeds_download() {
    let dir = tempfile::tempdir().unwrap();
    for (i, seed) in seeds(dir.path()).into_iter().enumerate() {
        let case = dir.path().join(format!("seed{i}"));
        std::fs::create_dir_all(&case).unwrap();
        let url = serve(seed);
        let dest = case.join("weights.bin");
        let published = body();
        let digest = format!("{:x}", Sha256::digest(&published));
        Downloader::new()
            .progress(false)
            .env_proxy(false)
            .download_exact(&url, &dest, Some(&digest), Some(published.len() as u64))
            .unwrap_or_else(|e| panic!("seed {i}: {e}"));
        assert_eq!(std::fs::read(&dest).unwrap(), published);
    }
}

#[test]
fn fuzz_weight_downloads() {
    drive(
        Target {
            name: "download",
            seeds,
            mutate: mutate_response,
            run,
            cases: 200,
        },
        "fuzz_download::fuzz_weight_downloads",
    )
    .unwrap();
}
