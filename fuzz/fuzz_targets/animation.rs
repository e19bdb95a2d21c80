//! Animations and icons on arbitrary bytes: telling an animation from a still (for GIF,
//! from its block structure without decoding), reading an icon's directory, and choosing
//! the frames (entries) to judge, under small limits. No panic, no more frames than asked for, every frame within the limits.
#![no_main]

use edge_moderation::media::decode::DecodeLimits;
use edge_moderation::media::frames;
use edge_moderation::media::ImageFormat;
use libfuzzer_sys::fuzz_target;

const LIMITS: DecodeLimits = DecodeLimits {
    max_pixels: 250_000,
    max_dimension: 1024,
    max_canvas_bytes: 4_000_000,
    reduce_jpeg: true,
};

fuzz_target!(|data: &[u8]| {
    for format in [
        ImageFormat::Gif,
        ImageFormat::Png,
        ImageFormat::WebP,
        ImageFormat::Ico,
    ] {
        if frames::judged_by_frames(data, format) {
            if let Ok(chosen) = frames::judged_frames(data, format, LIMITS, 4) {
                assert!(chosen.len() <= 4);
                for frame in chosen {
                    let pixels = u64::from(frame.image.width()) * u64::from(frame.image.height());
                    assert!(pixels <= LIMITS.max_pixels);
                }
            }
        }
    }
});
