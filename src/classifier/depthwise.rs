//! MobileNetV2's expansions fused with the depthwise convolutions they feed: the operator
//! that replaces each 1×1 expansion ([`IntegerPointwise`], with its ReLU6) and the 3×3
//! depthwise convolution reading it (with its ReLU6), and the rewrite that puts it there.
//!
//! Why: an expansion multiplies a block's channels by six, and its output exists only to
//! be read once by the depthwise convolution after it. At 112×112 that tensor is 4.8 MB of
//! f32, written and read back: the largest allocation of an inference, which set a
//! request's peak memory, and in a fresh instance each of its ~1,200 pages is a page
//! fault. Here the expansion runs panel by panel just ahead of the convolution, into a
//! ring of a few rows (~170 KB at 112×112), and each output row is computed as soon as
//! its three input rows are in. The ReLU6 after the convolution, a pass of its own over
//! the output in tract, is done as each output is written. Measured under Viceroy on a
//! Zen 4 (family 25 model 17): a request's peak heap in Wasm 7.0 → 4.2 MB at 1024×768,
//! ~700 fewer page faults per fresh instance, warm inference 22.6 → 21.5 ms
//! (docs/performance.md, stop 48).
//!
//! What it computes:
//! - the expansion exactly as [`IntegerPointwise`] computes it (the same panels, the same
//!   integers, the same f32 epilogue: the same bits);
//! - the depthwise convolution in f32, per output: the bias, then the taps inside the
//!   image in row-major order (each a multiply, then an add), then the clamp. The same
//!   arithmetic runs natively and in Wasm SIMD, so both give the same bits. tract's
//!   kernels are free to sum in another order; natively the model's outputs came out
//!   bit-identical to its separate operators' all the same.

use super::pointwise::{self, Activations, IntegerPointwise, Layout, Panel, PIXELS, ROWS};
use anyhow::Result;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::cnn::{Conv, KernelFormat};

/// Added to the model's identity when expansions are fused: a new version of this
/// arithmetic must change it, so no verdict judged by another is reused.
pub(super) const IDENTITY: &[u8] = b"expansions fused with 3x3 depthwise convolutions, v1";

/// Taps of the depthwise kernels fused: 3×3, MobileNetV2's only size.
const TAPS: usize = 9;

/// A 1×1 expansion and the 3×3 depthwise convolution reading it, as one operator.
#[derive(Clone, Debug)]
pub struct ExpandDepthwise {
    expand: IntegerPointwise,
    /// `[tap][channel]`, taps row-major: channel `c`'s nine weights are `m` apart.
    taps: Vec<f32>,
    bias: Vec<f32>,
    /// `(low, high)` after the convolution's bias and taps (ReLU6: `(0, 6)`), or none.
    clamp: Option<(f32, f32)>,
    stride: usize,
    pad_top: usize,
    pad_left: usize,
    input_hw: (usize, usize),
    output_hw: (usize, usize),
    /// The convolution's output, laid out as its input (the expansion's output).
    output: Layout,
}

/// tract compares operators to merge equal nodes: equal when bit-identical.
impl PartialEq for ExpandDepthwise {
    fn eq(&self, other: &Self) -> bool {
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        let clamp = |c: Option<(f32, f32)>| c.map(|(l, h)| (l.to_bits(), h.to_bits()));
        let shape = |o: &Self| {
            (
                o.stride,
                o.pad_top,
                o.pad_left,
                o.input_hw,
                o.output_hw,
                o.output,
            )
        };
        self.expand == other.expand
            && shape(self) == shape(other)
            && bits(&self.taps) == bits(&other.taps)
            && bits(&self.bias) == bits(&other.bias)
            && clamp(self.clamp) == clamp(other.clamp)
    }
}

impl Eq for ExpandDepthwise {}

