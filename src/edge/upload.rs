//! The request direction: bodies judged before anything is sent to the origin.
//!
//! Which requests: the policy's `uploads` (methods, path patterns). Every request first
//! loses the client's own `x-moderation-*` headers, so what the origin reads there is ours.
//!
//! - **A raw body** is sniffed like a response (by its bytes, whatever its type). Not an
//!   image: it streams on untouched. An image: judged here, as a response would be.
//! - **A `multipart/*` body** is split as it is read (`edge_moderation::upload::multipart`).
//!   Parts that are not images are written straight into a host-side body (never held in
//!   Wasm memory); image parts are buffered within `limits.max_bytes`. One image is judged
//!   here; with several, each goes to a sibling instance and all are judged at once.
//!   Nothing is sent to the origin until every image is judged: a blocked upload never
//!   reaches it, not even in part. The forwarded body is the original byte for byte, but
//!   for rewritten (or dropped) parts.
//!
//! A body whose framing we cannot read unambiguously gets 400 with the reason.

use super::body::{self, Inspection, TimedBody};
use super::config::Loaded;
use super::context::RequestContext;
use super::respond::{self, Report, Summary, STALE_DIGESTS};
use super::{cache, decisions, model, siblings};
use edge_moderation::decision_log::Origin;
use edge_moderation::headers;
use edge_moderation::media::format::{sniff_len, unreadable_image, ImageFormat};
use edge_moderation::media::svg;
use edge_moderation::moderation::record::ContentHash;
use edge_moderation::moderation::{Moderation, Outcome, Subject};
use edge_moderation::policy::{Direction, Policy, Verdict};
use edge_moderation::upload::multipart::{self, PartHead, Sink, Splitter};
use edge_moderation::upload::{JudgedImage, Judgement, PartAction};
use fastly::http::{header, StatusCode};
use fastly::{Body, Request, Response};
use std::io::{Read, Write};

/// What becomes of a request.
// Made and moved once per request: boxing a request or response would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Upload {
    /// Send it to the origin. `judged` says what was decided, when its body was judged:
    /// the client's response carries it too.
    Forward {
        request: Request,
        judged: Option<Summary>,
    },
    /// Answer the client with this; the origin receives nothing.
    Reply(Response),
}

/// Judges `request`'s body when the policy asks for it.
pub fn judge(context: &RequestContext, mut request: Request) -> Upload {
    strip_forged(&mut request);
    let policy = &context.uploaded.policy;
    if !policy
        .uploads
        .applies(context.method.as_str(), &context.path)
    {
        return Upload::Forward {
            request,
            judged: None,
        };
    }
    let content_type = request
        .get_header_str(header::CONTENT_TYPE)
        .map(str::to_owned);
    match multipart::boundary(content_type.as_deref().unwrap_or_default()) {
        Err(e) => Upload::Reply(malformed(&context.uploaded, e.to_string())),
        Ok(Some(boundary)) => judge_multipart(context, request, &boundary),
        Ok(None) => judge_raw(context, request, content_type.as_deref()),
    }
}

/// The client's `x-moderation-*` headers (and a guess at the sibling key) never reach
/// the origin.
fn strip_forged(request: &mut Request) {
    let forged: Vec<_> = request
        .get_header_names()
        .filter(|name| {
            name.as_str().starts_with(headers::PREFIX) || name.as_str() == headers::SIBLING_KEY
        })
        .cloned()
        .collect();
    for name in forged {
        request.remove_header(name);
    }
}

/// A content coding we would have to undo to see the bytes the origin will store.
fn content_encoding(request: &Request) -> Option<String> {
    request
        .get_header_str(header::CONTENT_ENCODING)
        .map(str::trim)
        .filter(|coding| !coding.is_empty() && !coding.eq_ignore_ascii_case("identity"))
        .map(str::to_owned)
}

