//! Sibling instances: the service sending part of its work to itself. Each sub-request is
//! a fresh instance with its own 50 ms of CPU, so an inference that would not fit in one
//! instance runs segment by segment (`edge_moderation::classifier::SEGMENTS`) across
//! several: an instance runs segments while its CPU allows (`siblings.cpu_budget_ms`),
//! then hands the rest, with the tensor at the cut, to a sibling, which does the same.
//!
//! A JPEG decode that would not fit stops between rows of blocks, and the image goes to a
//! sibling with the decoder's state (a resumed job); the sibling decodes on and judges it.
//!
//! A JPEG XL whose decode would not fit (jxl-oxide's cannot stop part-way) is decoded in
//! parts, a region per sibling at once (region jobs on [`IMAGE_ROUTE`]), and assembled
//! here from their samples (`Relay`'s `decode_apart`, `jxl_parts`).
//!
//! Independent inputs of one image (the frames of an animation, the backdrops of a
//! transparent image) go to siblings at once, each starting its own chain of segments
//! (`Relay`'s `infer_all`); the first runs here.
//!
//! Independent images (those of one upload) go to siblings whole, in parallel
//! ([`dispatch`], then [`PendingImage::wait`]): each sibling judges one image as a
//! response would be judged (verdict cache, then decode and inference, handing segments
//! on in turn if it must) and answers with the moderation.
//!
//! Siblings are reached through the backend [`BACKEND`] (production: the service's own
//! domain; locally: Viceroy's address), on [`ROUTE`] or [`IMAGE_ROUTE`], with a shared
//! secret from the Secret Store [`SECRET_STORE`]. Without the secret, a request to the route is ordinary traffic
//! (forwarded to the origin), so nothing reveals it. Without a secret configured, nothing
//! is handed off. Every hand-off moves at least one segment forward, so a chain has at most
//! as many instances as segments.

use super::{body, cache, model, respond, wait};
use edge_moderation::classifier::{Classifier, Scores};
use edge_moderation::headers;
use edge_moderation::media::decode::{jxl_parts, DecodeLimits};
use edge_moderation::media::ImageFormat;
use edge_moderation::moderation::budget;
use edge_moderation::moderation::budget::{Pace, SegmentCosts};
use edge_moderation::moderation::handoff::Handoff;
use edge_moderation::moderation::record::ContentHash;
use edge_moderation::moderation::{
    job, ApartError, Inference, InferenceError, Moderation, Resumed, Subject,
};
use edge_moderation::policy::Policy;
use fastly::http::{header, Method, StatusCode};
use fastly::{Body, Request, Response, SecretStore};
use std::io::Write;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tract_onnx::prelude::Tensor;

pub const BACKEND: &str = "self";
pub const ROUTE: &str = headers::SIBLING_ROUTE;
pub const IMAGE_ROUTE: &str = headers::SIBLING_IMAGE_ROUTE;
pub const SECRET_STORE: &str = "moderation";
pub const SECRET_KEY: &str = "sibling_key";
const KEY_HEADER: &str = headers::SIBLING_KEY;
/// What the first segment is assumed to cost before this instance has run one (the others
/// in proportion, [`SegmentCosts`]): a fresh instance's first segment measured up to ~13 ms
/// (p50) under Viceroy on Zen 5; 10 let the instance that finished a large JPEG's decode
/// overshoot to 43-47 ms. This and the reserves below are Zen 5 costs, scaled by the
/// instance's [`Pace`].
const FIRST_SEGMENT_ESTIMATE_MS: u64 = 14;
/// The largest job a sibling reads: an image within any policy's byte limit plus a
/// decoder's state fit well within it; the instance's memory is 128 MB.
const MAX_JOB_BYTES: usize = 96 << 20;
/// CPU kept when a decode may stop: for handing it on (its state, up to ~2 MB, and the
/// image written into the sibling's request).
const DECODE_HANDOFF_RESERVE_MS: u64 = 7;
/// The same before a decode's last row, after which this instance would assemble the
/// image, hash it and hand the inference on: ~12 ms after the last row at 12 MP (Viceroy,
/// Zen 5), which took the instance finishing a decode to 44-45 ms.
const DECODE_FINISH_RESERVE_MS: u64 = 14;
/// A JPEG XL's decode in a fresh instance (jxl-oxide, Wasm), as what it costs whatever
/// the size (the instance, the header, LF image and dequantisation matrices) and what
/// each megapixel of the groups it decodes adds. Measured under Viceroy on an Intel
/// Xeon (family 6 model 167, pace ~1.0): parts of an 800×600 decoding 99 k to 262 k
/// pixels took 22 to 42 ms, the whole image 46 with its hashing and model input. An
/// image whose decode would not fit here goes out in parts (`jxl_parts`).
const JXL_DECODE_MS: u64 = 17;
const JXL_MS_PER_MEGAPIXEL: u64 = 82;
/// The most instances one image's decode is split across: Compute allows an instance 32
/// backend requests, and the image's inference needs some of them.
const MAX_DECODE_PARTS: usize = 16;

