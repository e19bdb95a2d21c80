//! nsfwjs's preprocessing, exactly: take the RGB channels (alpha is dropped, as
//! `tf.browser.fromPixels` does), divide by 255, resize to 224×224 with TensorFlow's
//! bilinear `align_corners = true` sampling (no crop, no mean/std), as an NHWC f32 tensor.
//!
//! The tensor is written 225×225, with a zero row below and a zero column to the right:
//! the model's first convolution pads those (TensorFlow's `SAME` padding at stride 2), and
//! written here once they spare tract a padded copy of the whole input in every inference
//! (the convolution then pads nothing, [`super::graph`]).

use image::DynamicImage;
use std::borrow::Cow;
use tract_onnx::prelude::*;

/// Side of the square image the model reads.
pub const INPUT_SIDE: usize = 224;

/// Side of the tensor [`preprocess`] writes: the image plus the padding row and column.
pub const TENSOR_SIDE: usize = INPUT_SIDE + 1;

/// What a transparent image is shown over. nsfwjs drops alpha (`None`), which is what
/// the model saw in training; a browser composites the image over the page, so an image
/// whose picture lives in its alpha channel is judged over both extremes a page can have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backdrop {
    White,
    Black,
}

impl Backdrop {
    pub fn name(self) -> &'static str {
        match self {
            Backdrop::White => "white",
            Backdrop::Black => "black",
        }
    }

    fn value(self) -> f32 {
        match self {
            Backdrop::White => 1.0,
            Backdrop::Black => 0.0,
        }
    }
}

/// The share of the pixels the model samples (the 224×224 bilinear neighbours) that are
/// not opaque: 0 for images without alpha.
pub fn transparency(image: &DynamicImage) -> f32 {
    let (pixels, channels) = interleaved(image);
    if channels != 2 && channels != 4 {
        return 0.0;
    }
    let stride = image.width() as usize * channels;
    let rows = axis_samples(image.height() as usize, INPUT_SIDE);
    let cols = axis_samples(image.width() as usize, INPUT_SIDE);
    let alpha = |y: usize, x: usize| pixels[y * stride + x * channels + channels - 1];
    let mut translucent = 0usize;
    for row in &rows {
        for col in &cols {
            let corners = [
                alpha(row.low, col.low),
                alpha(row.low, col.high),
                alpha(row.high, col.low),
                alpha(row.high, col.high),
            ];
            translucent += corners.iter().filter(|&&a| a < 255).count();
        }
    }
    translucent as f32 / (rows.len() * cols.len() * 4) as f32
}

/// nsfwjs's preprocessing: RGB / 255, then bilinear resize with `align_corners = true`,
/// into a `[1, TENSOR_SIDE, TENSOR_SIDE, 3]` tensor whose last row and column are zero.
pub fn preprocess(image: &DynamicImage) -> Tensor {
    preprocess_over(image, None)
}

/// [`preprocess`] of the image as shown over `backdrop` (alpha composited, as a browser
/// does, at each sampled pixel: compositing and bilinear interpolation are both linear,
/// so this equals resizing the composited image). `None` drops alpha, as nsfwjs does.
pub fn preprocess_over(image: &DynamicImage, backdrop: Option<Backdrop>) -> Tensor {
    let rows = axis_samples(image.height() as usize, INPUT_SIDE);
    let cols = axis_samples(image.width() as usize, INPUT_SIDE);
    resample(image, &rows, &cols, backdrop)
}

/// The rows (or columns) of an axis of `input` pixels that nsfwjs's resize reads: sorted,
/// distinct, at most 2 × 224. A decoder that produces only these ([`Gathered`]) gives the
/// model exactly what a full decode would.
pub fn read_positions(input: usize) -> Vec<u32> {
    let mut positions: Vec<u32> = axis_samples(input.max(1), INPUT_SIDE)
        .iter()
        .flat_map(|s| [s.low as u32, s.high as u32])
        .collect();
    positions.sort_unstable();
    positions.dedup();
    positions
}

/// The pixels nsfwjs's resize reads from an image of `width` × `height`, gathered:
/// `image` holds the image's rows `rows` and columns `columns` ([`read_positions`] of
/// each axis), in order, and nothing else.
pub struct Gathered {
    pub image: DynamicImage,
    pub width: u32,
    pub height: u32,
    pub rows: Vec<u32>,
    pub columns: Vec<u32>,
}

