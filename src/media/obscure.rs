//! Obscures an image: blurred or pixelated, same dimensions. Owns the rewrite style the
//! operator's policy chooses ([`RewriteStyle`]).
//!
//! Strength is relative to the shorter side so a thumbnail and a poster look equally
//! obscured. Both methods work on a reduced copy and scale back up, which keeps the cost
//! independent of the blur radius. Scaling uses `fast_image_resize`, whose Wasm SIMD
//! kernels keep a full-size rewrite within the CPU budget a request has left after
//! classification.

use anyhow::{Context, Result};
use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions, Resizer};
use image::DynamicImage;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// How a rewrite obscures an image (policy field `rewrite`).
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RewriteStyle {
    pub method: RewriteMethod,
    /// Blur radius (sigma) or pixel-cell size, as a fraction of the image's shorter side.
    pub strength: f32,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RewriteMethod {
    Blur,
    Pixelate,
}

impl Default for RewriteStyle {
    /// A heavy blur: sigma 5% of the shorter side.
    fn default() -> Self {
        RewriteStyle {
            method: RewriteMethod::Blur,
            strength: 0.05,
        }
    }
}

/// Blur works at a scale where the requested radius is this many pixels.
const BLUR_WORKING_SIGMA: f32 = 2.0;

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
pub(crate) fn rgb8_or_rgba8(image: &DynamicImage) -> Cow<'_, DynamicImage> {
    match image {
        DynamicImage::ImageRgb8(_) | DynamicImage::ImageRgba8(_) => Cow::Borrowed(image),
        other if other.color().has_alpha() => {
            Cow::Owned(DynamicImage::ImageRgba8(other.to_rgba8()))
        }
        other => Cow::Owned(DynamicImage::ImageRgb8(other.to_rgb8())),
    }
}

/// `image` scaled to `width` × `height` (bilinear), as 8-bit RGB or RGBA.
pub(crate) fn resize_smoothly(
    image: &DynamicImage,
    width: u32,
    height: u32,
) -> Result<DynamicImage> {
    let smooth = ResizeAlg::Convolution(FilterType::Bilinear);
    resize(&rgb8_or_rgba8(image), width, height, smooth)
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use image::{GenericImageView, Rgba, RgbaImage};

    pub(crate) fn checkerboard(width: u32, height: u32) -> DynamicImage {
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
}
