//! The process-wide classifier, and the Wizer hook that loads it into the snapshot.
//!
//! Loading and optimising the model costs hundreds of milliseconds, far beyond a request's
//! CPU budget, so it happens once: at build time when the module is pre-initialised
//! (Wizer calls `wizer-initialize`, and the loaded model is part of the snapshot), or
//! lazily on first use when it is not.

use super::respond::Report;
use super::siblings::{self, Relay};
use super::{cache, known};
use edge_moderation::classifier::{Classifier, ModelError, ModelIdentity, MODEL_ONNX};
use edge_moderation::media::frames;
use edge_moderation::media::mixed_replace::{self, PartImage};
use edge_moderation::media::ImageFormat;
use edge_moderation::moderation::known::KnownLists;
use edge_moderation::moderation::record::ContentHash;
use edge_moderation::moderation::{
    judge as run, moderate_from, moderate_svg_drawing, moderate_svg_embedded, svg_verdict,
    with_stream_part, Moderation, Outcome, Reason, Subject,
};
use edge_moderation::policy::Policy;
use edge_moderation::snapshot;
use std::cell::UnsafeCell;
use std::sync::OnceLock;

static CLASSIFIER: OnceLock<Result<Classifier, ModelError>> = OnceLock::new();

/// The shipped ONNX model, in writable memory: once the snapshot holds the loaded model,
/// the 2.8 MB it was parsed from are dead, and zeroed they drop out of the module (Wizer
/// stores only non-zero data).
struct ModelBytes(UnsafeCell<[u8; MODEL_ONNX.len()]>);
// Written once, in `wizer_initialize`, before any request can read it.
unsafe impl Sync for ModelBytes {}
static MODEL: ModelBytes = ModelBytes(UnsafeCell::new(*MODEL_ONNX));

fn load() -> Result<Classifier, ModelError> {
    let onnx = unsafe { &*MODEL.0.get() };
    Classifier::from_onnx(onnx)
}

fn classifier() -> &'static Result<Classifier, ModelError> {
    CLASSIFIER.get_or_init(load)
}

/// The loaded model's identity; None when it failed to load.
pub fn identity() -> Option<ModelIdentity> {
    classifier().as_ref().ok().map(Classifier::identity)
}

/// The shared classifier, or why it failed to load.
pub fn shared() -> Result<&'static Classifier, &'static ModelError> {
    classifier().as_ref()
}

/// Moderates one image with the shared classifier, handing parts of the inference to
/// sibling instances when this one's CPU runs short. Returns the CPU milliseconds of the
/// siblings that took part.
pub fn moderate(
    bytes: &[u8],
    subject: Subject,
    policy: &Policy,
    host: &str,
) -> (Moderation, Vec<u64>) {
    relayed(policy, host, |relay, known| {
        run(bytes, subject, policy, known, relay)
    })
}

/// Judges an SVG's drawing only (a drawing job: `moderate_svg_drawing`).
pub fn moderate_drawing(svg: &[u8], policy: &Policy, host: &str) -> (Moderation, Vec<u64>) {
    relayed(policy, host, |relay, known| {
        moderate_svg_drawing(svg, policy, known, relay)
    })
}

/// Moderates an image whose decode (a JPEG's) or reading (a GIF's frames) another
/// instance stopped, from the state it left (a resumed job); it may stop again here and
/// go on in a further sibling.
pub fn moderate_resumed(
    bytes: &[u8],
    state: &[u8],
    policy: &Policy,
    host: &str,
) -> (Moderation, Vec<u64>) {
    // The job keeps the file's header: its format is the one the state was made for.
    let Some(format) = ImageFormat::sniff(bytes) else {
        return (
            Moderation::undecodable(policy, "a resumed job that is not an image".into()),
            Vec::new(),
        );
    };
    relayed(policy, host, |relay, known| {
        relay.resuming_decode();
        moderate_from(bytes, format, policy, known, relay, Some(state))
    })
}

