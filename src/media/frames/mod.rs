//! Which frames of an animation to judge (GIF, animated WebP, APNG), and decoding them.
//! An icon's entries are judged the same way, as frames (`media::icon`).
//!
//! A browser plays every frame, so judging only the first lets a benign first frame shown
//! for 80 ms carry anything after it. Every frame is decoded once (bounded in count and in
//! pixels) into a 16×16 grey signature and its display time; then up to `max_frames` are
//! chosen: the first (the still a page shows before playing), then greedily the frame
//! that differs most from those already chosen, weighted by how long it is shown; frames
//! that look like a chosen one add nothing. The choice is made as the frames are read,
//! among the frames kept so far and the one read (`Candidates`), so that no frame is
//! decoded twice and no more than `max_frames + 1` are held.
//!
//! A GIF's reading may stop between two frames and go on in another instance
//! (`judged_frames_resumable`, state in `resume`): a long animation takes more CPU than
//! one instance has.

use super::decode::{colour, DecodeError, DecodeLimits};
use super::format::ImageFormat;
use super::gif::GifFrames;
use super::icon;
use image::codecs::png::PngDecoder;
use image::codecs::webp::WebPDecoder;
use image::RgbaImage;
use image::{AnimationDecoder, DynamicImage, Frames, ImageDecoder};
use std::io::Cursor;

mod resume;

pub use resume::{is_state, unread_span};

/// Most frames read from one animation; beyond them the rest is not played here.
pub const MAX_FRAMES_READ: usize = 1000;
/// Total pixels decoded while reading an animation's frames (all frames together): about
/// 160 frames of 640×480. An animation with more is not fully inspected, and gets the
/// policy's oversize outcome rather than a verdict on part of it.
pub const MAX_PIXELS_READ: u64 = 50_000_000;
/// The largest state a GIF's reading hands on with (the canvas and the frames kept): the
/// instances on both sides hold it twice, beside the image, within 128 MB. A larger
/// animation's reading never stops part-way.
const MAX_STATE_BYTES: usize = 24 << 20;
/// Side of the grey signature frames are compared by.
const SIGNATURE_SIDE: u32 = 16;
const SIGNATURE_BYTES: usize = (SIGNATURE_SIDE * SIGNATURE_SIDE) as usize;
/// Mean absolute difference (0–255) under which two frames look alike.
const ALIKE: f32 = 4.0;

/// One chosen frame, as shown (composited on the canvas).
pub struct Frame {
    pub index: usize,
    pub image: DynamicImage,
}

/// Whether `bytes` is judged frame by frame: an animation of more than one frame, or an
/// icon (its entries are its frames, even one: image-rs alone would refuse a PNG entry
/// that is not RGBA, which browsers show).
pub fn judged_by_frames(bytes: &[u8], format: ImageFormat) -> bool {
    match format {
        ImageFormat::Ico => icon::entry_count(bytes) > 0,
        // A still whose frame reaches past the logical screen is drawn here too: the
        // browser shows it on the larger canvas, which image-rs's still decode clips.
        ImageFormat::Gif => {
            let scan = gif_scan(bytes, 2);
            scan.images > 1 || (scan.images == 1 && scan.canvas != scan.screen)
        }
        ImageFormat::Png => PngDecoder::new(Cursor::new(bytes))
            .and_then(|decoder| decoder.is_apng())
            .unwrap_or(false),
        ImageFormat::WebP => {
            WebPDecoder::new(Cursor::new(bytes)).is_ok_and(|decoder| decoder.has_animation())
        }
        _ => false,
    }
}

/// Whether an image's frames are read in a sibling instance rather than in the one that
/// answers the client: an animation (GIF, APNG, animated WebP) may hold up to
/// [`MAX_FRAMES_READ`] frames and [`MAX_PIXELS_READ`] pixels, more than one instance's CPU
/// reads (eight 400×300 GIF frames took 28 ms on a Zen 3). A sibling that runs out of CPU
/// is a failed sub-request, which gets the policy's `on_error`; the answering instance
/// running out would be an error with no reason. An icon's entries are few and small:
/// read where it is judged.
pub fn read_apart(bytes: &[u8], format: ImageFormat) -> bool {
    format != ImageFormat::Ico && judged_by_frames(bytes, format)
}

