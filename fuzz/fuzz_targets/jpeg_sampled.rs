//! The sampled JPEG decoder on arbitrary bytes: no panic, nothing allocated for a size
//! the plan refused (over 65,536 pixels here, to keep runs fast; the service refuses
//! what its limits do), and the pixels come out with exactly the rows and columns asked.
#![no_main]

use edge_moderation::classifier::preprocess::read_positions;
use edge_moderation::media::jpeg::{decode_sampled, Plan};
use libfuzzer_sys::fuzz_target;

const MAX_PIXELS: u64 = 1 << 16;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the preview scale; the rest is the file.
    let Some((&choice, bytes)) = data.split_first() else {
        return;
    };
    let preview_per_block = [1, 2, 4][usize::from(choice % 3)];
    let mut asked = (0, 0);
    let result = decode_sampled(bytes, |width, height| {
        if u64::from(width) * u64::from(height) > MAX_PIXELS {
            return None;
        }
        // nsfwjs's positions, or every row and column when the second choice bit says so.
        let (rows, columns) = if choice & 0x80 != 0 {
            ((0..height).collect(), (0..width).collect())
        } else {
            (
                read_positions(height as usize),
                read_positions(width as usize),
            )
        };
        asked = (columns.len() as u32, rows.len() as u32);
        Some(Plan {
            rows,
            columns,
            preview_per_block,
        })
    });
    if let Ok(sampled) = result {
        assert_eq!((sampled.pixels.width(), sampled.pixels.height()), asked);
        assert!(u64::from(sampled.width) * u64::from(sampled.height) <= MAX_PIXELS);
    }
});
