//! Decodes untrusted image bytes within limits: one file per codec family, this file the
//! entry points, the limits and the errors.
//!
//! Dimensions are read from the header and checked before any pixel memory is allocated,
//! so a decompression bomb (a small file that claims a huge canvas) costs nothing; the
//! decoder's own allocation limit backs that up for formats with many frames or chunks.
//!
//! The model reads 224×224 pixels, so [`decode_reduced`] decodes a large JPEG straight to
//! 1/2, 1/4 or 1/8 of its size in the DCT domain ([`jpeg`]), as long as the model still
//! gets at least [`REDUCED_MIN_SIDE`] pixels on each axis: a 12-megapixel photo then costs
//! a fraction of the time and memory of a full decode.

mod avif;
mod codec;
pub mod colour;
mod jpeg;
mod jxl;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd;

/// A deterministic stream of 64-bit values (xorshift), for the decoders' tests.
#[cfg(test)]
pub(crate) fn test_noise(mut seed: u64) -> impl FnMut() -> u64 {
    move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    }
}

use jpeg::Gather;

use super::format::ImageFormat;
use crate::classifier::preprocess::Gathered;
use image::metadata::Orientation;
use image::{ColorType, DynamicImage};

pub use avif::declared_avif_size;
pub use jpeg::REDUCED_MIN_SIDE;
pub use jxl::declared_jxl_size;
pub use jxl::parts as jxl_parts;

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

impl DecodeLimits {
    /// Whether a canvas of `width`×`height` decoded to RGBA fits: its pixels, its longer
    /// side, its bytes at 4 per pixel; `TooLarge` otherwise.
    pub fn check_rgba(self, width: u32, height: u32) -> Result<(), DecodeError> {
        let pixels = u64::from(width) * u64::from(height);
        if pixels > self.max_pixels
            || width.max(height) > self.max_dimension
            || pixels * 4 > self.max_canvas_bytes
        {
            return Err(DecodeError::TooLarge { width, height });
        }
        Ok(())
    }
}

