//! PDQ perceptual image hash (256 bits), pure Rust, `std` only.
//!
//! This module owns PDQ hashing of decoded pixels: luma conversion, the
//! two-pass Jarosz (box/tent) blur, decimation to 64x64, the image-domain
//! quality metric, the 16x16 partial DCT, the Torben median threshold, the
//! eight dihedral variants computed from one DCT, and the 64-hex-digit text
//! form. It follows the published PDQ algorithm (facebook/ThreatExchange
//! `hashing/hashing.pdf`, and the reference implementation in ThreatExchange
//! `pdq/cpp`), written from that description, and performs the reference's
//! `float` arithmetic operation by operation in the same order, so hashes and
//! quality are bit-identical to the reference for the same input luma:
//!
//! * [`hash_luma`] / [`hash_luma_dihedral`] correspond to the reference's
//!   `pdqHash256FromFloatLuma` / `pdqDihedralHash256esFromFloatLuma`.
//! * [`hash_rgb`] / [`hash_rgb_dihedral`] convert RGB8 to luma exactly as the
//!   PyPI package `pdqhash` (used by ThreatExchange's python-threatexchange
//!   and HMA) does — `Y = f32((0.299*R + 0.587*G) + 0.114*B)` evaluated in
//!   `f64` — and so match `pdqhash.compute` / `pdqhash.compute_dihedral` bit
//!   for bit. (The C++ CLI's `fillFloatLumaFromRGB` evaluates the same formula
//!   in `f32`, which can move a luma value by one ulp and, on flat images,
//!   the hash; feed such luma to [`hash_luma`] to reproduce that path.)
//!
//! Images with a side shorter than 5 pixels hash to all-zero bits with quality
//! 0, as in the reference. Zero-sized images, short pixel buffers and size
//! overflows return `None`. Nothing here panics on any input; non-finite luma
//! gives a defined (meaningless) hash instead of the reference's endless loop.
//!
//! Memory: the reference blurs two full-size `f32` copies of the image (8
//! bytes per pixel, 96 MB at 12 MP). Here the blur is streamed row by row
//! instead: horizontal passes run on blocks of 8 rows, and each vertical pass
//! keeps only a ring of its last `ceil(height / 128)` input rows plus one
//! running sum per column. No full-size buffer is allocated (the caller's
//! pixels are only read); the heap used is `4 * width * (39 + 2 *
//! ceil(height / 128))` bytes for widths up to 8192 (1.4 MB at 4000x3000) and
//! `4 * width * (11 + 2 * ceil(height / 128))` bytes above, plus ~10 KiB on
//! the stack. Every floating-point operation still sees the same operands in
//! the same order as in the reference, so results are unchanged.
//!
//! No operation is fused (no `mul_add`), matching the reference compiled for
//! baseline x86-64, where no multiply-add contraction takes place.

use std::fmt;
use std::sync::OnceLock;

/// Smallest side the reference hashes; smaller images get the all-zero hash.
const MIN_HASHABLE_DIM: usize = 5;
/// Side of the decimated image.
const DOWN: usize = 64;
/// Side of the retained DCT block.
const DCT_OUT: usize = 16;
/// Rows of the image processed together by the horizontal box pass (lanes).
const LANES: usize = 8;
/// Widest image for which the horizontal pass uses LANES lanes (bounds the
/// 2 x LANES x width scratch per pass pair); wider images use one lane.
const MAX_LANED_WIDTH: usize = 8192;

/// A 256-bit PDQ hash.
///
/// Byte `0` holds reference bits 255..248 (most significant first) and byte
/// 31 holds bits 7..0, so the bytes read in order are exactly the reference's
/// `Hash256::format()` text: 16 words `w[15]..w[0]`, each as 4 lowercase hex
/// digits. Reference bit `k = 16*i + j` is set when DCT coefficient `(i, j)`
/// (row frequency `i`, column frequency `j`, both 1-based in the DCT) is
/// greater than the median of the 256 coefficients.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PdqHash(pub [u8; 32]);

impl PdqHash {
    /// The all-zero hash (what the reference returns for images under 5 px).
    pub const ZERO: PdqHash = PdqHash([0; 32]);

    /// 64 lowercase hex digits, identical to the reference's
    /// `Hash256::format()` and to ThreatExchange / HMA PDQ strings.
    #[must_use]
    pub fn to_hex(&self) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(64);
        for &b in &self.0 {
            s.push(char::from(DIGITS[usize::from(b >> 4)]));
            s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
        }
        s
    }

    /// Parses exactly 64 hex digits (either case). Anything else is `None`.
    #[must_use]
    pub fn from_hex(s: &str) -> Option<PdqHash> {
        let bytes = s.as_bytes();
        if bytes.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (o, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
            let hi = hex_value(pair[0])?;
            let lo = hex_value(pair[1])?;
            *o = (hi << 4) | lo;
        }
        Some(PdqHash(out))
    }

    /// Hamming distance (number of differing bits, 0..=256).
    #[must_use]
    pub fn distance(&self, other: &PdqHash) -> u32 {
        self.0
            .iter()
            .zip(other.0.iter())
            .map(|(a, b)| (a ^ b).count_ones())
            .sum()
    }

    /// Reference bit `k` (0..256, as `Hash256::getBit`); `false` when `k >= 256`.
    #[must_use]
    pub fn bit(&self, k: usize) -> bool {
        if k >= 256 {
            return false;
        }
        self.0[31 - k / 8] & (1u8 << (k % 8)) != 0
    }

    fn set_bit(&mut self, k: usize) {
        if k < 256 {
            self.0[31 - k / 8] |= 1u8 << (k % 8);
        }
    }
}

impl fmt::Display for PdqHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// A hash and its quality (0..=100; ThreatExchange recommends discarding
/// hashes with quality <= 49).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pdq {
    pub hash: PdqHash,
    pub quality: u8,
}

