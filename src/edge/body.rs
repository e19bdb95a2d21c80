//! Looking into a body without spoiling it: is it an image, and if so its bytes, within
//! the policy's limit. Works on any `Body`, so responses and uploads share it.
//!
//! Only images are buffered, and only up to `limits.max_bytes`. Everything else keeps its
//! body as a host-side stream, so it goes on byte for byte without passing through Wasm
//! memory.

use edge_moderation::media::format::{unreadable_image, ImageFormat, SNIFF_LEN};
use edge_moderation::policy::Policy;
use fastly::Body;
use std::io::{self, Read};

/// What [`inspect`] found. Every case but `Image` gives the body back intact.
pub enum Inspection {
    /// Not something we moderate: forward as is.
    NotImage(Body),
    /// An image, buffered whole.
    Image { bytes: Vec<u8>, format: ImageFormat },
    /// An image beyond the byte limit.
    Oversize { body: Body, detail: String },
    /// Claims to be an image (by its `Content-Type`), but its bytes are not one we read;
    /// or an image browsers render (AVIF, HEIF, JPEG XL) that we cannot decode.
    Undecodable { body: Body, detail: String },
}

/// The image format the body's first bytes announce, without consuming them.
pub fn sniff(body: &mut Body) -> io::Result<Option<ImageFormat>> {
    let prefix = body.try_get_prefix_mut(SNIFF_LEN)?;
    Ok(ImageFormat::sniff(&prefix))
}

/// Sniffs `body` and buffers it if it is an image within the policy's byte limit.
/// `content_type` is what the message claims; it matters only when the bytes are not an
/// image. An error means the body could not be read.
pub fn inspect(
    mut body: Body,
    content_type: Option<&str>,
    policy: &Policy,
) -> io::Result<Inspection> {
    let Some(format) = sniff(&mut body)? else {
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
    Ok(Inspection::Image { bytes, format })
}
