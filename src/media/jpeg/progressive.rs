//! Progressive JPEGs (SOF2), sampled exactly as sequential ones, in bands of MCU rows.
//!
//! A progressive file sends the image several times over: each scan adds some
//! coefficients of every block (spectral selection) or one more bit of them (successive
//! approximation), so a block is complete only after the last scan. libjpeg keeps every
//! coefficient of the image until then (36 MB at 12 MP). Here the image is decoded in
//! bands of MCU rows: for each band every scan is decoded over the band's rows only, each
//! from where the previous band left that scan's reader, and the band's blocks are then
//! complete and go to the sampler like a sequential decode's. A band holds only its own
//! coefficients, and between two bands the whole decode is a reader per scan plus the
//! samples gathered so far: small enough to hand to another instance
//! ([`super::resume::StoppedBands`]).
//!
//! The scans are found once, by walking the file's segments and skipping each scan's
//! entropy-coded data to the marker that ends it.
//!
//! Exactness: libjpeg-turbo smooths blocks (interblock smoothing) whose first AC
//! coefficients are not known to full precision when the file ends; a file whose
//! progression leaves them so is refused here ([`JpegError::Unsupported`]) and decoded
//! another way. Every progression an encoder writes for a complete image finishes them.

use super::huffman::{Bits, Table};
use super::pixels::Coefficients;
use super::resume::{ScanCursor, StoppedBands, MAX_SCANS, MAX_TABLE_SEGMENTS};
use super::{
    assemble, data_end, may_stop, segment, Component, Decoder, Frame, JpegError, Progress, Started,
};
use std::ops::Range;

/// A call decodes at least this fraction of the MCU rows before it may stop (or one row
/// before the last, [`may_stop`]): a decode is at most this many calls and one. More
/// than a sequential decode's 8, because a progressive file costs up to four times as
/// much to decode (a 12 MP one ~190 ms natively, as libjpeg-turbo takes) and each call
/// must fit an instance's budget.
const LEAST_PART: u32 = 32;

/// The coefficients libjpeg-turbo's smoothing looks at (DC and AC 1 to 9).
const SMOOTHED: usize = 10;

/// What a scan does to each block.
#[derive(Clone, Copy, PartialEq)]
enum Pass {
    DcFirst,
    DcRefine,
    AcFirst,
    AcRefine,
}

/// One scan, resolved against the tables in force where it starts.
struct Scan {
    pass: Pass,
    /// Each component's index in the frame, and the Huffman table it uses (an index
    /// into [`Script::tables`]; none for a DC refinement, which reads raw bits).
    members: Vec<(usize, Option<usize>)>,
    /// Spectral selection (zigzag positions) and the bit position it sends.
    start: usize,
    end: usize,
    low_bit: u32,
    /// The first byte of its entropy-coded data.
    data: usize,
    restart_interval: u32,
}

/// The file's scans and what they need.
struct Script {
    scans: Vec<Scan>,
    tables: Vec<Table>,
    /// Each component's quantisation table as latched at its first scan (as libjpeg
    /// does: a later DQT does not change it).
    quant: Vec<[u16; 64]>,
}

/// Adds the offsets of the table and scan segments from `at` (just after the frame
/// header) to the end of the image to `segments_at`.
pub(super) fn segments(
    bytes: &[u8],
    mut at: usize,
    segments_at: &mut Vec<u32>,
) -> Result<(), JpegError> {
    loop {
        let marker_at = at;
        let (marker, _, next) = segment(bytes, at)?;
        at = next;
        match marker {
            0xDB | 0xC4 | 0xDD | 0xDA => {
                if segments_at.len() >= MAX_TABLE_SEGMENTS + MAX_SCANS {
                    return Err(JpegError::Unsupported("too many segments"));
                }
                segments_at
                    .push(u32::try_from(marker_at).map_err(|_| JpegError::Unsupported("size"))?);
                if marker == 0xDA {
                    at = data_end(bytes, next)?;
                }
            }
            0xD9 => return Ok(()),
            0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => {
                return Err(JpegError::Corrupt("two frames"))
            }
            _ => {}
        }
    }
}