/// Hashes RGB8 interleaved pixels (row-major, `width * height * 3` bytes;
/// extra trailing bytes are ignored). Matches `pdqhash.compute(array)` for
/// the same `(height, width, 3)` uint8 array.
#[must_use]
pub fn hash_rgb(pixels: &[u8], width: usize, height: usize) -> Option<Pdq> {
    let src = RgbSource::new(pixels, width, height)?;
    let (dct, quality) = pdq_dct(&src, width, height, true)?;
    Some(Pdq {
        hash: bits_from_dct(&dct),
        quality,
    })
}

/// The eight dihedral-variant hashes the reference computes from one DCT
/// (`pdqDihedralHash256esFromFloatLuma`), plus the quality, for RGB8 pixels.
/// Matches `pdqhash.compute_dihedral(array)`.
///
/// Order (the reference's): `[original, rotate90, rotate180, rotate270,
/// flipX, flipY, flipPlus1, flipMinus1]`, where, for the image as a matrix
/// `M` (rows top to bottom), rotate90 is `M` turned 90° counter-clockwise
/// (numpy `rot90(M)` = `M.T[::-1]`), rotate270 is 90° clockwise, flipX
/// mirrors top/bottom (`M[::-1]`), flipY mirrors left/right (`M[:, ::-1]`),
/// flipPlus1 is the transpose (`M.T`) and flipMinus1 the anti-transpose
/// (`M.T[::-1, ::-1]`). Variants are obtained by sign flips / transposition of
/// DCT coefficients, so they approximate (not equal) hashing the transformed
/// image. Unlike [`hash_rgb`], the reference applies the blur even to 64x64
/// inputs here, so `[0]` may differ from [`hash_rgb`] for exactly 64x64 images.
#[must_use]
pub fn hash_rgb_dihedral(pixels: &[u8], width: usize, height: usize) -> Option<([PdqHash; 8], u8)> {
    let src = RgbSource::new(pixels, width, height)?;
    let (dct, quality) = pdq_dct(&src, width, height, false)?;
    Some((dihedral_hashes(&dct), quality))
}

/// Hashes `f32` luma (row-major, `width * height` values, 0..=255 scale) as
/// the reference's `pdqHash256FromFloatLuma` does.
#[must_use]
pub fn hash_luma(luma: &[f32], width: usize, height: usize) -> Option<Pdq> {
    let src = LumaSource::new(luma, width, height)?;
    let (dct, quality) = pdq_dct(&src, width, height, true)?;
    Some(Pdq {
        hash: bits_from_dct(&dct),
        quality,
    })
}

/// Dihedral variants from `f32` luma, as the reference's
/// `pdqDihedralHash256esFromFloatLuma`; same order as [`hash_rgb_dihedral`].
#[must_use]
pub fn hash_luma_dihedral(luma: &[f32], width: usize, height: usize) -> Option<([PdqHash; 8], u8)> {
    let src = LumaSource::new(luma, width, height)?;
    let (dct, quality) = pdq_dct(&src, width, height, false)?;
    Some((dihedral_hashes(&dct), quality))
}

/// Luma of one RGB8 pixel as the `pdqhash` Python package computes it
/// (numpy `float64` arithmetic, then cast to `float32`).
#[must_use]
pub fn luma_pdqhash(r: u8, g: u8, b: u8) -> f32 {
    (f64::from(r) * 0.299 + f64::from(g) * 0.587 + f64::from(b) * 0.114) as f32
}

// ---------------------------------------------------------------------------
// Pixel sources: deliver one row of f32 luma at a time.

trait RowSource {
    /// Writes luma of row `row` into `out` (`out.len() == width`).
    fn fill(&self, row: usize, out: &mut [f32]);
}

struct RgbSource<'a> {
    pixels: &'a [u8],
    stride: usize,
}

impl<'a> RgbSource<'a> {
    fn new(pixels: &'a [u8], width: usize, height: usize) -> Option<Self> {
        let stride = width.checked_mul(3)?;
        let needed = stride.checked_mul(height)?;
        if width == 0 || height == 0 || pixels.len() < needed {
            return None;
        }
        Some(RgbSource { pixels, stride })
    }
}

impl RowSource for RgbSource<'_> {
    fn fill(&self, row: usize, out: &mut [f32]) {
        let start = row.saturating_mul(self.stride);
        let src = self.pixels.get(start..).unwrap_or(&[]);
        for (o, px) in out.iter_mut().zip(src.chunks_exact(3)) {
            *o = luma_pdqhash(px[0], px[1], px[2]);
        }
    }
}

struct LumaSource<'a> {
    luma: &'a [f32],
    width: usize,
}

impl<'a> LumaSource<'a> {
    fn new(luma: &'a [f32], width: usize, height: usize) -> Option<Self> {
        let needed = width.checked_mul(height)?;
        if width == 0 || height == 0 || luma.len() < needed {
            return None;
        }
        Some(LumaSource { luma, width })
    }
}

impl RowSource for LumaSource<'_> {
    fn fill(&self, row: usize, out: &mut [f32]) {
        let start = row.saturating_mul(self.width);
        let src = self.luma.get(start..).unwrap_or(&[]);
        for (o, v) in out.iter_mut().zip(src.iter()) {
            *o = *v;
        }
    }
}

// ---------------------------------------------------------------------------
// Pipeline: luma -> 64x64 -> quality + 16x16 DCT.

type Dct16 = [[f32; DCT_OUT]; DCT_OUT];
type Image64 = [[f32; DOWN]; DOWN];

