//! MobileNetV2's 1×1 convolutions in 16-bit integers: the operator that replaces them in
//! the typed graph, and the rewrite that puts it there.
//!
//! Why: inside Wasm, f32 multiply-adds cost a `mulps` and an `addps` per four, and the
//! 1×1 convolutions are bound by those FP pipes (`docs/performance.md`). Wasm's
//! `i32x4.dot_i16x8_s` is one `pmaddwd` on x86-64: eight multiply-adds per instruction.
//! Over 16-bit integers the same tile runs ~1.5× faster (`examples/tile_kernels.rs`).
//!
//! What it computes, exactly:
//! - **Weights stay exact.** Upstream's weights are uint8 with a zero point, dequantised
//!   to f32 when the model loads: each row of the convolution's kernel is an integer
//!   multiple (|q − zp| ≤ 255) of one step. [`integer_row`] recovers those integers and
//!   the step; the batch norm's slope after the convolution joins the step as the row's
//!   scale, its intercept becomes the bias.
//! - **Activations lose what 14–15 bits per pixel lose.** Each pixel (all its channels)
//!   gets its own scale, its largest magnitude mapping to the layer's most levels that keep
//!   the i32 sums exact: `K · levels · 255 < 2³¹`, at most 32767 (15 bits, K ≤ 256) and at
//!   least 8191 (14 bits, K ≤ 1028; MobileNetV2's largest K is 960). The rewrite leaves
//!   any layer beyond that to tract.
//! - **The epilogue**: `sum · (row scale · pixel scale) + bias`, then the ReLU6 clamp when
//!   the graph applies one right after.
//!
//! On the shipped model this moves scores by at most 1.5e-4 from upstream nsfwjs over the
//! fidelity set (f32: 6.9e-6); `tests/fidelity.rs` runs this arithmetic natively
//! ([`Arithmetic::Integer`]) against the same 1e-3.
//!
//! The rewrite matches tract's decluttered form of a 1×1 convolution, an `EinSum` of the
//! image (`[1?, K, H, W]` or channels last) with constant weights `OI`, and absorbs what
//! only it feeds: `Mul` and `Add` by per-channel constants (the batch norm) and `Max` /
//! `Min` by scalars (ReLU6). Anything else stays with tract. It runs after tract has
//! chosen each tensor's layout, which differs natively and in Wasm (tract's Wasm
//! depthwise convolution wants channels last): the operator reads and writes either.
//!
//! Layout (vectors along pixels, which are contiguous in channel-first tensors):
//! - activations are packed per panel of 16 pixels, per pair of channels `(2j, 2j + 1)`:
//!   four vectors of four pixels, each lane the pixel's pair as two i16;
//! - weights per tile of 4 output channels, per pair: one vector, lane `c` the pair of
//!   output channel `c`, broadcast by a lane shuffle;
//! - the 4 × 16 tile holds `acc[c][i]`: output channel `c`, pixels `4i..4i + 4`.
//!
//! Natively the same arithmetic runs in portable code ([`tile_scalar`]), with the same
//! integer sums and the same f32 operations in the same order, so native and Wasm give
//! the same bits for this operator.

use anyhow::Result;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::einsum::EinSum;

/// Which arithmetic the 1×1 convolutions run in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arithmetic {
    /// tract's f32 kernels (the native build's, and the benchmark's reference).
    Float,
    /// [`IntegerPointwise`]: 16-bit integers, what the Wasm build ships.
    Integer,
}

impl Arithmetic {
    /// What this build ships: integers inside Wasm, where they are faster; tract's f32
    /// kernels natively, where its AVX kernels are.
    pub const SHIPPED: Arithmetic = if cfg!(target_arch = "wasm32") {
        Arithmetic::Integer
    } else {
        Arithmetic::Float
    };
}

/// Added to the model's identity when the 1×1 convolutions run in integers: a new
/// version of this arithmetic must change it, so no verdict judged by another is reused.
pub(super) const IDENTITY: &[u8] = b"1x1 convolutions in 16-bit integers, v1";

/// The largest integer weight: uint8 less its zero point.
const WEIGHT_LEVELS: usize = 255;
/// The fewest levels an activation may have (14 bits, signed), which bounds K.
const MIN_ACTIVATION_LEVELS: usize = 8191;
/// The largest K whose i32 sums stay exact at the fewest levels.
const MAX_K: usize = (i32::MAX as usize) / (MIN_ACTIVATION_LEVELS * WEIGHT_LEVELS);

/// The largest quantized activation for a layer of `k` input channels: as many levels as
/// keep its i32 sums exact (`k · levels · 255 ≤ 2³¹ − 1`), at most i16's.
fn activation_levels(k: usize) -> f32 {
    let k = k.next_multiple_of(2).max(2);
    ((i32::MAX as usize) / (k * WEIGHT_LEVELS)).min(i16::MAX as usize) as f32
}
/// Output channels per tile.
pub(super) const ROWS: usize = 4;
/// Pixels per tile (and per packed panel): four vectors of four.
pub(super) const PIXELS: usize = 16;

/// What [`rewrite`] did to a model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rewritten {
    /// 1×1 convolutions now running in integers.
    pub layers: usize,
    /// Weight rows that were not integer multiples of one step (rounded to 255 levels:
    /// a model not quantized as upstream's is). Zero for the shipped model.
    pub inexact_rows: usize,
    /// Expansions fused with the depthwise convolution they feed (`depthwise`).
    pub fused: usize,
}

/// Where a tensor's channels are, as tract's decluttered graph lays them out (it chooses
/// per layer, and differently natively and in Wasm): `[1?, C, H, W]` or `[1?, H, W, C]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Layout {
    /// A leading axis of one image.
    pub(super) batch: bool,
    pub(super) channels_last: bool,
}

