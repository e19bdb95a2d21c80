//! One image body in, one [`Moderation`] out, independent of HTTP: decode → preprocess →
//! classify → decide → rewrite. Every failure has a defined outcome taken from the policy,
//! so callers never interpret errors.

pub mod budget;
pub mod handoff;
pub mod job;
pub mod known;
mod outcome;
pub mod record;

pub use outcome::{Judged, Moderation, Outcome, Reason, Timings};

use crate::classifier::preprocess::preprocess_gathered;
use crate::classifier::{preprocess_over, transparency, Backdrop, Classifier, ModelError, Scores};
use crate::media::decode::{decode_resumable, DecodeError, DecodeLimits, Decoded, Decoding};
use crate::media::encode::encode;
use crate::media::frames::Reading;
use crate::media::obscure::obscure;
use crate::media::ImageFormat;
use crate::media::{frames, pdq, svg};
use crate::policy::{Action, Decision, Policy, Verdict};
use anyhow::Context;
use known::{KnownLists, Probe};
use std::time::Instant;

/// The work of judging an image that may run elsewhere: the model on a preprocessed
/// tensor, in this instance ([`Classifier`]) or with parts of it handed to sibling
/// instances (the Compute glue); and the rest of a long JPEG decode.
pub trait Inference {
    fn infer(&mut self, input: tract_onnx::prelude::Tensor) -> Result<Scores, InferenceError>;

    /// Whether a decode running here should stop and go on in a sibling instance
    /// (asked between rows of blocks; `finishing` before the last row, after which the
    /// decode's assembly and the rest of the judging would run here). Never, unless the
    /// glue says so.
    fn decode_budget_spent(&mut self, finishing: bool) -> bool {
        let _ = finishing;
        false
    }

    /// The same, asked before each frame of an animation's reading (`finishing` before
    /// the last): a frame may cost far more than a row of JPEG blocks.
    fn frame_budget_spent(&mut self, finishing: bool) -> bool {
        self.decode_budget_spent(finishing)
    }

    /// The scores of several independent inputs (frames, backdrops), in order: one by
    /// one unless the glue runs them at once.
    fn infer_all(
        &mut self,
        inputs: Vec<tract_onnx::prelude::Tensor>,
    ) -> Vec<Result<Scores, InferenceError>> {
        inputs.into_iter().map(|input| self.infer(input)).collect()
    }

    /// Keeps `ms` of this instance's CPU for what follows the inference (a rewrite):
    /// inference hands on to siblings that much earlier. Nothing, unless the glue says so.
    fn reserve_ms(&mut self, ms: u64) {
        let _ = ms;
    }

    /// Keeps `ms` more of this instance's CPU, beside [`Inference::reserve_ms`], for work
    /// that follows this image's judging here and that no estimate covers (the next image
    /// an SVG embeds: its decode, hash and model input), until set again. Nothing, unless
    /// the glue says so.
    fn reserve_after_ms(&mut self, ms: u64) {
        let _ = ms;
    }

    /// The samples of a JPEG XL decoded elsewhere in parts, a region per sibling instance,
    /// when this instance's CPU cannot decode it whole (jxl-oxide's decode cannot stop
    /// part-way): the state `decode_resumable` assembles the image from. `None`: decode
    /// it here, as it does unless the glue says otherwise.
    fn decode_apart(
        &mut self,
        image: &[u8],
        limits: DecodeLimits,
    ) -> Option<Result<Vec<u8>, ApartError>> {
        let _ = (image, limits);
        None
    }

    /// The moderation of an image whose decode (or animation's reading) stopped here, by
    /// a sibling that resumes it from `state` (only asked after
    /// [`Inference::decode_budget_spent`] or [`Inference::frame_budget_spent`] said yes).
    fn judge_elsewhere(&mut self, job: Resumed<'_>) -> Moderation {
        let _ = job.state;
        Moderation::sibling_failed(job.policy, "no sibling to resume a decode".into())
    }
}

/// An image to judge from where another instance stopped decoding it.
pub struct Resumed<'a> {
    pub image: &'a [u8],
    pub policy: &'a Policy,
    /// The decoder's state (`media::jpeg`'s `EMD2`, or `EMP2` for a progressive JPEG;
    /// `media::frames`'s `EMG1` for a GIF's reading).
    pub state: &'a [u8],
}

/// Why an image decoded apart ([`Inference::decode_apart`]) has no samples.
#[derive(Debug)]
pub enum ApartError {
    /// A sibling could not decode its region, as this instance could not have decoded
    /// the whole: the policy's outcome for such an image.
    NotDecoded(DecodeError),
    /// More parts than an image may be decoded in (each a sibling): the policy's outcome
    /// for an image beyond its limits.
    TooCostly(String),
    /// A sibling failed or did not answer: `on_error`.
    Sibling(String),
}

