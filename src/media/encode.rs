//! Writes an image in a given format: the body of a rewrite, in the format the original
//! came in (so the page that embeds it and the browser's caches see the same type).
//!
//! Encoding runs in the same 50 ms of CPU as classification: JPEG uses `jpeg-encoder`
//! (4:2:0 chroma, several times faster than image-rs's 4:2:2 encoder); GIF uses the
//! fastest palette search, since an obscured image has little colour detail to keep.

use super::format::ImageFormat;
use super::obscure::rgb8_or_rgba8;
use anyhow::{Context, Result};
use image::codecs::gif::GifEncoder;
use image::{DynamicImage, Frame};
use std::borrow::Cow;
use std::io::Cursor;

const JPEG_QUALITY: u8 = 85;
/// `gif`'s NeuQuant speed, 1 (best palette) to 30 (fastest); `image` defaults to 1.
const GIF_PALETTE_SPEED: i32 = 30;

/// Encodes in `format`, keeping alpha where the format has it.
pub fn encode(image: &DynamicImage, format: ImageFormat) -> Result<Vec<u8>> {
    let mut out = Cursor::new(Vec::new());
    match format {
        ImageFormat::Jpeg => {
            let rgb = match image {
                DynamicImage::ImageRgb8(rgb) => Cow::Borrowed(rgb),
                other => Cow::Owned(other.to_rgb8()),
            };
            let side = |side: u32| u16::try_from(side).context("too large for JPEG");
            jpeg_encoder::Encoder::new(&mut out, JPEG_QUALITY).encode(
                rgb.as_raw(),
                side(rgb.width())?,
                side(rgb.height())?,
                jpeg_encoder::ColorType::Rgb,
            )?;
        }
        ImageFormat::Gif => {
            // The fastest palette search: an obscured image has little colour detail to keep.
            let mut encoder = GifEncoder::new_with_speed(&mut out, GIF_PALETTE_SPEED);
            encoder.encode_frame(Frame::new(image.to_rgba8()))?;
        }
        ImageFormat::Ico => {
            // image-rs reads back only icons whose PNG entry is RGBA.
            DynamicImage::ImageRgba8(image.to_rgba8()).write_to(&mut out, codec(format)?)?;
        }
        ImageFormat::Png | ImageFormat::WebP | ImageFormat::Bmp | ImageFormat::Tiff => {
            rgb8_or_rgba8(image).write_to(&mut out, codec(format)?)?;
        }
        ImageFormat::Avif | ImageFormat::JpegXl => anyhow::bail!(
            "no {} encoder: rewrite as {:?}",
            format.name(),
            format.rewritten_as()
        ),
    }
    Ok(out.into_inner())
}

fn codec(format: ImageFormat) -> anyhow::Result<image::ImageFormat> {
    format
        .codec()
        .with_context(|| format!("no image-rs codec for {}", format.name()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::decode::{decode, DecodeLimits};
    use crate::media::obscure::tests::checkerboard;
    use crate::media::obscure::{obscure, RewriteStyle};
    use image::GenericImageView;

    #[test]
    fn obscured_images_round_trip_in_every_format_with_alpha_where_possible() {
        let original = checkerboard(64, 48);
        let limits = DecodeLimits {
            max_pixels: 1 << 20,
            max_dimension: 1024,
            max_canvas_bytes: 1 << 24,
            reduce_jpeg: false,
        };
        for format in ImageFormat::ALL.map(ImageFormat::rewritten_as) {
            let obscured = obscure(&original, (64, 48), RewriteStyle::default()).unwrap();
            let bytes = encode(&obscured, format).unwrap();
            assert_eq!(ImageFormat::sniff(&bytes), Some(format));
            let decoded = decode(&bytes, format, limits).unwrap();
            assert_eq!(decoded.dimensions(), (64, 48));
            // GIF and ICO are always written with alpha; JPEG never has it.
            let alpha = format != ImageFormat::Jpeg;
            assert_eq!(decoded.color().has_alpha(), alpha, "{format:?}");
        }
    }
}
