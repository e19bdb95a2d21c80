//! From dequantised coefficients to the pixels libjpeg-turbo produces, only where they
//! are wanted: its accurate integer IDCT (`jidctint.c`), its "fancy" chroma upsampling
//! (`jdsample.c`) and its YCbCr to RGB conversion (`jdcolor.c`), bit for bit.
//!
//! libjpeg-turbo's IDCT is two passes of one integer butterfly with a rounding shift
//! after each. A butterfly of integer multiplies and adds is linear, so each pass is an
//! integer 8×8 matrix ([`Idct`], derived from the butterfly itself) followed by the
//! same rounding: a wanted row of a block then costs one row of the first pass, and its
//! wanted samples one lane-wise multiply-add per input of the second ([`Picked`]: the
//! matrix's rows for those columns, transposed), instead of the whole block.

use std::num::Wrapping;

/// libjpeg's fixed-point constants (CONST_BITS = 13).
const FIX_0_298631336: i32 = 2446;
const FIX_0_390180644: i32 = 3196;
const FIX_0_541196100: i32 = 4433;
const FIX_0_765366865: i32 = 6270;
const FIX_0_899976223: i32 = 7373;
const FIX_1_175875602: i32 = 9633;
const FIX_1_501321110: i32 = 12299;
const FIX_1_847759065: i32 = 15137;
const FIX_1_961570560: i32 = 16069;
const FIX_2_053119869: i32 = 16819;
const FIX_2_562915447: i32 = 20995;
const FIX_3_072711026: i32 = 25172;
const CONST_BITS: u32 = 13;
const PASS1_BITS: u32 = 2;

/// One pass of `jpeg_idct_islow` over eight inputs, before its final rounding shift, in
/// 32-bit arithmetic as libjpeg-turbo's SIMD code does it (wrapping on damaged data).
fn butterfly(input: [i32; 8]) -> [i32; 8] {
    let w = |v: i32| Wrapping(v);
    let input = input.map(w);
    // Even part.
    let (z2, z3) = (input[2], input[6]);
    let z1 = (z2 + z3) * w(FIX_0_541196100);
    let tmp2 = z1 - z3 * w(FIX_1_847759065);
    let tmp3 = z1 + z2 * w(FIX_0_765366865);
    let (z2, z3) = (input[0], input[4]);
    let tmp0 = (z2 + z3) << CONST_BITS as usize;
    let tmp1 = (z2 - z3) << CONST_BITS as usize;
    let (tmp10, tmp13) = (tmp0 + tmp3, tmp0 - tmp3);
    let (tmp11, tmp12) = (tmp1 + tmp2, tmp1 - tmp2);
    // Odd part.
    let (mut t0, mut t1, mut t2, mut t3) = (input[7], input[5], input[3], input[1]);
    let (z1, z2, z3, z4) = (t0 + t3, t1 + t2, t0 + t2, t1 + t3);
    let z5 = (z3 + z4) * w(FIX_1_175875602);
    t0 *= w(FIX_0_298631336);
    t1 *= w(FIX_2_053119869);
    t2 *= w(FIX_3_072711026);
    t3 *= w(FIX_1_501321110);
    let z1 = -z1 * w(FIX_0_899976223);
    let z2 = -z2 * w(FIX_2_562915447);
    let z3 = -z3 * w(FIX_1_961570560) + z5;
    let z4 = -z4 * w(FIX_0_390180644) + z5;
    t0 += z1 + z3;
    t1 += z2 + z4;
    t2 += z2 + z3;
    t3 += z1 + z4;
    [
        tmp10 + t3,
        tmp11 + t2,
        tmp12 + t1,
        tmp13 + t0,
        tmp13 - t0,
        tmp12 - t1,
        tmp11 - t2,
        tmp10 - t3,
    ]
    .map(|v| v.0)
}

/// The butterfly as a matrix: `weights[output][input]`.
pub(super) struct Idct {
    weights: [[i32; 8]; 8],
}

/// The rounding shift of the second pass (and the level shift after it).
const PASS2_SHIFT: u32 = CONST_BITS + PASS1_BITS + 3;

impl Idct {
    pub(super) fn new() -> Idct {
        let mut weights = [[0i32; 8]; 8];
        for input in 0..8 {
            let mut unit = [0i32; 8];
            unit[input] = 1;
            for (output, value) in butterfly(unit).into_iter().enumerate() {
                weights[output][input] = value;
            }
        }
        Idct { weights }
    }

