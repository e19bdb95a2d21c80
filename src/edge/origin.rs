//! Forwarding to the `origin` backend, and the ways it can fail us.
//!
//! A `Range` request whose answer is a slice of an image is re-sent without `Range`: a
//! slice cannot be classified, and serving it would leak unmoderated image bytes. The
//! whole image is then moderated and returned as 200.

use super::body;
use edge_moderation::media::content_type;
use edge_moderation::media::format::SNIFF_LEN;
use fastly::http::{header, Method, StatusCode};
use fastly::{Request, Response};

pub const BACKEND: &str = "origin";

/// The origin could not give us a response we can forward.
pub enum Failure {
    Send(fastly::http::request::SendError),
    Body(std::io::Error),
}

/// Sends the request to the origin, widening a `Range` request for an image (above).
pub fn fetch(request: Request) -> Result<Response, Failure> {
    let whole = (request.contains_header(header::RANGE) && request.get_method() != Method::HEAD)
        .then(|| whole_resource(&request));
    let mut response = request.send(BACKEND).map_err(Failure::Send)?;
    match whole {
        Some(whole)
            if response.get_status() == StatusCode::PARTIAL_CONTENT
                && slice_of_image(&mut response, &whole)? =>
        {
            whole.send(BACKEND).map_err(Failure::Send)
        }
        _ => Ok(response),
    }
}

fn whole_resource(request: &Request) -> Request {
    let mut whole = request.clone_without_body();
    whole.remove_header(header::RANGE);
    whole.remove_header(header::IF_RANGE);
    whole
}

/// Whether a 206 answer is part of an image: its own bytes, its type, or — for a slice
/// from the middle — the first bytes of the resource, fetched with a tiny range.
fn slice_of_image(slice: &mut Response, whole: &Request) -> Result<bool, Failure> {
    if content_type::claims_image(slice.get_header_str(header::CONTENT_TYPE))
        || body::sniff(slice.get_body_mut())
            .map_err(Failure::Body)?
            .is_some()
    {
        return Ok(true);
    }
    let mut head = whole.clone_without_body();
    head.set_header(header::RANGE, format!("bytes=0-{}", SNIFF_LEN - 1));
    let mut head = head.send(BACKEND).map_err(Failure::Send)?;
    Ok(body::sniff(head.get_body_mut())
        .map_err(Failure::Body)?
        .is_some())
}
