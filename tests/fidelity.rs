//! The shipped int8 model with our Rust preprocessing must reproduce upstream nsfwjs:
//! every image of `models/fidelity/` within 1e-3 per class and with the same top class.
//! The references were produced by nsfwjs itself (`make model`), never by this code.

use edge_moderation::classifier::{Arithmetic, Class, Classifier};
use std::path::Path;

const TOLERANCE: f32 = 1e-3;

/// Both arithmetics of the 1×1 convolutions: tract's f32 (the native build) and 16-bit
/// integers (what the Wasm build ships), the latter run natively with the same integer sums.
#[test]
fn matches_upstream_nsfwjs_on_the_fidelity_set() {
    for arithmetic in [Arithmetic::Float, Arithmetic::Integer] {
        matches_upstream_in(arithmetic);
    }
}

fn matches_upstream_in(arithmetic: Arithmetic) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/fidelity");
    let reference: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("reference.json")).unwrap()).unwrap();
    let images = reference["images"].as_object().unwrap();
    assert!(
        images.len() >= 20,
        "fidelity set has only {} images",
        images.len()
    );

    let classifier = Classifier::load_with(arithmetic).unwrap();
    let mut worst = (0.0f32, String::new());
    for (file, expected) in images {
        let image = image::open(root.join("images").join(file)).unwrap();
        let scores = classifier.classify_image(&image).unwrap();
        let expected_of = |class: Class| expected[class.name()].as_f64().unwrap() as f32;
        let mut expected_top = Class::Drawing;
        for class in Class::ALL {
            let delta = (scores.get(class) - expected_of(class)).abs();
            if delta > worst.0 {
                worst = (delta, format!("{file} {}", class.name()));
            }
            if expected_of(class) > expected_of(expected_top) {
                expected_top = class;
            }
        }
        assert_eq!(
            scores.top(),
            expected_top,
            "{arithmetic:?} {file}: top class differs ({scores})"
        );
    }
    println!(
        "{arithmetic:?}: max |Δp| = {:.2e} ({}) over {} images",
        worst.0,
        worst.1,
        images.len()
    );
    assert!(
        worst.0 <= TOLERANCE,
        "{arithmetic:?}: max |Δp| = {} at {}",
        worst.0,
        worst.1
    );
}

/// The DCT-scaled JPEG decode (jpeg-decoder), still used for the JPEGs the sampled decoder
/// leaves to others (4:4:0 chroma, CMYK, 12-bit, arithmetic coding), must judge photos
/// close to the full decode. Each fidelity image is enlarged 4× to photo size and saved
/// as a 4:4:0 JPEG; its scores from the reduced decode are compared with those from the
/// full decode followed by nsfwjs's own resize. (Sequential and progressive 4:4:4, 4:2:2
/// and 4:2:0 JPEGs are exact: `tests/jpeg_reference.rs`.)
#[test]
fn reduced_jpeg_decode_keeps_the_scores_of_the_full_decode() {
    use edge_moderation::classifier::preprocess;
    use edge_moderation::media::decode::{decode, decode_reduced, DecodeLimits};
    use edge_moderation::media::ImageFormat;
    use image::imageops::FilterType;

    // Measured 0.24 on progressive 4:2:0 (see `media::decode::REDUCED_MIN_SIDE`); this
    // guards against it growing.
    const REDUCED_TOLERANCE: f32 = 0.25;
    let limits = DecodeLimits {
        max_pixels: 50_000_000,
        max_dimension: 16384,
        max_canvas_bytes: u64::MAX,
        reduce_jpeg: true,
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/fidelity/images");
    let classifier = Classifier::load().unwrap();
    let (mut worst, mut reduced_count, mut top_agrees, mut total) = (0.0f32, 0, 0, 0);
    let mut files: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for path in files {
        let image = image::open(&path).unwrap();
        let photo = image.resize_exact(image.width() * 4, image.height() * 4, FilterType::Triangle);
        let rgb = photo.to_rgb8();
        let mut jpeg = Vec::new();
        let mut encoder = jpeg_encoder::Encoder::new(&mut jpeg, 75);
        encoder.set_sampling_factor(jpeg_encoder::SamplingFactor::F_1_2);
        encoder
            .encode(
                rgb.as_raw(),
                rgb.width() as u16,
                rgb.height() as u16,
                jpeg_encoder::ColorType::Rgb,
            )
            .unwrap();

        let full = decode(&jpeg, ImageFormat::Jpeg, limits).unwrap();
        let reduced = decode_reduced(&jpeg, ImageFormat::Jpeg, limits).unwrap();
        assert_eq!(
            (reduced.width, reduced.height),
            (full.width(), full.height())
        );
        assert!(reduced.gathered.is_none(), "4:4:0 JPEGs are not sampled");
        if reduced.image.width() < full.width() {
            reduced_count += 1;
        }
        let expected = classifier.classify(preprocess(&full)).unwrap();
        let actual = classifier.classify(preprocess(&reduced.image)).unwrap();
        let delta = Class::ALL
            .iter()
            .map(|&class| (actual.get(class) - expected.get(class)).abs())
            .fold(0.0, f32::max);
        worst = worst.max(delta);
        top_agrees += usize::from(actual.top() == expected.top());
        total += 1;
    }
    println!(
        "reduced JPEG decode: {reduced_count}/{total} images reduced; max |Δp| = {worst:.4}; \
         top-1 agrees on {top_agrees}/{total}"
    );
    assert!(
        reduced_count >= total * 3 / 4,
        "the reduced path was rarely taken"
    );
    assert!(worst <= REDUCED_TOLERANCE, "max |Δp| = {worst}");
    assert!(
        top_agrees + 1 >= total,
        "top class changed on {} images",
        total - top_agrees
    );
}