/// [`preprocess`] of the whole image, computed from the pixels gathered from it: the
/// same samples, the same arithmetic, so the same tensor.
pub fn preprocess_gathered(gathered: &Gathered) -> Tensor {
    let local = |samples: Vec<Sample>, positions: &[u32]| -> Vec<Sample> {
        let at = |p: usize| positions.partition_point(|&q| (q as usize) < p);
        samples
            .into_iter()
            .map(|s| Sample {
                low: at(s.low),
                high: at(s.high),
                fraction: s.fraction,
            })
            .collect()
    };
    let rows = local(
        axis_samples(gathered.height as usize, INPUT_SIDE),
        &gathered.rows,
    );
    let cols = local(
        axis_samples(gathered.width as usize, INPUT_SIDE),
        &gathered.columns,
    );
    resample(&gathered.image, &rows, &cols, None)
}

/// The bilinear resize at the given samples, over `backdrop` where the image has alpha.
fn resample(
    image: &DynamicImage,
    rows: &[Sample],
    cols: &[Sample],
    backdrop: Option<Backdrop>,
) -> Tensor {
    let (pixels, channels) = interleaved(image);
    let composite = backdrop.filter(|_| channels == 2 || channels == 4);
    let background = composite.map_or(0.0, Backdrop::value);
    let stride = image.width() as usize * channels;
    // Grey images repeat their one value in R, G and B, as fromPixels does.
    let offsets: [usize; 3] = if channels >= 3 { [0, 1, 2] } else { [0; 3] };
    // The exact `value / 255.0` of every byte, computed once instead of four times per sample.
    let normalised: [f32; 256] = std::array::from_fn(|v| v as f32 / 255.0);
    let mut data = Vec::with_capacity(TENSOR_SIDE * TENSOR_SIDE * 3);
    for row in rows {
        let top = &pixels[row.low * stride..][..stride];
        let bottom = &pixels[row.high * stride..][..stride];
        for col in cols {
            let (left, right) = (col.low * channels, col.high * channels);
            for offset in offsets {
                let at = |line: &[u8], x: usize| {
                    let value = normalised[usize::from(line[x + offset])];
                    match composite {
                        None => value,
                        Some(_) => {
                            let alpha = normalised[usize::from(line[x + channels - 1])];
                            value * alpha + background * (1.0 - alpha)
                        }
                    }
                };
                let upper = at(top, left) + (at(top, right) - at(top, left)) * col.fraction;
                let lower =
                    at(bottom, left) + (at(bottom, right) - at(bottom, left)) * col.fraction;
                data.push(upper + (lower - upper) * row.fraction);
            }
        }
        data.extend([0.0; 3]);
    }
    data.resize(TENSOR_SIDE * TENSOR_SIDE * 3, 0.0);
    Tensor::from_shape(&[1, TENSOR_SIDE, TENSOR_SIDE, 3], &data).expect("shape matches data length")
}

/// Where one output row (or column) samples the input, as TensorFlow computes it for
/// `resize_bilinear(align_corners = true, half_pixel_centers = false)`.
struct Sample {
    low: usize,
    high: usize,
    fraction: f32,
}

fn axis_samples(input: usize, output: usize) -> Vec<Sample> {
    let ratio = if output > 1 {
        (input - 1) as f32 / (output - 1) as f32
    } else {
        0.0
    };
    (0..output)
        .map(|i| {
            let source = ratio * i as f32;
            let low = source.floor() as usize;
            Sample {
                low,
                high: (source.ceil() as usize).min(input - 1),
                fraction: source - low as f32,
            }
        })
        .collect()
}