impl ApartError {
    fn outcome(self, policy: &Policy) -> Moderation {
        match self {
            ApartError::NotDecoded(error) => Moderation::not_decoded(policy, error),
            ApartError::TooCostly(why) => Moderation::oversize(policy, why),
            ApartError::Sibling(why) => Moderation::sibling_failed(policy, why),
        }
    }
}

/// Why an inference gave no scores; both cases get the policy's `on_error` outcome.
#[derive(Debug)]
pub enum InferenceError {
    Model(ModelError),
    Sibling(String),
}

impl<T: Inference + ?Sized> Inference for &mut T {
    fn infer(&mut self, input: tract_onnx::prelude::Tensor) -> Result<Scores, InferenceError> {
        (**self).infer(input)
    }
    fn decode_budget_spent(&mut self, finishing: bool) -> bool {
        (**self).decode_budget_spent(finishing)
    }
    fn frame_budget_spent(&mut self, finishing: bool) -> bool {
        (**self).frame_budget_spent(finishing)
    }
    fn reserve_ms(&mut self, ms: u64) {
        (**self).reserve_ms(ms)
    }
    fn reserve_after_ms(&mut self, ms: u64) {
        (**self).reserve_after_ms(ms)
    }
    fn infer_all(
        &mut self,
        inputs: Vec<tract_onnx::prelude::Tensor>,
    ) -> Vec<Result<Scores, InferenceError>> {
        (**self).infer_all(inputs)
    }
    fn decode_apart(
        &mut self,
        image: &[u8],
        limits: DecodeLimits,
    ) -> Option<Result<Vec<u8>, ApartError>> {
        (**self).decode_apart(image, limits)
    }
    fn judge_elsewhere(&mut self, job: Resumed<'_>) -> Moderation {
        (**self).judge_elsewhere(job)
    }
}

impl Inference for &Classifier {
    fn infer(&mut self, input: tract_onnx::prelude::Tensor) -> Result<Scores, InferenceError> {
        self.classify(input).map_err(InferenceError::Model)
    }
}

/// Which view of an image a verdict came from: a frame of an animation, a backdrop under
/// a transparent image, the browser whose rendering it is where browsers differ. Shown
/// after the rule in the reason (` (frame 3, shown on white)`, ` (as Firefox shows it)`).
#[derive(Clone, Copy, Debug, Default)]
struct View {
    frame: Option<usize>,
    backdrop: Option<Backdrop>,
    shown_by: Option<&'static str>,
}

impl std::fmt::Display for View {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if let Some(frame) = self.frame {
            parts.push(format!("frame {}", frame + 1));
        }
        if let Some(browser) = self.shown_by {
            parts.push(format!("as {browser} shows it"));
        }
        if let Some(backdrop) = self.backdrop {
            parts.push(format!("shown on {}", backdrop.name()));
        }
        match parts.is_empty() {
            true => Ok(()),
            false => write!(f, " ({})", parts.join(", ")),
        }
    }
}

/// An image is judged as shown over white and over black when at least this share of
/// the pixels the model samples is not opaque (a logo's soft edge is not; a cut-out or a
/// picture drawn in the alpha channel is).
pub const MEANINGFUL_TRANSPARENCY: f32 = 0.01;

/// The backdrops an image is judged over: none (alpha dropped, as nsfwjs does) for an
/// opaque image; white and black (the page's extremes) for a transparent one.
fn backdrops(image: &image::DynamicImage) -> &'static [Option<Backdrop>] {
    if transparency(image) >= MEANINGFUL_TRANSPARENCY {
        &[Some(Backdrop::White), Some(Backdrop::Black)]
    } else {
        &[None]
    }
}

/// An image's PDQ probe: its hash (and with `dihedral`, the other seven variants) and
/// quality, from its RGB pixels as judged.
fn probe(image: &image::DynamicImage, dihedral: bool) -> Option<Probe> {
    let converted;
    let rgb = match image.as_rgb8() {
        Some(rgb) => rgb,
        None => {
            converted = image.to_rgb8();
            &converted
        }
    };
    let (width, height) = (rgb.width() as usize, rgb.height() as usize);
    if dihedral {
        let (hashes, quality) = pdq::hash_rgb_dihedral(rgb.as_raw(), width, height)?;
        Some(Probe {
            hashes: hashes.to_vec(),
            quality,
        })
    } else {
        let found = pdq::hash_rgb(rgb.as_raw(), width, height)?;
        Some(Probe {
            hashes: vec![found.hash],
            quality: found.quality,
        })
    }
}

/// Moderates one raster image: decode (within the limits), PDQ and the known lists (a
/// match decides without inference), inference on each view, the policy's decision,
/// the rewrite. A long JPEG decode (or a long GIF's reading, between two frames) may
/// stop part-way and the rest go to a sibling instance
/// ([`Inference::judge_elsewhere`]), whose moderation is then this one.
pub fn moderate(
    bytes: &[u8],
    format: ImageFormat,
    policy: &Policy,
    known: &KnownLists,
    inference: impl Inference,
) -> Moderation {
    moderate_from(bytes, format, policy, known, inference, None)
}

