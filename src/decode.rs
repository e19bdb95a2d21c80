//! Decodes untrusted image bytes within limits.
//!
//! Dimensions are read from the header and checked before any pixel memory is allocated,
//! so a decompression bomb (a small file that claims a huge canvas) costs nothing; the
//! decoder's own allocation limit backs that up for formats with many frames or chunks.
//!
//! The model reads 224×224 pixels, so [`decode_reduced`] decodes a large JPEG straight to
//! 1/2, 1/4 or 1/8 of its size in the DCT domain, as long as the model still gets at
//! least [`REDUCED_MIN_SIDE`] pixels on each axis: a 12-megapixel photo then costs a
//! fraction of the time and memory of a full decode.

use crate::sniff::ImageFormat;
use image::{ColorType, DynamicImage, GrayImage, ImageDecoder, ImageError, ImageReader, RgbImage};
use std::io::Cursor;

/// Bounds on what we agree to decode.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DecodeLimits {
    pub max_pixels: u64,
    pub max_dimension: u32,
    /// Largest decoded buffer (width × height × bytes per pixel).
    pub max_canvas_bytes: u64,
    /// Whether [`decode_reduced`] may decode a JPEG reduced.
    pub reduce_jpeg: bool,
}

/// What one decoded canvas may take on Fastly Compute: the instance has 128 MB of memory,
/// the pre-initialised model and its working memory already live there, and an allocation
/// that does not fit aborts the instance (a 500). Measured under Viceroy: a 36 MB canvas
/// (4000×3000 RGB) decodes and classifies; 48 MB (4000×4000 RGB) does not fit.
pub const COMPUTE_CANVAS_BUDGET: u64 = 36_000_000;