/// The image's 8-bit interleaved samples and how many channels each pixel has, borrowed
/// for the layouts decoders produce and converted to RGB for the rest.
fn interleaved(image: &DynamicImage) -> (Cow<'_, [u8]>, usize) {
    match image {
        DynamicImage::ImageRgb8(buffer) => (Cow::Borrowed(buffer.as_raw()), 3),
        DynamicImage::ImageRgba8(buffer) => (Cow::Borrowed(buffer.as_raw()), 4),
        DynamicImage::ImageLuma8(buffer) => (Cow::Borrowed(buffer.as_raw()), 1),
        DynamicImage::ImageLumaA8(buffer) => (Cow::Borrowed(buffer.as_raw()), 2),
        other => (Cow::Owned(other.to_rgb8().into_raw()), 3),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgb, RgbImage};

    #[test]
    fn gathered_pixels_give_the_same_tensor_as_the_whole_image() {
        for (width, height) in [(1000, 700), (224, 224), (100, 3), (1, 500)] {
            let image = RgbImage::from_fn(width, height, |x, y| {
                Rgb([(x * 7 + y) as u8, (x ^ y) as u8, (y * 3) as u8])
            });
            let rows = read_positions(height as usize);
            let columns = read_positions(width as usize);
            assert!(rows.windows(2).all(|w| w[0] < w[1]));
            let gathered = RgbImage::from_fn(columns.len() as u32, rows.len() as u32, |x, y| {
                *image.get_pixel(columns[x as usize], rows[y as usize])
            });
            let gathered = Gathered {
                image: DynamicImage::ImageRgb8(gathered),
                width,
                height,
                rows,
                columns,
            };
            let whole = preprocess(&DynamicImage::ImageRgb8(image));
            assert_eq!(preprocess_gathered(&gathered), whole, "{width}x{height}");
        }
    }

    #[test]
    fn model_sized_input_is_only_normalised() {
        let image = RgbImage::from_fn(224, 224, |x, y| Rgb([x as u8, y as u8, 7]));
        let tensor = preprocess(&DynamicImage::ImageRgb8(image));
        let view = tensor.to_plain_array_view::<f32>().unwrap();
        assert_eq!(view[[0, 10, 200, 0]], 200.0 / 255.0);
        assert_eq!(view[[0, 10, 200, 1]], 10.0 / 255.0);
        assert_eq!(view[[0, 10, 200, 2]], 7.0 / 255.0);
    }

    #[test]
    fn align_corners_keeps_the_corner_pixels() {
        let image = RgbImage::from_fn(1000, 30, |x, y| Rgb([(x % 256) as u8, y as u8, 0]));
        let tensor = preprocess(&DynamicImage::ImageRgb8(image));
        let view = tensor.to_plain_array_view::<f32>().unwrap();
        assert_eq!(view[[0, 0, 0, 0]], 0.0);
        assert_eq!(view[[0, 223, 223, 0]], (999 % 256) as f32 / 255.0);
        assert_eq!(view[[0, 223, 223, 1]], 29.0 / 255.0);
    }

    #[test]
    fn transparent_pixels_show_the_backdrop() {
        use image::{Rgba, RgbaImage};
        // Black ink whose picture is in the alpha channel: a ramp from clear to opaque.
        let image = DynamicImage::ImageRgba8(RgbaImage::from_fn(224, 224, |x, _| {
            Rgba([0, 0, 0, x as u8])
        }));
        assert!(transparency(&image) > 0.99);
        let dropped = preprocess(&image);
        let on_white = preprocess_over(&image, Some(Backdrop::White));
        let on_black = preprocess_over(&image, Some(Backdrop::Black));
        let at = |t: &Tensor, x: usize| t.to_plain_array_view::<f32>().unwrap()[[0, 5, x, 0]];
        // The model alone sees black everywhere; a white page shows the ramp.
        assert_eq!(at(&dropped, 200), 0.0);
        assert_eq!(at(&on_black, 200), 0.0);
        assert!((at(&on_white, 0) - 1.0).abs() < 1e-6);
        assert!((at(&on_white, 200) - (1.0 - 200.0 / 255.0)).abs() < 1e-6);
        let opaque = DynamicImage::ImageRgba8(RgbaImage::from_pixel(50, 50, Rgba([9, 9, 9, 255])));
        assert_eq!(transparency(&opaque), 0.0);
        assert_eq!(
            preprocess_over(&opaque, Some(Backdrop::White)),
            preprocess(&opaque)
        );
        let rgb = DynamicImage::ImageRgb8(RgbImage::from_pixel(50, 50, Rgb([1, 2, 3])));
        assert_eq!(transparency(&rgb), 0.0);
    }

    #[test]
    fn upsamples_a_single_pixel_everywhere() {
        let image = RgbImage::from_pixel(1, 1, Rgb([255, 0, 51]));
        let tensor = preprocess(&DynamicImage::ImageRgb8(image));
        let view = tensor.to_plain_array_view::<f32>().unwrap();
        assert_eq!(view[[0, 111, 37, 0]], 1.0);
        assert_eq!(view[[0, 111, 37, 2]], 0.2);
    }
}
