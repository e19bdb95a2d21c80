//! Decodes untrusted image bytes within limits.
//!
//! Dimensions are read from the header and checked before any pixel memory is allocated,
//! so a decompression bomb (a small file that claims a huge canvas) costs nothing; the
//! decoder's own allocation limit backs that up for formats with many frames or chunks.

use crate::sniff::ImageFormat;
use image::{DynamicImage, ImageDecoder, ImageError, ImageReader};
use std::io::Cursor;

/// Bounds on what we agree to decode.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DecodeLimits {
    pub max_pixels: u64,
    pub max_dimension: u32,
    /// Largest decoded buffer (width × height × bytes per pixel).
    pub max_canvas_bytes: u64,
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

pub fn decode(
    bytes: &[u8],
    format: ImageFormat,
    limits: DecodeLimits,
) -> Result<DynamicImage, DecodeError> {
    if format == ImageFormat::Jpeg && !jpeg_is_complete(bytes) {
        // The JPEG decoder fills a missing tail with grey rather than failing; a cut-off
        // file is still damaged goods, and gets the policy's outcome for those.
        return Err(DecodeError::Corrupt(
            "JPEG is truncated (no end-of-image marker after its scan)".into(),
        ));
    }
    let corrupt = |e: ImageError| DecodeError::Corrupt(e.to_string());
    let mut decoder = ImageReader::with_format(Cursor::new(bytes), format.codec())
        .into_decoder()
        .map_err(corrupt)?;
    let (width, height) = decoder.dimensions();
    if width == 0 || height == 0 {
        return Err(DecodeError::Corrupt(format!("image is {width}x{height}")));
    }
    if u64::from(width) * u64::from(height) > limits.max_pixels
        || width.max(height) > limits.max_dimension
    {
        return Err(DecodeError::TooLarge { width, height });
    }
    if decoder.total_bytes() > limits.max_canvas_bytes {
        return Err(DecodeError::TooLarge { width, height });
    }
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
    use image::{Rgb, RgbImage};

    const LIMITS: DecodeLimits = DecodeLimits {
        max_pixels: 1_000_000,
        max_dimension: 4096,
        max_canvas_bytes: 4_000_000,
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
