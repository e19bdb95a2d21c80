//! SVG embedded-image extraction on arbitrary documents: no panic, and never more than
//! the bounded number of images.
#![no_main]

use edge_moderation::media::svg;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(found) = svg::embedded_images(data) {
        assert!(found.len() <= svg::MAX_EMBEDDED);
    }
});