/// [`moderate`], resuming a JPEG decode or a GIF's reading another instance stopped
/// (`from`: its state).
pub fn moderate_from(
    bytes: &[u8],
    format: ImageFormat,
    policy: &Policy,
    known: &KnownLists,
    mut inference: impl Inference,
    from: Option<&[u8]>,
) -> Moderation {
    if bytes.len() > policy.limits.max_bytes {
        return Moderation::oversize(policy, format!("{} bytes", bytes.len()));
    }
    let started = Instant::now();
    let limits = budget::decode_limits(&policy.limits);
    // An animation is judged on the frames a browser would show longest and most unlike
    // each other (decoded once, there), an icon on its entries alike; a still on its one
    // image, oriented as shown.
    // A long animation's reading, like a long JPEG decode, may stop and go on elsewhere.
    let resumes_frames = from.is_some_and(frames::is_state);
    let (still, frames) = if resumes_frames || frames::judged_by_frames(bytes, format) {
        let reading = {
            let mut spent = |finishing| inference.frame_budget_spent(finishing);
            let max_frames = policy.animations.max_frames;
            frames::judged_frames_resumable(bytes, format, limits, max_frames, from, &mut spent)
        };
        match reading {
            Ok(Reading::Done(frames)) => (None, frames),
            Ok(Reading::Suspended { state }) => {
                return inference.judge_elsewhere(Resumed {
                    image: bytes,
                    policy,
                    state: &state,
                })
            }
            Err(e) => return Moderation::not_decoded(policy, e),
        }
    } else {
        // A JPEG XL too costly for this instance is decoded in parts elsewhere, then
        // assembled here.
        let apart = match (format, from) {
            (ImageFormat::JpegXl, None) => inference.decode_apart(bytes, limits),
            _ => None,
        };
        let assembly = match apart {
            Some(Ok(assembly)) => Some(assembly),
            Some(Err(error)) => return error.outcome(policy),
            None => None,
        };
        let from = from.or(assembly.as_deref());
        let decoding = {
            let mut spent = |finishing| inference.decode_budget_spent(finishing);
            decode_resumable(bytes, format, limits, from, &mut spent)
        };
        match decoding {
            Ok(Decoding::Done(decoded)) => (Some(decoded), Vec::new()),
            Ok(Decoding::Suspended { state }) => {
                return inference.judge_elsewhere(Resumed {
                    image: bytes,
                    policy,
                    state: &state,
                })
            }
            Err(e) => return Moderation::not_decoded(policy, e),
        }
    };
    judge_decoded(still, frames, format, policy, known, inference, started)
}

