//! A sampled decode stopped between two rows of MCUs, in the form another instance
//! resumes it from. The image itself travels beside it, so the state only points into
//! it: where the frame header, the scan and every table segment before it are, the bit
//! reader's position, the DC predictors, and the samples gathered so far.
//!
//! ```text
//! "EMD2" | frame at: u32 | scan at: u32 | tables: u16, u32 each | MCU row: u32
//!        | MCU: u32 | bit position: u32 | bit buffer: u64 | bit count: u8
//!        | at marker: u8 | predictors: u8, i32 each
//!        | components: u8, then each: samples, then preview, each a plane
//! plane: length: u32 | fill: u8 | stored: u32 | that many bytes (the rest are the fill)
//! ```
//!
//! A progressive decode ([`super::progressive`]) stops between two bands of MCU rows
//! instead, and its state names every scan, each with its own reader:
//!
//! ```text
//! "EMP2" | frame at: u32 | segments (DQT, DHT, DRI, SOS in file order): u16, u32 each
//!        | next MCU row: u32 | scans: u8, then each: bit position: u32
//!        | bit buffer: u64 | bit count: u8 | at marker: u8 | EOB run: u32 | MCU: u32
//!        | predictors: u8, i32 each
//!        | components as above
//! ```
//!
//! All little-endian. A state is checked whole before use (a damaged one is
//! [`JpegError::Corrupt`], never a panic); the resuming decoder also checks that it fits
//! the image (markers where the state says, sample counts the plan gives).
//!
//! A state travels to another instance, and reading a job costs that instance CPU
//! (1.1–3 ms per MB under Viceroy, likely the fresh pages it lands in), so it is kept
//! small: a plane is filled row by row, and its rows not yet decoded (all one value) are
//! not stored; and [`unread_span`] names the image's bytes the resumed decode will not read,
//! which the job leaves out.

use super::huffman::BitsState;
use super::{segment, JpegError};
use std::ops::Range;

/// Version 2: planes without their undecoded tail (version 1, with it, is refused: only
/// instances of one service version exchange states, except across a deploy).
const MAGIC: &[u8; 4] = b"EMD2";
const BANDS_MAGIC: &[u8; 4] = b"EMP2";
/// Table segments a state can name; a file with more is decoded in one instance.
pub(super) const MAX_TABLE_SEGMENTS: usize = 4096;
/// Scans a progressive decode reads (libjpeg's scripts use about ten); a file with more
/// is decoded another way.
pub(super) const MAX_SCANS: usize = 128;

/// Per component: the wanted samples and the preview plane gathered so far.
pub(super) type Planes = Vec<(Plane, Plane)>;

/// A plane as a state carries it: its bytes up to the last that differs from the
/// `fill` after it (a plane not yet decoded to its end holds its initial value there).
#[derive(Debug, PartialEq)]
pub(super) struct Plane {
    pub length: usize,
    pub fill: u8,
    pub head: Vec<u8>,
}

impl Plane {
    /// `bytes` without the run of its last value at its end (moved, not copied).
    pub fn compact(mut bytes: Vec<u8>) -> Plane {
        let length = bytes.len();
        let fill = bytes.last().copied().unwrap_or(0);
        let head = bytes
            .iter()
            .rposition(|&b| b != fill)
            .map_or(0, |last| last + 1);
        bytes.truncate(head);
        Plane {
            length,
            fill,
            head: bytes,
        }
    }

    /// The whole plane, when its length is the `expected` one (checked before anything
    /// is allocated for it: the length comes from the state).
    pub fn expand(self, expected: usize) -> Option<Vec<u8>> {
        if self.length != expected || self.head.len() > expected {
            return None;
        }
        let mut whole = self.head;
        whole.resize(expected, self.fill);
        Some(whole)
    }
}

/// Where a scan stopped.
#[derive(Debug, PartialEq)]
pub(super) struct ScanPosition {
    /// The next MCU row, and the MCUs decoded before it (restart intervals count them).
    pub mcu_y: u32,
    pub mcu: u32,
    pub bits: BitsState,
    pub predictors: Vec<i32>,
}

/// Everything a resuming decoder needs besides the image.
#[derive(Debug, PartialEq)]
pub(super) struct Stopped {
    /// Byte offsets of the frame header's marker, the scan header's marker, and every
    /// DQT, DHT and DRI marker before the scan, in file order.
    pub frame_at: u32,
    pub scan_at: u32,
    pub tables_at: Vec<u32>,
    pub scan: ScanPosition,
    /// Per component: the wanted samples and the preview plane so far.
    pub planes: Planes,
}

