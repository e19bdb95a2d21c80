//! Whole-request latency through `viceroy serve`, each request a fresh instance, against a
//! loopback origin: image pass, image rewrite, non-image pass-through, and the plain proxy
//! (`examples/plain_proxy.rs`) as the baseline. Run by `scripts/bench.sh`:
//!     cargo run --release --example requests -- RUNS INPUT_DIR PLAIN_PROXY_WASM
//! Prints one JSON object: milliseconds per scenario (median, p90, min).

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;
use support::{Resource, Service};

const REWRITE_ALL: &str = r#"{"rules": [{"classes": ["Drawing", "Hentai", "Neutral", "Porn", "Sexy"],
  "at_least": 0.0, "action": "rewrite"}]}"#;
const PASS_ALL: &str = r#"{"rules": []}"#;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let runs: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(20);
    let inputs = Path::new(&args[2]);
    let plain_proxy = Path::new(&args[3]);

    let mut resources = HashMap::new();
    for name in [
        "jpeg_320x240.jpg",
        "jpeg_1024x768.jpg",
        "jpeg_4000x3000.jpg",
        "png_alpha_800x600.png",
    ] {
        let bytes = std::fs::read(inputs.join(name)).unwrap();
        let mime = if name.ends_with("png") {
            "image/png"
        } else {
            "image/jpeg"
        };
        resources.insert(
            &*Box::leak(format!("/{name}").into_boxed_str()),
            Resource::bytes(mime, bytes),
        );
    }
    let page: Vec<u8> = (0..100_000u32)
        .map(|i| b"<p>lorem ipsum</p>\n"[i as usize % 19])
        .collect();
    resources.insert("/page.html", Resource::bytes("text/html", page));
    let origin = support::Origin::start(resources);

    let port = origin.port;
    let plain = plain_proxy.to_path_buf();
    let pass = std::thread::spawn(move || Service::start("bench-pass", port, Some(PASS_ALL)));
    let rewrite =
        std::thread::spawn(move || Service::start("bench-rewrite", port, Some(REWRITE_ALL)));
    let baseline =
        std::thread::spawn(move || Service::start_module("bench-plain", &plain, port, None));
    let (pass, rewrite, baseline) = (
        pass.join().unwrap(),
        rewrite.join().unwrap(),
        baseline.join().unwrap(),
    );

    let scenarios: Vec<(&str, &Service, &str)> = vec![
        ("plain proxy: 100 KB HTML", &baseline, "/page.html"),
        (
            "filter: 100 KB HTML (non-image pass-through)",
            &pass,
            "/page.html",
        ),
        (
            "plain proxy: JPEG 1024x768",
            &baseline,
            "/jpeg_1024x768.jpg",
        ),
        ("filter pass: JPEG 320x240", &pass, "/jpeg_320x240.jpg"),
        ("filter pass: JPEG 1024x768", &pass, "/jpeg_1024x768.jpg"),
        ("filter pass: JPEG 4000x3000", &pass, "/jpeg_4000x3000.jpg"),
        (
            "filter pass: PNG alpha 800x600",
            &pass,
            "/png_alpha_800x600.png",
        ),
        (
            "filter rewrite: JPEG 1024x768",
            &rewrite,
            "/jpeg_1024x768.jpg",
        ),
    ];
    let mut report = serde_json::Map::new();
    for (name, service, path) in scenarios {
        service.get(path); // warm Viceroy's connection to the origin
        let mut ms: Vec<f64> = (0..runs)
            .map(|_| {
                let start = Instant::now();
                let reply = service.get(path);
                assert!(reply.status < 400, "{name}: {}", reply.status);
                start.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        ms.sort_by(|a, b| a.total_cmp(b));
        let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
        let timing = service
            .get(path)
            .header("server-timing")
            .unwrap_or("")
            .to_string();
        report.insert(
            name.into(),
            serde_json::json!({"path": path, "median": at(0.5), "p90": at(0.9), "min": ms[0], "server_timing": timing}),
        );
    }
    println!("{}", serde_json::Value::Object(report));
}
