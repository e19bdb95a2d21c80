//! A JPEG decoder for the model: it produces exactly the pixels libjpeg-turbo (what
//! browsers and Pillow decode with) would give at the rows and columns nsfwjs's resize
//! reads, without reconstructing the rest of the image, plus a reduced preview straight
//! from the coefficients (for PDQ and rewrites).
//!
//! Why our own: every coefficient must still be Huffman-decoded, but that is all a
//! 12-megapixel photo needs to cost. A full decode (zune-jpeg, jpeg-decoder) also runs an
//! IDCT on every block, upsamples every chroma sample and converts every pixel, and is
//! not libjpeg-turbo's arithmetic (scores moved by up to 0.04); the DCT-scaled decode in
//! use before averaged pixels where nsfwjs samples them (scores moved by up to 0.24).
//! Here each needed sample costs a row of the first IDCT pass and a dot product
//! ([`pixels`]), bit-identical to libjpeg-turbo's accurate integer IDCT, fancy upsampling
//! and colour conversion (tested against Pillow, `tests/jpeg_reference.rs`).
//!
//! Scope: baseline, extended sequential and progressive Huffman JPEGs ([`progressive`]),
//! 8-bit, greyscale or YCbCr, 4:4:4, 4:2:2 or 4:2:0; interleaved or not, restart
//! intervals. Anything else (arithmetic coding, CMYK, Adobe RGB, 12-bit, 4:4:0) is
//! [`JpegError::Unsupported`] and the caller decodes it another way.

mod huffman;
mod pixels;
mod progressive;
mod resume;

use huffman::{Bits, Table};
use image::{DynamicImage, GrayImage, RgbImage};
use pixels::{BoxBasis, Coefficients, Idct, Picked, Upsampling, YccToRgb};
pub use resume::unread_span;
use resume::{Plane, Planes, ScanPosition, Stopped, StoppedBands};

/// Why the sampled decode did not produce pixels.
#[derive(Debug, PartialEq)]
pub enum JpegError {
    /// A valid JPEG this decoder does not handle: decode it another way.
    Unsupported(&'static str),
    /// Damaged structure (markers, tables, sizes).
    Corrupt(&'static str),
    /// The caller's plan refused the frame's size.
    Refused,
}

/// What to produce, chosen once the image's size is known.
pub struct Plan {
    /// Pixel rows and columns to produce (stored orientation), sorted and distinct.
    pub rows: Vec<u32>,
    pub columns: Vec<u32>,
    /// Preview samples per 8×8 block side: 1, 2 or 4 (1/8, 1/4 or 1/2 of the size).
    pub preview_per_block: u32,
}

/// The decoded samples.
pub struct Sampled {
    pub width: u32,
    pub height: u32,
    /// The pixels at `rows` × `columns` of the plan, as an image of that many rows and
    /// columns (RGB, or grey for a one-component JPEG).
    pub pixels: DynamicImage,
    /// The image reduced by box averages of whole blocks' pixels.
    pub preview: DynamicImage,
}

/// A call of a resumable sequential decode decodes at least this fraction of a scan's MCU
/// rows before it may stop (or one row before the last, [`may_stop`]): a decode is at most
/// this many calls and one. A floor, not the plan: the instance's budget decides where it
/// stops beyond it. Not an eighth any more: on an Intel Xeon (family 6 model 207) under
/// Viceroy a 12 MP photo's MCU row costs ~2 ms, so an eighth of them (24 rows) after the
/// job's read took every decoding sibling to 45-55 ms; a sixteenth kept them at 30-42
/// (11 to 19 instances, wall time ~620 to ~890 ms), and with the job opened faster
/// (`decode::jpeg::is_complete`) at ~25-31 (17 instances, ~620 ms).
const LEAST_SHARE: u32 = 16;

/// Whether a call of a resumable decode that began at MCU row `first` may ask to stop
/// before `row`: once it has done its `least` rows, and before the decode's `last` row
/// once it has done any. Without the second, the call after a stop a few rows short of
/// the end had to decode them all and assemble the image in one instance: on an Intel
/// Xeon (family 6 model 207) under Viceroy, an eighth of a 12 MP photo's rows (35–40 ms)
/// and the assembly after took that instance to 75–82 ms of CPU. The call asked before
/// the last row keeps a reserve for all that follows it, and the one after has a row.
fn may_stop(first: u32, row: u32, least: u32, last: bool) -> bool {
    row - first >= least || (last && row > first)
}

/// The natural (row-major) index of each zigzag position.
const NATURAL: [u8; 64] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20,
    13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59,
    52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
];

/// The image's width and height from its frame header, if it has one this decoder reads.
pub fn dimensions(bytes: &[u8]) -> Result<(u32, u32), JpegError> {
    let mut at = 2;
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return Err(JpegError::Corrupt("not a JPEG"));
    }
    loop {
        let (marker, body, next) = segment(bytes, at)?;
        match marker {
            0xC0..=0xC2 => {
                let frame = Frame::parse(body)?;
                return Ok((frame.width, frame.height));
            }
            0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => {
                return Err(JpegError::Unsupported("coding process"))
            }
            0xDA | 0xD9 => return Err(JpegError::Corrupt("no frame header")),
            _ => at = next,
        }
    }
}

/// The marker at `at`, its body, and where the next marker starts. Fill bytes (0xFF)
/// before a marker are skipped.
fn segment(bytes: &[u8], mut at: usize) -> Result<(u8, &[u8], usize), JpegError> {
    while bytes.get(at) == Some(&0xFF) && bytes.get(at + 1) == Some(&0xFF) {
        at += 1;
    }
    match bytes.get(at..at + 2) {
        Some([0xFF, marker]) => {
            let marker = *marker;
            if matches!(marker, 0xD8 | 0xD9 | 0x01 | 0xD0..=0xD7) {
                return Ok((marker, &[], at + 2));
            }
            let length = bytes
                .get(at + 2..at + 4)
                .map(|l| usize::from(u16::from_be_bytes([l[0], l[1]])))
                .ok_or(JpegError::Corrupt("truncated marker"))?;
            let body = bytes
                .get(at + 4..at + 2 + length)
                .filter(|_| length >= 2)
                .ok_or(JpegError::Corrupt("truncated segment"))?;
            Ok((marker, body, at + 2 + length))
        }
        _ => Err(JpegError::Corrupt("expected a marker")),
    }
}

