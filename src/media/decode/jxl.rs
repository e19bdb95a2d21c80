//! JPEG XL stills: jxl-oxide (pure Rust, checked by its authors against libjxl's
//! conformance suite) on one thread, the image rendered in sRGB as a browser shows it,
//! its orientation applied.
//!
//! The image header is parsed first and its size checked against the limits before any
//! frame is decoded. jxl-oxide works in 32-bit float planes, several times the bytes of
//! the 8-bit canvas we keep, so the memory it may use is bounded twice: by the declared
//! size against [`WORKING_BYTES_PER_SAMPLE`] before decoding, and by its own allocation
//! tracker while it decodes. An animation is refused (`Unsupported`, the policy's
//! `on_undecodable`): frames after the first are not read here, and judging only the
//! first would let the rest through.

use super::{DecodeError, DecodeLimits};
use image::metadata::Orientation;
use image::{ColorType, ImageDecoder, ImageResult};
use jxl_oxide::{
    AllocTracker, CropInfo, EnumColourEncoding, InitializeResult, JxlImage, JxlThreadPool,
    PixelFormat, Render, RenderingIntent,
};
use jxl_render::ImageBuffer;

pub mod parts;

use parts::Region;

/// Bytes jxl-oxide's planes take per sample of the canvas (f32), with room for the
/// decoder's own grids beside them: a canvas whose working memory would pass
/// `max_canvas_bytes` times this over 4 is refused before decoding.
const WORKING_BYTES_PER_SAMPLE: u64 = 8;

/// A decoded JPEG XL, served to the rest of the pipeline through image-rs's decoder trait.
pub(super) struct JxlDecoder {
    width: u32,
    height: u32,
    color: ColorType,
    pixels: Vec<u8>,
    /// The ICC profile the pixels are coded in, when jxl-oxide left them so.
    icc: Option<Vec<u8>>,
}

/// The size a JPEG XL declares (as displayed, its orientation applied), read from its
/// header without decoding a frame.
pub fn declared_jxl_size(bytes: &[u8]) -> Result<(u32, u32), DecodeError> {
    // The header's own allocations (an ICC profile, a preview's table of contents) are small.
    let image = header(bytes, AllocTracker::with_limit(16 << 20))?;
    Ok((image.width(), image.height()))
}

/// The image with its header parsed and every frame's table of contents read (the
/// frames themselves are decoded when rendered).
fn header(bytes: &[u8], tracker: AllocTracker) -> Result<JxlImage, DecodeError> {
    let mut uninit = JxlImage::builder()
        .pool(JxlThreadPool::none())
        .alloc_tracker(tracker)
        .build_uninit();
    uninit.feed_bytes(bytes).map_err(corrupt)?;
    match uninit.try_init().map_err(corrupt)? {
        InitializeResult::Initialized(image) => Ok(image),
        InitializeResult::NeedMoreData(_) => {
            Err(DecodeError::Corrupt("JPEG XL header is truncated".into()))
        }
    }
}

fn corrupt(error: impl std::fmt::Display) -> DecodeError {
    DecodeError::Corrupt(format!("JPEG XL: {error}"))
}

/// A JPEG XL opened for rendering: its header checked against the limits, the colour
/// encoding it renders in requested.
struct Opened {
    image: JxlImage,
    width: u32,
    height: u32,
    format: PixelFormat,
    /// The ICC profile the pixels come out in, when jxl-oxide leaves them so.
    icc: Option<Vec<u8>>,
}

impl Opened {
    fn new(bytes: &[u8], limits: DecodeLimits) -> Result<Self, DecodeError> {
        let working = limits
            .max_canvas_bytes
            .saturating_mul(WORKING_BYTES_PER_SAMPLE)
            / 4;
        let tracker = AllocTracker::with_limit(usize::try_from(working).unwrap_or(usize::MAX));
        let mut image = header(bytes, tracker)?;
        let (width, height) = (image.width(), image.height());
        let format = image.pixel_format();
        let channels = format.channels() as u64;
        let pixels = u64::from(width) * u64::from(height);
        if width == 0 || height == 0 {
            return Err(DecodeError::Corrupt(format!("image is {width}x{height}")));
        }
        if pixels > limits.max_pixels
            || width.max(height) > limits.max_dimension
            || pixels * 4 > limits.max_canvas_bytes
            || pixels * channels * WORKING_BYTES_PER_SAMPLE > working
        {
            return Err(DecodeError::TooLarge { width, height });
        }
        if image.image_header().metadata.animation.is_some() {
            return Err(DecodeError::Unsupported(
                "animated JPEG XL (only stills are read)".into(),
            ));
        }
        if !image.is_loading_done() || image.num_loaded_keyframes() == 0 {
            return Err(DecodeError::Corrupt("JPEG XL is truncated".into()));
        }
        // What a browser shows: sRGB. jxl-oxide converts XYB-coded images (lossy, the
        // usual case) and CMYK itself; an image coded in another enumerated space is
        // converted too; one described only by an ICC profile comes out as coded, and the
        // profile goes with it, for `colour` to convert.
        let mut icc = None;
        if image.original_icc().is_none()
            || format.has_black()
            || image.image_header().metadata.xyb_encoded
        {
            image.request_color_encoding(EnumColourEncoding::srgb(RenderingIntent::Relative));
        } else {
            icc = image.original_icc().map(<[u8]>::to_vec);
        }
        Ok(Opened {
            image,
            width,
            height,
            format,
            icc,
        })
    }