impl Layout {
    /// From one side of tract's axes notation, `channel` naming the channel axis: `IHW`,
    /// `HWI`, `NIHW` or `NHWI` (for `I`).
    fn parse(axes: &str, channel: char) -> Option<Layout> {
        let (batch, rest) = match axes.strip_prefix('N') {
            Some(rest) => (true, rest),
            None => (false, axes),
        };
        let mut chars = rest.chars();
        let channels_last = match (chars.next(), chars.next(), chars.next(), chars.next()) {
            (Some(c), Some('H'), Some('W'), None) if c == channel => false,
            (Some('H'), Some('W'), Some(c), None) if c == channel => true,
            _ => return None,
        };
        Some(Layout {
            batch,
            channels_last,
        })
    }

    pub(super) fn rank(self) -> usize {
        3 + usize::from(self.batch)
    }

    fn channel_axis(self) -> usize {
        usize::from(self.batch) + if self.channels_last { 2 } else { 0 }
    }

    /// `(channels, height, width)` of a shape in this layout.
    pub(super) fn split<D: Clone>(self, shape: &[D]) -> Option<(D, D, D)> {
        let chw = shape.get(usize::from(self.batch)..)?;
        match (self.channels_last, chw) {
            (false, [c, h, w]) => Some((c.clone(), h.clone(), w.clone())),
            (true, [h, w, c]) => Some((c.clone(), h.clone(), w.clone())),
            _ => None,
        }
    }

    /// The shape of `channels` × `height` × `width` in this layout.
    pub(super) fn shape<D: Clone>(self, one: D, channels: D, height: D, width: D) -> TVec<D> {
        let mut shape = TVec::new();
        if self.batch {
            shape.push(one);
        }
        if self.channels_last {
            shape.extend([height, width, channels]);
        } else {
            shape.extend([channels, height, width]);
        }
        shape
    }
}

/// A 1×1 convolution over an f32 image tensor of K channels, giving M channels.
#[derive(Clone, Debug)]
pub struct IntegerPointwise {
    pub(super) k: usize,
    pub(super) m: usize,
    /// `[tile of 4 channels][pair of k][channel]`, each an i16 pair packed in an i32.
    weights: Vec<i32>,
    /// Per output channel (padded to whole tiles): step × batch-norm slope.
    scale: Vec<f32>,
    bias: Vec<f32>,
    /// `(low, high)` applied after the bias (ReLU6: `(0, 6)`), or none.
    pub(super) clamp: Option<(f32, f32)>,
    pub(super) input: Layout,
    pub(super) output: Layout,
}

/// tract compares operators to merge equal nodes: equal when bit-identical.
impl PartialEq for IntegerPointwise {
    fn eq(&self, other: &Self) -> bool {
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        let clamp = |c: Option<(f32, f32)>| c.map(|(l, h)| (l.to_bits(), h.to_bits()));
        (self.k, self.m, &self.weights, self.input, self.output)
            == (other.k, other.m, &other.weights, other.input, other.output)
            && bits(&self.scale) == bits(&other.scale)
            && bits(&self.bias) == bits(&other.bias)
            && clamp(self.clamp) == clamp(other.clamp)
    }
}

impl Eq for IntegerPointwise {}

impl IntegerPointwise {
    pub(super) fn pairs(&self) -> usize {
        self.k.div_ceil(2)
    }

    fn tiles(&self) -> usize {
        self.m.div_ceil(ROWS)
    }

    /// From f32 weights `[m][k]` as the graph holds them; also says how many rows were
    /// not exact multiples of a step.
    pub(super) fn new(
        weights: &[f32],
        m: usize,
        k: usize,
        input: Layout,
        output: Layout,
    ) -> (IntegerPointwise, usize) {
        let padded = m.next_multiple_of(ROWS);
        let mut scale = vec![0.0; padded];
        let mut integers = vec![0i16; padded * k];
        let mut inexact = 0;
        for (row, w) in weights.chunks_exact(k).enumerate() {
            let (step, exact) = integer_row(w, &mut integers[row * k..][..k]);
            scale[row] = step;
            inexact += usize::from(!exact);
        }
        let pairs = k.div_ceil(2);
        let at = |row: usize, kk: usize| if kk < k { integers[row * k + kk] } else { 0 };
        let mut packed = Vec::with_capacity(padded * pairs);
        for tile in 0..padded / ROWS {
            for pair in 0..pairs {
                for c in 0..ROWS {
                    let row = tile * ROWS + c;
                    packed.push(pack_pair(at(row, 2 * pair), at(row, 2 * pair + 1)));
                }
            }
        }
        let op = IntegerPointwise {
            k,
            m,
            weights: packed,
            scale,
            bias: vec![0.0; padded],
            clamp: None,
            input,
            output,
        };
        (op, inexact)
    }

    /// Folds `y = x · c + d` per output channel into the epilogue (before any clamp).
    fn then_affine(&mut self, mul: Option<&[f32]>, add: Option<&[f32]>) {
        for row in 0..self.m {
            if let Some(c) = mul {
                let c = c[if c.len() == 1 { 0 } else { row }];
                self.scale[row] *= c;
                self.bias[row] *= c;
            }
            if let Some(d) = add {
                self.bias[row] += d[if d.len() == 1 { 0 } else { row }];
            }
        }
    }

