//! The f32 matrix-multiply kernel that inference uses inside Wasm, shaped for Cranelift.
//!
//! Since the 1×1 convolutions run in integers (`super::pointwise`), this kernel carries
//! the first 3×3 convolution and the classifier's dense layers in the shipped build, and
//! every 1×1 convolution in [`super::Arithmetic::Float`] (`examples/operators.rs float`).
//! It was written for those: MobileNetV2 spends most of its Wasm time in them, which tract runs as
//! f32 GEMMs through register-tiled kernels. What bounds them in wasmtime: an
//! epoch-interruption check (a possible call) sits at every loop header, and on x86-64
//! every XMM register is caller-saved, so every `v128` live across the k loop's back-edge
//! lives in a stack slot and each accumulator is loaded and stored on every step. tract's
//! 8×8 kernel, built for ARM's 32 registers, is then bound by store-to-load forwarding.
//! This kernel is shaped to hide that:
//! - a 16×4 tile gives 16 independent accumulator chains;
//! - A is loaded as vectors and B broadcast by lane shuffles (one instruction each; a
//!   `load32_splat` becomes three after Cranelift);
//! - the k loop is unrolled by two, which halves the spill traffic without LLVM hoisting
//!   more operands than the registers hold.
//!
//! Vectors run along M. tract picks per layer which operand is A: when it is the weights,
//! M is the output channels, contiguous in NHWC outputs, so stores and bias loads are whole
//! vectors. When it is the activations, M is the pixels and a tile's four columns
//! (channels) are the contiguous ones: those tiles are stored, and residuals read, one
//! vector per row after a 4×4 transpose in registers.
//!
//! The k loop's machine code depends on the whole function around it: small changes to
//! the surrounding code have doubled its time. Measure every change with
//! `examples/operators.rs` under Viceroy; `docs/performance.md` records what was measured
//! and rejected, and why.
//!
//! Clamps (ReLU6's `ScalarMax(0)` / `ScalarMin(6)`, and the per-row and per-column forms)
//! use Wasm's pseudo-minimum and -maximum (`f32x4.pmin`/`pmax`), one `minps`/`maxps` on
//! x86-64, where `f32x4.min`/`max` cost about eight instructions to give NaN and signed
//! zero their IEEE meaning. They differ only for NaN and ±0, which a clamp of finite
//! activations never depends on (x86's native tract kernels use `minps`/`maxps` too).
//!
//! Every [`FusedKerSpec`] arm keeps the semantics of tract-linalg's own Wasm kernels
//! (operand order included), so fused bias, batch-norm and ReLU6 epilogues behave
//! identically; `tests/wasm_kernel.rs` holds the Wasm scores to the native ones. The kernel
//! joins tract's registry through `inventory`, as tract's own kernels do. An [`MmmTier`]
//! one precedence above tract's Wasm tier makes it the choice for f32 GEMMs;
//! matrix-vector products stay with tract.

use std::arch::wasm32::*;
use tract_onnx::tract_core::tract_data::prelude::DatumType;
use tract_onnx::tract_core::tract_linalg::{
    isa::{Arch, IsaReq, IsaSet},
    mmm::{DynKernel, FusedKerSpec, MatMatMul, OutputStoreKer, Query, Suitable},
    mmm_routines::MmmRoutine,
    mmm_tiers::MmmTier,
    pack::Packing,
    Scaler,
};

/// `v128` vectors per tile column: 4 × 4 = 16 rows of the output (M).
const MV: usize = 4;
const MR: usize = MV * 4;
/// Tile columns (N): one `v128` of B per step, broadcast lane by lane.
const NR: usize = 4;
/// k steps per loop iteration. At four, LLVM hoists the operands of all steps ahead of the
/// arithmetic and they no longer fit in registers.
const UNROLL: usize = 2;
const NAME: &str = "edge_moderation_wasm_f32_16x4";

/// `acc[c][i]` holds rows `4i..4i + 4` of tile column `c`.
type Tile = [[v128; MV]; NR];

#[inline(always)]
fn each(acc: &mut Tile, f: impl Fn(v128) -> v128) {
    for column in acc.iter_mut() {
        for v in column.iter_mut() {
            *v = f(*v);
        }
    }
}

