//! What one Compute instance can afford, as numbers the stages plan with: the instance has
//! 128 MB of memory, the pre-initialised model and its working memory already live there,
//! and an allocation that does not fit aborts the instance (a 500). So the work is sized
//! before it starts, never discovered by running out.
//!
//! CPU is planned the same way: the costs below were measured on one host, and [`Pace`]
//! scales them to the host (and the load) this instance runs on.

use crate::media::decode::DecodeLimits;
use crate::policy::Limits;
use std::hint::black_box;
use std::time::{Duration, Instant};

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

/// How slowly this instance runs against the host the CPU costs in this crate were
/// measured on (AMD EPYC Zen 5, under Viceroy): 1.0 there, 1.3 where the same work takes
/// 30% longer, on an older core or beside a busy neighbour on the same core. Fastly's
/// fleet is not ours to choose, and a cost assumed from the fastest host lets an instance
/// on a slower one run past Compute's 50 ms, so every estimate of work not yet run is
/// scaled by the pace measured in the instance itself.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pace(f32);

/// The pace's bounds: a measurement outside them says more about the clock than the host.
const FASTEST_PACE: f32 = 0.8;
const SLOWEST_PACE: f32 = 2.5;

/// [`calibration_work`]'s time at the reference pace. Measured in Wasm under Viceroy on
/// a Zen 4 (AMD EPYC family 25 model 17), the machine at hand: 101.5 µs (the median of
/// 600 measurements, each the best of three); that host runs the model's inference 1.23×
/// slower than the Zen 5 (30.6 against 24.8 ms warm), so the Zen 5 figure is taken as
/// 101.5 / 1.23.
const REFERENCE_NANOS: f32 = 82_500.0;

impl Pace {
    /// The reference host's pace: what an instance assumes when it cannot measure.
    pub const REFERENCE: Pace = Pace(1.0);

    /// Times a fixed piece of work here (best of three, ~0.1 ms each at the reference
    /// pace; the best, because an interruption only ever adds).
    pub fn measure() -> Pace {
        let best = (0..3)
            .map(|_| {
                let started = Instant::now();
                black_box(calibration_work(black_box(CALIBRATION_ROUNDS)));
                started.elapsed()
            })
            .min()
            .unwrap_or_default();
        Pace::from_elapsed(best)
    }

    fn from_elapsed(elapsed: Duration) -> Pace {
        let nanos = elapsed.as_nanos();
        // A clock that cannot time it (nothing elapsed, or a whole millisecond: a coarse
        // tick) says nothing about the host.
        if nanos.is_multiple_of(1_000_000) {
            return Pace::REFERENCE;
        }
        Pace((nanos as f32 / REFERENCE_NANOS).clamp(FASTEST_PACE, SLOWEST_PACE))
    }

    /// `ms` of CPU at the reference pace, at this one (rounded up).
    pub fn scale(self, ms: u64) -> u64 {
        (ms as f32 * self.0).ceil() as u64
    }

    pub fn factor(self) -> f32 {
        self.0
    }
}

const CALIBRATION_ROUNDS: u32 = 600;

/// What an instance's work is made of, in small: float multiply-adds over a short array
/// (inference, resampling; vectorised) and a chain of dependent integer operations
/// (entropy decoding, hashing).
fn calibration_work(rounds: u32) -> u64 {
    let mut lanes = [0f32; 256];
    let mut chain: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..rounds {
        for (i, lane) in lanes.iter_mut().enumerate() {
            *lane = *lane * 0.999 + i as f32 * 0.5;
        }
        for _ in 0..64 {
            chain ^= chain << 13;
            chain ^= chain >> 7;
            chain ^= chain << 17;
        }
        chain = chain.wrapping_add(u64::from(lanes[(chain & 255) as usize].to_bits()));
    }
    chain
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pace_scales_costs_within_its_bounds() {
        let at = |micros: u64| Pace::from_elapsed(Duration::from_micros(micros));
        assert_eq!(at(0), Pace::REFERENCE);
        // A coarse clock's whole tick is no measurement.
        assert_eq!(at(1_000), Pace::REFERENCE);
        assert!((at(165).factor() - 2.0).abs() < 0.01);
        assert_eq!(at(5_001).factor(), SLOWEST_PACE);
        assert_eq!(at(1).factor(), FASTEST_PACE);
        assert_eq!(at(165).scale(14), 28);
        assert_eq!(Pace::REFERENCE.scale(7), 7);
        assert_eq!(Pace(1.23).scale(14), 18);
        // Measured here: some pace within the bounds.
        let here = Pace::measure().factor();
        assert!((FASTEST_PACE..=SLOWEST_PACE).contains(&here), "{here}");
    }

    #[test]
    fn a_rewrite_is_reserved_for_only_where_it_can_happen() {
        assert_eq!(rewrite_reserve_ms(true, 1024, 768), 12);
        assert_eq!(rewrite_reserve_ms(true, 320, 240), 2);
        assert_eq!(rewrite_reserve_ms(false, 1024, 768), 0);
        // Too large to rewrite (blocked instead): nothing to keep.
        assert_eq!(rewrite_reserve_ms(true, 4000, 3000), 0);
    }
}