/// Where entropy-coded data starting at `at` ends: at the next marker other than a
/// restart marker (inside the data every 0xFF is followed by 0x00).
fn data_end(bytes: &[u8], mut at: usize) -> Result<usize, JpegError> {
    const NO_END: JpegError = JpegError::Corrupt("no end of image");
    loop {
        at += memchr::memchr(0xFF, bytes.get(at..).ok_or(NO_END)?).ok_or(NO_END)?;
        match bytes.get(at + 1) {
            Some(0x00 | 0xD0..=0xD7 | 0xFF) => at += 1,
            Some(_) => return Ok(at),
            None => return Err(NO_END),
        }
    }
}

struct Component {
    id: u8,
    quant_table: usize,
    /// Sampling factors (H, V) as declared.
    h: u32,
    v: u32,
    upsampling: Upsampling,
    /// Blocks per row and column the component's samples fill.
    blocks_wide: u32,
    blocks_high: u32,
}

struct Frame {
    width: u32,
    height: u32,
    components: Vec<Component>,
    max_h: u32,
    max_v: u32,
}

impl Frame {
    fn parse(body: &[u8]) -> Result<Frame, JpegError> {
        let [precision, h0, h1, w0, w1, count, rest @ ..] = body else {
            return Err(JpegError::Corrupt("short frame header"));
        };
        if *precision != 8 {
            return Err(JpegError::Unsupported("not 8-bit"));
        }
        let height = u32::from(u16::from_be_bytes([*h0, *h1]));
        let width = u32::from(u16::from_be_bytes([*w0, *w1]));
        if height == 0 || width == 0 {
            return Err(JpegError::Unsupported("size given by a DNL marker"));
        }
        if !matches!(count, 1 | 3) {
            return Err(JpegError::Unsupported("neither greyscale nor YCbCr"));
        }
        let declared = rest
            .chunks_exact(3)
            .take(usize::from(*count))
            .map(|c| (c[0], u32::from(c[1] >> 4), u32::from(c[1] & 15), c[2]))
            .collect::<Vec<_>>();
        if declared.len() != usize::from(*count) {
            return Err(JpegError::Corrupt("short frame header"));
        }
        let max_h = declared.iter().map(|c| c.1).max().unwrap_or(1);
        let max_v = declared.iter().map(|c| c.2).max().unwrap_or(1);
        let mut components = Vec::new();
        for (id, h, v, quant_table) in declared {
            if !(1..=4).contains(&h) || !(1..=4).contains(&v) || quant_table > 3 {
                return Err(JpegError::Corrupt("bad component"));
            }
            let factor = |max: u32, own: u32| match max / own {
                f @ (1 | 2) if max.is_multiple_of(own) => Ok(f),
                _ => Err(JpegError::Unsupported("subsampling")),
            };
            let (horizontal, vertical) = (factor(max_h, h)?, factor(max_v, v)?);
            // 4:4:0 (chroma halved vertically only) is rare and has no reference to test
            // against here (Pillow cannot write it): decoded another way.
            if (horizontal, vertical) == (1, 2) {
                return Err(JpegError::Unsupported("4:4:0 subsampling"));
            }
            let samples_wide = (width * h).div_ceil(max_h);
            let samples_high = (height * v).div_ceil(max_v);
            if (horizontal == 2 && samples_wide < 2) || (vertical == 2 && samples_high < 2) {
                return Err(JpegError::Unsupported("subsampled image of one sample"));
            }
            components.push(Component {
                id,
                quant_table: usize::from(quant_table),
                h,
                v,
                upsampling: Upsampling {
                    horizontal,
                    vertical,
                    width: samples_wide,
                    height: samples_high,
                },
                blocks_wide: samples_wide.div_ceil(8),
                blocks_high: samples_high.div_ceil(8),
            });
        }
        if components.len() == 3 && components.iter().map(|c| c.id).eq([b'R', b'G', b'B']) {
            return Err(JpegError::Unsupported("RGB JPEG"));
        }
        Ok(Frame {
            width,
            height,
            components,
            max_h,
            max_v,
        })
    }
}

impl Frame {
    /// Where the component a scan header names by `id` is in the frame.
    fn component_index(&self, id: u8) -> Result<usize, JpegError> {
        self.components
            .iter()
            .position(|c| c.id == id)
            .ok_or(JpegError::Corrupt("scan of an unknown component"))
    }
}

/// The samples of one component this decode must produce, and where blocks find them.
struct Wanted {
    rows: Vec<u32>,
    columns: Vec<u32>,
    /// For each block row, the range of `rows` inside it (and the same for columns).
    row_ranges: Vec<(usize, usize)>,
    column_ranges: Vec<(usize, usize)>,
    /// For each block column, the second pass's weights for its wanted columns.
    picks: Vec<Picked>,
    /// `rows.len()` × `columns.len()` samples.
    samples: Vec<u8>,
    /// The preview plane: `per_block` samples per block side.
    preview: Vec<u8>,
    preview_wide: usize,
}