fn judge_raw(context: &RequestContext, mut request: Request, content_type: Option<&str>) -> Upload {
    let policy = &context.uploaded.policy;
    let coding = content_encoding(&request);
    let body = request.take_body();
    let inspection = match body::inspect(body, content_type, coding.as_deref(), policy) {
        Ok(inspection) => inspection,
        Err(e) => return Upload::Reply(unreadable(&context.uploaded, &e)),
    };
    let (moderation, report) = match inspection {
        Inspection::NotImage(body) => {
            request.set_body(body);
            return Upload::Forward {
                request,
                judged: None,
            };
        }
        Inspection::Oversize { body, detail } => {
            request.set_body(body);
            (Moderation::oversize(policy, detail), Report::default())
        }
        Inspection::Undecodable { body, detail } => {
            request.set_body(body);
            (Moderation::undecodable(policy, detail), Report::default())
        }
        Inspection::Image {
            bytes,
            format,
            encoded,
        } => {
            let judged = model::judge(&bytes, Subject::Raster(format), policy, &context.host);
            // What goes on is what the client sent (still encoded, if it was).
            let sent = encoded.unwrap_or(bytes);
            let length = sent.len() as u64;
            set_body(&mut request, Body::from(sent), length);
            judged
        }
        Inspection::Svg { bytes, encoded } => {
            let judged = model::judge(&bytes, Subject::Svg, policy, &context.host);
            let sent = encoded.unwrap_or(bytes);
            let length = sent.len() as u64;
            set_body(&mut request, Body::from(sent), length);
            judged
        }
        Inspection::Stream {
            bytes,
            boundary,
            encoded,
        } => {
            let judged = model::judge_stream(&bytes, &boundary, policy, &context.host);
            let sent = encoded.unwrap_or(bytes);
            let length = sent.len() as u64;
            set_body(&mut request, Body::from(sent), length);
            match judged {
                Some(judged) => judged,
                // No part shows an image: it goes on as sent, unjudged.
                None => {
                    return Upload::Forward {
                        request,
                        judged: None,
                    }
                }
            }
        }
    };
    let image = JudgedImage {
        part: None,
        moderation,
    };
    conclude_raw(context, request, image, report)
}

/// Forwards, rewrites or blocks a raw body whose verdict is in.
fn conclude_raw(
    context: &RequestContext,
    mut request: Request,
    image: JudgedImage,
    report: Report,
) -> Upload {
    let origin = Origin::Crossing(Direction::Uploaded);
    let facts = report.image_facts(None);
    decisions::log(context, origin, &context.uploaded, &image.moderation, facts);
    let images = [image];
    let judgement = Judgement::new(&images, &context.uploaded.policy);
    let [image] = images;
    let summary = summarise(
        &context.uploaded,
        &judgement,
        std::slice::from_ref(&image),
        report,
    );
    match judgement.actions.first() {
        Some(PartAction::BlockRequest) | Some(PartAction::Drop) => {
            return Upload::Reply(blocked(&context.uploaded.policy, summary))
        }
        Some(PartAction::Replace) => {
            if let Outcome::Rewrite { bytes, format } = image.moderation.outcome {
                request.set_header(header::CONTENT_TYPE, format.mime_type());
                request.remove_header(header::CONTENT_ENCODING);
                let length = bytes.len() as u64;
                set_body(&mut request, Body::from(bytes), length);
            }
        }
        Some(PartAction::Keep) | None => {}
    }
    forward(request, summary)
}

