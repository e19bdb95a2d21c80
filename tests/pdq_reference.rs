//! PDQ bit-identity with Meta's reference implementation: the PyPI package `pdqhash`
//! (the ThreatExchange C++ behind a Python wrapper, installed by `make setup`) hashes the
//! same RGB pixels as `media::pdq`, and every hash, dihedral variant and quality must be
//! equal. The image set: the 27 real images of the fidelity set (photos, drawings,
//! grayscale, alpha flattened, tiny), each also at a few other sizes, and generated ones
//! (flat drawings, noise, gradients, tiny, huge, extreme aspect ratios, the sizes around
//! PDQ's 64×64 special case).
//!
//! Also: what PDQ matching promises operators, that a re-encoded or resized copy of an
//! image stays within the match distance (31) and an unrelated image does not.

mod support;

use edge_moderation::media::pdq::{self, PdqHash};
use image::imageops::FilterType;
use image::{DynamicImage, RgbImage};
use std::collections::BTreeMap;
use std::path::Path;
use support::fidelity_image;

/// Deterministic pseudo-random bytes (an LCG): the same images on every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u8 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 56) as u8
    }
}

fn generated() -> Vec<(String, RgbImage)> {
    let mut out = Vec::new();
    let mut rng = Lcg(7);
    let noise = |w: u32, h: u32, rng: &mut Lcg| {
        RgbImage::from_fn(w, h, |_, _| {
            image::Rgb([rng.next(), rng.next(), rng.next()])
        })
    };
    for (w, h) in [
        (1, 1),
        (2, 3),
        (4, 4),
        (5, 5),
        (7, 5),
        (63, 64),
        (64, 64),
        (65, 64),
        (64, 65),
        (127, 128),
        (1, 100),
    ] {
        out.push((format!("noise{w}x{h}"), noise(w, h, &mut rng)));
    }
    let gradient = |w: u32, h: u32| {
        RgbImage::from_fn(w, h, |x, y| {
            let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
            let wave = ((fx * 9.0).sin() * (fy * 5.0).cos() * 60.0) as i32;
            image::Rgb([
                (fx * 200.0) as u8,
                (100 + wave).clamp(0, 255) as u8,
                (fy * 255.0) as u8,
            ])
        })
    };
    for (w, h) in [
        (3000, 2000),
        (4000, 16),
        (16, 4000),
        (12000, 7),
        (640, 480),
        (333, 777),
    ] {
        out.push((format!("gradient{w}x{h}"), gradient(w, h)));
    }
    // Flat drawings: rectangles of a few colours with hard edges, and a flat image.
    for seed in 0..4u64 {
        let mut rng = Lcg(seed + 100);
        let mut drawing = RgbImage::from_pixel(400, 300, image::Rgb([250, 250, 245]));
        for _ in 0..12 {
            let (x0, y0) = (
                u32::from(rng.next()) * 400 / 256,
                u32::from(rng.next()) * 300 / 256,
            );
            let (w, h) = (u32::from(rng.next()) / 2 + 5, u32::from(rng.next()) / 2 + 5);
            let colour = image::Rgb([rng.next(), rng.next(), rng.next()]);
            for y in y0..(y0 + h).min(300) {
                for x in x0..(x0 + w).min(400) {
                    drawing.put_pixel(x, y, colour);
                }
            }
        }
        out.push((format!("drawing{seed}"), drawing));
    }
    out.push((
        "flat".into(),
        RgbImage::from_pixel(200, 100, image::Rgb([90, 120, 30])),
    ));
    out
}

fn real() -> Vec<(String, RgbImage)> {
    let dir = support::repo().join("models/fidelity/images");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("the fidelity set")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".png"))
        .collect();
    names.sort();
    let mut out = Vec::new();
    for name in names {
        let image = fidelity_image(&name);
        let stem = name.trim_end_matches(".png").to_string();
        out.push((stem.clone(), image.to_rgb8()));
        if image.width() > 64 {
            let half = image.resize_exact(
                image.width() / 2 + 1,
                image.height() / 2 + 1,
                FilterType::Triangle,
            );
            out.push((format!("{stem}-half"), half.to_rgb8()));
        }
    }
    out
}

