//! The JPEG XL decoder (jxl-oxide through `media::decode`) against libjxl's decode of the
//! same files through Pillow's pillow-jxl-plugin (`tests/reference/jxl_reference.py`):
//! lossy (XYB) at several qualities and efforts, lossless, alpha, grey, the ISO-BMFF
//! container, odd sizes, and a JPEG recompressed into JPEG XL. Both decoders render in
//! float and round to 8 bits, so pixels may differ by a level or two (up to 9 on the
//! recompressed JPEG, whose chroma upsampling differs at sharp edges, mean 0.06), and the
//! model's scores by far less than the 0.02.

mod support;

use edge_moderation::media::ImageFormat;
use support::reference::{assert_decodes_as_reference, Tolerance};

#[test]
fn jpeg_xl_stills_decode_as_libjxl_shows_them() {
    let tolerance = Tolerance {
        max_levels: 12,
        mean_levels: 0.75,
    };
    assert_decodes_as_reference(
        "jxl_reference.py",
        "libjxl (pillow-jxl-plugin)",
        ImageFormat::JpegXl,
        tolerance,
        35,
    );
}
