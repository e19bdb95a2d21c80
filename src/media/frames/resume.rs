//! Where a GIF's reading stopped, so that another instance reads on: an animation may
//! take more CPU to read than one instance has (about 20 frames of 400×300 fit in one
//! beside the rest of its work), and a frame cannot be drawn without every frame before
//! it, so the canvas travels, with the frames kept so far as candidates to judge.
//!
//! ```text
//! "EMG1" | frames read: u32 | images the block scan counts: u32 | header length: u32
//!        | next blocks at: u32 | canvas width: u32 | height: u32 | canvas RGBA
//!        | candidates: u32 | each: index: u32 | delay ms: u32 | signature | RGBA
//! ```
//!
//! All little-endian; every picture is the canvas's size. The job leaves out the bytes
//! between the header and the next blocks ([`unread_span`]): the resumed decoder never
//! reads them.

use super::{Candidate, SIGNATURE_BYTES};
use crate::media::decode::DecodeError;
use crate::media::gif::Canvas;
use image::RgbaImage;
use std::ops::Range;

const MAGIC: &[u8; 4] = b"EMG1";

/// A GIF's reading stopped between two frames.
#[derive(Debug)]
pub(super) struct Stopped {
    /// Frames read so far (the index of the next).
    pub read: usize,
    /// Images the block scan counted in the whole file (the last is read with the
    /// rest of the judging's CPU kept).
    pub images: usize,
    /// The header's and global palette's length: the decoder reads them first.
    pub header: usize,
    pub canvas: Canvas,
    pub candidates: Vec<Candidate>,
}

/// Whether `state` is a GIF reading's (not a JPEG decode's).
pub fn is_state(state: &[u8]) -> bool {
    state.starts_with(MAGIC)
}

/// The bytes of `image` a reading resumed from `state` never reads: between the header
/// and the next frame's blocks.
pub fn unread_span(image: &[u8], state: &[u8]) -> Option<Range<usize>> {
    let stopped = Stopped::decode(state).ok()?;
    let span = stopped.header..stopped.canvas.blocks_at;
    (span.start < span.end && span.end <= image.len()).then_some(span)
}

/// The encoded size of a state holding `candidates` besides the canvas of `canvas_bytes`.
pub(super) fn encoded_size(canvas_bytes: usize, candidates: usize) -> usize {
    // The magic, six numbers and the candidates' count.
    MAGIC.len() + 7 * 4 + canvas_bytes + candidates * (8 + SIGNATURE_BYTES + canvas_bytes)
}

fn damaged() -> DecodeError {
    DecodeError::Corrupt("damaged GIF reading state".into())
}

impl Stopped {
    pub fn encode(&self) -> Vec<u8> {
        let canvas = &self.canvas;
        let mut out = Vec::with_capacity(encoded_size(canvas.pixels.len(), self.candidates.len()));
        out.extend_from_slice(MAGIC);
        for value in [
            self.read,
            self.images,
            self.header,
            canvas.blocks_at,
            canvas.width as usize,
            canvas.height as usize,
        ] {
            out.extend_from_slice(&(value as u32).to_le_bytes());
        }
        out.extend_from_slice(&canvas.pixels);
        out.extend_from_slice(&(self.candidates.len() as u32).to_le_bytes());
        for candidate in &self.candidates {
            out.extend_from_slice(&(candidate.index as u32).to_le_bytes());
            out.extend_from_slice(&candidate.delay_ms.to_le_bytes());
            out.extend_from_slice(&candidate.signature);
            out.extend_from_slice(candidate.image.as_raw());
        }
        out
    }

    /// Reads a state, refusing one whose parts do not fit each other (never trusting a
    /// size it declares beyond the bytes it has).
    pub fn decode(bytes: &[u8]) -> Result<Stopped, DecodeError> {
        let mut r = Reader(bytes.strip_prefix(MAGIC).ok_or_else(damaged)?);
        let (read, images, header, blocks_at) =
            (r.number()?, r.number()?, r.number()?, r.number()?);
        let (width, height) = (r.number()? as u32, r.number()? as u32);
        let canvas_bytes = (width as usize)
            .checked_mul(height as usize)
            .and_then(|pixels| pixels.checked_mul(4))
            .ok_or_else(damaged)?;
        let pixels = r.take(canvas_bytes)?.to_vec();
        let count = r.number()?;
        // Each candidate holds a canvas: a count beyond the bytes is refused before
        // anything is allocated for it.
        if count.saturating_mul(canvas_bytes + 8 + SIGNATURE_BYTES) > r.0.len()
            || header > blocks_at
        {
            return Err(damaged());
        }
        let mut candidates = Vec::with_capacity(count);
        for _ in 0..count {
            let index = r.number()?;
            let delay_ms = r.number()? as u32;
            let signature = r.take(SIGNATURE_BYTES)?.to_vec();
            let image = RgbaImage::from_raw(width, height, r.take(canvas_bytes)?.to_vec())
                .ok_or_else(damaged)?;
            candidates.push(Candidate {
                index,
                delay_ms,
                signature,
                image,
            });
        }
        if !r.0.is_empty() {
            return Err(damaged());
        }
        Ok(Stopped {
            read,
            images,
            header,
            canvas: Canvas {
                width,
                height,
                pixels,
                blocks_at,
            },
            candidates,
        })
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let (head, rest) = self.0.split_at_checked(n).ok_or_else(damaged)?;
        self.0 = rest;
        Ok(head)
    }
    fn number(&mut self) -> Result<usize, DecodeError> {
        let (head, rest) = self.0.split_first_chunk::<4>().ok_or_else(damaged)?;
        self.0 = rest;
        Ok(u32::from_le_bytes(*head) as usize)
    }
}