    /// Runs the convolution on an input of N pixels (`[K][N]`, or `[N][K]` channels
    /// last), into an output in the output's layout.
    pub(super) fn run(&self, input: &[f32], n: usize, output: &mut [f32]) {
        let source = Activations {
            values: input,
            k: self.k,
            n,
            channels_last: self.input.channels_last,
        };
        let mut panel = Panel::new(self.pairs());
        for index in 0..n.div_ceil(PIXELS) {
            let first = index * PIXELS;
            let width = (n - first).min(PIXELS);
            self.panel_tiles(&source, index, &mut panel, |tile, lanes, rows| {
                if self.output.channels_last {
                    let at = first * self.m + tile * ROWS;
                    simd::store_channels_last(lanes, rows, width, &mut output[at..], self.m);
                } else {
                    for (c, lane) in lanes.iter().take(rows).enumerate() {
                        let row = tile * ROWS + c;
                        output[row * n + first..][..width].copy_from_slice(&lane[..width]);
                    }
                }
            });
        }
    }

    /// Computes the output of panel `index` (pixels `16 · index` on) of `source`: each
    /// tile of 4 output channels, as `lanes[channel][pixel]`, goes to `store` with its
    /// index and how many of its channels are real. One panel at a time, so the
    /// quantised activations stay in the L1 cache between packing and use.
    pub(super) fn panel_tiles(
        &self,
        source: &Activations,
        index: usize,
        panel: &mut Panel,
        mut store: impl FnMut(usize, &[[f32; PIXELS]; ROWS], usize),
    ) {
        quantize_panel(source, index, panel);
        let pairs = self.pairs();
        let mut lanes = [[0f32; PIXELS]; ROWS];
        for tile in 0..self.tiles() {
            let b = &self.weights[tile * pairs * ROWS..][..pairs * ROWS];
            let rows = tile * ROWS..(tile * ROWS + ROWS);
            let epilogue = Epilogue {
                scale: &self.scale[rows.clone()],
                bias: &self.bias[rows],
                pixels: &panel.scales,
                clamp: self.clamp,
            };
            tile_into(&panel.packed, b, pairs, &epilogue, &mut lanes);
            store(tile, &lanes, (self.m - tile * ROWS).min(ROWS));
        }
    }
}

/// One panel's activations as integers: each pixel's scale, and the pairs packed
/// `[pair][pixel]`.
pub(super) struct Panel {
    scales: [f32; PIXELS],
    packed: Vec<i32>,
}

impl Panel {
    pub(super) fn new(pairs: usize) -> Self {
        Panel {
            scales: [1.0; PIXELS],
            packed: vec![0; pairs * PIXELS],
        }
    }
}

/// An i16 pair as one i32 lane: `low` first (little-endian), as `i32x4.dot_i16x8_s` reads.
fn pack_pair(low: i16, high: i16) -> i32 {
    (low as u16 as u32 | (high as u16 as u32) << 16) as i32
}

/// Writes `row` as integers times one step and returns the step, and whether the row was
/// exact. The step is the coarsest that makes every weight an integer of at most 255 in
/// magnitude (the row's largest weight is `n` steps for the smallest such `n`); a row with
/// none is rounded to 255 levels of its largest magnitude.
fn integer_row(row: &[f32], into: &mut [i16]) -> (f32, bool) {
    let largest = row.iter().fold(0f32, |a, w| a.max(w.abs()));
    if largest == 0.0 || !largest.is_finite() {
        into.fill(0);
        return (0.0, largest == 0.0);
    }
    let on_grid = |step: f32| {
        row.iter().all(|w| {
            let q = w / step;
            (q - q.round()).abs() <= 1e-3
        })
    };
    let (step, exact) = (1..=WEIGHT_LEVELS)
        .map(|n| largest / n as f32)
        .find(|&step| on_grid(step))
        .map_or((largest / WEIGHT_LEVELS as f32, false), |step| (step, true));
    for (q, w) in into.iter_mut().zip(row) {
        *q = (w / step).round() as i16;
    }
    (step, exact)
}

/// An activation tensor as [`quantize_panel`] reads it: `k` channels of `n` pixels, `[k][n]`
/// or, channels last, `[n][k]`.
pub(super) struct Activations<'a> {
    pub(super) values: &'a [f32],
    pub(super) k: usize,
    pub(super) n: usize,
    pub(super) channels_last: bool,
}

impl Activations<'_> {
    /// Channel `kk` of pixel `p`, zero past the tensor (odd K, a partial panel).
    #[inline(always)]
    fn at(&self, kk: usize, p: usize) -> f32 {
        match (kk < self.k && p < self.n, self.channels_last) {
            (false, _) => 0.0,
            (true, false) => self.values[kk * self.n + p],
            (true, true) => self.values[p * self.k + kk],
        }
    }
}

/// Panel `index` of `x` as integers: each pixel's scale (its largest magnitude over the
/// channels ÷ the layer's levels; 1 for a zero pixel) and its activations packed by pair
/// of channels; pixels past `n` and the channel past an odd `k` are zero.
fn quantize_panel(x: &Activations, index: usize, panel: &mut Panel) {
    let (k, n) = (x.k, x.n);
    let first = index * PIXELS;
    let width = n.saturating_sub(first).min(PIXELS);
    let mut largest = [0f32; PIXELS];
    if x.channels_last {
        for (l, pixel) in largest
            .iter_mut()
            .zip(x.values[first * k..].chunks_exact(k))
        {
            *l = simd::largest_of(pixel);
        }
    } else {
        for channel in x.values.chunks_exact(n) {
            simd::largest(&mut largest[..width], &channel[first..first + width]);
        }
    }
    let levels = activation_levels(k);
    let mut inverse = [0f32; PIXELS];
    for ((s, i), l) in panel.scales.iter_mut().zip(&mut inverse).zip(&largest) {
        (*s, *i) = if *l > 0.0 {
            let s = *l / levels;
            (s, 1.0 / s)
        } else {
            (1.0, 0.0)
        };
    }
    let whole = width == PIXELS;
    let into = &mut panel.packed;
    if whole && !x.channels_last && k.is_multiple_of(2) {
        simd::pack_panel(x, &inverse, first, into);
    } else if whole && x.channels_last && k.is_multiple_of(8) {
        simd::pack_panel_channels_last(x, &inverse, first, into);
    } else {
        pack_panel_scalar(x, &inverse, first, into);
    }
}

