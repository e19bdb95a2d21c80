//! The AVIF decoder (rav1d through `media::decode`) against libavif's decode of the same
//! files through Pillow (`tests/reference/avif_reference.py`): 4:2:0, 4:2:2, 4:4:4 and
//! 4:0:0, full and limited range, with alpha, at odd sizes, and rotated or mirrored by
//! `irot`/`imir` as browsers show them. The AV1 planes are the same (both are dav1d); the
//! YUV-to-RGB conversion and chroma upsampling are ours, so pixels may differ by a few
//! levels (more on pure noise), and the model's scores by far less than the 0.02.

mod support;

use edge_moderation::media::ImageFormat;
use support::reference::{assert_decodes_as_reference, Tolerance};

#[test]
fn avif_stills_decode_as_libavif_shows_them() {
    // Photos and drawings come within 6 levels; random noise, where every chroma sample
    // differs from its neighbours, within 17 (libyuv's chroma upsampling filter is not ours).
    let tolerance = Tolerance {
        max_levels: 20,
        mean_levels: 0.75,
    };
    assert_decodes_as_reference(
        "avif_reference.py",
        "Pillow with libavif",
        ImageFormat::Avif,
        tolerance,
        40,
    );
}
