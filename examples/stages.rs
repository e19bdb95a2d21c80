//! Per-stage benchmark of the moderation pipeline, on deterministic inputs it generates
//! itself. The same program runs natively and inside Wasm under Viceroy
//! (`scripts/bench.sh` runs both and puts them side by side):
//!     cargo run --release --example stages -- RUNS
//!     viceroy run -C fastly.toml target/wasm32-wasip1/release/examples/stages.wasm -- RUNS
//! Prints one JSON object: milliseconds per stage per input (median, p90, min), each input's
//! peak heap over the stages, and the peak heap of one whole `moderate` call (the request).
//! `-- RUNS DIR` instead writes the inputs to DIR (for other tools).

use edge_moderation::classifier::preprocess::preprocess_gathered;
use edge_moderation::classifier::{preprocess, Classifier};
use edge_moderation::media::decode::{decode, decode_reduced, DecodeLimits};
use edge_moderation::media::encode::encode as encode_as;
use edge_moderation::media::obscure::obscure;
use edge_moderation::media::{frames, gif, ImageFormat};
use edge_moderation::moderation::known::KnownLists;
use edge_moderation::moderation::{budget, moderate};
use edge_moderation::policy::Policy;
use image::codecs::gif::GifDecoder;
use image::{AnimationDecoder, DynamicImage, Rgb, RgbImage, Rgba, RgbaImage};
use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Cursor;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Instant;

/// Counts live heap bytes, to report each input's peak (decode + preprocess + inference +
/// rewrite) above what the loaded model already holds.
struct PeakCounting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for PeakCounting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Relaxed) + layout.size();
        PEAK.fetch_max(live, Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Relaxed);
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOCATOR: PeakCounting = PeakCounting;

/// A photo-like deterministic image: smooth gradients plus texture, so codecs work as on
/// real photos (a 1024×768 JPEG comes out at roughly 150 KB).
fn synthetic(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        let (fx, fy) = (x as f32 / width as f32, y as f32 / height as f32);
        let texture = ((x.wrapping_mul(7919) ^ y.wrapping_mul(104729)) % 61) as f32;
        let wave = (fx * 23.0).sin() * (fy * 17.0).cos() * 60.0;
        Rgb([
            (fx * 180.0 + texture + wave).clamp(0.0, 255.0) as u8,
            (fy * 200.0 + texture * 0.5).clamp(0.0, 255.0) as u8,
            ((1.0 - fx) * 150.0 + wave + 40.0).clamp(0.0, 255.0) as u8,
        ])
    })
}

fn encode(image: DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    if format == image::ImageFormat::Jpeg {
        image
            .write_with_encoder(image::codecs::jpeg::JpegEncoder::new_with_quality(
                &mut out, 70,
            ))
            .unwrap();
    } else {
        image.write_to(&mut out, format).unwrap();
    }
    out.into_inner()
}

/// An animated GIF of `frames` frames at half `image`'s size, each `image` shifted further
/// and shown 100 ms: every frame differs, so all are read and several chosen.
fn animation(image: &RgbImage, frames: u32) -> Vec<u8> {
    use image::codecs::gif::{GifEncoder, Repeat};
    let (width, height) = (image.width() / 2, image.height() / 2);
    let small = image::imageops::thumbnail(image, width, height);
    let mut out = Vec::new();
    {
        let mut encoder = GifEncoder::new_with_speed(&mut out, 30);
        encoder.set_repeat(Repeat::Infinite).unwrap();
        for k in 0..frames {
            let shift = k * width / frames;
            let frame = RgbaImage::from_fn(width, height, |x, y| {
                let p = small.get_pixel((x + shift) % width, y).0;
                Rgba([p[0], p[1], p[2], 255])
            });
            let delay = image::Delay::from_numer_denom_ms(100, 1);
            encoder
                .encode_frame(image::Frame::from_parts(frame, 0, 0, delay))
                .unwrap();
        }
    }
    out
}

