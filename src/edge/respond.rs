//! What the client receives for each outcome, and for origin failures.
//!
//! Every moderated response says what happened in the `x-moderation-*` headers
//! (`edge_moderation::headers`: verdict, reason, scores when the model ran, the policy's
//! source) and reports stage costs in `Server-Timing`.

use super::cache;
use super::config::{Loaded, Source};
use super::context::RequestContext;
use super::origin::Failure;
use edge_moderation::classifier::Scores;
use edge_moderation::decision_log::ImageFacts;
use edge_moderation::headers;
use edge_moderation::media::ImageFormat;
use edge_moderation::moderation::budget::Pace;
use edge_moderation::moderation::record::ContentHash;
use edge_moderation::moderation::Subject;
use edge_moderation::moderation::{Moderation, Outcome};
use edge_moderation::policy::Mode;
use edge_moderation::policy::Verdict;
use fastly::http::request::SendErrorCause;
use fastly::http::{header, StatusCode};
use fastly::Response;

/// How a verdict was reached, besides the moderation itself.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// What the verdict cache did, when it was consulted.
    pub cached: Option<cache::Status>,
    /// The CPU milliseconds of each sibling instance that ran part of the inference.
    pub siblings: Vec<u64>,
    /// The image's digest, when its bytes were read whole.
    pub content: Option<ContentHash>,
    /// What the bytes were judged as, when they were.
    pub subject: Option<Subject>,
}

impl Report {
    /// What the decision log says of the image besides its moderation; `part` names a
    /// multipart part.
    pub fn image_facts(&self, part: Option<String>) -> ImageFacts {
        ImageFacts {
            part,
            content: self.content,
            format: self.subject.map(|subject| subject.name().to_string()),
            cache: self.cached.map(cache::Status::as_str),
            cache_lookup: match self.cached {
                Some(cache::Status::Hit { lookup }) => Some(lookup),
                _ => None,
            },
            cpu_ms: cpu_ms(),
            sibling_cpu_ms: self.siblings.clone(),
        }
    }
}

/// What the `x-moderation-*` and `Server-Timing` headers say of a verdict, for an image
/// served or an upload.
#[derive(Clone, Debug)]
pub struct Summary {
    pub verdict: Verdict,
    /// In report-only mode, the verdict that was not applied (`verdict` is then pass).
    pub would: Option<Verdict>,
    pub reason: String,
    /// Present when the model ran.
    pub scores: Option<Scores>,
    /// Where the policy came from.
    pub source: Source,
    /// The route whose policy judged; None for the default policy.
    pub route: Option<String>,
    pub report: Report,
    /// The stages' `Server-Timing` entries, when the model ran here.
    pub stages: Option<String>,
}

impl Summary {
    /// A verdict reached without the model (nothing ran, nothing to report).
    pub fn new(verdict: Verdict, reason: String, config: &Loaded) -> Summary {
        Summary {
            verdict,
            would: None,
            reason,
            scores: None,
            source: config.source,
            route: config.route.clone(),
            report: Report::default(),
            stages: None,
        }
    }

    /// The headers, `Server-Timing` ending with this instance's CPU so far (and its pace,
    /// when it planned with one).
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let Report {
            cached, siblings, ..
        } = &self.report;
        let mut out = vec![
            (headers::VERDICT, self.verdict.as_str().to_string()),
            (headers::REASON, header_text(&self.reason)),
            (headers::POLICY, self.source.as_str().to_string()),
        ];
        if let Some(would) = self.would {
            out.push((headers::WOULD, would.as_str().to_string()));
        }
        if let Some(route) = &self.route {
            out.push((headers::ROUTE, route.clone()));
        }
        if let Some(status) = cached {
            out.push((headers::CACHE, status.as_str().to_string()));
        }
        if !siblings.is_empty() {
            let list: Vec<String> = siblings.iter().map(u64::to_string).collect();
            out.push((headers::SIBLING_CPU, list.join(",")));
        }
        if let Some(scores) = self.scores {
            out.push((headers::SCORES, scores.to_string()));
        }
        let stages = match cached {
            // Nothing ran: what the verdict cost is the hash and the lookup.
            Some(cache::Status::Hit { lookup }) => {
                Some(format!("cache;dur={:.2}", lookup.as_secs_f64() * 1e3))
            }
            _ => self.stages.clone(),
        };
        let timing = stages
            .into_iter()
            .chain(cpu())
            .chain(pace())
            .collect::<Vec<_>>();
        out.push((headers::SERVER_TIMING, timing.join(", ")));
        out
    }

    /// Sets the headers on a response.
    pub fn apply(&self, response: &mut Response) {
        for (name, value) in self.headers() {
            response.set_header(name, value);
        }
    }
}