    /// The colour type of `channels` interleaved 8-bit samples of this image.
    fn color_type(&self, channels: u32) -> Result<ColorType, DecodeError> {
        Ok(match (channels, self.format) {
            (1, _) => ColorType::L8,
            (2, _) => ColorType::La8,
            (3, _) => ColorType::Rgb8,
            (4, f) if f.has_alpha() && !f.has_black() => ColorType::Rgba8,
            (n, f) => {
                return Err(DecodeError::Unsupported(format!(
                    "JPEG XL with {n} channels ({f:?})"
                )))
            }
        })
    }

    /// Renders `region` of the displayed image (all of it when `None`): its samples,
    /// interleaved 8-bit, and how many channels they interleave.
    fn render(&mut self, region: Option<Region>) -> Result<(Vec<u8>, u32), DecodeError> {
        let (width, height) = match region {
            Some(region) => {
                if !region.within(self.width, self.height) {
                    return Err(DecodeError::Corrupt(format!(
                        "JPEG XL region {region:?} is outside its {}x{}",
                        self.width, self.height
                    )));
                }
                self.image.set_image_region(CropInfo {
                    width: region.width,
                    height: region.height,
                    left: region.left,
                    top: region.top,
                });
                (region.width, region.height)
            }
            None => (self.width, self.height),
        };
        let render = self.image.render_frame(0).map_err(corrupt)?;
        let mut stream = render.stream();
        let channels = stream.channels();
        self.color_type(channels)?;
        if (stream.width(), stream.height()) != (width, height) {
            return Err(DecodeError::Corrupt(format!(
                "JPEG XL rendered {}x{}, {width}x{height} asked",
                stream.width(),
                stream.height()
            )));
        }
        let samples = u64::from(width) * u64::from(height) * u64::from(channels);
        let mut pixels = vec![0u8; samples as usize];
        if region.is_some() || !write_upright_planes(&self.image, &render, &mut pixels) {
            stream.write_to_buffer(&mut pixels);
        }
        Ok((pixels, channels))
    }
}

impl JxlDecoder {
    pub(super) fn new(bytes: &[u8], limits: DecodeLimits) -> Result<Self, DecodeError> {
        let mut opened = Opened::new(bytes, limits)?;
        let (pixels, channels) = opened.render(None)?;
        Ok(Self {
            width: opened.width,
            height: opened.height,
            color: opened.color_type(channels)?,
            pixels,
            icc: opened.icc,
        })
    }

    /// The image as assembled from its regions decoded apart (`state`, a
    /// [`parts::Assembly`]'s bytes), checked against the header of `bytes`.
    pub(super) fn assembled(
        bytes: &[u8],
        limits: DecodeLimits,
        state: &[u8],
    ) -> Result<Self, DecodeError> {
        let opened = Opened::new(bytes, limits)?;
        let assembly = parts::Assembled::parse(state)?;
        if (assembly.width, assembly.height) != (opened.width, opened.height) {
            return Err(DecodeError::Corrupt(format!(
                "JPEG XL assembled at {}x{}, its header says {}x{}",
                assembly.width, assembly.height, opened.width, opened.height
            )));
        }
        Ok(Self {
            width: opened.width,
            height: opened.height,
            color: opened.color_type(assembly.channels)?,
            pixels: assembly.pixels.to_vec(),
            icc: opened.icc,
        })
    }
}

