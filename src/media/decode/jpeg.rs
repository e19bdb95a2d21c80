//! JPEG specifics: the reduced decode in the DCT domain (jpeg-decoder, which can scale by
//! 1/2, 1/4 and 1/8 while decoding; image-rs's zune-jpeg always decodes full size), and the
//! check that a file is complete.

use super::{DecodeError, DecodeLimits};
use crate::classifier::preprocess::{read_positions, Gathered};
use crate::media::jpeg::{decode_resumable, Plan, Progress};
use image::metadata::Orientation;
use image::{DynamicImage, GrayImage, RgbImage};
use std::io::Cursor;
use std::ops::Range;

/// The fewest pixels a reduced decode leaves on each axis (where the image has them).
/// A reduced decode averages pixels where nsfwjs's resize samples them, and the model
/// notices: on the fidelity set enlarged to photo size (`tests/fidelity.rs`), leaving
/// 224 pixels moved a class probability by up to 0.35; leaving 384 or 448 by up to 0.24,
/// with the top class kept on 26 of 27 images. 384 lets the most common web size, a
/// 1024×768 photo, decode at half size (512×384). Policies that need nsfwjs's exact scores
/// turn it off (`limits.reduced_jpeg_decode`).
pub const REDUCED_MIN_SIDE: u32 = 384;

/// The bytes of `image` that a decode resumed from `state` here never reads (the
/// sampled decoder's [`crate::media::jpeg::unread_span`]), which a resumed job may leave
/// out. None for an image too small to reduce: it is decoded again in full after its
/// sampled pass, from all its bytes, for its reduced image.
pub fn unread_span(image: &[u8], state: &[u8]) -> Option<Range<usize>> {
    let (width, height) = crate::media::jpeg::dimensions(image).ok()?;
    if reduced_eighths(width, height) == 8 {
        return None;
    }
    crate::media::jpeg::unread_span(image, state)
}

/// The DCT scale (eighths) that still leaves `REDUCED_MIN_SIDE` pixels on each axis.
fn reduced_eighths(width: u32, height: u32) -> u32 {
    let keeps = |side: u32, eighths: u32| side.div_ceil(8 / eighths) >= side.min(REDUCED_MIN_SIDE);
    [1, 2, 4]
        .into_iter()
        .find(|&eighths| keeps(width, eighths) && keeps(height, eighths))
        .unwrap_or(8)
}

/// What the sampled decode of a JPEG gave.
pub(super) enum Gather {
    /// The pixels nsfwjs's resize reads, and for a large image its reduced copy.
    Done(Gathered, Option<DynamicImage>),
    /// Stopped part-way, as `stop` asked: `state` resumes it.
    Suspended(Vec<u8>),
}

