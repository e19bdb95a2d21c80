//! Work handed across sibling instances (`src/edge/siblings.rs`), end to end under Viceroy:
//! each service's `self` backend is its own address and its Secret Store holds the shared
//! secret (`support::viceroy::Siblings`). A policy with `siblings.cpu_budget_ms: 0` makes
//! every instance hand on after the one segment it must run, so one image's inference
//! crosses an instance per segment, and a JPEG's decode an instance per sixteenth of its
//! rows of blocks (per 32nd for a progressive JPEG). Needs `bin/main.wasm` (`make test` builds it).

mod support;

use edge_moderation::classifier::preprocess::read_positions;
use edge_moderation::classifier::SEGMENTS;
use edge_moderation::headers;
use edge_moderation::media::jpeg::{decode_resumable, Plan, Progress};
use image::imageops::FilterType;
use std::collections::HashMap;
use support::fixtures::{bytes_of, drawing_policy, format_images};
use support::{Origin, Resource, Service, Siblings, SIBLING_KEY};

/// Hand every segment on; judge afresh every time (no verdict cache).
const HAND_OFF_ALL: &str = r#""cache": {"ttl_seconds": 0}, "siblings": {"cpu_budget_ms": 0}"#;

struct World {
    fixtures: HashMap<&'static str, Resource>,
    handing_off: Service,
    alone: Service,
    unreachable: Service,
    unreachable_pass: Service,
    silent: Service,
}

fn world() -> &'static World {
    static WORLD: std::sync::OnceLock<World> = std::sync::OnceLock::new();
    WORLD.get_or_init(|| {
        let mut fixtures = format_images();
        fixtures.insert("/progressive.jpg", progressive_jpeg());
        fixtures.insert("/large.jpg", large_jpeg());
        let (photo, drawing) = (
            support::fidelity_image("photo_coffee.png"),
            support::fidelity_image("drawing_stick_figure.png"),
        );
        let gif = support::fixtures::animated_gif(&[(&photo, 500), (&drawing, 500)]);
        fixtures.insert("/animated.gif", Resource::bytes("image/gif", gif));
        // Six frames, a picture the model takes for a drawing third and last: read by one
        // instance per frame when every instance hands on as soon as it may.
        let small = photo.thumbnail(400, 400);
        let drawing_like = support::fidelity_image("panorama_wide.png");
        let frames = [&small, &small, &drawing_like, &small, &small, &drawing_like];
        let long = support::fixtures::animated_gif(&frames.map(|f| (f, 200)));
        fixtures.insert("/long.gif", Resource::bytes("image/gif", long));
        let jxl = |stem: &str| {
            let path = support::repo().join(format!("tests/fixtures/{stem}.jxl"));
            Resource::bytes("image/jxl", std::fs::read(path).unwrap())
        };
        fixtures.insert("/parts.jxl", jxl("photo_coffee_3x3_groups"));
        fixtures.insert("/large.jxl", jxl("gradient_1400x1400"));
        let origin = Origin::start(fixtures.clone());
        let port = origin.port;
        let start = |name: &'static str, policy: String, siblings| {
            std::thread::spawn(move || Service::start_with(name, port, Some(&policy), siblings))
        };
        let pass_on_error = drawing_policy(&format!(r#"{HAND_OFF_ALL}, "on_error": "pass""#));
        let hand_off = drawing_policy(HAND_OFF_ALL);
        let handing_off = start("handing-off", hand_off.clone(), Siblings::Reachable);
        let alone = start("alone", hand_off.clone(), Siblings::Off);
        let unreachable = start("unreachable", hand_off, Siblings::Unreachable);
        let unreachable_pass = start("unreachable-pass", pass_on_error, Siblings::Unreachable);
        let impatient = drawing_policy(
            r#""cache": {"ttl_seconds": 0}, "siblings": {"cpu_budget_ms": 0, "timeout_ms": 1500}"#,
        );
        let silent = start("silent", impatient, Siblings::Silent);
        World {
            fixtures,
            handing_off: handing_off.join().unwrap(),
            alone: alone.join().unwrap(),
            unreachable: unreachable.join().unwrap(),
            unreachable_pass: unreachable_pass.join().unwrap(),
            silent: silent.join().unwrap(),
        }
    })
}

