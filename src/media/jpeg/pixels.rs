//! From dequantised coefficients to the pixels libjpeg-turbo produces, one sample at a
//! time: its accurate integer IDCT (`jidctint.c`), its "fancy" chroma upsampling
//! (`jdsample.c`) and its YCbCr to RGB conversion (`jdcolor.c`), bit for bit.
//!
//! libjpeg-turbo's IDCT is two passes of one integer butterfly with a rounding shift
//! after each. A butterfly of integer multiplies and adds is linear, so each pass is an
//! integer 8×8 matrix ([`Idct`], derived from the butterfly itself) followed by the
//! same rounding: one sample of a block then costs one row of the first pass and one
//! dot product, instead of the whole block.

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

    /// The whole row of the second pass: cheaper than [`Idct::sample`] from two samples on.
    #[inline]
    pub(super) fn row(&self, workspace: &[i32; 8]) -> [u8; 8] {
        let shift = CONST_BITS + PASS1_BITS + 3;
        butterfly(*workspace)
            .map(|v| ((v.wrapping_add(1 << (shift - 1)) >> shift) + 128).clamp(0, 255) as u8)
    }

    /// Sample `column` of a row of the second pass, clamped to 0..=255.
    #[inline]
    pub(super) fn sample(&self, column: usize, workspace: &[i32; 8]) -> u8 {
        let weights = &self.weights[column];
        let mut sum = 0i32;
        for (w, v) in weights.iter().zip(workspace) {
            sum = sum.wrapping_add(w.wrapping_mul(*v));
        }
        let shift = CONST_BITS + PASS1_BITS + 3;
        let value = (sum.wrapping_add(1 << (shift - 1)) >> shift) + 128;
        value.clamp(0, 255) as u8
    }
}

/// A block's dequantised coefficients laid out densely (`rows[row][column]`), with a bit
/// for each row that holds a nonzero one.
pub(super) struct Coefficients {
    rows: [[i32; 8]; 8],
    nonzero_rows: u8,
}

impl Coefficients {
    /// From the block's nonzero coefficients (`(natural index, value)`).
    #[inline]
    pub(super) fn new(nonzero: &[(u8, i32)]) -> Coefficients {
        let mut block = Coefficients {
            rows: [[0; 8]; 8],
            nonzero_rows: 0,
        };
        for &(index, value) in nonzero {
            let (row, column) = (usize::from((index >> 3) & 7), usize::from(index & 7));
            block.rows[row][column] = value;
            block.nonzero_rows |= 1 << row;
        }
        block
    }
}

/// The box average, over each `8 / per_block`-pixel group of a block, of the cosine each
/// coefficient contributes (with JPEG's IDCT scale): a reduced image straight from the
/// coefficients, for the preview.
pub(super) struct BoxBasis {
    pub(super) per_block: usize,
    /// `weights[natural index][output]`, outputs row by row (at most 4 × 4).
    weights: Vec<[f32; 16]>,
}

impl BoxBasis {
    pub(super) fn new(per_block: usize) -> BoxBasis {
        let group = 8 / per_block;
        let axis: Vec<Vec<f32>> = (0..8)
            .map(|frequency| {
                let scale = if frequency == 0 {
                    std::f64::consts::FRAC_1_SQRT_2
                } else {
                    1.0
                } / 2.0;
                (0..per_block)
                    .map(|output| {
                        let mean = (output * group..(output + 1) * group)
                            .map(|x| {
                                let angle = (2 * x + 1) as f64 * frequency as f64;
                                (angle * std::f64::consts::PI / 16.0).cos()
                            })
                            .sum::<f64>()
                            / group as f64;
                        (scale * mean) as f32
                    })
                    .collect()
            })
            .collect();
        let weights = (0..64)
            .map(|index| {
                let (v, u) = (index / 8, index % 8);
                let mut out = [0f32; 16];
                for y in 0..per_block {
                    for x in 0..per_block {
                        out[y * per_block + x] = axis[v][y] * axis[u][x];
                    }
                }
                out
            })
            .collect();
        BoxBasis { per_block, weights }
    }

