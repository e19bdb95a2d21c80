//! Whole-request latency through `viceroy serve`, each request a fresh instance, against a
//! loopback origin: image pass (JPEG sizes, progressive, PNG with alpha, GIFs of 8 and 48 frames,
//! an SVG embedding two rasters, BMP (plain, and calibrated: judged as each browser shows
//! it), and AVIF and JPEG XL, each decoded in a sibling),
//! image rewrite, verdict cache hits, non-image pass-through, uploads (one raw image; a
//! multipart form with 4 images), and the plain proxy
//! (`examples/plain_proxy.rs`) as the baseline. Run by `scripts/bench.sh`:
//!     cargo run --release --example requests -- RUNS INPUT_DIR PLAIN_PROXY_WASM [ONLY]
//! (ONLY: run just the scenarios whose name contains one of its comma-separated parts.)
//! Prints one JSON object: milliseconds per scenario (median, p90, min) for the whole request
//! and for each stage the service reports in `Server-Timing` (`classify` is decode, which
//! includes preprocessing, plus inference: the per-request figure in a fresh instance).

/// The animated GIFs `examples/stages.rs` writes among its inputs: one whose frames one
/// instance reads, and one whose reading goes on in further instances.
const ANIMATION: &str = "gif_animated_400x300_8_frames.gif";
const LONG_ANIMATION: &str = "gif_animated_400x300_48_frames.gif";

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
    // Only the scenarios whose name holds one of these, comma-separated (a quick
    // comparison; `make bench` runs all).
    let only = args.get(4).cloned();

    let mut resources = HashMap::new();
    for name in [
        "jpeg_320x240.jpg",
        "jpeg_1024x768.jpg",
        "jpeg_4000x3000.jpg",
        "jpeg_12mp_4032x3024.jpg",
        "jpeg_progressive_4000x3000.jpg",
        "jpeg_progressive_libjpeg_12mp.jpg",
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
    // The other formats a browser shows (issue: judge what the browser will show).
    let bitmap =
        image::load_from_memory(&std::fs::read(inputs.join("png_alpha_800x600.png")).unwrap())
            .unwrap()
            .to_rgb8();
    let gif = std::fs::read(inputs.join(ANIMATION)).unwrap();
    let long_gif = std::fs::read(inputs.join(LONG_ANIMATION)).unwrap();
    let svg = svg_with_rasters(&bitmap, 2);
    let mut bmp = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(bitmap.clone())
        .write_to(&mut bmp, image::ImageFormat::Bmp)
        .unwrap();
    for (path, mime, bytes) in [
        ("/animation_8_frames.gif", "image/gif", gif),
        ("/animation_48_frames.gif", "image/gif", long_gif),
        ("/two_rasters.svg", "image/svg+xml", svg),
        ("/bitmap_800x600.bmp", "image/bmp", bmp.into_inner()),
        // Firefox applies a calibrated RGB header, Chromium does not: both renderings are
        // judged, the second in a sibling (sRGB's primaries, gamma 2.2).
        (
            "/calibrated_800x600.bmp",
            "image/bmp",
            support::fixtures::calibrated_bmp(
                &image::DynamicImage::ImageRgb8(bitmap.clone()),
                [[0.64, 0.33], [0.30, 0.60], [0.15, 0.06]],
                [2.2; 3],
            ),
        ),
        (
            "/traced_800x600.svg",
            "image/svg+xml",
            support::fixtures::traced_svg(&image::DynamicImage::ImageRgb8(bitmap.clone()), 10),
        ),
        (
            "/avif_800x600.avif",
            "image/avif",
            std::fs::read(inputs.join("avif_800x600.avif")).unwrap(),
        ),
        (
            "/jxl_800x600.jxl",
            "image/jxl",
            std::fs::read(inputs.join("jxl_800x600.jxl")).unwrap(),
        ),
    ] {
        resources.insert(path, Resource::bytes(mime, bytes));
    }
    let jpeg = std::fs::read(inputs.join("jpeg_1024x768.jpg")).unwrap();
    let form = upload_form(&jpeg, 4);
    let raw_upload = Request::Upload {
        content_type: "image/jpeg".into(),
        body: jpeg.clone(),
    };
    let form_upload = Request::Upload {
        content_type: format!("multipart/form-data; boundary={FORM_BOUNDARY}"),
        body: form,
    };
    let page: Vec<u8> = (0..100_000u32)
        .map(|i| b"<p>lorem ipsum</p>\n"[i as usize % 19])
        .collect();
    resources.insert("/page.html", Resource::bytes("text/html", page));
    // A 50 MB non-image download, streamed by the origin as it is generated.
    let large = Resource {
        body: support::Body::Pattern(50 << 20),
        ..Resource::bytes("application/octet-stream", Vec::new())
    };
    resources.insert("/download.bin", large);
    let origin = support::Origin::start(resources);

    // One Viceroy at a time: an idle one still costs ~15% of a core (its epoch ticker
    // wakes every millisecond), which would be noise in the others' numbers.
    let port = origin.port;
    let get = |path: &'static str| Request::Get(path);
    let services: [(ServiceStart, Scenarios); 5] = [
        (
            Box::new(move || Service::start_module("bench-plain", plain_proxy, port, None)),
            vec![
                ("plain proxy: 100 KB HTML", "/page.html", get("/page.html")),
                (
                    "plain proxy: 50 MB non-image",
                    "/download.bin",
                    get("/download.bin"),
                ),
                (
                    "plain proxy: JPEG 1024x768",
                    "/jpeg_1024x768.jpg",
                    get("/jpeg_1024x768.jpg"),
                ),
                (
                    "plain proxy: upload, multipart with 4 JPEG 1024x768",
                    "/upload",
                    form_upload.clone(),
                ),
            ],
        ),
        (
            Box::new(move || Service::start("bench-pass", port, Some(PASS_ALL))),
            vec![
                (
                    "filter: 100 KB HTML (non-image pass-through)",
                    "/page.html",
                    get("/page.html"),
                ),
                (
                    "filter: 50 MB non-image (pass-through)",
                    "/download.bin",
                    get("/download.bin"),
                ),
                (
                    "filter pass: JPEG 320x240",
                    "/jpeg_320x240.jpg",
                    get("/jpeg_320x240.jpg"),
                ),
                (
                    "filter pass: JPEG 1024x768",
                    "/jpeg_1024x768.jpg",
                    get("/jpeg_1024x768.jpg"),
                ),
                (
                    "filter pass: JPEG 4000x3000",
                    "/jpeg_4000x3000.jpg",
                    get("/jpeg_4000x3000.jpg"),
                ),
                (
                    "filter pass: JPEG 12 MP 4032x3024 (~4 MB)",
                    "/jpeg_12mp_4032x3024.jpg",
                    get("/jpeg_12mp_4032x3024.jpg"),
                ),
                (
                    "filter pass: progressive JPEG 4000x3000",
                    "/jpeg_progressive_4000x3000.jpg",
                    get("/jpeg_progressive_4000x3000.jpg"),
                ),
                (
                    "filter pass: progressive JPEG 12 MP, libjpeg's scans (~4 MB)",
                    "/jpeg_progressive_libjpeg_12mp.jpg",
                    get("/jpeg_progressive_libjpeg_12mp.jpg"),
                ),
                (
                    "filter pass: PNG alpha 800x600",
                    "/png_alpha_800x600.png",
                    get("/png_alpha_800x600.png"),
                ),
                (
                    "filter pass: GIF 400x300, 8 frames",
                    "/animation_8_frames.gif",
                    get("/animation_8_frames.gif"),
                ),
                (
                    "filter pass: GIF 400x300, 48 frames",
                    "/animation_48_frames.gif",
                    get("/animation_48_frames.gif"),
                ),
                (
                    "filter pass: SVG with 2 embedded PNG 400x300",
                    "/two_rasters.svg",
                    get("/two_rasters.svg"),
                ),
                (
                    "filter pass: SVG of vectors only, 800x600 traced into 4,300 rects",
                    "/traced_800x600.svg",
                    get("/traced_800x600.svg"),
                ),
                (
                    "filter pass: BMP 800x600",
                    "/bitmap_800x600.bmp",
                    get("/bitmap_800x600.bmp"),
                ),
                (
                    "filter pass: BMP 800x600, calibrated RGB (judged as each browser shows it)",
                    "/calibrated_800x600.bmp",
                    get("/calibrated_800x600.bmp"),
                ),
                (
                    "filter pass: AVIF 800x600 (decoded in a sibling)",
                    "/avif_800x600.avif",
                    get("/avif_800x600.avif"),
                ),
                (
                    "filter pass: JPEG XL 800x600 (decoded in a sibling)",
                    "/jxl_800x600.jxl",
                    get("/jxl_800x600.jxl"),
                ),
                (
                    "filter upload pass: raw JPEG 1024x768",
                    "/upload",
                    raw_upload.clone(),
                ),
                (
                    "filter upload pass: multipart with 4 JPEG 1024x768",
                    "/upload",
                    form_upload.clone(),
                ),
            ],
        ),
        (
            Box::new(move || Service::start("bench-rewrite", port, Some(REWRITE_ALL))),
            vec![(
                "filter rewrite: JPEG 1024x768",
                "/jpeg_1024x768.jpg",
                get("/jpeg_1024x768.jpg"),
            )],
        ),
        (
            // `measure`'s warm-up request is the miss; every measured one is a hit.
            Box::new(move || Service::start("bench-cached", port, Some(PASS_ALL_CACHED))),
            vec![
                (
                    "filter pass, cache hit: JPEG 1024x768",
                    "/jpeg_1024x768.jpg",
                    get("/jpeg_1024x768.jpg"),
                ),
                (
                    "filter pass, cache hit: JPEG 4000x3000",
                    "/jpeg_4000x3000.jpg",
                    get("/jpeg_4000x3000.jpg"),
                ),
            ],
        ),
        (
            Box::new(move || Service::start("bench-handoff", port, Some(PASS_ALL_HANDED_OFF))),
            vec![(
                "filter pass, handed across siblings: JPEG 1024x768",
                "/jpeg_1024x768.jpg",
                get("/jpeg_1024x768.jpg"),
            )],
        ),
    ];
    let mut report = serde_json::Map::new();
    for (start, scenarios) in services {
        let scenarios: Scenarios = scenarios
            .into_iter()
            .filter(|(name, _, _)| {
                only.as_ref()
                    .is_none_or(|only| only.split(',').any(|part| name.contains(part)))
            })
            .collect();
        if scenarios.is_empty() {
            continue;
        }
        let service = start();
        for (name, path, request) in scenarios {
            report.insert(name.into(), measure(&service, name, path, &request, runs));
        }
    }
    println!("{}", serde_json::Value::Object(report));
}