/// A progressive JPEG (spectral selection, jpeg-encoder's progression) of a photo.
fn progressive_jpeg() -> Resource {
    let photo = support::fidelity_image("photo_coffee.png");
    let rgb = photo.resize_exact(320, 208, FilterType::Triangle).to_rgb8();
    let mut jpeg = Vec::new();
    let mut encoder = jpeg_encoder::Encoder::new(&mut jpeg, 85);
    encoder.set_progressive(true);
    encoder
        .encode(rgb.as_raw(), 320, 208, jpeg_encoder::ColorType::Rgb)
        .unwrap();
    Resource::bytes("image/jpeg", jpeg)
}

/// A baseline JPEG large enough to be decoded reduced (both sides over 768 px): the
/// siblings that resume its decode get jobs without the data already decoded.
fn large_jpeg() -> Resource {
    const _: () = assert!(800 >= 2 * edge_moderation::media::decode::REDUCED_MIN_SIDE);
    let photo = support::fidelity_image("photo_coffee.png");
    let rgb = photo
        .resize_exact(1024, 800, FilterType::Triangle)
        .to_rgb8();
    let mut jpeg = Vec::new();
    jpeg_encoder::Encoder::new(&mut jpeg, 85)
        .encode(rgb.as_raw(), 1024, 800, jpeg_encoder::ColorType::Rgb)
        .unwrap();
    Resource::bytes("image/jpeg", jpeg)
}

/// How many times a JPEG's decode stops when every instance hands on as soon as it may.
fn decode_stops(jpeg: &[u8]) -> usize {
    let plan = |width: u32, height: u32| {
        Some(Plan {
            rows: read_positions(height as usize),
            columns: read_positions(width as usize),
            preview_per_block: 1,
        })
    };
    let (mut state, mut stops) = (None::<Vec<u8>>, 0);
    loop {
        match decode_resumable(jpeg, plan, state.as_deref(), &mut |_| true) {
            Ok(Progress::Done(_)) => return stops,
            Ok(Progress::Suspended { state: next }) => {
                state = Some(next);
                stops += 1;
            }
            Err(e) => panic!("{e:?}"),
        }
    }
}

/// `path` judged by the service handing every step on and by one instance alone: the
/// same scores, verdict and status.
fn handed_and_alone(path: &str) -> (support::Reply, support::Reply) {
    let handed = world().handing_off.get(path);
    let alone = world().alone.get(path);
    assert_eq!(
        handed.header(headers::SCORES),
        alone.header(headers::SCORES),
        "{path}"
    );
    assert_eq!(handed.verdict(), alone.verdict(), "{path}");
    assert_eq!(handed.status, alone.status, "{path}");
    (handed, alone)
}

#[test]
fn an_inference_handed_across_instances_scores_like_one_instance() {
    for path in [
        "/photo.jpg",
        "/large.jpg",
        "/progressive.jpg",
        "/rocket.png",
        "/drawing.webp",
    ] {
        let (handed, alone) = handed_and_alone(path);
        // A JPEG's decode crosses instances first (a sixteenth of its MCU rows or more in
        // each, a 32nd for a progressive one), then one sibling per segment: each hands
        // on as soon as it may.
        let bytes = bytes_of(&world().fixtures, path);
        let decode_parts = if path.ends_with(".jpg") {
            let stops = decode_stops(&bytes);
            assert!(stops >= 1, "{path}: the decode was split");
            stops
        } else {
            0
        };
        let siblings = handed.header(headers::SIBLING_CPU).expect("sibling CPU");
        assert_eq!(
            siblings.split(',').count(),
            decode_parts + SEGMENTS,
            "{path}: {siblings}"
        );
        assert_eq!(alone.header(headers::SIBLING_CPU), None, "{path}");
        // Each instance reports its CPU; the one that planned also the pace it planned
        // with, below the slowest bound (2.5): a reading there is a calibration that ran
        // slower than the code it was measured for (`budget::calibration_work`), not a
        // host 2.5 times slower. Without siblings nothing is planned or reported.
        for (reply, planned) in [(&handed, true), (&alone, false)] {
            let timing = reply.header(headers::SERVER_TIMING).unwrap_or_default();
            assert!(timing.contains("cpu;dur="), "{path}: {timing}");
            let pace = timing
                .split(", ")
                .find_map(|entry| entry.strip_prefix("pace;desc="));
            match pace.map(str::parse::<f32>) {
                Some(Ok(pace)) if planned => {
                    assert!((0.8..2.5).contains(&pace), "{path}: pace {pace}")
                }
                None if !planned => {}
                other => panic!("{path}: pace {other:?} in {timing}"),
            }
        }
    }
}