    /// The block's reduced samples, `per_block` × `per_block`, row by row.
    #[inline]
    pub(super) fn block(&self, nonzero: &[(u8, i32)]) -> [u8; 16] {
        // As many sums as samples, so that each coefficient costs one vector operation.
        fn sums<const N: usize>(weights: &[[f32; 16]], nonzero: &[(u8, i32)]) -> [u8; 16] {
            let mut sums = [128f32; N];
            for &(index, value) in nonzero {
                let weights = &weights[usize::from(index & 63)];
                let value = value as f32;
                for (sum, weight) in sums.iter_mut().zip(weights) {
                    *sum += weight * value;
                }
            }
            let mut out = [0u8; 16];
            for (o, s) in out.iter_mut().zip(sums) {
                // +0.5 and truncation: round half up, within 0..=255.
                *o = (s + 0.5).clamp(0.0, 255.0) as u8;
            }
            out
        }
        match self.per_block {
            1 => sums::<1>(&self.weights, nonzero),
            2 => sums::<4>(&self.weights, nonzero),
            _ => sums::<16>(&self.weights, nonzero),
        }
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
}

impl YccToRgb {
    pub(super) fn new() -> YccToRgb {
        const SCALEBITS: u32 = 16;
        const ONE_HALF: i64 = 1 << (SCALEBITS - 1);
        let fix = |x: f64| (x * f64::from(1u32 << SCALEBITS) + 0.5) as i64;
        let table = |f: &dyn Fn(i64) -> i64| -> [i32; 256] {
            std::array::from_fn(|i| f(i as i64 - 128) as i32)
        };
        YccToRgb {
            cr_r: table(&|x| (fix(1.40200) * x + ONE_HALF) >> SCALEBITS),
            cb_b: table(&|x| (fix(1.77200) * x + ONE_HALF) >> SCALEBITS),
            cr_g: table(&|x| -fix(0.71414) * x),
            cb_g: table(&|x| -fix(0.34414) * x + ONE_HALF),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// libjpeg-turbo's two passes, whole block, written out as in `jidctint.c`.
    fn reference_idct(coefficients: &[i32; 64]) -> [u8; 64] {
        let mut workspace = [0i32; 64];
        for column in 0..8 {
            let input = std::array::from_fn(|row| coefficients[row * 8 + column]);
            for (row, value) in butterfly(input).into_iter().enumerate() {
                workspace[row * 8 + column] = (value + (1 << 10)) >> 11;
            }
        }
        let mut out = [0u8; 64];
        for row in 0..8 {
            let input = std::array::from_fn(|column| workspace[row * 8 + column]);
            for (column, value) in butterfly(input).into_iter().enumerate() {
                out[row * 8 + column] = (((value + (1 << 17)) >> 18) + 128).clamp(0, 255) as u8;
            }
        }
        out
    }

    #[test]
    fn one_sample_at_a_time_equals_the_whole_block() {
        let idct = Idct::new();
        let mut seed = 12345u32;
        for _ in 0..500 {
            let mut coefficients = [0i32; 64];
            let mut nonzero = Vec::new();
            for (index, c) in coefficients.iter_mut().enumerate() {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                if seed >> 28 < 5 {
                    *c = (seed >> 8) as i32 % 600 - 300;
                    nonzero.push((index as u8, *c));
                }
            }
            let whole = reference_idct(&coefficients);
            let block = Coefficients::new(&nonzero);
            for row in 0..8 {
                let workspace = idct.first_pass_row(row, &block);
                for column in 0..8 {
                    assert_eq!(idct.sample(column, &workspace), whole[row * 8 + column]);
                }
                assert_eq!(idct.row(&workspace), whole[row * 8..row * 8 + 8]);
            }
        }
    }

    #[test]
    fn a_flat_block_has_its_dc_level() {
        let idct = Idct::new();
        // DC 80 (dequantised) is a level of 80 / 8 = 10 above 128.
        let workspace = idct.first_pass_row(3, &Coefficients::new(&[(0, 80)]));
        assert_eq!(idct.sample(5, &workspace), 138);
        let basis = BoxBasis::new(2);
        assert_eq!(basis.block(&[(0, 80)])[..4], [138; 4]);
    }

    #[test]
    fn colour_conversion_matches_libjpeg() {
        let ycc = YccToRgb::new();
        assert_eq!(ycc.rgb(128, 128, 128), [128, 128, 128]);
        // Pure red as libjpeg-turbo decodes (76, 85, 255).
        assert_eq!(ycc.rgb(76, 85, 255), [254, 0, 0]);
    }
}