/// The ring's size in pixels for rows `width` wide: a whole number of rows (a row never
/// wraps) and of panels (a panel never wraps), holding the three rows an output row reads
/// and the panel computed past them.
fn ring_pixels(width: usize) -> usize {
    let whole = lcm(width, PIXELS);
    (3 * width + PIXELS).div_ceil(whole) * whole
}

fn lcm(a: usize, b: usize) -> usize {
    let gcd = |mut a: usize, mut b: usize| {
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    };
    a / gcd(a, b) * b
}

/// What one output row of the convolution reads, besides its three input rows.
struct Kernel<'a> {
    taps: &'a [f32],
    bias: &'a [f32],
    clamp: Option<(f32, f32)>,
    stride: usize,
    pad_left: usize,
    /// Input row width, in pixels.
    width: usize,
}

impl ExpandDepthwise {
    fn m(&self) -> usize {
        self.expand.m
    }

    /// Runs both on an input in the expansion's input layout, into an output in the
    /// convolution's.
    fn run(&self, input: &[f32], output: &mut [f32]) {
        let m = self.m();
        let ((in_h, in_w), (out_h, out_w)) = (self.input_hw, self.output_hw);
        let n = in_h * in_w;
        let source = Activations {
            values: input,
            k: self.expand.k,
            n,
            channels_last: self.expand.input.channels_last,
        };
        let capacity = ring_pixels(in_w);
        let mut ring = vec![0f32; capacity * m];
        let zeros = vec![0f32; in_w * m];
        let mut panel = Panel::new(self.expand.pairs());
        let kernel = Kernel {
            taps: &self.taps,
            bias: &self.bias,
            clamp: self.clamp,
            stride: self.stride,
            pad_left: self.pad_left,
            width: in_w,
        };
        // Channels first, each output row is computed channels last, then spread.
        let mut row = vec![
            0f32;
            if self.output.channels_last {
                0
            } else {
                out_w * m
            }
        ];
        let mut computed = 0;
        for y in 0..out_h {
            let top = (y * self.stride) as isize - self.pad_top as isize;
            let last = (top + 2).min(in_h as isize - 1);
            let needed = if last < 0 {
                0
            } else {
                (last as usize + 1) * in_w
            };
            while computed < needed {
                let width = (n - computed).min(PIXELS);
                let slot = computed % capacity;
                let at = |tile: usize| slot * m + tile * ROWS;
                self.expand.panel_tiles(
                    &source,
                    computed / PIXELS,
                    &mut panel,
                    |tile, lanes, rows| {
                        pointwise::store_channels_last(lanes, rows, width, &mut ring[at(tile)..], m)
                    },
                );
                computed += width;
            }
            let rows: [&[f32]; 3] = std::array::from_fn(|ky| {
                let iy = top + ky as isize;
                if (0..in_h as isize).contains(&iy) {
                    let start = (iy as usize * in_w) % capacity;
                    &ring[start * m..][..in_w * m]
                } else {
                    &zeros
                }
            });
            if self.output.channels_last {
                depthwise_row(&kernel, rows, &mut output[y * out_w * m..][..out_w * m]);
            } else {
                depthwise_row(&kernel, rows, &mut row);
                for (x, pixel) in row.chunks_exact(m).enumerate() {
                    for (c, v) in pixel.iter().enumerate() {
                        output[(c * out_h + y) * out_w + x] = *v;
                    }
                }
            }
        }
    }
}

/// One output row, channels last (`out`: `[x][m]`), from the three input rows it reads
/// (`[x][m]` each; zeros for a padding row).
fn depthwise_row(kernel: &Kernel, rows: [&[f32]; 3], out: &mut [f32]) {
    let m = kernel.bias.len();
    for (x, pixel) in out.chunks_exact_mut(m).enumerate() {
        let left = (x * kernel.stride) as isize - kernel.pad_left as isize;
        simd::pixel(kernel, rows, left, pixel);
    }
}