/// Judges an image decoded since `started`: a `still` or the `frames` of an animation.
/// PDQ and the lists, inference on each view, the policy's decision, the rewrite (in
/// `format`'s rewrite format).
fn judge_decoded(
    still: Option<Decoded>,
    frames: Vec<frames::Frame>,
    format: ImageFormat,
    policy: &Policy,
    known: &KnownLists,
    mut inference: impl Inference,
    started: Instant,
) -> Moderation {
    // (frame, browser, pixels): a still's one image (and its other browser's rendering),
    // or an animation's frames.
    type Shown<'a> = (Option<usize>, Option<&'static str>, &'a image::DynamicImage);
    let views: Vec<Shown> = match &still {
        Some(decoded) => std::iter::once((None, None, &decoded.image))
            .chain(
                decoded
                    .also_shown
                    .iter()
                    .map(|also| (None, Some(also.by), &also.image)),
            )
            .collect(),
        None => frames
            .iter()
            .map(|f| (Some(f.index), None, &f.image))
            .collect(),
    };
    let Some(&(_, _, first_view)) = views.first() else {
        return Moderation::undecodable(policy, "an animation without frames".into());
    };
    // The size shown: a still's (before any reduced decoding), an animation's canvas.
    let (width, height) = still.as_ref().map_or_else(
        || (first_view.width(), first_view.height()),
        |decoded| (decoded.width, decoded.height),
    );
    let decoded_at = Instant::now();
    // Every view's PDQ: what the lists match, and what the decision log reports.
    let probes: Vec<Probe> = views
        .iter()
        .filter_map(|(_, _, image)| probe(image, policy.lists.dihedral))
        .collect();
    let facts = |view: usize| Judged {
        width,
        height,
        frames: frames.len().max(1),
        pdq: probes.get(view).and_then(|p| p.hashes.first().copied()),
        pdq_quality: probes.get(view).map(|p| p.quality),
        probes: probes.clone(),
    };
    let listed = known.decide(&probes);
    let hashed_at = Instant::now();
    let timings = Timings {
        decode: decoded_at - started,
        pdq: hashed_at - decoded_at,
        ..Timings::default()
    };
    if let Some((found, view)) = listed {
        return Moderation::listed(found, timings, facts(view));
    }
    // A rewrite runs here, after the inference: leave it the CPU it needs.
    let can_rewrite = policy.rules.iter().any(|r| r.action == Action::Rewrite);
    inference.reserve_ms(budget::rewrite_reserve_ms(can_rewrite, width, height));
    // The worst verdict over the frames and backdrops decides (the first of equals).
    // Every view's input first, so that the glue can judge them at once.
    let gathered = still.as_ref().and_then(|d| d.gathered.as_ref());
    let mut inputs = Vec::new();
    let mut judged_views = Vec::new();
    for (view_index, &(frame, shown_by, image)) in views.iter().enumerate() {
        // A still JPEG's model input is gathered from the full-size image (it has no
        // alpha, so no backdrops); other views are resized from their pixels.
        for &backdrop in backdrops(image) {
            inputs.push(match gathered {
                Some(gathered) if view_index == 0 => preprocess_gathered(gathered),
                _ => preprocess_over(image, backdrop),
            });
            let view = View {
                frame,
                backdrop,
                shown_by,
            };
            judged_views.push((view, view_index));
        }
    }
    let mut judged: Option<(Decision, Scores, View, usize)> = None;
    for (scores, (view, view_index)) in inference.infer_all(inputs).into_iter().zip(judged_views) {
        let scores = match scores {
            Ok(scores) => scores,
            Err(InferenceError::Model(e)) => {
                return Moderation::model_failed(policy, e.to_string())
            }
            Err(InferenceError::Sibling(why)) => return Moderation::sibling_failed(policy, why),
        };
        let decision = policy.decide(&scores);
        let worse = judged
            .as_ref()
            .is_none_or(|(worst, ..)| decision.verdict.severity() > worst.verdict.severity());
        if worse {
            judged = Some((decision, scores, view, view_index));
        }
    }
    let Some((decision, scores, view, view_index)) = judged else {
        return Moderation::model_failed(policy, "no inference ran".into());
    };
    let classified = Instant::now();
    let mut moderation = Moderation {
        outcome: Outcome::Pass,
        reason: decision
            .rule
            .map_or(Reason::NoRuleMatched, |index| Reason::Rule {
                index,
                rule: format!("{}{view}", policy.rules[index]),
            }),
        scores: Some(scores),
        timings: Timings {
            inference: classified - hashed_at,
            ..timings
        },
        judged: Some(facts(view_index)),
    };
    moderation.outcome = match decision.verdict {
        Verdict::Pass => Outcome::Pass,
        Verdict::Block => Outcome::Block,
        Verdict::Rewrite => {
            let size = (width, height);
            // An animation becomes an obscured still of the frame that decided; a still
            // is obscured as the browser whose rendering decided shows it.
            let deciding = views
                .get(view_index)
                .map_or(first_view, |&(_, _, image)| image);
            let format = format.rewritten_as();
            let rewritten = rewrite(deciding, size, format, policy);
            moderation.timings.rewrite = classified.elapsed();
            match rewritten {
                Ok(bytes) => Outcome::Rewrite { bytes, format },
                Err(why) => {
                    moderation.reason = Reason::RewriteFailed(why);
                    Outcome::Block
                }
            }
        }
    };
    moderation
}

/// A verdict reused from the verdict cache, under the lists as they are now: a deny or
/// allow match on the views it was judged on decides, as it would have on a miss. Lists
/// are never part of the cache key, so a list change takes effect at once.
pub fn with_lists(moderation: Moderation, known: &KnownLists) -> Moderation {
    let Some(judged) = &moderation.judged else {
        return moderation;
    };
    match known.decide(&judged.probes) {
        Some((found, view)) => {
            let mut facts = judged.clone();
            facts.pdq = judged.probes[view].hashes.first().copied();
            facts.pdq_quality = Some(judged.probes[view].quality);
            Moderation::listed(found, Timings::default(), facts)
        }
        None => moderation,
    }
}

/// What a body is, for judging: a raster in a format we decode, or an SVG (judged by the
/// images it embeds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subject {
    Raster(ImageFormat),
    Svg,
}

impl Subject {
    /// `JPEG`, `PNG`, …, `SVG`.
    pub fn name(self) -> &'static str {
        match self {
            Subject::Raster(format) => format.name(),
            Subject::Svg => "SVG",
        }
    }
}

/// Moderates a body as its subject says.
pub fn judge(
    bytes: &[u8],
    subject: Subject,
    policy: &Policy,
    known: &KnownLists,
    inference: impl Inference,
) -> Moderation {
    match subject {
        Subject::Raster(format) => moderate(bytes, format, policy, known, inference),
        Subject::Svg => moderate_svg(bytes, policy, known, inference),
    }
}

