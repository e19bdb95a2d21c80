//! A GIF's frames as a browser shows them: each frame's palette indices (LZW-decoded by
//! the `gif` crate, which image-rs uses too) drawn over the canvas that the previous
//! frames and their disposal methods left.
//!
//! image-rs's animation reader does the same drawing, but it first expands every index to
//! RGBA in a buffer of its own, then draws pixel by pixel through bounds-checked lookups
//! into a new canvas-sized buffer. Here each index goes through a 256-entry table
//! straight onto the canvas: an 8-frame 400×300 GIF reads in 8.6 ms instead of 13.1 in
//! Wasm (Zen 4, `examples/stages.rs`), in the sibling instance whose CPU it bounds.
//!
//! The frames are image-rs's (its reader is the reference in the tests): transparent
//! pixels show what is under them; disposal restores the frame's rectangle to
//! transparent (`Background`, as browsers do, ignoring the background colour) or to what
//! it was before (`Previous`). Except in two things, where Chromium differs from
//! image-rs and is followed: a first frame that reaches past the logical screen grows
//! the canvas to hold it (`frames::GifImages::canvas`), where image-rs clips it (a GIF
//! declaring a 1×1 screen would be judged on one pixel of a picture the browser shows
//! whole); and an index beyond the palette is opaque black, where image-rs shows what is
//! under it.
//!
//! A reading may stop between two frames and go on elsewhere ([`GifFrames::into_canvas`],
//! [`GifFrames::resume`]): the canvas is the whole drawing state, since each frame's
//! disposal is applied as soon as it is drawn.

use super::decode::DecodeLimits;
use gif::{ColorOutput, DecodeOptions, DisposalMethod};
use image::error::{DecodingError, ImageFormatHint, LimitError, LimitErrorKind};
use image::{Delay, ImageError, ImageResult, RgbaImage};
use std::io::{Chain, Cursor, Read};

/// The bytes the decoder reads: the whole file, or (resumed) its header and global
/// palette followed by the blocks from where another reading stopped.
type Source<'a> = Chain<Cursor<&'a [u8]>, Cursor<&'a [u8]>>;

/// The frames of a GIF, drawn in order.
pub struct GifFrames<'a> {
    decoder: gif::Decoder<Source<'a>>,
    width: u32,
    height: u32,
    /// What the next frame is drawn over: the previous frames after their disposal.
    canvas: Vec<u8>,
    /// The current frame's palette indices (reused from frame to frame).
    indices: Vec<u8>,
    /// An error ends the frames.
    ended: bool,
    /// The canvas the first frame may grow to.
    limits: DecodeLimits,
    /// Whether the canvas has its size (from the first frame).
    sized: bool,
}

/// Where a GIF's reading stopped: the canvas the next frame is drawn over, and the
/// offset in the file where that frame's blocks start.
#[derive(Debug)]
pub struct Canvas {
    pub width: u32,
    pub height: u32,
    /// RGBA, row by row.
    pub pixels: Vec<u8>,
    pub blocks_at: usize,
}

fn decoding_error(e: gif::DecodingError) -> ImageError {
    match e {
        gif::DecodingError::Io(e) => ImageError::IoError(e),
        other => ImageError::Decoding(DecodingError::new(
            ImageFormatHint::Exact(image::ImageFormat::Gif),
            other,
        )),
    }
}

impl<'a> GifFrames<'a> {
    /// Reads the GIF's header; no frame is decoded yet. The canvas is allocated with the
    /// first, at the size it shows, which must be within `limits` (the caller checks the
    /// frames' declared sizes before: `frames::check_gif_frames`).
    pub fn new(bytes: &'a [u8], limits: DecodeLimits) -> ImageResult<Self> {
        let decoder = Self::decoder(Cursor::new(bytes).chain(Cursor::new(&[])))?;
        let (width, height) = (u32::from(decoder.width()), u32::from(decoder.height()));
        Ok(GifFrames {
            decoder,
            width,
            height,
            canvas: Vec::new(),
            indices: Vec::new(),
            ended: false,
            limits,
            sized: false,
        })
    }

