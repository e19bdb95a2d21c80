//! PDQ and its lists on arbitrary bytes: a stored list (text or packed) parses or is
//! refused, a parsed list packs and parses back to itself, matching never panics; PDQ of
//! arbitrary pixels at arbitrary small sizes is defined.
#![no_main]

use edge_moderation::media::pdq;
use edge_moderation::moderation::known::{KnownList, KnownLists, Probe};
use libfuzzer_sys::fuzz_target;
use std::sync::Arc;

fuzz_target!(|data: &[u8]| {
    if let Ok(list) = KnownList::parse(data) {
        let packed = list.pack();
        assert_eq!(KnownList::parse(&packed).as_ref(), Ok(&list));
        let lists = KnownLists {
            deny: Some(Arc::new(list)),
            max_distance: 31,
            ..KnownLists::none()
        };
        let mut hash = [0u8; 32];
        for (h, d) in hash.iter_mut().zip(data.iter().rev()) {
            *h = *d;
        }
        let probe = Probe {
            hashes: vec![pdq::PdqHash(hash)],
            quality: 100,
        };
        let _ = lists.decide(&[probe]);
    }
    if let [w, h, pixels @ ..] = data {
        let (width, height) = (usize::from(*w % 40), usize::from(*h % 40));
        let _ = pdq::hash_rgb(pixels, width, height);
        let _ = pdq::hash_rgb_dihedral(pixels, width, height);
    }
});
