//! Drawing SVG documents (resvg behind our bounds and raster resolver) on arbitrary
//! input: no panic, and a drawing never beyond the sizes it is judged at.
#![no_main]

use edge_moderation::media::decode::DecodeLimits;
use edge_moderation::media::svg;
use libfuzzer_sys::fuzz_target;

const LIMITS: DecodeLimits = DecodeLimits {
    max_pixels: 1 << 20,
    max_dimension: 4096,
    max_canvas_bytes: 16 << 20,
    reduce_jpeg: true,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(drawing)) = svg::draw(data, LIMITS) {
        let (width, height) = drawing.dimensions();
        assert!(width.max(height) <= 2048 && width.min(height) >= 1);
    }
});
