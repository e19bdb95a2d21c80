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
use std::sync::OnceLock;
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

/// CPU an SVG's next embedded image costs in the instance before its inference (decode,
/// PDQ, model input), kept while one follows: a 400×300 PNG's took 4 ms in fresh
/// instances under Viceroy on a Zen 4 (family 25 model 17, pace 1.27), which put the
/// instance judging an SVG's two rasters at 41–46 ms once segment estimates stopped
/// erring high ([`SegmentCosts`]). 3.2 at the reference pace, rounded up.
pub const NEXT_IMAGE_RESERVE_MS: u64 = 4;

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

/// [`Pace::here`], once measured.
static HERE: OnceLock<Pace> = OnceLock::new();

/// The pace's bounds: a measurement outside them says more about the clock than the host.
const FASTEST_PACE: f32 = 0.8;
const SLOWEST_PACE: f32 = 2.5;

/// [`calibration_work`]'s time over [`CALIBRATION_ROUNDS`] at the reference pace.
/// Measured in Wasm under Viceroy on a Zen 4 (AMD EPYC family 25 model 17), the machine
/// at hand: 101.5 µs for 600 rounds (the median of 600 measurements, each the best of
/// three); that host runs the model's inference 1.23× slower than the Zen 5 (30.6 against
/// 24.8 ms warm), so the Zen 5 figure is taken as 101.5 / 1.23. Short windows read the
/// same per round under `viceroy run` (an Intel Xeon, family 6 model 207: 131–134 µs per
/// 600 rounds in 60-round windows, 133–142 µs in one window of 600).
const REFERENCE_NANOS: f32 = 82_500.0 * CALIBRATION_ROUNDS as f32 / 600.0;

impl Pace {
    /// The reference host's pace: what an instance assumes when it cannot measure.
    pub const REFERENCE: Pace = Pace(1.0);

    /// Times a fixed piece of work here, in [`CALIBRATION_WINDOWS`] short windows (~8 µs
    /// each at the reference pace), and keeps the lower quartile. Short, because the
    /// instance's CPU is what is budgeted, and a long window also counts whatever runs
    /// while the instance is paused (Viceroy pauses the guest at every 50 µs epoch tick):
    /// in `viceroy serve` on a Zen 4, windows of 600 rounds read ≥ 416 µs where windows of
    /// 60 read ≤ 24.3 µs in the same instances. The lower quartile, not the minimum:
    /// interruptions only add, but a clock with jitter can also read a window short.
    pub fn measure() -> Pace {
        let windows = (0..CALIBRATION_WINDOWS)
            .map(|_| {
                let started = Instant::now();
                black_box(calibration_work(black_box(CALIBRATION_ROUNDS)));
                started.elapsed()
            })
            .collect();
        Pace::from_windows(windows)
    }

    /// This instance's pace, measured the first time it is asked for (an instance that
    /// never plans never pays for it).
    pub fn here() -> Pace {
        *HERE.get_or_init(Pace::measure)
    }

    /// This instance's pace, if something has asked for it (what `Server-Timing` reports).
    pub fn measured() -> Option<Pace> {
        HERE.get().copied()
    }

    fn from_windows(mut windows: Vec<Duration>) -> Pace {
        windows.sort_unstable();
        windows
            .get(windows.len() / 4)
            .map_or(Pace::REFERENCE, |&quartile| Pace::from_elapsed(quartile))
    }