/// Why an image could not be decoded; each maps to a different policy outcome.
#[derive(Debug, PartialEq)]
pub enum DecodeError {
    /// The header declares a canvas beyond the limits.
    TooLarge { width: u32, height: u32 },
    /// The bytes start like an image but are damaged, truncated or hostile.
    Corrupt(String),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::TooLarge { width, height } => {
                write!(f, "image is {width}x{height}, beyond the pixel limit")
            }
            DecodeError::Corrupt(why) => write!(f, "corrupt image: {why}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// The fewest pixels a reduced decode leaves on each axis (where the image has them).
/// A reduced decode averages pixels where nsfwjs's resize samples them, and the model
/// notices: on the fidelity set enlarged to photo size (`tests/fidelity.rs`), leaving
/// 224 pixels moved a class probability by up to 0.35; leaving 384 or 448 by up to 0.24,
/// with the top class kept on 26 of 27 images. 384 lets the most common web size, a
/// 1024×768 photo, decode at half size (512×384). Policies that need nsfwjs's exact scores
/// turn it off (`limits.reduced_jpeg_decode`).
pub const REDUCED_MIN_SIDE: u32 = 384;

/// An image decoded for moderation: `image` may be a reduced copy of an image whose real
/// size is `width` × `height`.
pub struct Decoded {
    pub image: DynamicImage,
    pub width: u32,
    pub height: u32,
}

/// Decodes at full size.
pub fn decode(
    bytes: &[u8],
    format: ImageFormat,
    limits: DecodeLimits,
) -> Result<DynamicImage, DecodeError> {
    let decoder = checked_decoder(bytes, format, limits)?;
    within_canvas_budget(decoder.as_ref(), limits)?;
    decode_full(decoder, limits)
}

/// Decodes for moderation: JPEGs large enough are decoded reduced (see the module doc);
/// everything else at full size. The limits apply to the declared size, the memory
/// budget to the canvas actually decoded.
pub fn decode_reduced(
    bytes: &[u8],
    format: ImageFormat,
    limits: DecodeLimits,
) -> Result<Decoded, DecodeError> {
    let decoder = checked_decoder(bytes, format, limits)?;
    let (width, height) = decoder.dimensions();
    let plain_jpeg = matches!(decoder.color_type(), ColorType::L8 | ColorType::Rgb8);
    if format == ImageFormat::Jpeg && plain_jpeg && limits.reduce_jpeg {
        if let Some(image) = decode_jpeg_reduced(bytes, width, height, limits)? {
            return Ok(Decoded {
                image,
                width,
                height,
            });
        }
    }
    within_canvas_budget(decoder.as_ref(), limits)?;
    Ok(Decoded {
        image: decode_full(decoder, limits)?,
        width,
        height,
    })
}

/// The DCT scale (eighths) that still leaves `REDUCED_MIN_SIDE` pixels on each axis.
fn reduced_eighths(width: u32, height: u32) -> u32 {
    let keeps = |side: u32, eighths: u32| side.div_ceil(8 / eighths) >= side.min(REDUCED_MIN_SIDE);
    [1, 2, 4]
        .into_iter()
        .find(|&eighths| keeps(width, eighths) && keeps(height, eighths))
        .unwrap_or(8)
}

/// The reduced decode of a JPEG the full decoder already accepted the header of (8-bit
/// greyscale or YCbCr); None when no reduction applies.
fn decode_jpeg_reduced(
    bytes: &[u8],
    width: u32,
    height: u32,
    limits: DecodeLimits,
) -> Result<Option<DynamicImage>, DecodeError> {
    let eighths = reduced_eighths(width, height);
    if eighths == 8 {
        return Ok(None);
    }
    let corrupt = |e: jpeg_decoder::Error| DecodeError::Corrupt(e.to_string());
    let mut decoder = jpeg_decoder::Decoder::new(Cursor::new(bytes));
    let (reduced_width, reduced_height) = decoder
        .scale(
            width.div_ceil(8 / eighths) as u16,
            height.div_ceil(8 / eighths) as u16,
        )
        .map_err(corrupt)?;
    let (reduced_width, reduced_height) = (u32::from(reduced_width), u32::from(reduced_height));
    let info = decoder
        .info()
        .ok_or_else(|| DecodeError::Corrupt("no JPEG frame".into()))?;
    let channels = match info.pixel_format {
        jpeg_decoder::PixelFormat::L8 => 1,
        jpeg_decoder::PixelFormat::RGB24 => 3,
        _ => return Ok(None),
    };
    let canvas = u64::from(reduced_width) * u64::from(reduced_height) * channels;
    if canvas > limits.max_canvas_bytes {
        return Err(DecodeError::TooLarge { width, height });
    }
    decoder.set_max_decoding_buffer_size(usize::try_from(canvas).unwrap_or(usize::MAX));
    let pixels = decoder.decode().map_err(corrupt)?;
    let image = match channels {
        1 => GrayImage::from_raw(reduced_width, reduced_height, pixels).map(DynamicImage::from),
        _ => RgbImage::from_raw(reduced_width, reduced_height, pixels).map(DynamicImage::from),
    };
    image
        .map(Some)
        .ok_or_else(|| DecodeError::Corrupt("JPEG decoded to fewer pixels than declared".into()))
}

/// The format's decoder, after the checks on the declared size (the memory budget is
/// checked by the caller, against the canvas it will actually decode).
fn checked_decoder(
    bytes: &[u8],
    format: ImageFormat,
    limits: DecodeLimits,
) -> Result<Box<dyn ImageDecoder + '_>, DecodeError> {
    if format == ImageFormat::Jpeg && !jpeg_is_complete(bytes) {
        // The JPEG decoder fills a missing tail with grey rather than failing; a cut-off
        // file is still damaged goods, and gets the policy's outcome for those.
        return Err(DecodeError::Corrupt(
            "JPEG is truncated (no end-of-image marker after its scan)".into(),
        ));
    }
    let decoder = ImageReader::with_format(Cursor::new(bytes), format.codec())
        .into_decoder()
        .map_err(|e| DecodeError::Corrupt(e.to_string()))?;
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

fn within_canvas_budget(
    decoder: &dyn ImageDecoder,
    limits: DecodeLimits,
) -> Result<(), DecodeError> {
    if decoder.total_bytes() > limits.max_canvas_bytes {
        let (width, height) = decoder.dimensions();
        return Err(DecodeError::TooLarge { width, height });
    }
    Ok(())
}

fn decode_full(
    mut decoder: Box<dyn ImageDecoder + '_>,
    limits: DecodeLimits,
) -> Result<DynamicImage, DecodeError> {
    let (width, height) = decoder.dimensions();
    let corrupt = |e: ImageError| DecodeError::Corrupt(e.to_string());
    let mut codec_limits = image::Limits::default();
    codec_limits.max_image_width = Some(limits.max_dimension);
    codec_limits.max_image_height = Some(limits.max_dimension);
    // Room for the largest allowed canvas at 16-bit RGBA, plus decoder working memory.
    codec_limits.max_alloc = Some(limits.max_pixels.saturating_mul(8).saturating_add(16 << 20));
    decoder
        .set_limits(codec_limits)
        .map_err(|_| DecodeError::TooLarge { width, height })?;
    DynamicImage::from_decoder(decoder).map_err(|e| match e {
        ImageError::Limits(_) => DecodeError::TooLarge { width, height },
        other => corrupt(other),
    })
}

/// Whether an end-of-image marker follows the image's first scan. The header segments
/// are walked by their lengths (so an EXIF thumbnail, which has its own scan and end
/// marker, is skipped); inside scan data every 0xFF is byte-stuffed, so FF D9 there can
/// only be the real marker. Data appended after the image (camera trailers, motion
/// photos) is allowed.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    const START_OF_SCAN: u8 = 0xDA;
    const END_OF_IMAGE: [u8; 2] = [0xFF, 0xD9];
    let mut at = 2; // past the start-of-image marker
    while let [0xFF, marker, high, low, ..] = bytes[at.min(bytes.len())..] {
        if marker == 0xFF {
            at += 1; // fill byte
            continue;
        }
        let segment_end = at + 2 + usize::from(u16::from_be_bytes([high, low]));
        if marker == START_OF_SCAN {
            return bytes
                .get(segment_end..)
                .is_some_and(|scan| scan.windows(2).any(|pair| pair == END_OF_IMAGE));
        }
        at = segment_end;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GenericImageView, Rgb, RgbImage};

    const LIMITS: DecodeLimits = DecodeLimits {
        max_pixels: 1_000_000,
        max_dimension: 4096,
        max_canvas_bytes: 4_000_000,
        reduce_jpeg: true,
    };

    fn encoded(format: ImageFormat, width: u32, height: u32) -> Vec<u8> {
        let image = RgbImage::from_fn(width, height, |x, y| Rgb([x as u8, y as u8, 128]));
        let mut out = Cursor::new(Vec::new());
        DynamicImage::ImageRgb8(image)
            .write_to(&mut out, format.codec())
            .unwrap();
        out.into_inner()
    }

    #[test]
    fn decodes_every_supported_format() {
        for format in [
            ImageFormat::Jpeg,
            ImageFormat::Png,
            ImageFormat::WebP,
            ImageFormat::Gif,
        ] {
            let image = decode(&encoded(format, 40, 30), format, LIMITS).unwrap();
            assert_eq!((image.width(), image.height()), (40, 30), "{format:?}");
        }
    }

    #[test]
    fn large_jpegs_decode_reduced_to_at_least_the_minimum_side() {
        let limits = DecodeLimits {
            max_pixels: 10_000_000,
            ..LIMITS
        };
        let bytes = encoded(ImageFormat::Jpeg, 2000, 1500);
        let reduced = decode_reduced(&bytes, ImageFormat::Jpeg, limits).unwrap();
        assert_eq!((reduced.width, reduced.height), (2000, 1500));
        assert_eq!(reduced.image.dimensions(), (1000, 750));
        assert!(reduced.image.height() >= REDUCED_MIN_SIDE);
        let exact = DecodeLimits {
            reduce_jpeg: false,
            max_canvas_bytes: 10_000_000,
            ..limits
        };
        let full = decode_reduced(&bytes, ImageFormat::Jpeg, exact).unwrap();
        assert_eq!(full.image.dimensions(), (2000, 1500));
        // The memory budget applies to the reduced canvas, not the declared one.
        assert_eq!(
            decode_reduced(&bytes, ImageFormat::Jpeg, exact_budget(3_000_000))
                .unwrap()
                .image
                .width(),
            1000
        );
        let small = decode_reduced(
            &encoded(ImageFormat::Jpeg, 600, 400),
            ImageFormat::Jpeg,
            limits,
        );
        assert_eq!(small.unwrap().image.dimensions(), (600, 400));
    }

    fn exact_budget(bytes: u64) -> DecodeLimits {
        DecodeLimits {
            max_pixels: 10_000_000,
            max_canvas_bytes: bytes,
            ..LIMITS
        }
    }

    #[test]
    fn damaged_scan_data_never_panics_the_reduced_decoder() {
        let limits = exact_budget(u64::MAX);
        let original = encoded(ImageFormat::Jpeg, 1200, 900);
        let scan_start = original.len() / 4;
        for seed in 0..200usize {
            let mut bytes = original.clone();
            for k in 0..8 {
                let at = scan_start + (seed * 7919 + k * 104729) % (bytes.len() - scan_start - 2);
                bytes[at] ^= 1 << ((seed + k) % 8);
            }
            // Any outcome but a panic: decoded, or an error the policy maps.
            let _ = decode_reduced(&bytes, ImageFormat::Jpeg, limits);
        }
    }

    #[test]
    fn truncated_image_is_corrupt() {
        for format in [
            ImageFormat::Jpeg,
            ImageFormat::Png,
            ImageFormat::WebP,
            ImageFormat::Gif,
        ] {
            let bytes = encoded(format, 64, 64);
            let result = decode(&bytes[..bytes.len() / 2], format, LIMITS);
            assert!(
                matches!(result, Err(DecodeError::Corrupt(_))),
                "{format:?}: {result:?}"
            );
        }
    }

    #[test]
    fn truncated_photo_jpeg_is_corrupt_although_the_codec_would_accept_it() {
        let photo = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/demo/site/astronaut.jpg"
        ))
        .unwrap();
        assert!(decode(&photo, ImageFormat::Jpeg, LIMITS).is_ok());
        let cut = &photo[..photo.len() * 3 / 4];
        assert!(matches!(
            decode(cut, ImageFormat::Jpeg, LIMITS),
            Err(DecodeError::Corrupt(_))
        ));
    }

    #[test]
    fn data_appended_after_a_complete_jpeg_is_accepted() {
        let mut bytes = encoded(ImageFormat::Jpeg, 64, 64);
        bytes.extend_from_slice(b"trailer appended by a camera \xFF\xDA\x00\x08");
        assert!(decode(&bytes, ImageFormat::Jpeg, LIMITS).is_ok());
    }

    #[test]
    fn garbage_after_a_signature_is_corrupt() {
        let result = decode(
            b"\xFF\xD8\xFF\xE0 not really a jpeg",
            ImageFormat::Jpeg,
            LIMITS,
        );
        assert!(matches!(result, Err(DecodeError::Corrupt(_))));
    }

    #[test]
    fn header_declaring_a_huge_canvas_is_refused_before_decoding() {
        // A valid PNG of 1x1, with the IHDR patched to claim 60000x60000.
        let mut bytes = encoded(ImageFormat::Png, 1, 1);
        bytes[16..20].copy_from_slice(&60000u32.to_be_bytes());
        bytes[20..24].copy_from_slice(&60000u32.to_be_bytes());
        let result = decode(&bytes, ImageFormat::Png, LIMITS);
        assert!(
            matches!(
                result,
                Err(DecodeError::TooLarge {
                    width: 60000,
                    height: 60000
                }) | Err(DecodeError::Corrupt(_))
            ),
            "{result:?}"
        );
        let within_pixels_beyond_memory = DecodeLimits {
            max_canvas_bytes: 30_000,
            ..LIMITS
        };
        let result = decode(
            &encoded(ImageFormat::Png, 100, 101),
            ImageFormat::Png,
            within_pixels_beyond_memory,
        );
        assert_eq!(
            result.unwrap_err(),
            DecodeError::TooLarge {
                width: 100,
                height: 101
            }
        );
        let honest_but_large = decode(
            &encoded(ImageFormat::Png, 1001, 1000),
            ImageFormat::Png,
            LIMITS,
        );
        assert_eq!(
            honest_but_large.unwrap_err(),
            DecodeError::TooLarge {
                width: 1001,
                height: 1000
            }
        );
    }
}