/// What a GIF's block structure says of its images, read without decoding a pixel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GifImages {
    /// How many images (frames), counted up to the `enough` asked for.
    pub images: usize,
    /// The largest width and the largest height any image's descriptor declares: a frame
    /// may declare more than the canvas, and decoders allocate what it declares.
    pub largest: (u32, u32),
    /// The logical screen's width and height, as the header declares them.
    pub screen: (u32, u32),
    /// The canvas a browser shows: the logical screen grown to hold the first image's
    /// rectangle (Chromium shows a 1×1 screen whose first frame is 64×48 at (10, 10) as
    /// 74×58, as Pillow reads it), where image-rs clips the frames to the screen.
    pub canvas: (u32, u32),
    /// An image whose data ends at once (its first sub-block empty). The `gif` crate
    /// then reads the next block's first byte as a data length (found by fuzzing),
    /// where the GIF specification ends the data there and goes on to the next block:
    /// what follows would be read otherwise than the block structure says (Pillow
    /// refuses such a file as truncated).
    pub empty_data: bool,
}

/// The size of a GIF colour table announced by a packed field.
fn table(packed: u8) -> usize {
    if packed & 0x80 == 0 {
        0
    } else {
        3 << ((packed & 0x07) + 1)
    }
}

/// Where the sub-blocks starting at `at` end (after their 0-length terminator).
fn skip_sub_blocks(bytes: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let length = usize::from(*bytes.get(at)?);
        at += 1;
        if length == 0 {
            return Some(at);
        }
        at += length;
    }
}

/// Where a GIF's blocks start: after the header (6 bytes), the logical screen descriptor
/// (7, whose packed field is byte 10) and the global colour table.
pub fn gif_blocks_start(bytes: &[u8]) -> Option<usize> {
    Some(13 + table(*bytes.get(10)?))
}

/// Where the blocks after the next image end, from a block boundary `at`: the
/// extensions before it, its descriptor, colour table and data. `None` where the
/// structure breaks or no image follows.
pub fn gif_blocks_after(bytes: &[u8], mut at: usize) -> Option<usize> {
    loop {
        match bytes.get(at)? {
            0x2C => {
                let local = *bytes.get(at + 9)?;
                return skip_sub_blocks(bytes, at + 10 + table(local) + 1);
            }
            0x21 => at = skip_sub_blocks(bytes, at + 2)?,
            _ => return None,
        }
    }
}

/// Reads a GIF's block structure: the header, the colour tables, and each block's
/// length-prefixed sub-blocks, up to `enough` images. A damaged structure ends the scan
/// where it breaks.
pub fn gif_scan(bytes: &[u8], enough: usize) -> GifImages {
    let mut found = GifImages::default();
    let Some(mut at) = gif_blocks_start(bytes) else {
        return found;
    };
    let le16 = |at: usize| -> u32 {
        let low = bytes.get(at).copied().unwrap_or(0);
        let high = bytes.get(at + 1).copied().unwrap_or(0);
        u32::from(u16::from_le_bytes([low, high]))
    };
    found.screen = (le16(6), le16(8));
    found.canvas = found.screen;
    while found.images < enough {
        match bytes.get(at) {
            // Image descriptor: position and size (4 × 2 bytes), a packed field, a local
            // colour table, the LZW code size, data.
            Some(0x2C) => {
                let Some(&local) = bytes.get(at + 9) else {
                    break;
                };
                found.images += 1;
                // Each side's largest: a bound on every frame, conservative for the area.
                let (width, height) = (le16(at + 5), le16(at + 7));
                if found.images == 1 {
                    let (left, top) = (le16(at + 1), le16(at + 3));
                    found.canvas = (
                        found.canvas.0.max(left + width),
                        found.canvas.1.max(top + height),
                    );
                }
                found.largest = (found.largest.0.max(width), found.largest.1.max(height));
                let data = at + 10 + table(local) + 1;
                found.empty_data |= bytes.get(data) == Some(&0);
                match skip_sub_blocks(bytes, data) {
                    Some(next) => at = next,
                    None => break,
                }
            }
            // Extension: its label, then sub-blocks.
            Some(0x21) => match skip_sub_blocks(bytes, at + 2) {
                Some(next) => at = next,
                None => break,
            },
            // The trailer, or anything else: the end.
            _ => break,
        }
    }
    found
}