    /// Reads on from where another reading stopped (`Canvas::blocks_at`, after at least
    /// one frame): the decoder reads the header and global palette (the file's first
    /// `header` bytes), then the blocks from there, and draws over the canvas as those
    /// frames left it. The bytes between are never read.
    pub fn resume(
        bytes: &'a [u8],
        header: usize,
        at: Canvas,
        limits: DecodeLimits,
    ) -> ImageResult<Self> {
        let (Some(head), Some(rest)) = (bytes.get(..header), bytes.get(at.blocks_at..)) else {
            return Err(ImageError::Decoding(DecodingError::new(
                ImageFormatHint::Exact(image::ImageFormat::Gif),
                "a resumed reading past the end of the file",
            )));
        };
        let sized = u64::from(at.width) * u64::from(at.height) * 4;
        if limits.check_rgba(at.width, at.height).is_err() || sized != at.pixels.len() as u64 {
            return Err(ImageError::Limits(LimitError::from_kind(
                LimitErrorKind::DimensionError,
            )));
        }
        Ok(GifFrames {
            decoder: Self::decoder(Cursor::new(head).chain(Cursor::new(rest)))?,
            width: at.width,
            height: at.height,
            canvas: at.pixels,
            indices: Vec::new(),
            ended: false,
            limits,
            sized: true,
        })
    }

    fn decoder(source: Source<'a>) -> ImageResult<gif::Decoder<Source<'a>>> {
        let mut options = DecodeOptions::new();
        options.set_color_output(ColorOutput::Indexed);
        options.read_info(source).map_err(decoding_error)
    }

    /// The canvas as the frames so far left it (nothing before the first frame), for a
    /// reading that goes on elsewhere from `blocks_at`: where the next frame's blocks
    /// start (`frames::gif_blocks_after`).
    pub fn into_canvas(self, blocks_at: usize) -> Option<Canvas> {
        self.sized.then_some(Canvas {
            width: self.width,
            height: self.height,
            pixels: self.canvas,
            blocks_at,
        })
    }

    fn next_frame(&mut self) -> ImageResult<Option<image::Frame>> {
        let Some(frame) = self.decoder.next_frame_info().map_err(decoding_error)? else {
            return Ok(None);
        };
        let (left, top) = (usize::from(frame.left), usize::from(frame.top));
        let (frame_width, frame_height) = (usize::from(frame.width), usize::from(frame.height));
        let dispose = frame.dispose;
        let delay_ms = u32::from(frame.delay) * 10;
        let transparent = frame.transparent;
        // Each index's colour as RGBA bytes in a u32, 0 (nothing drawn) for the
        // transparent index: opaque colours are never 0, their alpha byte is 255. An
        // index the palette does not hold is opaque black, as Chromium shows it (and
        // Pillow reads it); image-rs leaves what is under it, so a frame could keep the
        // previous frame's picture where the browser shows black.
        let mut colours = [u32::from_le_bytes([0, 0, 0, 255]); 256];
        let palette = self.decoder.palette().map_err(decoding_error)?;
        for (colour, rgb) in colours.iter_mut().zip(palette.chunks_exact(3)) {
            *colour = u32::from_le_bytes([rgb[0], rgb[1], rgb[2], 255]);
        }
        if let Some(transparent) = transparent {
            colours[usize::from(transparent)] = 0;
        }
        // The indices take what the frame declares: within the limits, even where the
        // caller's block scan saw another structure than the decoder (a damaged file).
        if self
            .limits
            .check_rgba(frame_width as u32, frame_height as u32)
            .is_err()
        {
            return Err(ImageError::Limits(LimitError::from_kind(
                LimitErrorKind::DimensionError,
            )));
        }
        self.indices.clear();
        self.indices.resize(self.decoder.buffer_size(), 0);
        self.decoder
            .read_into_buffer(&mut self.indices)
            .map_err(decoding_error)?;

        if !self.sized {
            // The first frame: the screen grows to hold its rectangle, as in a browser.
            let right = (left + frame_width) as u32;
            let bottom = (top + frame_height) as u32;
            let (width, height) = (self.width.max(right), self.height.max(bottom));
            if self.limits.check_rgba(width, height).is_err() {
                return Err(ImageError::Limits(LimitError::from_kind(
                    LimitErrorKind::DimensionError,
                )));
            }
            (self.width, self.height) = (width, height);
            self.canvas = vec![0; width as usize * height as usize * 4];
            self.sized = true;
        }
        let (width, height) = (self.width as usize, self.height as usize);
        // The frame's rectangle on the canvas (a frame may reach beyond it: clipped).
        let columns = frame_width.min(width.saturating_sub(left));
        let rows = match columns {
            0 => 0,
            _ => frame_height.min(height.saturating_sub(top)),
        };
        let draw = |canvas: &mut [u8], indices: &[u8]| {
            for row in 0..rows {
                let from = &indices[row * frame_width..][..columns];
                let at = ((top + row) * width + left) * 4;
                let to = &mut canvas[at..at + columns * 4];
                for (pixel, &index) in to.chunks_exact_mut(4).zip(from) {
                    let colour = colours[usize::from(index)];
                    if colour != 0 {
                        pixel.copy_from_slice(&colour.to_le_bytes());
                    }
                }
            }
        };
        let shown = match dispose {
            // Kept: what is shown is what the next frame is drawn over.
            DisposalMethod::Any | DisposalMethod::Keep => {
                draw(&mut self.canvas, &self.indices);
                self.canvas.clone()
            }
            DisposalMethod::Background => {
                draw(&mut self.canvas, &self.indices);
                let shown = self.canvas.clone();
                for row in 0..rows {
                    let at = ((top + row) * width + left) * 4;
                    self.canvas[at..at + columns * 4].fill(0);
                }
                shown
            }
            DisposalMethod::Previous => {
                let mut shown = self.canvas.clone();
                draw(&mut shown, &self.indices);
                shown
            }
        };
        let image = RgbaImage::from_raw(self.width, self.height, shown).ok_or_else(|| {
            ImageError::Decoding(DecodingError::from_format_hint(ImageFormatHint::Exact(
                image::ImageFormat::Gif,
            )))
        })?;
        Ok(Some(image::Frame::from_parts(
            image,
            0,
            0,
            Delay::from_numer_denom_ms(delay_ms, 1),
        )))
    }
}

impl Iterator for GifFrames<'_> {
    type Item = ImageResult<image::Frame>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.ended {
            return None;
        }
        let next = self.next_frame().transpose();
        self.ended = !matches!(next, Some(Ok(_)));
        next
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use image::codecs::gif::GifDecoder;
    use image::{AnimationDecoder, ImageDecoder};
    use std::borrow::Cow;