/// Returns the 16x16 DCT block and the quality. `allow_64_shortcut` mirrors
/// `pdqFloat256FromFloatLuma`, which skips the blur for exactly 64x64 input;
/// the dihedral entry point of the reference has no such shortcut.
fn pdq_dct(
    src: &dyn RowSource,
    width: usize,
    height: usize,
    allow_64_shortcut: bool,
) -> Option<(Dct16, u8)> {
    if width == 0 || height == 0 {
        return None;
    }
    if width < MIN_HASHABLE_DIM || height < MIN_HASHABLE_DIM {
        // Reference: hash.clear(), quality = 0. A zero DCT block yields the
        // all-zero hash for every dihedral variant too (nothing is > median).
        return Some(([[0.0; DCT_OUT]; DCT_OUT], 0));
    }
    let mut img: Image64 = [[0.0; DOWN]; DOWN];
    if allow_64_shortcut && width == DOWN && height == DOWN {
        for (i, row) in img.iter_mut().enumerate() {
            src.fill(i, row);
        }
    } else {
        downsample(src, width, height, &mut img);
    }
    let quality = quality_metric(&img);
    Some((dct64_to_16(&img), quality))
}

/// `computeJaroszFilterWindowSize(old, 64)`: ceil(old / 128).
fn jarosz_window(old: usize) -> usize {
    old.div_ceil(2 * DOWN)
}

/// Source index picked by the reference's `decimateFloat` for output `out`.
fn decimate_index(out: usize, in_len: usize) -> usize {
    // (int)(((outi + 0.5) * inNumRows) / outNumRows), evaluated in double.
    let v = ((out as f64 + 0.5) * in_len as f64) / DOWN as f64;
    (v as usize).min(in_len.saturating_sub(1))
}

/// Streams the image through two (horizontal box, vertical box) pass pairs
/// and keeps the 64x64 decimation of the result.
fn downsample(src: &dyn RowSource, width: usize, height: usize, img: &mut Image64) {
    let win_x = jarosz_window(width);
    let win_y = jarosz_window(height);
    let mut col_sel = [0usize; DOWN];
    for (j, c) in col_sel.iter_mut().enumerate() {
        *c = decimate_index(j, width);
    }
    let mut row_sel = [0usize; DOWN];
    for (i, r) in row_sel.iter_mut().enumerate() {
        *r = decimate_index(i, height);
    }

    let mut sink = Decimator {
        row_sel,
        col_sel,
        next_row: 0,
        img,
    };
    let mut stage1 = HorizontalThenVertical::new(width, height, win_x, win_y);
    let mut stage2 = HorizontalThenVertical::new(width, height, win_x, win_y);
    let mut in_row = vec![0.0f32; width];
    for row in 0..height {
        src.fill(row, &mut in_row);
        stage1.push(&in_row, &mut |r1: &[f32]| {
            stage2.push(r1, &mut |r2: &[f32]| sink.accept(r2));
        });
    }
    stage1.finish(&mut |r1: &[f32]| {
        stage2.push(r1, &mut |r2: &[f32]| sink.accept(r2));
    });
    stage2.finish(&mut |r2: &[f32]| sink.accept(r2));
}

/// Receives fully blurred rows in order and copies the decimated samples.
struct Decimator<'a> {
    row_sel: [usize; DOWN],
    col_sel: [usize; DOWN],
    next_row: usize,
    img: &'a mut Image64,
}

impl Decimator<'_> {
    fn accept(&mut self, row: &[f32]) {
        let r = self.next_row;
        self.next_row += 1;
        for (out_row, &sel) in self.img.iter_mut().zip(self.row_sel.iter()) {
            if sel == r {
                for (o, &c) in out_row.iter_mut().zip(self.col_sel.iter()) {
                    *o = row.get(c).copied().unwrap_or(0.0);
                }
            }
        }
    }
}

/// One Jarosz pass pair: `boxAlongRowsFloat` then `boxAlongColsFloat`.
/// Rows enter in order; vertically filtered rows leave in order.
///
/// Incoming rows are collected, transposed, in `t_in` (`t_in[c * lanes + k]`
/// is column `c` of the `k`-th collected row) so that the horizontal pass can
/// advance `lanes` independent rows together; each lane performs exactly the
/// reference's per-row sequence of float operations.
struct HorizontalThenVertical {
    width: usize,
    win_x: usize,
    /// Rows processed together by the horizontal pass (LANES, or 1 for very
    /// wide images to bound memory).
    lanes: usize,
    pending_rows: usize,
    t_in: Vec<f32>,
    t_out: Vec<f32>,
    /// One horizontally filtered row, and one vertically filtered row.
    h_row: Vec<f32>,
    v_row: Vec<f32>,
    vertical: VerticalBox,
}

impl HorizontalThenVertical {
    fn new(width: usize, height: usize, win_x: usize, win_y: usize) -> Self {
        let lanes = if width <= MAX_LANED_WIDTH { LANES } else { 1 };
        HorizontalThenVertical {
            width,
            win_x,
            lanes,
            pending_rows: 0,
            t_in: vec![0.0; lanes * width],
            t_out: vec![0.0; lanes * width],
            h_row: vec![0.0; width],
            v_row: vec![0.0; width],
            vertical: VerticalBox::new(width, height, win_y),
        }
    }

    /// Accepts the next row (`row.len() == width`); emits finished rows.
    fn push(&mut self, row: &[f32], emit: &mut dyn FnMut(&[f32])) {
        let k = self.pending_rows;
        if k >= self.lanes {
            return;
        }
        if self.lanes == LANES {
            scatter_lane::<LANES>(&mut self.t_in, row, k);
        } else {
            scatter_lane::<1>(&mut self.t_in, row, k);
        }
        self.pending_rows += 1;
        if self.pending_rows == self.lanes {
            self.flush(emit);
        }
    }

    /// Runs the horizontal pass on the collected rows (unused lanes hold
    /// stale values; their results are ignored) and feeds the vertical pass.
    fn flush(&mut self, emit: &mut dyn FnMut(&[f32])) {
        let n = self.pending_rows;
        if n == 0 {
            return;
        }
        self.pending_rows = 0;
        let ph = Phases::new(self.width, self.win_x);
        if self.lanes == LANES {
            box_lanes::<LANES>(&self.t_in, &mut self.t_out, ph);
        } else {
            box_lanes::<1>(&self.t_in, &mut self.t_out, ph);
        }
        for k in 0..n {
            if self.lanes == LANES {
                gather_lane::<LANES>(&self.t_out, &mut self.h_row, k);
            } else {
                gather_lane::<1>(&self.t_out, &mut self.h_row, k);
            }
            if self.vertical.push(&self.h_row, &mut self.v_row) {
                emit(&self.v_row);
            }
        }
    }