/// An SVG judged as a browser shows it: each image it embeds
/// ([`moderate_svg_embedded`]), then the SVG as drawn ([`moderate_svg_drawing`]) unless
/// an embedded image already blocked it. The worse decides ([`svg_verdict`]).
pub fn moderate_svg(
    svg: &[u8],
    policy: &Policy,
    known: &KnownLists,
    mut inference: impl Inference,
) -> Moderation {
    let embedded = moderate_svg_embedded(svg, policy, known, &mut inference);
    if embedded.outcome == Outcome::Block {
        return embedded;
    }
    let drawn = moderate_svg_drawing(svg, policy, known, &mut inference);
    svg_verdict(embedded, drawn)
}

/// An SVG judged by the images it embeds (`media::svg`): the worst of their moderations
/// decides, naming the image; the first block ends the judging. A rewrite becomes a
/// block: the rewritten SVG would still carry the image. Nothing embedded: a pass for
/// [`Reason::NoEmbeddedImage`].
pub fn moderate_svg_embedded(
    svg: &[u8],
    policy: &Policy,
    known: &KnownLists,
    mut inference: impl Inference,
) -> Moderation {
    let embedded = match svg::embedded_images(svg) {
        Ok(embedded) => embedded,
        Err(e) => return svg_refused(policy, e),
    };
    let mut worst = nothing_to_judge();
    let count = embedded.len();
    for (i, image) in embedded.into_iter().enumerate() {
        // The next image's decode runs here after this one's inference: keep room for it.
        let next = if i + 1 < count {
            budget::NEXT_IMAGE_RESERVE_MS
        } else {
            0
        };
        inference.reserve_after_ms(next);
        let (name, moderation) = match image {
            svg::Embedded::Raster { format, bytes } => (
                format.name().to_string(),
                moderate(&bytes, format, policy, known, &mut inference),
            ),
            svg::Embedded::Unreadable(name) => {
                let detail = format!("{name} images are not decoded here");
                (name, Moderation::undecodable(policy, detail))
            }
        };
        let part = |reason| Reason::Embedded {
            index: i + 1,
            format: name,
            reason,
        };
        worst = svg_verdict(worst, as_svg_part(moderation, part));
        if worst.outcome == Outcome::Block {
            break;
        }
    }
    inference.reserve_after_ms(0);
    worst
}

/// An SVG judged as drawn (`svg::draw`): its vectors, and its rasters as it transforms,
/// filters, masks and tiles them; the reason says [`Reason::Drawn`]. Drawn at the size
/// the SVG declares (see `svg::draw`), over white and black where it leaves the page
/// showing. Nothing drawn: a pass for [`Reason::NoEmbeddedImage`].
pub fn moderate_svg_drawing(
    svg: &[u8],
    policy: &Policy,
    known: &KnownLists,
    inference: impl Inference,
) -> Moderation {
    let started = Instant::now();
    let moderation = match svg::draw(svg, budget::decode_limits(&policy.limits)) {
        Ok(Some(drawing)) => {
            let (width, height) = drawing.dimensions();
            let still = Decoded {
                image: image::DynamicImage::ImageRgba8(drawing),
                width,
                height,
                gathered: None,
                also_shown: None,
            };
            let format = ImageFormat::Png;
            judge_decoded(
                Some(still),
                Vec::new(),
                format,
                policy,
                known,
                inference,
                started,
            )
        }
        Ok(None) => return nothing_to_judge(),
        Err(e) => svg_refused(policy, e),
    };
    as_svg_part(moderation, Reason::Drawn)
}

/// The worse of two moderations of parts of one SVG (the first of equals); a part with
/// nothing to judge counts as absent. Their timings add up.
pub fn svg_verdict(first: Moderation, second: Moderation) -> Moderation {
    let nothing = |m: &Moderation| m.reason == Reason::NoEmbeddedImage;
    let timings = first.timings + second.timings;
    let worse = nothing(&first)
        || (!nothing(&second) && second.verdict().severity() > first.verdict().severity());
    let mut moderation = if worse { second } else { first };
    moderation.timings = timings;
    moderation
}

/// A moderation of one part of an SVG, its reason wrapped in one naming the part
/// (`part`). A rewrite becomes a block: the rewritten SVG would still carry the part.
fn as_svg_part(moderation: Moderation, part: impl FnOnce(Box<Reason>) -> Reason) -> Moderation {
    as_part(moderation, "an SVG", part)
}

/// The verdict on a `multipart/x-mixed-replace` stream so far (`None` before its first
/// image part), worsened by image part number `index` (from 1) in `format`: the worse
/// decides (the first of equals), its reason naming the part. A rewrite becomes a block:
/// the stream would still carry the part.
pub fn with_stream_part(
    so_far: Option<Moderation>,
    index: usize,
    format: &str,
    part: Moderation,
) -> Moderation {
    let part = as_part(part, "a multipart/x-mixed-replace stream", |reason| {
        Reason::StreamPart {
            index,
            format: format.to_string(),
            reason,
        }
    });
    match so_far {
        Some(so_far) => svg_verdict(so_far, part),
        None => part,
    }
}