#[test]
fn frames_judged_at_once_in_siblings_score_like_one_instance() {
    // The frames are read in a sibling (never in the instance answering the client),
    // which stops after each frame and hands the reading on (the canvas and the frames
    // kept so far travel with it); the last reader judges: its first frame's inference
    // runs in its chain, every other frame's in its own, all sent at once: one sibling
    // per segment per judged frame, after the readers.
    for (path, frames, judged) in [("/animated.gif", 2, 2), ("/long.gif", 6, 2)] {
        let (handed, alone) = handed_and_alone(path);
        assert_eq!(
            handed.header(headers::REASON),
            alone.header(headers::REASON),
            "{path}"
        );
        let siblings = handed.header(headers::SIBLING_CPU).expect("sibling CPU");
        assert_eq!(
            siblings.split(',').count(),
            frames + judged * SEGMENTS,
            "{path}: {siblings}: {frames} readers, then a chain of {SEGMENTS} per judged frame"
        );
    }
    // The drawing, read by the third instance, decided.
    let long = world().handing_off.get("/long.gif");
    assert_ne!(long.verdict(), Some("pass"));
    let reason = long.header(headers::REASON).unwrap_or_default();
    assert!(reason.contains("frame 3"), "{reason}");
}

/// A JPEG XL (700×590: 3 × 3 groups of 256) whose decode no instance can afford is
/// decoded in parts, a region each in its own sibling, assembled by the instance that
/// judges it: the scores of the image decoded whole (natively, in the Wasm kernel's
/// arithmetic). With every instance handing on as soon as it may, its parts are the
/// finest a split has (2 × 2 groups decoded each); the inference then crosses a sibling
/// per segment. One that would need more parts than an image may take (a 1400×1400 at
/// that rate) gets `on_oversize`, saying why.
#[test]
fn a_jpeg_xl_decoded_in_parts_scores_like_one_decoded_whole() {
    use edge_moderation::classifier::{Arithmetic, Classifier};
    use edge_moderation::media::decode::jxl_parts;
    use edge_moderation::media::ImageFormat;
    use edge_moderation::moderation::{budget, known::KnownLists, moderate};
    use edge_moderation::policy::Policy;

    let bytes = bytes_of(&world().fixtures, "/parts.jxl");
    let policy = Policy::from_json(&drawing_policy(HAND_OFF_ALL)).unwrap();
    let limits = budget::decode_limits(&policy.limits);
    let layout = jxl_parts::layout(&bytes, limits).unwrap();
    let finest = 4 * u64::from(layout.group).pow(2);
    let parts = layout.parts(finest, 16).expect("a plan").len();
    assert_eq!(parts, 4);

    let reply = world().handing_off.get("/parts.jxl");
    let classifier = Classifier::load_with(Arithmetic::Integer).unwrap();
    let whole = moderate(
        &bytes,
        ImageFormat::JpegXl,
        &policy,
        &KnownLists::none(),
        &classifier,
    );
    let native = whole.scores.expect("classified").to_string();
    let wasm = support::probabilities(reply.header(headers::SCORES).expect("scores"));
    assert_eq!(wasm.len(), 5);
    for (w, n) in wasm.iter().zip(support::probabilities(&native)) {
        assert!((w - n).abs() <= 2e-4, "parts {wasm:?}, whole {native}");
    }
    assert_eq!(reply.verdict(), Some(whole.outcome.verdict().as_str()));
    let siblings = reply.header(headers::SIBLING_CPU).expect("sibling CPU");
    assert_eq!(
        siblings.split(',').count(),
        1 + parts + SEGMENTS,
        "{siblings}: the judging sibling, {parts} parts, a chain of {SEGMENTS}"
    );

    let large = world().handing_off.get("/large.jxl");
    assert_eq!((large.status, large.verdict()), (451, Some("block")));
    let reason = large.header(headers::REASON).unwrap_or_default();
    assert!(reason.contains("instances to decode"), "{reason}");
}