    /// Flushes collected rows and drains the vertical pass.
    fn finish(&mut self, emit: &mut dyn FnMut(&[f32])) {
        self.flush(emit);
        while self.vertical.drain(&mut self.v_row) {
            emit(&self.v_row);
        }
    }
}

/// Window phase lengths of the reference's `box1DFloat`.
#[derive(Clone, Copy)]
struct Phases {
    /// Adds without writes.
    p1: usize,
    /// Adds and writes with a growing window.
    p2: usize,
    /// Adds, subtracts and writes with the full window.
    p3: usize,
    /// Subtracts and writes with a shrinking window.
    p4: usize,
}

impl Phases {
    fn new(len: usize, full: usize) -> Phases {
        let full = full.clamp(1, len.max(1));
        let half = (full + 2) / 2;
        Phases {
            p1: half - 1,
            p2: full - half + 1,
            p3: len.saturating_sub(full),
            p4: half - 1,
        }
    }
}

/// Writes `row` into lane `k` of the lane-major buffer `t`.
fn scatter_lane<const L: usize>(t: &mut [f32], row: &[f32], k: usize) {
    if k < L {
        for (cell, v) in lanes_mut::<L>(t).zip(row) {
            cell[k] = *v;
        }
    }
}

/// Reads lane `k` of the lane-major buffer `t` into `row`.
fn gather_lane<const L: usize>(t: &[f32], row: &mut [f32], k: usize) {
    if k < L {
        for (o, cell) in row.iter_mut().zip(lanes::<L>(t)) {
            *o = cell[k];
        }
    }
}

fn lanes<const L: usize>(v: &[f32]) -> impl Iterator<Item = &[f32; L]> {
    v.chunks_exact(L)
        .filter_map(|c| <&[f32; L]>::try_from(c).ok())
}

fn lanes_mut<const L: usize>(v: &mut [f32]) -> impl Iterator<Item = &mut [f32; L]> {
    v.chunks_exact_mut(L)
        .filter_map(|c| <&mut [f32; L]>::try_from(c).ok())
}

/// The reference's `box1DFloat` phases, on `L` interleaved vectors
/// (`input[i * L + k]` is element `i` of vector `k`).
#[allow(clippy::needless_range_loop)] // fixed-size lane loops vectorize best
fn box_lanes<const L: usize>(input: &[f32], out: &mut [f32], ph: Phases) {
    let mut sum = [0.0f32; L];
    let mut count = 0u32;
    let mut right = lanes::<L>(input);
    let mut left = lanes::<L>(input);
    let mut dst = lanes_mut::<L>(out);
    // Phase 1: accumulate, no writes.
    for r in right.by_ref().take(ph.p1) {
        for k in 0..L {
            sum[k] += r[k];
        }
        count += 1;
    }
    // Phase 2: growing window.
    for (r, o) in right.by_ref().zip(dst.by_ref()).take(ph.p2) {
        count += 1;
        let c = count as f32;
        for k in 0..L {
            sum[k] += r[k];
            o[k] = sum[k] / c;
        }
    }
    // Phase 3: full window, add then subtract.
    let c = count as f32;
    for ((r, l), o) in right
        .by_ref()
        .zip(left.by_ref())
        .zip(dst.by_ref())
        .take(ph.p3)
    {
        for k in 0..L {
            let s = sum[k] + r[k];
            let s = s - l[k];
            sum[k] = s;
            o[k] = s / c;
        }
    }
    // Phase 4: shrinking window.
    for (l, o) in left.zip(dst).take(ph.p4) {
        count = count.saturating_sub(1);
        let c = count as f32;
        for k in 0..L {
            sum[k] -= l[k];
            o[k] = sum[k] / c;
        }
    }
}

/// `boxAlongColsFloat`, streamed: rows are pushed top to bottom; each column
/// keeps the reference's running sum, and a ring holds the last `full` input
/// rows for the subtractions.
struct VerticalBox {
    width: usize,
    full: usize,
    ph: Phases,
    sums: Vec<f32>,
    ring: Vec<f32>,
    rows_in: usize,
    count: u32,
    li: usize,
    drained: usize,
}

impl VerticalBox {
    fn new(width: usize, height: usize, win: usize) -> Self {
        let full = win.clamp(1, height.max(1));
        VerticalBox {
            width,
            full,
            ph: Phases::new(height, full),
            sums: vec![0.0; width],
            ring: vec![0.0; full * width],
            rows_in: 0,
            count: 0,
            li: 0,
            drained: 0,
        }
    }

    /// Feeds the next input row; returns true when `out` received a row.
    fn push(&mut self, row: &[f32], out: &mut [f32]) -> bool {
        let r = self.rows_in;
        let total = self.ph.p1 + self.ph.p2 + self.ph.p3;
        if r >= total {
            return false;
        }
        self.rows_in += 1;
        let w = self.width;
        let slot = (r % self.full) * w;
        let Some(ring_row) = self.ring.get_mut(slot..slot + w) else {
            return false;
        };
        if r < self.ph.p1 {
            for (s, v) in self.sums.iter_mut().zip(row) {
                *s += *v;
            }
            self.count += 1;
            ring_row.copy_from_slice(row);
            false
        } else if r < self.ph.p1 + self.ph.p2 {
            self.count += 1;
            let c = self.count as f32;
            for ((s, v), o) in self.sums.iter_mut().zip(row).zip(out.iter_mut()) {
                *s += *v;
                *o = *s / c;
            }
            ring_row.copy_from_slice(row);
            true
        } else {
            // The slot being replaced holds input row li = r - full.
            let c = self.count as f32;
            for (((s, v), old), o) in self
                .sums
                .iter_mut()
                .zip(row)
                .zip(ring_row.iter_mut())
                .zip(out.iter_mut())
            {
                *s += *v;
                *s -= *old;
                *o = *s / c;
                *old = *v;
            }
            self.li += 1;
            true
        }
    }