/// A moderation of one part of `whole`, its reason wrapped in one naming the part
/// (`part`). A rewrite becomes a block: the rewritten whole would still carry the part.
fn as_part(
    mut moderation: Moderation,
    whole: &str,
    part: impl FnOnce(Box<Reason>) -> Reason,
) -> Moderation {
    if let Outcome::Rewrite { .. } = moderation.outcome {
        moderation.outcome = Outcome::Block;
        moderation.reason = Reason::RewriteFailed(format!(
            "{}; {whole} is blocked rather than rewritten",
            moderation.reason
        ));
    }
    let own = std::mem::replace(&mut moderation.reason, Reason::NoRuleMatched);
    moderation.reason = part(Box::new(own));
    moderation
}

/// Nothing in an SVG to judge: a pass.
fn nothing_to_judge() -> Moderation {
    Moderation {
        outcome: Outcome::Pass,
        reason: Reason::NoEmbeddedImage,
        scores: None,
        timings: Timings::default(),
        judged: None,
    }
}

/// An SVG that cannot be inspected: too complex (the policy's `on_oversize`) or not
/// readable (`on_undecodable`).
fn svg_refused(policy: &Policy, error: svg::SvgError) -> Moderation {
    match error {
        e @ svg::SvgError::TooComplex(_) => Moderation::oversize(policy, e.to_string()),
        e => Moderation::undecodable(policy, e.to_string()),
    }
}

