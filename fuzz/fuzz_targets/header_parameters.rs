//! Header parameter parsing (`Content-Type`, `Content-Disposition`) and the boundary a
//! `Content-Type` declares, on arbitrary text: no panic, and a boundary that is accepted
//! is one the splitter can use.
#![no_main]

use edge_moderation::media::content_type;
use edge_moderation::upload::multipart;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = content_type::parameters(text);
    let _ = content_type::essence(text);
    if let Ok(Some(boundary)) = multipart::boundary(text) {
        assert!(!boundary.is_empty() && boundary.len() <= 70);
        assert!(content_type::essence(text).starts_with("multipart/"));
    }
});
