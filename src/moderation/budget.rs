//! What one Compute instance can afford, as numbers the stages plan with: the instance has
//! 128 MB of memory, the pre-initialised model and its working memory already live there,
//! and an allocation that does not fit aborts the instance (a 500). So the work is sized
//! before it starts, never discovered by running out.

use crate::media::decode::DecodeLimits;
use crate::policy::Limits;

/// Largest decoded canvas, in bytes. Measured under Viceroy: a 36 MB canvas (4000×3000
/// RGB) decodes and classifies; 48 MB (4000×4000 RGB) does not fit.
pub const CANVAS_BYTES: u64 = 36_000_000;

/// Largest output canvas (bytes) that is rewritten: a rewrite holds several full-size
/// copies at once. Larger images to rewrite are blocked instead.
pub const REWRITE_CANVAS_BYTES: usize = 8_000_000;

/// CPU a rewrite costs per megapixel of output (obscure, then re-encode), in a fresh
/// instance: 10.6 ms for a 1024×768 JPEG under Viceroy on Zen 5, rounded up.
const REWRITE_MS_PER_MEGAPIXEL: u64 = 14;

/// The CPU to keep for rewriting an image of `width` × `height` in the instance that
/// judged it, when the policy may rewrite it (0 when it cannot, or the rewrite would be
/// blocked for its size).
pub fn rewrite_reserve_ms(can_rewrite: bool, width: u32, height: u32) -> u64 {
    let pixels = u64::from(width) * u64::from(height);
    // RGB, the smaller canvas: whenever a rewrite may run, it is kept for.
    if !can_rewrite || pixels * 3 > REWRITE_CANVAS_BYTES as u64 {
        return 0;
    }
    (pixels * REWRITE_MS_PER_MEGAPIXEL).div_ceil(1_000_000)
}

/// The operator's limits within the instance's memory.
pub fn decode_limits(limits: &Limits) -> DecodeLimits {
    DecodeLimits {
        max_pixels: limits.max_pixels,
        max_dimension: limits.max_dimension,
        reduce_jpeg: limits.reduced_jpeg_decode,
        max_canvas_bytes: CANVAS_BYTES,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rewrite_is_reserved_for_only_where_it_can_happen() {
        assert_eq!(rewrite_reserve_ms(true, 1024, 768), 12);
        assert_eq!(rewrite_reserve_ms(true, 320, 240), 2);
        assert_eq!(rewrite_reserve_ms(false, 1024, 768), 0);
        // Too large to rewrite (blocked instead): nothing to keep.
        assert_eq!(rewrite_reserve_ms(true, 4000, 3000), 0);
    }
}
