//! Forwarding to the `origin` backend, and the ways it can fail us.
//!
//! A `Range` request whose answer is a slice of an image is re-sent without `Range`: a
//! slice cannot be classified, and serving it would leak unmoderated image bytes. The
//! whole image is then moderated and returned as 200.
//!
//! An origin that sends no response headers within the policy's
//! `origin.first_byte_timeout_ms` gets 504 (Fastly's backends enforce their own first-byte
//! timeout too; this one also holds where they do not, as under Viceroy). A body that stops
//! halfway is bounded by the backend's between-bytes timeout: the SDK has no
//! non-blocking body read to bound it here.

use super::{body, wait};
use edge_moderation::media::content_type;
use edge_moderation::media::format::MAX_SNIFF_LEN;
use fastly::http::request::SendErrorCause;
use fastly::http::{header, Method, StatusCode};
use fastly::{Request, Response};
use std::time::Duration;

pub const BACKEND: &str = "origin";

/// The origin could not give us a response we can forward.
pub enum Failure {
    Send(SendErrorCause),
    Body(std::io::Error),
    /// No response headers within this long.
    Timeout(Duration),
}

/// Sends the request to the origin, widening a `Range` request for an image (above).
pub fn fetch(request: Request, first_byte: Duration) -> Result<Response, Failure> {
    let whole = (request.contains_header(header::RANGE) && request.get_method() != Method::HEAD)
        .then(|| whole_resource(&request));
    let mut response = send(request, first_byte)?;
    match whole {
        Some(whole)
            if response.get_status() == StatusCode::PARTIAL_CONTENT
                && slice_of_image(&mut response, &whole, first_byte)? =>
        {
            send(whole, first_byte)
        }
        _ => Ok(response),
    }
}

/// The origin's response headers, or a timeout once `first_byte` has passed without them
/// (the host waits: [`wait::Pending::within`]).
fn send(request: Request, first_byte: Duration) -> Result<Response, Failure> {
    let pending = wait::send(request, BACKEND).map_err(Failure::Send)?;
    pending.within(first_byte).map_err(|failure| match failure {
        wait::SendFailure::Send(cause) => Failure::Send(cause),
        wait::SendFailure::Timeout(after) => Failure::Timeout(after),
    })
}

fn whole_resource(request: &Request) -> Request {
    let mut whole = request.clone_without_body();
    whole.remove_header(header::RANGE);
    whole.remove_header(header::IF_RANGE);
    whole
}

/// Whether a 206 answer is part of an image: its own bytes, its type, or — for a slice
/// from the middle — the first bytes of the resource, fetched with a tiny range.
fn slice_of_image(
    slice: &mut Response,
    whole: &Request,
    first_byte: Duration,
) -> Result<bool, Failure> {
    if content_type::claims_image(slice.get_header_str(header::CONTENT_TYPE))
        || body::sniff(slice.get_body_mut())
            .map_err(Failure::Body)?
            .is_some()
    {
        return Ok(true);
    }
    let mut head = whole.clone_without_body();
    head.set_header(header::RANGE, format!("bytes=0-{}", MAX_SNIFF_LEN - 1));
    let mut head = send(head, first_byte)?;
    Ok(body::sniff(head.get_body_mut())
        .map_err(Failure::Body)?
        .is_some())
}