fn judge_multipart(context: &RequestContext, mut request: Request, boundary: &str) -> Upload {
    let policy = &context.uploaded.policy;
    if let Some(coding) = content_encoding(&request) {
        // A form's parts are not decoded yet: an encoded form cannot be inspected.
        let detail = format!("multipart body with Content-Encoding {coding} cannot be inspected");
        let image = JudgedImage {
            part: None,
            moderation: Moderation::undecodable(policy, detail),
        };
        return conclude_raw(context, request, image, Report::default());
    }
    let mut body = TimedBody::new(request.take_body(), policy.origin.between_bytes_timeout());
    let mut splitter = Splitter::new(boundary);
    let mut collector = Collector::new(policy, &context.host);
    let mut chunk = vec![0; 64 << 10];
    loop {
        let read = match body.read(&mut chunk) {
            Ok(0) => break,
            Ok(read) => read,
            Err(e) => return Upload::Reply(unreadable(&context.uploaded, &e)),
        };
        if let Err(e) = splitter.feed(&chunk[..read], &mut collector) {
            return Upload::Reply(malformed(&context.uploaded, e.to_string()));
        }
    }
    if let Err(e) = splitter.finish(&mut collector) {
        return Upload::Reply(malformed(&context.uploaded, e.to_string()));
    }
    let (segments, slots) = match collector.finish() {
        Ok(collected) => collected,
        Err(e) => return Upload::Reply(unreadable(&context.uploaded, &e)),
    };

    let mut report = Report::default();
    let mut cached = Vec::with_capacity(slots.len());
    let mut originals = Vec::with_capacity(slots.len());
    let mut images: Vec<JudgedImage> = Vec::with_capacity(slots.len());
    for slot in slots {
        let (moderation, mut slot_report) = slot.judging.settle(policy);
        if let Some((content, subject)) = slot.identity {
            slot_report.content = Some(content);
            slot_report.subject = Some(subject);
        }
        let facts = slot_report.image_facts(Some(slot.head.to_string()));
        let origin = Origin::Crossing(Direction::Uploaded);
        decisions::log(context, origin, &context.uploaded, &moderation, facts);
        report.siblings.extend(slot_report.siblings);
        cached.push(slot_report.cached);
        originals.push(Some((slot.framing, slot.original)));
        images.push(JudgedImage {
            part: Some(slot.head),
            moderation,
        });
    }
    let judgement = Judgement::new(&images, policy);
    // The deciding image's cache status is the one reported.
    report.cached = judgement.deciding.and_then(|i| cached[i]);
    let summary = summarise(&context.uploaded, &judgement, &images, report);
    if judgement.verdict == Verdict::Block {
        return Upload::Reply(blocked(policy, summary));
    }

    let mut forwarded = Body::new();
    let mut length = 0u64;
    for segment in segments {
        let written = match segment {
            Segment::Plain(body, len) => {
                forwarded.append(body);
                length += len;
                Ok(())
            }
            Segment::Image(i) => {
                let Some((framing, original)) = originals.get_mut(i).and_then(Option::take) else {
                    continue;
                };
                match judgement.actions[i] {
                    PartAction::Drop | PartAction::BlockRequest => Ok(()),
                    PartAction::Keep => {
                        length += (framing.len() as u64) + original.len();
                        forwarded
                            .write_all(&framing)
                            .map(|()| original.append_to(&mut forwarded))
                    }
                    PartAction::Replace => {
                        let outcome =
                            std::mem::replace(&mut images[i].moderation.outcome, Outcome::Pass);
                        let bytes = match outcome {
                            Outcome::Rewrite { bytes, .. } => bytes,
                            _ => Vec::new(),
                        };
                        length += (framing.len() + bytes.len()) as u64;
                        forwarded
                            .write_all(&framing)
                            .and_then(|()| forwarded.write_all(&bytes))
                    }
                }
            }
        };
        if let Err(e) = written {
            return Upload::Reply(unreadable(&context.uploaded, &e));
        }
    }
    set_body(&mut request, forwarded, length);
    forward(request, summary)
}

/// The request goes on, carrying the verdict in its headers.
fn forward(mut request: Request, summary: Summary) -> Upload {
    for (name, value) in summary.headers() {
        request.set_header(name, value);
    }
    Upload::Forward {
        request,
        judged: Some(summary),
    }
}

/// Replaces the body with one of `length` bytes: the framing headers the client sent no
/// longer apply, nor do digests of what it sent.
fn set_body(request: &mut Request, body: Body, length: u64) {
    request.remove_header(header::TRANSFER_ENCODING);
    request.remove_header(header::EXPECT);
    for stale in STALE_DIGESTS {
        request.remove_header(stale);
    }
    request.set_header(header::CONTENT_LENGTH, length.to_string());
    request.set_body(body);
}

fn summarise(
    config: &Loaded,
    judgement: &Judgement,
    images: &[JudgedImage],
    report: Report,
) -> Summary {
    let deciding = judgement.deciding.and_then(|i| images.get(i));
    let moderation = deciding.map(|image| &image.moderation);
    let reason = judgement
        .reason(images)
        .unwrap_or_else(|| "no image in the upload".into());
    let mut summary = Summary::new(judgement.verdict, reason, config);
    summary.would = judgement.would;
    summary.scores = moderation.and_then(|m| m.scores);
    summary.report = report;
    summary.stages = moderation
        .filter(|m| m.scores.is_some())
        .map(|m| m.timings.server_timing());
    summary
}