/// Inputs measured only natively and through the real service (`examples/requests.rs`):
/// without the snapshot, this process still holds the fragments of loading the model (its
/// peak is ~85 MB), and Viceroy's 128 MB memory cannot then fit their 36 MB canvases.
const LARGE_INPUTS: [&str; 4] = [
    "jpeg_4000x3000",
    "jpeg_12mp_4032x3024",
    "jpeg_12mp_4032x3024_display_p3",
    "jpeg_progressive_4000x3000",
];

pub fn inputs() -> Vec<(&'static str, Vec<u8>)> {
    use image::ImageFormat::{Gif, Jpeg, Png, WebP};
    let rgba = |w, h| {
        let rgb = synthetic(w, h);
        DynamicImage::ImageRgba8(RgbaImage::from_fn(w, h, |x, y| {
            let p = rgb.get_pixel(x, y).0;
            Rgba([p[0], p[1], p[2], ((x + y) % 256) as u8])
        }))
    };
    let photo =
        |width, height, format| encode(DynamicImage::ImageRgb8(synthetic(width, height)), format);
    // What phones upload and what some encoders emit: a 12 MP photo at high quality, and a
    // progressive JPEG (every coefficient in several scans).
    let jpeg_with = |width, height, quality, progressive, icc: Option<Vec<u8>>| {
        let mut out = Vec::new();
        let mut encoder = jpeg_encoder::Encoder::new(&mut out, quality);
        encoder.set_progressive(progressive);
        if let Some(icc) = icc {
            encoder.add_icc_profile(&icc).unwrap();
        }
        let rgb = synthetic(width, height);
        encoder
            .encode(
                rgb.as_raw(),
                width as u16,
                height as u16,
                jpeg_encoder::ColorType::Rgb,
            )
            .unwrap();
        out
    };
    // The same photo tagged Display P3 (an iPhone's profile): colour management converts
    // every pixel (the sampled JPEG decoder's, or the whole PNG) beside the untagged one.
    let display_p3 = || {
        let mut profile = moxcms::ColorProfile::new_display_p3();
        profile.cicp = None;
        profile.encode().unwrap()
    };
    let p3_png = |width, height| {
        use image::ImageEncoder;
        let mut out = Vec::new();
        let mut encoder = image::codecs::png::PngEncoder::new(&mut out);
        encoder.set_icc_profile(display_p3()).unwrap();
        let rgb = synthetic(width, height);
        encoder
            .write_image(rgb.as_raw(), width, height, image::ExtendedColorType::Rgb8)
            .unwrap();
        out
    };
    type Make<'a> = Box<dyn Fn() -> Vec<u8> + 'a>;
    let all: Vec<(&'static str, Make)> = vec![
        ("jpeg_320x240", Box::new(|| photo(320, 240, Jpeg))),
        ("jpeg_1024x768", Box::new(|| photo(1024, 768, Jpeg))),
        ("jpeg_4000x3000", Box::new(|| photo(4000, 3000, Jpeg))),
        (
            "jpeg_12mp_4032x3024",
            Box::new(|| jpeg_with(4032, 3024, 86, false, None)),
        ),
        (
            "jpeg_progressive_4000x3000",
            Box::new(|| jpeg_with(4000, 3000, 80, true, None)),
        ),
        (
            "png_alpha_800x600",
            Box::new(|| encode(rgba(800, 600), Png)),
        ),
        ("png_800x600", Box::new(|| photo(800, 600, Png))),
        ("png_800x600_display_p3", Box::new(|| p3_png(800, 600))),
        (
            "jpeg_12mp_4032x3024_display_p3",
            Box::new(|| jpeg_with(4032, 3024, 86, false, Some(display_p3()))),
        ),
        ("webp_800x600", Box::new(|| photo(800, 600, WebP))),
        ("gif_400x300", Box::new(|| photo(400, 300, Gif))),
        // The request benchmark's animations (examples/requests.rs reads them from here);
        // 48 frames take more than one instance's CPU to read.
        (
            "gif_animated_400x300_8_frames",
            Box::new(|| animation(&synthetic(800, 600), 8)),
        ),
        (
            "gif_animated_400x300_48_frames",
            Box::new(|| animation(&synthetic(800, 600), 48)),
        ),
    ];
    all.into_iter()
        // Not even made inside Wasm: see `LARGE_INPUTS`.
        .filter(|(name, _)| !(cfg!(target_arch = "wasm32") && LARGE_INPUTS.contains(name)))
        .map(|(name, make)| (name, make()))
        .collect()
}

