//! The AVIF decoder (rav1d through `media::decode`) against libavif's decode of the same
//! files through Pillow (`tests/reference/avif_reference.py`): 4:2:0, 4:2:2, 4:4:4 and
//! 4:0:0, full and limited range, with alpha, at odd sizes, and rotated or mirrored by
//! `irot`/`imir` as browsers show them. The AV1 planes are the same (both are dav1d); the
//! YUV-to-RGB conversion and chroma upsampling are ours, so pixels may differ by a few
//! levels (more on pure noise), and the model's scores by far less than the 0.02.

mod support;

use edge_moderation::classifier::{Class, Classifier};
use edge_moderation::media::decode::{decode_reduced, DecodeLimits};
use edge_moderation::media::ImageFormat;
use image::{DynamicImage, RgbaImage};

/// The largest difference allowed in any channel of any pixel, and on average. Photos and
/// drawings come within 6 levels; random noise, where every chroma sample differs from its
/// neighbours, within 17 (libyuv's chroma upsampling filter is not ours).
const MAX_LEVELS: u8 = 20;
const MEAN_LEVELS: f64 = 0.75;

#[test]
fn avif_stills_decode_as_libavif_shows_them() {
    let dir = std::env::temp_dir().join(format!("edge-moderation-avif-{}", std::process::id()));
    let sources = support::repo().join("models/fidelity/images");
    support::run_reference(
        "avif_reference.py",
        &[&sources, &dir],
        "Pillow with libavif",
    );
    let limits = DecodeLimits {
        max_pixels: 50_000_000,
        max_dimension: 16384,
        max_canvas_bytes: u64::MAX,
        reduce_jpeg: true,
    };
    let classifier = Classifier::load().unwrap();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rgba"))
        .collect();
    files.sort();
    let mut failures = Vec::new();
    let (mut worst_level, mut worst_score) = (0u8, 0f32);
    for rgba in &files {
        let stem = rgba.file_stem().unwrap().to_str().unwrap();
        let (name, size) = stem.rsplit_once('_').unwrap();
        let (w, h) = size.split_once('x').unwrap();
        let (width, height): (u32, u32) = (w.parse().unwrap(), h.parse().unwrap());
        let bytes = std::fs::read(dir.join(format!("{name}.avif"))).unwrap();
        assert_eq!(
            ImageFormat::sniff(&bytes),
            Some(ImageFormat::Avif),
            "{name} is sniffed"
        );
        let expected =
            RgbaImage::from_raw(width, height, std::fs::read(rgba).unwrap()).expect("reference");
        let decoded = match decode_reduced(&bytes, ImageFormat::Avif, limits) {
            Ok(decoded) => decoded,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        let ours = decoded.image.to_rgba8();
        if ours.dimensions() != (width, height) {
            failures.push(format!(
                "{name}: {:?} vs {width}x{height}",
                ours.dimensions()
            ));
            continue;
        }
        let diffs: Vec<u8> = ours
            .as_raw()
            .iter()
            .zip(expected.as_raw())
            .map(|(a, b)| a.abs_diff(*b))
            .collect();
        let max = diffs.iter().copied().max().unwrap_or(0);
        let mean = diffs.iter().map(|&d| f64::from(d)).sum::<f64>() / diffs.len() as f64;
        worst_level = worst_level.max(max);
        let score = |image: &RgbaImage| {
            let image = DynamicImage::ImageRgba8(image.clone());
            classifier.classify_image(&image).unwrap()
        };
        let (a, b) = (score(&ours), score(&expected));
        let delta = Class::ALL
            .iter()
            .map(|&class| (a.get(class) - b.get(class)).abs())
            .fold(0.0, f32::max);
        worst_score = worst_score.max(delta);
        if max > MAX_LEVELS || mean > MEAN_LEVELS || delta > 0.02 {
            failures.push(format!(
                "{name}: max {max}, mean {mean:.3}, |Δp| {delta:.4}"
            ));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(files.len() >= 40, "only {} references", files.len());
    support::assert_all_agree(&failures, files.len());
    eprintln!(
        "{} AVIFs within {worst_level} levels of libavif, scores within {worst_score:.5}",
        files.len()
    );
}
