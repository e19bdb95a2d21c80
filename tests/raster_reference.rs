//! The still-image decoders browsers' formats reach (image-rs's BMP, ICO and TIFF, through
//! the service's decode path) against Pillow's decode of the same files
//! (`tests/reference/raster_reference.py`): BMP 24-bit, 32-bit with alpha, 8-bit palette
//! and 1-bit; ICO with PNG and with BMP entries (the largest entry, as both pick it); TIFF
//! raw, LZW, deflate and PackBits, RGB, RGBA and grey. Every pixel must be identical, so
//! the model sees what the reference decoder shows.

mod support;

use edge_moderation::media::decode::decode_reduced;
use edge_moderation::media::ImageFormat;
use support::reference::{reference_files, ReferenceFile, LIMITS};

#[test]
fn still_formats_decode_as_pillow_decodes_them() {
    let dir = std::env::temp_dir().join(format!("edge-moderation-raster-{}", std::process::id()));
    let sources = support::repo().join("models/fidelity/images");
    support::run_reference("raster_reference.py", &[&sources, &dir], "Pillow");
    let files = reference_files(&dir);
    let mut failures = Vec::new();
    let mut formats = std::collections::BTreeMap::<&str, usize>::new();
    for ReferenceFile {
        name,
        width,
        height,
        rgba: expected,
    } in &files
    {
        let (width, height) = (*width, *height);
        let (ext, format) = [
            ("bmp", ImageFormat::Bmp),
            ("ico", ImageFormat::Ico),
            ("tiff", ImageFormat::Tiff),
        ]
        .into_iter()
        .find(|(ext, _)| dir.join(format!("{name}.{ext}")).exists())
        .expect("the encoded file");
        let bytes = std::fs::read(dir.join(format!("{name}.{ext}"))).unwrap();
        assert_eq!(
            ImageFormat::sniff(&bytes),
            Some(format),
            "{name} is sniffed"
        );
        match decode_reduced(&bytes, format, LIMITS) {
            Ok(decoded) => {
                let ours = decoded.image.to_rgba8();
                if ours.dimensions() != (width, height) {
                    failures.push(format!(
                        "{name}: {:?} vs {width}x{height}",
                        ours.dimensions()
                    ));
                } else if ours.as_raw() != expected {
                    let differ = ours
                        .as_raw()
                        .chunks(4)
                        .zip(expected.chunks(4))
                        .filter(|(a, b)| a != b)
                        .count();
                    failures.push(format!("{name}: {differ} pixels differ"));
                }
            }
            Err(e) => failures.push(format!("{name}: {e}")),
        }
        *formats.entry(ext).or_default() += 1;
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(files.len() >= 40, "only {} references", files.len());
    support::assert_all_agree(&failures, files.len());
    eprintln!("{formats:?} files decoded identically to Pillow");
}
