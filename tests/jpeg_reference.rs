//! The sampled JPEG decoder (`media::jpeg`) against libjpeg-turbo, the decoder browsers
//! use, through Pillow (`tests/reference/jpeg_reference.py`): every pixel nsfwjs's resize
//! reads, and a spread of others, must be identical, for 4:4:4, 4:2:2, 4:2:0 and grey
//! JPEGs of odd and even sizes up to 12 megapixels, qualities 20 to 100, with and without
//! restart intervals, sequential or progressive (Pillow's progression and jpeg-encoder's).
//! Identical pixels make identical scores, and the test checks that too: each JPEG judged
//! through the service's decode path scores as the model scores libjpeg-turbo's full-size
//! decode (the bound is 0.02).

mod support;

use edge_moderation::classifier::preprocess::{preprocess_gathered, read_positions};
use edge_moderation::classifier::{preprocess, Class, Classifier};
use edge_moderation::media::decode::{decode_reduced, DecodeLimits};
use edge_moderation::media::jpeg::{decode_sampled, Plan};
use edge_moderation::media::ImageFormat;
use image::imageops::FilterType;
use image::{DynamicImage, RgbImage};
use jpeg_encoder::{ColorType, Encoder, SamplingFactor};
use std::path::Path;

fn references(dir: &Path) {
    // Another encoder's progression (spectral selection only, no refinement scans).
    std::fs::create_dir_all(dir).unwrap();
    let photo = support::fidelity_image("photo_coffee.png").to_rgb8();
    let variants = [
        (
            "enc_progressive_420",
            1201,
            901,
            SamplingFactor::F_2_2,
            0,
            ColorType::Rgb,
        ),
        (
            "enc_progressive_444_restart",
            640,
            481,
            SamplingFactor::F_1_1,
            7,
            ColorType::Rgb,
        ),
        (
            "enc_progressive_grey",
            333,
            555,
            SamplingFactor::F_1_1,
            0,
            ColorType::Luma,
        ),
    ];
    for (name, width, height, sampling, restart, colour) in variants {
        let resized = image::imageops::resize(&photo, width, height, FilterType::CatmullRom);
        let pixels = match colour {
            ColorType::Luma => DynamicImage::ImageRgb8(resized).to_luma8().into_raw(),
            _ => resized.into_raw(),
        };
        let mut jpeg = Vec::new();
        let mut encoder = Encoder::new(&mut jpeg, 82);
        encoder.set_progressive(true);
        encoder.set_sampling_factor(sampling);
        encoder.set_restart_interval(restart);
        encoder
            .encode(&pixels, width as u16, height as u16, colour)
            .unwrap();
        std::fs::write(dir.join(format!("{name}.jpg")), jpeg).unwrap();
    }
    let sources = support::repo().join("models/fidelity/images");
    support::run_reference("jpeg_reference.py", &[&sources, dir], "Pillow");
}

/// nsfwjs's positions on each axis, plus every 5th row and every 3rd column (and the
/// last ones), so that exactness is not only checked where the resize happens to read.
fn plan(width: u32, height: u32) -> Option<Plan> {
    let spread = |len: u32, step: u32| {
        let mut at = read_positions(len as usize);
        at.extend((0..len).step_by(step as usize));
        at.push(len - 1);
        at.sort_unstable();
        at.dedup();
        at
    };
    Some(Plan {
        rows: spread(height, 5),
        columns: spread(width, 3),
        preview_per_block: 2,
    })
}

#[test]
fn sampled_pixels_are_identical_to_libjpeg_turbo() {
    let dir = std::env::temp_dir().join(format!("edge-moderation-jpeg-{}", std::process::id()));
    references(&dir);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rgb"))
        .collect();
    files.sort();
    assert!(files.len() >= 50, "only {} references", files.len());
    let mut failures = Vec::new();
    let mut checked = 0usize;
    let classifier = Classifier::load().unwrap();
    let limits = DecodeLimits {
        max_pixels: 50_000_000,
        max_dimension: 16384,
        max_canvas_bytes: u64::MAX,
        reduce_jpeg: true,
    };
    let (mut worst, mut worst_at) = (0f32, String::new());
    for rgb in &files {
        let stem = rgb.file_stem().unwrap().to_str().unwrap();
        let (name, size) = stem.rsplit_once('_').unwrap();
        let (w, h) = size.split_once('x').unwrap();
        let (width, height): (u32, u32) = (w.parse().unwrap(), h.parse().unwrap());
        let expected = std::fs::read(rgb).unwrap();
        let jpeg = std::fs::read(dir.join(format!("{name}.jpg"))).unwrap();
        let mut asked = None;
        let sampled = match decode_sampled(&jpeg, |w, h| {
            let p = plan(w, h)?;
            asked = Some((p.rows.clone(), p.columns.clone()));
            Some(p)
        }) {
            Ok(sampled) => sampled,
            Err(e) => {
                failures.push(format!("{name}: {e:?}"));
                continue;
            }
        };
        let (rows, columns) = asked.unwrap();
        assert_eq!((sampled.width, sampled.height), (width, height), "{name}");
        let pixels = sampled.pixels.to_rgb8();
        let mut wrong = 0usize;
        let mut first = None;
        for (j, &y) in rows.iter().enumerate() {
            for (i, &x) in columns.iter().enumerate() {
                let at = ((y * width + x) * 3) as usize;
                let theirs = &expected[at..at + 3];
                let ours = pixels.get_pixel(i as u32, j as u32).0;
                if ours != theirs {
                    wrong += 1;
                    first.get_or_insert(format!(
                        "({x}, {y}): ours {ours:?}, libjpeg-turbo {theirs:?}"
                    ));
                }
                checked += 1;
            }
        }
        if wrong > 0 {
            failures.push(format!(
                "{name}: {wrong} pixels differ, first {}",
                first.unwrap()
            ));
        }
        let preview = sampled.preview.to_rgb8();
        assert_eq!(
            preview.dimensions(),
            (width.div_ceil(4), height.div_ceil(4)),
            "{name}"
        );

        // Scores: the service's decode path against libjpeg-turbo's full decode.
        let decoded = decode_reduced(&jpeg, ImageFormat::Jpeg, limits).unwrap();
        let gathered = decoded.gathered.as_ref().expect("JPEGs are sampled");
        let ours = classifier.classify(preprocess_gathered(gathered)).unwrap();
        let full = DynamicImage::ImageRgb8(RgbImage::from_raw(width, height, expected).unwrap());
        let reference = classifier.classify(preprocess(&full)).unwrap();
        for class in Class::ALL {
            let delta = (ours.get(class) - reference.get(class)).abs();
            if delta > worst {
                (worst, worst_at) = (delta, format!("{name} {}", class.name()));
            }
        }
    }
    let progressive = files
        .iter()
        .filter(|f| f.to_string_lossy().contains("progressive"))
        .count();
    assert!(progressive >= 10, "only {progressive} progressive JPEGs");
    let _ = std::fs::remove_dir_all(&dir);
    support::assert_all_agree(&failures, files.len());
    eprintln!(
        "sampled JPEG decode: {checked} pixels of {} JPEGs identical to libjpeg-turbo; \
         scores vs libjpeg-turbo's full decode: max |Δp| = {worst:.2e} ({worst_at})",
        files.len()
    );
    assert!(worst <= 0.02, "max |Δp| = {worst} at {worst_at}");
}