/// Refuses a GIF with a frame larger than the limits allow, before any decoder allocates
/// what the frame declares (a 16×12 canvas may hold a frame declared 62451×62451), and
/// one with a frame without image data ([`GifImages::empty_data`]).
pub fn check_gif_frames(bytes: &[u8], limits: DecodeLimits) -> Result<GifImages, DecodeError> {
    let scan = gif_scan(bytes, usize::MAX);
    if scan.empty_data {
        return Err(DecodeError::Corrupt(
            "a GIF frame without image data (decoders disagree on what follows it)".into(),
        ));
    }
    limits.check_rgba(scan.largest.0, scan.largest.1)?;
    limits.check_rgba(scan.canvas.0, scan.canvas.1)?;
    Ok(scan)
}

fn frames(
    bytes: &[u8],
    format: ImageFormat,
    limits: DecodeLimits,
) -> Result<Frames<'_>, DecodeError> {
    let corrupt = |e: image::ImageError| DecodeError::Corrupt(e.to_string());
    Ok(match format {
        ImageFormat::Gif => Frames::new(Box::new(GifFrames::new(bytes, limits).map_err(corrupt)?)),
        ImageFormat::Png => PngDecoder::new(Cursor::new(bytes))
            .and_then(|decoder| decoder.apng())
            .map_err(corrupt)?
            .into_frames(),
        ImageFormat::WebP => WebPDecoder::new(Cursor::new(bytes))
            .map_err(corrupt)?
            .into_frames(),
        // Entries are shown one at a time, none for longer than another.
        ImageFormat::Ico => {
            let entries = icon::decode_entries(bytes, limits)?;
            Frames::new(Box::new(entries.into_iter().map(|entry| {
                Ok(image::Frame::from_parts(
                    entry,
                    0,
                    0,
                    image::Delay::from_numer_denom_ms(0, 1),
                ))
            })))
        }
        other => {
            return Err(DecodeError::Unsupported(format!(
                "{} has no animation",
                other.name()
            )))
        }
    })
}

/// The canvas size an animation declares, checked against the limits before any frame
/// is decoded; for a GIF, with its block scan.
fn checked_size(
    bytes: &[u8],
    format: ImageFormat,
    limits: DecodeLimits,
) -> Result<(u64, Option<GifImages>), DecodeError> {
    let corrupt = |e: image::ImageError| DecodeError::Corrupt(e.to_string());
    if format == ImageFormat::Ico {
        return Ok((icon::largest_pixels(bytes, limits)?, None));
    }
    let mut scan = None;
    let (width, height) = match format {
        ImageFormat::Gif => scan.insert(check_gif_frames(bytes, limits)?).canvas,
        ImageFormat::Png => PngDecoder::new(Cursor::new(bytes))
            .map_err(corrupt)?
            .dimensions(),
        ImageFormat::WebP => WebPDecoder::new(Cursor::new(bytes))
            .map_err(corrupt)?
            .dimensions(),
        _ => return Err(DecodeError::Unsupported("not an animation".into())),
    };
    limits.check_rgba(width, height)?;
    Ok(((u64::from(width) * u64::from(height)).max(1), scan))
}

/// A frame's grey 16×16 thumbnail.
fn signature(frame: &image::RgbaImage) -> Vec<u8> {
    let small = image::imageops::thumbnail(frame, SIGNATURE_SIDE, SIGNATURE_SIDE);
    small
        .pixels()
        .map(|p| {
            // Over white, as a page most often shows a transparent frame.
            let a = u32::from(p[3]);
            let grey =
                (u32::from(p[0]) * 299 + u32::from(p[1]) * 587 + u32::from(p[2]) * 114) / 1000;
            ((grey * a + 255 * (255 - a)) / 255) as u8
        })
        .collect()
}

fn distance(a: &[u8], b: &[u8]) -> f32 {
    let total: u32 = a
        .iter()
        .zip(b)
        .map(|(x, y)| u32::from(x.abs_diff(*y)))
        .sum();
    total as f32 / a.len().max(1) as f32
}

/// How long a browser shows a frame that declares `declared_ms`: Chromium and Firefox
/// show a frame of 10 ms or less for 100 ms (old GIFs declare 0 for "the default"), so a
/// frame declared 0 ms is on screen as long as one declared 100.
fn shown_ms(declared_ms: u32) -> u32 {
    if declared_ms <= 10 {
        100
    } else {
        declared_ms
    }
}

