//! The response direction: which origin responses are judged, and judging them. A body
//! that is not an image goes back untouched, still streaming.

use super::body::{self, Inspection};
use super::context::RequestContext;
use super::origin::Failure;
use super::respond::{self, Report};
use super::{decisions, model};
use edge_moderation::decision_log::Origin;
use edge_moderation::headers;
use edge_moderation::media::{mixed_replace, svg};
use edge_moderation::moderation::{Moderation, Subject};
use edge_moderation::policy::Direction;
use fastly::http::{header, Method, StatusCode};
use fastly::Response;

/// The response the client receives for the origin's `response`. The origin's own
/// `x-moderation-*` headers are removed: on what reaches the client they are ours.
pub fn judge(context: &RequestContext, mut response: Response) -> Response {
    let forged: Vec<_> = response
        .get_header_names()
        .filter(|name| name.as_str().starts_with(headers::PREFIX))
        .cloned()
        .collect();
    for name in forged {
        response.remove_header(name);
    }
    let Some(shown) = shown_body(context, &response) else {
        return response;
    };
    let policy = &context.served.policy;
    let content_type = response
        .get_header_str(header::CONTENT_TYPE)
        .map(str::to_owned)
        .filter(|claimed| shown == Shown::AsTyped || shows_by_type(claimed));
    let content_encoding = response
        .get_header_str(header::CONTENT_ENCODING)
        .map(str::to_owned);
    let body = response.take_body();
    let claimed = (content_type.as_deref(), content_encoding.as_deref());
    let inspection = match body::inspect(body, claimed.0, claimed.1, policy) {
        Ok(inspection) => inspection,
        Err(e) => return respond::origin_failure(context, &Failure::Body(e)),
    };
    let (moderation, report) = match inspection {
        Inspection::NotImage(body) => return response.with_body(body),
        Inspection::Oversize { body, detail } => {
            response.set_body(body);
            (Moderation::oversize(policy, detail), Report::default())
        }
        Inspection::Undecodable { body, detail } => {
            response.set_body(body);
            (Moderation::undecodable(policy, detail), Report::default())
        }
        Inspection::Image {
            bytes,
            format,
            encoded,
        } => {
            let subject = Subject::Raster(format);
            let judged = model::judge(&bytes, subject, policy, &context.host);
            response.set_body(encoded.unwrap_or(bytes));
            judged
        }
        Inspection::Svg { bytes, encoded } => {
            let judged = model::judge(&bytes, Subject::Svg, policy, &context.host);
            response.set_body(encoded.unwrap_or(bytes));
            judged
        }
        Inspection::Stream {
            bytes,
            boundary,
            encoded,
        } => {
            let judged = model::judge_stream(&bytes, &boundary, policy, &context.host);
            let sent = encoded.unwrap_or(bytes);
            match judged {
                Some(judged) => {
                    response.set_body(sent);
                    judged
                }
                // No part shows an image: it passes as sent.
                None => return response.with_body(sent),
            }
        }
    };
    let origin = Origin::Crossing(Direction::Served);
    decisions::log(
        context,
        origin,
        &context.served,
        &moderation,
        report.image_facts(None),
    );
    respond::moderated(response, moderation, &context.served, report)
}

/// How a browser treats a response's body in `<img>`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shown {
    /// A success: as its bytes and its `Content-Type` say (an image type whose bytes are
    /// not an image fails closed).
    AsTyped,
    /// An error (4xx, 5xx): Chromium shows an image body of a 404 or a 500 in `<img>`
    /// (checked), so image bytes are judged; its type alone decides nothing (an error
    /// page typed `image/jpeg` passes as sent), except for the types browsers render by
    /// type (SVG, `multipart/x-mixed-replace`).
    IfImage,
}

/// How the body is shown, or `None` when it is never shown: HEAD, 204, 205, redirects
/// and 304 pass as the origin sent them.
fn shown_body(context: &RequestContext, response: &Response) -> Option<Shown> {
    let status = response.get_status();
    if context.method == Method::HEAD
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::RESET_CONTENT
    {
        return None;
    }
    if status.is_success() {
        Some(Shown::AsTyped)
    } else if status.is_client_error() || status.is_server_error() {
        Some(Shown::IfImage)
    } else {
        None
    }
}

/// Whether a browser renders a body of this type as an image by the type itself (its
/// bytes carry no signature to sniff).
fn shows_by_type(content_type: &str) -> bool {
    svg::is_svg_type(Some(content_type)) || mixed_replace::boundary(content_type).is_some()
}