/// The pixels nsfwjs's resize reads from a JPEG as shown (`orientation` applied),
/// exactly as libjpeg-turbo decodes them ([`crate::media::jpeg`]), and, for an image
/// large enough to reduce, the reduced image for PDQ and rewrites from the same pass
/// (`None` for smaller ones: their full decode is cheap). Err(()) when this decoder does
/// not read the file (CMYK, 4:4:0, 12-bit, …, or structure it finds damaged): the other
/// decoders then decide. `checked` is the size the limits were checked against: a frame
/// this decoder reads with another size is refused, so its limits hold here too. `from`
/// and `stop` resume and suspend the decode ([`crate::media::jpeg::decode_resumable`]).
pub(super) fn decode_gathered(
    bytes: &[u8],
    checked: (u32, u32),
    orientation: Orientation,
    from: Option<&[u8]>,
    stop: &mut dyn FnMut(bool) -> bool,
) -> Result<Gather, ()> {
    let mut shown = (0, 0);
    let mut positions = (Vec::new(), Vec::new());
    let mut eighths = 8;
    let progress = decode_resumable(
        bytes,
        |width, height| {
            if (width, height) != checked {
                return None;
            }
            eighths = reduced_eighths(width, height);
            let (w, h) = (width as usize, height as usize);
            let turned = turns(orientation);
            shown = if turned {
                (height, width)
            } else {
                (width, height)
            };
            let (rows, columns) = (
                read_positions(shown.1 as usize),
                read_positions(shown.0 as usize),
            );
            let mirror = |at: &[u32], size: usize| -> Vec<u32> {
                at.iter().rev().map(|&p| (size - 1) as u32 - p).collect()
            };
            // Where the shown rows and columns are in the image as stored (image-rs's
            // `apply_orientation`: e.g. Rotate90 shows stored column y' as row y').
            use Orientation::*;
            let (stored_rows, stored_columns) = match orientation {
                NoTransforms => (rows.clone(), columns.clone()),
                FlipHorizontal => (rows.clone(), mirror(&columns, w)),
                Rotate180 => (mirror(&rows, h), mirror(&columns, w)),
                FlipVertical => (mirror(&rows, h), columns.clone()),
                Rotate90 => (mirror(&columns, h), rows.clone()),
                Rotate270 => (columns.clone(), mirror(&rows, w)),
                Rotate90FlipH => (columns.clone(), rows.clone()),
                Rotate270FlipH => (mirror(&columns, h), mirror(&rows, w)),
            };
            positions = (rows, columns);
            Some(Plan {
                rows: stored_rows,
                columns: stored_columns,
                // A small image is decoded in full for its reduced image: no preview to build.
                preview_per_block: if eighths == 8 { 1 } else { eighths },
            })
        },
        from,
        stop,
    )
    .map_err(|_| ())?;
    let sampled = match progress {
        Progress::Done(sampled) => sampled,
        Progress::Suspended { state } => return Ok(Gather::Suspended(state)),
    };
    // The gathered pixels, turned as shown: their rows and columns then follow the shown
    // positions in ascending order.
    let mut pixels = sampled.pixels;
    pixels.apply_orientation(orientation);
    let preview = (eighths < 8).then(|| {
        let mut preview = sampled.preview;
        preview.apply_orientation(orientation);
        preview
    });
    let (rows, columns) = positions;
    Ok(Gather::Done(
        Gathered {
            image: pixels,
            width: shown.0,
            height: shown.1,
            rows,
            columns,
        },
        preview,
    ))
}

/// Whether an orientation swaps width and height.
pub(super) fn turns(orientation: Orientation) -> bool {
    matches!(
        orientation,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    )
}

/// The reduced decode of a JPEG the full decoder already accepted the header of (8-bit
/// greyscale or YCbCr); None when no reduction applies.
pub(super) fn decode_reduced(
    bytes: &[u8],
    width: u32,
    height: u32,
    limits: DecodeLimits,
) -> Result<Option<DynamicImage>, DecodeError> {
    let eighths = reduced_eighths(width, height);
    if eighths == 8 {
        return Ok(None);
    }
    let corrupt = |e: jpeg_decoder::Error| match e {
        jpeg_decoder::Error::Unsupported(feature) => {
            DecodeError::Unsupported(format!("{feature:?}"))
        }
        other => DecodeError::Corrupt(other.to_string()),
    };
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

/// Whether an end-of-image marker follows the image's first scan. The header segments
/// are walked by their lengths (so an EXIF thumbnail, which has its own scan and end
/// marker, is skipped); inside scan data every 0xFF is byte-stuffed, so FF D9 there can
/// only be the real marker. Data appended after the image (camera trailers, motion
/// photos) is allowed.
pub(super) fn is_complete(bytes: &[u8]) -> bool {
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
            // From the end, where the marker is: searched from the scan's start, this
            // read every byte of the file in every instance of a split decode; with it,
            // opening a 12 MP photo took 9-15 ms there, 2.3-2.8 after (Intel Xeon,
            // family 6 model 207, Viceroy).
            return bytes
                .get(segment_end..)
                .is_some_and(|scan| scan.windows(2).rev().any(|pair| pair == END_OF_IMAGE));
        }
        at = segment_end;
    }
    false
}