/// Indices of the frames to judge, at most `max_frames`, from each frame's signature and
/// declared display time in milliseconds.
pub fn choose(signatures: &[Vec<u8>], delays_ms: &[u32], max_frames: usize) -> Vec<usize> {
    let mut chosen: Vec<usize> = Vec::new();
    if signatures.is_empty() || max_frames == 0 {
        return chosen;
    }
    chosen.push(0);
    while chosen.len() < max_frames {
        let best = (0..signatures.len())
            .filter(|i| !chosen.contains(i))
            .map(|i| {
                let unlike = chosen
                    .iter()
                    .map(|&c| distance(&signatures[i], &signatures[c]))
                    .fold(f32::INFINITY, f32::min);
                // Longer shown counts more, as long as a browser shows it.
                let shown = shown_ms(delays_ms.get(i).copied().unwrap_or(0)) as f32;
                (i, unlike, unlike * shown.sqrt())
            })
            .filter(|&(_, unlike, _)| unlike > ALIKE)
            .max_by(|a, b| a.2.total_cmp(&b.2));
        match best {
            Some((i, _, _)) => chosen.push(i),
            None => break,
        }
    }
    chosen.sort_unstable();
    chosen
}

/// Frames kept while reading, as candidates to judge: at most `max`, chosen among those
/// kept and the one offered as [`choose`] would choose, so that an animation's frames
/// need no second decode and no more memory than `max + 1` frames. A frame like one
/// kept adds nothing; the first is always kept, and so is the frame most unlike it
/// (weighted by how long it is shown), whenever it comes.
struct Candidates {
    max: usize,
    kept: Vec<Candidate>,
}

/// A frame read, kept while it may be judged.
#[derive(Debug)]
pub(crate) struct Candidate {
    index: usize,
    delay_ms: u32,
    signature: Vec<u8>,
    image: RgbaImage,
}

impl Candidates {
    fn offer(&mut self, candidate: Candidate) {
        let alike = |kept: &Candidate| distance(&kept.signature, &candidate.signature) <= ALIKE;
        if self.max == 0 || (!self.kept.is_empty() && self.kept.iter().any(alike)) {
            return;
        }
        self.kept.push(candidate);
        if self.kept.len() > self.max {
            let signatures: Vec<Vec<u8>> = self.kept.iter().map(|c| c.signature.clone()).collect();
            let delays: Vec<u32> = self.kept.iter().map(|c| c.delay_ms).collect();
            let chosen = choose(&signatures, &delays, self.max);
            let mut position = 0;
            self.kept.retain(|_| {
                position += 1;
                chosen.contains(&(position - 1))
            });
        }
    }
}

/// How reading an animation's frames ended.
pub enum Reading {
    Done(Vec<Frame>),
    /// A GIF's reading stopped between two frames, as asked: `state` resumes it (in
    /// another instance, with the same bytes).
    Suspended {
        state: Vec<u8>,
    },
}

/// The frames of an animation to judge, at most `max_frames`, each as shown.
pub fn judged_frames(
    bytes: &[u8],
    format: ImageFormat,
    limits: DecodeLimits,
    max_frames: usize,
) -> Result<Vec<Frame>, DecodeError> {
    match judged_frames_resumable(bytes, format, limits, max_frames, None, &mut |_| false)? {
        Reading::Done(frames) => Ok(frames),
        Reading::Suspended { .. } => Err(DecodeError::Corrupt("stopped unasked".into())),
    }
}

/// The frames read and where they come from.
enum Source<'a> {
    Gif {
        frames: Box<GifFrames<'a>>,
        /// The header's length, which a resumed reading reads first.
        header: usize,
        /// Where the next frame's blocks start (`None` where the structure breaks: the
        /// reading then never stops).
        next_at: Option<usize>,
        /// Images the block scan counts.
        images: usize,
    },
    Other(Frames<'a>),
}

