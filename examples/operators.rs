//! Where inference time goes, operator by operator. The same program runs natively and inside
//! Wasm under Viceroy, so the two can be compared node by node (`scripts/bench.sh` runs both):
//!     cargo run --release --example operators -- RUNS
//!     viceroy run -C fastly.toml target/wasm32-wasip1/release/examples/operators.wasm -- RUNS
//! Prints one JSON object: the scores of one fixed input (native and Wasm must agree) and,
//! per node, its operator and its median milliseconds over RUNS inferences of that input.

use edge_moderation::classifier::{Classifier, INPUT_SIDE};
use tract_onnx::prelude::Tensor;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "operators")
        .collect();
    let runs: usize = args.first().and_then(|s| s.parse().ok()).unwrap_or(15);
    let classifier = Classifier::load().expect("the shipped model loads");
    let input = Tensor::from_shape(
        &[1, INPUT_SIDE, INPUT_SIDE, 3],
        &(0..INPUT_SIDE * INPUT_SIDE * 3)
            .map(|i| (i % 251) as f32 / 255.0)
            .collect::<Vec<_>>(),
    )
    .expect("shape matches data length");
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
        serde_json::json!({ "runs": runs, "scores": scores, "nodes": nodes })
    );
}