    /// Phase 4 after the last input row; returns true while rows come out.
    fn drain(&mut self, out: &mut [f32]) -> bool {
        let total = self.ph.p1 + self.ph.p2 + self.ph.p3;
        if self.rows_in < total || self.drained >= self.ph.p4 || self.count <= 1 {
            return false;
        }
        let w = self.width;
        let slot = (self.li % self.full) * w;
        let Some(ring_row) = self.ring.get(slot..slot + w) else {
            return false;
        };
        self.count -= 1;
        let c = self.count as f32;
        for ((s, old), o) in self.sums.iter_mut().zip(ring_row).zip(out.iter_mut()) {
            *s -= *old;
            *o = *s / c;
        }
        self.li += 1;
        self.drained += 1;
        true
    }
}

// ---------------------------------------------------------------------------
// Quality, DCT, median, bits.

/// `pdqImageDomainQualityMetric`: sum of quantized absolute neighbour
/// differences, scaled by 1/90 and capped at 100.
fn quality_metric(img: &Image64) -> u8 {
    fn step(u: f32, v: f32) -> u64 {
        // int d = ((u - v) * 100) / 255;  (float math, truncation to int)
        let d = ((u - v) * 100.0f32 / 255.0f32) as i32;
        u64::from(d.unsigned_abs())
    }
    let mut gradient_sum: u64 = 0;
    for pair in img.windows(2) {
        for (&u, &v) in pair[0].iter().zip(pair[1].iter()) {
            gradient_sum = gradient_sum.saturating_add(step(u, v));
        }
    }
    for row in img.iter() {
        for pair in row.windows(2) {
            gradient_sum = gradient_sum.saturating_add(step(pair[0], pair[1]));
        }
    }
    let q = (gradient_sum / 90).min(100);
    q as u8
}

/// The 16x64 DCT-II basis (rows 1..=16 of the 64-point DCT), as the reference
/// builds it: `float(float(sqrt(2/64)) * cos((pi/2/64) * (i+1) * (2j+1)))`
/// with the product and cosine in double.
fn dct_matrix() -> &'static [[f32; DOWN]; DCT_OUT] {
    static MATRIX: OnceLock<[[f32; DOWN]; DCT_OUT]> = OnceLock::new();
    MATRIX.get_or_init(|| {
        let scale = (2.0f64 / DOWN as f64).sqrt() as f32;
        let mut m = [[0.0f32; DOWN]; DCT_OUT];
        for (i, row) in m.iter_mut().enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                let arg = (std::f64::consts::PI / 2.0 / DOWN as f64)
                    * (i + 1) as f64
                    * (2 * j + 1) as f64;
                *v = (f64::from(scale) * arg.cos()) as f32;
            }
        }
        m
    })
}

/// `dct64To16`: B = D A D^T with T = D A, each dot product accumulated in f32
/// from k = 0 upward, exactly as the reference.
fn dct64_to_16(a: &Image64) -> Dct16 {
    let d = dct_matrix();
    let mut t = [[0.0f32; DOWN]; DCT_OUT];
    for (di, trow) in d.iter().zip(t.iter_mut()) {
        // T[i][j] = sum_k D[i][k] * A[k][j]; iterate k outermost over whole
        // rows of A so each T[i][j] still sums k in ascending order.
        for (dk, arow) in di.iter().zip(a.iter()) {
            for (tv, av) in trow.iter_mut().zip(arow.iter()) {
                *tv += *dk * *av;
            }
        }
    }
    let mut b = [[0.0f32; DCT_OUT]; DCT_OUT];
    for (trow, brow) in t.iter().zip(b.iter_mut()) {
        for (dj, bv) in d.iter().zip(brow.iter_mut()) {
            let mut sum = 0.0f32;
            for (tv, dv) in trow.iter().zip(dj.iter()) {
                sum += *tv * *dv;
            }
            *bv = sum;
        }
    }
    b
}

