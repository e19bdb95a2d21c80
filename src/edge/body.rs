//! Looking into a body without spoiling it: is it an image, and if so its bytes, within
//! the policy's limit. Works on any `Body`, so responses and uploads share it.
//!
//! Only images are buffered, and only up to `limits.max_bytes`. Everything else keeps its
//! body as a host-side stream, so it goes on byte for byte without passing through Wasm
//! memory.
//!
//! Every read waits at most the policy's `origin.between_bytes_timeout_ms` for data
//! ([`TimedBody`]): a body that stalls halfway is an error (a 502 for a response), not an
//! instance held until the client gives up.

use super::wait;
use edge_moderation::media::content_encoding::{self, Coding, CodingError};
use edge_moderation::media::format::{
    sniff_len, unreadable_image, ImageFormat, MAX_SNIFF_LEN, SNIFF_LEN,
};
use edge_moderation::media::{mixed_replace, svg};
use edge_moderation::policy::Policy;
use fastly::handle::BodyHandle;
use fastly::Body;
use std::io::{self, Read};
use std::time::Duration;

/// A body whose every read waits at most `silence` for data. Fastly's backends bound
/// silence themselves (their between-bytes timeout); Viceroy does not, and the SDK's reads
/// block, so the wait goes through the host's readiness check (`fastly_async_io::select`
/// on the body handle: ready when data or the end has arrived).
///
/// It also holds the body to its declared length: a body that ends before its
/// `Content-Length` (the connection closed halfway) is an error, never a whole image.
pub struct TimedBody {
    handle: BodyHandle,
    id: u32,
    silence: Duration,
    declared: Option<u64>,
    read: u64,
}

impl TimedBody {
    pub fn new(mut body: Body, silence: Duration) -> TimedBody {
        let declared = body.known_length();
        // Any bytes the body had buffered go back to the front of the handle.
        let handle = body.into_handle();
        // The handle's number, for the readiness check; it lives as long as `handle`.
        let id = unsafe { handle.as_u32() };
        TimedBody {
            handle,
            id,
            silence,
            declared,
            read: 0,
        }
    }

    /// The rest of the body, unread, as a host-side stream.
    pub fn into_body(self) -> Body {
        Body::from(self.handle)
    }

    /// Up to `n` bytes from the start (fewer at the end of the body).
    fn read_up_to(&mut self, n: usize) -> io::Result<Vec<u8>> {
        let mut head = Vec::with_capacity(n);
        self.by_ref().take(n as u64).read_to_end(&mut head)?;
        Ok(head)
    }
}

impl Read for TimedBody {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !wait::ready_within(self.id, self.silence).map_err(io::Error::other)? {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no body data for {} ms", self.silence.as_millis()),
            ));
        }
        let read = self.handle.read(buf)?;
        self.read += read as u64;
        match self.declared {
            Some(declared) if read == 0 && !buf.is_empty() && self.read < declared => {
                Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("body ended after {} of its {declared} bytes", self.read),
                ))
            }
            _ => Ok(read),
        }
    }
}

/// The body `head` was read from: `head`, then what is left of `rest`.
fn rejoined(head: Vec<u8>, rest: TimedBody) -> Body {
    let mut body = Body::from(head);
    body.append(rest.into_body());
    body
}

/// What [`inspect`] found. Every case but `Image` gives the body back intact.
pub enum Inspection {
    /// Not something we moderate: forward as is.
    NotImage(Body),
    /// An image, buffered whole: `bytes` as a browser decodes them; `encoded`, when the
    /// body has a `Content-Encoding`, the bytes as sent (what passes on).
    Image {
        bytes: Vec<u8>,
        format: ImageFormat,
        encoded: Option<Vec<u8>>,
    },
    /// An image beyond the byte limit.
    Oversize { body: Body, detail: String },
    /// An SVG (by its `Content-Type`: browsers never sniff SVG), buffered whole, to be
    /// judged by the images it embeds; `encoded` as for `Image`.
    Svg {
        bytes: Vec<u8>,
        encoded: Option<Vec<u8>>,
    },
    /// A `multipart/x-mixed-replace` stream (by its `Content-Type`), buffered whole, to be
    /// judged by the images its parts show (split at `boundary`); `encoded` as for
    /// `Image`. A stream that never ends reaches the byte limit: `Oversize`.
    Stream {
        bytes: Vec<u8>,
        boundary: String,
        encoded: Option<Vec<u8>>,
    },
    /// Claims to be an image (by its `Content-Type`), but its bytes are not one we read;
    /// or an image browsers render (HEIF) that we cannot decode.
    Undecodable { body: Body, detail: String },
}