type ServiceStart<'a> = Box<dyn FnOnce() -> Service + 'a>;
/// (name, path, what is sent) for each scenario of one service.
type Scenarios = Vec<(&'static str, &'static str, Request)>;

/// What a scenario sends.
#[derive(Clone)]
enum Request {
    Get(&'static str),
    /// A POST of `body` (the origin stores it: 201).
    Upload {
        content_type: String,
        body: Vec<u8>,
    },
}

impl Request {
    fn send(&self, service: &Service, path: &str) -> support::Reply {
        match self {
            Request::Get(path) => service.get(path),
            Request::Upload { content_type, body } => {
                service.post(path, &[("content-type", content_type)], body)
            }
        }
    }
}

/// An SVG embedding `count` PNG rasters (`image` at half size, each shifted) as `data:`
/// URIs.
fn svg_with_rasters(image: &image::RgbImage, count: u32) -> Vec<u8> {
    use base64::Engine;
    let (width, height) = (image.width() / 2, image.height() / 2);
    let small = image::imageops::thumbnail(image, width, height);
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{height}">"#,
        width * count
    );
    for k in 0..count {
        let shifted = image::RgbImage::from_fn(width, height, |x, y| {
            *small.get_pixel((x + k * 37) % width, y)
        });
        let mut png = std::io::Cursor::new(Vec::new());
        image::DynamicImage::ImageRgb8(shifted)
            .write_to(&mut png, image::ImageFormat::Png)
            .unwrap();
        let data = base64::engine::general_purpose::STANDARD.encode(png.into_inner());
        svg.push_str(&format!(
            r#"<image x="{}" width="{width}" height="{height}" href="data:image/png;base64,{data}"/>"#,
            k * width
        ));
    }
    svg.push_str("</svg>");
    svg.into_bytes()
}

