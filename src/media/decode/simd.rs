//! Wasm SIMD shared by the decoders' last step, planes of samples made into pixels:
//! sixteen pixels at a time, bytes packed from 32-bit lanes and interleaved by shuffles
//! (`avif`, `jxl`). Native builds take the scalar loops these stand for.

use std::arch::wasm32::*;

/// Four vectors of 32-bit integers, each in 0..=255, as sixteen bytes in lane order.
pub(super) fn pack(quarters: [v128; 4]) -> v128 {
    let low = i16x8_narrow_i32x4(quarters[0], quarters[1]);
    let high = i16x8_narrow_i32x4(quarters[2], quarters[3]);
    u8x16_narrow_i16x8(low, high)
}

/// Sixteen pixels' red, green and blue bytes as 48 bytes of RGB. Each 16 bytes of output
/// takes red and green in one shuffle, then blue in a second.
pub(super) fn interleave3([r, g, b]: [v128; 3]) -> [v128; 3] {
    let rg0 = i8x16_shuffle::<0, 16, 0, 1, 17, 0, 2, 18, 0, 3, 19, 0, 4, 20, 0, 5>(r, g);
    let rg1 = i8x16_shuffle::<21, 0, 6, 22, 0, 7, 23, 0, 8, 24, 0, 9, 25, 0, 10, 26>(r, g);
    let rg2 = i8x16_shuffle::<0, 11, 27, 0, 12, 28, 0, 13, 29, 0, 14, 30, 0, 15, 31, 0>(r, g);
    [
        i8x16_shuffle::<0, 1, 16, 3, 4, 17, 6, 7, 18, 9, 10, 19, 12, 13, 20, 15>(rg0, b),
        i8x16_shuffle::<0, 21, 2, 3, 22, 5, 6, 23, 8, 9, 24, 11, 12, 25, 14, 15>(rg1, b),
        i8x16_shuffle::<26, 1, 2, 27, 4, 5, 28, 7, 8, 29, 10, 11, 30, 13, 14, 31>(rg2, b),
    ]
}

/// Sixteen pixels' red, green, blue and alpha bytes as 64 bytes of RGBA.
pub(super) fn interleave4([r, g, b, a]: [v128; 4]) -> [v128; 4] {
    let rg_low = i8x16_shuffle::<0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23>(r, g);
    let rg_high =
        i8x16_shuffle::<8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31>(r, g);
    let ba_low = i8x16_shuffle::<0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23>(b, a);
    let ba_high =
        i8x16_shuffle::<8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31>(b, a);
    [
        i16x8_shuffle::<0, 8, 1, 9, 2, 10, 3, 11>(rg_low, ba_low),
        i16x8_shuffle::<4, 12, 5, 13, 6, 14, 7, 15>(rg_low, ba_low),
        i16x8_shuffle::<0, 8, 1, 9, 2, 10, 3, 11>(rg_high, ba_high),
        i16x8_shuffle::<4, 12, 5, 13, 6, 14, 7, 15>(rg_high, ba_high),
    ]
}

/// Stores `vectors` one after another into `out` from byte `at`.
pub(super) fn store(out: &mut [u8], at: usize, vectors: &[v128]) {
    let bytes = &mut out[at..at + 16 * vectors.len()];
    for (chunk, vector) in bytes.chunks_exact_mut(16).zip(vectors) {
        // SAFETY: `chunk` is 16 writable bytes; `v128_store` needs no alignment.
        unsafe { v128_store(chunk.as_mut_ptr() as *mut v128, *vector) };
    }
}