    /// Row `row` of the first (column) pass: `workspace[column]` for each column. Each
    /// coefficient row that holds a nonzero value is weighted and added lane by lane,
    /// eight columns at once (vector multiply-adds in Wasm's simd128), the others skipped:
    /// most blocks' energy sits in their first rows.
    // The portable path: host builds and the tests (Wasm runs `simd::samples`).
    #[cfg_attr(
        all(target_arch = "wasm32", target_feature = "simd128"),
        allow(dead_code)
    )]
    #[inline]
    pub(super) fn first_pass_row(&self, row: usize, block: &Coefficients) -> [i32; 8] {
        let weights = &self.weights[row];
        let mut sums = [0i32; 8];
        let mut rows = block.nonzero_rows;
        while rows != 0 {
            let k = rows.trailing_zeros() as usize;
            rows &= rows - 1;
            let weight = weights[k];
            for (sum, value) in sums.iter_mut().zip(&block.rows[k]) {
                *sum = sum.wrapping_add(weight.wrapping_mul(*value));
            }
        }
        let round = 1 << (CONST_BITS - PASS1_BITS - 1);
        sums.map(|s| s.wrapping_add(round) >> (CONST_BITS - PASS1_BITS))
    }

    /// The samples of row `row` of `block` at the columns `pick` holds: both passes, the
    /// first lane-wise over the block's nonzero coefficient rows, the second over the
    /// picked columns, in the order they were picked.
    #[inline]
    pub(super) fn samples(&self, row: usize, block: &Coefficients, pick: &Picked) -> [u8; 8] {
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        {
            simd::samples(&self.weights[row & 7], block, pick)
        }
        #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
        {
            pick.samples(&self.first_pass_row(row, block))
        }
    }

    /// The second pass's weights for the columns `columns` (each 0..8, at most eight) of
    /// a block, for [`Picked::samples`].
    pub(super) fn pick(&self, columns: impl IntoIterator<Item = usize>) -> Picked {
        let mut picked = Picked {
            weights: [[0; 8]; 8],
            count: 0,
        };
        for (lane, column) in columns.into_iter().take(8).enumerate() {
            for (input, weights) in picked.weights.iter_mut().enumerate() {
                weights[lane] = self.weights[column & 7][input];
            }
            picked.count = lane + 1;
        }
        picked
    }
}

/// Some columns of a block's second pass, their weights transposed
/// (`weights[input][lane]`): a row's samples at those columns are eight lane-wise
/// multiply-adds of the row's workspace, with no sum across lanes (which Wasm's simd128
/// does slowly) and no butterfly for the columns not wanted.
pub(super) struct Picked {
    weights: [[i32; 8]; 8],
    count: usize,
}

impl Picked {
    /// How many columns were picked: the first that many of [`Picked::samples`] count.
    pub(super) fn len(&self) -> usize {
        self.count
    }

    /// The picked columns' samples of one row of the second pass, clamped to 0..=255, in
    /// the order they were picked.
    // The portable path: host builds and the tests (Wasm runs `simd::samples`).
    #[cfg_attr(
        all(target_arch = "wasm32", target_feature = "simd128"),
        allow(dead_code)
    )]
    #[inline]
    pub(super) fn samples(&self, workspace: &[i32; 8]) -> [u8; 8] {
        if self.count <= 4 {
            // One vector of lanes instead of two: most blocks want four columns or fewer.
            let [a, b, c, d, ..] = self.lanes::<4>(workspace);
            [a, b, c, d, 0, 0, 0, 0]
        } else {
            self.lanes::<8>(workspace)
        }
    }

    // The portable path: host builds and the tests (Wasm runs `simd::samples`).
    #[cfg_attr(
        all(target_arch = "wasm32", target_feature = "simd128"),
        allow(dead_code)
    )]
    #[inline]
    fn lanes<const N: usize>(&self, workspace: &[i32; 8]) -> [u8; 8] {
        let mut sums = [0i32; N];
        for (value, weights) in workspace.iter().zip(&self.weights) {
            for (sum, weight) in sums.iter_mut().zip(weights) {
                *sum = sum.wrapping_add(weight.wrapping_mul(*value));
            }
        }
        let mut out = [0u8; 8];
        for (o, sum) in out.iter_mut().zip(sums) {
            let value = (sum.wrapping_add(1 << (PASS2_SHIFT - 1)) >> PASS2_SHIFT) + 128;
            *o = value.clamp(0, 255) as u8;
        }
        out
    }
}

