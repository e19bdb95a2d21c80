//! The JPEG XL decoder (jxl-oxide behind our header checks and limits) on arbitrary input:
//! no panic, and a decoded image has the size its header declares. Small limits keep each
//! run fast; the header checks before them are what a large declared canvas meets.
//!
//! Decoded in parts (`jxl_parts`: the top and bottom halves rendered apart, then
//! assembled), the image is the whole decode's, byte for byte, whenever both decode; and
//! the same input taken as a region's answer is refused or placed, never a panic.
#![no_main]

use edge_moderation::media::decode::jxl_parts::{self, Assembly, Region};
use edge_moderation::media::decode::{
    decode_reduced, decode_resumable, declared_jxl_size, DecodeLimits, Decoding,
};
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
    let whole = decode_reduced(data, ImageFormat::JpegXl, LIMITS);
    if let Ok(decoded) = &whole {
        assert_eq!(declared, Ok((decoded.width, decoded.height)));
        assert_eq!(
            (decoded.image.width(), decoded.image.height()),
            (decoded.width, decoded.height)
        );
    }
    let Ok(layout) = jxl_parts::layout(data, LIMITS) else {
        return;
    };
    let full = Region {
        left: 0,
        top: 0,
        width: layout.width,
        height: layout.height,
    };
    let _ = Assembly::new(layout).place(full, data);
    let half = layout.height / 2;
    let regions = match half {
        0 => vec![full],
        _ => vec![
            Region { height: half, ..full },
            Region { top: half, height: layout.height - half, ..full },
        ],
    };
    let mut assembly = Assembly::new(layout);
    for &region in &regions {
        if assembly.place(region, &jxl_parts::decode_region(data, LIMITS, region)).is_err() {
            return;
        }
    }
    let state = assembly.finish().expect("the halves cover the image");
    let parts = decode_resumable(data, ImageFormat::JpegXl, LIMITS, Some(&state), &mut |_| false);
    if let (Ok(decoded), Ok(Decoding::Done(assembled))) = (&whole, parts) {
        assert!(decoded.image.as_bytes() == assembled.image.as_bytes());
    }
});