/// Runs `work` with the shared classifier behind a sibling relay and the policy's
/// lists; returns its moderation and the CPU of the siblings it used.
fn relayed(
    policy: &Policy,
    host: &str,
    work: impl FnOnce(&mut Relay, &KnownLists) -> Moderation,
) -> (Moderation, Vec<u64>) {
    match classifier() {
        Ok(classifier) => {
            let mut relay = Relay::new(classifier, policy, host);
            let moderation = work(&mut relay, &known::lists(policy));
            (moderation, relay.sibling_cpu)
        }
        Err(why) => (
            Moderation::model_failed(policy, why.to_string()),
            Vec::new(),
        ),
    }
}

/// Judges a `multipart/x-mixed-replace` stream by the images its parts show, each as one
/// image is judged ([`judge`]: through the verdict cache, with siblings); the worst
/// decides, and the first block ends the judging. A stream of more image parts than
/// `animations.max_frames` (each is an inference) gets `on_oversize`. `None`: no part
/// shows an image, so there is nothing to judge.
pub fn judge_stream(
    bytes: &[u8],
    boundary: &str,
    policy: &Policy,
    host: &str,
) -> Option<(Moderation, Report)> {
    let images = mixed_replace::images(bytes, boundary);
    if images.is_empty() {
        return None;
    }
    let most = policy.animations.max_frames;
    if images.len() > most {
        let detail = format!(
            "a multipart/x-mixed-replace stream of {} images, more than animations.max_frames ({most})",
            images.len()
        );
        return Some((Moderation::oversize(policy, detail), Report::default()));
    }
    let mut verdict: Option<Moderation> = None;
    let mut report = Report::default();
    for (i, image) in images.into_iter().enumerate() {
        let (name, (moderation, part)) = match image {
            PartImage::Raster(format, bytes) => (
                format.name(),
                judge(bytes, Subject::Raster(format), policy, host),
            ),
            PartImage::Svg(bytes) => ("SVG", judge(bytes, Subject::Svg, policy, host)),
            PartImage::Unreadable(why) => (
                "unreadable",
                (Moderation::undecodable(policy, why), Report::default()),
            ),
        };
        report.siblings.extend(&part.siblings);
        let combined = with_stream_part(verdict, i + 1, name, moderation);
        // The deciding part's cache status, digest and format are the ones reported.
        if matches!(combined.reason, Reason::StreamPart { index, .. } if index == i + 1) {
            report = Report {
                siblings: report.siblings,
                ..part
            };
        }
        let blocked = combined.outcome == Outcome::Block;
        verdict = Some(combined);
        if blocked {
            break;
        }
    }
    verdict.map(|verdict| (verdict, report))
}

/// Judges one image in this instance: the verdict cache, else [`moderate`].
pub fn judge(bytes: &[u8], subject: Subject, policy: &Policy, host: &str) -> (Moderation, Report) {
    judge_known(bytes, ContentHash::of(bytes), subject, policy, host)
}

/// As [`judge`], for an image whose digest is already known.
pub fn judge_known(
    bytes: &[u8],
    content: ContentHash,
    subject: Subject,
    policy: &Policy,
    host: &str,
) -> (Moderation, Report) {
    let mut siblings = Vec::new();
    let (moderation, cached) = cache::judged(&content, policy, || {
        let (moderation, sibling_cpu) = match subject {
            Subject::Raster(format) if format.decoded_in_isolation() => {
                moderate_isolated(bytes, format, policy, host)
            }
            Subject::Raster(format)
                if siblings::available() && frames::read_apart(bytes, format) =>
            {
                moderate_in_sibling(bytes, policy, host)
            }
            Subject::Svg if siblings::available() => moderate_svg_in_parts(bytes, policy, host),
            _ => moderate(bytes, subject, policy, host),
        };
        siblings = sibling_cpu;
        moderation
    });
    let report = Report {
        cached,
        siblings,
        content: Some(content),
        subject: Some(subject),
    };
    (moderation, report)
}