fn blocked(policy: &Policy, summary: Summary) -> Response {
    let mut response = respond::blocked(policy.block.status, &summary.reason);
    summary.apply(&mut response);
    response
}

/// 400: a body whose framing cannot be read unambiguously. Nothing was forwarded.
fn malformed(config: &Loaded, why: String) -> Response {
    let summary = Summary::new(Verdict::Block, format!("malformed upload: {why}"), config);
    let mut response = Response::from_status(StatusCode::BAD_REQUEST)
        .with_header(header::CACHE_CONTROL, "no-store")
        .with_body_text_plain(&format!("{}\n", summary.reason));
    summary.apply(&mut response);
    response
}

/// The client's body could not be read (it went away, or broke its framing).
fn unreadable(config: &Loaded, e: &std::io::Error) -> Response {
    malformed(config, format!("request body could not be read: {e}"))
}

/// A stretch of the body as it will be forwarded.
enum Segment {
    /// Bytes forwarded as received (host-side), and how many.
    Plain(Body, u64),
    /// The part of `slots[i]`, forwarded, replaced or dropped as judged.
    Image(usize),
}

/// An image part's content as received.
enum Original {
    /// Still in Wasm memory (an image judged here, or held to be).
    Here(Vec<u8>),
    /// Moved to a host-side body, and its length.
    Host(Body, u64),
}

impl Original {
    fn len(&self) -> u64 {
        match self {
            Original::Here(bytes) => bytes.len() as u64,
            Original::Host(_, len) => *len,
        }
    }

    fn append_to(self, body: &mut Body) {
        match self {
            Original::Here(bytes) => body.append(Body::from(bytes)),
            Original::Host(host, _) => body.append(host),
        }
    }

    fn into_host(self) -> Original {
        match self {
            Original::Here(bytes) => {
                let len = bytes.len() as u64;
                Original::Host(Body::from(bytes), len)
            }
            host => host,
        }
    }
}

/// Where an image part's verdict is.
// At most `uploads.max_images` per request: boxing the moderation would buy nothing.
#[allow(clippy::large_enum_variant)]
enum Judging {
    Done(Moderation, Report),
    /// To be judged here once the body is read: the first image, while it is the only one.
    Held(ImageFormat),
    Sent(Box<siblings::PendingImage>),
}

impl Judging {
    fn settle(self, policy: &Policy) -> (Moderation, Report) {
        match self {
            Judging::Done(moderation, report) => (moderation, report),
            Judging::Held(_) => (
                Moderation::model_failed(policy, "image was never judged".into()),
                Report::default(),
            ),
            Judging::Sent(pending) => {
                let judged = pending.wait(policy);
                let report = Report {
                    cached: judged.cached,
                    siblings: judged.cpu,
                    ..Report::default()
                };
                (judged.moderation, report)
            }
        }
    }
}

/// An image part (or a part that claims to be one), with what is needed to forward it.
struct Slot {
    head: PartHead,
    /// The image's digest and what it is judged as, when it is judged.
    identity: Option<(ContentHash, Subject)>,
    framing: Vec<u8>,
    original: Original,
    judging: Judging,
}

/// The part being read.
struct OpenPart {
    head: PartHead,
    framing: Vec<u8>,
    content: Content,
}

// One per open part.
#[allow(clippy::large_enum_variant)]
enum Content {
    /// Too few bytes yet to know what it is.
    Sniffing(Vec<u8>),
    /// Not an image: written through to the forwarded body.
    Plain,
    /// An image (a raster, or an SVG by its part's type), buffered.
    Image { subject: Subject, bytes: Vec<u8> },
    /// Not judged by the model (beyond the limits, or not the image it claims to be):
    /// kept host-side with its policy outcome.
    Unjudged {
        body: Body,
        len: u64,
        moderation: Moderation,
    },
}

/// Receives the split body: plain stretches into host-side bodies, image parts into
/// slots, images dispatched to siblings as soon as there is more than one.
struct Collector<'a> {
    policy: &'a Policy,
    host: &'a str,
    fan_out: bool,
    segments: Vec<Segment>,
    plain: Body,
    plain_len: u64,
    open: Option<OpenPart>,
    slots: Vec<Slot>,
    images: usize,
    failed: Option<std::io::Error>,
}

