//! The JPEG XL decoder (jxl-oxide behind our header checks and limits) on arbitrary input:
//! no panic, and a decoded image has the size its header declares. Small limits keep each
//! run fast; the header checks before them are what a large declared canvas meets.
#![no_main]

use edge_moderation::media::decode::{declared_jxl_size, decode_reduced, DecodeLimits};
use edge_moderation::media::ImageFormat;
use libfuzzer_sys::fuzz_target;

const LIMITS: DecodeLimits = DecodeLimits {
    max_pixels: 256 * 256,
    max_dimension: 1024,
    max_canvas_bytes: 256 * 256 * 4,
    reduce_jpeg: true,
};

fuzz_target!(|data: &[u8]| {
    let declared = declared_jxl_size(data);
    if let Ok(decoded) = decode_reduced(data, ImageFormat::JpegXl, LIMITS) {
        assert_eq!(declared, Ok((decoded.width, decoded.height)));
        assert_eq!(
            (decoded.image.width(), decoded.image.height()),
            (decoded.width, decoded.height)
        );
    }
});
