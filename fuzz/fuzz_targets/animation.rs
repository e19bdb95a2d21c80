//! Animations and icons on arbitrary bytes: telling an animation from a still (for GIF,
//! from its block structure without decoding), reading an icon's directory, and choosing
//! the frames (entries) to judge, under small limits. No panic, no more frames than asked for, every frame within the limits.
//! A GIF within the limits is also read by `media::gif` and by image-rs's reader: the
//! same frames, delays, and first error, and the same pixels but where an index beyond
//! the palette is black here. A GIF is also read as a chain of instances would, each
//! stopping as soon as it may and the next resuming (with the bytes it never reads
//! zeroed): the same frames as one reading, or the same error.
#![no_main]

use edge_moderation::media::decode::DecodeLimits;
use edge_moderation::media::frames;
use edge_moderation::media::gif::GifFrames;
use edge_moderation::media::ImageFormat;
use image::AnimationDecoder;
use libfuzzer_sys::fuzz_target;

const LIMITS: DecodeLimits = DecodeLimits {
    max_pixels: 250_000,
    max_dimension: 1024,
    max_canvas_bytes: 4_000_000,
    reduce_jpeg: true,
};

/// At most this many frames are compared (each a canvas-sized buffer in both readers).
const COMPARED_FRAMES: usize = 16;

/// Each frame's pixels and delay in ms until the first error, and whether one came.
fn read(frames: impl Iterator<Item = image::ImageResult<image::Frame>>) -> (Vec<(Vec<u8>, u32)>, bool) {
    let mut read = Vec::new();
    for frame in frames.take(COMPARED_FRAMES) {
        match frame {
            Ok(frame) => {
                let (numerator, denominator) = frame.delay().numer_denom_ms();
                read.push((frame.into_buffer().into_raw(), numerator / denominator.max(1)));
            }
            Err(_) => return (read, true),
        }
    }
    (read, false)
}

fn same_gif_frames(data: &[u8]) {
    // A first frame past the screen grows the canvas (as in a browser) where image-rs
    // clips it: compared only where the two agree on the canvas.
    let scan = frames::gif_scan(data, usize::MAX);
    if scan.canvas != scan.screen || frames::check_gif_frames(data, LIMITS).is_err() {
        return;
    }
    let Ok(ours) = GifFrames::new(data, LIMITS) else {
        assert!(image::codecs::gif::GifDecoder::new(std::io::Cursor::new(data)).is_err());
        return;
    };
    let Ok(reference) = image::codecs::gif::GifDecoder::new(std::io::Cursor::new(data)) else {
        panic!("image-rs refused a GIF media::gif opened");
    };
    let ours = read(ours);
    let reference = read(reference.into_frames());
    // Damage can make the block scan and the decoder disagree on the first image.
    let size = |frames: &[(Vec<u8>, u32)]| frames.first().map(|frame| frame.0.len());
    if size(&ours.0) != size(&reference.0) {
        return;
    }
    assert_eq!(ours.0.len(), reference.0.len(), "frame count");
    for ((ours, ours_ms), (reference, reference_ms)) in ours.0.iter().zip(&reference.0) {
        assert_eq!(ours_ms, reference_ms, "delay");
        assert_eq!(ours.len(), reference.len(), "frame size");
        // Where they differ, an index beyond the palette: opaque black here, as
        // Chromium shows it, and what was under it in image-rs (and then kept so).
        for (ours, reference) in ours.chunks_exact(4).zip(reference.chunks_exact(4)) {
            assert!(ours == reference || ours == [0, 0, 0, 255], "frames differ");
        }
    }
    if ours.0.len() < COMPARED_FRAMES {
        assert_eq!(ours.1, reference.1, "an error in one reader only");
    }
}

/// The frames read in one go and read by a chain of readings stopping after every frame.
fn same_in_chain(data: &[u8]) {
    let whole = frames::judged_frames(data, ImageFormat::Gif, LIMITS, 4);
    let mut state: Option<Vec<u8>> = None;
    let chained = loop {
        let mut job = data.to_vec();
        if let Some(span) = state.as_deref().and_then(|s| frames::unread_span(data, s)) {
            job[span].fill(0);
        }
        let reading =
            frames::judged_frames_resumable(&job, ImageFormat::Gif, LIMITS, 4, state.as_deref(), &mut |_| true);
        match reading {
            Ok(frames::Reading::Suspended { state: next }) => state = Some(next),
            Ok(frames::Reading::Done(frames)) => break Ok(frames),
            Err(e) => break Err(e),
        }
    };
    match (whole, chained) {
        (Ok(whole), Ok(chained)) => {
            assert_eq!(whole.len(), chained.len(), "frames chosen");
            for (whole, chained) in whole.iter().zip(&chained) {
                assert_eq!(whole.index, chained.index, "frame chosen");
                assert!(whole.image == chained.image, "frame pixels");
            }
        }
        (Err(whole), Err(chained)) => assert_eq!(whole.to_string(), chained.to_string()),
        (whole, chained) => panic!("one reading failed: {:?} / {:?}", whole.err(), chained.err()),
    }
}

fuzz_target!(|data: &[u8]| {
    same_gif_frames(data);
    if frames::judged_by_frames(data, ImageFormat::Gif) {
        same_in_chain(data);
    }
    for format in [
        ImageFormat::Gif,
        ImageFormat::Png,
        ImageFormat::WebP,
        ImageFormat::Ico,
    ] {
        if frames::judged_by_frames(data, format) {
            if let Ok(chosen) = frames::judged_frames(data, format, LIMITS, 4) {
                assert!(chosen.len() <= 4);
                for frame in chosen {
                    let pixels = u64::from(frame.image.width()) * u64::from(frame.image.height());
                    assert!(pixels <= LIMITS.max_pixels);
                }
            }
        }
    }
});