/// A block's dequantised coefficients laid out densely (`rows[row][column]`), with a bit
/// for each row that holds a nonzero one. The decoders write into one and clear it after
/// each block ([`Coefficients::clear`] touches only the rows written).
pub(super) struct Coefficients {
    rows: [[i32; 8]; 8],
    nonzero_rows: u8,
}

impl Coefficients {
    pub(super) fn new() -> Coefficients {
        Coefficients {
            rows: [[0; 8]; 8],
            nonzero_rows: 0,
        }
    }

    /// Sets the coefficient at `index` (natural order, 0..64) to `value`.
    #[inline]
    pub(super) fn set(&mut self, index: u8, value: i32) {
        let (row, column) = (usize::from((index >> 3) & 7), usize::from(index & 7));
        self.rows[row][column] = value;
        self.nonzero_rows |= 1 << row;
    }

    /// Whether every row of the first pass is the same: only the first coefficient row
    /// holds values, and its weight is the same for every output row (the butterfly's
    /// `tmp0`/`tmp1`, `z2 << CONST_BITS`).
    #[inline]
    pub(super) fn rows_alike(&self) -> bool {
        self.nonzero_rows <= 1
    }

    /// Back to all zeros.
    #[inline]
    pub(super) fn clear(&mut self) {
        let mut rows = self.nonzero_rows;
        while rows != 0 {
            let k = rows.trailing_zeros() as usize;
            rows &= rows - 1;
            self.rows[k] = [0; 8];
        }
        self.nonzero_rows = 0;
    }
}

/// The box average, over each `8 / per_block`-pixel group of a block, of the cosine each
/// coefficient contributes (with JPEG's IDCT scale): a reduced image straight from the
/// coefficients, for the preview. The basis is separable, so a block costs a pass along
/// its nonzero rows and one down the outputs' rows.
pub(super) struct BoxBasis {
    pub(super) per_block: usize,
    /// `axis[frequency][output]`: the mean of that frequency's cosine over each group.
    axis: [[f32; 4]; 8],
}

impl BoxBasis {
    pub(super) fn new(per_block: usize) -> BoxBasis {
        let per_block = per_block.clamp(1, 4);
        let group = 8 / per_block;
        let mut axis = [[0f32; 4]; 8];
        for (frequency, means) in axis.iter_mut().enumerate() {
            let scale = if frequency == 0 {
                std::f64::consts::FRAC_1_SQRT_2
            } else {
                1.0
            } / 2.0;
            for (output, mean) in means.iter_mut().take(per_block).enumerate() {
                let sum: f64 = (output * group..(output + 1) * group)
                    .map(|x| {
                        let angle = (2 * x + 1) as f64 * frequency as f64;
                        (angle * std::f64::consts::PI / 16.0).cos()
                    })
                    .sum();
                *mean = (scale * sum / group as f64) as f32;
            }
        }
        BoxBasis { per_block, axis }
    }

    /// The block's reduced samples, `per_block` × `per_block`, row by row (the first
    /// `per_block²` of the sixteen).
    #[inline]
    pub(super) fn block(&self, block: &Coefficients) -> [u8; 16] {
        let n = self.per_block;
        // sums[y][x], four lanes whatever `per_block` (the unused ones stay unread).
        let mut sums = [[128f32; 4]; 4];
        let mut rows = block.nonzero_rows;
        while rows != 0 {
            let v = rows.trailing_zeros() as usize;
            rows &= rows - 1;
            // Along the row: this row's contribution to each output column.
            let mut across = [0f32; 4];
            for (&value, means) in block.rows[v].iter().zip(&self.axis) {
                let value = value as f32;
                for (a, mean) in across.iter_mut().zip(means) {
                    *a += mean * value;
                }
            }
            // Down: weighted into each output row.
            for (sum_row, &mean) in sums.iter_mut().zip(&self.axis[v]).take(n) {
                for (sum, a) in sum_row.iter_mut().zip(across) {
                    *sum += mean * a;
                }
            }
        }
        let mut out = [0u8; 16];
        for y in 0..n {
            for x in 0..n {
                // +0.5 and truncation: round half up, within 0..=255.
                out[y * n + x] = (sums[y][x] + 0.5).clamp(0.0, 255.0) as u8;
            }
        }
        out
    }
}

/// How a component's samples map onto the image's pixels: its subsampling factors
/// (1×1, 2×1 or 2×2) and its size in samples.
#[derive(Clone, Copy, Debug)]
pub(super) struct Upsampling {
    pub(super) horizontal: u32,
    pub(super) vertical: u32,
    pub(super) width: u32,
    pub(super) height: u32,
}

