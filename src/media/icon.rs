//! An icon's entries (ICO and CUR), each decoded as a browser may show it.
//!
//! An ICO holds several pictures, and which one a browser shows is its own choice:
//! Chromium shows the largest in `<img>` (checked: a 64×64 entry over a 16×16 one whose
//! directory claims more bits per pixel), Firefox the one nearest the size it draws, while
//! image-rs decodes the one of most declared bits per pixel. Judging one entry would let a
//! benign entry stand for another that is shown, so every entry is read, largest first (the
//! one Chromium shows leads), and they are judged as the frames of an animation are
//! (`media::frames`). PNG entries are decoded as PNG (any colour type, and in the colours
//! their `iCCP`, `cICP` or `gAMA` give, as Firefox shows them); bitmap entries through
//! image-rs's ICO decoder, given a directory of that one entry.

use super::decode::{colour, DecodeError, DecodeLimits};
use super::format::ImageFormat;
use image::codecs::ico::IcoDecoder;
use image::codecs::png::PngDecoder;
use image::{DynamicImage, ImageDecoder};
use std::io::Cursor;

/// Most entries read from one icon (a Windows icon has about ten); an icon with more gets
/// the oversize outcome, as a long animation does.
pub const MAX_ENTRIES: usize = 64;

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// One entry of an icon's directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    /// The directory's 16 bytes for it.
    record: [u8; 16],
    /// Its data within the file.
    start: usize,
    end: usize,
}

impl Entry {
    /// The size the directory declares (0 means 256).
    fn declared(&self) -> (u32, u32) {
        let side = |byte: u8| if byte == 0 { 256 } else { u32::from(byte) };
        (side(self.record[0]), side(self.record[1]))
    }

    fn data<'a>(&self, bytes: &'a [u8]) -> &'a [u8] {
        &bytes[self.start..self.end]
    }
}

/// How many entries an icon's directory lists (0 when it has no directory).
pub fn entry_count(bytes: &[u8]) -> usize {
    match bytes {
        [0, 0, 1 | 2, 0, low, high, ..] => usize::from(u16::from_le_bytes([*low, *high])),
        _ => 0,
    }
}

/// The directory's entries, each checked to lie within the file.
fn entries(bytes: &[u8]) -> Result<Vec<Entry>, DecodeError> {
    let count = entry_count(bytes);
    if count == 0 {
        return Err(DecodeError::Corrupt("icon without entries".into()));
    }
    if count > MAX_ENTRIES {
        return Err(DecodeError::TooManyFrames { read: MAX_ENTRIES });
    }
    (0..count)
        .map(|i| {
            let at = 6 + 16 * i;
            let record: [u8; 16] = bytes
                .get(at..at + 16)
                .and_then(|r| r.try_into().ok())
                .ok_or_else(|| DecodeError::Corrupt("icon directory cut short".into()))?;
            let le32 = |i: usize| {
                u32::from_le_bytes([record[i], record[i + 1], record[i + 2], record[i + 3]])
            };
            let (length, start) = (le32(8) as usize, le32(12) as usize);
            let end = start.checked_add(length).filter(|&end| end <= bytes.len());
            match end {
                Some(end) if length > 0 => Ok(Entry { record, start, end }),
                _ => Err(DecodeError::Corrupt(format!(
                    "icon entry {i} lies outside the file"
                ))),
            }
        })
        .collect()
}

/// The size an entry is drawn at: a PNG entry's own (browsers draw the PNG as it is), a
/// bitmap's from the directory.
fn size(entry: &Entry, bytes: &[u8]) -> Result<(u32, u32), DecodeError> {
    let data = entry.data(bytes);
    if data.starts_with(PNG_SIGNATURE) {
        return PngDecoder::new(Cursor::new(data))
            .map(|decoder| decoder.dimensions())
            .map_err(|e| DecodeError::Corrupt(format!("icon PNG entry: {e}")));
    }
    Ok(entry.declared())
}

/// An entry and the size it is drawn at.
type SizedEntry = (Entry, (u32, u32));