/// Writes the render's samples into `out` (interleaved 8-bit, the channels jxl-oxide's
/// `Render::stream` gives) a row at a time, when the render is the plain case: the whole
/// image, upright, one full-size frame at the origin, float planes (lossy, the usual
/// case), and no black or spot colour channel. Returns false, having written nothing,
/// otherwise.
///
/// Why: the stream maps every sample through orientation, region offsets and spot
/// colours, ~a fifth of a whole decode. In the plain case each of those is the identity,
/// and the rounding below is the stream's own for float planes (whatever the bit depth),
/// so the bytes are the same: a test holds this to the stream on every JPEG XL we have.
/// (A region's planes start where jxl-render's padding for its filters puts them, which
/// it does not expose: a region is written by the stream.)
fn write_upright_planes(image: &JxlImage, render: &Render, out: &mut [u8]) -> bool {
    let (width, height) = (image.width() as usize, image.height() as usize);
    let full_frame = image
        .frame_header(render.keyframe_index())
        .is_some_and(|frame| {
            frame.x0 == 0
                && frame.y0 == 0
                && frame.width as usize == width
                && frame.height as usize == height
        });
    let (extra, extra_planes) = render.extra_channels();
    let mixes_in = extra.iter().any(|channel| {
        channel.is_black() || (channel.is_spot_colour() && image.render_spot_color())
    });
    if render.orientation() != 1 || !full_frame || mixes_in {
        return false;
    }
    // The stream's channels: colour, then the first alpha channel.
    let alpha = extra
        .iter()
        .zip(extra_planes)
        .find(|(channel, _)| channel.is_alpha())
        .map(|(_, plane)| plane);
    let planes: Option<Vec<_>> = render
        .color_channels()
        .iter()
        .chain(alpha)
        .map(|plane| match plane {
            ImageBuffer::F32(grid) if grid.width() == width && grid.height() == height => {
                Some(grid)
            }
            _ => None,
        })
        .collect();
    let Some(planes) = planes else {
        return false;
    };
    let channels = planes.len();
    if channels == 0 || out.len() != width * height * channels {
        return false;
    }
    let mut rows: Vec<&[f32]> = Vec::with_capacity(channels);
    for (y, out_row) in out.chunks_exact_mut(width * channels).enumerate() {
        rows.clear();
        rows.extend(planes.iter().map(|grid| &grid.get_row(y)[..width]));
        write_row(&rows, out_row);
    }
    true
}

/// One row of pixels, the planes' samples interleaved, each rounded as the stream rounds
/// float samples to 8 bits.
fn write_row(rows: &[&[f32]], out: &mut [u8]) {
    let channels = rows.len();
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    let done = simd::write_row(rows, out);
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    let done = 0;
    for (c, row) in rows.iter().enumerate() {
        let samples = out[done * channels..].iter_mut().skip(c).step_by(channels);
        for (sample, &value) in samples.zip(&row[done.min(row.len())..]) {
            *sample = to_byte(value);
        }
    }
}

/// The stream's rounding of a float sample (0 to 1) to 8 bits: half up, clamped, a NaN
/// to 0.
fn to_byte(value: f32) -> u8 {
    (value * 255.0 + 0.5).clamp(0.0, 255.0) as u8
}

/// [`write_row`] for three or four channels, sixteen pixels at a time, each lane as
/// [`to_byte`] computes it (the clamp as `pmax` then `pmin`, which keep a NaN as
/// `f32::clamp` does; the saturating conversion makes it 0, as `as u8` does).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd {
    use super::super::simd::{interleave3, interleave4, pack, store};
    use std::arch::wasm32::*;

    /// Writes the row's first pixels, a multiple of sixteen; returns how many.
    pub(super) fn write_row(rows: &[&[f32]], out: &mut [u8]) -> usize {
        let channels = rows.len();
        let n = rows.iter().map(|r| r.len()).min().unwrap_or(0);
        if !(channels == 3 || channels == 4) || out.len() < n * channels {
            return 0;
        }
        let bytes = |row: &[f32], x: usize| {
            pack(std::array::from_fn(|quarter| {
                let values = &row[x + 4 * quarter..][..4];
                // SAFETY: `values` holds four floats; `v128_load` needs no alignment.
                let v = unsafe { v128_load(values.as_ptr() as *const v128) };
                let v = f32x4_add(f32x4_mul(v, f32x4_splat(255.0)), f32x4_splat(0.5));
                let v = f32x4_pmin(f32x4_pmax(v, f32x4_splat(0.0)), f32x4_splat(255.0));
                i32x4_trunc_sat_f32x4(v)
            }))
        };
        let mut x = 0;
        while x + 16 <= n {
            if channels == 3 {
                let pixels = interleave3(std::array::from_fn(|c| bytes(rows[c], x)));
                store(out, 3 * x, &pixels);
            } else {
                let pixels = interleave4(std::array::from_fn(|c| bytes(rows[c], x)));
                store(out, 4 * x, &pixels);
            }
            x += 16;
        }
        x
    }
}