/// `acc = f(rows, acc)`: one scalar per tile row, read as vectors down the column.
#[inline(always)]
unsafe fn per_row(acc: &mut Tile, rows: *const f32, f: impl Fn(v128, v128) -> v128) {
    for i in 0..MV {
        let r = v128_load(rows.add(4 * i) as *const v128);
        for column in acc.iter_mut() {
            column[i] = f(r, column[i]);
        }
    }
}

/// `acc = f(column, acc)`: one scalar per tile column, broadcast down its rows.
#[inline(always)]
unsafe fn per_col(acc: &mut Tile, columns: *const f32, f: impl Fn(v128, v128) -> v128) {
    for (c, column) in acc.iter_mut().enumerate() {
        let s = f32x4_splat(*columns.add(c));
        for v in column.iter_mut() {
            *v = f(s, *v);
        }
    }
}

#[inline(always)]
unsafe fn element(tile: &OutputStoreKer, row: usize, column: usize) -> *mut f32 {
    tile.ptr
        .offset(tile.row_byte_stride * row as isize + tile.col_byte_stride * column as isize)
        as *mut f32
}

/// Rows `row..row + 4` of one column of an output tile.
#[inline(always)]
unsafe fn read_rows(tile: &OutputStoreKer, row: usize, column: usize) -> v128 {
    if tile.row_byte_stride == 4 {
        v128_load(element(tile, row, column) as *const v128)
    } else {
        f32x4(
            *element(tile, row, column),
            *element(tile, row + 1, column),
            *element(tile, row + 2, column),
            *element(tile, row + 3, column),
        )
    }
}

#[inline(always)]
unsafe fn write_rows(tile: &OutputStoreKer, row: usize, column: usize, v: v128) {
    if tile.row_byte_stride == 4 {
        v128_store(element(tile, row, column) as *mut v128, v)
    } else {
        *element(tile, row, column) = f32x4_extract_lane::<0>(v);
        *element(tile, row + 1, column) = f32x4_extract_lane::<1>(v);
        *element(tile, row + 2, column) = f32x4_extract_lane::<2>(v);
        *element(tile, row + 3, column) = f32x4_extract_lane::<3>(v);
    }
}

/// Transposes a 4×4 block held as four vectors (columns to rows, or rows to columns).
#[inline(always)]
pub(super) fn transpose(block: [v128; 4]) -> [v128; 4] {
    let [c0, c1, c2, c3] = block;
    let low01 = i32x4_shuffle::<0, 4, 1, 5>(c0, c1);
    let low23 = i32x4_shuffle::<0, 4, 1, 5>(c2, c3);
    let high01 = i32x4_shuffle::<2, 6, 3, 7>(c0, c1);
    let high23 = i32x4_shuffle::<2, 6, 3, 7>(c2, c3);
    [
        i32x4_shuffle::<0, 1, 4, 5>(low01, low23),
        i32x4_shuffle::<2, 3, 6, 7>(low01, low23),
        i32x4_shuffle::<0, 1, 4, 5>(high01, high23),
        i32x4_shuffle::<2, 3, 6, 7>(high01, high23),
    ]
}

/// Rows `4i..4i + 4` of the tile, all `NR` columns, as columns: for outputs whose columns
/// are contiguous (`col_byte_stride == 4`), one vector load per row instead of one
/// scalar per element.
#[inline(always)]
unsafe fn read_row_block(tile: &OutputStoreKer, i: usize) -> [v128; NR] {
    transpose(std::array::from_fn(|r| {
        v128_load(element(tile, 4 * i + r, 0) as *const v128)
    }))
}

/// The inverse of [`read_row_block`]: one vector store per row.
#[inline(always)]
unsafe fn write_row_block(tile: &OutputStoreKer, i: usize, columns: [v128; NR]) {
    for (r, row) in transpose(columns).into_iter().enumerate() {
        v128_store(element(tile, 4 * i + r, 0) as *mut v128, row);
    }
}

/// Lane `c` of `v` in all four lanes.
#[inline(always)]
pub(super) fn broadcast(v: v128, c: usize) -> v128 {
    match c {
        0 => i32x4_shuffle::<0, 0, 0, 0>(v, v),
        1 => i32x4_shuffle::<1, 1, 1, 1>(v, v),
        2 => i32x4_shuffle::<2, 2, 2, 2>(v, v),
        _ => i32x4_shuffle::<3, 3, 3, 3>(v, v),
    }
}