impl Upsampling {
    /// The component rows (or columns) that pixel row (column) `at` reads, on an axis
    /// subsampled by `factor` with `size` samples: the nearest one, then the other
    /// neighbour of the triangle filter, each within the component (libjpeg-turbo
    /// repeats the edge samples).
    pub(super) fn taps(at: u32, factor: u32, size: u32) -> [u32; 2] {
        if factor == 1 {
            return [at, at];
        }
        let nearest = (at / 2).min(size - 1);
        let other = if at.is_multiple_of(2) {
            nearest.saturating_sub(1)
        } else {
            (nearest + 1).min(size - 1)
        };
        [nearest, other]
    }

    /// The component upsampled as libjpeg-turbo does it, at pixel rows `rows` × columns
    /// `columns`, row by row. The component's sample (row, column) is in `samples` at
    /// `row_at(row) * stride + column_at(column)`: both looked up once per row and per
    /// column, not per pixel (this ran once per tap of every pixel, and was a fifth of a
    /// 1024×768 decode).
    pub(super) fn plane(
        &self,
        rows: &[u32],
        columns: &[u32],
        samples: &[u8],
        row_at: impl Fn(u32) -> usize,
        column_at: impl Fn(u32) -> usize,
        stride: usize,
    ) -> Vec<u8> {
        // Each column's two taps (as offsets in a row), whether they are one sample (at
        // the component's edge), and whether it is an even pixel.
        let column_taps: Vec<(usize, usize, bool, bool)> = columns
            .iter()
            .map(|&x| {
                let [near, other] = Self::taps(x, self.horizontal, self.width);
                (column_at(near), column_at(other), near == other, x % 2 == 0)
            })
            .collect();
        let s = |row: usize, column: usize| {
            i32::from(samples.get(row + column).copied().unwrap_or(128))
        };
        let clamp = |v: i32| v.clamp(0, 255) as u8;
        let mut out = Vec::with_capacity(rows.len() * columns.len());
        for &y in rows {
            let [row, other_row] = Self::taps(y, self.vertical, self.height);
            let (row, other_row) = (row_at(row) * stride, row_at(other_row) * stride);
            let taps = column_taps.iter();
            match (self.horizontal, self.vertical) {
                (1, 1) => out.extend(taps.map(|&(column, ..)| clamp(s(row, column)))),
                // h2v1_fancy_upsample: 3/4 nearer + 1/4 further, the edges copied.
                (2, 1) => out.extend(taps.map(|&(column, other, edge, even)| {
                    clamp(if edge {
                        s(row, column)
                    } else {
                        let bias = if even { 1 } else { 2 };
                        (3 * s(row, column) + s(row, other) + bias) >> 2
                    })
                })),
                // h2v2_fancy_upsample: the vertical sums, then 3/4 and 1/4 of them.
                _ => out.extend(taps.map(|&(column, other, edge, even)| {
                    let sum = |c: usize| 3 * s(row, c) + s(other_row, c);
                    let bias = if even { 8 } else { 7 };
                    clamp(if edge {
                        (sum(column) * 4 + bias) >> 4
                    } else {
                        (sum(column) * 3 + sum(other) + bias) >> 4
                    })
                })),
            }
        }
        out
    }
}

/// libjpeg's YCbCr to RGB tables (`jdcolor.c`, SCALEBITS = 16).
pub(super) struct YccToRgb {
    cr_r: [i32; 256],
    cb_b: [i32; 256],
    cr_g: [i32; 256],
    cb_g: [i32; 256],
    /// The tables' factors, `FIX(1.40200)`, `FIX(1.77200)`, `FIX(0.71414)` and
    /// `FIX(0.34414)`: the simd128 path computes the entries instead of looking them up.
    #[cfg_attr(
        not(all(target_arch = "wasm32", target_feature = "simd128")),
        allow(dead_code)
    )]
    fixed: [i32; 4],
}

/// libjpeg's fixed point for the colour conversion: 16 fraction bits, rounding by a half.
const YCC_SCALEBITS: u32 = 16;
const YCC_ONE_HALF: i32 = 1 << (YCC_SCALEBITS - 1);