    use crate::media::decode::FRAME_TEST_LIMITS as LIMITS;

    /// A deterministic byte stream (xorshift).
    struct Noise(u64);
    impl Noise {
        fn byte(&mut self) -> u8 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 32) as u8
        }
        fn below(&mut self, n: u16) -> u16 {
            (u16::from(self.byte()) << 8 | u16::from(self.byte())) % n.max(1)
        }
    }

    /// A GIF of frames with every feature that changes what is drawn: offsets (some
    /// beyond the canvas), sizes, local and global palettes (some shorter than the
    /// indices used), transparency, each disposal method, interlacing.
    pub(crate) fn varied_gif(seed: u64, canvas: (u16, u16), frames: usize) -> Vec<u8> {
        let mut noise = Noise(seed);
        let mut global: Vec<u8> = (0..3 * 16).map(|_| noise.byte()).collect();
        global.truncate(3 * 13);
        let mut out = Vec::new();
        {
            let mut encoder = gif::Encoder::new(&mut out, canvas.0, canvas.1, &global).unwrap();
            for i in 0..frames {
                // The first frame within the screen (beyond it, the canvas grows: see
                // `a_first_frame_past_the_screen_grows_the_canvas_as_in_a_browser`).
                let (width, height, left, top) = if i == 0 {
                    let width = 1 + noise.below(canvas.0);
                    let height = 1 + noise.below(canvas.1);
                    let left = noise.below(canvas.0 - width + 1);
                    (width, height, left, noise.below(canvas.1 - height + 1))
                } else {
                    let width = 1 + noise.below(canvas.0 + 4);
                    let height = 1 + noise.below(canvas.1 + 4);
                    (
                        width,
                        height,
                        noise.below(canvas.0 + 2),
                        noise.below(canvas.1 + 2),
                    )
                };
                let colours = [2usize, 7, 16, 64, 256][usize::from(noise.below(5))];
                let palette =
                    (i % 3 != 1).then(|| (0..3 * colours).map(|_| noise.byte()).collect());
                // Runs of one index, as real frames have, with some noise; within the
                // palette (beyond it, image-rs differs from browsers: see
                // `an_index_beyond_the_palette_is_opaque_black_as_in_chromium`).
                let held = palette
                    .as_ref()
                    .map_or(global.len() / 3, |p: &Vec<u8>| p.len() / 3);
                let mut index = 0u8;
                let buffer: Vec<u8> = (0..usize::from(width) * usize::from(height))
                    .map(|_| {
                        if noise.below(8) == 0 {
                            index = (usize::from(noise.byte()) % held.min(20)) as u8;
                        }
                        index
                    })
                    .collect();
                let frame = gif::Frame {
                    delay: noise.below(20),
                    dispose: [
                        DisposalMethod::Any,
                        DisposalMethod::Keep,
                        DisposalMethod::Background,
                        DisposalMethod::Previous,
                    ][usize::from(noise.below(4))],
                    transparent: (noise.below(3) > 0).then(|| noise.byte() % 20),
                    left,
                    top,
                    width,
                    height,
                    interlaced: noise.below(2) == 0,
                    palette,
                    buffer: Cow::Owned(buffer),
                    ..gif::Frame::default()
                };
                encoder.write_frame(&frame).unwrap();
            }
        }
        out
    }

    /// The frames read (each buffer and delay), and whether an error ended them.
    type Reading = (Vec<(RgbaImage, (u32, u32))>, bool);

    /// A GIF read by image-rs and here.
    fn both(bytes: &[u8]) -> [Reading; 2] {
        let read = |frames: &mut dyn Iterator<Item = ImageResult<image::Frame>>| {
            let mut read = Vec::new();
            for frame in frames {
                match frame {
                    Ok(frame) => {
                        let delay = frame.delay().numer_denom_ms();
                        read.push((frame.into_buffer(), delay));
                    }
                    Err(_) => return (read, true),
                }
            }
            (read, false)
        };
        let reference = match GifDecoder::new(Cursor::new(bytes)) {
            Ok(decoder) => read(&mut decoder.into_frames()),
            Err(_) => (Vec::new(), true),
        };
        let ours = match GifFrames::new(bytes, LIMITS) {
            Ok(mut frames) => read(&mut frames),
            Err(_) => (Vec::new(), true),
        };
        [reference, ours]
    }

    fn in_ms((numerator, denominator): (u32, u32)) -> u32 {
        numerator / denominator.max(1)
    }

    /// The same frames, delays and first error; `drawn`: the same pixels too (a
    /// changed byte may put indices beyond the palette, or the first frame past the
    /// screen, where the two differ on purpose).
    fn assert_same(bytes: &[u8], what: &str, drawn: bool) {
        // Past the limits, ours refuses what image-rs (without them) reads; the caller
        // checks the same limits first.
        if crate::media::frames::check_gif_frames(bytes, LIMITS).is_err() {
            return;
        }
        let [reference, ours] = both(bytes);
        assert_eq!(reference.1, ours.1, "{what}: an error in one reading only");
        assert_eq!(reference.0.len(), ours.0.len(), "{what}: frame count");
        if !drawn {
            return;
        }
        for (i, (a, b)) in reference.0.iter().zip(&ours.0).enumerate() {
            assert_eq!(a.0.dimensions(), b.0.dimensions(), "{what}: frame {i}");
            assert!(a.0 == b.0, "{what}: frame {i} differs");
            assert_eq!(in_ms(a.1), in_ms(b.1), "{what}: frame {i}'s delay");
        }
    }

    #[test]
    fn frames_are_drawn_as_image_rs_draws_them() {
        for seed in 1..=40u64 {
            let canvas = (1 + (seed * 7 % 50) as u16, 1 + (seed * 11 % 40) as u16);
            let bytes = varied_gif(seed, canvas, 2 + (seed % 7) as usize);
            assert_same(&bytes, &format!("seed {seed}"), true);
        }
    }

    #[test]
    fn damaged_gifs_fail_where_image_rs_fails() {
        let bytes = varied_gif(99, (30, 20), 6);
        for cut in (0..bytes.len()).step_by(7) {
            assert_same(&bytes[..cut], &format!("cut at {cut}"), true);
        }
        let mut noise = Noise(5);
        for _ in 0..200 {
            let mut damaged = bytes.clone();
            let at = usize::from(noise.below(bytes.len() as u16));
            damaged[at] ^= noise.byte() | 1;
            assert_same(&damaged, &format!("byte {at} changed"), false);
        }
    }

    /// One 64×48 frame at `offset` on a `screen`, opaque, index 1 (blue) but a red pixel
    /// at its top-left, then `more` 1×1 frames at the origin.
    pub(crate) fn past_the_screen(screen: (u16, u16), offset: (u16, u16), more: usize) -> Vec<u8> {
        let palette = [255, 0, 0, 0, 0, 255];
        let mut out = Vec::new();
        {
            let mut encoder = gif::Encoder::new(&mut out, screen.0, screen.1, &palette).unwrap();
            let mut buffer = vec![1u8; 64 * 48];
            buffer[0] = 0;
            let frame = gif::Frame {
                left: offset.0,
                top: offset.1,
                width: 64,
                height: 48,
                buffer: Cow::Owned(buffer),
                ..gif::Frame::default()
            };
            encoder.write_frame(&frame).unwrap();
            for _ in 0..more {
                let frame = gif::Frame {
                    width: 1,
                    height: 1,
                    buffer: Cow::Owned(vec![0]),
                    ..gif::Frame::default()
                };
                encoder.write_frame(&frame).unwrap();
            }
        }
        out
    }

    #[test]
    fn a_first_frame_past_the_screen_grows_the_canvas_as_in_a_browser() {
        // Headless Chromium shows these as 64×48 and 74×58 (`naturalWidth`), Pillow opens
        // them at those sizes; image-rs clips them to the 1×1 screen: a picture shown
        // whole would be judged on one pixel.
        for (offset, size) in [((0, 0), (64, 48)), ((10, 10), (74, 58))] {
            let bytes = past_the_screen((1, 1), offset, 0);
            let reference = GifDecoder::new(Cursor::new(&bytes[..])).unwrap();
            assert_eq!(reference.dimensions(), (1, 1), "image-rs clips");
            let frames: Vec<_> = GifFrames::new(&bytes, LIMITS).unwrap().collect();
            assert_eq!(frames.len(), 1);
            let frame = frames.into_iter().next().unwrap().unwrap().into_buffer();
            assert_eq!(frame.dimensions(), size);
            let (x, y) = (u32::from(offset.0), u32::from(offset.1));
            assert_eq!(frame.get_pixel(x, y).0, [255, 0, 0, 255]);
            assert_eq!(frame.get_pixel(x + 1, y + 1).0, [0, 0, 255, 255]);
            if x > 0 {
                assert_eq!(frame.get_pixel(0, 0).0, [0, 0, 0, 0], "outside the frame");
            }
        }
        // Later frames do not grow it; past the limits, the first frame is refused.
        let bytes = past_the_screen((1, 1), (0, 0), 2);
        for frame in GifFrames::new(&bytes, LIMITS).unwrap() {
            assert_eq!(frame.unwrap().buffer().dimensions(), (64, 48));
        }
        let tight = DecodeLimits {
            max_pixels: 1000,
            ..LIMITS
        };
        let mut frames = GifFrames::new(&bytes, tight).unwrap();
        assert!(matches!(frames.next(), Some(Err(ImageError::Limits(_)))));
        assert!(frames.next().is_none());
    }

    #[test]
    fn an_index_beyond_the_palette_is_opaque_black_as_in_chromium() {
        // A 4×1 frame over a 4-colour palette with LZW codes of 8 bits: indices 0 and 1
        // are colours, 5 and 200 beyond the palette. Headless Chromium draws them (read
        // back through a canvas) as 10,20,30 / 40,50,60 / opaque black / opaque black;
        // with 200 the transparent index, that pixel transparent.
        let palette = [10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120];
        for (transparent, third) in [(None, [0, 0, 0, 255]), (Some(200), [0, 0, 0, 0])] {
            let mut out = Vec::new();
            {
                let mut encoder = gif::Encoder::new(&mut out, 4, 1, &palette).unwrap();
                let frame = gif::Frame {
                    width: 4,
                    height: 1,
                    transparent,
                    buffer: Cow::Owned(vec![0, 1, 200, 5]),
                    ..gif::Frame::default()
                };
                encoder.write_frame(&frame).unwrap();
            }
            let frame = GifFrames::new(&out, LIMITS)
                .unwrap()
                .next()
                .unwrap()
                .unwrap()
                .into_buffer();
            let pixels: Vec<[u8; 4]> = frame.pixels().map(|p| p.0).collect();
            assert_eq!(
                pixels,
                [[10, 20, 30, 255], [40, 50, 60, 255], third, [0, 0, 0, 255]],
                "transparent {transparent:?}"
            );
        }
    }
}
