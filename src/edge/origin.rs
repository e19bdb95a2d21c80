//! Talking to the `origin` backend and deciding what kind of body came back.
//!
//! A response is an image when its leading bytes say so; only images are buffered, and
//! only up to the policy's byte limit. Everything else keeps its body as a host-side
//! stream, so it reaches the client byte for byte without passing through Wasm memory.

use edge_moderation::policy::Policy;
use edge_moderation::sniff::{ImageFormat, SNIFF_LEN};
use fastly::http::{header, Method, StatusCode};
use fastly::{Body, Request, Response};
use std::io::Read;

pub const BACKEND: &str = "origin";

/// The origin could not give us a response we can forward.
pub enum Failure {
    Send(fastly::http::request::SendError),
    Body(std::io::Error),
}

/// What [`inspect`] found in a response.
pub enum Inspected {
    /// Not something we moderate: forward as is.
    Untouched(Response),
    /// An image, buffered whole; `response` holds the origin's status and headers.
    Image {
        response: Response,
        bytes: Vec<u8>,
        format: ImageFormat,
    },
    /// An image beyond the byte limit; `response` still carries the complete body.
    Oversize {
        response: Response,
        detail: String,
    },
    /// Claims to be an image but its bytes are not one we can read; body intact.
    Undecodable {
        response: Response,
        detail: String,
    },
    Failed(Failure),
}

/// Sends the request to the origin. A `Range` request whose answer is a slice of an
/// image is re-sent without `Range`: a slice cannot be classified, and serving it would
/// leak unmoderated image bytes. The whole image is then moderated and returned as 200.
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
    if is_image_type(slice.get_header_str(header::CONTENT_TYPE))
        || sniff(slice.get_body_mut())?.is_some()
    {
        return Ok(true);
    }
    let mut head = whole.clone_without_body();
    head.set_header(header::RANGE, format!("bytes=0-{}", SNIFF_LEN - 1));
    let mut head = head.send(BACKEND).map_err(Failure::Send)?;
    Ok(sniff(head.get_body_mut())?.is_some())
}

fn is_image_type(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|t| t.trim_start().to_ascii_lowercase().starts_with("image/"))
}

/// Looks at the first bytes without consuming them.
fn sniff(body: &mut Body) -> Result<Option<ImageFormat>, Failure> {
    let prefix = body.try_get_prefix_mut(SNIFF_LEN).map_err(Failure::Body)?;
    Ok(ImageFormat::sniff(&prefix))
}

fn carries_moderated_content(response: &Response) -> bool {
    let head = response
        .get_backend_request()
        .is_some_and(|r| r.get_method() == Method::HEAD);
    let status = response.get_status();
    !head
        && status.is_success()
        && status != StatusCode::NO_CONTENT
        && status != StatusCode::RESET_CONTENT
}

pub fn inspect(mut response: Response, policy: &Policy) -> Inspected {
    if !carries_moderated_content(&response) {
        return Inspected::Untouched(response);
    }
    let format = match sniff(response.get_body_mut()) {
        Ok(format) => format,
        Err(failure) => return Inspected::Failed(failure),
    };
    let Some(format) = format else {
        let content_type = response
            .get_header_str(header::CONTENT_TYPE)
            .map(str::to_owned);
        if policy.claims_moderated_image(content_type.as_deref()) {
            let detail = format!(
                "{} body is not a JPEG, PNG, WebP or GIF",
                content_type.unwrap_or_default()
            );
            return Inspected::Undecodable { response, detail };
        }
        return Inspected::Untouched(response);
    };

    let limit = policy.limits.max_bytes;
    let mut body = response.take_body();
    if let Some(length) = body.known_length().filter(|&length| length > limit as u64) {
        response.set_body(body);
        return Inspected::Oversize {
            response,
            detail: format!("{length} bytes, limit {limit}"),
        };
    }
    let mut bytes = Vec::new();
    if let Err(e) = (&mut body).take(limit as u64 + 1).read_to_end(&mut bytes) {
        return Inspected::Failed(Failure::Body(e));
    }
    if bytes.len() > limit {
        let mut whole = Body::from(bytes);
        whole.append(body);
        response.set_body(whole);
        return Inspected::Oversize {
            response,
            detail: format!("more than {limit} bytes"),
        };
    }
    Inspected::Image {
        response,
        bytes,
        format,
    }
}