/// The image format the body's first bytes announce, without consuming them.
pub fn sniff(body: &mut Body) -> io::Result<Option<ImageFormat>> {
    let wanted = sniff_len(&body.try_get_prefix_mut(SNIFF_LEN)?);
    Ok(ImageFormat::sniff(&body.try_get_prefix_mut(wanted)?))
}

/// Compressed bytes read to sniff an encoded body: enough for any real stream's first
/// bytes that sniffing needs (12, an ISO-BMFF file's up to 144); a stream that needs more
/// is refused as undecodable rather than passed.
const ENCODED_SNIFF_LIMITS: [usize; 2] = [4 << 10, 64 << 10];

/// Sniffs `body` and buffers it if it is an image within the policy's byte limit.
/// `content_type` is what the message claims; it matters only when the bytes are not an
/// image. `content_encoding` is undone first, as a browser would. An error means the body
/// could not be read.
pub fn inspect(
    mut body: Body,
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    policy: &Policy,
) -> io::Result<Inspection> {
    let codings = match content_encoding.map(content_encoding::parse) {
        None => Vec::new(),
        Some(Ok(codings)) => codings,
        // A browser cannot decode it either; under an image type it fails closed.
        Some(Err(unknown)) if policy.claims_moderated_image(content_type) => {
            let detail = unknown.to_string();
            return Ok(Inspection::Undecodable { body, detail });
        }
        Some(Err(_)) => return Ok(Inspection::NotImage(body)),
    };
    let known_length = body.known_length();
    let mut body = TimedBody::new(body, policy.origin.between_bytes_timeout());
    if !codings.is_empty() {
        return inspect_encoded(body, content_type, &codings, policy);
    }
    let mut head = body.read_up_to(SNIFF_LEN)?;
    // An ISO-BMFF file is sniffed by its whole `ftyp` box.
    let more = sniff_len(&head).saturating_sub(head.len());
    if head.len() == SNIFF_LEN && more > 0 {
        head.extend(body.read_up_to(more)?);
    }
    let Some(format) = ImageFormat::sniff(&head) else {
        match content_type.and_then(mixed_replace::boundary) {
            Some(Ok(boundary)) => {
                return buffered(head, body, known_length, policy, |bytes| {
                    Inspection::Stream {
                        bytes,
                        boundary,
                        encoded: None,
                    }
                })
            }
            Some(Err(detail)) => {
                let body = rejoined(head, body);
                return Ok(Inspection::Undecodable { body, detail });
            }
            None => {}
        }
        if svg::is_svg_type(content_type) {
            return buffered(head, body, known_length, policy, |bytes| Inspection::Svg {
                bytes,
                encoded: None,
            });
        }
        if let Some(name) = unreadable_image(&head) {
            let detail = format!("{name} images are not decoded here");
            let body = rejoined(head, body);
            return Ok(Inspection::Undecodable { body, detail });
        }
        let body = rejoined(head, body);
        if policy.claims_moderated_image(content_type) {
            let detail = format!(
                "{} body is not a {}",
                content_type.unwrap_or_default(),
                ImageFormat::list()
            );
            return Ok(Inspection::Undecodable { body, detail });
        }
        return Ok(Inspection::NotImage(body));
    };

    buffered(head, body, known_length, policy, |bytes| {
        Inspection::Image {
            bytes,
            format,
            encoded: None,
        }
    })
}

/// Room in `bytes` for a body of `declared` length (at most `limit`), in one allocation:
/// a vector grown by doubling copies a 6 MB body several times over, which cost a fresh
/// instance 12 ms of its CPU (Viceroy, Zen 5).
fn reserve_declared(bytes: &mut Vec<u8>, declared: Option<u64>, limit: usize) {
    if let Some(declared) = declared {
        let declared = usize::try_from(declared).unwrap_or(usize::MAX).min(limit);
        bytes.reserve(declared.saturating_sub(bytes.len()));
    }
}

/// A whole body of at most `limit` bytes (more is an error), read into one allocation
/// when its length is declared.
pub fn read_whole(mut body: Body, limit: usize) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    reserve_declared(&mut bytes, body.known_length(), limit);
    body.take(limit as u64 + 1).read_to_end(&mut bytes)?;
    if bytes.len() > limit {
        return Err(io::Error::other(format!("more than {limit} bytes")));
    }
    Ok(bytes)
}