/// The taps `first..end` of a kernel row whose leftmost tap is at column `left` that
/// fall inside a row `width` wide (the others read zero padding, and are skipped).
fn columns_inside(left: isize, width: usize) -> (usize, usize) {
    let first = (-left).clamp(0, 3) as usize;
    let end = (width as isize - left).clamp(0, 3) as usize;
    (first, end.max(first))
}

/// The clamp as the SIMD path applies it (`pmax`, then `pmin`); Wasm builds use only
/// that path (and the tests, this).
#[cfg_attr(
    all(target_arch = "wasm32", target_feature = "simd128"),
    allow(dead_code)
)]
#[inline(always)]
fn clamped(v: f32, clamp: Option<(f32, f32)>) -> f32 {
    match clamp {
        Some((low, high)) => {
            let v = if v < low { low } else { v };
            if high < v {
                high
            } else {
                v
            }
        }
        None => v,
    }
}

/// The portable arithmetic, for native builds.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
mod simd {
    use super::{clamped, columns_inside, Kernel};

    /// An output pixel whose leftmost tap is at column `left`: per channel, the bias,
    /// then the taps inside the image, row by row.
    pub(super) fn pixel(kernel: &Kernel, rows: [&[f32]; 3], left: isize, out: &mut [f32]) {
        let m = out.len();
        let (first, end) = columns_inside(left, kernel.width);
        for (c, o) in out.iter_mut().enumerate() {
            let mut acc = kernel.bias[c];
            for (ky, row) in rows.iter().enumerate() {
                for kx in first..end {
                    let column = (left + kx as isize) as usize;
                    acc += row[column * m + c] * kernel.taps[(ky * 3 + kx) * m + c];
                }
            }
            *o = clamped(acc, kernel.clamp);
        }
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd {
    use super::{columns_inside, Kernel, TAPS};
    use std::arch::wasm32::*;

    /// An output pixel whose leftmost tap is at column `left`, as the portable one
    /// computes it, four channels per vector and four vectors at a time: independent
    /// sums, where one chain of nine dependent adds per vector left the core waiting (the
    /// fused operator's convolutions took 1.2× tract's time per output in a profile).
    pub(super) fn pixel(kernel: &Kernel, rows: [&[f32]; 3], left: isize, out: &mut [f32]) {
        let m = out.len();
        let (first, end) = columns_inside(left, kernel.width);
        assert!(
            m.is_multiple_of(4)
                && kernel.bias.len() == m
                && kernel.taps.len() == TAPS * m
                && rows.iter().all(|r| r.len() >= kernel.width * m)
        );
        let (low, high) = match kernel.clamp {
            Some((low, high)) => (f32x4_splat(low), f32x4_splat(high)),
            None => (f32x4_splat(f32::NEG_INFINITY), f32x4_splat(f32::INFINITY)),
        };
        // SAFETY: `left + kx` is a column inside the rows for `kx` in `first..end`, and
        // each row holds `width · m` values (asserted): every load reads channels below
        // `m` of such a column, of the bias, or of tap `ky · 3 + kx` < 9 (`taps` holds
        // `9 · m`); every store writes channels below `m` of `out`.
        unsafe {
            let taps = kernel.taps.as_ptr();
            let bias = kernel.bias.as_ptr();
            let tap = |ky: usize, kx: usize, c: usize| taps.add((ky * 3 + kx) * m + c);
            let at = |ky: usize, kx: usize, c: usize| {
                rows[ky]
                    .as_ptr()
                    .offset((left + kx as isize) * m as isize)
                    .add(c)
            };
            let load = |p: *const f32| v128_load(p as *const v128);
            let mut c = 0;
            while c + 16 <= m {
                let mut acc: [v128; 4] = std::array::from_fn(|i| load(bias.add(c + 4 * i)));
                for ky in 0..3 {
                    for kx in first..end {
                        let (x, w) = (at(ky, kx, c), tap(ky, kx, c));
                        for (i, a) in acc.iter_mut().enumerate() {
                            *a = f32x4_add(*a, f32x4_mul(load(x.add(4 * i)), load(w.add(4 * i))));
                        }
                    }
                }
                for (i, a) in acc.iter().enumerate() {
                    let y = f32x4_pmin(f32x4_pmax(*a, low), high);
                    v128_store(out.as_mut_ptr().add(c + 4 * i) as *mut v128, y);
                }
                c += 16;
            }
            while c < m {
                let mut a = load(bias.add(c));
                for ky in 0..3 {
                    for kx in first..end {
                        a = f32x4_add(a, f32x4_mul(load(at(ky, kx, c)), load(tap(ky, kx, c))));
                    }
                }
                let y = f32x4_pmin(f32x4_pmax(a, low), high);
                v128_store(out.as_mut_ptr().add(c) as *mut v128, y);
                c += 4;
            }
        }
    }
}

impl Op for ExpandDepthwise {
    fn name(&self) -> StaticName {
        "ExpandDepthwise".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "K {} M {} stride {} {:?} -> {:?}",
            self.expand.k,
            self.m(),
            self.stride,
            self.input_hw,
            self.output_hw
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for ExpandDepthwise {
    op_out_of_plan!();

    fn eval(&self, _: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let expand = &self.expand;
        let shape = |h, w| {
            if (h, w) != self.input_hw {
                anyhow::bail!("ExpandDepthwise for {:?} given {h}x{w}", self.input_hw);
            }
            let (out_h, out_w) = self.output_hw;
            Ok(self.output.shape(1, self.m(), out_h, out_w))
        };
        let run = |x: &[f32], _, _, out: &mut [f32]| self.run(x, out);
        pointwise::eval_image(input, expand.input, expand.k, "ExpandDepthwise", shape, run)
    }
}

impl TypedOp for ExpandDepthwise {
    fn output_facts(&self, _: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let (out_h, out_w) = self.output_hw;
        let shape = self.output.shape(1, self.m(), out_h, out_w);
        Ok(tvec!(f32::fact(shape)))
    }

    as_op!();
}

/// Replaces every expansion of `model` (an [`IntegerPointwise`] already) that only feeds
/// a 3×3 depthwise convolution this operator runs, with that convolution and its clamp.
/// Returns how many it fused.
pub fn rewrite(model: &mut TypedModel) -> Result<usize> {
    let candidates: Vec<usize> = model
        .nodes
        .iter()
        .filter(|n| n.op_as::<IntegerPointwise>().is_some())
        .map(|n| n.id)
        .collect();
    let mut fused = 0;
    for id in candidates {
        if let Some((op, last)) = matched(model, id)? {
            let mut patch = TypedModelPatch::default();
            let tap = patch.tap_model(model, model.node(id).inputs[0])?;
            let name = format!("{}.fused", model.node(id).name);
            let wired = patch.wire_node(name, op, &[tap])?;
            patch.shunt_outside(model, OutletId::new(last, 0), wired[0])?;
            patch.apply(model)?;
            fused += 1;
        }
    }
    model.compact()?;
    Ok(fused)
}

/// The fused operator for expansion node `id` and the last node it replaces, if its sole
/// reader is a 3×3 depthwise convolution of stride 1 or 2 with constant weights.
fn matched(model: &TypedModel, id: usize) -> Result<Option<(ExpandDepthwise, usize)>> {
    let node = model.node(id);
    let Some(expand) = node.op_as::<IntegerPointwise>() else {
        return Ok(None);
    };
    let outlet = OutletId::new(id, 0);
    let readers = &node.outputs[0].successors;
    if readers.len() != 1 || readers[0].slot != 0 || model.output_outlets()?.contains(&outlet) {
        return Ok(None);
    }
    let conv_node = model.node(readers[0].node);
    let Some(conv) = conv_node.op_as::<Conv>() else {
        return Ok(None);
    };
    let m = expand.m;
    let spec = &conv.pool_spec;
    let layout = expand.output;
    let strides = spec.strides();
    let depthwise = conv.group == m
        && spec.input_channels == m
        && spec.output_channels == m
        && m.is_multiple_of(4)
        && conv.q_params.is_none()
        && conv.kernel_fmt == KernelFormat::OIHW
        && spec.kernel_shape.as_slice() == [3, 3]
        && spec.dilations().iter().all(|&d| d == 1)
        && strides.len() == 2
        && strides[0] == strides[1]
        && (1..=2).contains(&strides[0])
        && spec.data_format.c_is_last() == layout.channels_last
        && spec.data_format.has_n() == layout.batch
        && conv_node.inputs.len() == 3;
    if !depthwise {
        return Ok(None);
    }
    let constant = |slot: usize| -> Result<Option<Vec<f32>>> {
        let Some(k) = model.outlet_fact(conv_node.inputs[slot])?.konst.clone() else {
            return Ok(None);
        };
        if k.datum_type() != DatumType::F32 {
            return Ok(None);
        }
        Ok(Some(k.try_as_plain_ram()?.as_slice::<f32>()?.to_vec()))
    };
    let (Some(kernel), Some(bias)) = (constant(1)?, constant(2)?) else {
        return Ok(None);
    };
    if kernel.len() != TAPS * m || bias.len() != m {
        return Ok(None);
    }
    let concrete = |outlet: OutletId| -> Result<Option<TVec<usize>>> {
        Ok(model
            .outlet_fact(outlet)?
            .shape
            .as_concrete()
            .map(|s| s.into()))
    };
    let (Some(input_shape), Some(output_shape)) =
        (concrete(outlet)?, concrete(OutletId::new(conv_node.id, 0))?)
    else {
        return Ok(None);
    };
    let (Some((_, in_h, in_w)), Some((_, out_h, out_w))) =
        (layout.split(&input_shape), layout.split(&output_shape))
    else {
        return Ok(None);
    };
    let padding = spec.computed_padding(&[in_h, in_w]);
    let (pad_top, pad_left) = (padding[0].pad_before, padding[1].pad_before);
    let stride = strides[0];
    // Every output row and column reads at least one input row and column.
    if pad_top > 2 || pad_left > 2 || in_h == 0 || in_w == 0 {
        return Ok(None);
    }
    let mut taps = vec![0f32; TAPS * m];
    for (c, weights) in kernel.chunks_exact(TAPS).enumerate() {
        for (t, w) in weights.iter().enumerate() {
            taps[t * m + c] = *w;
        }
    }
    let mut op = ExpandDepthwise {
        expand: expand.clone(),
        taps,
        bias,
        clamp: None,
        stride,
        pad_top,
        pad_left,
        input_hw: (in_h, in_w),
        output_hw: (out_h, out_w),
        output: layout,
    };
    let mut last = conv_node.id;
    // ReLU6: max with a scalar, then min with a scalar.
    if let Some((max_node, low)) = pointwise::sole_reader_by_const(model, last, "Max", 1, layout)? {
        if let Some((min_node, high)) =
            pointwise::sole_reader_by_const(model, max_node, "Min", 1, layout)?
        {
            op.clamp = Some((low[0], high[0]));
            last = min_node;
        }
    }
    Ok(Some((op, last)))
}

#[cfg(test)]
mod tests {
    use super::super::pointwise::tests::Noise;
    use super::*;

    /// A deterministic stream of values in `[-1, 1)`.
    struct Values(Noise);

    impl Values {
        fn next(&mut self) -> f32 {
            self.0.next() * 2.0 - 1.0
        }
    }

    /// The expansion run alone (as the unfused graph runs it), then the convolution
    /// written out plainly: bias, the taps inside the image in row-major order, clamp.
    fn reference(op: &ExpandDepthwise, input: &[f32]) -> Vec<f32> {
        let m = op.m();
        let ((in_h, in_w), (out_h, out_w)) = (op.input_hw, op.output_hw);
        let mut expanded = vec![0f32; m * in_h * in_w];
        op.expand.run(input, in_h * in_w, &mut expanded);
        let at = |c: usize, y: usize, x: usize| {
            if op.expand.output.channels_last {
                expanded[(y * in_w + x) * m + c]
            } else {
                expanded[(c * in_h + y) * in_w + x]
            }
        };
        let mut out = vec![0f32; m * out_h * out_w];
        for c in 0..m {
            for y in 0..out_h {
                for x in 0..out_w {
                    let mut acc = op.bias[c];
                    for ky in 0..3 {
                        for kx in 0..3 {
                            let iy = (y * op.stride + ky) as isize - op.pad_top as isize;
                            let ix = (x * op.stride + kx) as isize - op.pad_left as isize;
                            if (0..in_h as isize).contains(&iy) && (0..in_w as isize).contains(&ix)
                            {
                                acc += at(c, iy as usize, ix as usize)
                                    * op.taps[(ky * 3 + kx) * m + c];
                            }
                        }
                    }
                    let at = if op.output.channels_last {
                        (y * out_w + x) * m + c
                    } else {
                        (c * out_h + y) * out_w + x
                    };
                    out[at] = clamped(acc, op.clamp);
                }
            }
        }
        out
    }

    #[test]
    fn matches_the_expansion_then_the_convolution_bit_for_bit() {
        let mut values = Values(Noise(7));
        // (height, width, stride, padding before; after is 1): widths that are and are
        // not multiples of a panel, rows that wrap the ring, images smaller than a kernel.
        let shapes = [
            (9, 7, 1, 1),
            (8, 6, 2, 0),
            (5, 20, 2, 1),
            (3, 3, 1, 1),
            (1, 1, 1, 1),
            (13, 17, 2, 0),
            (12, 112, 2, 0),
        ];
        for (k, m) in [(5, 8), (16, 12), (24, 16)] {
            for (in_h, in_w, stride, pad) in shapes {
                for (input_last, output_last) in [(false, false), (true, true), (true, false)] {
                    let weights: Vec<f32> = (0..m * k).map(|_| values.next()).collect();
                    let layout = |channels_last| Layout {
                        batch: false,
                        channels_last,
                    };
                    let (mut expand, _) = IntegerPointwise::new(
                        &weights,
                        m,
                        k,
                        layout(input_last),
                        layout(output_last),
                    );
                    expand.clamp = Some((0.0, 6.0));
                    let out = |size: usize| (size + pad + 1 - 3) / stride + 1;
                    let op = ExpandDepthwise {
                        expand,
                        taps: (0..TAPS * m).map(|_| values.next() * 2.0).collect(),
                        bias: (0..m).map(|_| values.next() + 2.0).collect(),
                        clamp: Some((0.0, 6.0)),
                        stride,
                        pad_top: pad,
                        pad_left: pad,
                        input_hw: (in_h, in_w),
                        output_hw: (out(in_h), out(in_w)),
                        output: layout(output_last),
                    };
                    let input: Vec<f32> =
                        (0..k * in_h * in_w).map(|_| values.next() * 4.0).collect();
                    let (out_h, out_w) = op.output_hw;
                    let mut fused = vec![f32::NAN; m * out_h * out_w];
                    op.run(&input, &mut fused);
                    let expected = reference(&op, &input);
                    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                    assert_eq!(
                        bits(&fused),
                        bits(&expected),
                        "k {k} m {m} {in_h}x{in_w} stride {stride} pad {pad} \
                         channels last {input_last}/{output_last}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_ring_holds_whole_rows_and_panels_and_three_rows_ahead() {
        for width in 1..=230 {
            let ring = ring_pixels(width);
            assert!(
                ring.is_multiple_of(width) && ring.is_multiple_of(PIXELS),
                "{width}"
            );
            assert!(ring >= 3 * width + PIXELS, "{width}");
        }
    }
}
