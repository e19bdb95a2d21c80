//! A sampled decode stopped between two rows of MCUs, in the form another instance
//! resumes it from. The image itself travels beside it, so the state only points into
//! it: where the frame header, the scan and every table segment before it are, the bit
//! reader's position, the DC predictors, and the samples gathered so far.
//!
//! ```text
//! "EMD1" | frame at: u32 | scan at: u32 | tables: u16, u32 each | MCU row: u32
//!        | MCU: u32 | bit position: u32 | bit buffer: u64 | bit count: u8
//!        | at marker: u8 | predictors: u8, i32 each
//!        | components: u8, then each: samples: u32 + bytes, preview: u32 + bytes
//! ```
//!
//! All little-endian. A state is checked whole before use (a damaged one is
//! [`JpegError::Corrupt`], never a panic); the resuming decoder also checks that it fits
//! the image (markers where the state says, sample counts the plan gives).

use super::huffman::BitsState;
use super::JpegError;

const MAGIC: &[u8; 4] = b"EMD1";
/// Table segments a state can name; a file with more is decoded in one instance.
pub(super) const MAX_TABLE_SEGMENTS: usize = 4096;

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
    pub planes: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Stopped {
    pub fn encode(&self) -> Vec<u8> {
        let sizes: usize = self.planes.iter().map(|(s, p)| 8 + s.len() + p.len()).sum();
        let mut out = Vec::with_capacity(64 + 4 * self.tables_at.len() + sizes);
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
        out.extend_from_slice(&(scan.bits.position as u32).to_le_bytes());
        out.extend_from_slice(&scan.bits.buffer.to_le_bytes());
        out.push(scan.bits.count as u8);
        out.push(u8::from(scan.bits.at_marker));
        out.push(scan.predictors.len() as u8);
        for p in &scan.predictors {
            out.extend_from_slice(&p.to_le_bytes());
        }
        out.push(self.planes.len() as u8);
        for (samples, preview) in &self.planes {
            for plane in [samples, preview] {
                out.extend_from_slice(&(plane.len() as u32).to_le_bytes());
                out.extend_from_slice(plane);
            }
        }
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
        let bits = BitsState {
            position: r.u32()? as usize,
            buffer: r.u64()?,
            count: u32::from(r.u8()?),
            at_marker: match r.u8()? {
                0 => false,
                1 => true,
                _ => return Err(BAD),
            },
        };
        let predictors = (0..r.u8()?).map(|_| r.i32()).collect::<Result<_, _>>()?;
        let planes = (0..r.u8()?)
            .map(|_| Ok((r.plane()?, r.plane()?)))
            .collect::<Result<_, JpegError>>()?;
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
    fn plane(&mut self) -> Result<Vec<u8>, JpegError> {
        let length = self.u32()? as usize;
        if self.0.len() < length {
            return Err(BAD);
        }
        let (plane, rest) = self.0.split_at(length);
        self.0 = rest;
        Ok(plane.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
                (vec![1, 2, 3], vec![4; 10]),
                (vec![], vec![9]),
                (vec![5], vec![]),
            ],
        }
    }

    #[test]
    fn a_state_round_trips() {
        let state = sample();
        assert_eq!(Stopped::decode(&state.encode()).unwrap(), state);
    }

    #[test]
    fn damaged_states_are_refused_without_panicking() {
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
