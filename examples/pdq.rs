//! PDQ for list maintenance, and its benchmark.
//!
//! ```text
//! cargo run --release --example pdq -- FILE…        # "<hex> <quality> FILE" per image
//! cargo run --release --example pdq -- pack < list.txt > list.bin   # text list -> packed
//! cargo run --release --example pdq -- bench RUNS   # hashing and 100k-entry matching cost
//! ```
//!
//! The hash is of the image as the service judges it: decoded, EXIF orientation applied,
//! alpha dropped (the RGB channels). `bench` prints JSON lines; `make bench` runs it
//! natively and as Wasm under `viceroy run`.

use edge_moderation::media::decode::decode_reduced;
use edge_moderation::media::pdq::{self, PdqHash};
use edge_moderation::media::ImageFormat;
use edge_moderation::moderation::budget;
use edge_moderation::moderation::known::{KnownList, KnownLists, Probe};
use edge_moderation::policy::Policy;
use std::io::{Read, Write};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("pack") => pack(),
        Some("bench") => {
            bench(args.get(1).and_then(|r| r.parse().ok()).unwrap_or(15));
            Ok(())
        }
        Some(_) => hash_files(&args),
        None => Err("usage: pdq FILE… | pdq pack < list.txt > list.bin | pdq bench RUNS".into()),
    };
    if let Err(why) = result {
        eprintln!("pdq: {why}");
        std::process::exit(1);
    }
}

fn hash_files(files: &[String]) -> Result<(), String> {
    // Full size: list entries should not depend on the service's reduced decoding.
    let mut policy = Policy::default();
    policy.limits.reduced_jpeg_decode = false;
    let limits = budget::decode_limits(&policy.limits);
    for file in files {
        let bytes = std::fs::read(file).map_err(|e| format!("{file}: {e}"))?;
        let format = ImageFormat::sniff(&bytes).ok_or(format!("{file}: not an image we decode"))?;
        let decoded = decode_reduced(&bytes, format, limits).map_err(|e| format!("{file}: {e}"))?;
        let rgb = decoded.image.to_rgb8();
        let found = pdq::hash_rgb(rgb.as_raw(), rgb.width() as usize, rgb.height() as usize)
            .ok_or(format!("{file}: cannot be hashed"))?;
        println!("{} {} {file}", found.hash.to_hex(), found.quality);
    }
    Ok(())
}

fn pack() -> Result<(), String> {
    let mut text = Vec::new();
    std::io::stdin()
        .read_to_end(&mut text)
        .map_err(|e| e.to_string())?;
    let list = KnownList::parse(&text).map_err(|e| e.to_string())?;
    std::io::stdout()
        .write_all(&list.pack())
        .map_err(|e| e.to_string())?;
    eprintln!("pdq: packed {} entries", list.len());
    Ok(())
}

/// Deterministic pseudo-random bits (an LCG).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0
    }

    fn hash(&mut self) -> PdqHash {
        let mut bytes = [0u8; 32];
        for chunk in bytes.chunks_exact_mut(8) {
            chunk.copy_from_slice(&self.next().to_be_bytes());
        }
        PdqHash(bytes)
    }
}

fn median_ms(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn timed(runs: usize, mut work: impl FnMut()) -> f64 {
    work();
    median_ms(
        (0..runs)
            .map(|_| {
                let started = Instant::now();
                work();
                started.elapsed().as_secs_f64() * 1e3
            })
            .collect(),
    )
}

fn bench(runs: usize) {
    let target = if cfg!(target_arch = "wasm32") {
        "wasm32"
    } else {
        "native"
    };
    let mut rng = Lcg(42);
    for (w, h) in [(1024usize, 768usize), (4000, 3000)] {
        let pixels: Vec<u8> = (0..w * h * 3)
            .map(|i| ((i % 251) as u8) ^ (rng.next() >> 60) as u8)
            .collect();
        let plain = timed(runs, || {
            std::hint::black_box(pdq::hash_rgb(&pixels, w, h));
        });
        let dihedral = timed(runs, || {
            std::hint::black_box(pdq::hash_rgb_dihedral(&pixels, w, h));
        });
        println!(
            "{{\"target\": \"{target}\", \"stage\": \"pdq hash\", \"size\": \"{w}x{h}\", \"ms\": {plain:.3}, \"dihedral_ms\": {dihedral:.3}}}"
        );
    }
    let mut list = KnownList::default();
    for i in 0..100_000 {
        list.push(&rng.hash(), &format!("entry {i}"));
    }
    let packed = list.pack();
    let parse = timed(runs, || {
        std::hint::black_box(KnownList::parse(&packed).ok());
    });
    let known = KnownLists {
        deny: Some(std::sync::Arc::new(list)),
        allow: None,
        max_distance: 31,
        min_quality: 50,
        dihedral: false,
    };
    let probe = Probe {
        hashes: vec![rng.hash()],
        quality: 100,
    };
    let scan = timed(runs, || {
        std::hint::black_box(known.decide(std::slice::from_ref(&probe)));
    });
    let dihedral_probe = Probe {
        hashes: (0..8).map(|_| rng.hash()).collect(),
        quality: 100,
    };
    let scan8 = timed(runs, || {
        std::hint::black_box(known.decide(std::slice::from_ref(&dihedral_probe)));
    });
    println!(
        "{{\"target\": \"{target}\", \"stage\": \"pdq list of 100000\", \"packed_bytes\": {}, \"parse_ms\": {parse:.3}, \"match_ms\": {scan:.3}, \"match_dihedral_ms\": {scan8:.3}}}",
        packed.len()
    );
}