/// Moderates an image in a sibling instance only (AVIF, JPEG XL:
/// `ImageFormat::decoded_in_isolation`). rav1d 1.1 aborts the instance on a damaged AV1
/// stream (memorysafety/rav1d#1497: any decode error with one frame context), and an
/// abort here would be a 500 with no reason; a sibling's abort, or its running out of
/// CPU, is a failed sub-request, which gets the policy's `on_error` outcome. Without
/// siblings such an image is not decoded: `on_undecodable`.
fn moderate_isolated(
    bytes: &[u8],
    format: ImageFormat,
    policy: &Policy,
    host: &str,
) -> (Moderation, Vec<u64>) {
    if !siblings::available() {
        let why = format!(
            "{} images are decoded only in a sibling instance, and none is configured",
            format.name()
        );
        return (Moderation::undecodable(policy, why), Vec::new());
    }
    moderate_in_sibling(bytes, policy, host)
}

/// Moderates an image wholly in a sibling instance, which judges it as this one would
/// (handing its inferences on to siblings of its own); its failure gets `on_error`.
fn moderate_in_sibling(bytes: &[u8], policy: &Policy, host: &str) -> (Moderation, Vec<u64>) {
    let judged = siblings::dispatch(bytes, policy, host).wait(policy);
    (judged.moderation, judged.cpu)
}

/// Moderates an SVG with its drawing judged in a sibling instance while this one judges
/// the rasters it embeds: drawing costs CPU (resvg, and each raster decoded again for
/// it) that this instance's budget may not have after the rasters.
fn moderate_svg_in_parts(svg: &[u8], policy: &Policy, host: &str) -> (Moderation, Vec<u64>) {
    let drawing = siblings::dispatch_drawing(svg, policy, host);
    let (embedded, mut cpu) = relayed(policy, host, |relay, known| {
        moderate_svg_embedded(svg, policy, known, relay)
    });
    // The drawing is awaited even after a block: its sub-request is still running.
    let drawn = drawing.wait(policy);
    cpu.extend(drawn.cpu);
    if embedded.outcome == Outcome::Block {
        return (embedded, cpu);
    }
    (svg_verdict(embedded, drawn.moderation), cpu)
}

extern "C" {
    fn __wasm_call_ctors();
}

/// Where the build (`scripts/build.sh`) maps its snapshot directory for Wizer.
const SNAPSHOT_DIR: &str = "/snapshot";
/// The record file, written by the record run and read by the replay run.
const SNAPSHOT_PLAN: &str = "/snapshot/plan";

/// Wizer's build-time hook: load the model so the snapshot carries it ready to run.
///
/// The build runs it twice (see `snapshot`): with `EDGE_MODERATION_SNAPSHOT=record` it
/// records which allocations the loaded model keeps and writes that plan (that instance
/// is discarded); otherwise it replays the plan so the model lands in one dense arena.
#[export_name = "wizer-initialize"]
pub extern "C" fn wizer_initialize() {
    // tract registers its kernels in static constructors, which a reactor-style call like
    // this one does not run by itself; without them the snapshot traps at inference.
    unsafe { __wasm_call_ctors() };
    if std::env::var_os("EDGE_MODERATION_SNAPSHOT").is_some_and(|mode| mode == "record") {
        let (_, plan) = snapshot::record(load);
        match std::fs::write(SNAPSHOT_PLAN, plan) {
            Ok(()) => eprintln!("wizer-initialize: recorded the model's allocations"),
            Err(e) => eprintln!("wizer-initialize: cannot write {SNAPSHOT_PLAN}: {e}"),
        }
        return;
    }
    let loaded = match std::fs::read(SNAPSHOT_PLAN) {
        Ok(plan) => {
            let (loaded, stats) = snapshot::replay(plan, load);
            eprintln!("wizer-initialize: model loaded into the snapshot: {stats:?}");
            loaded
        }
        Err(e) => {
            eprintln!(
                "wizer-initialize: no allocation plan in {SNAPSHOT_DIR} ({e}); \
                 the snapshot will be sparse"
            );
            load()
        }
    };
    if loaded.is_ok() {
        unsafe { (*MODEL.0.get()).fill(0) };
    }
    let _ = CLASSIFIER.set(loaded);
}