impl Wanted {
    fn new(component: &Component, plan: &Plan, per_block: usize, idct: &Idct) -> Wanted {
        let up = component.upsampling;
        let taps = |at: &[u32], factor: u32, size: u32| {
            let mut out: Vec<u32> = at
                .iter()
                .flat_map(|&a| Upsampling::taps(a, factor, size))
                .collect();
            out.sort_unstable();
            out.dedup();
            out
        };
        let rows = taps(&plan.rows, up.vertical, up.height);
        let columns = taps(&plan.columns, up.horizontal, up.width);
        let ranges = |at: &[u32], blocks: u32| {
            (0..blocks)
                .map(|b| {
                    let start = at.partition_point(|&a| a < 8 * b);
                    let end = at.partition_point(|&a| a < 8 * (b + 1));
                    (start, end)
                })
                .collect::<Vec<_>>()
        };
        let preview_wide = component.blocks_wide as usize * per_block;
        let column_ranges = ranges(&columns, component.blocks_wide);
        let picks = column_ranges
            .iter()
            .map(|&(start, end)| idct.pick(columns[start..end].iter().map(|&c| c as usize % 8)))
            .collect();
        Wanted {
            row_ranges: ranges(&rows, component.blocks_high),
            column_ranges,
            picks,
            samples: vec![128; rows.len() * columns.len()],
            preview: vec![128; preview_wide * component.blocks_high as usize * per_block],
            preview_wide,
            rows,
            columns,
        }
    }

    /// The component upsampled at the plan's pixels.
    fn plane(&self, up: &Upsampling, plan: &Plan) -> Vec<u8> {
        let slots = |wanted: &[u32], size: u32| {
            let mut slots = vec![0u32; size as usize];
            for (slot, &at) in wanted.iter().enumerate() {
                if let Some(s) = slots.get_mut(at as usize) {
                    *s = slot as u32;
                }
            }
            slots
        };
        let (rows, columns) = (slots(&self.rows, up.height), slots(&self.columns, up.width));
        let slot = |slots: &[u32], at: u32| slots.get(at as usize).copied().unwrap_or(0) as usize;
        up.plane(
            &plan.rows,
            &plan.columns,
            &self.samples,
            |r| slot(&rows, r),
            |c| slot(&columns, c),
            self.columns.len(),
        )
    }
}

/// Decoder state across the file's segments.
struct Decoder<'a> {
    bytes: &'a [u8],
    quant: [[u16; 64]; 4],
    dc_tables: [Option<Table>; 4],
    ac_tables: [Option<Table>; 4],
    restart_interval: u32,
    idct: Idct,
    basis: BoxBasis,
}

/// How a resumable decode ended.
pub enum Progress {
    Done(Sampled),
    /// Stopped between two rows of MCUs because the caller said so: `state` continues
    /// the decode ([`decode_resumable`] with the same image and plan), in another
    /// instance if need be.
    Suspended {
        state: Vec<u8>,
    },
}

/// Decodes the samples `plan` asks for, once the image's size is known. `plan` may
/// refuse the size (None: [`JpegError::Refused`]) before anything is allocated for it.
pub fn decode_sampled(
    bytes: &[u8],
    plan: impl FnOnce(u32, u32) -> Option<Plan>,
) -> Result<Sampled, JpegError> {
    match decode_resumable(bytes, plan, None, &mut |_| false)? {
        Progress::Done(sampled) => Ok(sampled),
        Progress::Suspended { .. } => Err(JpegError::Corrupt("stopped unasked")),
    }
}

/// [`decode_sampled`], which can stop part-way and continue from where it stopped.
/// `from` is the state a suspended decode of the same image left; `stop` is asked
/// between rows of MCUs whether to suspend. Each call decodes at least a
/// [`LEAST_SHARE`]th of a scan's MCU rows before it asks (or, before the decode's last
/// row, one row), so a decode is at most seventeen calls per scan. `stop`'s argument
/// says whether the row it is asked before is the decode's last.
pub fn decode_resumable(
    bytes: &[u8],
    plan: impl FnOnce(u32, u32) -> Option<Plan>,
    from: Option<&[u8]>,
    stop: &mut dyn FnMut(bool) -> bool,
) -> Result<Progress, JpegError> {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return Err(JpegError::Corrupt("not a JPEG"));
    }
    let mut decoder = Decoder {
        bytes,
        quant: [[1; 64]; 4],
        dc_tables: [None, None, None, None],
        ac_tables: [None, None, None, None],
        restart_interval: 0,
        idct: Idct::new(),
        basis: BoxBasis::new(1),
    };
    let mut at = 2;
    let mut plan = Some(plan);
    let mut frame: Option<Started> = None;
    let mut tables_at: Vec<u32> = Vec::new();
    let mut adobe_rgb = false;
    let mut resume_scan = None;
    if let Some(state) = from.filter(|state| StoppedBands::is_one(state)) {
        // A progressive decode: its frame, its samples, then on from its next band.
        let stopped = StoppedBands::decode(state)?;
        let (marker, body, _) = segment(bytes, stopped.frame_at as usize)?;
        let plan = plan.take().ok_or(JpegError::Corrupt("two frames"))?;
        if marker != 0xC2 {
            return Err(JpegError::Corrupt("the state names no frame"));
        }
        let mut started = decoder.start_frame(body, plan, stopped.frame_at)?;
        started.restore_planes(stopped.planes)?;
        let from = Some((stopped.next_row, stopped.cursors));
        return progressive::decode(&mut decoder, &mut started, stopped.segments_at, from, stop);
    }
    if let Some(state) = from {
        // Back to where the state says: its tables, its frame, its samples, its scan.
        let stopped = Stopped::decode(state)?;
        for &table_at in &stopped.tables_at {
            let (marker, body, _) = segment(bytes, table_at as usize)?;
            decoder.table(marker, body)?;
        }
        tables_at = stopped.tables_at;
        let (marker, body, _) = segment(bytes, stopped.frame_at as usize)?;
        let plan = plan.take().ok_or(JpegError::Corrupt("two frames"))?;
        if !matches!(marker, 0xC0 | 0xC1) {
            return Err(JpegError::Corrupt("the state names no frame"));
        }
        let mut started = decoder.start_frame(body, plan, stopped.frame_at)?;
        started.restore_planes(stopped.planes)?;
        frame = Some(started);
        at = stopped.scan_at as usize;
        if segment(bytes, at)?.0 != 0xDA {
            return Err(JpegError::Corrupt("the state names no scan"));
        }
        resume_scan = Some(stopped.scan);
    }
    let mut never = |_| false;
    loop {
        let marker_at = at;
        let (marker, body, next) = segment(bytes, at)?;
        at = next;
        match marker {
            0xDB | 0xC4 | 0xDD => {
                decoder.table(marker, body)?;
                tables_at.push(u32::try_from(marker_at).unwrap_or(u32::MAX));
            }
            // Adobe's APP14 with transform 0: the three components are RGB, not YCbCr.
            0xEE if body.starts_with(b"Adobe") && body.get(11) == Some(&0) => adobe_rgb = true,
            0xC0 | 0xC1 => {
                let Some(plan) = plan.take() else {
                    return Err(JpegError::Corrupt("two frames"));
                };
                if adobe_rgb && body.get(5) == Some(&3) {
                    return Err(JpegError::Unsupported("RGB JPEG"));
                }
                let frame_at = u32::try_from(marker_at).unwrap_or(u32::MAX);
                frame = Some(decoder.start_frame(body, plan, frame_at)?);
            }
            0xC2 => {
                let Some(plan) = plan.take() else {
                    return Err(JpegError::Corrupt("two frames"));
                };
                if adobe_rgb && body.get(5) == Some(&3) {
                    return Err(JpegError::Unsupported("RGB JPEG"));
                }
                let frame_at = u32::try_from(marker_at).unwrap_or(u32::MAX);
                let mut started = decoder.start_frame(body, plan, frame_at)?;
                let mut segments_at = tables_at;
                progressive::segments(bytes, next, &mut segments_at)?;
                return progressive::decode(&mut decoder, &mut started, segments_at, None, stop);
            }
            0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => {
                return Err(JpegError::Unsupported("coding process"))
            }
            0xDA => {
                let Some(started) = frame.as_mut() else {
                    return Err(JpegError::Corrupt("scan before frame"));
                };
                // A state can only point at offsets it can hold.
                let scan_at = u32::try_from(marker_at).ok();
                let can_stop = tables_at.len() <= resume::MAX_TABLE_SEGMENTS
                    && !tables_at.contains(&u32::MAX)
                    && started.at != u32::MAX
                    && scan_at.is_some();
                let asked: &mut dyn FnMut(bool) -> bool = if can_stop { stop } else { &mut never };
                let from = resume_scan.take();
                match decoder.scan(body, next, started, from, asked)? {
                    ScanEnd::Finished(end) => at = end,
                    ScanEnd::Stopped(position) => {
                        let state = Stopped {
                            frame_at: started.at,
                            scan_at: scan_at.unwrap_or(u32::MAX),
                            tables_at,
                            scan: position,
                            planes: started.take_planes(),
                        };
                        return Ok(Progress::Suspended {
                            state: state.encode(),
                        });
                    }
                }
            }
            0xD9 => break,
            _ => {}
        }
    }
    let started = frame.ok_or(JpegError::Corrupt("no frame"))?;
    Ok(Progress::Done(assemble(
        &started.frame,
        &started.wanted,
        &started.plan,
    )))
}

