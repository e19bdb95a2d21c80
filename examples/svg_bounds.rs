//! What an SVG drawing costs at the edge of each of the drawing's bounds
//! (`src/media/svg/draw.rs`): for each kind of work (elements, paints, gradient stops,
//! layers, filter primitives, pattern tiles, dashes, characters), the largest drawing of
//! that kind the bounds accept is found, then drawn RUNS times. The same program runs
//! natively and inside Wasm under Viceroy (`scripts/bench.sh` runs both):
//!     cargo run --release --example svg_bounds -- RUNS
//!     viceroy run -C fastly.toml target/wasm32-wasip1/release/examples/svg_bounds.wasm -- svg_bounds RUNS
//! Prints one JSON object per kind: the largest count accepted and the milliseconds of
//! one drawing at it (median, min). A drawing near a bound must fit a sibling's 50 ms of
//! CPU, or in production it gets `on_error` instead of `on_oversize`.

use edge_moderation::media::svg::draw;
use edge_moderation::moderation::budget;
use edge_moderation::policy::Policy;
use std::time::Instant;

const CANVAS: &str = r#"xmlns="http://www.w3.org/2000/svg" width="1024" height="1024""#;

/// A drawing of `n` units of one kind of work.
type Drawing = fn(u64) -> String;

fn rectangles(n: u64) -> String {
    let rects: String = (0..n)
        .map(|i| {
            format!(
                r#"<rect x="{}" y="{}" width="12" height="12" fill="rgb({},{},90)"/>"#,
                (i * 13) % 1012,
                (i * 7) % 1012,
                i % 256,
                (i / 4) % 256
            )
        })
        .collect();
    format!("<svg {CANVAS}>{rects}</svg>")
}

fn full_canvas_paints(n: u64) -> String {
    let rects: String = (0..n)
        .map(|i| {
            format!(
                r#"<rect width="1024" height="1024" fill="rgb({},0,0)" fill-opacity="0.5"/>"#,
                i % 256
            )
        })
        .collect();
    format!("<svg {CANVAS}>{rects}</svg>")
}

fn gradient_stops(n: u64) -> String {
    let stops: String = (0..n)
        .map(|i| {
            format!(
                r#"<stop offset="{}" stop-color="rgb({},0,0)"/>"#,
                i as f32 / n as f32,
                i % 256
            )
        })
        .collect();
    format!(
        r##"<svg {CANVAS}><linearGradient id="g">{stops}</linearGradient><rect width="1024" height="1024" fill="url(#g)"/></svg>"##
    )
}

fn masked_groups(n: u64) -> String {
    let group =
        r##"<g mask="url(#m)" opacity="0.5"><rect width="300" height="300" fill="red"/></g>"##;
    format!(
        r##"<svg {CANVAS}><mask id="m"><rect width="1024" height="1024" fill="white"/></mask>{}</svg>"##,
        group.repeat(n as usize)
    )
}

fn filtered(primitive: &str) -> String {
    format!(
        r##"<svg {CANVAS}><filter id="f">{primitive}</filter><rect x="200" y="200" width="600" height="600" fill="red" filter="url(#f)"/></svg>"##
    )
}