impl Script {
    /// Replays the segments in order on `decoder`'s tables, resolving each scan.
    fn read(
        decoder: &mut Decoder,
        frame: &Frame,
        segments_at: &[u32],
    ) -> Result<Script, JpegError> {
        let bytes = decoder.bytes;
        let count = frame.components.len();
        let (mut scans, mut tables) = (Vec::new(), Vec::new());
        let mut quant: Vec<Option<[u16; 64]>> = vec![None; count];
        // libjpeg's coef_bits: the bit each coefficient is known down to (-1: never sent).
        let mut known = vec![[-1i32; SMOOTHED]; count];
        for &at in segments_at {
            let (marker, body, next) = segment(bytes, at as usize)?;
            if marker != 0xDA {
                decoder.table(marker, body)?;
                continue;
            }
            if scans.len() == MAX_SCANS {
                return Err(JpegError::Unsupported("too many scans"));
            }
            let [members_count, rest @ ..] = body else {
                return Err(JpegError::Corrupt("short SOS"));
            };
            let members_count = usize::from(*members_count);
            let Some([start, end, bits]) = rest
                .get(2 * members_count..2 * members_count + 3)
                .and_then(|p| <[u8; 3]>::try_from(p).ok())
                .filter(|_| (1..=count).contains(&members_count))
            else {
                return Err(JpegError::Corrupt("bad SOS"));
            };
            let (start, end) = (usize::from(start), usize::from(end));
            let (high_bit, low_bit) = (u32::from(bits >> 4), u32::from(bits & 15));
            // libjpeg-turbo's checks (jdphuff.c): it stops decoding on anything else.
            let pass = match (start, high_bit) {
                (0, 0) => Pass::DcFirst,
                (0, _) => Pass::DcRefine,
                (_, 0) => Pass::AcFirst,
                _ => Pass::AcRefine,
            };
            let bad_band = if start == 0 {
                end != 0
            } else {
                start > end || end > 63 || members_count != 1
            };
            if bad_band || (high_bit != 0 && low_bit + 1 != high_bit) || low_bit > 13 {
                return Err(JpegError::Corrupt("bad progression"));
            }
            let mut members = Vec::with_capacity(members_count);
            for pair in rest[..2 * members_count].chunks_exact(2) {
                let index = frame.component_index(pair[0])?;
                let table = match pass {
                    Pass::DcRefine => None,
                    Pass::DcFirst => Some(decoder.dc_tables.get(usize::from(pair[1] >> 4))),
                    Pass::AcFirst | Pass::AcRefine => {
                        Some(decoder.ac_tables.get(usize::from(pair[1] & 15)))
                    }
                };
                let table = match table {
                    None => None,
                    Some(Some(Some(table))) => {
                        tables.push(table.clone());
                        Some(tables.len() - 1)
                    }
                    Some(_) => {
                        return Err(JpegError::Corrupt("scan uses an undefined Huffman table"))
                    }
                };
                quant[index].get_or_insert(decoder.quant[frame.components[index].quant_table]);
                for bit in known[index].iter_mut().take(end + 1).skip(start) {
                    *bit = low_bit as i32;
                }
                members.push((index, table));
            }
            scans.push(Scan {
                pass,
                members,
                start,
                end,
                low_bit,
                data: next,
                restart_interval: decoder.restart_interval,
            });
        }
        if known.iter().flatten().any(|&bit| bit != 0) {
            return Err(JpegError::Unsupported(
                "progression that leaves coefficients imprecise",
            ));
        }
        let quant = quant
            .into_iter()
            .collect::<Option<Vec<_>>>()
            .ok_or(JpegError::Unsupported("component without a scan"))?;
        Ok(Script {
            scans,
            tables,
            quant,
        })
    }
}

/// Decodes a progressive frame whose header `started` holds, in bands, from the first
/// band or from `from` (the next band's first MCU row and each scan's reader), asking
/// `stop` between bands once a [`LEAST_PART`]th of the MCU rows are done here.
pub(super) fn decode(
    decoder: &mut Decoder,
    started: &mut Started,
    segments_at: Vec<u32>,
    from: Option<(u32, Vec<ScanCursor>)>,
    stop: &mut dyn FnMut(bool) -> bool,
) -> Result<Progress, JpegError> {
    let script = Script::read(decoder, &started.frame, &segments_at)?;
    let frame = &started.frame;
    let mcus_high = frame.height.div_ceil(8 * frame.max_v);
    let (mut row, mut cursors) = match from {
        Some((row, cursors)) => {
            let fits = row <= mcus_high
                && cursors.len() == script.scans.len()
                && cursors
                    .iter()
                    .zip(&script.scans)
                    .all(|(c, s)| c.predictors.len() == s.members.len());
            if !fits {
                return Err(JpegError::Corrupt("the state does not fit the scans"));
            }
            (row, cursors)
        }
        None => {
            let cursors = script
                .scans
                .iter()
                .map(|scan| ScanCursor {
                    bits: Bits::new(decoder.bytes, scan.data).state(),
                    eobrun: 0,
                    mcu: 0,
                    predictors: vec![0; scan.members.len()],
                })
                .collect();
            (0, cursors)
        }
    };
    // Bands of one MCU row: the finest place to stop, and a band's coefficients stay in
    // the cache between scans.
    let (first, least) = (row, mcus_high.div_ceil(LEAST_PART));
    let mut coefficients = vec![Vec::new(); frame.components.len()];
    while row < mcus_high {
        let last = row + 1 == mcus_high;
        if may_stop(first, row, least, last) && stop(last) {
            let state = StoppedBands {
                frame_at: started.at,
                segments_at,
                next_row: row,
                cursors,
                planes: started.take_planes(),
            };
            return Ok(Progress::Suspended {
                state: state.encode(),
            });
        }
        decoder.band(
            started,
            &script,
            &mut cursors,
            row..row + 1,
            &mut coefficients,
        )?;
        row += 1;
    }
    Ok(Progress::Done(assemble(
        &started.frame,
        &started.wanted,
        &started.plan,
    )))
}

