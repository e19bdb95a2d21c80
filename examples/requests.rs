//! Whole-request latency through `viceroy serve`, each request a fresh instance, against a
//! loopback origin: image pass, image rewrite, verdict cache hits, non-image pass-through,
//! and the plain proxy (`examples/plain_proxy.rs`) as the baseline. Run by `scripts/bench.sh`:
//!     cargo run --release --example requests -- RUNS INPUT_DIR PLAIN_PROXY_WASM
//! Prints one JSON object: milliseconds per scenario (median, p90, min) for the whole request
//! and for each stage the service reports in `Server-Timing` (`classify` is decode, which
//! includes preprocessing, plus inference: the per-request figure in a fresh instance).

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Instant;
use support::{Resource, Service};

// The classify and rewrite scenarios turn the verdict cache off, or every request after
// the first would be a hit; the cache-hit scenarios keep it on.
const REWRITE_ALL: &str = r#"{"rules": [{"classes": ["Drawing", "Hentai", "Neutral", "Porn", "Sexy"],
  "at_least": 0.0, "action": "rewrite"}], "cache": {"ttl_seconds": 0}}"#;
const PASS_ALL: &str = r#"{"rules": [], "cache": {"ttl_seconds": 0}}"#;
const PASS_ALL_CACHED: &str = r#"{"rules": []}"#;
// Every instance hands the inference on after one segment: one sibling per segment.
const PASS_ALL_HANDED_OFF: &str =
    r#"{"rules": [], "cache": {"ttl_seconds": 0}, "siblings": {"cpu_budget_ms": 0}}"#;

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
        "jpeg_12mp_4032x3024.jpg",
        "jpeg_progressive_4000x3000.jpg",
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

    // One Viceroy at a time: an idle one still costs ~15% of a core (its epoch ticker
    // wakes every millisecond), which would be noise in the others' numbers.
    let port = origin.port;
    let services: [(ServiceStart, &[(&str, &str)]); 5] = [
        (
            Box::new(move || Service::start_module("bench-plain", plain_proxy, port, None)),
            &[
                ("plain proxy: 100 KB HTML", "/page.html"),
                ("plain proxy: JPEG 1024x768", "/jpeg_1024x768.jpg"),
            ],
        ),
        (
            Box::new(move || Service::start("bench-pass", port, Some(PASS_ALL))),
            &[
                ("filter: 100 KB HTML (non-image pass-through)", "/page.html"),
                ("filter pass: JPEG 320x240", "/jpeg_320x240.jpg"),
                ("filter pass: JPEG 1024x768", "/jpeg_1024x768.jpg"),
                ("filter pass: JPEG 4000x3000", "/jpeg_4000x3000.jpg"),
                (
                    "filter pass: JPEG 12 MP 4032x3024 (~4 MB)",
                    "/jpeg_12mp_4032x3024.jpg",
                ),
                (
                    "filter pass: progressive JPEG 4000x3000",
                    "/jpeg_progressive_4000x3000.jpg",
                ),
                ("filter pass: PNG alpha 800x600", "/png_alpha_800x600.png"),
            ],
        ),
        (
            Box::new(move || Service::start("bench-rewrite", port, Some(REWRITE_ALL))),
            &[("filter rewrite: JPEG 1024x768", "/jpeg_1024x768.jpg")],
        ),
        (
            // `measure`'s warm-up request is the miss; every measured one is a hit.
            Box::new(move || Service::start("bench-cached", port, Some(PASS_ALL_CACHED))),
            &[
                (
                    "filter pass, cache hit: JPEG 1024x768",
                    "/jpeg_1024x768.jpg",
                ),
                (
                    "filter pass, cache hit: JPEG 4000x3000",
                    "/jpeg_4000x3000.jpg",
                ),
            ],
        ),
        (
            Box::new(move || Service::start("bench-handoff", port, Some(PASS_ALL_HANDED_OFF))),
            &[(
                "filter pass, handed across siblings: JPEG 1024x768",
                "/jpeg_1024x768.jpg",
            )],
        ),
    ];
    let mut report = serde_json::Map::new();
    for (start, scenarios) in services {
        let service = start();
        for &(name, path) in scenarios {
            report.insert(name.into(), measure(&service, name, path, runs));
        }
    }
    println!("{}", serde_json::Value::Object(report));
}

type ServiceStart<'a> = Box<dyn FnOnce() -> Service + 'a>;

/// `runs` requests for `path`, each a fresh instance: the whole request and each stage the
/// service reports.
fn measure(service: &Service, name: &str, path: &str, runs: usize) -> serde_json::Value {
    service.get(path); // warm Viceroy's connection to the origin
    let mut ms = Vec::with_capacity(runs);
    let mut stages: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for _ in 0..runs {
        let start = Instant::now();
        let reply = service.get(path);
        ms.push(start.elapsed().as_secs_f64() * 1e3);
        assert!(reply.status < 400, "{name}: {}", reply.status);
        let timing = server_timing(reply.header("server-timing").unwrap_or(""));
        if let (Some(decode), Some(inference)) = (timing.get("decode"), timing.get("inference")) {
            stages
                .entry("classify".into())
                .or_default()
                .push(decode + inference);
        }
        // The largest single instance: this one's CPU, or a sibling's.
        let siblings = reply.header("x-moderation-sibling-cpu").unwrap_or("");
        let largest = siblings
            .split(',')
            .filter_map(|ms| ms.trim().parse::<f64>().ok())
            .chain(timing.get("cpu").copied())
            .fold(None, |max: Option<f64>, ms| {
                Some(max.map_or(ms, |m| m.max(ms)))
            });
        if let Some(largest) = largest {
            stages
                .entry("largest_instance_cpu".into())
                .or_default()
                .push(largest);
        }
        for (stage, dur) in timing {
            stages.entry(stage).or_default().push(dur);
        }
    }
    let stages: serde_json::Map<String, serde_json::Value> = stages
        .into_iter()
        .map(|(stage, durations)| (stage, summary(durations)))
        .collect();
    serde_json::json!({"path": path, "request": summary(ms), "server_timing": stages})
}

/// Median, p90 and minimum of some milliseconds.
fn summary(mut ms: Vec<f64>) -> serde_json::Value {
    ms.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    serde_json::json!({"median": at(0.5), "p90": at(0.9), "min": ms[0]})
}

/// `decode;dur=7.55, inference;dur=38.03` → {decode: 7.55, inference: 38.03}.
fn server_timing(header: &str) -> BTreeMap<String, f64> {
    header
        .split(',')
        .filter_map(|metric| {
            let (stage, params) = metric.trim().split_once(';')?;
            let dur = params.trim().strip_prefix("dur=")?.parse().ok()?;
            Some((stage.to_string(), dur))
        })
        .collect()
}