impl ImageDecoder for JxlDecoder {
    fn dimensions(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    fn color_type(&self) -> ColorType {
        self.color
    }

    /// Already applied: jxl-oxide renders the image as oriented.
    fn orientation(&mut self) -> ImageResult<Orientation> {
        Ok(Orientation::NoTransforms)
    }

    fn icc_profile(&mut self) -> ImageResult<Option<Vec<u8>>> {
        Ok(self.icc.clone())
    }

    fn read_image(self, buf: &mut [u8]) -> ImageResult<()> {
        buf.copy_from_slice(&self.pixels);
        Ok(())
    }

    fn read_image_boxed(self: Box<Self>, buf: &mut [u8]) -> ImageResult<()> {
        (*self).read_image(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every JPEG XL in the tree (the fuzz seeds: libjxl's encodes of several images at
    /// several settings, lossless, alpha, grey, containers, orientations; and the test
    /// fixtures), rendered as `JxlDecoder::new` renders it.
    fn renders() -> Vec<(String, JxlImage)> {
        let dirs = ["fuzz/corpus/jxl", "tests/fixtures", "bench/out/inputs"];
        let mut found = Vec::new();
        for dir in dirs {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
            let Ok(entries) = std::fs::read_dir(&path) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.path();
                if name.extension().is_some_and(|e| e == "jxl") {
                    let bytes = std::fs::read(&name).expect("readable");
                    let tracker = AllocTracker::with_limit(1 << 30);
                    if let Ok(mut image) = header(&bytes, tracker) {
                        if image.is_loading_done() && image.num_loaded_keyframes() > 0 {
                            image.request_color_encoding(EnumColourEncoding::srgb(
                                RenderingIntent::Relative,
                            ));
                            found.push((name.display().to_string(), image));
                        }
                    }
                }
            }
        }
        found
    }

    /// The row writer (simd128 in Wasm) against the per-sample rounding, on values across
    /// the range and past it, half-way points, infinities and NaN, for one to four
    /// channels and widths around the sixteen pixels a vector round takes.
    #[test]
    fn rows_are_written_as_each_sample_rounds() {
        let mut next = crate::media::decode::test_noise(0x2545_f491_4f6c_dd1d);
        let special = [
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            -0.0,
            0.0,
            1.0,
            -1e-9,
        ];
        for channels in 1..=4 {
            for width in [0, 1, 15, 16, 17, 33, 64, 100] {
                let rows: Vec<Vec<f32>> = (0..channels)
                    .map(|_| {
                        (0..width)
                            .map(|_| match next() % 4 {
                                0 => special[next() as usize % special.len()],
                                1 => (next() % 512) as f32 / 510.0 - 0.5 / 255.0,
                                _ => (next() % 3_000_000) as f32 / 2_000_000.0 - 0.25,
                            })
                            .collect()
                    })
                    .collect();
                let rows: Vec<&[f32]> = rows.iter().map(Vec::as_slice).collect();
                let mut written = vec![7u8; width * channels];
                write_row(&rows, &mut written);
                let expected: Vec<u8> = (0..width * channels)
                    .map(|i| to_byte(rows[i % channels][i / channels]))
                    .collect();
                assert_eq!(written, expected, "{channels} channels, width {width}");
            }
        }
    }

    #[test]
    fn upright_planes_are_written_as_the_stream_writes_them() {
        let mut plain = 0;
        let all = renders();
        assert!(all.len() >= 60, "only {} JPEG XL files found", all.len());
        for (name, image) in &all {
            let Ok(render) = image.render_frame(0) else {
                continue;
            };
            let mut stream = render.stream();
            let size = (stream.width() * stream.height() * stream.channels()) as usize;
            let (mut fast, mut slow) = (vec![0u8; size], vec![0u8; size]);
            stream.write_to_buffer(&mut slow);
            if write_upright_planes(image, &render, &mut fast) {
                plain += 1;
                assert!(fast == slow, "{name}: the row copy differs from the stream");
            }
        }
        // The lossy photos at least take the row copy.
        assert!(
            plain >= 20,
            "only {plain} of {} took the row copy",
            all.len()
        );
    }
}
