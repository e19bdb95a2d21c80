//! Produces the obscured version of an image: blurred or pixelated, same dimensions,
//! re-encoded in the image's own format.
//!
//! Strength is relative to the shorter side so a thumbnail and a poster look equally
//! obscured. Both methods work on a reduced copy and scale back up, which keeps the cost
//! independent of the blur radius.
//!
//! A rewrite runs in the same 50 ms of CPU as the classification before it, so both of its
//! full-size steps use the fastest well-kept crates for them: `fast_image_resize` (Wasm
//! SIMD) scales, and `jpeg-encoder` writes JPEG with 4:2:0 chroma. `image`'s own resize
//! and JPEG encoder took ~45 ms together for a 1024×768 rewrite under Viceroy.

use crate::policy::{RewriteMethod, RewriteStyle};
use crate::sniff::ImageFormat;
use anyhow::{Context, Result};
use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions, Resizer};
use image::codecs::gif::GifEncoder;
use image::{DynamicImage, Frame};
use std::borrow::Cow;
use std::io::Cursor;

/// Blur works at a scale where the requested radius is this many pixels.
const BLUR_WORKING_SIGMA: f32 = 2.0;
const JPEG_QUALITY: u8 = 85;
/// `gif`'s NeuQuant speed, 1 (best palette) to 30 (fastest); `image` defaults to 1.
const GIF_PALETTE_SPEED: i32 = 30;

/// Obscures `image` into a `width` × `height` result; `image` may be a reduced copy of
/// the original (the reduced decode), since only coarse structure survives anyway.
pub fn obscure(
    image: &DynamicImage,
    (width, height): (u32, u32),
    style: RewriteStyle,
) -> Result<DynamicImage> {
    let shorter = width.min(height) as f32;
    let image = rgb8_or_rgba8(image);
    let smooth = ResizeAlg::Convolution(FilterType::Bilinear);
    match style.method {
        RewriteMethod::Blur => {
            let sigma = (style.strength * shorter).max(1.0);
            let factor = (sigma / BLUR_WORKING_SIGMA).max(1.0);
            let reduced = resize(
                &image,
                scaled(width, factor),
                scaled(height, factor),
                smooth,
            )?;
            resize(&reduced.blur(sigma / factor), width, height, smooth)
        }
        RewriteMethod::Pixelate => {
            let cell = (style.strength * shorter).max(2.0);
            let reduced = resize(&image, scaled(width, cell), scaled(height, cell), smooth)?;
            resize(&reduced, width, height, ResizeAlg::Nearest)
        }
    }
}

/// `image` as 8-bit RGB, or RGBA where it has alpha: what every output format takes.
/// Borrowed when it already is one of them (obscured images always are).
fn rgb8_or_rgba8(image: &DynamicImage) -> Cow<'_, DynamicImage> {
    match image {
        DynamicImage::ImageRgb8(_) | DynamicImage::ImageRgba8(_) => Cow::Borrowed(image),
        other if other.color().has_alpha() => {
            Cow::Owned(DynamicImage::ImageRgba8(other.to_rgba8()))
        }
        other => Cow::Owned(DynamicImage::ImageRgb8(other.to_rgb8())),
    }
}

/// `image` (8-bit RGB or RGBA) scaled to `width` × `height`.
fn resize(
    image: &DynamicImage,
    width: u32,
    height: u32,
    algorithm: ResizeAlg,
) -> Result<DynamicImage> {
    let mut scaled = match image {
        DynamicImage::ImageRgba8(_) => DynamicImage::new_rgba8(width, height),
        _ => DynamicImage::new_rgb8(width, height),
    };
    Resizer::new()
        .resize(
            image,
            &mut scaled,
            &ResizeOptions::new().resize_alg(algorithm),
        )
        .with_context(|| format!("scaling to {width}×{height}"))?;
    Ok(scaled)
}

fn scaled(side: u32, factor: f32) -> u32 {
    ((side as f32 / factor).round() as u32).max(1)
}

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
        ImageFormat::Png | ImageFormat::WebP => {
            rgb8_or_rgba8(image).write_to(&mut out, format.codec())?;
        }
    }
    Ok(out.into_inner())
}

/// Obscures and re-encodes at `size`: the body of a `rewrite` response.
pub fn rewrite(
    image: &DynamicImage,
    size: (u32, u32),
    format: ImageFormat,
    style: RewriteStyle,
) -> Result<Vec<u8>> {
    let obscured = obscure(image, size, style).context("obscuring the image")?;
    encode(&obscured, format).context("re-encoding the rewritten image")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{decode, DecodeLimits};
    use image::{GenericImageView, Rgba, RgbaImage};

    fn checkerboard(width: u32, height: u32) -> DynamicImage {
        DynamicImage::ImageRgba8(RgbaImage::from_fn(width, height, |x, y| {
            let on = (x / 8 + y / 8) % 2 == 0;
            Rgba(if on {
                [255, 255, 255, 200]
            } else {
                [0, 0, 0, 200]
            })
        }))
    }

    fn spread(image: &DynamicImage) -> u8 {
        let values: Vec<u8> = image.to_luma8().into_raw();
        values.iter().max().unwrap() - values.iter().min().unwrap()
    }

    #[test]
    fn both_methods_obscure_detail_and_keep_size() {
        let original = checkerboard(160, 120);
        for method in [RewriteMethod::Blur, RewriteMethod::Pixelate] {
            let out = obscure(
                &original,
                (160, 120),
                RewriteStyle {
                    method,
                    strength: 0.2,
                },
            )
            .unwrap();
            assert_eq!(out.dimensions(), (160, 120));
            assert!(
                spread(&out) < spread(&original),
                "{method:?} left full contrast"
            );
        }
    }

    #[test]
    fn a_reduced_source_is_obscured_at_the_original_size() {
        let reduced = checkerboard(100, 75);
        for method in [RewriteMethod::Blur, RewriteMethod::Pixelate] {
            let style = RewriteStyle {
                method,
                strength: 0.05,
            };
            assert_eq!(
                obscure(&reduced, (800, 600), style).unwrap().dimensions(),
                (800, 600)
            );
        }
    }

    #[test]
    fn rewrite_round_trips_in_every_format_with_alpha_where_possible() {
        let original = checkerboard(64, 48);
        let limits = DecodeLimits {
            max_pixels: 1 << 20,
            max_dimension: 1024,
            max_canvas_bytes: 1 << 24,
            reduce_jpeg: false,
        };
        for format in [
            ImageFormat::Jpeg,
            ImageFormat::Png,
            ImageFormat::WebP,
            ImageFormat::Gif,
        ] {
            let bytes = rewrite(&original, (64, 48), format, RewriteStyle::default()).unwrap();
            assert_eq!(ImageFormat::sniff(&bytes), Some(format));
            let decoded = decode(&bytes, format, limits).unwrap();
            assert_eq!(decoded.dimensions(), (64, 48));
            let keeps_alpha = matches!(format, ImageFormat::Png | ImageFormat::WebP);
            assert_eq!(
                decoded.color().has_alpha(),
                keeps_alpha || format == ImageFormat::Gif,
                "{format:?}"
            );
        }
    }
}