const FORM_BOUNDARY: &str = "----bench-7MA4YWxkTrZu0gW";

/// A multipart form: a text field and `count` copies of `jpeg`.
fn upload_form(jpeg: &[u8], count: usize) -> Vec<u8> {
    let mut body = format!(
        "--{FORM_BOUNDARY}\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nholiday\r\n"
    )
    .into_bytes();
    for i in 0..count {
        body.extend_from_slice(
            format!(
                "--{FORM_BOUNDARY}\r\nContent-Disposition: form-data; name=\"photo{i}\"; \
                 filename=\"{i}.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(jpeg);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{FORM_BOUNDARY}--\r\n").as_bytes());
    body
}

/// `runs` requests, each a fresh instance: the whole request and each stage the service
/// reports.
fn measure(
    service: &Service,
    name: &str,
    path: &str,
    request: &Request,
    runs: usize,
) -> serde_json::Value {
    request.send(service, path); // warm Viceroy's connection to the origin
    let mut ms = Vec::with_capacity(runs);
    let mut stages: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for _ in 0..runs {
        let start = Instant::now();
        let reply = request.send(service, path);
        ms.push(start.elapsed().as_secs_f64() * 1e3);
        let blocked = name.contains("blocks") && reply.status == 403;
        assert!(reply.status < 400 || blocked, "{name}: {}", reply.status);
        let timing = server_timing(reply.header("server-timing").unwrap_or(""));
        if let (Some(decode), Some(inference)) = (timing.get("decode"), timing.get("inference")) {
            stages
                .entry("classify".into())
                .or_default()
                .push(decode + inference);
        }
        // The largest single instance: this one's CPU, or a sibling's.
        let siblings = reply.header("x-moderation-sibling-cpu").unwrap_or("");
        // REQUESTS_SHOW=1 prints every reply's instances, to see which one is largest.
        if std::env::var_os("REQUESTS_SHOW").is_some() {
            let (cpu, pace) = (timing.get("cpu"), timing.get("pace"));
            eprintln!("{name}: cpu {cpu:?}, pace {pace:?}, siblings [{siblings}]");
        }
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
            // This instance and each sibling that reported.
            let count = siblings
                .split(',')
                .filter(|ms| !ms.trim().is_empty())
                .count();
            stages
                .entry("instances".into())
                .or_default()
                .push(1.0 + count as f64);
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

/// `decode;dur=7.55, inference;dur=38.03, pace;desc=1.27` → {decode: 7.55, inference:
/// 38.03, pace: 1.27} (the pace is a factor, not milliseconds).
fn server_timing(header: &str) -> BTreeMap<String, f64> {
    header
        .split(',')
        .filter_map(|metric| {
            let (stage, params) = metric.trim().split_once(';')?;
            let params = params.trim();
            let value = params.strip_prefix("dur=").or(params.strip_prefix("desc="));
            Some((stage.to_string(), value?.parse().ok()?))
        })
        .collect()
}