/// [`judged_frames`], which may stop a GIF's reading between two frames when `stop`
/// says so (asked before each frame; `finishing` before the last, after which the rest
/// of the judging runs here) and resume one `from` the state it left. At least one
/// frame is read before a stop, so a chain of readings always ends.
pub fn judged_frames_resumable(
    bytes: &[u8],
    format: ImageFormat,
    limits: DecodeLimits,
    max_frames: usize,
    from: Option<&[u8]>,
    stop: &mut dyn FnMut(bool) -> bool,
) -> Result<Reading, DecodeError> {
    let corrupt = |e: image::ImageError| DecodeError::Corrupt(e.to_string());
    let mut candidates = Candidates {
        max: max_frames,
        kept: Vec::new(),
    };
    let (mut source, mut read, canvas) = match from {
        None => {
            let (canvas, scan) = checked_size(bytes, format, limits)?;
            let source = match scan {
                Some(scan) => {
                    let start = gif_blocks_start(bytes);
                    Source::Gif {
                        frames: Box::new(GifFrames::new(bytes, limits).map_err(corrupt)?),
                        header: start.unwrap_or(bytes.len()),
                        next_at: start,
                        images: scan.images,
                    }
                }
                None => Source::Other(frames(bytes, format, limits)?),
            };
            (source, 0, canvas)
        }
        Some(state) => {
            let stopped = resume::Stopped::decode(state)?;
            if format != ImageFormat::Gif {
                return Err(DecodeError::Corrupt(format!(
                    "{} cannot resume a GIF's reading",
                    format.name()
                )));
            }
            let canvas = u64::from(stopped.canvas.width) * u64::from(stopped.canvas.height);
            let next_at = Some(stopped.canvas.blocks_at);
            candidates.kept = stopped.candidates;
            let frames = GifFrames::resume(bytes, stopped.header, stopped.canvas, limits)
                .map_err(corrupt)?;
            let source = Source::Gif {
                frames: Box::new(frames),
                header: stopped.header,
                next_at,
                images: stopped.images,
            };
            (source, stopped.read, canvas.max(1))
        }
    };
    let readable = (MAX_PIXELS_READ / canvas).clamp(1, MAX_FRAMES_READ as u64) as usize;
    let canvas_bytes = canvas as usize * 4;
    let mut read_here = 0;
    loop {
        if read >= readable {
            if source.next().is_some() {
                return Err(DecodeError::TooManyFrames { read: readable });
            }
            break;
        }
        // Asked before every frame of a GIF (the glue learns a frame's cost between two
        // asks), heeded once a frame was read here and while the state stays small.
        let stop_at = match &source {
            Source::Gif {
                next_at, images, ..
            } => {
                let asked = stop(read + 1 >= *images);
                let fits =
                    resume::encoded_size(canvas_bytes, candidates.kept.len()) <= MAX_STATE_BYTES;
                // Only before an image the blocks hold: a resumed decoder must find one.
                let ahead = |&at: &usize| gif_blocks_after(bytes, at).is_some();
                next_at.filter(|at| asked && read_here > 0 && fits && ahead(at))
            }
            Source::Other(_) => None,
        };
        if let Some(at) = stop_at {
            return match source {
                Source::Gif {
                    frames,
                    header,
                    images,
                    ..
                } => {
                    let canvas = frames
                        .into_canvas(at)
                        .ok_or_else(|| DecodeError::Corrupt("stopped before a frame".into()))?;
                    let stopped = resume::Stopped {
                        read,
                        images,
                        header,
                        canvas,
                        candidates: candidates.kept,
                    };
                    Ok(Reading::Suspended {
                        state: stopped.encode(),
                    })
                }
                Source::Other(_) => Err(DecodeError::Corrupt("stopped unasked".into())),
            };
        }
        let Some(frame) = source.next() else {
            break;
        };
        let frame = frame.map_err(corrupt)?;
        if let Source::Gif { next_at, .. } = &mut source {
            *next_at = next_at.and_then(|at| gif_blocks_after(bytes, at));
        }
        let (numerator, denominator) = frame.delay().numer_denom_ms();
        let image = frame.into_buffer();
        candidates.offer(Candidate {
            index: read,
            delay_ms: numerator / denominator.max(1),
            signature: signature(&image),
            image,
        });
        read += 1;
        read_here += 1;
    }
    // Frames are chosen as coded (conversion keeps what is alike alike) and judged as
    // shown: in sRGB, under the file's colour description (APNG, animated WebP).
    let to_srgb = colour::description_of(bytes, format)
        .as_ref()
        .and_then(colour::ToSrgb::new);
    Ok(Reading::Done(
        candidates
            .kept
            .into_iter()
            .map(|candidate| {
                let image = DynamicImage::ImageRgba8(candidate.image);
                Frame {
                    index: candidate.index,
                    image: match &to_srgb {
                        Some(to_srgb) => to_srgb.apply(image),
                        None => image,
                    },
                }
            })
            .collect(),
    ))
}