/// The shared secret, looked up the first time it is needed: most requests never need
/// it, and a fresh instance pays for every Secret Store lookup.
fn shared_secret() -> Option<&'static [u8]> {
    static SECRET: OnceLock<Option<Vec<u8>>> = OnceLock::new();
    SECRET.get_or_init(|| secret(SECRET_KEY)).as_deref()
}

/// A non-empty secret from the Secret Store `moderation`.
pub fn secret(key: &str) -> Option<Vec<u8>> {
    let secret = SecretStore::open(SECRET_STORE).ok()?.try_get(key).ok()??;
    let plaintext = secret.try_plaintext().ok()?.to_vec();
    (!plaintext.is_empty()).then_some(plaintext)
}

/// Whether sibling instances can be reached (a secret is configured).
pub fn available() -> bool {
    shared_secret().is_some()
}

/// Equality that takes as long whatever the first differing byte.
pub fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Work one of this service's instances sent to another.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Call {
    /// The rest of an inference, from a cut.
    Segments,
    /// A whole image to judge.
    Image,
}

/// What `request` is, when it comes from one of this service's instances.
pub fn call(request: &Request) -> Option<Call> {
    if request.get_method() != Method::POST {
        return None;
    }
    let call = match request.get_path() {
        ROUTE => Call::Segments,
        IMAGE_ROUTE => Call::Image,
        _ => return None,
    };
    let given = request.get_header(KEY_HEADER)?;
    let secret = shared_secret()?;
    same_secret(given.as_bytes(), secret).then_some(call)
}

/// A POST of `body` to a sibling on `route`.
fn sibling_request(host: &str, route: &str, body: Body) -> Result<Request, String> {
    let secret = shared_secret().ok_or("no sibling secret configured")?;
    let key = fastly::http::HeaderValue::from_bytes(secret).map_err(|e| e.to_string())?;
    Ok(Request::post(format!("https://{host}{route}"))
        .with_header(header::CONTENT_TYPE, "application/octet-stream")
        .with_header(KEY_HEADER, key)
        .with_body(body))
}