/// A component's block rows inside a band of MCU rows.
fn block_rows(component: &Component, rows: &Range<u32>) -> Range<u32> {
    let clip = |row: u32| (row * component.v).min(component.blocks_high);
    clip(rows.start)..clip(rows.end)
}

impl Decoder<'_> {
    /// Decodes every scan over the MCU rows `rows`, then samples the band's blocks.
    /// `coefficients` is scratch space, one plane of blocks (zigzag order) per component.
    fn band(
        &self,
        started: &mut Started,
        script: &Script,
        cursors: &mut [ScanCursor],
        rows: Range<u32>,
        coefficients: &mut [Vec<[i16; 64]>],
    ) -> Result<(), JpegError> {
        let frame = &started.frame;
        // Each component's block rows in the band.
        let bands: Vec<Range<u32>> = frame
            .components
            .iter()
            .map(|component| block_rows(component, &rows))
            .collect();
        for ((component, plane), band) in frame
            .components
            .iter()
            .zip(coefficients.iter_mut())
            .zip(&bands)
        {
            plane.clear();
            plane.resize(band.len() * component.blocks_wide as usize, [0; 64]);
        }
        let mcus_wide = frame.width.div_ceil(8 * frame.max_h);
        let mut padding = [0i16; 64];
        for (scan, cursor) in script.scans.iter().zip(cursors.iter_mut()) {
            let mut bits = Bits::resume(self.bytes, cursor.bits)
                .ok_or(JpegError::Corrupt("the state does not fit the scan"))?;
            let table = |slot: usize| scan.members[slot].1.and_then(|t| script.tables.get(t));
            let restart = |bits: &mut Bits, cursor: &mut ScanCursor| {
                if scan.restart_interval > 0
                    && cursor.mcu > 0
                    && cursor.mcu.is_multiple_of(scan.restart_interval)
                {
                    bits.restart();
                    cursor.predictors.fill(0);
                    cursor.eobrun = 0;
                }
                cursor.mcu = cursor.mcu.wrapping_add(1);
            };
            if let [(index, _)] = scan.members[..] {
                // One component: its own blocks, row by row.
                for block in coefficients[index].iter_mut() {
                    restart(&mut bits, cursor);
                    let (predictor, eobrun) = (&mut cursor.predictors[0], &mut cursor.eobrun);
                    decode_block(scan, table(0), &mut bits, predictor, eobrun, block);
                }
            } else {
                // Interleaved (DC only): each component's H×V blocks per MCU, padding
                // blocks beyond its samples included (decoded, then dropped).
                for mcu_y in rows.clone() {
                    for mcu_x in 0..mcus_wide {
                        restart(&mut bits, cursor);
                        for (slot, &(index, _)) in scan.members.iter().enumerate() {
                            let (component, band) = (&frame.components[index], &bands[index]);
                            let wide = component.blocks_wide;
                            for by in 0..component.v {
                                for bx in 0..component.h {
                                    let (y, x) =
                                        (mcu_y * component.v + by, mcu_x * component.h + bx);
                                    let block = if y < band.end && x < wide {
                                        let at = ((y - band.start) * wide + x) as usize;
                                        &mut coefficients[index][at]
                                    } else {
                                        &mut padding
                                    };
                                    let predictor = &mut cursor.predictors[slot];
                                    decode_block(
                                        scan,
                                        table(slot),
                                        &mut bits,
                                        predictor,
                                        &mut cursor.eobrun,
                                        block,
                                    );
                                }
                            }
                        }
                    }
                }
            }
            cursor.bits = bits.state();
        }
        // The band's blocks are complete: sample them as a sequential decode does.
        let mut dense = Coefficients::new();
        for (index, (component, band)) in frame.components.iter().zip(&bands).enumerate() {
            let wide = component.blocks_wide as usize;
            let quant = &script.quant[index];
            for (at, block) in coefficients[index].iter().enumerate() {
                for (k, &value) in block.iter().enumerate() {
                    if value != 0 {
                        let value = i32::from(value).wrapping_mul(i32::from(quant[k]));
                        dense.set(super::NATURAL[k], value);
                    }
                }
                let (y, x) = (band.start as usize + at / wide, at % wide);
                self.use_block(&mut started.wanted[index], y, x, &dense);
                dense.clear();
            }
        }
        Ok(())
    }
}