#[test]
fn a_rewrite_still_happens_when_the_inference_was_handed_off() {
    let reply = world().handing_off.get("/rocket.jpg");
    assert_eq!((reply.status, reply.verdict()), (200, Some("rewrite")));
    assert_eq!(reply.header("content-type"), Some("image/jpeg"));
    assert_ne!(reply.body, bytes_of(&world().fixtures, "/rocket.jpg"));
    image::load_from_memory(&reply.body).expect("a decodable rewrite");
}

#[test]
fn a_failed_sibling_gets_the_on_error_outcome() {
    let blocked = world().unreachable.get("/photo.jpg");
    assert_eq!((blocked.status, blocked.verdict()), (451, Some("block")));
    let reason = blocked.header(headers::REASON).unwrap_or_default();
    assert!(reason.starts_with("sibling failed: "), "{reason}");
    assert!(edge_moderation::media::ImageFormat::sniff(&blocked.body).is_none());

    let passed = world().unreachable_pass.get("/photo.jpg");
    assert_eq!((passed.status, passed.verdict()), (200, Some("pass")));
    assert_eq!(passed.body, bytes_of(&world().fixtures, "/photo.jpg"));
}

#[test]
fn a_sibling_that_never_answers_gets_the_on_error_outcome_after_the_timeout() {
    let started = std::time::Instant::now();
    let blocked = world().silent.get("/photo.jpg");
    // Bounded: the policy's 1.5 s, not the minutes a silent backend could hold a request.
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
    assert_eq!((blocked.status, blocked.verdict()), (451, Some("block")));
    let reason = blocked.header(headers::REASON).unwrap_or_default();
    assert!(
        reason.starts_with("sibling failed: ") && reason.contains("no answer within 1500 ms"),
        "{reason}"
    );
    assert!(edge_moderation::media::ImageFormat::sniff(&blocked.body).is_none());
}

#[test]
fn the_internal_route_without_the_secret_is_ordinary_traffic() {
    let handoff = b"EMH1\x00\x00";
    for route in [headers::SIBLING_ROUTE, headers::SIBLING_IMAGE_ROUTE] {
        for (service, key) in [
            (&world().handing_off, None),
            (&world().handing_off, Some("wrong-key")),
            // The right key, but this service has no secret configured.
            (&world().alone, Some(SIBLING_KEY)),
        ] {
            let headers: Vec<(&str, &str)> =
                key.map(|k| (headers::SIBLING_KEY, k)).into_iter().collect();
            let reply = service.post(route, &headers, handoff);
            // Forwarded to the origin, which stores whatever is posted to a path it
            // does not serve.
            assert_eq!(
                (reply.status, reply.body.as_slice()),
                (201, &br#"{"stored": true}"#[..]),
                "{route} {key:?}"
            );
            assert!(reply.headers.keys().all(|h| !h.starts_with("x-moderation")));
        }
    }
    // With the secret, a damaged message is refused by the service itself.
    for (route, message) in [
        (headers::SIBLING_ROUTE, &b"EMH1\x00\x09"[..]),
        (headers::SIBLING_IMAGE_ROUTE, &b"EMJ1\xff\xff\x00\x00{}"[..]),
    ] {
        let refused =
            world()
                .handing_off
                .post(route, &[(headers::SIBLING_KEY, SIBLING_KEY)], message);
        assert_eq!(refused.status, 400, "{route}");
    }
}
