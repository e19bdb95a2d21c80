//! The AVIF container (mp4parse) and the AV1 sequence header the size is read from, on
//! arbitrary input: no panic, and a declared size is never zero. The frame decode itself
//! is not fuzzed here: rav1d 1.1 aborts on damaged tile data (memorysafety/rav1d#1497),
//! which is why only sibling instances decode AVIF (src/edge/model.rs).
#![no_main]

use edge_moderation::media::decode::declared_avif_size;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((width, height)) = declared_avif_size(data) {
        assert!(width > 0 && height > 0);
    }
});
