//! Where inference time goes, operator by operator. The same program runs natively and inside
//! Wasm under Viceroy, so the two can be compared node by node (`scripts/bench.sh` runs both):
//!     cargo run --release --example operators -- RUNS
//!     viceroy run -C fastly.toml target/wasm32-wasip1/release/examples/operators.wasm -- RUNS
//! Prints one JSON object: the scores of one fixed input (native and Wasm must agree) and,
//! per node, its operator and its median milliseconds over RUNS inferences of that input.
//! A second argument, `float` or `integer`, picks the 1×1 convolutions' arithmetic
//! (default: what the build ships, integers in Wasm and f32 natively).

use edge_moderation::classifier::{preprocess, Arithmetic, Classifier, INPUT_SIDE};
use image::{DynamicImage, Rgb, RgbImage};

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "operators")
        .collect();
    let runs: usize = args.first().and_then(|s| s.parse().ok()).unwrap_or(15);
    let arithmetic = match args.get(1).map(String::as_str) {
        Some("float") => Arithmetic::Float,
        Some("integer") => Arithmetic::Integer,
        _ => Arithmetic::SHIPPED,
    };
    let classifier = Classifier::load_with(arithmetic).expect("the shipped model loads");
    let side = INPUT_SIDE as u32;
    let pattern = RgbImage::from_fn(side, side, |x, y| {
        let i = 3 * (y * side + x);
        Rgb([0, 1, 2].map(|c| ((i + c) % 251) as u8))
    });
    let input = preprocess(&DynamicImage::ImageRgb8(pattern));
    let profiles: Vec<_> = (0..runs)
        .map(|_| classifier.profile(input.clone()).expect("inference runs"))
        .collect();
    let nodes: Vec<serde_json::Value> = (0..profiles[0].len())
        .map(|i| {
            let mut ms: Vec<f64> = profiles.iter().map(|p| p[i].ms).collect();
            ms.sort_by(|a, b| a.total_cmp(b));
            serde_json::json!({
                "node": profiles[0][i].node,
                "operator": profiles[0][i].operator,
                "median_ms": ms[ms.len() / 2],
            })
        })
        .collect();
    let scores = classifier
        .classify(input)
        .expect("inference runs")
        .to_string();
    println!(
        "{}",
        serde_json::json!({
            "runs": runs,
            "arithmetic": format!("{arithmetic:?}"),
            "scores": scores,
            "nodes": nodes,
        })
    );
}
