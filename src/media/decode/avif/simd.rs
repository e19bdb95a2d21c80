//! [`Yuv::row`] in Wasm SIMD: four pixels per vector, sixteen per round (one vector of
//! bytes per colour). Every lane runs the scalar arithmetic's operations in its order
//! (IEEE single precision, no fused multiply-add), so the bytes are the same; the unit
//! test that checks the conversion against the per-pixel formula runs inside Wasm too
//! (`make test`). The scalar loop was the largest single cost of an AVIF decode in Wasm:
//! more than rav1d's entropy decoding in a `perf` profile under Viceroy (Intel Xeon,
//! family 6 model 167; docs/performance.md, stop 49).

use super::super::simd as decode_simd;
use super::{Form, UpsampledRow, Yuv};
use std::arch::wasm32::*;

/// Converts the row's first pixels, a multiple of sixteen, into `out` (red, green and
/// blue rows); returns how many. The caller converts the rest.
pub(super) fn row(
    yuv: &Yuv,
    luma: &[u16],
    around: [&UpsampledRow; 2],
    fy: f32,
    out: &mut [Vec<u8>; 3],
) -> usize {
    let [above, below] = around;
    let n = luma.len();
    let mut planes = above.planes.iter().chain(&below.planes);
    if !(planes.all(|p| p.len() >= n) && out.iter().all(|o| o.len() >= n)) {
        return 0;
    }
    let splat = f32x4_splat;
    let (y_off, y_range, c_range, half) = (
        splat(yuv.y_off),
        splat(yuv.y_range),
        splat(yuv.c_range),
        splat(yuv.half),
    );
    let (weight_above, weight_below) = (splat(1.0 - fy), splat(fy));
    let (red_cr, blue_cb) = (splat(2.0 - 2.0 * yuv.kr), splat(2.0 - 2.0 * yuv.kb));
    let (kr, kb, kg) = (splat(yuv.kr), splat(yuv.kb), splat(yuv.kg));
    let chroma = |first: &[f32], second: &[f32], at: usize| {
        // SAFETY: `at + 4 <= n`, and both planes hold at least `n` values (checked above).
        let (a, b) = unsafe {
            (
                v128_load(first.as_ptr().add(at) as *const v128),
                v128_load(second.as_ptr().add(at) as *const v128),
            )
        };
        let blended = f32x4_add(f32x4_mul(a, weight_above), f32x4_mul(b, weight_below));
        f32x4_div(f32x4_sub(blended, half), c_range)
    };
    let mut x = 0;
    while x + 16 <= n {
        let mut colours = [[f32x4_splat(0.0); 4]; 3];
        for quarter in 0..4 {
            let at = x + 4 * quarter;
            // SAFETY: `at + 4 <= n = luma.len()`.
            let sample = unsafe { u32x4_load_extend_u16x4(luma.as_ptr().add(at)) };
            let luma = f32x4_div(f32x4_sub(f32x4_convert_u32x4(sample), y_off), y_range);
            let cb = chroma(&above.planes[0], &below.planes[0], at);
            let cr = chroma(&above.planes[1], &below.planes[1], at);
            let [r, g, b] = match yuv.form {
                Form::Identity => [f32x4_add(cr, splat(0.5)), luma, f32x4_add(cb, splat(0.5))],
                Form::YCbCr => {
                    let r = f32x4_add(luma, f32x4_mul(red_cr, cr));
                    let b = f32x4_add(luma, f32x4_mul(blue_cb, cb));
                    let g = f32x4_sub(f32x4_sub(luma, f32x4_mul(kr, r)), f32x4_mul(kb, b));
                    [r, f32x4_div(g, kg), b]
                }
                Form::YCgCo => {
                    let t = f32x4_sub(luma, cb);
                    [f32x4_add(t, cr), f32x4_add(luma, cb), f32x4_sub(t, cr)]
                }
            };
            for (colour, value) in colours.iter_mut().zip([r, g, b]) {
                colour[quarter] = unit_to_u8(value);
            }
        }
        for (colour, row) in colours.iter().zip(out.iter_mut()) {
            let low = i16x8_narrow_i32x4(colour[0], colour[1]);
            let high = i16x8_narrow_i32x4(colour[2], colour[3]);
            // SAFETY: `x + 16 <= n`, and each output row holds at least `n` bytes.
            unsafe {
                v128_store(
                    row.as_mut_ptr().add(x) as *mut v128,
                    u8x16_narrow_i16x8(low, high),
                )
            };
        }
        x += 16;
    }
    x
}

/// [`super::unit_to_u8`] lane by lane, as 32-bit integers in 0..=255: `x - trunc(x)`
/// compared with a half, then the clamp as `f32::clamp` does it (`pmax`, `pmin`; a NaN
/// passes both, and the saturating conversion makes it 0, as `as u8` does).
fn unit_to_u8(v: v128) -> v128 {
    let x = f32x4_mul(v, f32x4_splat(255.0));
    let whole = f32x4_trunc(x);
    let up = f32x4_ge(f32x4_sub(x, whole), f32x4_splat(0.5));
    let rounded = v128_bitselect(f32x4_add(whole, f32x4_splat(1.0)), whole, up);
    let clamped = f32x4_pmin(f32x4_pmax(rounded, f32x4_splat(0.0)), f32x4_splat(255.0));
    i32x4_trunc_sat_f32x4(clamped)
}

/// Interleaves the first pixels of red, green and blue rows, a multiple of sixteen, into
/// `out` (three bytes a pixel); returns how many.
pub(super) fn interleave_rgb(rgb: &[Vec<u8>; 3], out: &mut [u8]) -> usize {
    let n = rgb
        .iter()
        .map(Vec::len)
        .min()
        .unwrap_or(0)
        .min(out.len() / 3);
    let mut x = 0;
    while x + 16 <= n {
        let planes = rgb.each_ref().map(|row| {
            // SAFETY: `x + 16 <= n`: the row holds 16 bytes from `x`.
            unsafe { v128_load(row.as_ptr().add(x) as *const v128) }
        });
        decode_simd::store(out, 3 * x, &decode_simd::interleave3(planes));
        x += 16;
    }
    x
}