/// `response` (the origin's status, headers and, for a pass, body) as the outcome says;
/// in report-only mode, the origin's response whatever the outcome.
pub fn moderated(
    response: Response,
    moderation: Moderation,
    config: &Loaded,
    report: Report,
) -> Response {
    let verdict = moderation.verdict();
    let Moderation {
        outcome,
        reason,
        scores,
        timings,
        ..
    } = moderation;
    let report_only = config.policy.mode == Mode::Report;
    let mut response = match outcome {
        _ if report_only => response,
        Outcome::Pass => response,
        Outcome::Block => blocked(config.policy.block.status, &reason.to_string()),
        Outcome::Rewrite { bytes, format } => rewritten(response, bytes, format),
    };
    let mut summary = Summary::new(verdict, reason.to_string(), config);
    if report_only && verdict != Verdict::Pass {
        summary.verdict = Verdict::Pass;
        summary.would = Some(verdict);
    }
    summary.scores = scores;
    summary.report = report;
    summary.stages = scores.map(|_| timings.server_timing());
    summary.apply(&mut response);
    response
}

/// The CPU milliseconds this instance has used so far (what Fastly's 50 ms limit counts).
pub fn cpu_ms() -> Option<u64> {
    fastly::compute_runtime::elapsed_vcpu_ms().ok()
}

/// The `Server-Timing` entry for `used` ms of this instance's CPU.
pub fn cpu_timing(used: u64) -> String {
    format!("cpu;dur={used}")
}

fn cpu() -> Option<String> {
    cpu_ms().map(cpu_timing)
}

/// The pace this instance planned its CPU with, as `pace;desc=1.27`: an operator (and the
/// benchmark) can see when instances think their host slower than it is, which makes
/// every request cross more instances.
fn pace() -> Option<String> {
    Pace::measured().map(|pace| format!("pace;desc={:.2}", pace.factor()))
}

/// Not one byte of the image: a short text reason, never cached so a policy change
/// takes effect at once.
pub fn blocked(status: u16, reason: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
    Response::from_status(status)
        .with_header(header::CACHE_CONTROL, "no-store")
        .with_body_text_plain(&format!("image blocked by moderation policy: {reason}\n"))
}

/// The origin's status and caching headers around the obscured image. Validators and
/// digests of the original would be wrong for these bytes, so they go.
fn rewritten(mut response: Response, bytes: Vec<u8>, format: ImageFormat) -> Response {
    // The obscured image is sent as is, whatever coding the original came in.
    for stale in [
        header::ETAG,
        header::CONTENT_RANGE,
        header::ACCEPT_RANGES,
        header::CONTENT_ENCODING,
    ] {
        response.remove_header(stale);
    }
    for stale in STALE_DIGESTS {
        response.remove_header(stale);
    }
    response.set_header(header::CONTENT_TYPE, format.mime_type());
    response.set_header(header::CONTENT_LENGTH, bytes.len().to_string());
    response.set_body(bytes);
    response
}

/// Digests of a body, wrong once its bytes are changed.
pub const STALE_DIGESTS: [&str; 4] = ["content-md5", "digest", "repr-digest", "content-digest"];

/// 504 when the origin timed out, 502 for every other way it failed us.
pub fn origin_failure(context: &RequestContext, failure: &Failure) -> Response {
    let (status, reason) = match failure {
        Failure::Send(cause) => {
            let status = match cause {
                SendErrorCause::DnsTimeout
                | SendErrorCause::ConnectionTimeout
                | SendErrorCause::HttpResponseTimeout => StatusCode::GATEWAY_TIMEOUT,
                _ => StatusCode::BAD_GATEWAY,
            };
            (status, format!("origin request failed: {cause}"))
        }
        Failure::Body(e) => (
            StatusCode::BAD_GATEWAY,
            format!("origin body could not be read: {e}"),
        ),
        Failure::Timeout(after) => (
            StatusCode::GATEWAY_TIMEOUT,
            format!("origin sent no response within {} ms", after.as_millis()),
        ),
    };
    eprintln!("moderation: {context}: {reason}");
    Response::from_status(status)
        .with_header(headers::ERROR, reason.as_str())
        .with_header(header::CACHE_CONTROL, "no-store")
        .with_body_text_plain(&format!("{reason}\n"))
}

/// `text` as a header value: its first line, visible ASCII and spaces only, at most 300
/// bytes. A reason may quote what a sibling or a decoder said (a trapped sibling's reply is
/// a multi-line backtrace), and an invalid header value would abort the instance.
fn header_text(text: &str) -> String {
    text.lines()
        .next()
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c == ' ' || c.is_ascii_graphic() {
                c
            } else {
                '?'
            }
        })
        .take(300)
        .collect()
}