/// The reference's answers for `images`, by name.
fn reference(images: &[(String, RgbImage)], dir: &Path) -> BTreeMap<String, Vec<String>> {
    std::fs::create_dir_all(dir).unwrap();
    for (name, image) in images {
        let file = dir.join(format!("{name}_{}x{}.rgb", image.width(), image.height()));
        std::fs::write(file, image.as_raw()).unwrap();
    }
    support::run_reference("pdq_reference.py", &[dir], "pdqhash")
        .lines()
        .map(|line| {
            let mut fields = line.split('\t').map(str::to_owned);
            let name = fields.next().unwrap();
            (name, fields.collect())
        })
        .collect()
}

#[test]
fn hashes_are_bit_identical_to_the_reference() {
    let images: Vec<(String, RgbImage)> = real().into_iter().chain(generated()).collect();
    let dir = std::env::temp_dir().join(format!("edge-moderation-pdq-{}", std::process::id()));
    let expected = reference(&images, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        expected.len(),
        images.len(),
        "the reference hashed every image"
    );
    let mut differences = Vec::new();
    for (name, image) in &images {
        let (w, h) = (image.width() as usize, image.height() as usize);
        let fields = &expected[name];
        let ours = pdq::hash_rgb(image.as_raw(), w, h).expect("hashable");
        let (variants, dihedral_quality) =
            pdq::hash_rgb_dihedral(image.as_raw(), w, h).expect("hashable");
        let mut mine = vec![ours.hash.to_hex(), ours.quality.to_string()];
        mine.extend(variants.iter().map(PdqHash::to_hex));
        mine.push(dihedral_quality.to_string());
        if &mine != fields {
            differences.push(format!(
                "{name} ({w}x{h}):\n  ours {mine:?}\n  reference {fields:?}"
            ));
        }
    }
    assert!(
        differences.is_empty(),
        "{} of {} images differ:\n{}",
        differences.len(),
        images.len(),
        differences.join("\n")
    );
    eprintln!(
        "PDQ: {} images bit-identical to pdqhash (hash, quality, 8 dihedral variants)",
        images.len()
    );
}

fn hash(image: &DynamicImage) -> PdqHash {
    let rgb = image.to_rgb8();
    pdq::hash_rgb(rgb.as_raw(), rgb.width() as usize, rgb.height() as usize)
        .unwrap()
        .hash
}

fn jpeg(image: &DynamicImage, quality: u8) -> DynamicImage {
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, quality)
        .encode_image(&image.to_rgb8())
        .unwrap();
    image::load_from_memory(&bytes).unwrap()
}

#[test]
fn copies_match_within_31_bits_and_other_images_do_not() {
    let photos = [
        "photo_astronaut.png",
        "photo_cat.png",
        "photo_coffee.png",
        "photo_motorcycle.png",
        "gray_camera.png",
    ];
    let originals: Vec<(String, PdqHash, DynamicImage)> = photos
        .iter()
        .map(|name| {
            let image = DynamicImage::ImageRgb8(fidelity_image(name).to_rgb8());
            (name.to_string(), hash(&image), image)
        })
        .collect();
    for (name, original, image) in &originals {
        let (w, h) = (image.width(), image.height());
        let copies = [
            ("JPEG q50", jpeg(image, 50)),
            (
                "JPEG q90 at 60%",
                jpeg(
                    &image.resize(w * 3 / 5, h * 3 / 5, FilterType::Triangle),
                    90,
                ),
            ),
            (
                "at 30%",
                image.resize(w * 3 / 10, h * 3 / 10, FilterType::CatmullRom),
            ),
            (
                "at 150%",
                image.resize(w * 3 / 2, h * 3 / 2, FilterType::Lanczos3),
            ),
        ];
        for (how, copy) in copies {
            let distance = hash(&copy).distance(original);
            assert!(distance <= 31, "{name} {how}: distance {distance}");
        }
        for (other, other_hash, _) in &originals {
            if other != name {
                let distance = other_hash.distance(original);
                assert!(distance > 31, "{name} vs {other}: distance {distance}");
            }
        }
    }
}