/// One activation as an integer, as the SIMD path rounds it (to nearest, ties to even;
/// the levels keep it within i16).
#[inline(always)]
fn level(x: f32, inverse: f32) -> i16 {
    (x * inverse).round_ties_even() as i16
}

/// Packs the panel of pixels `first..first + 16` into `[pair][pixel]`; `inverse`
/// holds the panel's 16 pixels' inverse scales.
fn pack_panel_scalar(x: &Activations, inverse: &[f32; PIXELS], first: usize, into: &mut [i32]) {
    let at = |kk: usize, l: usize| {
        let p = first + l;
        if p < x.n {
            level(x.at(kk, p), inverse[l])
        } else {
            0
        }
    };
    for (pair, lanes) in into.chunks_exact_mut(PIXELS).enumerate() {
        for (l, lane) in lanes.iter_mut().enumerate() {
            *lane = pack_pair(at(2 * pair, l), at(2 * pair + 1, l));
        }
    }
}

/// Writes `lanes` (`[channel][pixel]`, `rows` channels and `width` pixels of them) into
/// a channels-last output from its first pixel's first channel of the tile, `m` apart.
#[cfg_attr(
    all(target_arch = "wasm32", target_feature = "simd128"),
    allow(dead_code)
)]
pub(super) fn store_channels_last_scalar(
    lanes: &[[f32; PIXELS]; ROWS],
    rows: usize,
    width: usize,
    output: &mut [f32],
    m: usize,
) {
    for (c, lane) in lanes.iter().take(rows).enumerate() {
        for (p, v) in lane.iter().take(width).enumerate() {
            output[p * m + c] = *v;
        }
    }
}

/// What follows a tile's integer sums, for its 4 output channels and 16 pixels.
struct Epilogue<'a> {
    scale: &'a [f32],
    bias: &'a [f32],
    pixels: &'a [f32],
    clamp: Option<(f32, f32)>,
}

impl Epilogue<'_> {
    #[inline(always)]
    fn finish(&self, sum: i32, c: usize, p: usize) -> f32 {
        let v = sum as f32 * (self.scale[c] * self.pixels[p]) + self.bias[c];
        match self.clamp {
            Some((low, high)) => v.max(low).min(high),
            None => v,
        }
    }
}

/// The portable tile: `lanes[c][p]` for output channel `c` and pixel `p` of the panel.
#[cfg_attr(
    all(target_arch = "wasm32", target_feature = "simd128"),
    allow(dead_code)
)]
fn tile_scalar(
    a: &[i32],
    b: &[i32],
    pairs: usize,
    epilogue: &Epilogue,
    lanes: &mut [[f32; PIXELS]; ROWS],
) {
    let halves = |v: i32| (v as i16 as i32, (v >> 16) as i16 as i32);
    for (c, lane) in lanes.iter_mut().enumerate() {
        for (p, out) in lane.iter_mut().enumerate() {
            let mut sum = 0i32;
            for pair in 0..pairs {
                let (a0, a1) = halves(a[pair * PIXELS + p]);
                let (b0, b1) = halves(b[pair * ROWS + c]);
                sum = sum.wrapping_add(a0 * b0 + a1 * b1);
            }
            *out = epilogue.finish(sum, c, p);
        }
    }
}

