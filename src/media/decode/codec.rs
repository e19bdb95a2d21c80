//! The image-rs codecs (JPEG at full size, PNG, WebP, GIF, BMP, ICO, TIFF) and ours (AVIF,
//! JPEG XL): the declared size checked before decoding, and image-rs's own allocation limit
//! set from ours.

use super::{jpeg, DecodeError, DecodeLimits};
use crate::media::format::ImageFormat;
use image::{DynamicImage, ImageDecoder, ImageError, ImageReader};
use std::io::Cursor;

/// The format's decoder, after the checks on the declared size (the memory budget is
/// checked by the caller, against the canvas it will actually decode).
pub(super) fn checked_decoder(
    bytes: &[u8],
    format: ImageFormat,
    limits: DecodeLimits,
) -> Result<Box<dyn ImageDecoder + '_>, DecodeError> {
    if format == ImageFormat::Jpeg && !jpeg::is_complete(bytes) {
        // The JPEG decoder fills a missing tail with grey rather than failing; a cut-off
        // file is still damaged goods, and gets the policy's outcome for those.
        return Err(DecodeError::Corrupt(
            "JPEG is truncated (no end-of-image marker after its scan)".into(),
        ));
    }
    if format == ImageFormat::Gif {
        // A frame may declare more than the canvas, and the decoder allocates it.
        crate::media::frames::check_gif_frames(bytes, limits)?;
    }
    match format {
        ImageFormat::Avif => return Ok(Box::new(super::avif::AvifDecoder::new(bytes, limits)?)),
        ImageFormat::JpegXl => return Ok(Box::new(super::jxl::JxlDecoder::new(bytes, limits)?)),
        _ => {}
    }
    let codec = format
        .codec()
        .ok_or_else(|| DecodeError::Unsupported(format!("no decoder for {}", format.name())))?;
    let decoder = ImageReader::with_format(Cursor::new(bytes), codec)
        .into_decoder()
        .map_err(|e| unreadable(e, 0, 0))?;
    let (width, height) = decoder.dimensions();
    if width == 0 || height == 0 {
        return Err(DecodeError::Corrupt(format!("image is {width}x{height}")));
    }
    if u64::from(width) * u64::from(height) > limits.max_pixels
        || width.max(height) > limits.max_dimension
    {
        return Err(DecodeError::TooLarge { width, height });
    }
    Ok(Box::new(decoder))
}

pub(super) fn within_canvas_budget(
    decoder: &dyn ImageDecoder,
    limits: DecodeLimits,
) -> Result<(), DecodeError> {
    if decoder.total_bytes() > limits.max_canvas_bytes {
        let (width, height) = decoder.dimensions();
        return Err(DecodeError::TooLarge { width, height });
    }
    Ok(())
}

pub(super) fn decode_full(
    mut decoder: Box<dyn ImageDecoder + '_>,
    limits: DecodeLimits,
) -> Result<DynamicImage, DecodeError> {
    let (width, height) = decoder.dimensions();
    let mut codec_limits = image::Limits::default();
    codec_limits.max_image_width = Some(limits.max_dimension);
    codec_limits.max_image_height = Some(limits.max_dimension);
    // Room for the largest allowed canvas at 16-bit RGBA, plus decoder working memory.
    codec_limits.max_alloc = Some(limits.max_pixels.saturating_mul(8).saturating_add(16 << 20));
    decoder
        .set_limits(codec_limits)
        .map_err(|_| DecodeError::TooLarge { width, height })?;
    DynamicImage::from_decoder(decoder).map_err(|e| unreadable(e, width, height))
}

/// image-rs's error as ours: its limits are our `TooLarge`, its unsupported features our
/// `Unsupported`, and everything else damage.
fn unreadable(error: ImageError, width: u32, height: u32) -> DecodeError {
    match error {
        ImageError::Limits(_) => DecodeError::TooLarge { width, height },
        ImageError::Unsupported(e) => DecodeError::Unsupported(e.to_string()),
        other => DecodeError::Corrupt(other.to_string()),
    }
}