impl Stopped {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + 4 * self.tables_at.len() + planes_size(&self.planes));
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.frame_at.to_le_bytes());
        out.extend_from_slice(&self.scan_at.to_le_bytes());
        out.extend_from_slice(&(self.tables_at.len() as u16).to_le_bytes());
        for at in &self.tables_at {
            out.extend_from_slice(&at.to_le_bytes());
        }
        let scan = &self.scan;
        out.extend_from_slice(&scan.mcu_y.to_le_bytes());
        out.extend_from_slice(&scan.mcu.to_le_bytes());
        write_bits(&mut out, &scan.bits);
        write_predictors(&mut out, &scan.predictors);
        write_planes(&mut out, &self.planes);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Stopped, JpegError> {
        let mut r = Reader(bytes.strip_prefix(MAGIC).ok_or(BAD)?);
        let frame_at = r.u32()?;
        let scan_at = r.u32()?;
        let tables = usize::from(r.u16()?);
        if tables > MAX_TABLE_SEGMENTS {
            return Err(BAD);
        }
        let tables_at = (0..tables).map(|_| r.u32()).collect::<Result<_, _>>()?;
        let mcu_y = r.u32()?;
        let mcu = r.u32()?;
        let bits = r.bits()?;
        let predictors = r.predictors()?;
        let planes = r.planes()?;
        if !r.0.is_empty() {
            return Err(BAD);
        }
        Ok(Stopped {
            frame_at,
            scan_at,
            tables_at,
            scan: ScanPosition {
                mcu_y,
                mcu,
                bits,
                predictors,
            },
            planes,
        })
    }
}

/// Where one scan of a progressive decode stands between two bands.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct ScanCursor {
    pub bits: BitsState,
    /// Blocks left in an end-of-band run.
    pub eobrun: u32,
    /// MCUs decoded (restart intervals count them).
    pub mcu: u32,
    pub predictors: Vec<i32>,
}

/// A progressive decode stopped between two bands.
#[derive(Debug, PartialEq)]
pub(super) struct StoppedBands {
    pub frame_at: u32,
    /// Byte offsets of every DQT, DHT, DRI and SOS marker, in file order.
    pub segments_at: Vec<u32>,
    /// The first MCU row of the next band.
    pub next_row: u32,
    pub cursors: Vec<ScanCursor>,
    pub planes: Planes,
}

impl StoppedBands {
    /// Whether `state` is a progressive decode's.
    pub fn is_one(state: &[u8]) -> bool {
        state.starts_with(BANDS_MAGIC)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            64 + 4 * self.segments_at.len() + 48 * self.cursors.len() + planes_size(&self.planes),
        );
        out.extend_from_slice(BANDS_MAGIC);
        out.extend_from_slice(&self.frame_at.to_le_bytes());
        out.extend_from_slice(&(self.segments_at.len() as u16).to_le_bytes());
        for at in &self.segments_at {
            out.extend_from_slice(&at.to_le_bytes());
        }
        out.extend_from_slice(&self.next_row.to_le_bytes());
        out.push(self.cursors.len() as u8);
        for cursor in &self.cursors {
            write_bits(&mut out, &cursor.bits);
            out.extend_from_slice(&cursor.eobrun.to_le_bytes());
            out.extend_from_slice(&cursor.mcu.to_le_bytes());
            write_predictors(&mut out, &cursor.predictors);
        }
        write_planes(&mut out, &self.planes);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<StoppedBands, JpegError> {
        let mut r = Reader(bytes.strip_prefix(BANDS_MAGIC).ok_or(BAD)?);
        let frame_at = r.u32()?;
        let segments = usize::from(r.u16()?);
        if segments > MAX_TABLE_SEGMENTS + MAX_SCANS {
            return Err(BAD);
        }
        let segments_at = (0..segments).map(|_| r.u32()).collect::<Result<_, _>>()?;
        let next_row = r.u32()?;
        let scans = usize::from(r.u8()?);
        if scans > MAX_SCANS {
            return Err(BAD);
        }
        let cursors = (0..scans)
            .map(|_| {
                Ok(ScanCursor {
                    bits: r.bits()?,
                    eobrun: r.u32()?,
                    mcu: r.u32()?,
                    predictors: r.predictors()?,
                })
            })
            .collect::<Result<_, JpegError>>()?;
        let planes = r.planes()?;
        if !r.0.is_empty() {
            return Err(BAD);
        }
        Ok(StoppedBands {
            frame_at,
            segments_at,
            next_row,
            cursors,
            planes,
        })
    }
}

fn write_bits(out: &mut Vec<u8>, bits: &BitsState) {
    out.extend_from_slice(&(bits.position as u32).to_le_bytes());
    out.extend_from_slice(&bits.buffer.to_le_bytes());
    out.push(bits.count as u8);
    out.push(u8::from(bits.at_marker));
}

fn write_predictors(out: &mut Vec<u8>, predictors: &[i32]) {
    out.push(predictors.len() as u8);
    for p in predictors {
        out.extend_from_slice(&p.to_le_bytes());
    }
}

fn planes_size(planes: &Planes) -> usize {
    let size = |plane: &Plane| 9 + plane.head.len();
    planes.iter().map(|(s, p)| size(s) + size(p)).sum()
}

fn write_planes(out: &mut Vec<u8>, planes: &Planes) {
    out.push(planes.len() as u8);
    for (samples, preview) in planes {
        for plane in [samples, preview] {
            out.extend_from_slice(&(plane.length as u32).to_le_bytes());
            out.push(plane.fill);
            out.extend_from_slice(&(plane.head.len() as u32).to_le_bytes());
            out.extend_from_slice(&plane.head);
        }
    }
}

