//! Looking into a body without spoiling it: is it an image, and if so its bytes, within
//! the policy's limit. Works on any `Body`, so responses and uploads share it.
//!
//! Only images are buffered, and only up to `limits.max_bytes`. Everything else keeps its
//! body as a host-side stream, so it goes on byte for byte without passing through Wasm
//! memory.

use edge_moderation::media::content_encoding::{self, Coding, CodingError};
use edge_moderation::media::format::{unreadable_image, ImageFormat, SNIFF_LEN};
use edge_moderation::media::svg;
use edge_moderation::policy::Policy;
use fastly::Body;
use std::io::{self, Read};

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
    /// Claims to be an image (by its `Content-Type`), but its bytes are not one we read;
    /// or an image browsers render (AVIF, HEIF, JPEG XL) that we cannot decode.
    Undecodable { body: Body, detail: String },
}

/// The image format the body's first bytes announce, without consuming them.
pub fn sniff(body: &mut Body) -> io::Result<Option<ImageFormat>> {
    let prefix = body.try_get_prefix_mut(SNIFF_LEN)?;
    Ok(ImageFormat::sniff(&prefix))
}

/// Compressed bytes read to sniff an encoded body: enough for any real stream's first
/// 12 bytes; a stream that needs more is refused as undecodable rather than passed.
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
    if !codings.is_empty() {
        return inspect_encoded(body, content_type, &codings, policy);
    }
    let Some(format) = sniff(&mut body)? else {
        if svg::is_svg_type(content_type) {
            return buffered(body, policy, |bytes| Inspection::Svg {
                bytes,
                encoded: None,
            });
        }
        let prefix = body.try_get_prefix_mut(SNIFF_LEN)?;
        if let Some(name) = unreadable_image(&prefix) {
            drop(prefix);
            let detail = format!("{name} images are not decoded here");
            return Ok(Inspection::Undecodable { body, detail });
        }
        drop(prefix);
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

    buffered(body, policy, |bytes| Inspection::Image {
        bytes,
        format,
        encoded: None,
    })
}

/// The body read whole into `found`, or `Oversize` (with the body intact) beyond the
/// policy's byte limit.
fn buffered(
    mut body: Body,
    policy: &Policy,
    found: impl FnOnce(Vec<u8>) -> Inspection,
) -> io::Result<Inspection> {
    let limit = policy.limits.max_bytes;
    if let Some(length) = body.known_length().filter(|&length| length > limit as u64) {
        let detail = format!("{length} bytes, limit {limit}");
        return Ok(Inspection::Oversize { body, detail });
    }
    let mut bytes = Vec::new();
    (&mut body).take(limit as u64 + 1).read_to_end(&mut bytes)?;
    if bytes.len() > limit {
        let mut whole = Body::from(bytes);
        whole.append(body);
        let detail = format!("more than {limit} bytes");
        return Ok(Inspection::Oversize {
            body: whole,
            detail,
        });
    }
    Ok(found(bytes))
}

/// [`inspect`] for a body under content codings: sniffed and judged decoded, passed on
/// as sent.
fn inspect_encoded(
    mut body: Body,
    content_type: Option<&str>,
    codings: &[Coding],
    policy: &Policy,
) -> io::Result<Inspection> {
    let mut head = Vec::new();
    let mut sniffable = false;
    for limit in ENCODED_SNIFF_LIMITS {
        let prefix = body.try_get_prefix_mut(limit)?;
        head = content_encoding::decoded_prefix(&prefix, codings, SNIFF_LEN);
        // The whole body is in the prefix, or it gave enough bytes to sniff.
        sniffable = head.len() >= SNIFF_LEN || prefix.len() < limit;
        if sniffable {
            break;
        }
    }
    let svg = svg::is_svg_type(content_type) && sniffable;
    let format = ImageFormat::sniff(&head);
    if format.is_none() && !svg {
        let unreadable = unreadable_image(&head);
        if !sniffable || unreadable.is_some() || policy.claims_moderated_image(content_type) {
            let detail = match unreadable {
                Some(name) => format!("{name} images are not decoded here"),
                None if !sniffable => "compressed body could not be sniffed".into(),
                None => format!("encoded body is not a {}", ImageFormat::list()),
            };
            return Ok(Inspection::Undecodable { body, detail });
        }
        return Ok(Inspection::NotImage(body));
    }
    let limit = policy.limits.max_bytes;
    let mut encoded = Vec::new();
    (&mut body)
        .take(limit as u64 + 1)
        .read_to_end(&mut encoded)?;
    if encoded.len() > limit {
        let mut whole = Body::from(encoded);
        whole.append(body);
        let detail = format!("more than {limit} bytes compressed");
        return Ok(Inspection::Oversize {
            body: whole,
            detail,
        });
    }
    match content_encoding::decode(&encoded, codings, limit) {
        Ok(bytes) => Ok(match format {
            Some(format) => Inspection::Image {
                bytes,
                format,
                encoded: Some(encoded),
            },
            None => Inspection::Svg {
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