/// Torben Mogensen's median as in the reference (`torben.cpp`). The
/// iteration cap only matters for non-finite input (the reference would spin
/// forever); for finite values the loop ends within 256 rounds because every
/// round excludes at least one distinct value.
fn torben(m: &[f32]) -> f32 {
    let n = m.len();
    let Some(&first) = m.first() else {
        return 0.0;
    };
    let (mut min, mut max) = (first, first);
    for &v in &m[1..] {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    let half = n.div_ceil(2);
    let mut guess = first;
    for _ in 0..4 * n + 64 {
        guess = (min + max) / 2.0;
        let (mut less, mut greater, mut equal) = (0usize, 0usize, 0usize);
        let (mut max_lt_guess, mut min_gt_guess) = (min, max);
        for &v in m {
            if v < guess {
                less += 1;
                if v > max_lt_guess {
                    max_lt_guess = v;
                }
            } else if v > guess {
                greater += 1;
                if v < min_gt_guess {
                    min_gt_guess = v;
                }
            } else {
                equal += 1;
            }
        }
        if less <= half && greater <= half {
            return if less >= half {
                max_lt_guess
            } else if less + equal >= half {
                guess
            } else {
                min_gt_guess
            };
        } else if less > greater {
            max = max_lt_guess;
        } else {
            min = min_gt_guess;
        }
    }
    guess
}

/// `pdqBuffer16x16ToBits`: bit 16*i + j is set iff B[i][j] > median.
fn bits_from_dct(b: &Dct16) -> PdqHash {
    let flat: Vec<f32> = b.iter().flat_map(|r| r.iter().copied()).collect();
    let median = torben(&flat);
    let mut h = PdqHash::ZERO;
    for (k, &v) in flat.iter().enumerate() {
        if v > median {
            h.set_bit(k);
        }
    }
    h
}

/// The reference's eight DCT-domain dihedral transforms, in its order.
fn dihedral_hashes(a: &Dct16) -> [PdqHash; 8] {
    // (transpose, negate(i, j)) per variant; B[j][i] (transpose) or B[i][j].
    type Neg = fn(usize, usize) -> bool;
    let variants: [(bool, Neg); 8] = [
        (false, |_, _| false),            // original
        (true, |_, j| j & 1 == 0),        // rotate 90
        (false, |i, j| (i + j) & 1 == 1), // rotate 180
        (true, |i, _| i & 1 == 0),        // rotate 270
        (false, |i, _| i & 1 == 0),       // flip x
        (false, |_, j| j & 1 == 0),       // flip y
        (true, |_, _| false),             // flip plus 1 (transpose)
        (true, |i, j| (i + j) & 1 == 1),  // flip minus 1 (anti-transpose)
    ];
    let mut out = [PdqHash::ZERO; 8];
    for (o, (transpose, neg)) in out.iter_mut().zip(variants.iter()) {
        let mut b = [[0.0f32; DCT_OUT]; DCT_OUT];
        for i in 0..DCT_OUT {
            for j in 0..DCT_OUT {
                let v = if neg(i, j) { -a[i][j] } else { a[i][j] };
                if *transpose {
                    b[j][i] = v;
                } else {
                    b[i][j] = v;
                }
            }
        }
        *o = bits_from_dct(&b);
    }
    out
}

/// Stored and logged as its 64 hex digits.
impl serde::Serialize for PdqHash {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for PdqHash {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let hex = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        PdqHash::from_hex(&hex).ok_or_else(|| serde::de::Error::custom("not 64 hex digits"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic test images; identical generators in numpy produced the
    /// expected hashes below with `pdqhash` 0.2.8 (reference C++).
    fn lcg_image(w: usize, h: usize, seed: u64, lo: u8, span: u64) -> Vec<u8> {
        let mut s = seed;
        (0..w * h * 3)
            .map(|_| {
                s = (s.wrapping_mul(1_103_515_245).wrapping_add(12_345)) & 0x7fff_ffff;
                lo + ((s >> 16) % span) as u8
            })
            .collect()
    }

    fn gradient(w: usize, h: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            for x in 0..w {
                v.push((x * 255 / (w - 1)) as u8);
                v.push((y * 255 / (h - 1)) as u8);
                v.push(((x * 3 + y * 5) % 256) as u8);
            }
        }
        v
    }

    fn checker(w: usize, h: usize, s: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            for x in 0..w {
                let r = ((x / s + y / s) % 2) * 200 + 20;
                v.push(r as u8);
                v.push((255 - r) as u8);
                v.push(((x * y) % 256) as u8);
            }
        }
        v
    }

    fn hx(s: &str) -> PdqHash {
        PdqHash::from_hex(s).unwrap_or(PdqHash::ZERO)
    }

    #[test]
    fn known_vectors_match_reference() {
        type Case = (&'static str, Vec<u8>, usize, usize, &'static str, u8);
        let cases: [Case; 4] = [
            (
                "gradient",
                gradient(97, 61),
                97,
                61,
                "0b5a3555604a4dd6a94251beeb53da16146afad4009bdff2aaa35356bfb44a29",
                58,
            ),
            (
                "checker",
                checker(200, 150, 8),
                200,
                150,
                "baaafffcbbbaf5c8ffbaf6c0ffba9240fabaf700bba8ca40b2a84200a8a80000",
                100,
            ),
            (
                "lcg",
                lcg_image(131, 67, 7, 0, 256),
                131,
                67,
                "4ae94dc298cbfd5ceede3af0e5698c6091251aaa3f766123a18330676b7213cd",
                100,
            ),
            (
                "lcg64",
                lcg_image(64, 64, 42, 100, 3),
                64,
                64,
                "c3af734acdce8a2aa64a8429359e7b0f259d0fd85fa1626633de5740d0c37147",
                0,
            ),
        ];
        for (name, px, w, h, hex, q) in cases.iter() {
            let got = hash_rgb(px, *w, *h);
            assert_eq!(
                got,
                Some(Pdq {
                    hash: hx(hex),
                    quality: *q
                }),
                "{name}"
            );
            assert_eq!(
                got.map(|p| p.hash.to_hex()).as_deref(),
                Some(*hex),
                "{name}"
            );
        }
    }

    #[test]
    fn known_dihedral_vectors_match_reference() {
        let expected = [
            "0b5a3555604a4dd6a94251beeb53da16146afad4009bdff2aaa35356bfb44a29",
            "0a5ac8aa6a4abb299b5baf6d835f21e9147a052b049b2889a4a1aeb9b7bcbdd6",
            "560e9ff8351fe754fc05fb103e0660ac413f507a55ce5058f7f6f1fca0e1a003",
            "7f1f62023f1f1183ce0e05d7d60a8b53413faf8151ce8a23f1f44453eae9177c",
            "0b5acaaee04ab229a952ae45eb53b5e9146a052f009ba58daaa3aca9ffb4b5d6",
            "5e0f6000351f1883fc1504efbe061f43413faf8155ce8aa7fff60603eae11f7c",
            "0b5a37556a4a45d69b5b5092835fde16147afad4049bd776a4a15546bfbc4229",
            "5c0f9dfc3f0fee7c4e00fa28d60874ac412e507e41ce74dce1f4bbaca2e92883",
        ];
        let got = hash_rgb_dihedral(&gradient(97, 61), 97, 61);
        assert_eq!(got, Some((expected.map(hx), 58)));

        // 64x64: the dihedral path always blurs (no 64x64 shortcut).
        let expected64 = [
            "c3af734acdce8a2aa64a8429359e7b0f259d0fd85fa1626633de5740d0c37147",
            "bc021ec84b99bcd03164d109d97c1c12a3ea97209430fd37ffc85c66fb1f7a5c",
            "96fad9e098bb2080f33f2e8360cbd125708aa5720af4cccc668bfde88196dbed",
            "e956b4621ecc167a64316ba18c29b6b8e6af390ac165479daa9df6ccae4ad072",
            "c3af8cb5cdce7145a64a7b96359e8470259cf0275fa1991933dea0bcd0c30eb8",
            "96fa261f989bdf7ff31fd17c60cb2eda70885a8d0af43333668b0a1781962412",
            "bc02e1374b99432f31602ee4d97ce3eda2ea685f943002c8ffc8a399fb1b85a3",
            "e9574b9d1ecce9856435845c8c294947f6bfc275e965a862aa9d0933aeca2f09",
        ];
        let got = hash_rgb_dihedral(&lcg_image(64, 64, 42, 100, 3), 64, 64);
        assert_eq!(got, Some((expected64.map(hx), 0)));
    }

    #[test]
    fn dct_matrix_is_bit_identical_to_reference() {
        // FNV-1a over the little-endian bytes of the reference's 16x64 float
        // `dct_matrix_64`, computed from the C++ table (g++ 12, glibc).
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for row in dct_matrix() {
            for v in row {
                for b in v.to_bits().to_le_bytes() {
                    h ^= u64::from(b);
                    h = h.wrapping_mul(0x100_0000_01b3);
                }
            }
        }
        assert_eq!(h, 0x4d9a_13ea_83b0_b0c5);
        assert_eq!(dct_matrix()[0][0].to_bits(), 0x3e34_f6fe);
        assert_eq!(dct_matrix()[15][63].to_bits(), 0x3e27_3d74);
    }

    #[test]
    fn hex_layout_matches_hash256_format() {
        // C++: h.setBit(255); h.setBit(0); h.setBit(17); h.setBit(100); h.format()
        let mut h = PdqHash::ZERO;
        for k in [255, 0, 17, 100] {
            h.set_bit(k);
        }
        assert_eq!(
            h.to_hex(),
            "8000000000000000000000000000000000000010000000000000000000020001"
        );
        assert!(h.bit(255) && h.bit(100) && h.bit(17) && h.bit(0) && !h.bit(1));
        assert!(!h.bit(256));
    }

    #[test]
    fn hex_round_trip() {
        let px = lcg_image(131, 67, 7, 0, 256);
        let Some(p) = hash_rgb(&px, 131, 67) else {
            panic!("hash failed")
        };
        let s = p.hash.to_hex();
        assert_eq!(s.len(), 64);
        assert!(s
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
        assert_eq!(PdqHash::from_hex(&s), Some(p.hash));
        assert_eq!(PdqHash::from_hex(&s.to_uppercase()), Some(p.hash));
        assert_eq!(format!("{}", p.hash), s);
        for bad in ["", "0", &s[1..], &format!("{s}0"), &s.replacen('a', "g", 1)] {
            if bad != s {
                assert_eq!(PdqHash::from_hex(bad), None, "{bad:?}");
            }
        }
        assert_eq!(PdqHash::from_hex(&"é".repeat(32)), None);
        assert_eq!(PdqHash::ZERO.to_hex(), "0".repeat(64));
    }

    #[test]
    fn distance_counts_bits() {
        let a = PdqHash::ZERO;
        let b = PdqHash([0xff; 32]);
        assert_eq!(a.distance(&a), 0);
        assert_eq!(a.distance(&b), 256);
        let mut c = a;
        c.set_bit(3);
        c.set_bit(200);
        assert_eq!(a.distance(&c), 2);
        assert_eq!(c.distance(&b), 254);
        let g = hash_rgb_dihedral(&gradient(97, 61), 97, 61).map(|(h, _)| h);
        let g = g.unwrap_or([PdqHash::ZERO; 8]);
        // Symmetric, and variants of a non-symmetric image differ.
        assert_eq!(g[0].distance(&g[6]), g[6].distance(&g[0]));
        assert!(g[0].distance(&g[2]) > 0);
    }

    #[test]
    fn degenerate_inputs_do_not_panic() {
        let zero = Some(Pdq {
            hash: PdqHash::ZERO,
            quality: 0,
        });
        // Empty / zero-sized: None.
        assert_eq!(hash_rgb(&[], 0, 0), None);
        assert_eq!(hash_rgb(&[1, 2, 3], 0, 1), None);
        assert_eq!(hash_rgb(&[1, 2, 3], 1, 0), None);
        assert_eq!(hash_rgb_dihedral(&[], 0, 0), None);
        assert_eq!(hash_luma(&[], 0, 0), None);
        // Short buffers and overflowing sizes: None.
        assert_eq!(hash_rgb(&[0; 29], 5, 2), None);
        assert_eq!(hash_rgb(&[0; 74], 5, 5), None);
        assert_eq!(hash_rgb(&[0; 3], usize::MAX, 2), None);
        assert_eq!(hash_rgb(&[0; 3], usize::MAX / 3 + 1, 1), None);
        assert_eq!(hash_luma(&[0.0; 24], 5, 5), None);
        assert_eq!(hash_luma_dihedral(&[0.0; 3], usize::MAX, usize::MAX), None);
        // Below 5 px on a side: the reference's all-zero hash, quality 0.
        assert_eq!(hash_rgb(&[9, 8, 7], 1, 1), zero);
        assert_eq!(hash_rgb(&lcg_image(2, 3, 1, 0, 256), 2, 3), zero);
        assert_eq!(hash_rgb(&lcg_image(1, 1000, 1, 0, 256), 1, 1000), zero);
        assert_eq!(hash_rgb(&lcg_image(4, 5000, 1, 0, 256), 4, 5000), zero);
        assert_eq!(
            hash_rgb_dihedral(&lcg_image(4, 4, 1, 0, 256), 4, 4),
            Some(([PdqHash::ZERO; 8], 0))
        );
        // Extra trailing bytes are ignored.
        let px = gradient(97, 61);
        let mut longer = px.clone();
        longer.extend_from_slice(&[1, 2, 3, 4]);
        assert_eq!(hash_rgb(&longer, 97, 61), hash_rgb(&px, 97, 61));
        // Extreme aspect ratios and minimal hashable sizes.
        for (w, h) in [
            (5, 5),
            (5, 4000),
            (4000, 5),
            (20000, 5),
            (5, 20000),
            (6, 7),
            (129, 5),
        ] {
            let px = lcg_image(w, h, 3, 0, 256);
            assert!(hash_rgb(&px, w, h).is_some(), "{w}x{h}");
            assert!(hash_rgb_dihedral(&px, w, h).is_some(), "{w}x{h}");
        }
        // Constant images (DCT is pure rounding noise; ties in the median).
        for v in [0u8, 1, 128, 255] {
            let px = vec![v; 70 * 90 * 3];
            let q = hash_rgb(&px, 70, 90).map(|p| p.quality);
            assert_eq!(q, Some(0));
        }
    }

    #[test]
    fn non_finite_luma_is_defined() {
        let n = 40 * 30;
        for bad in [
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::MAX,
            -f32::MAX,
        ] {
            let mut l = vec![100.0f32; n];
            for (i, v) in l.iter_mut().enumerate() {
                if i % 7 == 0 {
                    *v = bad;
                }
            }
            assert!(hash_luma(&l, 40, 30).is_some());
            assert!(hash_luma_dihedral(&l, 40, 30).is_some());
            let all = vec![bad; n];
            assert!(hash_luma(&all, 40, 30).is_some());
        }
        let huge = vec![3.0e38f32; 64 * 64];
        assert!(hash_luma(&huge, 64, 64).is_some());
    }

    #[test]
    fn luma_entry_points_agree_with_rgb() {
        let (w, h) = (131, 67);
        let px = lcg_image(w, h, 7, 0, 256);
        let luma: Vec<f32> = px
            .chunks_exact(3)
            .map(|p| luma_pdqhash(p[0], p[1], p[2]))
            .collect();
        assert_eq!(hash_luma(&luma, w, h), hash_rgb(&px, w, h));
        assert_eq!(
            hash_luma_dihedral(&luma, w, h),
            hash_rgb_dihedral(&px, w, h)
        );
    }

    /// Literal port of the reference blur (two full-size buffers, strided
    /// `box1DFloat`), used to check the streamed version bit for bit.
    fn naive_downsample(luma: &[f32], w: usize, h: usize) -> Image64 {
        fn box1d(inv: &[f32], out: &mut [f32], off: usize, len: usize, stride: usize, full: usize) {
            let half = (full + 2) / 2;
            let (p1, p2, p3, p4) = (half - 1, full - half + 1, len - full, half - 1);
            let (mut li, mut ri, mut oi) = (off, off, off);
            let mut sum = 0.0f32;
            let mut cur = 0i32;
            for _ in 0..p1 {
                sum += inv[ri];
                cur += 1;
                ri += stride;
            }
            for _ in 0..p2 {
                sum += inv[ri];
                cur += 1;
                out[oi] = sum / cur as f32;
                ri += stride;
                oi += stride;
            }
            for _ in 0..p3 {
                sum += inv[ri];
                sum -= inv[li];
                out[oi] = sum / cur as f32;
                li += stride;
                ri += stride;
                oi += stride;
            }
            for _ in 0..p4 {
                sum -= inv[li];
                cur -= 1;
                out[oi] = sum / cur as f32;
                li += stride;
                oi += stride;
            }
        }
        let mut b1 = luma[..w * h].to_vec();
        let mut b2 = vec![0.0f32; w * h];
        let (wx, wy) = (jarosz_window(w), jarosz_window(h));
        for _ in 0..2 {
            for i in 0..h {
                box1d(&b1, &mut b2, i * w, w, 1, wx);
            }
            for j in 0..w {
                box1d(&b2, &mut b1, j, h, w, wy);
            }
        }
        let mut img = [[0.0f32; DOWN]; DOWN];
        for (oi, row) in img.iter_mut().enumerate() {
            let ii = (((oi as f64 + 0.5) * h as f64) / 64.0) as usize;
            for (oj, v) in row.iter_mut().enumerate() {
                let jj = (((oj as f64 + 0.5) * w as f64) / 64.0) as usize;
                *v = b1[ii * w + jj];
            }
        }
        img
    }

    #[test]
    fn streamed_blur_equals_full_buffer_blur() {
        let mut sizes = vec![
            (8200, 6),
            (9001, 9),
            (8193, 131),
            (5, 5),
            (64, 64),
            (4000, 16),
        ];
        for w in [
            5, 6, 7, 8, 9, 13, 63, 64, 65, 127, 128, 129, 130, 255, 256, 257, 385,
        ] {
            for h in [5, 6, 7, 9, 17, 64, 128, 129, 256, 257, 300] {
                sizes.push((w, h));
            }
        }
        let mut s = 12345u64;
        for _ in 0..60 {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            sizes.push((5 + (s >> 33) as usize % 700, 5 + (s >> 13) as usize % 700));
        }
        for (w, h) in sizes {
            let px = lcg_image(w, h, (w * 31 + h) as u64, 0, 256);
            let luma: Vec<f32> = px
                .chunks_exact(3)
                .map(|p| luma_pdqhash(p[0], p[1], p[2]))
                .collect();
            let mut streamed = [[0.0f32; DOWN]; DOWN];
            let src = LumaSource::new(&luma, w, h);
            assert!(src.is_some());
            if let Some(src) = src {
                downsample(&src, w, h, &mut streamed);
            }
            let naive = naive_downsample(&luma, w, h);
            let same = streamed
                .iter()
                .flatten()
                .zip(naive.iter().flatten())
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{w}x{h}");
        }
    }

    #[test]
    fn torben_is_a_median() {
        let mut v: Vec<f32> = (0..256).map(|i| ((i * 37) % 256) as f32).collect();
        assert_eq!(torben(&v), 127.0);
        v.reverse();
        assert_eq!(torben(&v), 127.0);
        assert_eq!(torben(&[1.0; 256]), 1.0);
        assert_eq!(torben(&[]), 0.0);
    }
}