/// The bytes of `image` a decode resumed from `state` will not read: the scan's
/// entropy-coded data before its reader's position (the rows already decoded). The
/// reader only moves forward, and the tables, frame and scan header the state points at
/// lie outside it. None when the state does not parse, and for a progressive decode's:
/// image-rs's JPEG decoder, which reads the header of every job's image, walks a
/// progressive file's scans and refuses one with a hole in them.
pub fn unread_span(image: &[u8], state: &[u8]) -> Option<Range<usize>> {
    if StoppedBands::is_one(state) {
        return None;
    }
    let stopped = Stopped::decode(state).ok()?;
    let position = stopped.scan.bits.position;
    match segment(image, stopped.scan_at as usize) {
        // The scan's data starts just after its header.
        Ok((0xDA, _, start)) if start < position && position <= image.len() => {
            Some(start..position)
        }
        _ => None,
    }
}

const BAD: JpegError = JpegError::Corrupt("damaged decode state");

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], JpegError> {
        let (head, rest) = self.0.split_first_chunk::<N>().ok_or(BAD)?;
        self.0 = rest;
        Ok(*head)
    }
    fn u8(&mut self) -> Result<u8, JpegError> {
        Ok(self.take::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, JpegError> {
        Ok(u16::from_le_bytes(self.take()?))
    }
    fn u32(&mut self) -> Result<u32, JpegError> {
        Ok(u32::from_le_bytes(self.take()?))
    }
    fn i32(&mut self) -> Result<i32, JpegError> {
        Ok(i32::from_le_bytes(self.take()?))
    }
    fn u64(&mut self) -> Result<u64, JpegError> {
        Ok(u64::from_le_bytes(self.take()?))
    }
    fn bits(&mut self) -> Result<BitsState, JpegError> {
        Ok(BitsState {
            position: self.u32()? as usize,
            buffer: self.u64()?,
            count: u32::from(self.u8()?),
            at_marker: match self.u8()? {
                0 => false,
                1 => true,
                _ => return Err(BAD),
            },
        })
    }
    fn predictors(&mut self) -> Result<Vec<i32>, JpegError> {
        (0..self.u8()?).map(|_| self.i32()).collect()
    }
    fn planes(&mut self) -> Result<Planes, JpegError> {
        (0..self.u8()?)
            .map(|_| Ok((self.plane()?, self.plane()?)))
            .collect()
    }
    fn plane(&mut self) -> Result<Plane, JpegError> {
        let (length, fill, stored) = (self.u32()? as usize, self.u8()?, self.u32()? as usize);
        if stored > length || self.0.len() < stored {
            return Err(BAD);
        }
        let (head, rest) = self.0.split_at(stored);
        self.0 = rest;
        Ok(Plane {
            length,
            fill,
            head: head.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plane(bytes: Vec<u8>) -> Plane {
        Plane::compact(bytes)
    }

    fn sample() -> Stopped {
        Stopped {
            frame_at: 20,
            scan_at: 600,
            tables_at: vec![2, 70, 140],
            scan: ScanPosition {
                mcu_y: 3,
                mcu: 48,
                bits: BitsState {
                    position: 900,
                    buffer: 0xABCD << 48,
                    count: 16,
                    at_marker: false,
                },
                predictors: vec![-5, 7, 0],
            },
            planes: vec![
                (plane(vec![1, 2, 3]), plane(vec![4; 10])),
                (plane(vec![]), plane(vec![9])),
                (plane(vec![5]), plane(vec![])),
            ],
        }
    }

    fn bands() -> StoppedBands {
        let cursor = |position, eobrun| ScanCursor {
            bits: BitsState {
                position,
                buffer: 0x8000 << 48,
                count: 1,
                at_marker: true,
            },
            eobrun,
            mcu: 12,
            predictors: vec![3; (position % 3) + 1],
        };
        StoppedBands {
            frame_at: 20,
            segments_at: vec![2, 70, 600, 1400],
            next_row: 5,
            cursors: vec![cursor(610, 0), cursor(1410, 31)],
            planes: vec![
                (plane(vec![1, 2]), plane(vec![3])),
                (plane(vec![4]), plane(vec![5, 6, 128, 128])),
            ],
        }
    }

    #[test]
    fn a_state_round_trips() {
        let state = sample();
        assert_eq!(Stopped::decode(&state.encode()).unwrap(), state);
        let bands = bands();
        assert!(StoppedBands::is_one(&bands.encode()) && !StoppedBands::is_one(&state.encode()));
        assert_eq!(StoppedBands::decode(&bands.encode()).unwrap(), bands);
    }

    #[test]
    fn damaged_states_are_refused_without_panicking() {
        let bytes = bands().encode();
        for cut in 0..bytes.len() {
            assert!(StoppedBands::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        for at in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[at] ^= 0xFF;
            let _ = StoppedBands::decode(&flipped);
        }
        let bytes = sample().encode();
        for cut in 0..bytes.len() {
            assert!(Stopped::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Stopped::decode(&longer).is_err());
        for at in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[at] ^= 0xFF;
            let _ = Stopped::decode(&flipped);
        }
    }
}
