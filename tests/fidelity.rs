//! The shipped int8 model with our Rust preprocessing must reproduce upstream nsfwjs:
//! every image of `models/fidelity/` within 1e-3 per class and with the same top class.
//! The references were produced by nsfwjs itself (`make model`), never by this code.

use edge_moderation::classifier::{Class, Classifier};
use std::path::Path;

const TOLERANCE: f32 = 1e-3;

#[test]
fn matches_upstream_nsfwjs_on_the_fidelity_set() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/fidelity");
    let reference: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("reference.json")).unwrap()).unwrap();
    let images = reference["images"].as_object().unwrap();
    assert!(
        images.len() >= 20,
        "fidelity set has only {} images",
        images.len()
    );

    let classifier = Classifier::load().unwrap();
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
            "{file}: top class differs ({scores})"
        );
    }
    println!(
        "max |Δp| = {:.2e} ({}) over {} images",
        worst.0,
        worst.1,
        images.len()
    );
    assert!(
        worst.0 <= TOLERANCE,
        "max |Δp| = {} at {}",
        worst.0,
        worst.1
    );
}