/// A frame being decoded: its header, what the plan wants of each component, and where
/// its header is in the file.
struct Started {
    frame: Frame,
    wanted: Vec<Wanted>,
    plan: Plan,
    at: u32,
}

impl Started {
    /// The samples and preview gathered so far, per component, for a state: moved, not
    /// copied (the decode ends here).
    fn take_planes(&mut self) -> Planes {
        self.wanted
            .iter_mut()
            .map(|w| {
                (
                    Plane::compact(std::mem::take(&mut w.samples)),
                    Plane::compact(std::mem::take(&mut w.preview)),
                )
            })
            .collect()
    }

    /// Puts back what [`Started::take_planes`] took, if it fits this frame and plan.
    fn restore_planes(&mut self, planes: Planes) -> Result<(), JpegError> {
        if self.wanted.len() != planes.len() {
            return Err(JpegError::Corrupt("the state's components differ"));
        }
        let differ = || JpegError::Corrupt("the state's planes differ");
        for (wanted, (samples, preview)) in self.wanted.iter_mut().zip(planes) {
            wanted.samples = samples.expand(wanted.samples.len()).ok_or_else(differ)?;
            wanted.preview = preview.expand(wanted.preview.len()).ok_or_else(differ)?;
        }
        Ok(())
    }
}

/// How a scan ended: the offset of the marker after it, or where it stopped.
enum ScanEnd {
    Finished(usize),
    Stopped(ScanPosition),
}

