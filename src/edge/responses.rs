//! Builds what the client receives for each verdict, and for origin failures.
//!
//! Every moderated response says what happened in `x-moderation-verdict`,
//! `x-moderation-reason`, `x-moderation-scores` (when the image was classified) and
//! `x-moderation-policy`, and reports stage costs in `Server-Timing`.

use super::config::Loaded;
use super::origin::Failure;
use edge_moderation::moderation::{Moderation, Timings};
use edge_moderation::policy::Verdict;
use fastly::http::header;
use fastly::http::request::SendErrorCause;
use fastly::http::StatusCode;
use fastly::Response;

pub fn moderated(response: Response, moderation: Moderation, loaded: &Loaded) -> Response {
    let mut response = match moderation.verdict {
        Verdict::Pass => response,
        Verdict::Block => blocked(loaded.policy.block.status, &moderation),
        Verdict::Rewrite => rewritten(response, &moderation),
    };
    response.set_header("x-moderation-verdict", moderation.verdict.as_str());
    response.set_header("x-moderation-reason", moderation.reason.to_string());
    response.set_header("x-moderation-policy", loaded.source.as_str());
    if let Some(scores) = moderation.scores {
        response.set_header("x-moderation-scores", scores.to_string());
        response.set_header("server-timing", server_timing(&moderation.timings));
    }
    response
}

/// Not one byte of the image: a short text reason, never cached so a policy change
/// takes effect at once.
fn blocked(status: u16, moderation: &Moderation) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
    Response::from_status(status)
        .with_header(header::CACHE_CONTROL, "no-store")
        .with_body_text_plain(&format!(
            "image blocked by moderation policy: {}\n",
            moderation.reason
        ))
}

/// The origin's status and caching headers around the obscured image. Validators and
/// digests of the original would be wrong for these bytes, so they go.
fn rewritten(mut response: Response, moderation: &Moderation) -> Response {
    let bytes = moderation.rewritten.as_deref().unwrap_or_default();
    for stale in [header::ETAG, header::CONTENT_RANGE, header::ACCEPT_RANGES] {
        response.remove_header(stale);
    }
    for stale in ["content-md5", "digest", "repr-digest", "content-digest"] {
        response.remove_header(stale);
    }
    if let Some(format) = edge_moderation::sniff::ImageFormat::sniff(bytes) {
        response.set_header(header::CONTENT_TYPE, format.mime_type());
    }
    response.set_header(header::CONTENT_LENGTH, bytes.len().to_string());
    response.set_body(bytes.to_vec());
    response
}

fn server_timing(timings: &Timings) -> String {
    let mut entries = vec![
        format!("decode;dur={:.2}", timings.decode.as_secs_f64() * 1e3),
        format!("inference;dur={:.2}", timings.inference.as_secs_f64() * 1e3),
    ];
    if !timings.rewrite.is_zero() {
        entries.push(format!(
            "rewrite;dur={:.2}",
            timings.rewrite.as_secs_f64() * 1e3
        ));
    }
    entries.join(", ")
}

/// 504 when the origin timed out, 502 for every other way it failed us.
pub fn origin_failure(failure: &Failure) -> Response {
    let (status, reason) = match failure {
        Failure::Send(e) => {
            let status = match e.root_cause() {
                SendErrorCause::DnsTimeout
                | SendErrorCause::ConnectionTimeout
                | SendErrorCause::HttpResponseTimeout => StatusCode::GATEWAY_TIMEOUT,
                _ => StatusCode::BAD_GATEWAY,
            };
            (status, format!("origin request failed: {}", e.root_cause()))
        }
        Failure::Body(e) => (
            StatusCode::BAD_GATEWAY,
            format!("origin body could not be read: {e}"),
        ),
    };
    eprintln!("moderation: {reason}");
    Response::from_status(status)
        .with_header("x-moderation-error", reason.as_str())
        .with_header(header::CACHE_CONTROL, "no-store")
        .with_body_text_plain(&format!("{reason}\n"))
}