/// Every entry's size, largest first (then as listed), each within `limits`: what
/// [`decode_entries`] will decode, in that order.
fn ordered(bytes: &[u8], limits: DecodeLimits) -> Result<Vec<SizedEntry>, DecodeError> {
    let mut sized = entries(bytes)?
        .into_iter()
        .map(|entry| {
            let (width, height) = size(&entry, bytes)?;
            limits.check_rgba(width, height)?;
            Ok((entry, (width, height)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    sized.sort_by_key(|(_, (width, height))| {
        std::cmp::Reverse(u64::from(*width) * u64::from(*height))
    });
    Ok(sized)
}

/// The largest entry's pixels (at least 1): what an icon's frames are bounded by.
pub fn largest_pixels(bytes: &[u8], limits: DecodeLimits) -> Result<u64, DecodeError> {
    let sized = ordered(bytes, limits)?;
    Ok(sized
        .first()
        .map_or(1, |(_, (w, h))| (u64::from(*w) * u64::from(*h)).max(1)))
}

/// Every entry decoded to RGBA, largest first.
pub fn decode_entries(
    bytes: &[u8],
    limits: DecodeLimits,
) -> Result<Vec<image::RgbaImage>, DecodeError> {
    ordered(bytes, limits)?
        .into_iter()
        .map(|(entry, _)| decode_entry(&entry, bytes).map(|image| image.to_rgba8()))
        .collect()
}

fn decode_entry(entry: &Entry, bytes: &[u8]) -> Result<DynamicImage, DecodeError> {
    let data = entry.data(bytes);
    let corrupt = |e: image::ImageError| DecodeError::Corrupt(format!("icon entry: {e}"));
    if data.starts_with(PNG_SIGNATURE) {
        let mut decoder = PngDecoder::new(Cursor::new(data)).map_err(corrupt)?;
        // Firefox hands a PNG entry to its PNG decoder, colour management included: a
        // picture stored under a profile or gamma is shown converted, as a PNG file is
        // (checked in Firefox ESR 153: grey 40 under `gAMA` 1.0 shows as 110 either way;
        // Chromium 156 shows no picture at all for such an entry).
        let to_srgb = colour::description(data, ImageFormat::Png, &mut decoder)
            .as_ref()
            .and_then(colour::ToSrgb::new);
        let image = DynamicImage::from_decoder(decoder).map_err(corrupt)?;
        return Ok(match to_srgb {
            Some(to_srgb) => to_srgb.apply(image),
            None => image,
        });
    }
    // A file of this one entry: its directory record, the data right after it.
    let mut alone = Vec::with_capacity(22 + data.len());
    alone.extend_from_slice(&bytes[..4]);
    alone.extend_from_slice(&1u16.to_le_bytes());
    alone.extend_from_slice(&entry.record[..12]);
    alone.extend_from_slice(&22u32.to_le_bytes());
    alone.extend_from_slice(data);
    let decoder = IcoDecoder::new(Cursor::new(alone)).map_err(corrupt)?;
    DynamicImage::from_decoder(decoder).map_err(corrupt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageFormat, Rgba, RgbaImage};

    use crate::media::decode::FRAME_TEST_LIMITS as LIMITS;

    /// An icon of PNG entries, each with the bits per pixel its directory claims.
    pub(crate) fn icon(entries: &[(DynamicImage, u16)]) -> Vec<u8> {
        let pngs: Vec<_> = entries
            .iter()
            .map(|(image, bits)| {
                let mut png = Cursor::new(Vec::new());
                image.write_to(&mut png, ImageFormat::Png).unwrap();
                (png.into_inner(), image.width(), *bits)
            })
            .collect();
        icon_of_pngs(&pngs)
    }

    /// An icon of encoded square PNG entries: (PNG, side, bits per pixel claimed).
    fn icon_of_pngs(entries: &[(Vec<u8>, u32, u16)]) -> Vec<u8> {
        let mut directory = vec![0, 0, 1, 0];
        directory.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        let mut data = Vec::new();
        for (png, side, bits) in entries {
            let at = 6 + 16 * entries.len() + data.len();
            directory.extend_from_slice(&[*side as u8, *side as u8, 0, 0]);
            directory.extend_from_slice(&1u16.to_le_bytes());
            directory.extend_from_slice(&bits.to_le_bytes());
            directory.extend_from_slice(&(png.len() as u32).to_le_bytes());
            directory.extend_from_slice(&(at as u32).to_le_bytes());
            data.extend_from_slice(png);
        }
        [directory, data].concat()
    }

    fn flat(side: u32, colour: [u8; 4]) -> DynamicImage {
        DynamicImage::ImageRgba8(RgbaImage::from_pixel(side, side, Rgba(colour)))
    }

    #[test]
    fn every_entry_is_decoded_largest_first_whatever_the_directory_claims() {
        // The small entry claims 32 bits, the large one 8: image-rs picks the small one,
        // Chromium shows the large one.
        let bytes = icon(&[
            (flat(16, [255, 0, 0, 255]), 32),
            (flat(64, [0, 0, 255, 255]), 8),
        ]);
        let picked = image::load_from_memory_with_format(&bytes, ImageFormat::Ico).unwrap();
        assert_eq!(picked.width(), 16, "image-rs's own pick");
        let entries = decode_entries(&bytes, LIMITS).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].dimensions(), (64, 64));
        assert_eq!(entries[0].get_pixel(0, 0), &Rgba([0, 0, 255, 255]));
        assert_eq!(entries[1].get_pixel(0, 0), &Rgba([255, 0, 0, 255]));
        assert_eq!(largest_pixels(&bytes, LIMITS), Ok(64 * 64));
        // An RGB (not RGBA) PNG entry, which image-rs's ICO decoder refuses, decodes.
        let rgb = DynamicImage::ImageRgb8(flat(8, [9, 9, 9, 255]).to_rgb8());
        let entries = decode_entries(&icon(&[(rgb, 24)]), LIMITS).unwrap();
        assert_eq!(entries[0].get_pixel(1, 1), &Rgba([9, 9, 9, 255]));
    }

    #[test]
    fn bitmap_entries_decode_as_image_rs_and_pillow_read_them() {
        // Written by Pillow (bitmap entries): 32x32 blue with a half-transparent yellow
        // diagonal, and 16x16 red; Pillow reads those pixels back from each entry.
        let bytes = include_bytes!("../../tests/fixtures/icon_bitmaps.ico");
        let entries = decode_entries(bytes, LIMITS).unwrap();
        let sizes: Vec<_> = entries.iter().map(|e| e.dimensions()).collect();
        assert_eq!(sizes, [(32, 32), (16, 16)]);
        assert_eq!(entries[0].get_pixel(5, 5), &Rgba([255, 255, 0, 128]));
        assert_eq!(entries[0].get_pixel(6, 5), &Rgba([0, 0, 255, 255]));
        assert_eq!(entries[1].get_pixel(3, 9), &Rgba([255, 0, 0, 255]));
        // image-rs alone decodes the 32x32 (most bits, then largest): the same pixels.
        let whole = image::load_from_memory_with_format(bytes, ImageFormat::Ico).unwrap();
        assert_eq!(entries[0], whole.to_rgba8());
    }

    #[test]
    fn a_png_entry_is_shown_in_the_colours_its_chunks_give() {
        // Grey 40 under `gAMA` 1.0 (linear light): Firefox shows a PNG so tagged as 110,
        // in a file or as an icon's entry. The same entry untagged stays 40.
        let entry = |gamma: Option<u32>| {
            let mut out = Vec::new();
            let mut encoder = png::Encoder::new(&mut out, 8, 8);
            encoder.set_color(png::ColorType::Rgb);
            let mut writer = encoder.write_header().unwrap();
            if let Some(gamma) = gamma {
                let chunk = png::chunk::ChunkType(*b"gAMA");
                writer.write_chunk(chunk, &gamma.to_be_bytes()).unwrap();
            }
            writer.write_image_data(&[40; 8 * 8 * 3]).unwrap();
            writer.finish().unwrap();
            out
        };
        let bytes = icon_of_pngs(&[(entry(Some(100_000)), 8, 24), (entry(None), 8, 24)]);
        let entries = decode_entries(&bytes, LIMITS).unwrap();
        let shown = entries[0].get_pixel(4, 4).0;
        assert!(
            shown[..3].iter().all(|&v| v.abs_diff(110) <= 1),
            "{shown:?}"
        );
        assert_eq!(entries[1].get_pixel(4, 4), &Rgba([40, 40, 40, 255]));
    }

    #[test]
    fn damaged_or_crowded_directories_are_refused() {
        let bytes = icon(&[(flat(16, [1, 2, 3, 255]), 32)]);
        assert!(matches!(
            decode_entries(&bytes[..30], LIMITS),
            Err(DecodeError::Corrupt(_))
        ));
        let mut past = bytes.clone();
        past[18] = 0xff;
        assert!(matches!(
            decode_entries(&past, LIMITS),
            Err(DecodeError::Corrupt(why)) if why.contains("outside")
        ));
        let mut crowded = bytes.clone();
        crowded[4] = 200;
        assert!(matches!(
            decode_entries(&crowded, LIMITS),
            Err(DecodeError::TooManyFrames { .. })
        ));
        let small = DecodeLimits {
            max_pixels: 100,
            ..LIMITS
        };
        assert!(matches!(
            decode_entries(&bytes, small),
            Err(DecodeError::TooLarge { .. })
        ));
        assert_eq!(entry_count(b"\0\0\x01\0"), 0);
    }
}