impl Iterator for Source<'_> {
    type Item = image::ImageResult<image::Frame>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Source::Gif { frames, .. } => frames.next(),
            Source::Other(frames) => frames.next(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::codecs::gif::GifEncoder;
    use image::{Delay, Rgba, RgbaImage};

    use crate::media::decode::FRAME_TEST_LIMITS as LIMITS;

    pub(crate) fn gif(frames: &[(RgbaImage, u32)]) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let mut encoder = GifEncoder::new_with_speed(&mut out, 30);
            encoder
                .set_repeat(image::codecs::gif::Repeat::Infinite)
                .unwrap();
            for (image, ms) in frames {
                let delay = Delay::from_numer_denom_ms(*ms, 1);
                encoder
                    .encode_frame(image::Frame::from_parts(image.clone(), 0, 0, delay))
                    .unwrap();
            }
        }
        out
    }

    fn flat(value: u8) -> RgbaImage {
        RgbaImage::from_pixel(32, 24, Rgba([value, value, value, 255]))
    }

    #[test]
    fn a_frame_declared_zero_ms_weighs_as_the_100_ms_a_browser_shows_it() {
        // Three benign frames shown a second each, a little unlike the first; one frame
        // far unlike it declared 0 ms, which browsers show for 100 ms. Weighed as 10 ms it
        // lost to the benign ones; weighed as shown it is chosen.
        let flat = |v: u8| vec![v; 256];
        let signatures = [flat(100), flat(110), flat(90), flat(105), flat(140)];
        let chosen = choose(&signatures, &[1000, 1000, 1000, 1000, 0], 3);
        assert!(chosen.contains(&4), "{chosen:?}");
        assert_eq!(shown_ms(0), 100);
        assert_eq!(shown_ms(10), 100);
        assert_eq!(shown_ms(20), 20);
    }

    #[test]
    fn the_first_and_the_frames_unlike_it_are_chosen() {
        let bytes = gif(&[
            (flat(10), 80),
            (flat(12), 80),
            (flat(200), 5000),
            (flat(201), 100),
            (flat(100), 100),
        ]);
        assert!(judged_by_frames(&bytes, ImageFormat::Gif));
        let frames = judged_frames(&bytes, ImageFormat::Gif, LIMITS, 4).unwrap();
        let indices: Vec<usize> = frames.iter().map(|f| f.index).collect();
        // 1 looks like 0, 3 like 2: the first, the long bright one, the mid-grey one.
        assert_eq!(indices, [0, 2, 4]);
        let two = judged_frames(&bytes, ImageFormat::Gif, LIMITS, 2).unwrap();
        assert_eq!(two.iter().map(|f| f.index).collect::<Vec<_>>(), [0, 2]);
        assert_eq!(two[1].image.to_rgba8().get_pixel(5, 5)[0], 200);
    }

    #[test]
    fn the_frame_most_unlike_the_first_is_kept_wherever_it_comes() {
        // Many frames a little unlike each other, and one far unlike the first: chosen
        // first, last or between, with room for only one besides the first.
        for at in [1, 5, 11] {
            let frames: Vec<(RgbaImage, u32)> = (0..12)
                .map(|i| match i == at {
                    true => (flat(250), 100),
                    false => (flat(10 + 6 * i as u8), 100),
                })
                .collect();
            let bytes = gif(&frames);
            let chosen = judged_frames(&bytes, ImageFormat::Gif, LIMITS, 2).unwrap();
            let indices: Vec<usize> = chosen.iter().map(|f| f.index).collect();
            assert_eq!(indices, [0, at]);
        }
    }

    /// Reads `bytes` as a chain of instances would when each stops as soon as it may:
    /// each resumes from the state the one before left, with the bytes it never reads
    /// zeroed (as the job leaves them out). Returns the frames and how many stops.
    fn read_in_chain(bytes: &[u8], max_frames: usize) -> Result<(Vec<Frame>, usize), DecodeError> {
        let mut state: Option<Vec<u8>> = None;
        for stops in 0.. {
            let mut job = bytes.to_vec();
            if let Some(span) = state.as_deref().and_then(|s| unread_span(bytes, s)) {
                job[span].fill(0);
            }
            let reading = judged_frames_resumable(
                &job,
                ImageFormat::Gif,
                LIMITS,
                max_frames,
                state.as_deref(),
                &mut |_| true,
            );
            match reading? {
                Reading::Done(frames) => return Ok((frames, stops)),
                Reading::Suspended { state: next } => {
                    assert!(is_state(&next));
                    state = Some(next);
                }
            }
        }
        unreachable!()
    }

    #[test]
    fn a_gif_read_across_instances_gives_the_frames_of_one_reading() {
        let mut errors = 0;
        for seed in 1..=24 {
            let count = 2 + seed as usize % 7;
            let bytes = crate::media::gif::tests::varied_gif(seed, (40, 30), count);
            for max_frames in [1, 3, 16] {
                let whole = judged_frames(&bytes, ImageFormat::Gif, LIMITS, max_frames);
                let chained = read_in_chain(&bytes, max_frames);
                // A damaged frame ends the reading in error, wherever it is read.
                let (Ok(whole), Ok((chained, stops))) = (&whole, &chained) else {
                    assert_eq!(
                        whole.err().map(|e| e.to_string()),
                        chained.err().map(|e| e.to_string()),
                        "seed {seed}"
                    );
                    errors += 1;
                    continue;
                };
                // One frame per instance: a stop before each frame but the first.
                assert_eq!(*stops, count - 1, "seed {seed}");
                assert_eq!(chained.len(), whole.len(), "seed {seed}");
                for (chained, whole) in chained.iter().zip(whole.iter()) {
                    assert_eq!(chained.index, whole.index, "seed {seed}");
                    assert_eq!(chained.image, whole.image, "seed {seed}");
                }
            }
        }
        // (9 of the 72 readings end in a damaged frame's error.)
        assert!(errors <= 18, "most varied GIFs are read: {errors} errors");
        // Real frames too: every chosen frame the same as read in one instance.
        let bytes = gif(&[(flat(10), 80), (flat(200), 500), (flat(100), 80)]);
        let (chained, stops) = read_in_chain(&bytes, 4).unwrap();
        assert_eq!(stops, 2);
        assert_eq!(chained.len(), 3);
        assert_eq!(chained[1].image.to_rgba8().get_pixel(3, 3)[0], 200);
    }

    #[test]
    fn a_damaged_reading_state_is_refused_without_panicking() {
        let bytes = gif(&[(flat(10), 80), (flat(200), 500), (flat(100), 80)]);
        let mut stopped = None;
        let first =
            judged_frames_resumable(&bytes, ImageFormat::Gif, LIMITS, 4, None, &mut |_| true);
        if let Ok(Reading::Suspended { state }) = first {
            stopped = Some(state);
        }
        let state = stopped.expect("a stop after the first frame");
        let resume = |state: &[u8]| {
            judged_frames_resumable(
                &bytes,
                ImageFormat::Gif,
                LIMITS,
                4,
                Some(state),
                &mut |_| false,
            )
        };
        assert!(matches!(resume(&state), Ok(Reading::Done(frames)) if frames.len() == 3));
        for cut in 0..state.len() {
            assert!(resume(&state[..cut]).is_err(), "cut at {cut}");
        }
        let mut flipped = state.clone();
        for at in (0..flipped.len()).step_by(7) {
            flipped[at] ^= 0x5A;
            let _ = resume(&flipped);
            flipped[at] ^= 0x5A;
        }
        // A state with a canvas beyond the limits is refused before any frame.
        let mut large = state.clone();
        large[20..24].copy_from_slice(&5000u32.to_le_bytes());
        assert!(resume(&large).is_err());
        // Another format does not resume a GIF's reading.
        let other = judged_frames_resumable(
            &bytes,
            ImageFormat::Png,
            LIMITS,
            4,
            Some(&state),
            &mut |_| false,
        );
        assert!(other.is_err());
    }

    #[test]
    fn a_gif_still_past_its_screen_is_judged_on_the_canvas_a_browser_shows() {
        let bytes = crate::media::gif::tests::past_the_screen((1, 1), (10, 10), 0);
        assert_eq!(gif_scan(&bytes, 2).canvas, (74, 58));
        assert!(judged_by_frames(&bytes, ImageFormat::Gif));
        let frames = judged_frames(&bytes, ImageFormat::Gif, LIMITS, 4).unwrap();
        assert_eq!(frames.len(), 1);
        assert_eq!(
            (frames[0].image.width(), frames[0].image.height()),
            (74, 58)
        );
        // Its size is checked against the limits before any frame is decoded.
        let tight = DecodeLimits {
            max_pixels: 74 * 58 - 1,
            ..LIMITS
        };
        assert!(matches!(
            judged_frames(&bytes, ImageFormat::Gif, tight, 4),
            Err(DecodeError::TooLarge { width: 74, .. })
        ));
        assert!(check_gif_frames(&bytes, tight).is_err());
        // Within its screen, a still is one image, as before.
        let inside = crate::media::gif::tests::past_the_screen((64, 48), (0, 0), 0);
        assert!(!judged_by_frames(&inside, ImageFormat::Gif));
    }

    #[test]
    fn a_still_is_not_an_animation() {
        let still = gif(&[(flat(10), 0)]);
        assert!(!judged_by_frames(&still, ImageFormat::Gif));
        assert!(!judged_by_frames(b"\x89PNG\r\n\x1a\n", ImageFormat::Png));
    }

    #[test]
    fn animations_beyond_the_limits_are_refused_before_decoding() {
        let bytes = gif(&[(flat(10), 80), (flat(200), 80)]);
        let tight = DecodeLimits {
            max_pixels: 100,
            ..LIMITS
        };
        assert!(matches!(
            judged_frames(&bytes, ImageFormat::Gif, tight, 4),
            Err(DecodeError::TooLarge { .. })
        ));
    }

    #[test]
    fn gif_frames_are_counted_from_the_block_structure_as_the_decoder_sees_them() {
        for count in 1..=5usize {
            let frames: Vec<(RgbaImage, u32)> =
                (0..count).map(|i| (flat(40 * i as u8), 50)).collect();
            let bytes = gif(&frames);
            let decoded = super::frames(&bytes, ImageFormat::Gif, LIMITS)
                .unwrap()
                .count();
            assert_eq!(decoded, count);
            assert_eq!(gif_scan(&bytes, 10).images, count, "{count} frames");
            assert_eq!(gif_scan(&bytes, 2).images, count.min(2));
            // Damage anywhere never panics, and never counts more than there are.
            for cut in 0..bytes.len() {
                assert!(gif_scan(&bytes[..cut], 10).images <= count);
            }
            let mut flipped = bytes.clone();
            for i in 0..flipped.len() {
                flipped[i] ^= 0xA5;
                assert!(gif_scan(&flipped, 10).images <= 1 + flipped.len() / 10);
                flipped[i] ^= 0xA5;
            }
        }
        assert_eq!(gif_scan(b"GIF89a", 2).images, 0);
    }

    #[test]
    fn a_gif_frame_without_image_data_is_refused() {
        // Found by fuzzing: the `gif` crate reads the byte after an empty first data
        // sub-block as a length, so it reads the next blocks otherwise than their
        // structure says (and than a reading resumed at the next block would).
        let bytes = gif(&[(flat(10), 80), (flat(200), 80), (flat(100), 80)]);
        // The second image's descriptor, after its extensions.
        let mut second = gif_blocks_after(&bytes, gif_blocks_start(&bytes).unwrap()).unwrap();
        while bytes[second] == 0x21 {
            second = skip_sub_blocks(&bytes, second + 2).unwrap();
        }
        let data = second + 10 + table(bytes[second + 9]);
        let end = skip_sub_blocks(&bytes, data + 1).unwrap();
        let mut damaged = bytes[..data + 1].to_vec();
        damaged.push(0);
        damaged.extend_from_slice(&bytes[end..]);
        let scan = gif_scan(&damaged, usize::MAX);
        assert_eq!((scan.images, scan.empty_data), (3, true));
        assert!(!gif_scan(&bytes, usize::MAX).empty_data);
        assert!(matches!(
            judged_frames(&damaged, ImageFormat::Gif, LIMITS, 4),
            Err(DecodeError::Corrupt(why)) if why.contains("without image data")
        ));
    }

    #[test]
    fn a_gif_frame_declared_larger_than_the_limits_is_refused_before_decoding() {
        // Found by fuzzing: a 16×12 canvas whose first frame declares 62451×62451 made
        // the decoder ask for 15.6 GB.
        let mut bytes = gif(&[(flat(10), 80), (flat(200), 80)]);
        let descriptor = bytes.iter().position(|&b| b == 0x2C).unwrap();
        bytes[descriptor + 5..descriptor + 9].copy_from_slice(&[0xf3, 0xf3, 0xf3, 0xf3]);
        assert_eq!(gif_scan(&bytes, usize::MAX).largest, (62451, 62451));
        assert!(matches!(
            judged_frames(&bytes, ImageFormat::Gif, LIMITS, 4),
            Err(DecodeError::TooLarge { width: 62451, .. })
        ));
        assert!(check_gif_frames(&gif(&[(flat(1), 80)]), LIMITS).is_ok());
    }
}
