//! `multipart/x-mixed-replace` streams on arbitrary bytes: the boundary read from the
//! first line as a `Content-Type`, the rest split into the images its parts show. No
//! panic; every image found lies within the body; an accepted boundary is never empty.
#![no_main]

use edge_moderation::media::mixed_replace::{self, PartImage};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let (head, body) = data.split_at(split);
    let Ok(content_type) = std::str::from_utf8(head) else {
        return;
    };
    let Some(Ok(boundary)) = mixed_replace::boundary(content_type) else {
        return;
    };
    assert!(!boundary.is_empty());
    let range = body.as_ptr_range();
    for image in mixed_replace::images(body, &boundary) {
        if let PartImage::Raster(_, bytes) | PartImage::Svg(bytes) = image {
            let inner = bytes.as_ptr_range();
            assert!(range.start <= inner.start && inner.end <= range.end);
        }
    }
});