impl YccToRgb {
    pub(super) fn new() -> YccToRgb {
        let fix = |x: f64| (x * f64::from(1u32 << YCC_SCALEBITS) + 0.5) as i32;
        let fixed = [fix(1.40200), fix(1.77200), fix(0.71414), fix(0.34414)];
        let [r_cr, b_cb, g_cr, g_cb] = fixed.map(i64::from);
        let half = i64::from(YCC_ONE_HALF);
        let table = |f: &dyn Fn(i64) -> i64| -> [i32; 256] {
            std::array::from_fn(|i| f(i as i64 - 128) as i32)
        };
        YccToRgb {
            cr_r: table(&|x| (r_cr * x + half) >> YCC_SCALEBITS),
            cb_b: table(&|x| (b_cb * x + half) >> YCC_SCALEBITS),
            cr_g: table(&|x| -g_cr * x),
            cb_g: table(&|x| -g_cb * x + half),
            fixed,
        }
    }

    /// Planar samples to interleaved RGB, as [`YccToRgb::rgb`] per pixel, over as many
    /// pixels as the shortest of the four slices holds (`out` three bytes a pixel). In
    /// Wasm, sixteen pixels at a time in simd128: the 448×448 model pixels and the
    /// 512×384 preview of a 1024×768 JPEG went through the tables one pixel at a time, a
    /// large part of `assemble`, itself ~15% of the decode in Wasm.
    pub(super) fn convert(&self, y: &[u8], cb: &[u8], cr: &[u8], out: &mut [u8]) {
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        let done = simd::ycc_to_rgb(self.fixed, y, cb, cr, out);
        #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
        let done = 0;
        let rest = out.get_mut(3 * done..).unwrap_or_default();
        let samples = y.iter().zip(cb).zip(cr).skip(done);
        for (pixel, ((&y, &cb), &cr)) in rest.chunks_exact_mut(3).zip(samples) {
            pixel.copy_from_slice(&self.rgb(y, cb, cr));
        }
    }

    #[inline]
    pub(super) fn rgb(&self, y: u8, cb: u8, cr: u8) -> [u8; 3] {
        let (y, cb, cr) = (i32::from(y), usize::from(cb), usize::from(cr));
        let clamp = |v: i32| v.clamp(0, 255) as u8;
        [
            clamp(y + self.cr_r[cr]),
            clamp(y + ((self.cb_g[cb] + self.cr_g[cr]) >> 16)),
            clamp(y + self.cb_b[cb]),
        ]
    }
}

