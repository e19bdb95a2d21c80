//! Content codings and format sniffing on arbitrary bytes: the `Content-Encoding` value
//! parses or is refused, every coding decodes or is refused within its output bound, and a
//! decoded prefix is a prefix of the whole decode.
#![no_main]

use edge_moderation::media::content_encoding::{self, Coding};
use edge_moderation::media::format::{unreadable_image, ImageFormat};
use libfuzzer_sys::fuzz_target;

const LIMIT: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    if let Ok(header) = std::str::from_utf8(body) {
        let _ = content_encoding::parse(header);
    }
    let _ = ImageFormat::sniff(body);
    let _ = unreadable_image(body);
    let all = [Coding::Gzip, Coding::Deflate, Coding::Brotli, Coding::Zstd];
    let mut codings = vec![all[usize::from(selector % 4)]];
    if selector & 0x10 != 0 {
        codings.push(all[usize::from((selector >> 2) % 4)]);
    }
    match content_encoding::decode(body, &codings, LIMIT) {
        Ok(decoded) => {
            assert!(decoded.len() <= LIMIT);
            let head = content_encoding::decoded_prefix(body, &codings, 12);
            assert!(
                decoded.starts_with(&head),
                "prefix differs from the whole decode"
            );
        }
        Err(_) => {
            let _ = content_encoding::decoded_prefix(body, &codings, 12);
        }
    }
});