/// jpeg-decoder's decode at the smallest of 1/2, 1/4, 1/8 that keeps ≥ 384 px per side.
fn dct_scaled_decode(bytes: &[u8]) -> usize {
    let mut decoder = jpeg_decoder::Decoder::new(Cursor::new(bytes));
    decoder.read_info().unwrap();
    let info = decoder.info().unwrap();
    let (w, h) = (u32::from(info.width), u32::from(info.height));
    let divisor = [8, 4, 2, 1]
        .into_iter()
        .find(|&d| w.div_ceil(d) >= w.min(384) && h.div_ceil(d) >= h.min(384))
        .unwrap_or(1);
    let scaled = |side: u32| side.div_ceil(divisor) as u16;
    decoder.scale(scaled(w), scaled(h)).unwrap();
    decoder.decode().unwrap().len()
}

fn summary(mut ms: Vec<f64>) -> serde_json::Value {
    ms.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    serde_json::json!({"median": at(0.5), "p90": at(0.9), "min": ms[0]})
}

fn time<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed().as_secs_f64() * 1e3)
}

fn main() {
    // Under `viceroy run` the first argument is the program name again; skip words.
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "stages").collect();
    let runs: usize = args.first().and_then(|s| s.parse().ok()).unwrap_or(15);
    if let Some(dir) = args.get(1) {
        for (name, bytes) in inputs() {
            let ext = ImageFormat::sniff(&bytes).map_or("bin", ImageFormat::extension);
            std::fs::write(format!("{dir}/{name}.{ext}"), bytes).unwrap();
        }
        return;
    }
    let (classifier, load_ms) = time(|| Classifier::load().unwrap());
    let model_heap_mb = LIVE.load(Relaxed) as f64 / 1048576.0;
    let policy = Policy::default();
    let mut results = serde_json::Map::new();
    for (name, bytes) in inputs() {
        let format = ImageFormat::sniff(&bytes).unwrap();
        // The full decode that the service's reduced decode replaces, for comparison
        // (outside the peak-heap measurement, which is the service's path). Natively, so
        // without the instance's canvas budget: a 12 MP RGB canvas is just beyond it.
        let unbudgeted = DecodeLimits {
            max_canvas_bytes: u64::MAX,
            ..budget::decode_limits(&policy.limits)
        };
        let decode_full: Vec<f64> = (0..runs)
            .map(|_| time(|| decode(&bytes, format, unbudgeted).unwrap()).1)
            .collect();
        // JPEGs: the DCT-scaled decode (jpeg-decoder) that the sampled decoder replaced for
        // baseline JPEGs, at the scale it used (≥ 384 px per side), for comparison.
        let dct_scaled: Vec<f64> = if format == ImageFormat::Jpeg {
            (0..runs)
                .map(|_| time(|| dct_scaled_decode(&bytes)).1)
                .collect()
        } else {
            Vec::new()
        };
        let baseline = LIVE.load(Relaxed);
        PEAK.store(baseline, Relaxed);
        let mut stages: [Vec<f64>; 6] = Default::default();
        for _ in 0..runs {
            let (_, sniff) = time(|| ImageFormat::sniff(&bytes));
            let (decoded, decode_ms) = time(|| {
                decode_reduced(&bytes, format, budget::decode_limits(&policy.limits)).unwrap()
            });
            // As the service does: a JPEG's gathered pixels, other images resized whole.
            let (input, preprocess_ms) = time(|| match &decoded.gathered {
                Some(gathered) => preprocess_gathered(gathered),
                None => preprocess(&decoded.image),
            });
            let (scores, inference) = time(|| classifier.classify(input).unwrap());
            let (_, decide) = time(|| policy.decide(&scores));
            let size = (decoded.width, decoded.height);
            let (_, rewrite_ms) = time(|| {
                let obscured = obscure(&decoded.image, size, policy.rewrite).unwrap();
                encode_as(&obscured, format).unwrap()
            });
            for (stage, ms) in stages.iter_mut().zip([
                sniff,
                decode_ms,
                preprocess_ms,
                inference,
                decide,
                rewrite_ms,
            ]) {
                stage.push(ms);
            }
        }
        let names = [
            "sniff",
            "decode",
            "preprocess",
            "inference",
            "policy",
            "rewrite",
        ];
        let mut entry = serde_json::Map::new();
        entry.insert("bytes".into(), bytes.len().into());
        entry.insert(
            "peak_heap_mb".into(),
            ((PEAK.load(Relaxed) - baseline) as f64 / 1048576.0).into(),
        );
        for (stage, ms) in names.iter().zip(stages) {
            entry.insert(stage.to_string(), summary(ms));
        }
        entry.insert("decode_full".into(), summary(decode_full));
        if !dct_scaled.is_empty() {
            entry.insert("decode_dct_scaled".into(), summary(dct_scaled));
        }
        // An animated GIF: the frames read as the service reads them (all drawn, then the
        // judged ones chosen), and the drawing alone against image-rs's reader, alternated.
        if format == ImageFormat::Gif && frames::judged_by_frames(&bytes, format) {
            let limits = budget::decode_limits(&policy.limits);
            let max_frames = policy.animations.max_frames;
            let mut read: [Vec<f64>; 3] = Default::default();
            for _ in 0..runs {
                read[0].push(
                    time(|| frames::judged_frames(&bytes, format, limits, max_frames).unwrap()).1,
                );
                read[1].push(time(|| gif::GifFrames::new(&bytes, limits).unwrap().count()).1);
                read[2].push(
                    time(|| {
                        let decoder = GifDecoder::new(Cursor::new(&bytes)).unwrap();
                        decoder.into_frames().count()
                    })
                    .1,
                );
            }
            let [judged, ours, image_rs] = read;
            entry.insert("frames_judged".into(), summary(judged));
            entry.insert("frames_drawn".into(), summary(ours));
            entry.insert("frames_drawn_image_rs".into(), summary(image_rs));
        }
        // What one request holds at its peak above the loaded model: the service's own path,
        // default policy (a large image that would need rewriting is blocked, not rewritten).
        let baseline = LIVE.load(Relaxed);
        PEAK.store(baseline, Relaxed);
        let moderation = moderate(&bytes, format, &policy, &KnownLists::none(), &classifier);
        entry.insert(
            "request_peak_heap_mb".into(),
            ((PEAK.load(Relaxed) - baseline) as f64 / 1048576.0).into(),
        );
        entry.insert(
            "verdict".into(),
            format!("{:?}", moderation.verdict()).into(),
        );
        results.insert(name.into(), entry.into());
    }
    // This host's pace against the one the CPU costs were measured on (`budget::Pace`):
    // the median of 101 measurements, as an instance takes one.
    let mut paces: Vec<f32> = (0..101).map(|_| budget::Pace::measure().factor()).collect();
    paces.sort_by(f32::total_cmp);
    let report = serde_json::json!({
        "runs": runs,
        "pace": paces[paces.len() / 2],
        "model_load_ms": load_ms,
        "model_heap_mb": model_heap_mb,
        "inputs": results,
    });
    println!("{report}");
}