/// [`Idct::samples`] in Wasm's simd128, written out: LLVM vectorises the portable loops
/// in one build and not in the next (the first pass came out as eight scalar multiplies
/// once the code around it changed), and in Wasm that decides the decode's speed. The
/// arithmetic is the portable path's, lane for lane: wrapping 32-bit multiply-adds, the
/// same rounding shifts; the clamp to 0..=255 is two saturating narrowings.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd {
    use super::{Coefficients, Picked, CONST_BITS, PASS1_BITS, PASS2_SHIFT};
    use core::arch::wasm32::*;

    #[inline]
    fn load(lanes: &[i32]) -> v128 {
        // Every caller passes four lanes of an `[i32; 8]`: the check folds away.
        assert!(lanes.len() >= 4);
        // SAFETY: `lanes` holds at least four i32 (checked above); `v128_load` reads 16
        // bytes with no alignment requirement.
        unsafe { v128_load(lanes.as_ptr().cast()) }
    }

    #[inline]
    pub(super) fn samples(weights: &[i32; 8], block: &Coefficients, pick: &Picked) -> [u8; 8] {
        // First pass: workspace row = Σ over nonzero coefficient rows of weight × row.
        // Straight-line over the eight rows, each behind its bit: a loop's back-edge
        // carries wasmtime's epoch check, around which Cranelift keeps both sums in
        // stack slots (a store and a load per row).
        let (mut low, mut high) = (i32x4_splat(0), i32x4_splat(0));
        for (k, (row, &weight)) in block.rows.iter().zip(weights).enumerate() {
            if block.nonzero_rows & (1 << k) != 0 {
                let weight = i32x4_splat(weight);
                low = i32x4_add(low, i32x4_mul(weight, load(&row[..4])));
                high = i32x4_add(high, i32x4_mul(weight, load(&row[4..])));
            }
        }
        let round = i32x4_splat(1 << (CONST_BITS - PASS1_BITS - 1));
        let low = i32x4_shr(i32x4_add(low, round), CONST_BITS - PASS1_BITS);
        let high = i32x4_shr(i32x4_add(high, round), CONST_BITS - PASS1_BITS);
        // Second pass: each workspace value broadcast and weighted into the picked lanes.
        let w = &pick.weights;
        let term = |value: v128, k: usize, half: usize| {
            i32x4_mul(value, load(&w[k][4 * half..4 * half + 4]))
        };
        let spread = [
            i32x4_shuffle::<0, 0, 0, 0>(low, low),
            i32x4_shuffle::<1, 1, 1, 1>(low, low),
            i32x4_shuffle::<2, 2, 2, 2>(low, low),
            i32x4_shuffle::<3, 3, 3, 3>(low, low),
            i32x4_shuffle::<0, 0, 0, 0>(high, high),
            i32x4_shuffle::<1, 1, 1, 1>(high, high),
            i32x4_shuffle::<2, 2, 2, 2>(high, high),
            i32x4_shuffle::<3, 3, 3, 3>(high, high),
        ];
        let sum = |half: usize| {
            let mut sum = term(spread[0], 0, half);
            for (k, &value) in spread.iter().enumerate().skip(1) {
                sum = i32x4_add(sum, term(value, k, half));
            }
            let round = i32x4_splat(1 << (PASS2_SHIFT - 1));
            i32x4_add(
                i32x4_shr(i32x4_add(sum, round), PASS2_SHIFT),
                i32x4_splat(128),
            )
        };
        let first = sum(0);
        let second = if pick.count > 4 {
            sum(1)
        } else {
            i32x4_splat(0)
        };
        // Saturating i32 → i16 → u8: the clamp to 0..=255.
        let bytes = u8x16_narrow_i16x8(i16x8_narrow_i32x4(first, second), i16x8_splat(0));
        let mut out = [0u8; 8];
        out.copy_from_slice(&u8x16_to_array(bytes)[..8]);
        out
    }

    /// Where each byte of three interleaved RGB vectors (16 pixels) comes from in one
    /// channel's vector: the pixel, or 0x80 (not this channel: `i8x16_swizzle` gives 0).
    const fn interleave(channel: usize) -> [[u8; 16]; 3] {
        let mut picks = [[0x80u8; 16]; 3];
        let mut at = 0;
        while at < 48 {
            if at % 3 == channel {
                picks[at / 16][at % 16] = (at / 3) as u8;
            }
            at += 1;
        }
        picks
    }
    const PICKS: [[[u8; 16]; 3]; 3] = [interleave(0), interleave(1), interleave(2)];

    /// [`super::YccToRgb::convert`]'s whole groups of 16 pixels; returns how many pixels
    /// it wrote. Each table entry is computed as libjpeg computes it, in 32-bit lanes
    /// (`(FIX(c) · (x − 128) + ONE_HALF) >> 16`, the green one summed before its shift),
    /// and the clamp to 0..=255 is two saturating narrowings.
    pub(super) fn ycc_to_rgb(
        fixed: [i32; 4],
        y: &[u8],
        cb: &[u8],
        cr: &[u8],
        out: &mut [u8],
    ) -> usize {
        use super::YCC_ONE_HALF;
        let pixels = y.len().min(cb.len()).min(cr.len()).min(out.len() / 3) / 16 * 16;
        let [r_cr, b_cb, g_cr, g_cb] = fixed.map(|f| i32x4_splat(f));
        let (half, centre) = (i32x4_splat(YCC_ONE_HALF), i32x4_splat(128));
        // SAFETY (every load and store below): each reads or writes 16 bytes within a
        // slice of at least that length, taken with bounds checks; no alignment needed.
        let picks = PICKS.map(|vectors| vectors.map(|p| unsafe { v128_load(p.as_ptr().cast()) }));
        let load16 = |samples: &[u8], at: usize| -> [v128; 4] {
            let bytes = unsafe { v128_load(samples[at..at + 16].as_ptr().cast()) };
            let (low, high) = (
                u16x8_extend_low_u8x16(bytes),
                u16x8_extend_high_u8x16(bytes),
            );
            [
                u32x4_extend_low_u16x8(low),
                u32x4_extend_high_u16x8(low),
                u32x4_extend_low_u16x8(high),
                u32x4_extend_high_u16x8(high),
            ]
        };
        let narrow = |lanes: [v128; 4]| {
            u8x16_narrow_i16x8(
                i16x8_narrow_i32x4(lanes[0], lanes[1]),
                i16x8_narrow_i32x4(lanes[2], lanes[3]),
            )
        };
        for at in (0..pixels).step_by(16) {
            let (luma, blue, red) = (load16(y, at), load16(cb, at), load16(cr, at));
            let mut channels = [[i32x4_splat(0); 4]; 3];
            for quarter in 0..4 {
                let (l, b, r) = (
                    luma[quarter],
                    i32x4_sub(blue[quarter], centre),
                    i32x4_sub(red[quarter], centre),
                );
                let term = |fix: v128, x: v128| i32x4_mul(fix, x);
                let shifted = |sum: v128| i32x4_shr(sum, super::YCC_SCALEBITS);
                channels[0][quarter] = i32x4_add(l, shifted(i32x4_add(term(r_cr, r), half)));
                let green = i32x4_sub(i32x4_sub(half, term(g_cb, b)), term(g_cr, r));
                channels[1][quarter] = i32x4_add(l, shifted(green));
                channels[2][quarter] = i32x4_add(l, shifted(i32x4_add(term(b_cb, b), half)));
            }
            let [r, g, b] = channels.map(narrow);
            let target = &mut out[3 * at..3 * at + 48];
            for (k, chunk) in target.chunks_exact_mut(16).enumerate() {
                let vector = v128_or(
                    v128_or(i8x16_swizzle(r, picks[0][k]), i8x16_swizzle(g, picks[1][k])),
                    i8x16_swizzle(b, picks[2][k]),
                );
                unsafe { v128_store(chunk.as_mut_ptr().cast(), vector) };
            }
        }
        pixels
    }

    fn u8x16_to_array(v: v128) -> [u8; 16] {
        let mut out = [0u8; 16];
        // SAFETY: `out` is 16 bytes; `v128_store` has no alignment requirement.
        unsafe { v128_store(out.as_mut_ptr().cast(), v) };
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// libjpeg-turbo's two passes, whole block, written out as in `jidctint.c`.
    fn reference_idct(coefficients: &[i32; 64]) -> [u8; 64] {
        let mut workspace = [0i32; 64];
        for column in 0..8 {
            let input = std::array::from_fn(|row| coefficients[row * 8 + column]);
            for (row, value) in butterfly(input).into_iter().enumerate() {
                workspace[row * 8 + column] = value.wrapping_add(1 << 10) >> 11;
            }
        }
        let mut out = [0u8; 64];
        for row in 0..8 {
            let input = std::array::from_fn(|column| workspace[row * 8 + column]);
            for (column, value) in butterfly(input).into_iter().enumerate() {
                out[row * 8 + column] =
                    ((value.wrapping_add(1 << 17) >> 18) + 128).clamp(0, 255) as u8;
            }
        }
        out
    }

    /// Every (Cb, Cr) pair, at black, white and a luma that varies with them, through the
    /// row conversion (simd128 in Wasm) against the tables pixel by pixel: the same bytes,
    /// clamped at both ends. An odd length leaves a tail for the per-pixel path.
    #[test]
    fn converting_rows_matches_the_tables_pixel_by_pixel() {
        let ycc = YccToRgb::new();
        let pairs = 256 * 256 + 5;
        let cb: Vec<u8> = (0..pairs).map(|i| (i % 256) as u8).collect();
        let cr: Vec<u8> = (0..pairs).map(|i| (i / 256 % 256) as u8).collect();
        let varying: Vec<u8> = (0..pairs).map(|i| (i * 7 + i / 256 * 13) as u8).collect();
        for y in [vec![0u8; pairs], vec![255u8; pairs], varying] {
            let mut out = vec![0u8; pairs * 3];
            ycc.convert(&y, &cb, &cr, &mut out);
            for (i, pixel) in out.chunks_exact(3).enumerate() {
                assert_eq!(pixel, ycc.rgb(y[i], cb[i], cr[i]), "pixel {i}");
            }
        }
        // The shortest slice bounds the work; the rest of `out` is untouched.
        let mut out = vec![9u8; 3 * 40];
        ycc.convert(&cb[..40], &cb[..33], &cr[..40], &mut out);
        assert!(out[3 * 33..].iter().all(|&b| b == 9));
        assert_eq!(&out[3 * 32..3 * 33], ycc.rgb(cb[32], cb[32], cr[32]));
    }

    /// A deterministic pseudo-random sequence (a linear congruential generator).
    struct Lcg(u32);

    impl Lcg {
        fn next(&mut self) -> u32 {
            self.0 = self.0.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            self.0
        }
    }

    /// A random block over the first `positions` natural indices, each nonzero with a
    /// chance of `chance_in_16` in 16, within ±`range / 2`: as an array for
    /// [`reference_idct`] and as [`Coefficients`].
    fn random_block(
        rng: &mut Lcg,
        positions: usize,
        chance_in_16: u32,
        range: i32,
    ) -> ([i32; 64], Coefficients) {
        let mut coefficients = [0i32; 64];
        let mut block = Coefficients::new();
        for (index, c) in coefficients.iter_mut().enumerate().take(positions) {
            if rng.next() >> 28 < chance_in_16 {
                *c = (rng.next() >> 8) as i32 % range - range / 2;
                if *c != 0 {
                    block.set(index as u8, *c);
                }
            }
        }
        (coefficients, block)
    }

    #[test]
    fn picked_samples_equal_the_whole_block() {
        let idct = Idct::new();
        let mut rng = Lcg(12345);
        for round in 0..500 {
            // Large values too, as damaged data carries: the arithmetic wraps as
            // libjpeg-turbo's SIMD code does.
            let range = if round % 50 == 0 { 1 << 20 } else { 600 };
            let (coefficients, block) = random_block(&mut rng, 64, 5, range);
            let whole = reference_idct(&coefficients);
            // Every column, then a random subset of 1–8 in ascending order.
            let all = idct.pick(0..8);
            let mask = (rng.next() >> 24) as u8 | 1;
            let some: Vec<usize> = (0..8).filter(|c| mask & (1 << c) != 0).collect();
            let few = idct.pick(some.iter().copied());
            assert_eq!(few.len(), some.len());
            for row in 0..8 {
                assert_eq!(idct.samples(row, &block, &all), whole[row * 8..row * 8 + 8]);
                let samples = idct.samples(row, &block, &few);
                for (lane, &column) in some.iter().enumerate() {
                    assert_eq!(samples[lane], whole[row * 8 + column], "row {row} {some:?}");
                }
            }
        }
    }

    #[test]
    fn a_block_whose_rows_are_alike_has_one_row_eight_times() {
        let mut rng = Lcg(99);
        for _ in 0..200 {
            let (coefficients, block) = random_block(&mut rng, 8, 16, 2000);
            assert!(block.rows_alike());
            let whole = reference_idct(&coefficients);
            for row in 1..8 {
                assert_eq!(whole[row * 8..row * 8 + 8], whole[..8]);
            }
        }
        let mut block = Coefficients::new();
        block.set(8, 5);
        assert!(!block.rows_alike());
    }

    #[test]
    fn a_flat_block_has_its_dc_level() {
        let idct = Idct::new();
        // DC 80 (dequantised) is a level of 80 / 8 = 10 above 128.
        let mut block = Coefficients::new();
        block.set(0, 80);
        assert_eq!(idct.samples(3, &block, &idct.pick([5]))[0], 138);
        for per_block in [1, 2, 4] {
            let preview = BoxBasis::new(per_block).block(&block);
            assert!(preview[..per_block * per_block].iter().all(|&p| p == 138));
        }
    }

    #[test]
    fn the_preview_is_the_box_average_of_the_exact_block() {
        // A reduced sample is the mean of its group of the block's samples, before their
        // rounding: within one level of the mean of libjpeg-turbo's rounded samples.
        let mut rng = Lcg(777);
        for _ in 0..200 {
            let (coefficients, block) = random_block(&mut rng, 24, 6, 200);
            let whole = reference_idct(&coefficients);
            // Only where no sample clamps, so the mean is of the unclamped values.
            if whole.iter().any(|&s| s == 0 || s == 255) {
                continue;
            }
            for per_block in [1usize, 2, 4] {
                let group = 8 / per_block;
                let preview = BoxBasis::new(per_block).block(&block);
                for y in 0..per_block {
                    for x in 0..per_block {
                        let mut sum = 0f32;
                        for yy in 0..group {
                            for xx in 0..group {
                                sum += f32::from(whole[(y * group + yy) * 8 + x * group + xx]);
                            }
                        }
                        let mean = sum / (group * group) as f32;
                        let got = f32::from(preview[y * per_block + x]);
                        assert!((got - mean).abs() <= 1.0, "{per_block}: {got} vs {mean}");
                    }
                }
            }
        }
    }

    #[test]
    fn colour_conversion_matches_libjpeg() {
        let ycc = YccToRgb::new();
        assert_eq!(ycc.rgb(128, 128, 128), [128, 128, 128]);
        // Pure red as libjpeg-turbo decodes (76, 85, 255).
        assert_eq!(ycc.rgb(76, 85, 255), [254, 0, 0]);
    }
}