#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
fn tile_into(
    a: &[i32],
    b: &[i32],
    pairs: usize,
    epilogue: &Epilogue,
    lanes: &mut [[f32; PIXELS]; ROWS],
) {
    tile_scalar(a, b, pairs, epilogue, lanes)
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn tile_into(
    a: &[i32],
    b: &[i32],
    pairs: usize,
    epilogue: &Epilogue,
    lanes: &mut [[f32; PIXELS]; ROWS],
) {
    debug_assert!(a.len() >= pairs * PIXELS && b.len() >= pairs * ROWS);
    // SAFETY: `a` holds `pairs` steps of 16 lanes and `b` of 4 (checked by the callers'
    // slicing), and `lanes` is 4 × 16 f32.
    unsafe { simd::tile(a.as_ptr(), b.as_ptr(), pairs, epilogue, lanes) }
}

/// The portable forms of what [`simd`] does with Wasm SIMD, for native builds.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
mod simd {
    /// `largest[p] = max(largest[p], |channel[p]|)`.
    pub(super) fn largest(largest: &mut [f32], channel: &[f32]) {
        for (l, x) in largest.iter_mut().zip(channel) {
            let x = x.abs();
            // As `f32x4.pmax`: the first operand unless it is less.
            if *l < x {
                *l = x;
            }
        }
    }

    /// The largest magnitude of one pixel's channels.
    pub(super) fn largest_of(pixel: &[f32]) -> f32 {
        pixel
            .iter()
            .fold(0f32, |l, x| if l < x.abs() { x.abs() } else { l })
    }

    pub(super) use super::pack_panel_scalar as pack_panel;
    pub(super) use super::pack_panel_scalar as pack_panel_channels_last;
    pub(in crate::classifier) use super::store_channels_last_scalar as store_channels_last;
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd {
    use super::super::wasm_gemm::{broadcast, transpose};
    use super::{Activations, Epilogue, PIXELS, ROWS};
    use std::arch::wasm32::*;

    /// `largest[p] = max(largest[p], |channel[p]|)`, four pixels per vector.
    pub(super) fn largest(largest: &mut [f32], channel: &[f32]) {
        let whole = largest.len().min(channel.len()) / 4 * 4;
        for (l, x) in largest[..whole]
            .chunks_exact_mut(4)
            .zip(channel[..whole].chunks_exact(4))
        {
            // SAFETY: both chunks are four f32.
            unsafe {
                let v = f32x4_pmax(
                    v128_load(l.as_ptr() as *const v128),
                    f32x4_abs(v128_load(x.as_ptr() as *const v128)),
                );
                v128_store(l.as_mut_ptr() as *mut v128, v);
            }
        }
        for (l, x) in largest[whole..].iter_mut().zip(&channel[whole..]) {
            let x = x.abs();
            if *l < x {
                *l = x;
            }
        }
    }

    /// The largest magnitude of one pixel's channels (channels last).
    pub(super) fn largest_of(pixel: &[f32]) -> f32 {
        let whole = pixel.len() / 4 * 4;
        let mut l = f32x4_splat(0.0);
        for x in pixel[..whole].chunks_exact(4) {
            // SAFETY: the chunk is four f32.
            l = f32x4_pmax(
                l,
                f32x4_abs(unsafe { v128_load(x.as_ptr() as *const v128) }),
            );
        }
        let lanes = [
            f32x4_extract_lane::<0>(l),
            f32x4_extract_lane::<1>(l),
            f32x4_extract_lane::<2>(l),
            f32x4_extract_lane::<3>(l),
        ];
        lanes
            .iter()
            .chain(&pixel[whole..])
            .fold(0f32, |l, x| if l < x.abs() { x.abs() } else { l })
    }

    /// A whole panel of 16 pixels, channels last (`[n][k]`), from a multiple of 8
    /// channels: each pixel's 8 channels at a time become its 4 pairs (one vector), and
    /// 4 pixels' vectors transposed give 4 pairs of 4 pixels.
    pub(super) fn pack_panel_channels_last(
        x: &Activations,
        inverse: &[f32; PIXELS],
        first: usize,
        into: &mut [i32],
    ) {
        let (input, k) = (x.values, x.k);
        assert!(
            k.is_multiple_of(8)
                && (first + PIXELS) * k <= input.len()
                && into.len() == k / 2 * PIXELS
        );
        // SAFETY: every load reads 4 f32 of channels below `k` of pixels `first..first +
        // 16`, within `input` (asserted); every store writes 4 lanes of `into`, whose
        // `k / 2` pairs of 16 lanes it holds.
        unsafe {
            let base = input.as_ptr();
            for i in 0..PIXELS / 4 {
                let scales: [v128; 4] = std::array::from_fn(|r| f32x4_splat(inverse[4 * i + r]));
                for group in 0..k / 8 {
                    let pixels: [v128; 4] = std::array::from_fn(|r| {
                        let at = base.add((first + 4 * i + r) * k + 8 * group);
                        let level = |v: *const f32| {
                            let v = f32x4_mul(v128_load(v as *const v128), scales[r]);
                            i32x4_trunc_sat_f32x4(f32x4_nearest(v))
                        };
                        i16x8_narrow_i32x4(level(at), level(at.add(4)))
                    });
                    for (t, pairs) in transpose(pixels).into_iter().enumerate() {
                        let lane = (4 * group + t) * PIXELS + 4 * i;
                        v128_store(into.as_mut_ptr().add(lane) as *mut v128, pairs);
                    }
                }
            }
        }
    }

    /// Writes `lanes` (`[channel][pixel]`) into a channels-last output, `m` apart: each
    /// 4 × 4 block transposed into one vector of 4 channels per pixel.
    pub(in crate::classifier) fn store_channels_last(
        lanes: &[[f32; PIXELS]; ROWS],
        rows: usize,
        width: usize,
        output: &mut [f32],
        m: usize,
    ) {
        if rows < ROWS || width < PIXELS || output.len() < (PIXELS - 1) * m + ROWS {
            return super::store_channels_last_scalar(lanes, rows, width, output, m);
        }
        // SAFETY: lanes are 4 × 16 f32; each store writes channels `0..4` of pixel
        // `p < 16`, at `p · m`, within `output` (checked above).
        unsafe {
            for i in 0..PIXELS / 4 {
                let block: [v128; 4] =
                    std::array::from_fn(|c| v128_load(lanes[c].as_ptr().add(4 * i) as *const v128));
                for (r, pixel) in transpose(block).into_iter().enumerate() {
                    let at = output.as_mut_ptr().add((4 * i + r) * m);
                    v128_store(at as *mut v128, pixel);
                }
            }
        }
    }

    /// A whole panel of 16 pixels (`first..first + 16`, all below `n`) from an even
    /// number of channels: each lane the pixel's pair of channels as two i16.
    pub(super) fn pack_panel(
        x: &Activations,
        inverse: &[f32; PIXELS],
        first: usize,
        into: &mut [i32],
    ) {
        let (input, n) = (x.values, x.n);
        let pairs = into.len() / PIXELS;
        assert!(first + PIXELS <= n && 2 * pairs * n <= input.len());
        // SAFETY: every load reads 4 f32 of pixels `first..first + 16` of channels below
        // `2 · pairs`, within `input` (asserted); every store writes `into`'s 16 lanes of
        // one pair.
        unsafe {
            let inverse: [v128; 4] =
                std::array::from_fn(|i| v128_load(inverse.as_ptr().add(4 * i) as *const v128));
            let low = i32x4_splat(0xffff);
            let base = input.as_ptr();
            for (pair, lanes) in into.chunks_exact_mut(PIXELS).enumerate() {
                let even = base.add(2 * pair * n + first);
                let odd = even.add(n);
                for (i, inv) in inverse.iter().enumerate() {
                    let level = |at: *const f32| {
                        let v = f32x4_mul(v128_load(at.add(4 * i) as *const v128), *inv);
                        i32x4_trunc_sat_f32x4(f32x4_nearest(v))
                    };
                    let packed = v128_or(v128_and(level(even), low), i32x4_shl(level(odd), 16));
                    v128_store(lanes.as_mut_ptr().add(4 * i) as *mut v128, packed);
                }
            }
        }
    }

    /// `acc[c][i]`: output channel `c`, pixels `4i..4i + 4`.
    type Tile = [[v128; 4]; ROWS];

    /// One pair of k: `acc[c][i] += A[i] · B[c]` over i16 pairs.
    #[inline(always)]
    unsafe fn step(acc: &mut Tile, a: *const v128, b: *const v128) {
        let pixels = [
            v128_load(a),
            v128_load(a.add(1)),
            v128_load(a.add(2)),
            v128_load(a.add(3)),
        ];
        let channels = v128_load(b);
        for (c, accs) in acc.iter_mut().enumerate() {
            let w = broadcast(channels, c);
            for (v, x) in accs.iter_mut().zip(pixels) {
                *v = i32x4_add(*v, i32x4_dot_i16x8(x, w));
            }
        }
    }

    /// The k loop, unrolled by two as the f32 kernel's (`wasm_gemm`): more and LLVM hoists
    /// every step's operands ahead of the arithmetic, beyond the registers.
    #[inline(never)]
    pub(super) unsafe fn tile(
        a: *const i32,
        b: *const i32,
        pairs: usize,
        epilogue: &Epilogue,
        lanes: &mut [[f32; PIXELS]; ROWS],
    ) {
        let (a, b) = (a as *const v128, b as *const v128);
        let mut acc: Tile = [[i32x4_splat(0); 4]; ROWS];
        let mut s = 0;
        while s + 2 <= pairs {
            step(&mut acc, a.add(s * 4), b.add(s));
            step(&mut acc, a.add((s + 1) * 4), b.add(s + 1));
            s += 2;
        }
        if s < pairs {
            step(&mut acc, a.add(s * 4), b.add(s));
        }
        let pixels: [v128; 4] =
            std::array::from_fn(|i| v128_load(epilogue.pixels.as_ptr().add(4 * i) as *const v128));
        for (c, (accs, lane)) in acc.iter().zip(lanes.iter_mut()).enumerate() {
            let scale = f32x4_splat(epilogue.scale[c]);
            let bias = f32x4_splat(epilogue.bias[c]);
            for (i, v) in accs.iter().enumerate() {
                let mut y = f32x4_add(
                    f32x4_mul(f32x4_convert_i32x4(*v), f32x4_mul(scale, pixels[i])),
                    bias,
                );
                if let Some((low, high)) = epilogue.clamp {
                    y = f32x4_pmin(f32x4_pmax(y, f32x4_splat(low)), f32x4_splat(high));
                }
                v128_store(lane.as_mut_ptr().add(4 * i) as *mut v128, y);
            }
        }
    }
}

/// Writes a tile's `lanes` into a channels-last tensor (with Wasm SIMD where the block
/// is whole): what the fused operator's ring is written with too.
pub(super) use simd::store_channels_last;

/// An operator's one image input, checked against `layout` and `k` channels, as f32
/// values and its `(height, width)`; `run` fills the output of the shape it is given for
/// them (`shape` says which, or refuses the size), every element of it.
pub(super) fn eval_image(
    input: TValue,
    layout: Layout,
    k: usize,
    name: &str,
    shape: impl FnOnce(usize, usize) -> TractResult<TVec<usize>>,
    run: impl FnOnce(&[f32], usize, usize, &mut [f32]),
) -> TractResult<TVec<TValue>> {
    let dims = input.shape();
    let batch_of_one = !layout.batch || dims.first() == Some(&1);
    let (_, h, w) = layout
        .split(dims)
        .filter(|&(channels, _, _)| channels == k && batch_of_one)
        .with_context(|| format!("{name} of K {k} given {dims:?}"))?;
    let storage = input.try_as_plain_ram()?;
    let x = storage.as_slice::<f32>()?;
    // SAFETY: `run` writes every element of the output (its contract).
    let mut output = unsafe { Tensor::uninitialized::<f32>(&shape(h, w)?)? };
    {
        let mut out = output.try_as_plain_ram_mut()?;
        run(x, h, w, out.as_slice_mut::<f32>()?);
    }
    Ok(tvec!(output.into_tvalue()))
}

impl Op for IntegerPointwise {
    fn name(&self) -> StaticName {
        "IntegerPointwise".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "K {} M {} clamp {:?}",
            self.k, self.m, self.clamp
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for IntegerPointwise {
    op_out_of_plan!();

    fn eval(&self, _: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        eval_image(
            input,
            self.input,
            self.k,
            "IntegerPointwise",
            |h, w| Ok(self.output.shape(1, self.m, h, w)),
            |x, h, w, out| self.run(x, h * w, out),
        )
    }
}

impl TypedOp for IntegerPointwise {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let shape = inputs[0].shape.to_tvec();
        let (_, h, w) = self
            .input
            .split(&shape)
            .with_context(|| format!("IntegerPointwise input of shape {shape:?}"))?;
        let shape = self.output.shape(TDim::from(1), TDim::from(self.m), h, w);
        Ok(tvec!(f32::fact(shape)))
    }

    as_op!();
}

/// Replaces every 1×1 convolution of `model` that the operator can run, with what only it
/// feeds of its batch norm and clamp (see the module's comment). Runs on the decluttered
/// model, where tract has chosen each tensor's layout.
pub fn rewrite(model: &mut TypedModel) -> Result<Rewritten> {
    let mut done = Rewritten::default();
    let candidates: Vec<usize> = model
        .nodes
        .iter()
        .filter(|n| n.op_as::<EinSum>().is_some())
        .map(|n| n.id)
        .collect();
    for id in candidates {
        if let Some((op, inexact, input, last)) = matched(model, id)? {
            let mut patch = TypedModelPatch::default();
            let tap = patch.tap_model(model, input)?;
            let name = format!("{}.integer", model.node(id).name);
            let wired = patch.wire_node(name, op, &[tap])?;
            patch.shunt_outside(model, OutletId::new(last, 0), wired[0])?;
            patch.apply(model)?;
            done.layers += 1;
            done.inexact_rows += inexact;
        }
    }
    model.compact()?;
    Ok(done)
}

/// The operator for EinSum node `id` if it is a 1×1 convolution this module runs: with its
/// count of inexact rows, the input it reads and the last node it replaces.
fn matched(
    model: &TypedModel,
    id: usize,
) -> Result<Option<(IntegerPointwise, usize, OutletId, usize)>> {
    let node = model.node(id);
    let Some(einsum) = node.op_as::<EinSum>() else {
        return Ok(None);
    };
    // `<input>,OI-><output>`: the weights a constant [M, K], the image in and out in any
    // of the layouts tract picks.
    let axes = einsum.axes.to_string();
    let Some((inputs, output)) = axes.split_once("->") else {
        return Ok(None);
    };
    let layouts = inputs.split_once(",OI").filter(|(_, rest)| rest.is_empty());
    let (Some(input_layout), Some(output_layout)) = (
        layouts.and_then(|(image, _)| Layout::parse(image, 'I')),
        Layout::parse(output, 'O'),
    ) else {
        return Ok(None);
    };
    if einsum.q_params.is_some() || einsum.operating_dt != DatumType::F32 || node.inputs.len() != 2
    {
        return Ok(None);
    }
    let input = node.inputs[0];
    let input_fact = model.outlet_fact(input)?;
    let Some(weights) = model.outlet_fact(node.inputs[1])?.konst.clone() else {
        return Ok(None);
    };
    if input_fact.datum_type != DatumType::F32 || weights.datum_type() != DatumType::F32 {
        return Ok(None);
    }
    let &[m, k] = weights.shape() else {
        return Ok(None);
    };
    if m == 0 || k == 0 {
        return Ok(None);
    }
    let dims = input_fact.shape.to_tvec();
    let batch_of_one = !input_layout.batch || dims[0].is_one();
    if k > MAX_K || dims.len() != input_layout.rank() || !batch_of_one {
        return Ok(None);
    }
    let weights = weights.try_as_plain_ram()?;
    let (mut op, inexact) = IntegerPointwise::new(
        weights.as_slice::<f32>()?,
        m,
        k,
        input_layout,
        output_layout,
    );
    let mut last = id;
    // The batch norm: a multiply, then an add, by per-channel constants.
    if let Some((mul, slope)) = sole_reader_by_const(model, last, "Mul", m, output_layout)? {
        op.then_affine(Some(&slope), None);
        last = mul;
    }
    if let Some((add, intercept)) = sole_reader_by_const(model, last, "Add", m, output_layout)? {
        op.then_affine(None, Some(&intercept));
        last = add;
    }
    // ReLU6: max with a scalar, then min with a scalar.
    if let Some((max_node, low)) = sole_reader_by_const(model, last, "Max", 1, output_layout)? {
        if let Some((min_node, high)) =
            sole_reader_by_const(model, max_node, "Min", 1, output_layout)?
        {
            op.clamp = Some((low[0], high[0]));
            last = min_node;
        }
    }
    Ok(Some((op, inexact, input, last)))
}

/// If node `from`'s output is read by exactly one node, a binary `name` op with a
/// constant of `channels` values along the channel axis (or one value) as its other input,
/// and `from` is not a model output: that node and the constant's values.
pub(super) fn sole_reader_by_const(
    model: &TypedModel,
    from: usize,
    name: &str,
    channels: usize,
    layout: Layout,
) -> Result<Option<(usize, Vec<f32>)>> {
    let outlet = OutletId::new(from, 0);
    let readers = &model.node(from).outputs[0].successors;
    if readers.len() != 1 || model.output_outlets()?.contains(&outlet) {
        return Ok(None);
    }
    let reader = model.node(readers[0].node);
    let Some(binary) = reader.op_as::<TypedBinOp>() else {
        return Ok(None);
    };
    if binary.0.name() != name || reader.inputs.len() != 2 {
        return Ok(None);
    }
    let other = reader.inputs[1 - readers[0].slot];
    let Some(constant) = model.outlet_fact(other)?.konst.clone() else {
        return Ok(None);
    };
    // Broadcasting aligns shapes from the right: per channel, the constant's dimension at
    // the channel axis is `channels` and every other is one; one value, every one is.
    let shape = constant.shape();
    let rank = layout.rank();
    let Some(pad) = rank.checked_sub(shape.len()) else {
        return Ok(None);
    };
    let dim = |axis: usize| if axis < pad { 1 } else { shape[axis - pad] };
    let others_one = (0..rank).all(|axis| axis == layout.channel_axis() || dim(axis) == 1);
    let along = dim(layout.channel_axis());
    if constant.datum_type() != DatumType::F32 || !others_one || !(along == 1 || along == channels)
    {
        return Ok(None);
    }
    // The output shape must stay the convolution's (no broadcast beyond it).
    if model.outlet_fact(OutletId::new(reader.id, 0))?.shape != model.outlet_fact(outlet)?.shape {
        return Ok(None);
    }
    let storage = constant.try_as_plain_ram()?;
    Ok(Some((reader.id, storage.as_slice::<f32>()?.to_vec())))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// The exact product in f64: weights times activations, then scale, bias and clamp.
    fn reference(op_weights: &[f32], m: usize, k: usize, x: &[f32], n: usize) -> Vec<f32> {
        let mut out = vec![0f32; m * n];
        for row in 0..m {
            for p in 0..n {
                let sum: f64 = (0..k)
                    .map(|kk| f64::from(op_weights[row * k + kk]) * f64::from(x[kk * n + p]))
                    .sum();
                out[row * n + p] = sum.clamp(0.0, 6.0) as f32;
            }
        }
        out
    }

    /// A deterministic stream of values in `[0, 1)` (xorshift).
    pub(in crate::classifier) struct Noise(pub(in crate::classifier) u32);
    impl Noise {
        pub(in crate::classifier) fn next(&mut self) -> f32 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 17;
            self.0 ^= self.0 << 5;
            (self.0 >> 8) as f32 / (1 << 24) as f32
        }
    }

    #[test]
    fn uint8_rows_are_recovered_exactly() {
        let step = 0.0123f32;
        let row: Vec<f32> = [-128i32, -3, 0, 5, 127, 40]
            .iter()
            .map(|&q| q as f32 * step)
            .collect();
        let mut q = vec![0i16; row.len()];
        let (found, exact) = integer_row(&row, &mut q);
        assert!(exact);
        assert_eq!(q, [-128, -3, 0, 5, 127, 40]);
        assert!((found - step).abs() < 1e-7);
        // A row sharing a factor gets the coarser step, still exact.
        let even: Vec<f32> = [2i32, -4, 6].iter().map(|&q| q as f32 * step).collect();
        let (found, exact) = integer_row(&even, &mut q[..3]);
        assert!(exact && (found - 2.0 * step).abs() < 1e-6);
        assert_eq!(&q[..3], [1, -2, 3]);
        // Arbitrary floats are rounded to 255 levels and reported.
        let (_, exact) = integer_row(&[0.1, 0.2 + 1e-4, 0.31415926], &mut q[..3]);
        assert!(!exact);
        assert!(q[..3].iter().all(|v| v.abs() <= 255));
    }

    /// Odd sizes (a partial panel, a partial tile, an odd K), in every layout, against the
    /// exact product.
    #[test]
    fn matches_the_exact_product_within_the_quantization() {
        let mut noise = Noise(0x9e37_79b9);
        let layouts = [false, true].map(|channels_last| Layout {
            batch: false,
            channels_last,
        });
        for (m, k, n) in [
            (6, 7, 19),
            (16, 32, 49),
            (24, 96, 16),
            (3, 960, 5),
            (8, 16, 35),
        ] {
            let step = 0.004;
            let weights: Vec<f32> = (0..m * k)
                .map(|_| ((noise.next() * 255.0) as i32 - 128) as f32 * step)
                .collect();
            // `[k][n]`, and the same channels last.
            let x: Vec<f32> = (0..k * n).map(|_| noise.next() * 6.0 - 1.0).collect();
            let x_last: Vec<f32> = (0..n * k).map(|i| x[(i % k) * n + i / k]).collect();
            let exact = reference(&weights, m, k, &x, n);
            let top = exact.iter().fold(0f32, |a, v| a.max(v.abs())).max(1e-6);
            for input in layouts {
                for output in layouts {
                    let (mut op, inexact) = IntegerPointwise::new(&weights, m, k, input, output);
                    assert_eq!(inexact, 0);
                    op.clamp = Some((0.0, 6.0));
                    let mut out = vec![f32::NAN; m * n];
                    op.run(if input.channels_last { &x_last } else { &x }, n, &mut out);
                    let got = |row: usize, p: usize| {
                        out[if output.channels_last {
                            p * m + row
                        } else {
                            row * n + p
                        }]
                    };
                    let worst =
                        (0..m * n).fold(0f32, |a, i| a.max((got(i / n, i % n) - exact[i]).abs()));
                    // 14–15 bits per pixel: a few parts in 10⁴ of the largest output.
                    assert!(
                        worst / top < 2e-3,
                        "{m}x{k}x{n} {input:?} {output:?}: {worst} of {top}"
                    );
                }
            }
        }
    }

    #[test]
    fn an_image_without_pixels_gives_an_empty_output() {
        let last = Layout {
            batch: true,
            channels_last: true,
        };
        let (op, _) = IntegerPointwise::new(&[0.5; 8], 2, 4, last, last);
        let empty = Tensor::zero::<f32>(&[1, 0, 3, 4]).unwrap();
        let out = op.eval(&EvalContext::out_of_plan(), tvec!(empty.into_tvalue()));
        assert_eq!(out.unwrap()[0].shape(), &[1, 0, 3, 2]);
    }

    #[test]
    fn the_shipped_model_runs_every_pointwise_convolution_in_integers() {
        // Checked through the classifier, which builds each segment with the rewrite.
        let classifier =
            crate::classifier::Classifier::load_with(Arithmetic::Integer).expect("loads");
        let rewritten = classifier.rewritten();
        assert_eq!(rewritten.inexact_rows, 0, "{rewritten:?}");
        // MobileNetV2's 34 pointwise convolutions.
        assert_eq!(rewritten.layers, 34, "{rewritten:?}");
        // Its 16 expansions, each with the depthwise convolution it feeds.
        assert_eq!(rewritten.fused, 16, "{rewritten:?}");
        // Verdicts judged in f32 are not reused for integers (the cache key's model).
        let onnx_only = *blake3::hash(crate::classifier::MODEL_ONNX).as_bytes();
        assert_ne!(classifier.identity().0, onnx_only);
    }
}