/// Why an image could not be decoded. The caller decides per case: the policy has one
/// outcome for images beyond its limits and one for images it cannot read.
#[derive(Debug, PartialEq)]
pub enum DecodeError {
    /// The header declares a canvas beyond the limits.
    TooLarge { width: u32, height: u32 },
    /// The bytes start like an image but are damaged, truncated or hostile.
    Corrupt(String),
    /// A valid image using a feature the decoder does not implement.
    Unsupported(String),
    /// An animation with more frames than can be inspected (`read` were).
    TooManyFrames { read: usize },
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::TooLarge { width, height } => {
                write!(f, "image is {width}x{height}, beyond the pixel limit")
            }
            DecodeError::Corrupt(why) => write!(f, "corrupt image: {why}"),
            DecodeError::Unsupported(why) => write!(f, "unsupported image: {why}"),
            DecodeError::TooManyFrames { read } => {
                write!(f, "animation has more frames than the {read} inspected")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// An image decoded for moderation: `image` may be a reduced copy of an image whose real
/// size is `width` × `height`; `gathered`, when present, holds the exact pixels the
/// model's resize reads from the full-size image (JPEG), and the model reads those.
pub struct Decoded {
    pub image: DynamicImage,
    pub width: u32,
    pub height: u32,
    pub gathered: Option<Gathered>,
    /// The image as a browser that reads the file's colours otherwise shows it, where one
    /// does: both renderings are judged.
    pub also_shown: Option<AlsoShown>,
}

/// A second rendering of an image: `image` as the browser `by` shows it (a BMP's
/// calibrated RGB, which Firefox applies and Chromium ignores; an AVIF's YUV matrix or a
/// PNG's `cICP` transfer where Firefox reads it otherwise).
pub struct AlsoShown {
    pub by: &'static str,
    pub image: DynamicImage,
}

/// Decodes at full size.
pub fn decode(
    bytes: &[u8],
    format: ImageFormat,
    limits: DecodeLimits,
) -> Result<DynamicImage, DecodeError> {
    let decoder = codec::checked_decoder(bytes, format, limits)?;
    codec::within_canvas_budget(decoder.as_ref(), limits)?;
    codec::decode_full(decoder, limits)
}

/// Decodes for moderation: JPEGs large enough are decoded reduced (see the module doc);
/// everything else at full size. The limits apply to the declared size, the memory
/// budget to the canvas actually decoded.
///
/// The image comes out as a browser shows it: its EXIF orientation (JPEG, PNG `eXIf`,
/// WebP, TIFF) applied, its colours converted to sRGB ([`colour`]), and `width` ×
/// `height` are the displayed size.
pub fn decode_reduced(
    bytes: &[u8],
    format: ImageFormat,
    limits: DecodeLimits,
) -> Result<Decoded, DecodeError> {
    match decode_resumable(bytes, format, limits, None, &mut |_| false)? {
        Decoding::Done(decoded) => Ok(decoded),
        Decoding::Suspended { .. } => Err(DecodeError::Corrupt("stopped unasked".into())),
    }
}

/// The limits the frame readers' tests share (GIF, icon, animation frames).
#[cfg(test)]
pub(crate) const FRAME_TEST_LIMITS: DecodeLimits = DecodeLimits {
    max_pixels: 1_000_000,
    max_dimension: 4096,
    max_canvas_bytes: 40_000_000,
    reduce_jpeg: true,
};

/// The bytes of `image` a decode (or a GIF's reading) resumed from `state` never reads,
/// which a resumed job leaves out.
pub fn unread_span(image: &[u8], state: &[u8]) -> Option<std::ops::Range<usize>> {
    match super::frames::is_state(state) {
        true => super::frames::unread_span(image, state),
        false => jpeg::unread_span(image, state),
    }
}

/// How a decode for moderation ended.
pub enum Decoding {
    Done(Decoded),
    /// A JPEG's sampled decode stopped part-way, as asked: `state` resumes it (in
    /// another instance, with the same bytes).
    Suspended {
        state: Vec<u8>,
    },
}

/// [`decode_reduced`], which may stop a JPEG's decode part-way when `stop` says so
/// (asked between rows of blocks) and resume one `from` the state it left.
pub fn decode_resumable(
    bytes: &[u8],
    format: ImageFormat,
    limits: DecodeLimits,
    from: Option<&[u8]>,
    stop: &mut dyn FnMut(bool) -> bool,
) -> Result<Decoding, DecodeError> {
    // An AVIF may be shown otherwise by Firefox (its YUV matrix): that rendering is
    // oriented and colour-managed below as the first is.
    // A JPEG XL whose regions siblings decoded comes `from` their samples, assembled.
    let assembly =
        from.filter(|state| format == ImageFormat::JpegXl && jxl::parts::is_assembly(state));
    let (mut decoder, mut firefox_avif) = match (format, assembly) {
        (ImageFormat::Avif, _) => {
            let mut avif = avif::AvifDecoder::new(bytes, limits)?;
            let firefox = avif.take_firefox();
            (Box::new(avif) as Box<dyn image::ImageDecoder>, firefox)
        }
        (_, Some(state)) => {
            let assembled = jxl::JxlDecoder::assembled(bytes, limits, state)?;
            (Box::new(assembled) as Box<dyn image::ImageDecoder>, None)
        }
        _ => (codec::checked_decoder(bytes, format, limits)?, None),
    };
    // Unreadable metadata is no reason to refuse the pixels: shown as stored.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let description = colour::description(bytes, format, decoder.as_mut());
    let to_srgb = description.as_ref().and_then(colour::ToSrgb::new);
    // Firefox's reading of the colours, where it differs from Chromium's.
    let firefox_reading = colour::firefox_reading(bytes, format, description.as_ref());
    let (width, height) = decoder.dimensions();
    let plain_jpeg = matches!(decoder.color_type(), ColorType::L8 | ColorType::Rgb8);
    let jpeg = format == ImageFormat::Jpeg && plain_jpeg && limits.reduce_jpeg;
    // A JPEG's model input comes from the sampled decoder where it reads the file; a
    // large one's reduced image from the same pass.
    let gather =
        jpeg.then(|| jpeg::decode_gathered(bytes, (width, height), orientation, from, stop));
    let (mut gathered, mut image) = match gather {
        Some(Ok(Gather::Done(gathered, preview))) => (Some(gathered), preview),
        Some(Ok(Gather::Suspended(state))) => return Ok(Decoding::Suspended { state }),
        // A resumed job's image lacks the data already decoded (the job leaves it out):
        // another decoder would read zeros there, and judge an image without its top.
        _ if from.is_some() && assembly.is_none() => {
            return Err(DecodeError::Corrupt(
                "JPEG not decodable on from where another instance stopped".into(),
            ))
        }
        _ => (None, None),
    };
    if image.is_none() {
        let reduced = if jpeg && gathered.is_none() {
            jpeg::decode_reduced(bytes, width, height, limits)?
        } else {
            None
        };
        let mut decoded = match reduced {
            Some(image) => image,
            None => {
                codec::within_canvas_budget(decoder.as_ref(), limits)?;
                codec::decode_full(decoder, limits)?
            }
        };
        decoded.apply_orientation(orientation);
        image = Some(decoded);
    }
    if let Some(firefox) = firefox_avif.as_mut() {
        firefox.apply_orientation(orientation);
    }
    let mut image = image.ok_or_else(|| DecodeError::Corrupt("nothing decoded".into()))?;
    // Firefox's other rendering: an AVIF's under another matrix (through the same
    // profile, below), a PNG's under its `cICP` as Firefox reads it, a BMP's through its
    // calibrated RGB (both from the pixels as coded).
    let firefox_read = firefox_reading.map(|reading| match reading {
        Some(conversion) => conversion.apply(image.clone()),
        None => image.clone(),
    });
    if let Some(to_srgb) = &to_srgb {
        image = to_srgb.apply(image);
        if let Some(gathered) = gathered.as_mut() {
            gathered.image = to_srgb.apply(std::mem::take(&mut gathered.image));
        }
    }
    let (width, height) = if jpeg::turns(orientation) {
        (height, width)
    } else {
        (width, height)
    };
    let firefox = match firefox_avif {
        Some(firefox) => Some(match &to_srgb {
            Some(to_srgb) => to_srgb.apply(firefox),
            None => firefox,
        }),
        None => firefox_read,
    };
    let also_shown = firefox.map(|image| AlsoShown {
        by: "Firefox",
        image,
    });
    Ok(Decoding::Done(Decoded {
        image,
        width,
        height,
        gathered,
        also_shown,
    }))
}

#[cfg(test)]
pub(crate) mod tests {
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
        crate::media::encode::encode(&DynamicImage::ImageRgb8(image), format).unwrap()
    }

    /// A 24-bit BMP of `image` with a V5 info header of colour space `space`, and
    /// `profile` after the pixels, where the header says.
    pub(crate) fn bmp_v5(image: &RgbImage, space: u32, profile: &[u8]) -> Vec<u8> {
        let (width, height) = image.dimensions();
        let stride = (width as usize * 3).div_ceil(4) * 4;
        let mut pixels = vec![0u8; stride * height as usize];
        // Bottom-up rows of BGR.
        for (y, row) in pixels.chunks_exact_mut(stride).enumerate() {
            for x in 0..width {
                let [r, g, b] = image.get_pixel(x, height - 1 - y as u32).0;
                row[x as usize * 3..x as usize * 3 + 3].copy_from_slice(&[b, g, r]);
            }
        }
        let at_profile = if profile.is_empty() {
            0
        } else {
            124 + pixels.len()
        };
        let mut info = Vec::new();
        for field in [124, width, height] {
            info.extend_from_slice(&field.to_le_bytes());
        }
        info.extend_from_slice(&1u16.to_le_bytes());
        info.extend_from_slice(&24u16.to_le_bytes());
        for field in [0, pixels.len() as u32, 2835, 2835, 0, 0, 0, 0, 0, 0, space] {
            info.extend_from_slice(&field.to_le_bytes());
        }
        // Endpoints and gammas (unused), the intent, where the profile is, its size.
        info.extend_from_slice(&[0; 48]);
        for field in [4, at_profile as u32, profile.len() as u32, 0] {
            info.extend_from_slice(&field.to_le_bytes());
        }
        assert_eq!(info.len(), 124);
        let size = 14 + info.len() + pixels.len() + profile.len();
        let mut out = b"BM".to_vec();
        out.extend_from_slice(&(size as u32).to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&(14u32 + 124).to_le_bytes());
        [out, info, pixels, profile.to_vec()].concat()
    }

    /// A BMP of `image` whose V5 header is in `LCS_CALIBRATED_RGB`, with `endpoints`
    /// in the first two fields of each primary's (x and y to Firefox) and `gammas`.
    pub(crate) fn bmp_calibrated(
        image: &RgbImage,
        endpoints: [[f64; 2]; 3],
        gammas: [f64; 3],
    ) -> Vec<u8> {
        let mut bytes = bmp_v5(image, 0, &[]);
        let fields = endpoints
            .into_iter()
            .flat_map(|[x, y]| [x * f64::from(1 << 30), y * f64::from(1 << 30), 0.0])
            .chain(gammas.map(|gamma| gamma * 65536.0));
        for (i, field) in fields.enumerate() {
            let at = 14 + 60 + 4 * i;
            bytes[at..at + 4].copy_from_slice(&(field as u32).to_le_bytes());
        }
        bytes
    }

    /// `image` as a quality-95 JPEG, with what `tag` adds to its header (an APP segment, a
    /// profile).
    pub(crate) fn jpeg_tagged(
        image: &RgbImage,
        tag: impl FnOnce(&mut jpeg_encoder::Encoder<&mut Vec<u8>>),
    ) -> Vec<u8> {
        let mut out = Vec::new();
        let mut encoder = jpeg_encoder::Encoder::new(&mut out, 95);
        tag(&mut encoder);
        encoder
            .encode(
                image.as_raw(),
                image.width() as u16,
                image.height() as u16,
                jpeg_encoder::ColorType::Rgb,
            )
            .unwrap();
        out
    }

    /// A JPEG carrying an EXIF orientation (`value`, 1–8) in an APP1 segment.
    pub(crate) fn jpeg_with_orientation(image: &RgbImage, value: u16) -> Vec<u8> {
        let mut exif = b"Exif\0\0MM\0\x2a\0\0\0\x08\0\x01".to_vec();
        // Tag 0x0112 (Orientation), type SHORT, count 1, value, then no next IFD.
        exif.extend_from_slice(&[0x01, 0x12, 0, 3, 0, 0, 0, 1]);
        exif.extend_from_slice(&value.to_be_bytes());
        exif.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        jpeg_tagged(image, |encoder| encoder.add_app_segment(1, exif).unwrap())
    }

    #[test]
    fn a_resumed_jpeg_is_decoded_on_or_refused_never_decoded_another_way() {
        let bytes = encoded(ImageFormat::Jpeg, 300, 200);
        let suspended = decode_resumable(&bytes, ImageFormat::Jpeg, LIMITS, None, &mut |_| true);
        let Ok(Decoding::Suspended { state }) = suspended else {
            panic!("not suspended");
        };
        let resumed =
            decode_resumable(&bytes, ImageFormat::Jpeg, LIMITS, Some(&state), &mut |_| {
                false
            });
        assert!(matches!(resumed, Ok(Decoding::Done(_))));
        // A state the sampled decoder refuses: the image (whose decoded part a job leaves
        // out) goes to no other decoder.
        let mut damaged = state.clone();
        damaged[0] ^= 0xFF;
        let refused = decode_resumable(
            &bytes,
            ImageFormat::Jpeg,
            LIMITS,
            Some(&damaged),
            &mut |_| false,
        );
        assert!(matches!(refused, Err(DecodeError::Corrupt(_))));
    }

    #[test]
    fn images_are_decoded_as_their_orientation_shows_them() {
        // Red on the left, blue on the right, stored 80x40.
        let stored = RgbImage::from_fn(80, 40, |x, _| {
            if x < 40 {
                Rgb([255, 0, 0])
            } else {
                Rgb([0, 0, 255])
            }
        });
        for (value, size, top_left_red) in [
            (1, (80, 40), true),
            (3, (80, 40), false), // rotated 180: blue on the left
            (6, (40, 80), true),  // rotated 90 clockwise: red on top
            (8, (40, 80), false), // rotated 270 clockwise: blue on top
        ] {
            let bytes = jpeg_with_orientation(&stored, value);
            for reduce_jpeg in [false, true] {
                let limits = DecodeLimits {
                    reduce_jpeg,
                    ..LIMITS
                };
                let decoded = decode_reduced(&bytes, ImageFormat::Jpeg, limits).unwrap();
                assert_eq!((decoded.width, decoded.height), size, "orientation {value}");
                let image = decoded.image.to_rgb8();
                assert_eq!(image.dimensions(), size, "orientation {value}");
                let corner = image.get_pixel(2, 2);
                assert_eq!(
                    corner[0] > 128,
                    top_left_red,
                    "orientation {value}: {corner:?}"
                );
            }
        }
    }

    #[test]
    fn decodes_every_supported_format() {
        // AVIF has no encoder here: tested below with a file libavif wrote.
        for format in ImageFormat::ALL
            .into_iter()
            .filter(|f| f.rewritten_as() == *f)
        {
            let image = decode(&encoded(format, 40, 30), format, LIMITS).unwrap();
            assert_eq!((image.width(), image.height()), (40, 30), "{format:?}");
        }
    }

    /// A 400x400 AVIF written by Pillow's libavif (4:2:0, quality 90).
    const AVIF: &[u8] = include_bytes!("../../../tests/fixtures/photo_astronaut.avif");

    #[test]
    fn animated_avif_is_refused_whatever_its_brands_and_stills_decode_under_any() {
        // Pillow's animated AVIF (major brand `avis`): a still item (the first frame, a
        // photo) and a track whose second frame is a drawing. A browser plays the track.
        let animated = include_bytes!("../../../tests/fixtures/animated_photo_then_drawing.avif");
        let refused = |bytes: &[u8]| {
            matches!(
                decode(bytes, ImageFormat::Avif, LIMITS),
                Err(DecodeError::Unsupported(why)) if why.starts_with("animated AVIF")
            ) && declared_avif_size(bytes).is_err()
        };
        assert!(refused(animated));
        // Major brand `miaf` or `avif`: Chromium still plays the track (libavif) of the
        // first, Firefox may of the second; both are refused.
        for major in [b"miaf", b"avif"] {
            let mut rebranded = animated.to_vec();
            rebranded[8..12].copy_from_slice(major);
            assert!(refused(&rebranded), "{major:?}");
        }
        // A still under another major brand, `avif` among its compatible ones, decodes.
        let mut still = AVIF.to_vec();
        still[8..12].copy_from_slice(b"miaf");
        assert_eq!(ImageFormat::sniff(&still), Some(ImageFormat::Avif));
        let image = decode(&still, ImageFormat::Avif, LIMITS).unwrap();
        assert_eq!(
            image.to_rgb8(),
            decode(AVIF, ImageFormat::Avif, LIMITS).unwrap().to_rgb8()
        );
    }

    #[test]
    fn avif_decodes_within_limits_and_damage_is_corrupt() {
        let image = decode(AVIF, ImageFormat::Avif, LIMITS).unwrap();
        assert_eq!((image.width(), image.height()), (400, 400));
        assert_eq!(declared_avif_size(AVIF), Ok((400, 400)));
        assert!(declared_avif_size(&AVIF[..64]).is_err());
        // A 56-byte file whose `ftyp` declares 2.9 GB (the fuzzer's find): refused before
        // mp4parse reserves it.
        let mut huge = AVIF[..56].to_vec();
        huge[..4].copy_from_slice(&0xad00_0020u32.to_be_bytes());
        assert!(matches!(
            declared_avif_size(&huge),
            Err(DecodeError::Corrupt(why)) if why.contains("past the end")
        ));
        // A box inside a container declaring more than its container holds (the fuzzer's
        // second find: an `ipma` of 4.3 GB inside `iprp`), refused likewise.
        let ipma = AVIF.windows(4).position(|w| w == b"ipma").unwrap() - 4;
        let mut nested = AVIF.to_vec();
        nested[ipma..ipma + 4].copy_from_slice(&0xff00_0000u32.to_be_bytes());
        assert!(matches!(
            declared_avif_size(&nested),
            Err(DecodeError::Corrupt(why)) if why.contains("past the end")
        ));
        // A box declaring more entries than its bytes hold (the third find: an `iloc` of 30
        // bytes declaring 218 million items), refused before mp4parse reserves them.
        let iloc = AVIF.windows(4).position(|w| w == b"iloc").unwrap() + 4;
        let mut crowded = AVIF.to_vec();
        assert_eq!(crowded[iloc], 0, "the fixture's iloc is version 0");
        crowded[iloc + 6..iloc + 8].copy_from_slice(&0xffffu16.to_be_bytes());
        assert!(matches!(
            declared_avif_size(&crowded),
            Err(DecodeError::Corrupt(why)) if why.contains("more entries")
        ));
        let corpus = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/avif_container");
        let found = std::fs::read(format!("{corpus}/regression-iloc-218M-items")).unwrap();
        assert!(matches!(
            declared_avif_size(&found),
            Err(DecodeError::Corrupt(why)) if why.contains("more entries")
        ));
        let small = DecodeLimits {
            max_pixels: 100_000,
            ..LIMITS
        };
        assert_eq!(
            decode(AVIF, ImageFormat::Avif, small).err(),
            Some(DecodeError::TooLarge {
                width: 400,
                height: 400
            })
        );
        for cut in [AVIF.len() / 2, AVIF.len() - 1, 64, 20] {
            let result = decode(&AVIF[..cut], ImageFormat::Avif, LIMITS);
            assert!(
                matches!(result, Err(DecodeError::Corrupt(_))),
                "cut at {cut}: {:?}",
                result.map(|i| i.dimensions())
            );
        }
        // A flipped byte anywhere in the container and the AV1 headers never panics. The
        // tile data is left alone: rav1d 1.1 aborts on damaged tiles (memorysafety/rav1d#1497),
        // which is why only a sibling instance decodes an AVIF (edge::model).
        for at in (0..400).step_by(57) {
            let mut damaged = AVIF.to_vec();
            damaged[at] ^= 0x5A;
            let _ = decode(&damaged, ImageFormat::Avif, LIMITS);
        }
    }

    /// A 256x64 AVIF of four flat colours (grey 40, a red, a green, a blue, 64 pixels
    /// wide each), written by Pillow 13's libavif (quality 100, 4:4:4; `nclx` BT.709
    /// primaries, sRGB transfer, BT.601 matrix, full range, as its AV1 sequence header).
    const FOUR_COLOURS: &[u8] = include_bytes!("../../../tests/fixtures/four_colours.avif");

    #[test]
    fn an_avif_is_shown_in_the_colours_its_nclx_gives() {
        let nclx = FOUR_COLOURS
            .windows(8)
            .position(|w| w == b"colrnclx")
            .unwrap()
            + 8;
        // The `nclx` rewritten at `at` (primaries 0, transfer 2, matrix 4: 16-bit each;
        // the full-range flag 6), the AV1 sequence header left as written.
        let patched = |at: usize, value: &[u8]| {
            let mut bytes = FOUR_COLOURS.to_vec();
            bytes[nclx + at..nclx + at + value.len()].copy_from_slice(value);
            bytes
        };
        // What Chromium 156 and Firefox ESR 153 both show at each patch's centre
        // (headless screenshots).
        let as_written = [[40, 40, 40], [200, 61, 30], [28, 180, 59], [39, 61, 199]];
        let cases = [
            ("as written", FOUR_COLOURS.to_vec(), as_written),
            (
                "BT.709 transfer (shown as sRGB)",
                patched(2, &[0, 1]),
                as_written,
            ),
            ("unspecified primaries", patched(0, &[0, 2]), as_written),
            (
                "linear transfer",
                patched(2, &[0, 8]),
                [
                    [110, 110, 110],
                    [229, 134, 96],
                    [93, 219, 132],
                    [109, 134, 229],
                ],
            ),
            (
                "gamma 2.8 transfer",
                patched(2, &[0, 5]),
                [[17, 17, 17], [189, 37, 8], [7, 165, 35], [16, 37, 187]],
            ),
            (
                "Display P3 primaries",
                patched(0, &[0, 12]),
                [[40, 40, 40], [217, 43, 0], [0, 183, 28], [32, 62, 207]],
            ),
            (
                "BT.2020 primaries",
                patched(0, &[0, 9]),
                [[40, 40, 40], [247, 0, 0], [0, 190, 9], [0, 60, 208]],
            ),
            (
                "identity matrix (GBR)",
                patched(4, &[0, 0]),
                [[128, 40, 128], [200, 99, 89], [62, 121, 93], [106, 70, 201]],
            ),
            (
                "chromaticity-derived matrix under BT.709 primaries",
                patched(4, &[0, 12]),
                [[40, 40, 40], [213, 73, 26], [17, 158, 56], [35, 67, 206]],
            ),
            (
                "limited range",
                patched(6, &[0]),
                [[28, 28, 28], [211, 53, 19], [17, 190, 52], [28, 52, 209]],
            ),
        ];
        let bt709 = [[40, 40, 40], [213, 73, 26], [17, 158, 56], [35, 67, 206]];
        // Where Firefox ESR 153 reads the matrix otherwise (Chromium 156's first, Firefox's
        // second): both renderings.
        let disputed = [
            ("unspecified matrix", patched(4, &[0, 2]), as_written, bt709),
            (
                "SMPTE 240M matrix",
                patched(4, &[0, 7]),
                [[40, 40, 40], [212, 74, 28], [17, 160, 57], [35, 64, 203]],
                as_written,
            ),
            (
                "YCgCo matrix",
                patched(4, &[0, 8]),
                [[40, 40, 40], [210, 60, 66], [90, 86, 222], [0, 143, 19]],
                as_written,
            ),
        ];
        let near = |image: &DynamicImage, shown: [[u8; 3]; 4], name: &str| {
            let image = image.to_rgb8();
            for (patch, want) in (0u32..).zip(shown) {
                let got = image.get_pixel(32 + 64 * patch, 32).0;
                let close = got.iter().zip(want).all(|(&g, w)| g.abs_diff(w) <= 2);
                assert!(close, "{name}, patch {patch}: {got:?}, shown as {want:?}");
            }
        };
        for (name, bytes, shown) in cases {
            let decoded = decode_reduced(&bytes, ImageFormat::Avif, LIMITS).unwrap();
            near(&decoded.image, shown, name);
            assert!(decoded.also_shown.is_none(), "{name}");
        }
        for (name, bytes, chromium, firefox) in disputed {
            let decoded = decode_reduced(&bytes, ImageFormat::Avif, LIMITS).unwrap();
            near(&decoded.image, chromium, name);
            let also = decoded.also_shown.expect(name);
            assert_eq!(also.by, "Firefox");
            near(&also.image, firefox, name);
        }
    }

    /// A 512x512 JPEG XL written by libjxl (lossy, XYB, bare codestream), and a 1400x160
    /// one in the ISO-BMFF container.
    const JXL: &[u8] = include_bytes!("../../../tests/fixtures/photo_astronaut.jxl");
    const JXL_CONTAINER: &[u8] = include_bytes!("../../../tests/fixtures/panorama_wide.jxl");

    #[test]
    fn jpeg_xl_decodes_within_limits_and_damage_never_panics() {
        for (bytes, size) in [(JXL, (512, 512)), (JXL_CONTAINER, (1400, 160))] {
            assert_eq!(ImageFormat::sniff(bytes), Some(ImageFormat::JpegXl));
            assert_eq!(declared_jxl_size(bytes), Ok(size));
            let image = decode(bytes, ImageFormat::JpegXl, LIMITS).unwrap();
            assert_eq!(image.dimensions(), size);
            assert!(matches!(image, DynamicImage::ImageRgb8(_)));
        }
        // Beyond the pixel limit, or the memory its float planes would take: refused from
        // the header, before a frame is decoded.
        let small = DecodeLimits {
            max_pixels: 200_000,
            ..LIMITS
        };
        let too_large = Some(DecodeError::TooLarge {
            width: 512,
            height: 512,
        });
        assert_eq!(decode(JXL, ImageFormat::JpegXl, small).err(), too_large);
        let little_memory = DecodeLimits {
            max_canvas_bytes: 1_500_000,
            ..LIMITS
        };
        assert_eq!(
            decode(JXL, ImageFormat::JpegXl, little_memory).err(),
            too_large
        );
        for cut in [JXL.len() / 2, JXL.len() - 1, 40, 12, 2] {
            let result = decode(&JXL[..cut], ImageFormat::JpegXl, LIMITS);
            assert!(
                matches!(result, Err(DecodeError::Corrupt(_))),
                "cut at {cut}: {:?}",
                result.map(|i| i.dimensions())
            );
        }
        // A flipped byte anywhere (header, tables, coefficients) decodes or errs, never
        // panics: the fuzz target `jxl` goes further.
        for at in (0..JXL.len()).step_by(97) {
            let mut damaged = JXL.to_vec();
            damaged[at] ^= 0x5A;
            let _ = decode(&damaged, ImageFormat::JpegXl, LIMITS);
        }
    }

    #[test]
    fn jpeg_xl_is_shown_oriented_and_its_animations_are_refused() {
        // cjxl (libjxl 0.7) from a PNG crop of the panorama with EXIF orientation 6: the
        // codestream says "turn 90 degrees clockwise", as browsers show it.
        let oriented = include_bytes!("../../../tests/fixtures/panorama_crop_orientation6.jxl");
        assert_eq!(declared_jxl_size(oriented), Ok((60, 120)));
        let decoded = decode_reduced(oriented, ImageFormat::JpegXl, LIMITS).unwrap();
        assert_eq!((decoded.width, decoded.height), (60, 120));
        let source = image::open("models/fidelity/images/panorama_wide.png")
            .unwrap()
            .crop_imm(0, 0, 120, 60)
            .to_rgb8();
        let shown = image::imageops::rotate90(&source);
        let ours = decoded.image.to_rgb8();
        let mean = ours
            .as_raw()
            .iter()
            .zip(shown.as_raw())
            .map(|(a, b)| f64::from(a.abs_diff(*b)))
            .sum::<f64>()
            / ours.as_raw().len() as f64;
        assert!(mean < 4.0, "mean difference {mean} from the source turned");
        // cjxl from a GIF of two frames: the second frame is never shown by a still.
        let animated = include_bytes!("../../../tests/fixtures/animated_2_frames.jxl");
        assert!(matches!(
            decode(animated, ImageFormat::JpegXl, LIMITS),
            Err(DecodeError::Unsupported(why)) if why.contains("animated")
        ));
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
        for format in ImageFormat::ALL
            .into_iter()
            .filter(|f| f.rewritten_as() == *f)
        {
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