    fn from_elapsed(elapsed: Duration) -> Pace {
        let nanos = elapsed.as_nanos();
        // A clock that cannot time a window (nothing elapsed, or a whole millisecond: a
        // coarse tick) says nothing about the host.
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

/// Each inference segment's share of the network's CPU ([`crate::classifier::SEGMENTS`]
/// of them, cut at equal convolution counts, not equal costs). Measured per segment in
/// fresh instances under Viceroy (Zen 4, family 25 model 17, pace 1.27; 1024×768 JPEGs,
/// 10 requests): the first, which holds the 112×112 layers, took 11–15 ms (median 12),
/// the others 3–5, 3–6 and 3–7 (medians 4, 4, 5), whether or not they ran first in their
/// instance. On an Intel Xeon (family 6 model 167, pace ~1.02; PNGs with alpha, two
/// chains at once on two cores) the last weighs more: 10–12, 3–4, 3–4 and 5–7 (median
/// 6). The last share is the larger of the two hosts': an estimate that errs low lets the
/// instance finishing the network run past its budget (the PNG's coordinator expected 5
/// for the last segment at 34 ms, took 7 and replied at 41).
const SEGMENT_SHARES: [u64; crate::classifier::SEGMENTS] = [12, 4, 4, 6];

/// What the next inference segment will cost in this instance, from what the segments
/// run here so far cost, in proportion to their [`SEGMENT_SHARES`]. The largest cost so
/// far (what this replaced) takes the first segment's 12 ms for each of the others: a
/// 1024×768 JPEG whose whole request fits in ~38 ms was handed on before its last
/// segment, and the hand-off added ~9 ms to its latency.
#[derive(Clone, Copy, Debug)]
pub struct SegmentCosts {
    /// The first segment's estimate before any has run here (already paced).
    first_ms: u64,
    /// The shares and the CPU of the segments run here.
    ran_shares: u64,
    ran_ms: u64,
}

impl SegmentCosts {
    /// `first_ms`: segment 0's expected cost in a fresh instance, at this instance's pace.
    pub fn new(first_ms: u64) -> Self {
        SegmentCosts {
            first_ms,
            ran_shares: 0,
            ran_ms: 0,
        }
    }

    /// Records that `segment` ran here in `ms` of CPU.
    pub fn ran(&mut self, segment: usize, ms: u64) {
        self.ran_shares += share(segment);
        self.ran_ms += ms;
    }

    /// `segment`'s expected cost here (rounded up; at least 1 ms).
    pub fn estimate(&self, segment: usize) -> u64 {
        let (ms, shares) = match self.ran_shares {
            0 => (self.first_ms, SEGMENT_SHARES[0]),
            ran => (self.ran_ms, ran),
        };
        (ms * share(segment)).div_ceil(shares).max(1)
    }
}

/// A segment's share; past the table (a network cut differently), the largest, so the
/// estimate errs toward handing on.
fn share(segment: usize) -> u64 {
    SEGMENT_SHARES
        .get(segment)
        .copied()
        .unwrap_or_else(|| SEGMENT_SHARES.iter().copied().max().unwrap_or(1))
}

/// One window's work: ~8 µs at the reference pace, well inside Viceroy's 50 µs epoch
/// period, and long enough for a clock of a microsecond to time it within ~12%.
const CALIBRATION_ROUNDS: u32 = 60;
const CALIBRATION_WINDOWS: usize = 16;

/// What an instance's work is made of, in small: float multiply-adds over a short array
/// (inference, resampling; vectorised) and a chain of dependent integer operations
/// (entropy decoding, hashing).
///
/// Never inlined: its speed is what [`REFERENCE_NANOS`] was measured for, so its code must
/// not depend on where it is called from. Inlined (the whole program is one LTO unit), one
/// build of the service read 2.5, the slowest bound, on the Zen 4 where it reads 1.27 as
/// compiled on its own; every estimate then doubled, and a 1024×768 JPEG crossed three
/// instances instead of one or two.
#[inline(never)]
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
        let at = |nanos: u64| Pace::from_elapsed(Duration::from_nanos(nanos));
        assert_eq!(at(0), Pace::REFERENCE);
        // A coarse clock's whole tick is no measurement.
        assert_eq!(at(1_000_000), Pace::REFERENCE);
        assert!((at(16_500).factor() - 2.0).abs() < 0.01);
        assert_eq!(at(5_001_000).factor(), SLOWEST_PACE);
        assert_eq!(at(1).factor(), FASTEST_PACE);
        assert_eq!(at(16_500).scale(14), 28);
        assert_eq!(Pace::REFERENCE.scale(7), 7);
        assert_eq!(Pace(1.23).scale(14), 18);
        // Measured here: some pace within the bounds.
        let here = Pace::measure().factor();
        assert!((FASTEST_PACE..=SLOWEST_PACE).contains(&here), "{here}");
    }

    #[test]
    fn the_pace_ignores_interrupted_windows_and_a_jittery_clock() {
        let micros = |list: &[u64]| list.iter().map(|&m| Duration::from_micros(m)).collect();
        // 16 windows of 12 µs (pace ~1.45): paused ones (a 50 µs tick, a neighbour) and
        // two that a jittery clock read short leave the pace where the rest put it.
        let mut read = vec![12; 10];
        read.extend([60, 75, 110, 400, 3, 4]);
        let pace = Pace::from_windows(micros(&read)).factor();
        assert!((pace - 12_000.0 / REFERENCE_NANOS).abs() < 0.01, "{pace}");
        // A clock too coarse to time a window reads most of them as nothing.
        let mut coarse = vec![0; 12];
        coarse.extend([1_000; 4]);
        assert_eq!(Pace::from_windows(micros(&coarse)), Pace::REFERENCE);
        assert_eq!(Pace::from_windows(Vec::new()), Pace::REFERENCE);
    }

    #[test]
    fn a_segment_is_expected_to_cost_its_share_of_what_ran_here() {
        // Before anything ran: the first segment's estimate, the others in proportion.
        let fresh = SegmentCosts::new(18);
        assert_eq!(fresh.estimate(0), 18);
        assert_eq!(fresh.estimate(1), 6);
        assert_eq!(fresh.estimate(3), 9);
        // The 1024×768 request's instance: 12 ms for the first, so 4, 4 and 6 for the
        // rest, where the largest-so-far rule expected 12 each.
        let mut costs = SegmentCosts::new(18);
        costs.ran(0, 12);
        assert_eq!(
            (costs.estimate(1), costs.estimate(2), costs.estimate(3)),
            (4, 4, 6)
        );
        costs.ran(1, 4);
        costs.ran(2, 4);
        assert_eq!(costs.estimate(3), 6);
        // A slower instance (a sibling that started at segment 1 on a busy host) expects
        // the rest slower in proportion.
        let mut slow = SegmentCosts::new(18);
        slow.ran(1, 8);
        assert_eq!((slow.estimate(2), slow.estimate(3)), (8, 12));
        // A clock that did not move still expects something; past the table, the largest.
        let mut idle = SegmentCosts::new(0);
        assert_eq!(idle.estimate(2), 1);
        idle.ran(0, 12);
        assert_eq!(idle.estimate(SEGMENT_SHARES.len()), 12);
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