/// One step of k: `acc[c][i] += A[k][4i..4i + 4] × B[k][c]`.
#[inline(always)]
unsafe fn add_step(acc: &mut Tile, a: *const v128, b: *const v128) {
    let mut column_of_a = [f32x4_splat(0.0); MV];
    for (i, v) in column_of_a.iter_mut().enumerate() {
        *v = v128_load(a.add(i));
    }
    let row_of_b = v128_load(b);
    for (c, column) in acc.iter_mut().enumerate() {
        let s = broadcast(row_of_b, c);
        for (v, a) in column.iter_mut().zip(column_of_a) {
            *v = f32x4_add(*v, f32x4_mul(a, s));
        }
    }
}

/// A is packed `[k][MR]` and B `[k][NR]`, as tract packs them for this tile.
#[inline(always)]
unsafe fn add_mat_mul(acc: &mut Tile, a: *const v128, b: *const v128, k: usize) {
    let mut step = 0;
    while step + UNROLL <= k {
        add_step(acc, a.add(step * MV), b.add(step));
        add_step(acc, a.add((step + 1) * MV), b.add(step + 1));
        step += UNROLL;
    }
    if step < k {
        add_step(acc, a.add(step * MV), b.add(step));
    }
}

/// Runs tract's micro-program of fused operations over one MR×NR output tile.
///
/// It walks the program by raw pointer, called through [`run`]: written as
/// `for spec in program` over the slice, the same code compiles to a k loop almost twice
/// as slow.
unsafe fn kernel(mut spec: *const FusedKerSpec<f32>) -> isize {
    let zero = f32x4_splat(0.0);
    let mut acc: Tile = [[zero; MV]; NR];
    while !spec.is_null() {
        match *spec {
            FusedKerSpec::Done => break,
            FusedKerSpec::Clear => acc = [[zero; MV]; NR],
            FusedKerSpec::LoadTile(column_major, _) => {
                for (c, column) in acc.iter_mut().enumerate() {
                    for (i, v) in column.iter_mut().enumerate() {
                        *v = v128_load(column_major.add(c * MR + 4 * i) as *const v128);
                    }
                }
            }
            FusedKerSpec::ScalarMin(s) => each(&mut acc, |v| f32x4_pmin(f32x4_splat(s), v)),
            FusedKerSpec::ScalarMax(s) => each(&mut acc, |v| f32x4_pmax(f32x4_splat(s), v)),
            FusedKerSpec::ScalarAdd(s) => each(&mut acc, |v| f32x4_add(f32x4_splat(s), v)),
            FusedKerSpec::ScalarMul(s) => each(&mut acc, |v| f32x4_mul(f32x4_splat(s), v)),
            FusedKerSpec::ScalarSub(s) => each(&mut acc, |v| f32x4_sub(f32x4_splat(s), v)),
            FusedKerSpec::ScalarSubF(s) => each(&mut acc, |v| f32x4_sub(v, f32x4_splat(s))),
            FusedKerSpec::LeakyRelu(alpha) => each(&mut acc, |v| {
                v128_bitselect(v, f32x4_mul(f32x4_splat(alpha), v), f32x4_gt(v, zero))
            }),
            FusedKerSpec::PerRowMin(rows) => per_row(&mut acc, rows, |s, v| f32x4_pmin(s, v)),
            FusedKerSpec::PerRowMax(rows) => per_row(&mut acc, rows, |s, v| f32x4_pmax(s, v)),
            FusedKerSpec::PerRowAdd(rows) => per_row(&mut acc, rows, |s, v| f32x4_add(s, v)),
            FusedKerSpec::PerRowMul(rows) => per_row(&mut acc, rows, |s, v| f32x4_mul(s, v)),
            FusedKerSpec::PerRowSub(rows) => per_row(&mut acc, rows, |s, v| f32x4_sub(s, v)),
            FusedKerSpec::PerRowSubF(rows) => per_row(&mut acc, rows, |s, v| f32x4_sub(v, s)),
            FusedKerSpec::PerColMin(cols) => per_col(&mut acc, cols, |s, v| f32x4_pmin(s, v)),
            FusedKerSpec::PerColMax(cols) => per_col(&mut acc, cols, |s, v| f32x4_pmax(s, v)),
            FusedKerSpec::PerColAdd(cols) => per_col(&mut acc, cols, |s, v| f32x4_add(s, v)),
            FusedKerSpec::PerColMul(cols) => per_col(&mut acc, cols, |s, v| f32x4_mul(s, v)),
            FusedKerSpec::PerColSub(cols) => per_col(&mut acc, cols, |s, v| f32x4_sub(s, v)),
            FusedKerSpec::PerColSubF(cols) => per_col(&mut acc, cols, |s, v| f32x4_sub(v, s)),
            // f32 accumulators have no integer rescaling: these become plain products, as in
            // tract's own f32 kernels.
            FusedKerSpec::QScale(shift, policy, mult) => {
                let scale = Scaler::from_fuse_params(shift, policy, mult).scale;
                each(&mut acc, |v| f32x4_mul(f32x4_splat(scale), v))
            }
            FusedKerSpec::RoundingShiftRight(shift, _) => {
                let scale = 2f32.powi(-(shift as i32));
                each(&mut acc, |v| f32x4_mul(f32x4_splat(scale), v))
            }
            FusedKerSpec::ShiftLeft(shift) => {
                let scale = 2f32.powi(shift as i32);
                each(&mut acc, |v| f32x4_mul(f32x4_splat(scale), v))
            }
            FusedKerSpec::AddUnicast(tile)
                if tile.row_byte_stride != 4 && tile.col_byte_stride == 4 =>
            {
                let blocks: [[v128; NR]; MV] = std::array::from_fn(|i| read_row_block(&tile, i));
                for (c, column) in acc.iter_mut().enumerate() {
                    for (v, block) in column.iter_mut().zip(&blocks) {
                        *v = f32x4_add(block[c], *v);
                    }
                }
            }
            FusedKerSpec::AddUnicast(tile) => {
                for (c, column) in acc.iter_mut().enumerate() {
                    for (i, v) in column.iter_mut().enumerate() {
                        *v = f32x4_add(read_rows(&tile, 4 * i, c), *v);
                    }
                }
            }
            FusedKerSpec::AddRowColProducts(rows, cols) => {
                for (c, column) in acc.iter_mut().enumerate() {
                    let s = f32x4_splat(*cols.add(c));
                    for (i, v) in column.iter_mut().enumerate() {
                        let r = v128_load(rows.add(4 * i) as *const v128);
                        *v = f32x4_add(*v, f32x4_mul(r, s));
                    }
                }
            }
            FusedKerSpec::Store(tile) if tile.row_byte_stride != 4 && tile.col_byte_stride == 4 => {
                let blocks: [[v128; NR]; MV] = std::array::from_fn(|i| acc.map(|column| column[i]));
                for (i, block) in blocks.into_iter().enumerate() {
                    write_row_block(&tile, i, block);
                }
            }
            FusedKerSpec::Store(tile) => {
                for (c, column) in acc.iter().enumerate() {
                    for (i, v) in column.iter().enumerate() {
                        write_rows(&tile, 4 * i, c, *v);
                    }
                }
            }
            FusedKerSpec::AddMatMul { k, pa, pb, .. } => {
                add_mat_mul(&mut acc, pa as *const v128, pb as *const v128, k)
            }
        }
        spec = spec.add(1);
    }
    0
}

unsafe fn run(spec: &[FusedKerSpec<f32>]) -> isize {
    kernel(spec.as_ptr())
}

fn make() -> Box<dyn MatMatMul> {
    let mut kernel = DynKernel::<MR, NR, f32>::new(NAME, run, f32::packing(MR), f32::packing(NR))
        .with_isa(IsaReq::ANY);
    kernel.arch = Some(Arch::Wasm32Simd128);
    kernel.mmm()
}

fn preferred(_: &IsaSet, dt: DatumType, query: &Query, _: &[Suitable]) -> Option<&'static str> {
    match (dt, query.n) {
        (DatumType::F32, Some(1)) => None,
        (DatumType::F32, _) => Some(NAME),
        _ => None,
    }
}

inventory::submit! { MmmRoutine { make } }

inventory::submit! {
    MmmTier {
        arch: Some(Arch::Wasm32Simd128),
        precedence: 2,
        name: "edge-moderation-wasm",
        applies: |_| true,
        preferred,
    }
}