impl Decoder<'_> {
    /// A table segment: quantisation (DQT), Huffman (DHT), restart interval (DRI).
    fn table(&mut self, marker: u8, body: &[u8]) -> Result<(), JpegError> {
        match marker {
            0xDB => self.read_quant(body),
            0xC4 => self.read_huffman(body),
            0xDD => {
                let [a, b, ..] = body else {
                    return Err(JpegError::Corrupt("short DRI"));
                };
                self.restart_interval = u32::from(u16::from_be_bytes([*a, *b]));
                Ok(())
            }
            _ => Err(JpegError::Corrupt("not a table segment")),
        }
    }

    /// A frame header read, its plan made, its sample buffers allocated.
    fn start_frame(
        &mut self,
        body: &[u8],
        plan: impl FnOnce(u32, u32) -> Option<Plan>,
        at: u32,
    ) -> Result<Started, JpegError> {
        let frame = Frame::parse(body)?;
        let plan = plan(frame.width, frame.height).ok_or(JpegError::Refused)?;
        if !matches!(plan.preview_per_block, 1 | 2 | 4) {
            return Err(JpegError::Unsupported("preview scale"));
        }
        self.basis = BoxBasis::new(plan.preview_per_block as usize);
        let wanted = frame
            .components
            .iter()
            .map(|c| Wanted::new(c, &plan, plan.preview_per_block as usize, &self.idct))
            .collect();
        Ok(Started {
            frame,
            wanted,
            plan,
            at,
        })
    }

    fn read_quant(&mut self, mut body: &[u8]) -> Result<(), JpegError> {
        while let [spec, rest @ ..] = body {
            let (precision, id) = (spec >> 4, usize::from(spec & 15));
            let size = if precision == 0 { 64 } else { 128 };
            if id > 3 || precision > 1 || rest.len() < size {
                return Err(JpegError::Corrupt("bad DQT"));
            }
            let table = &mut self.quant[id];
            for (k, q) in table.iter_mut().enumerate() {
                *q = if precision == 0 {
                    u16::from(rest[k])
                } else {
                    u16::from_be_bytes([rest[2 * k], rest[2 * k + 1]])
                };
            }
            body = &rest[size..];
        }
        Ok(())
    }

    fn read_huffman(&mut self, mut body: &[u8]) -> Result<(), JpegError> {
        while body.len() >= 17 {
            let (class, id) = (body[0] >> 4, usize::from(body[0] & 15));
            let counts: [u8; 16] = body[1..17].try_into().unwrap_or([0; 16]);
            let total: usize = counts.iter().map(|&c| usize::from(c)).sum();
            let values = body
                .get(17..17 + total)
                .ok_or(JpegError::Corrupt("short DHT"))?;
            let table = Table::new(&counts, values).map_err(JpegError::Corrupt)?;
            match (class, id) {
                (0, 0..=3) => self.dc_tables[id] = Some(table),
                (1, 0..=3) => self.ac_tables[id] = Some(table),
                _ => return Err(JpegError::Corrupt("bad DHT")),
            }
            body = &body[17 + total..];
        }
        if body.is_empty() {
            Ok(())
        } else {
            Err(JpegError::Corrupt("short DHT"))
        }
    }

    /// Decodes one scan whose header is `header` and whose data starts at `data` (or
    /// continues it `from` where it stopped), asking `stop` between MCU rows once an
    /// [`LEAST_SHARE`]th of them are done here, and before the decode's last row
    /// ([`may_stop`]).
    fn scan(
        &self,
        header: &[u8],
        data: usize,
        started: &mut Started,
        from: Option<ScanPosition>,
        stop: &mut dyn FnMut(bool) -> bool,
    ) -> Result<ScanEnd, JpegError> {
        let (frame, wanted) = (&started.frame, &mut started.wanted);
        let [count, rest @ ..] = header else {
            return Err(JpegError::Corrupt("short SOS"));
        };
        let count = usize::from(*count);
        if !(1..=frame.components.len()).contains(&count) || rest.len() < 2 * count + 3 {
            return Err(JpegError::Corrupt("bad SOS"));
        }
        if rest[2 * count..2 * count + 3] != [0, 63, 0] {
            return Err(JpegError::Unsupported(
                "spectral selection in a sequential scan",
            ));
        }
        let mut members = Vec::with_capacity(count);
        for pair in rest[..2 * count].chunks_exact(2) {
            let index = frame.component_index(pair[0])?;
            let (dc, ac) = (usize::from(pair[1] >> 4), usize::from(pair[1] & 15));
            let dc = self.dc_tables.get(dc).and_then(Option::as_ref);
            let ac = self.ac_tables.get(ac).and_then(Option::as_ref);
            match (dc, ac) {
                (Some(dc), Some(ac)) => members.push((index, dc, ac)),
                _ => return Err(JpegError::Corrupt("scan uses an undefined Huffman table")),
            }
        }
        // MCUs: one block of the one component, or each component's H×V blocks.
        let (mcus_wide, mcus_high) = if count == 1 {
            let c = &frame.components[members[0].0];
            (c.blocks_wide, c.blocks_high)
        } else {
            (
                frame.width.div_ceil(8 * frame.max_h),
                frame.height.div_ceil(8 * frame.max_v),
            )
        };
        let (mut bits, mut predictors, first_row, mut mcu) = match from {
            Some(at) => {
                let bits = Bits::resume(self.bytes, at.bits)
                    .filter(|_| at.predictors.len() == count && at.mcu_y <= mcus_high)
                    .ok_or(JpegError::Corrupt("the state does not fit the scan"))?;
                (bits, at.predictors, at.mcu_y, at.mcu)
            }
            None => (Bits::new(self.bytes, data), vec![0i32; count], 0, 0),
        };
        let mut block = Coefficients::new();
        let least_rows = mcus_high.div_ceil(LEAST_SHARE);
        for mcu_y in first_row..mcus_high {
            // The last row of a scan of every component is the decode's last.
            let finishing = count == frame.components.len() && mcu_y + 1 == mcus_high;
            if may_stop(first_row, mcu_y, least_rows, finishing) && stop(finishing) {
                return Ok(ScanEnd::Stopped(ScanPosition {
                    mcu_y,
                    mcu,
                    bits: bits.state(),
                    predictors,
                }));
            }
            for mcu_x in 0..mcus_wide {
                if self.restart_interval > 0 && mcu > 0 && mcu.is_multiple_of(self.restart_interval)
                {
                    bits.restart();
                    predictors.fill(0);
                }
                mcu += 1;
                for (slot, &(index, dc, ac)) in members.iter().enumerate() {
                    let component = &frame.components[index];
                    let (h, v) = if count == 1 {
                        (1, 1)
                    } else {
                        (component.h, component.v)
                    };
                    let quant = &self.quant[component.quant_table];
                    for by in 0..v {
                        for bx in 0..h {
                            decode_block(
                                &mut bits,
                                dc,
                                ac,
                                &mut predictors[slot],
                                quant,
                                &mut block,
                            );
                            let block_y = mcu_y * v + by;
                            let block_x = mcu_x * h + bx;
                            // Interleaved MCUs cover padding blocks beyond the samples.
                            if block_y < component.blocks_high && block_x < component.blocks_wide {
                                self.use_block(
                                    &mut wanted[index],
                                    block_y as usize,
                                    block_x as usize,
                                    &block,
                                );
                            }
                            block.clear();
                        }
                    }
                }
            }
        }
        data_end(self.bytes, bits.position).map(ScanEnd::Finished)
    }

    /// Takes what the plan needs from one decoded block: its wanted samples and its
    /// preview samples.
    fn use_block(&self, wanted: &mut Wanted, block_y: usize, block_x: usize, block: &Coefficients) {
        let (row_start, row_end) = wanted.row_ranges[block_y];
        let (column_start, column_end) = wanted.column_ranges[block_x];
        if row_start < row_end && column_start < column_end {
            let stride = wanted.columns.len();
            let pick = &wanted.picks[block_x];
            // A block without vertical detail (most of a photo's chroma, its flat areas)
            // has the same samples on every row: computed once.
            let alike = block.rows_alike();
            let mut samples = [0u8; 8];
            for r in row_start..row_end {
                if r == row_start || !alike {
                    let local_row = (wanted.rows[r] as usize) - 8 * block_y;
                    samples = self.idct.samples(local_row, block, pick);
                }
                let start = r * stride + column_start;
                let out = &mut wanted.samples[start..start + pick.len()];
                for (o, s) in out.iter_mut().zip(samples) {
                    *o = s;
                }
            }
        }
        let n = self.basis.per_block;
        let preview = self.basis.block(block);
        // Rows of a size known at compile time: a copy of a run-time length is a
        // `memory.copy`, a call out of the module in wasmtime, per row of every block.
        fn rows<const N: usize>(
            wanted: &mut Wanted,
            block_y: usize,
            block_x: usize,
            preview: &[u8; 16],
        ) {
            for y in 0..N {
                let start = (block_y * N + y) * wanted.preview_wide + block_x * N;
                wanted.preview[start..start + N].copy_from_slice(&preview[y * N..y * N + N]);
            }
        }
        match n {
            1 => rows::<1>(wanted, block_y, block_x, &preview),
            2 => rows::<2>(wanted, block_y, block_x, &preview),
            _ => rows::<4>(wanted, block_y, block_x, &preview),
        }
    }
}