/// The obscured image re-encoded at the original `size`, or why it could not be made (the
/// image is then blocked).
fn rewrite(
    image: &image::DynamicImage,
    (width, height): (u32, u32),
    format: ImageFormat,
    policy: &Policy,
) -> Result<Vec<u8>, String> {
    let channels = if image.color().has_alpha() { 4 } else { 3 };
    if width as usize * height as usize * channels > budget::REWRITE_CANVAS_BYTES {
        // Beyond this it would not fit in a Compute instance's memory and abort it.
        return Err("image too large to rewrite within memory".into());
    }
    obscure(image, (width, height), policy.rewrite)
        .context("obscuring the image")
        .and_then(|obscured| encode(&obscured, format).context("re-encoding the rewritten image"))
        .map_err(|e| format!("{e:#}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{DynamicImage, ImageFormat as Codec};
    use std::io::Cursor;

    fn jpeg(width: u32, height: u32) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        DynamicImage::new_rgb8(width, height)
            .write_to(&mut out, Codec::Jpeg)
            .unwrap();
        out.into_inner()
    }

    /// A picture drawn in the alpha channel of black ink: shown on a white page it is the
    /// picture (in grey); alpha dropped, the model sees a black square.
    fn picture_in_alpha(path: &str) -> Vec<u8> {
        let picture = image::open(path).unwrap().to_luma8();
        let hidden = image::RgbaImage::from_fn(picture.width(), picture.height(), |x, y| {
            image::Rgba([0, 0, 0, 255 - picture.get_pixel(x, y)[0]])
        });
        let mut out = Cursor::new(Vec::new());
        DynamicImage::ImageRgba8(hidden)
            .write_to(&mut out, Codec::Png)
            .unwrap();
        out.into_inner()
    }

    /// A policy with one rule: block when `class` scores at least `at_least`.
    fn block_when(class: &str, at_least: f32) -> Policy {
        Policy::from_json(&format!(
            r#"{{"rules": [{{"classes": ["{class}"], "at_least": {at_least}, "action": "block"}}]}}"#
        ))
        .unwrap()
    }

    /// The model, recording what the judging keeps for the work after each image.
    struct RecordingReserves<'a> {
        classifier: &'a Classifier,
        after: Vec<u64>,
    }

    impl Inference for RecordingReserves<'_> {
        fn infer(&mut self, input: tract_onnx::prelude::Tensor) -> Result<Scores, InferenceError> {
            self.classifier.infer(input)
        }
        fn reserve_after_ms(&mut self, ms: u64) {
            self.after.push(ms);
        }
    }

    #[test]
    fn an_svg_keeps_room_for_its_next_embedded_image() {
        use base64::Engine;
        let classifier = Classifier::load().unwrap();
        let mut png = Cursor::new(Vec::new());
        DynamicImage::new_rgb8(64, 48)
            .write_to(&mut png, Codec::Png)
            .unwrap();
        let data = base64::engine::general_purpose::STANDARD.encode(png.into_inner());
        let image =
            format!(r#"<image width="64" height="48" href="data:image/png;base64,{data}"/>"#);
        let svg = format!(r#"<svg xmlns="http://www.w3.org/2000/svg">{image}{image}</svg>"#);
        let mut recording = RecordingReserves {
            classifier: &classifier,
            after: Vec::new(),
        };
        let judged = moderate_svg_embedded(
            svg.as_bytes(),
            &Policy::default(),
            &KnownLists::none(),
            &mut recording,
        );
        assert_eq!(judged.outcome, Outcome::Pass, "{:?}", judged.reason);
        // Room for the second image while the first is judged; none after the last.
        assert_eq!(recording.after, [budget::NEXT_IMAGE_RESERVE_MS, 0, 0]);
    }

    #[test]
    fn a_picture_in_the_alpha_channel_is_judged_as_shown() {
        let classifier = Classifier::load().unwrap();
        // The stand-in class: a photo in grey is Neutral to this model, a flat square is
        // not (flat colour reads as Drawing).
        let neutral = block_when("Neutral", 0.5);
        let png = picture_in_alpha("models/fidelity/images/photo_rocket.png");
        let judged = moderate(
            &png,
            ImageFormat::Png,
            &neutral,
            &KnownLists::none(),
            &classifier,
        );
        assert_eq!(judged.outcome, Outcome::Block, "{:?}", judged.scores);
        assert!(
            matches!(&judged.reason, Reason::Rule { rule, .. } if rule.ends_with("(shown on white)")),
            "{:?}",
            judged.reason
        );
        // What the model alone would have seen: a black square, not a drawing.
        let dropped = classifier
            .classify(crate::classifier::preprocess(
                &image::load_from_memory(&png).unwrap(),
            ))
            .unwrap();
        assert!(
            dropped.get(crate::classifier::Class::Neutral) < 0.5,
            "{dropped}"
        );
    }

    #[test]
    fn a_bmp_is_judged_as_each_browser_shows_it() {
        let classifier = Classifier::load().unwrap();
        // The stand-in class: flat colour reads as Drawing to this model, a photo not.
        let drawing = block_when("Drawing", 0.5);
        // The astronaut photo (0.06 Drawing) as coded, what Chromium shows, under a
        // calibrated RGB header of gamma 1/256, which Firefox shows as a near-white square.
        let photo = image::open("models/fidelity/images/photo_astronaut.png")
            .unwrap()
            .to_rgb8();
        let bt709 = [[0.64, 0.33], [0.30, 0.60], [0.15, 0.06]];
        let bmp = crate::media::decode::tests::bmp_calibrated(&photo, bt709, [1.0 / 256.0; 3]);
        let judged = moderate(
            &bmp,
            ImageFormat::Bmp,
            &drawing,
            &KnownLists::none(),
            &classifier,
        );
        assert_eq!(judged.outcome, Outcome::Block, "{:?}", judged.scores);
        assert!(
            matches!(&judged.reason, Reason::Rule { rule, .. } if rule.ends_with("(as Firefox shows it)")),
            "{:?}",
            judged.reason
        );
        // As Chromium shows it, alone, the file would pass.
        let coded = classifier
            .classify(crate::classifier::preprocess(&photo.into()))
            .unwrap();
        assert!(
            coded.get(crate::classifier::Class::Drawing) < 0.5,
            "{coded}"
        );
    }

    #[test]
    fn an_svg_is_judged_by_the_worst_image_it_embeds() {
        use base64::Engine;
        let classifier = Classifier::load().unwrap();
        let neutral = block_when("Neutral", 0.5);
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
        let tint = {
            let mut out = Cursor::new(Vec::new());
            DynamicImage::ImageRgb8(image::RgbImage::from_pixel(
                64,
                64,
                image::Rgb([200, 30, 30]),
            ))
            .write_to(&mut out, Codec::Png)
            .unwrap();
            out.into_inner()
        };
        let photo = std::fs::read("models/fidelity/images/photo_astronaut.png").unwrap();
        let svg = format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg"><image href="data:image/png;base64,{}"/><rect style="fill:url(data:image/png;base64,{})"/></svg>"#,
            b64(&tint),
            b64(&photo)
        );
        let judged = moderate_svg(svg.as_bytes(), &neutral, &KnownLists::none(), &classifier);
        assert_eq!(judged.outcome, Outcome::Block);
        assert!(
            judged
                .reason
                .to_string()
                .starts_with("embedded image 2 (PNG): rule 0"),
            "{}",
            judged.reason
        );
        let plain = moderate_svg(
            b"<svg xmlns='http://www.w3.org/2000/svg'/>",
            &neutral,
            &KnownLists::none(),
            &classifier,
        );
        assert_eq!(
            (plain.outcome, plain.reason),
            (Outcome::Pass, Reason::NoEmbeddedImage)
        );
        let broken = moderate_svg(b"<svg", &neutral, &KnownLists::none(), &classifier);
        assert_eq!(broken.outcome, Outcome::Block);
        assert!(matches!(broken.reason, Reason::Undecodable(_)));
    }

    #[test]
    fn an_svg_is_judged_as_drawn_too() {
        use base64::Engine;
        let classifier = Classifier::load().unwrap();
        // The stand-in: the panorama reads as a drawing (~0.97) whole, and its strips as
        // less than 0.9 each.
        let drawing = block_when("Drawing", 0.9);
        let panorama = image::open("models/fidelity/images/panorama_wide.png")
            .unwrap()
            .to_rgb8();
        let (width, height) = panorama.dimensions();
        let strips: String = (0..6)
            .map(|i| {
                let (x0, x1) = (i * width / 6, (i + 1) * width / 6);
                let strip = image::imageops::crop_imm(&panorama, x0, 0, x1 - x0, height);
                let mut png = Cursor::new(Vec::new());
                strip.to_image().write_to(&mut png, Codec::Png).unwrap();
                let png = base64::engine::general_purpose::STANDARD.encode(png.into_inner());
                format!(r#"<image x="{x0}" href="data:image/png;base64,{png}"/>"#)
            })
            .collect();
        let tiled = format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">{strips}</svg>"#
        );
        let judged = moderate_svg(tiled.as_bytes(), &drawing, &KnownLists::none(), &classifier);
        assert_eq!(judged.outcome, Outcome::Block);
        assert!(
            judged
                .reason
                .to_string()
                .starts_with("the SVG as drawn: rule 0"),
            "{}",
            judged.reason
        );
        // The same strips laid out side by side by HTML in a <foreignObject>, which resvg
        // does not draw: each strip passes alone, and the SVG is refused as undrawable.
        let html_strips = strips
            .replace("<image x=", r#"<img style="height:100%" data-x="#)
            .replace("href=", "src=");
        let html = format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}"><foreignObject width="100%" height="100%"><div xmlns="http://www.w3.org/1999/xhtml" style="display:flex">{html_strips}</div></foreignObject></svg>"#
        );
        let judged = moderate_svg(html.as_bytes(), &drawing, &KnownLists::none(), &classifier);
        assert_eq!(judged.outcome, Outcome::Block);
        assert_eq!(
            judged.reason.to_string(),
            "the SVG as drawn: undecodable: SVG not drawn here: HTML (foreignObject) that shows images"
        );
        // HTML text alone (as diagram tools write labels) is no reason to refuse.
        let label = br##"<svg xmlns="http://www.w3.org/2000/svg" width="80" height="40"><rect width="80" height="40" fill="#39f"/><foreignObject width="80" height="40"><div xmlns="http://www.w3.org/1999/xhtml">label</div></foreignObject></svg>"##;
        let judged = moderate_svg(label, &drawing, &KnownLists::none(), &classifier);
        assert_eq!(judged.outcome, Outcome::Pass, "{}", judged.reason);
        // Only vectors: a square of flat colour is judged too (and passes).
        let flat = br##"<svg xmlns="http://www.w3.org/2000/svg" width="50" height="50"><rect width="50" height="50" fill="#39f"/></svg>"##;
        let judged = moderate_svg(flat, &drawing, &KnownLists::none(), &classifier);
        assert_eq!(judged.outcome, Outcome::Pass);
        assert!(
            matches!(judged.reason, Reason::Drawn(_)),
            "{}",
            judged.reason
        );
        assert!(judged.scores.is_some());
        // A document that would draw too much: the policy's on_oversize (block).
        let uses = r##"<use href="#a"/>"##.repeat(30_000);
        let heavy = format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg"><rect id="a" width="1" height="1"/>{uses}</svg>"#
        );
        let judged = moderate_svg(heavy.as_bytes(), &drawing, &KnownLists::none(), &classifier);
        assert_eq!(judged.outcome, Outcome::Block);
        assert_eq!(
            judged.reason.to_string(),
            "the SVG as drawn: oversize: SVG too complex to inspect: too many elements to draw"
        );
    }

    #[test]
    fn rewrite_beyond_the_memory_budget_blocks_instead() {
        let classifier = Classifier::load().unwrap();
        let rewrite_all = Policy::from_json(
            r#"{"rules": [{"classes": ["Drawing", "Hentai", "Neutral", "Porn", "Sexy"],
                "at_least": 0.0, "action": "rewrite"}]}"#,
        )
        .unwrap();
        let small = moderate(
            &jpeg(300, 200),
            ImageFormat::Jpeg,
            &rewrite_all,
            &KnownLists::none(),
            &classifier,
        );
        assert!(matches!(
            small.outcome,
            Outcome::Rewrite { ref bytes, format: ImageFormat::Jpeg } if !bytes.is_empty()
        ));
        let large = moderate(
            &jpeg(2000, 1500),
            ImageFormat::Jpeg,
            &rewrite_all,
            &KnownLists::none(),
            &classifier,
        );
        assert_eq!(large.outcome, Outcome::Block);
        assert!(matches!(large.reason, Reason::RewriteFailed(_)));
        assert!(large.scores.is_some());
    }
}