impl<'a> Collector<'a> {
    fn new(policy: &'a Policy, host: &'a str) -> Self {
        Collector {
            policy,
            host,
            fan_out: siblings::available(),
            segments: Vec::new(),
            plain: Body::new(),
            plain_len: 0,
            open: None,
            slots: Vec::new(),
            images: 0,
            failed: None,
        }
    }

    fn write_plain(&mut self, bytes: &[u8]) {
        if let Err(e) = self.plain.write_all(bytes) {
            self.failed.get_or_insert(e);
        }
        self.plain_len += bytes.len() as u64;
    }

    fn write_kept(&mut self, body: &mut Body, bytes: &[u8]) {
        if let Err(e) = body.write_all(bytes) {
            self.failed.get_or_insert(e);
        }
    }

    /// Decides what the open part is from its first bytes.
    fn settle(&mut self, head: &PartHead, framing: &[u8], prefix: Vec<u8>) -> Content {
        let policy = self.policy;
        if let Some(format) = ImageFormat::sniff(&prefix) {
            return Content::Image {
                subject: Subject::Raster(format),
                bytes: prefix,
            };
        }
        if svg::is_svg_type(head.content_type.as_deref()) {
            return Content::Image {
                subject: Subject::Svg,
                bytes: prefix,
            };
        }
        let unreadable = unreadable_image(&prefix);
        if unreadable.is_some() || policy.claims_moderated_image(head.content_type.as_deref()) {
            let detail = match unreadable {
                Some(name) => format!("{name} images are not decoded here"),
                None => format!(
                    "{} part is not a {}",
                    head.content_type.as_deref().unwrap_or_default(),
                    ImageFormat::list()
                ),
            };
            let mut body = Body::new();
            self.write_kept(&mut body, &prefix);
            return Content::Unjudged {
                body,
                len: prefix.len() as u64,
                moderation: Moderation::undecodable(policy, detail),
            };
        }
        self.write_plain(framing);
        self.write_plain(&prefix);
        Content::Plain
    }

    /// A slot goes after the plain bytes so far.
    fn push_slot(&mut self, slot: Slot) {
        let plain = std::mem::replace(&mut self.plain, Body::new());
        let len = std::mem::take(&mut self.plain_len);
        if len > 0 {
            self.segments.push(Segment::Plain(plain, len));
        }
        self.segments.push(Segment::Image(self.slots.len()));
        self.slots.push(slot);
    }

    /// A complete image part: remembered, judged here, held, or sent to a sibling.
    fn image(&mut self, head: PartHead, framing: Vec<u8>, subject: Subject, bytes: Vec<u8>) {
        let policy = self.policy;
        self.images += 1;
        if self.images > policy.uploads.max_images {
            let detail = format!(
                "more than {} images in one upload",
                policy.uploads.max_images
            );
            let len = bytes.len() as u64;
            self.push_slot(Slot {
                head,
                identity: None,
                framing,
                original: Original::Host(Body::from(bytes), len),
                judging: Judging::Done(Moderation::oversize(policy, detail), Report::default()),
            });
            return;
        }
        let content = ContentHash::of(&bytes);
        let identity = Some((content, subject));
        if let Some((moderation, status)) = cache::remembered(&content, policy) {
            let report = Report {
                cached: Some(status),
                ..Report::default()
            };
            let original = Original::Here(bytes).into_host();
            self.push_slot(Slot {
                head,
                identity,
                framing,
                original,
                judging: Judging::Done(moderation, report),
            });
            return;
        }
        // Rasters fan out to siblings; an SVG (judged by the images it embeds) is judged
        // here, as is everything when no sibling can be reached.
        let format = match subject {
            Subject::Raster(format) if self.fan_out => format,
            _ => {
                let (moderation, report) =
                    model::judge_known(&bytes, content, subject, policy, self.host);
                self.push_slot(Slot {
                    head,
                    identity,
                    framing,
                    original: Original::Here(bytes).into_host(),
                    judging: Judging::Done(moderation, report),
                });
                return;
            }
        };
        // The first image waits to be judged here, in case it stays the only one; once
        // a second arrives, both go to siblings, and every later one as it arrives.
        let judged_elsewhere = self
            .slots
            .iter()
            .any(|slot| matches!(slot.judging, Judging::Held(_) | Judging::Sent(_)));
        if !judged_elsewhere {
            self.push_slot(Slot {
                head,
                identity,
                framing,
                original: Original::Here(bytes),
                judging: Judging::Held(format),
            });
            return;
        }
        for slot in &mut self.slots {
            if let Judging::Held(_) = slot.judging {
                if let Original::Here(held) = &slot.original {
                    slot.judging =
                        Judging::Sent(Box::new(siblings::dispatch(held, policy, self.host)));
                }
                let original =
                    std::mem::replace(&mut slot.original, Original::Host(Body::new(), 0));
                slot.original = original.into_host();
            }
        }
        let pending = siblings::dispatch(&bytes, policy, self.host);
        self.push_slot(Slot {
            head,
            identity,
            framing,
            original: Original::Here(bytes).into_host(),
            judging: Judging::Sent(Box::new(pending)),
        });
    }