/// Huffman-decodes one block into `block` (all zeros before): its dequantised
/// coefficients, by natural index.
#[inline]
fn decode_block(
    bits: &mut Bits,
    dc: &Table,
    ac: &Table,
    predictor: &mut i32,
    quant: &[u16; 64],
    block: &mut Coefficients,
) {
    let size = bits.symbol(dc);
    *predictor = predictor.wrapping_add(bits.value(size));
    let value = predictor.wrapping_mul(i32::from(quant[0]));
    if value != 0 {
        block.set(0, value);
    }
    let mut k = 1usize;
    while k < 64 {
        if let Some((run, value)) = bits.short_coefficient(ac) {
            k += run;
            if k > 63 {
                break;
            }
            block.set(NATURAL[k], value.wrapping_mul(i32::from(quant[k])));
            k += 1;
            continue;
        }
        let symbol = bits.symbol(ac);
        let (run, size) = (usize::from(symbol >> 4), symbol & 15);
        if size == 0 {
            if run != 15 {
                break;
            }
            k += 16;
            continue;
        }
        k += run;
        if k > 63 {
            break;
        }
        let value = bits.value(size).wrapping_mul(i32::from(quant[k]));
        block.set(NATURAL[k], value);
        k += 1;
    }
}

/// The wanted pixels, upsampled and converted, and the preview, from each component's
/// samples.
fn assemble(frame: &Frame, wanted: &[Wanted], plan: &Plan) -> Sampled {
    let (rows, columns) = (plan.rows.len() as u32, plan.columns.len() as u32);
    let planes: Vec<Vec<u8>> = frame
        .components
        .iter()
        .zip(wanted)
        .map(|(c, w)| w.plane(&c.upsampling, plan))
        .collect();
    let n = plan.preview_per_block;
    let preview_wide = (frame.width * n).div_ceil(8);
    let preview_high = (frame.height * n).div_ceil(8);
    // Each preview pixel takes each component's preview sample over it (nearest).
    let plane_row = |component: usize, y: u32| -> (&[u8], u32) {
        let c = &frame.components[component];
        let w = &wanted[component];
        let start = (y / c.upsampling.vertical) as usize * w.preview_wide;
        let row = w.preview.get(start..start + w.preview_wide).unwrap_or(&[]);
        (row, c.upsampling.horizontal)
    };
    if frame.components.len() == 1 {
        let pixels = GrayImage::from_raw(columns, rows, planes[0].clone());
        let mut preview = Vec::with_capacity((preview_wide * preview_high) as usize);
        for y in 0..preview_high {
            let row = plane_row(0, y).0;
            preview.extend((0..preview_wide as usize).map(|x| row.get(x).copied().unwrap_or(128)));
        }
        return Sampled {
            width: frame.width,
            height: frame.height,
            pixels: pixels.map_or_else(|| DynamicImage::new_luma8(1, 1), DynamicImage::ImageLuma8),
            preview: GrayImage::from_raw(preview_wide, preview_high, preview)
                .map_or_else(|| DynamicImage::new_luma8(1, 1), DynamicImage::ImageLuma8),
        };
    }
    let ycc = YccToRgb::new();
    let count = planes[0].len().min(planes[1].len()).min(planes[2].len());
    let mut rgb = vec![0u8; count * 3];
    ycc.convert(&planes[0], &planes[1], &planes[2], &mut rgb);
    let pixels = RgbImage::from_raw(columns, rows, rgb);
    // One loop per row over three slices of one length: each component's row is first
    // spread to the preview's width (repeated where subsampled, grey past its end). At
    // 12 MP the preview is 0.76 M pixels, a quarter of the decode's last part; with a
    // lookup per sample and pixel, the assembly took 13-19 ms in the instance finishing a
    // split decode (Intel Xeon, family 6 model 207, Viceroy), 9-17 after (3 each).
    let mut preview = vec![0u8; (preview_wide * preview_high * 3) as usize];
    let width = preview_wide as usize;
    let mut spread = [vec![128u8; width], vec![128u8; width], vec![128u8; width]];
    for (y, out) in preview.chunks_exact_mut(width * 3).enumerate() {
        for (c, spread) in spread.iter_mut().enumerate() {
            // Any component may be the subsampled one (even luma, in a crafted file); a
            // step is 1 or 2.
            let (row, step) = plane_row(c, y as u32);
            spread_row(row, step, spread);
        }
        let [luma, cb, cr] = &spread;
        ycc.convert(luma, cb, cr, out);
    }
    Sampled {
        width: frame.width,
        height: frame.height,
        pixels: pixels.map_or_else(|| DynamicImage::new_rgb8(1, 1), DynamicImage::ImageRgb8),
        preview: RgbImage::from_raw(preview_wide, preview_high, preview)
            .map_or_else(|| DynamicImage::new_rgb8(1, 1), DynamicImage::ImageRgb8),
    }
}