/// Decodes one block's part of a scan into `block` (zigzag order), as libjpeg-turbo's
/// `jdphuff.c` does.
#[inline]
fn decode_block(
    scan: &Scan,
    table: Option<&Table>,
    bits: &mut Bits,
    predictor: &mut i32,
    eobrun: &mut u32,
    block: &mut [i16; 64],
) {
    let low_bit = scan.low_bit;
    match (scan.pass, table) {
        (Pass::DcFirst, Some(table)) => {
            let size = bits.symbol(table);
            *predictor = predictor.wrapping_add(bits.value(size));
            block[0] = predictor.wrapping_shl(low_bit) as i16;
        }
        // One raw bit per block: the DC coefficient's next bit.
        (Pass::DcRefine, _) if bits.raw(1) != 0 => block[0] |= 1 << low_bit,
        (Pass::AcFirst, Some(table)) => ac_first(scan, table, bits, eobrun, block),
        (Pass::AcRefine, Some(table)) => ac_refine(scan, table, bits, eobrun, block),
        _ => {}
    }
}

/// The first pass over a band of AC coefficients: values, runs of zeros, and runs of
/// blocks with nothing left in the band (EOBRUN).
fn ac_first(scan: &Scan, table: &Table, bits: &mut Bits, eobrun: &mut u32, block: &mut [i16; 64]) {
    if *eobrun > 0 {
        *eobrun -= 1;
        return;
    }
    let mut k = scan.start;
    while k <= scan.end {
        if let Some((run, value)) = bits.short_coefficient(table) {
            k += run;
            // Past the end only on damaged data; libjpeg writes the last coefficient.
            block[k.min(63)] = value.wrapping_shl(scan.low_bit) as i16;
            k += 1;
            continue;
        }
        let symbol = bits.symbol(table);
        let (run, size) = (usize::from(symbol >> 4), symbol & 15);
        if size != 0 {
            k += run;
            block[k.min(63)] = bits.value(size).wrapping_shl(scan.low_bit) as i16;
        } else if run == 15 {
            k += 15;
        } else {
            *eobrun = (1u32 << run) + bits.raw(run as u32) - 1;
            break;
        }
        k += 1;
    }
}

/// A refinement pass over a band of AC coefficients: a correction bit for each one
/// already nonzero, and newly nonzero ones (±1 at this bit) placed among the zeros.
fn ac_refine(scan: &Scan, table: &Table, bits: &mut Bits, eobrun: &mut u32, block: &mut [i16; 64]) {
    let plus: i16 = 1 << scan.low_bit;
    let minus: i16 = -1 << scan.low_bit;
    let correct = |coefficient: &mut i16, bits: &mut Bits| {
        if bits.raw(1) != 0 && *coefficient & plus == 0 {
            let step = if *coefficient >= 0 { plus } else { minus };
            *coefficient = coefficient.wrapping_add(step);
        }
    };
    let mut k = scan.start;
    if *eobrun == 0 {
        while k <= scan.end {
            let symbol = bits.symbol(table);
            let (mut zeros, size) = (i32::from(symbol >> 4), symbol & 15);
            let mut value = 0;
            if size != 0 {
                value = if bits.raw(1) != 0 { plus } else { minus };
            } else if zeros != 15 {
                *eobrun = (1u32 << zeros) + bits.raw(zeros as u32);
                break;
            }
            // Past the nonzero coefficients (correcting each) and `zeros` zeros.
            while k <= scan.end {
                let coefficient = &mut block[k];
                if *coefficient != 0 {
                    correct(coefficient, bits);
                } else {
                    zeros -= 1;
                    if zeros < 0 {
                        break;
                    }
                }
                k += 1;
            }
            if value != 0 {
                block[k.min(63)] = value;
            }
            k += 1;
        }
    }
    if *eobrun > 0 {
        // The rest of the band is zero here: only corrections for the nonzero ones.
        for coefficient in block.iter_mut().take(scan.end + 1).skip(k) {
            if *coefficient != 0 {
                correct(coefficient, bits);
            }
        }
        *eobrun -= 1;
    }
}