    /// Every part is read: the held image is judged here. Returns the body's segments
    /// and the image slots, verdicts possibly still with siblings.
    fn finish(mut self) -> Result<(Vec<Segment>, Vec<Slot>), std::io::Error> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        let plain = std::mem::replace(&mut self.plain, Body::new());
        if self.plain_len > 0 {
            self.segments.push(Segment::Plain(plain, self.plain_len));
        }
        let (policy, host) = (self.policy, self.host);
        for slot in &mut self.slots {
            if let (Judging::Held(format), Original::Here(bytes), Some((content, _))) =
                (&slot.judging, &slot.original, slot.identity)
            {
                let subject = Subject::Raster(*format);
                let (moderation, report) =
                    model::judge_known(bytes, content, subject, policy, host);
                slot.judging = Judging::Done(moderation, report);
            }
        }
        Ok((self.segments, self.slots))
    }
}

impl Sink for Collector<'_> {
    fn framing(&mut self, bytes: &[u8]) {
        self.write_plain(bytes);
    }

    fn part(&mut self, head: PartHead, framing: &[u8]) {
        self.open = Some(OpenPart {
            head,
            framing: framing.to_vec(),
            content: Content::Sniffing(Vec::new()),
        });
    }

    fn content(&mut self, bytes: &[u8]) {
        let Some(mut open) = self.open.take() else {
            return;
        };
        open.content = match open.content {
            Content::Sniffing(mut prefix) => {
                prefix.extend_from_slice(bytes);
                if prefix.len() >= sniff_len(&prefix) {
                    self.settle(&open.head, &open.framing, prefix)
                } else {
                    Content::Sniffing(prefix)
                }
            }
            Content::Plain => {
                self.write_plain(bytes);
                Content::Plain
            }
            Content::Image {
                subject,
                bytes: mut buffered,
            } => {
                let limit = self.policy.limits.max_bytes;
                if buffered.len() + bytes.len() > limit {
                    let mut body = Body::new();
                    self.write_kept(&mut body, &buffered);
                    self.write_kept(&mut body, bytes);
                    Content::Unjudged {
                        body,
                        len: (buffered.len() + bytes.len()) as u64,
                        moderation: Moderation::oversize(
                            self.policy,
                            format!("a part of more than {limit} bytes"),
                        ),
                    }
                } else {
                    buffered.extend_from_slice(bytes);
                    Content::Image {
                        subject,
                        bytes: buffered,
                    }
                }
            }
            Content::Unjudged {
                mut body,
                len,
                moderation,
            } => {
                self.write_kept(&mut body, bytes);
                Content::Unjudged {
                    body,
                    len: len + bytes.len() as u64,
                    moderation,
                }
            }
        };
        self.open = Some(open);
    }

    fn part_end(&mut self) {
        let Some(OpenPart {
            head,
            framing,
            content,
        }) = self.open.take()
        else {
            return;
        };
        let content = match content {
            Content::Sniffing(prefix) => self.settle(&head, &framing, prefix),
            settled => settled,
        };
        match content {
            // Settled above: a part no longer sniffing is plain or kept.
            Content::Plain | Content::Sniffing(_) => {}
            Content::Image { subject, bytes } => self.image(head, framing, subject, bytes),
            Content::Unjudged {
                body,
                len,
                moderation,
            } => self.push_slot(Slot {
                head,
                identity: None,
                framing,
                original: Original::Host(body, len),
                judging: Judging::Done(moderation, Report::default()),
            }),
        }
    }
}