/// Fills `out` with `row`'s samples each repeated `step` times (1 or 2), and grey where
/// `row` ends first.
fn spread_row(row: &[u8], step: u32, out: &mut [u8]) {
    if step == 1 {
        let n = row.len().min(out.len());
        out[..n].copy_from_slice(&row[..n]);
        out[n..].fill(128);
    } else {
        let shift = step.trailing_zeros();
        for (x, sample) in out.iter_mut().enumerate() {
            *sample = row.get(x >> shift).copied().unwrap_or(128);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_is_spread_as_each_pixel_would_look_it_up() {
        let row = [10u8, 20, 30];
        for (step, width) in [(1, 2), (1, 3), (1, 5), (2, 4), (2, 6), (2, 9)] {
            let mut out = vec![0u8; width];
            spread_row(&row, step, &mut out);
            let shift = step.trailing_zeros();
            let looked_up: Vec<u8> = (0..width)
                .map(|x| row.get(x >> shift).copied().unwrap_or(128))
                .collect();
            assert_eq!(out, looked_up, "step {step}, width {width}");
        }
        let mut out = [0u8; 3];
        spread_row(&[], 2, &mut out);
        assert_eq!(out, [128; 3]);
    }

    fn everything(width: u32, height: u32) -> Option<Plan> {
        // Damaged headers may declare any size: refuse what a caller's limits would.
        (u64::from(width) * u64::from(height) <= 1 << 20).then(|| Plan {
            rows: (0..height).collect(),
            columns: (0..width).collect(),
            preview_per_block: 2,
        })
    }

    fn jpeg(width: u16, height: u16) -> Vec<u8> {
        jpeg_coded(width, height, 80, false)
    }

    /// An RGB JPEG of a fixed pattern, at `quality`, sequential or progressive.
    fn jpeg_coded(width: u16, height: u16, quality: u8, progressive: bool) -> Vec<u8> {
        let pixels: Vec<u8> = (0..u32::from(width) * u32::from(height) * 3)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let mut out = Vec::new();
        let mut encoder = jpeg_encoder::Encoder::new(&mut out, quality);
        encoder.set_progressive(progressive);
        encoder
            .encode(&pixels, width, height, jpeg_encoder::ColorType::Rgb)
            .unwrap();
        out
    }

    /// Decodes `bytes` stopping at every chance; each resumed part gets the image with
    /// the spans its state says it will not read overwritten (a resumed job leaves them
    /// out), so a wrong span shows as wrong pixels. Also returns the stops made, and the
    /// bytes left out over all of them.
    fn decode_in_parts(bytes: &[u8]) -> (Sampled, usize, usize) {
        let (mut state, mut stops) = (None::<Vec<u8>>, 0);
        let mut left_out = 0;
        loop {
            let mut given = bytes.to_vec();
            if let Some(state) = &state {
                if let Some(span) = unread_span(bytes, state) {
                    left_out += span.len();
                    given[span].fill(0x5A);
                }
            }
            match decode_resumable(&given, everything, state.as_deref(), &mut |_| true).unwrap() {
                Progress::Done(sampled) => return (sampled, stops, left_out),
                Progress::Suspended { state: next } => {
                    state = Some(next);
                    stops += 1;
                }
            }
        }
    }

    #[test]
    fn a_decode_stopped_at_every_chance_resumes_to_the_same_pixels() {
        use jpeg_encoder::{ColorType, Encoder, SamplingFactor};
        let (width, height) = (100u16, 130u16);
        let rgb: Vec<u8> = (0..u32::from(width) * u32::from(height) * 3)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let grey: Vec<u8> = rgb.iter().step_by(3).copied().collect();
        let cases = [
            (SamplingFactor::F_2_2, 0, ColorType::Rgb, 16),
            (SamplingFactor::F_2_1, 5, ColorType::Rgb, 8),
            (SamplingFactor::F_1_1, 3, ColorType::Rgb, 8),
            (SamplingFactor::F_1_1, 7, ColorType::Luma, 8),
        ];
        for (sampling, restart, colour, mcu_side) in cases {
            let mut bytes = Vec::new();
            let mut encoder = Encoder::new(&mut bytes, 85);
            encoder.set_sampling_factor(sampling);
            encoder.set_restart_interval(restart);
            let pixels = if colour == ColorType::Luma {
                &grey
            } else {
                &rgb
            };
            encoder.encode(pixels, width, height, colour).unwrap();
            let whole = decode_sampled(&bytes, everything).unwrap();
            let (parts, stops, left_out) = decode_in_parts(&bytes);
            // What each part decoded is left out of the next one's image.
            assert!(
                left_out > bytes.len() * stops / 4,
                "{left_out} of {}",
                bytes.len()
            );
            // A stop after every least share of the rows, and one more before the last
            // row when the last share has more than that row.
            let rows = u32::from(height).div_ceil(mcu_side);
            let least = rows.div_ceil(LEAST_SHARE);
            let last_share = rows - (rows - 1) / least * least;
            let expected_stops = (rows.div_ceil(least) - 1 + u32::from(last_share > 1)) as usize;
            let case = format!("{sampling:?}, restart {restart}, {colour:?}");
            assert_eq!(stops, expected_stops, "{case}");
            assert_eq!(parts.pixels, whole.pixels, "{case}");
            assert_eq!(parts.preview, whole.preview, "{case}");
        }
    }

    #[test]
    fn the_last_row_can_be_left_to_the_next_instance() {
        // An instance that resumes a few rows short of the end may stop before the last
        // one (it keeps a reserve for the image's assembly there), never before any.
        assert!(may_stop(90, 99, 13, true));
        assert!(!may_stop(90, 98, 13, false));
        assert!(!may_stop(99, 99, 13, true));
        assert!(may_stop(0, 13, 13, false));
        for progressive in [false, true] {
            let bytes = jpeg_coded(64, 200, 80, progressive);
            let whole = decode_sampled(&bytes, everything).unwrap();
            // Stop only when asked before the last row: the decode stops there once, and
            // the call that resumes it finishes.
            let mut asked_last = 0;
            let Progress::Suspended { state } =
                decode_resumable(&bytes, everything, None, &mut |last| {
                    asked_last += usize::from(last);
                    last
                })
                .unwrap()
            else {
                panic!("progressive {progressive}: not stopped before the last row");
            };
            assert_eq!(asked_last, 1);
            let Progress::Done(rest) =
                decode_resumable(&bytes, everything, Some(&state), &mut |_| true).unwrap()
            else {
                panic!("progressive {progressive}: the last row did not finish");
            };
            assert_eq!(rest.pixels, whole.pixels, "progressive {progressive}");
        }
    }

    #[test]
    fn a_progressive_jpeg_decodes_as_its_sequential_twin_even_in_parts() {
        use jpeg_encoder::{ColorType, Encoder, SamplingFactor};
        // jpeg-encoder quantises both the same way: the same coefficients, coded
        // progressively (spectral selection) or in one scan.
        let (width, height) = (203u16, 150u16);
        let rgb: Vec<u8> = (0..u32::from(width) * u32::from(height) * 3)
            .map(|i| ((i % 600) * 5 % 253 + i / 2000) as u8)
            .collect();
        let grey: Vec<u8> = rgb.iter().step_by(3).copied().collect();
        let cases = [
            (SamplingFactor::F_2_2, 0, ColorType::Rgb),
            (SamplingFactor::F_2_1, 3, ColorType::Rgb),
            (SamplingFactor::F_1_1, 0, ColorType::Rgb),
            (SamplingFactor::F_1_1, 11, ColorType::Luma),
        ];
        for (sampling, restart, colour) in cases {
            let pixels = if colour == ColorType::Luma {
                &grey
            } else {
                &rgb
            };
            let encode = |progressive: bool| {
                let mut bytes = Vec::new();
                let mut encoder = Encoder::new(&mut bytes, 80);
                encoder.set_sampling_factor(sampling);
                encoder.set_restart_interval(restart);
                encoder.set_progressive(progressive);
                encoder.encode(pixels, width, height, colour).unwrap();
                bytes
            };
            let case = format!("{sampling:?}, restart {restart}, {colour:?}");
            let sequential = decode_sampled(&encode(false), everything).unwrap();
            let progressive = encode(true);
            let whole = decode_sampled(&progressive, everything).unwrap();
            assert_eq!(whole.pixels, sequential.pixels, "{case}");
            assert_eq!(whole.preview, sequential.preview, "{case}");
            let (parts, stops, _) = decode_in_parts(&progressive);
            assert!(stops >= 3, "{case}: stopped {stops} times");
            assert_eq!(parts.pixels, whole.pixels, "{case}");
            assert_eq!(parts.preview, whole.preview, "{case}");
        }
    }

    #[test]
    fn damaged_progressive_files_and_states_never_panic() {
        let original = jpeg_coded(40, 24, 70, true);
        decodes_or_refuses_every_damage(&original);
        refuses_foreign_and_damaged_states(&original, &jpeg(40, 24), 400);
    }

    /// `original` decodes; cut anywhere or with any byte flipped, it never panics.
    fn decodes_or_refuses_every_damage(original: &[u8]) {
        assert!(decode_sampled(original, everything).is_ok());
        for cut in 0..original.len() {
            let _ = decode_sampled(&original[..cut], everything);
        }
        for at in 0..original.len() {
            for flip in [0x01, 0x10, 0x80, 0xFF] {
                let mut damaged = original.to_vec();
                damaged[at] ^= flip;
                let _ = decode_sampled(&damaged, everything);
            }
        }
    }

    /// The state `bytes`'s decode stops with is refused for `other`, and damaged in any of
    /// its first `damaged` bytes it never panics.
    fn refuses_foreign_and_damaged_states(bytes: &[u8], other: &[u8], damaged: usize) {
        let Progress::Suspended { state } =
            decode_resumable(bytes, everything, None, &mut |_| true).unwrap()
        else {
            panic!("the image stops");
        };
        assert!(decode_resumable(other, everything, Some(&state), &mut |_| false).is_err());
        for at in 0..state.len().min(damaged) {
            let mut flipped = state.clone();
            flipped[at] ^= 0x5A;
            let _ = decode_resumable(bytes, everything, Some(&flipped), &mut |_| false);
        }
    }

    #[test]
    fn a_state_that_does_not_fit_the_image_is_refused() {
        // Another image (offsets and sizes differ), and the state damaged byte by byte.
        refuses_foreign_and_damaged_states(&jpeg(64, 64), &jpeg(48, 64), 200);
    }

    #[test]
    fn damaged_and_truncated_files_never_panic() {
        decodes_or_refuses_every_damage(&jpeg(37, 21));
    }

    #[test]
    fn a_subsampled_first_component_is_read_without_panicking() {
        // Rewrite the frame header so that luma is 1x1 and both chroma 2x2 (crafted: the
        // scan data no longer fits, which must only give wrong pixels, never a panic).
        let mut bytes = jpeg(40, 24);
        let sof = bytes.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        for (i, factors) in [0x11u8, 0x22, 0x22].into_iter().enumerate() {
            bytes[sof + 11 + 3 * i] = factors;
        }
        let _ = decode_sampled(&bytes, everything);
    }
}