/// The CPU list a sibling reports (its own and its siblings', in order).
fn reported_cpu(reply: &Response) -> Vec<u64> {
    reply
        .get_header_str(headers::SIBLING_CPU)
        .map(|cpu| {
            cpu.split(',')
                .filter_map(|ms| ms.trim().parse::<u64>().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Why a sibling gave no answer, as a reason.
fn unanswered(failure: wait::SendFailure) -> String {
    match failure {
        wait::SendFailure::Send(cause) => cause.to_string(),
        wait::SendFailure::Timeout(after) => format!("no answer within {} ms", after.as_millis()),
    }
}

/// A sibling's non-200 answer, as a reason.
fn refusal(status: StatusCode, body: &[u8]) -> String {
    let why = String::from_utf8_lossy(&body[..body.len().min(200)]);
    format!("{status}: {}", why.trim_end())
}

fn cpu_ms() -> u64 {
    respond::cpu_ms().unwrap_or(0)
}

/// An inference run here while the CPU allows, and handed to siblings after that.
pub struct Relay<'a> {
    classifier: &'a Classifier,
    /// The policy the image is judged by (a part's job carries it).
    policy: &'a Policy,
    budget_ms: u64,
    /// How long to wait for a sibling's answer.
    timeout: Duration,
    /// The host siblings are addressed by (the service's own).
    host: String,
    /// A sibling must move the work on before handing it further.
    must_run_one: bool,
    /// This instance continues a large JPEG's decode (a resumed job).
    decoded_here: bool,
    /// CPU kept for the work after the inference (a rewrite), at the reference pace.
    reserved_ms: u64,
    /// CPU kept for the work after this image's judging (an SVG's next image), the same.
    after_ms: u64,
    /// The CPU when an animation's reading first asked before a frame here, and how
    /// many times it has asked: the frames read since cost their mean each. (The CPU
    /// clock counts whole milliseconds, about one frame of 400×300: one frame's own
    /// reading is no measure, the mean over several is.)
    frames_since: Option<u64>,
    frames_asked: u64,
    /// The most frames an animation's reading hands to judging (the policy's).
    max_frames: u64,
    /// The CPU milliseconds of every sibling that took part, in order.
    pub sibling_cpu: Vec<u64>,
}

impl<'a> Relay<'a> {
    pub fn new(classifier: &'a Classifier, policy: &'a Policy, host: &str) -> Self {
        Relay {
            classifier,
            policy,
            budget_ms: policy.siblings.cpu_budget_ms,
            timeout: policy.siblings.timeout(),
            host: host.to_string(),
            must_run_one: false,
            decoded_here: false,
            reserved_ms: 0,
            after_ms: 0,
            frames_since: None,
            frames_asked: 0,
            max_frames: policy.animations.max_frames as u64,
            sibling_cpu: Vec::new(),
        }
    }

    /// `ms` of CPU at the reference pace, at this instance's (measured once per instance,
    /// when a plan first needs it). Without siblings nothing is handed on, so there is no
    /// plan to make and nothing is measured.
    fn paced(&self, ms: u64) -> u64 {
        if !available() {
            return ms;
        }
        Pace::here().scale(ms)
    }

    /// Marks this instance as one continuing a large JPEG's decode (or a long GIF's
    /// reading): it hands the whole inference on.
    pub fn resuming_decode(&mut self) {
        self.decoded_here = true;
    }

    /// Runs segments from `work.next` to the end, here or via siblings; returns the
    /// network's output.
    fn advance(&mut self, mut work: Handoff) -> Result<Tensor, InferenceError> {
        let count = self.classifier.segment_count();
        // An instance that went on with a large JPEG's decode hands the whole inference
        // on: reading the job, decoding and assembling the image took its budget (it
        // stops decoding with 14 ms left), and the next sibling runs the whole network
        // in ~30 ms.
        if self.decoded_here && available() {
            return self.hand_off(work);
        }
        let mut costs = SegmentCosts::new(self.paced(FIRST_SEGMENT_ESTIMATE_MS));
        let mut ran = 0;
        let reserved = self.paced(self.reserved_ms + self.after_ms);
        while work.next < count {
            let used = cpu_ms();
            let estimate = costs.estimate(work.next);
            // The clock counts whole milliseconds: `used` may be most of one more.
            let over_budget = used + 1 + estimate + reserved > self.budget_ms;
            if over_budget && !(self.must_run_one && ran == 0) && available() {
                return self.hand_off(work);
            }
            work.tensor = self
                .classifier
                .run_segment(work.next, work.tensor)
                .map_err(InferenceError::Model)?;
            // At least 1: the clock counts whole milliseconds and no segment is free. A
            // clock that did not move across a segment would otherwise let a budget of 0,
            // documented as handing every segment on, run the next one here (the likely
            // cause of a CI failure on a loaded host: a sibling ran two segments).
            costs.ran(work.next, cpu_ms().saturating_sub(used).max(1));
            work.next += 1;
            ran += 1;
        }
        Ok(work.tensor)
    }

    fn hand_off(&mut self, work: Handoff) -> Result<Tensor, InferenceError> {
        let sent = self.send_work(work);
        self.collect(sent)
    }

    /// Sends the rest of an inference to a sibling without waiting for it.
    fn send_work(&self, work: Handoff) -> Result<(wait::Pending, usize), InferenceError> {
        let next = work.next;
        let failed = |why: String| InferenceError::Sibling(format!("segment {next}: {why}"));
        let body = work.encode().map_err(|e| failed(e.to_string()))?;
        let request = sibling_request(&self.host, ROUTE, body.into()).map_err(failed)?;
        let pending = wait::send(request, BACKEND).map_err(|cause| failed(cause.to_string()))?;
        Ok((pending, next))
    }

    /// The network's output from a sibling [`Relay::send_work`] sent work to.
    fn collect(
        &mut self,
        sent: Result<(wait::Pending, usize), InferenceError>,
    ) -> Result<Tensor, InferenceError> {
        let (pending, next) = sent?;
        let failed = |why: String| InferenceError::Sibling(format!("segment {next}: {why}"));
        let mut reply = pending
            .within(self.timeout)
            .map_err(|failure| failed(unanswered(failure)))?;
        let status = reply.get_status();
        let body = reply.take_body_bytes();
        if status != StatusCode::OK {
            return Err(failed(refusal(status, &body)));
        }
        self.sibling_cpu.extend(reported_cpu(&reply));
        let done = Handoff::decode(&body).map_err(|e| failed(e.to_string()))?;
        if done.next != self.classifier.segment_count() {
            return Err(failed(format!(
                "a sibling stopped at segment {}",
                done.next
            )));
        }
        Ok(done.tensor)
    }
}

impl Inference for Relay<'_> {
    fn infer(&mut self, input: Tensor) -> Result<Scores, InferenceError> {
        let output = self.advance(Handoff {
            next: 0,
            tensor: input,
        })?;
        self.classifier
            .scores(&output)
            .map_err(InferenceError::Model)
    }

    fn infer_all(&mut self, inputs: Vec<Tensor>) -> Vec<Result<Scores, InferenceError>> {
        // The first here (as far as the budget allows), every other in its own sibling
        // at once: frames of an animation, backdrops of a transparent image.
        let mut inputs = inputs.into_iter();
        let Some(first) = inputs.next() else {
            return Vec::new();
        };
        if !available() {
            return std::iter::once(first)
                .chain(inputs)
                .map(|input| self.infer(input))
                .collect();
        }
        let sent: Vec<_> = inputs
            .map(|tensor| self.send_work(Handoff { next: 0, tensor }))
            .collect();
        let mut scores = vec![self.infer(first)];
        for sent in sent {
            let output = self.collect(sent);
            scores.push(output.and_then(|output| {
                self.classifier
                    .scores(&output)
                    .map_err(InferenceError::Model)
            }));
        }
        scores
    }

    fn reserve_ms(&mut self, ms: u64) {
        self.reserved_ms = ms;
    }

    fn reserve_after_ms(&mut self, ms: u64) {
        self.after_ms = ms;
    }

    fn decode_budget_spent(&mut self, finishing: bool) -> bool {
        let reserve = if finishing {
            DECODE_FINISH_RESERVE_MS
        } else {
            DECODE_HANDOFF_RESERVE_MS
        };
        cpu_ms() + self.paced(reserve + self.after_ms) > self.budget_ms && available()
    }

    fn frame_budget_spent(&mut self, finishing: bool) -> bool {
        let now = cpu_ms();
        let since = *self.frames_since.get_or_insert(now);
        let frame_ms = now.saturating_sub(since).div_ceil(self.frames_asked.max(1));
        self.frames_asked += 1;
        // Before the last frame: room for it and for what follows here, hashing the
        // chosen frames and preparing their model inputs (each about twice a frame's
        // reading, at this instance's measured cost; +1 for the clock's whole
        // milliseconds). The decode's finishing reserve is sized for a 12 MP JPEG's
        // assembly and would send every animation's last frame to another reader.
        // Otherwise: room for the next frame and for handing the reading on.
        let ahead = if finishing {
            frame_ms * (1 + 2 * self.max_frames) + 1
        } else {
            frame_ms + self.paced(DECODE_HANDOFF_RESERVE_MS)
        };
        now + ahead > self.budget_ms && available()
    }

    fn decode_apart(
        &mut self,
        image: &[u8],
        limits: DecodeLimits,
    ) -> Option<Result<Vec<u8>, ApartError>> {
        if !available() {
            return None;
        }
        // A header that does not parse is the decode's to report, here.
        let layout = jxl_parts::layout(image, limits).ok()?;
        let decode_ms =
            |pixels: u64| JXL_DECODE_MS + (pixels * JXL_MS_PER_MEGAPIXEL).div_ceil(1_000_000);
        let here =
            self.paced(decode_ms(layout.pixels()) + DECODE_FINISH_RESERVE_MS + self.after_ms);
        if cpu_ms() + here <= self.budget_ms {
            return None;
        }
        // Each part in a fresh instance that reads the job, decodes and answers; at least
        // the least a split's part decodes (2 x 2 groups), so that a budget of 0
        // (testing) splits as finely as can be.
        let per_part_ms = self.budget_ms.saturating_sub(self.paced(JXL_DECODE_MS));
        let per_megapixel = self.paced(JXL_MS_PER_MEGAPIXEL).max(1);
        let smallest = 4 * u64::from(layout.group).pow(2);
        let max_decoded = (per_part_ms * 1_000_000 / per_megapixel).max(smallest);
        let Some(regions) = layout.parts(max_decoded, MAX_DECODE_PARTS) else {
            return Some(Err(ApartError::TooCostly(format!(
                "a {}x{} JPEG XL needs more than {MAX_DECODE_PARTS} instances to decode",
                layout.width, layout.height
            ))));
        };
        // All at once, then each answer in turn.
        let sent: Vec<_> = regions
            .iter()
            .map(|&region| {
                send_job(
                    &job::region_header(self.policy, region),
                    &[image],
                    &self.host,
                )
            })
            .collect();
        let mut assembly = jxl_parts::Assembly::new(layout);
        let mut failure = None;
        // One deadline for all: the parts run at once, so the image waits the policy's
        // timeout once, not once per part.
        let deadline = Instant::now() + self.timeout;
        for (region, pending) in regions.into_iter().zip(sent) {
            // Every answer is awaited, even after a failure: its sub-request still runs.
            let placed = pending
                .answer(deadline.saturating_duration_since(Instant::now()))
                .map_err(ApartError::Sibling)
                .and_then(|(reply, body)| {
                    self.sibling_cpu.extend(reported_cpu(&reply));
                    assembly.place(region, &body).map_err(apart_error)
                });
            if let Err(e) = placed {
                failure.get_or_insert(e);
            }
        }
        if let Some(failure) = failure {
            return Some(Err(failure));
        }
        Some(assembly.finish().map_err(apart_error))
    }

    fn judge_elsewhere(&mut self, job: Resumed<'_>) -> Moderation {
        let (header, parts) = job::resumed_job(job.policy, job.state, job.image);
        let judged = send_job(&header, &parts, &self.host).wait(job.policy);
        self.sibling_cpu.extend(judged.cpu);
        judged.moderation
    }
}

/// A region's failure, as the image's.
fn apart_error(error: jxl_parts::RegionError) -> ApartError {
    match error {
        jxl_parts::RegionError::Decode(error) => ApartError::NotDecoded(error),
        jxl_parts::RegionError::Malformed(why) => {
            ApartError::Sibling(format!("a region's answer: {why}"))
        }
    }
}

/// Serves work from a sibling (`call` said what it is).
pub fn serve(call: Call, request: Request, policy: &Policy) -> Response {
    match call {
        Call::Segments => serve_segments(request, policy),
        Call::Image => serve_image(request),
    }
}

fn plain_reply(status: StatusCode, why: String) -> Response {
    Response::from_status(status).with_body_text_plain(&format!("{why}\n"))
}

/// A 200 answer carrying `body`, with the CPU of this instance and of `chain`, the
/// siblings it used in turn.
fn answer(body: Vec<u8>, chain: Vec<u64>) -> Response {
    let own = cpu_ms();
    let cpu: Vec<String> = std::iter::once(own)
        .chain(chain)
        .map(|ms| ms.to_string())
        .collect();
    Response::from_status(StatusCode::OK)
        .with_header(header::CONTENT_TYPE, "application/octet-stream")
        .with_header(headers::SIBLING_CPU, cpu.join(","))
        .with_header(headers::SERVER_TIMING, respond::cpu_timing(own))
        .with_body(body)
}

/// Judges one whole image for a sibling: the verdict cache, else decode and inference
/// (handing segments on if this instance's CPU runs short), by the policy the job
/// carries. Answers with the moderation, and `x-moderation-cache`.
fn serve_image(mut request: Request) -> Response {
    let host = request.get_url().host_str().unwrap_or_default().to_string();
    let body = match body::read_whole(request.take_body(), MAX_JOB_BYTES) {
        Ok(body) => body,
        Err(e) => return plain_reply(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let job = match job::decode_job(&body) {
        Ok(job) => job,
        Err(e) => return plain_reply(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let policy = &job.policy;
    let mut chain = Vec::new();
    if let Some(region) = job.region {
        let limits = budget::decode_limits(&policy.limits);
        return answer(jxl_parts::decode_region(&job.image, limits, region), chain);
    }
    if let Some(state) = job.resume {
        // The coordinator missed the verdict cache and stores what this answers.
        let (moderation, cpu) = model::moderate_resumed(&job.image, state, policy, &host);
        return answer(job::encode_answer(&moderation), cpu);
    }
    if job.drawing {
        // Not cached here: the coordinator caches the whole SVG's verdict under these
        // bytes, which this part's must not take.
        let (moderation, cpu) = model::moderate_drawing(&job.image, policy, &host);
        return answer(job::encode_answer(&moderation), cpu);
    }
    let content = ContentHash::of(&job.image);
    let (moderation, cached) = cache::judged(&content, policy, || {
        let Some(format) = ImageFormat::sniff(&job.image) else {
            return Moderation::undecodable(policy, "not an image".into());
        };
        let (moderation, cpu) = model::moderate(&job.image, Subject::Raster(format), policy, &host);
        chain = cpu;
        moderation
    });
    let mut reply = answer(job::encode_answer(&moderation), chain);
    if let Some(status) = cached {
        reply.set_header(headers::CACHE, status.as_str());
    }
    reply
}

/// An image sent to a sibling, not yet answered.
pub struct PendingImage {
    pending: Result<wait::Pending, String>,
}

/// What a sibling decided for an image, with the CPU of every instance that worked on it.
pub struct JudgedBySibling {
    pub moderation: Moderation,
    pub cached: Option<cache::Status>,
    pub cpu: Vec<u64>,
}

/// Sends `image` to a sibling to be judged by `policy`; the answer is collected with
/// [`PendingImage::wait`], so several images are judged at once.
pub fn dispatch(image: &[u8], policy: &Policy, host: &str) -> PendingImage {
    send_job(&job::job_header(policy), &[image], host)
}

/// Sends an SVG to a sibling to be drawn and its drawing judged by `policy`.
pub fn dispatch_drawing(svg: &[u8], policy: &Policy, host: &str) -> PendingImage {
    send_job(&job::drawing_header(policy), &[svg], host)
}

/// Sends a job (`header`, then the image's `parts` in order) to a sibling.
fn send_job(header: &[u8], parts: &[&[u8]], host: &str) -> PendingImage {
    let mut body = Body::new();
    let written = std::iter::once(header)
        .chain(parts.iter().copied())
        .try_for_each(|part| body.write_all(part))
        .map_err(|e| e.to_string());
    let pending = written
        .and_then(|()| sibling_request(host, IMAGE_ROUTE, body))
        .and_then(|request| wait::send(request, BACKEND).map_err(|cause| cause.to_string()));
    PendingImage { pending }
}

impl PendingImage {
    /// The sibling's 200 answer and its body, within `timeout`; why not, otherwise.
    fn answer(self, timeout: Duration) -> Result<(Response, Vec<u8>), String> {
        let mut reply = self
            .pending
            .and_then(|p| p.within(timeout).map_err(unanswered))?;
        let status = reply.get_status();
        let body = reply.take_body_bytes();
        if status != StatusCode::OK {
            return Err(refusal(status, &body));
        }
        Ok((reply, body))
    }

    /// The sibling's moderation; its failure gets the policy's `on_error` outcome.
    pub fn wait(self, policy: &Policy) -> JudgedBySibling {
        let failed = |why: String| JudgedBySibling {
            moderation: Moderation::sibling_failed(policy, why),
            cached: None,
            cpu: Vec::new(),
        };
        let (reply, body) = match self.answer(policy.siblings.timeout()) {
            Ok(answered) => answered,
            Err(why) => return failed(why),
        };
        let cached = match reply.get_header_str(headers::CACHE) {
            Some("hit") => Some(cache::Status::Hit {
                lookup: std::time::Duration::ZERO,
            }),
            Some(_) => Some(cache::Status::Miss),
            None => None,
        };
        match job::decode_answer(&body) {
            Ok(moderation) => JudgedBySibling {
                moderation,
                cached,
                cpu: reported_cpu(&reply),
            },
            Err(e) => failed(e.to_string()),
        }
    }
}

/// Serves a hand-off: runs at least one segment, hands the
/// rest on if its own CPU runs out, and answers with the network's output and the CPU of
/// every instance in the chain from this one on (`x-moderation-sibling-cpu`).
fn serve_segments(mut request: Request, policy: &Policy) -> Response {
    let host = request.get_url().host_str().unwrap_or_default().to_string();
    let body = request.take_body_bytes();
    let reply = plain_reply;
    let classifier = match model::shared() {
        Ok(classifier) => classifier,
        Err(e) => return reply(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    let work = match Handoff::decode(&body) {
        Ok(work) if work.next < classifier.segment_count() => work,
        Ok(work) => return reply(StatusCode::BAD_REQUEST, format!("no segment {}", work.next)),
        Err(e) => return reply(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let mut relay = Relay::new(classifier, policy, &host);
    relay.must_run_one = true;
    let output = match relay.advance(work) {
        Ok(output) => output,
        Err(InferenceError::Model(e)) => {
            return reply(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
        Err(InferenceError::Sibling(why)) => return reply(StatusCode::BAD_GATEWAY, why),
    };
    let done = Handoff {
        next: classifier.segment_count(),
        tensor: output,
    };
    let encoded = match done.encode() {
        Ok(encoded) => encoded,
        Err(e) => return reply(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    answer(encoded, relay.sibling_cpu)
}
