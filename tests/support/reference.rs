//! Our lossy decoders against a reference decoder: a script of `tests/reference/` writes
//! NAME.EXT files beside NAME_WxH.rgba (the reference's decode as shown, RGBA8); every
//! file must decode through the service's decode path to the same size, within a few
//! levels per channel, and to the model's scores within the 0.02.

use super::fixtures::{assert_all_agree, repo, run_reference};
use edge_moderation::classifier::{Class, Classifier};
use edge_moderation::media::decode::{decode_reduced, DecodeLimits};
use edge_moderation::media::ImageFormat;
use image::{DynamicImage, RgbaImage};
use std::path::Path;

/// Limits wide enough for every reference file.
pub const LIMITS: DecodeLimits = DecodeLimits {
    max_pixels: 50_000_000,
    max_dimension: 16384,
    max_canvas_bytes: u64::MAX,
    reduce_jpeg: true,
};

/// One reference a script wrote: NAME, and the pixels of NAME_WxH.rgba.
pub struct ReferenceFile {
    pub name: String,
    pub width: u32,
    pub height: u32,
    pub rgba: Vec<u8>,
}

/// Every NAME_WxH.rgba in `dir`, by name.
pub fn reference_files(dir: &Path) -> Vec<ReferenceFile> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rgba"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|path| {
            let stem = path.file_stem().unwrap().to_str().unwrap();
            let (name, size) = stem.rsplit_once('_').unwrap();
            let (w, h) = size.split_once('x').unwrap();
            ReferenceFile {
                name: name.to_string(),
                width: w.parse().unwrap(),
                height: h.parse().unwrap(),
                rgba: std::fs::read(path).unwrap(),
            }
        })
        .collect()
}

/// How far our pixels may be from the reference's: the largest difference in any channel
/// of any pixel, and the mean over all.
pub struct Tolerance {
    pub max_levels: u8,
    pub mean_levels: f64,
}

/// Runs `script` (which names its reference `what`) and checks each file it wrote in
/// `format` against the reference's pixels and scores; at least `at_least` files.
pub fn assert_decodes_as_reference(
    script: &str,
    what: &str,
    format: ImageFormat,
    tolerance: Tolerance,
    at_least: usize,
) {
    let ext = format.extension();
    let dir = std::env::temp_dir().join(format!("edge-moderation-{ext}-{}", std::process::id()));
    let sources = repo().join("models/fidelity/images");
    run_reference(script, &[&sources, &dir], what);
    let classifier = Classifier::load().unwrap();
    let files = reference_files(&dir);
    let mut failures = Vec::new();
    let (mut worst_level, mut worst_score) = (0u8, 0f32);
    for ReferenceFile {
        name,
        width,
        height,
        rgba,
    } in &files
    {
        let (width, height) = (*width, *height);
        let bytes = std::fs::read(dir.join(format!("{name}.{ext}"))).unwrap();
        assert_eq!(
            ImageFormat::sniff(&bytes),
            Some(format),
            "{name} is sniffed"
        );
        let expected = RgbaImage::from_raw(width, height, rgba.clone()).expect("reference");
        let ours = match decode_reduced(&bytes, format, LIMITS) {
            Ok(decoded) => decoded.image.to_rgba8(),
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
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
        if max > tolerance.max_levels || mean > tolerance.mean_levels || delta > 0.02 {
            failures.push(format!(
                "{name}: max {max}, mean {mean:.3}, |Δp| {delta:.4}"
            ));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(files.len() >= at_least, "only {} references", files.len());
    assert_all_agree(&failures, files.len());
    eprintln!(
        "{} {} files within {worst_level} levels of {what}, scores within {worst_score:.5}",
        files.len(),
        format.name()
    );
}