/// The body (`head` already read, then `rest`) read whole into `found`, or `Oversize`
/// (with the body intact) beyond the policy's byte limit.
fn buffered(
    mut bytes: Vec<u8>,
    mut rest: TimedBody,
    known_length: Option<u64>,
    policy: &Policy,
    found: impl FnOnce(Vec<u8>) -> Inspection,
) -> io::Result<Inspection> {
    let limit = policy.limits.max_bytes;
    if let Some(length) = known_length.filter(|&length| length > limit as u64) {
        let detail = format!("{length} bytes, limit {limit}");
        let body = rejoined(bytes, rest);
        return Ok(Inspection::Oversize { body, detail });
    }
    let wanted = (limit as u64 + 1).saturating_sub(bytes.len() as u64);
    reserve_declared(&mut bytes, known_length, limit);
    (&mut rest).take(wanted).read_to_end(&mut bytes)?;
    if bytes.len() > limit {
        let detail = format!("more than {limit} bytes");
        return Ok(Inspection::Oversize {
            body: rejoined(bytes, rest),
            detail,
        });
    }
    Ok(found(bytes))
}

/// [`inspect`] for a body under content codings: sniffed and judged decoded, passed on
/// as sent.
fn inspect_encoded(
    mut body: TimedBody,
    content_type: Option<&str>,
    codings: &[Coding],
    policy: &Policy,
) -> io::Result<Inspection> {
    let mut head = Vec::new();
    let mut prefix = Vec::new();
    let mut sniffable = false;
    for limit in ENCODED_SNIFF_LIMITS {
        let more = body.read_up_to(limit - prefix.len())?;
        prefix.extend_from_slice(&more);
        head = content_encoding::decoded_prefix(&prefix, codings, MAX_SNIFF_LEN);
        // The whole body is in the prefix, or it gave enough bytes to sniff.
        sniffable = head.len() >= sniff_len(&head) || prefix.len() < limit;
        if sniffable {
            break;
        }
    }
    let svg = svg::is_svg_type(content_type) && sniffable;
    let format = ImageFormat::sniff(&head);
    let stream = match content_type.and_then(mixed_replace::boundary) {
        Some(Err(detail)) => {
            let body = rejoined(prefix, body);
            return Ok(Inspection::Undecodable { body, detail });
        }
        Some(Ok(boundary)) if sniffable => Some(boundary),
        _ => None,
    };
    if format.is_none() && !svg && stream.is_none() {
        let unreadable = unreadable_image(&head);
        if !sniffable || unreadable.is_some() || policy.claims_moderated_image(content_type) {
            let detail = match unreadable {
                Some(name) => format!("{name} images are not decoded here"),
                None if !sniffable => "compressed body could not be sniffed".into(),
                None => format!("encoded body is not a {}", ImageFormat::list()),
            };
            let body = rejoined(prefix, body);
            return Ok(Inspection::Undecodable { body, detail });
        }
        return Ok(Inspection::NotImage(rejoined(prefix, body)));
    }
    let limit = policy.limits.max_bytes;
    let mut encoded = prefix;
    let wanted = (limit as u64 + 1).saturating_sub(encoded.len() as u64);
    (&mut body).take(wanted).read_to_end(&mut encoded)?;
    if encoded.len() > limit {
        let detail = format!("more than {limit} bytes compressed");
        return Ok(Inspection::Oversize {
            body: rejoined(encoded, body),
            detail,
        });
    }
    match content_encoding::decode(&encoded, codings, limit) {
        Ok(bytes) => Ok(match (format, stream) {
            (Some(format), _) => Inspection::Image {
                bytes,
                format,
                encoded: Some(encoded),
            },
            (None, Some(boundary)) => Inspection::Stream {
                bytes,
                boundary,
                encoded: Some(encoded),
            },
            (None, None) => Inspection::Svg {
                bytes,
                encoded: Some(encoded),
            },
        }),
        Err(CodingError::TooLarge { .. }) => Ok(Inspection::Oversize {
            body: Body::from(encoded),
            detail: format!("decompresses to more than {limit} bytes"),
        }),
        Err(e) => Ok(Inspection::Undecodable {
            body: Body::from(encoded),
            detail: e.to_string(),
        }),
    }
}