fn blurs(n: u64) -> String {
    filtered(&r#"<feGaussianBlur stdDeviation="8"/>"#.repeat(n as usize))
}

fn offsets(n: u64) -> String {
    filtered(&r#"<feOffset dx="3" dy="2"/>"#.repeat(n as usize))
}

fn colour_matrices(n: u64) -> String {
    filtered(&r#"<feColorMatrix type="saturate" values="0.5"/>"#.repeat(n as usize))
}

fn morphology_radius(n: u64) -> String {
    filtered(&format!(
        r#"<feMorphology operator="dilate" radius="{n}"/>"#
    ))
}

fn turbulence_octaves(n: u64) -> String {
    filtered(&format!(
        r#"<feTurbulence baseFrequency="0.05" numOctaves="{n}"/>"#
    ))
}

fn convolve_order(n: u64) -> String {
    let kernel = "1 ".repeat((n * n) as usize);
    filtered(&format!(
        r#"<feConvolveMatrix order="{n}" kernelMatrix="{kernel}"/>"#
    ))
}

fn pattern_uses(n: u64) -> String {
    let squares = r##"<rect width="1024" height="1024" fill="url(#p)"/>"##.repeat(n as usize);
    format!(
        r##"<svg {CANVAS}><pattern id="p" width="0.25" height="0.25"><rect width="128" height="256" fill="red"/><rect x="128" width="128" height="256" fill="blue"/></pattern>{squares}</svg>"##
    )
}

fn dashed_outlines(n: u64) -> String {
    let path =
        r#"<path d="M10 10 H1000 V1000 H10 Z" stroke="red" fill="none" stroke-dasharray="2 2"/>"#;
    format!("<svg {CANVAS}>{}</svg>", path.repeat(n as usize))
}

fn characters(n: u64) -> String {
    let lines: String = (0..n.div_ceil(40))
        .map(|line| {
            let count = (n - line * 40).min(40) as usize;
            format!(
                r#"<text x="4" y="{}" font-size="24">{}</text>"#,
                24 + (line % 42) * 24,
                "Moderation at the edge, in Rust. "
                    .chars()
                    .cycle()
                    .take(count)
                    .collect::<String>()
            )
        })
        .collect();
    format!("<svg {CANVAS}>{lines}</svg>")
}

fn main() {
    // RUNS, then optionally ONLY: comma-separated parts of the kinds to run.
    let args: Vec<String> = std::env::args().collect();
    let runs: usize = args.iter().find_map(|a| a.parse().ok()).unwrap_or(5);
    let only: Vec<String> = args
        .iter()
        .skip_while(|a| a.parse::<usize>().is_err())
        .nth(1)
        .map(|only| only.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    let limits = budget::decode_limits(&Policy::default().limits);
    let accepted = |drawing: Drawing, n: u64| draw(drawing(n).as_bytes(), limits).is_ok();
    let kinds: [(&str, Drawing); 13] = [
        ("rectangles 12x12", rectangles),
        ("full-canvas paints, half opaque", full_canvas_paints),
        ("gradient stops, full canvas", gradient_stops),
        ("masked translucent groups 300x300", masked_groups),
        ("blurs of 600x600, stdDeviation 8", blurs),
        ("offsets of 600x600", offsets),
        ("colour matrices over 600x600", colour_matrices),
        ("morphology radius, 600x600", morphology_radius),
        ("turbulence octaves, 600x600", turbulence_octaves),
        ("convolution kernel order, 600x600", convolve_order),
        ("pattern uses over the canvas, 256x256 tiles", pattern_uses),
        ("dashed outlines 990x990, 2-unit dashes", dashed_outlines),
        ("characters, 24 px", characters),
    ];
    for (kind, drawing) in kinds {
        if !only.is_empty() && !only.iter().any(|part| kind.contains(part.as_str())) {
            continue;
        }
        // The largest count accepted: doubled until refused (or 2^20), then bisected.
        let (mut good, mut bad) = (0, 1);
        while bad <= 1 << 20 && accepted(drawing, bad) {
            good = bad;
            bad *= 2;
        }
        while bad - good > 1 && good > 0 {
            let middle = (good + bad) / 2;
            if accepted(drawing, middle) {
                good = middle;
            } else {
                bad = middle;
            }
        }
        let svg = drawing(good);
        let mut ms: Vec<f64> = (0..runs)
            .map(|_| {
                let start = Instant::now();
                let drawn = draw(svg.as_bytes(), limits);
                assert!(drawn.is_ok(), "{kind} at {good}");
                start.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        ms.sort_by(f64::total_cmp);
        println!(
            "{}",
            serde_json::json!({"kind": kind, "largest_accepted": good,
                "median_ms": ms[ms.len() / 2], "min_ms": ms[0]})
        );
    }
}
