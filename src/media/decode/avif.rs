//! AVIF stills: the container read by mp4parse (Firefox's ISO-BMFF parser, which also
//! reports `irot`/`imir`), the AV1 image decoded by rav1d (dav1d in Rust, one thread, no
//! assembly), YUV turned into RGB as libavif does (the matrix and range the `colr` box's
//! `nclx` declares, else the AV1 sequence header's; chroma upsampled bilinearly), the alpha
//! item attached, and the colours brought to sRGB where the `nclx` (or the sequence header)
//! names other primaries or another transfer and no ICC profile does (`colour::cicp_shown`).
//!
//! The size is read from the AV1 sequence header and checked against the limits before a
//! frame is decoded; rav1d's own frame-size limit backs that up. Animated AVIF (an image
//! sequence, with or without a still item), grid collages and every other error are refused
//! with a reason, which gets the policy's `on_undecodable`.

use super::{colour, DecodeError, DecodeLimits};
use image::metadata::Orientation;
use image::{ColorType, ImageDecoder, ImageResult};
use mp4parse::{ImageMirror, ImageRotation, ParseStrictness};
use rav1d::include::dav1d::data::Dav1dData;
use rav1d::include::dav1d::dav1d::{Dav1dContext, Dav1dSettings};
use rav1d::include::dav1d::headers::{
    Dav1dSequenceHeader, DAV1D_MC_BT2020_CL, DAV1D_MC_BT2020_NCL, DAV1D_MC_BT601, DAV1D_MC_BT709,
    DAV1D_MC_CHROMAT_NCL, DAV1D_MC_IDENTITY, DAV1D_MC_SMPTE240, DAV1D_MC_SMPTE_YCGCO,
    DAV1D_MC_UNKNOWN, DAV1D_PIXEL_LAYOUT_I400, DAV1D_PIXEL_LAYOUT_I420, DAV1D_PIXEL_LAYOUT_I422,
};
use rav1d::include::dav1d::picture::Dav1dPicture;
use rav1d::src::lib as dav1d;
use std::mem::MaybeUninit;
use std::ptr::NonNull;

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd;

/// A decoded AVIF, served to the rest of the pipeline through image-rs's decoder trait.
pub(super) struct AvifDecoder {
    width: u32,
    height: u32,
    /// RGB8, or RGBA8 when the file has an alpha item.
    pixels: Vec<u8>,
    alpha: bool,
    orientation: Orientation,
    /// The ICC profile of the `colr` box, which the pixels are coded in.
    icc: Option<Vec<u8>>,
    /// The pixels as Firefox shows them, where its YUV matrix differs from Chromium's.
    firefox: Option<Vec<u8>>,
}

/// A `colr` box's `nclx` code points (ITU-T H.273), laid out as mp4parse's
/// `NclxColourInformation`, which is `repr(C)` for its C API and whose fields are private:
/// read through its pointer (a unit test checks the reading against a known file).
#[repr(C)]
struct Nclx {
    primaries: u8,
    transfer: u8,
    matrix: u8,
    full_range: bool,
}

/// The `nclx` of the primary item, if it has one that mp4parse could read.
fn nclx(context: &mp4parse::AvifContext) -> Option<&Nclx> {
    let pointer = context.nclx_colour_information_ptr()?.ok()?;
    // SAFETY: mp4parse returns a pointer into `context` (alive as long as the borrow) to a
    // `repr(C)` struct of three `u8` and a `bool`, which `Nclx` mirrors field for field.
    unsafe { pointer.cast::<Nclx>().as_ref() }
}

/// The size an AVIF declares (its container, then its AV1 sequence header), read without
/// decoding a frame: what is checked against the limits first.
pub fn declared_avif_size(bytes: &[u8]) -> Result<(u32, u32), DecodeError> {
    let context = container(bytes)?;
    declared_size(still(&context)?)
}

fn container(bytes: &[u8]) -> Result<mp4parse::AvifContext, DecodeError> {
    boxes_fit(bytes).map_err(|why| DecodeError::Corrupt(format!("AVIF container: {why}")))?;
    if plays_a_sequence(bytes) {
        return Err(DecodeError::Unsupported(
            "animated AVIF (an image sequence): its frames are not judged".into(),
        ));
    }
    mp4parse::read_avif(&mut &bytes[..], ParseStrictness::Normal)
        .map_err(|e| DecodeError::Corrupt(format!("AVIF container: {e:?}")))
}

/// Whether a browser may play the file's image sequence (a track in its `moov` box) rather
/// than show its still item: Chromium (libavif) plays it when the major brand is `avis`, or
/// is not `avif` and a track is present, and Firefox plays sequences too. libavif writes an
/// animation's first frame as the still item as well (Pillow's animated AVIF: major brand
/// `avis`, a still and a track), so judging the still would judge the first frame only —
/// the benign-first-frame trick. Frames of a sequence are not decoded here (AV1 inter
/// frames decode in order, beyond one instance's budget), so such a file is refused, which
/// gets the policy's `on_undecodable`, whatever its brands.
fn plays_a_sequence(bytes: &[u8]) -> bool {
    if bytes.get(4..12) == Some(b"ftypavis") {
        return true;
    }
    let mut at = 0;
    while let Ok((kind, _, end)) = box_at(bytes, at) {
        if &kind == b"moov" {
            return true;
        }
        at = end;
    }
    false
}

/// Whether every box ends within what holds it, and holds the entries it declares (see
/// [`entries_fit`]): the file's top-level boxes, and the
/// children of each container box mp4parse descends into. mp4parse reserves what a box
/// declares before reading it: fallibly, but a 56-byte file declaring a 2.9 GB `ftyp`
/// would still have it ask for 2.9 GB, and an `ipma` inside `iprp` declaring 4.3 GB for
/// 16 GB (both found by the `avif_container` fuzz target).
fn boxes_fit(bytes: &[u8]) -> Result<(), &'static str> {
    children_fit(bytes, 0)
}

/// Most container boxes checked inside each other (AVIF's nest four deep).
const MAX_BOX_DEPTH: usize = 8;

const PAST_THE_END: &str = "a box runs past the end of the box or file holding it";

/// The box starting at `at`: its type, where its body starts and where it ends.
fn box_at(bytes: &[u8], at: usize) -> Result<([u8; 4], usize, usize), &'static str> {
    let Some(&[a, b, c, d, t0, t1, t2, t3]) = bytes.get(at..at + 8) else {
        return Err(PAST_THE_END);
    };
    let (size, header) = match u32::from_be_bytes([a, b, c, d]) {
        // The last box, to the end of what holds it.
        0 => ((bytes.len() - at) as u64, 8),
        // A 64-bit size follows the type.
        1 => match bytes.get(at + 8..at + 16) {
            Some(&[a, b, c, d, e, f, g, h]) => (u64::from_be_bytes([a, b, c, d, e, f, g, h]), 16),
            _ => return Err(PAST_THE_END),
        },
        size => (u64::from(size), 8),
    };
    if size < header || size > (bytes.len() - at) as u64 {
        return Err(PAST_THE_END);
    }
    Ok(([t0, t1, t2, t3], at + header as usize, at + size as usize))
}

fn children_fit(bytes: &[u8], depth: usize) -> Result<(), &'static str> {
    let mut at = 0usize;
    while at < bytes.len() {
        let (kind, start, end) = box_at(bytes, at)?;
        let body = &bytes[start..end];
        if !entries_fit(&kind, body) {
            return Err("a box declares more entries than its bytes hold");
        }
        // The boxes whose children are boxes, past their own fields: `meta` is a full box
        // (version and flags); `iinf` adds an entry count of 2 bytes (version 0) or 4.
        let children = match &kind {
            b"meta" => body.get(4..),
            b"iinf" => match body.first() {
                Some(0) => body.get(6..),
                Some(_) => body.get(8..),
                None => None,
            },
            b"iprp" | b"ipco" | b"dinf" | b"moov" | b"trak" | b"mdia" | b"minf" | b"stbl"
            | b"edts" => Some(body),
            _ => None,
        };
        if let Some(children) = children {
            if depth >= MAX_BOX_DEPTH {
                return Err("boxes nested too deep");
            }
            children_fit(children, depth + 1)?;
        }
        at = end;
    }
    Ok(())
}

/// Whether a box that declares a count of entries has the bytes for them: mp4parse reserves
/// room for the declared count before it reads an entry, so a 30-byte `iloc` declaring 218
/// million items had it ask for 11 GB (the `avif_container` fuzz target's third find). Each
/// arm gives where the count sits past the box's version and flags, its width, and the
/// fewest bytes one entry takes; `ipma`, `ftyp`, `iref` and `tref` size what they reserve
/// from the box itself or by a 16-bit count, and need no check.
fn entries_fit(kind: &[u8; 4], body: &[u8]) -> bool {
    let version = body.first().copied().unwrap_or(0);
    let (count_at, wide, entry_bytes) = match kind {
        // Field sizes (2 bytes), then the item count; an item is at least its ID, its data
        // reference and its extent count (2 bytes each).
        b"iloc" => (6, version == 2, 6),
        // Each entry is an `infe` box, at least a box header.
        b"iinf" => (4, version != 0, 8),
        b"stsd" => (4, true, 8),
        b"stts" | b"ctts" | b"co64" => (4, true, 8),
        b"stsc" => (4, true, 12),
        b"stco" | b"stss" => (4, true, 4),
        b"elst" => (4, true, if version == 1 { 20 } else { 12 }),
        // A sample size of zero means one size per sample follows.
        b"stsz" => match body.get(4..8) {
            Some([0, 0, 0, 0]) => (8, true, 4),
            _ => return true,
        },
        // Version 1 lists key IDs of 16 bytes after the 16-byte system ID.
        b"pssh" if version > 0 => (20, true, 16),
        _ => return true,
    };
    let count = match (wide, body.get(count_at..)) {
        (true, Some(&[a, b, c, d, ..])) => u64::from(u32::from_be_bytes([a, b, c, d])),
        (false, Some(&[a, b, ..])) => u64::from(u16::from_be_bytes([a, b])),
        // Too short to hold its count: mp4parse reports that itself.
        _ => return true,
    };
    count * entry_bytes <= body.len() as u64
}

/// The coded still image (its primary item).
fn still(context: &mp4parse::AvifContext) -> Result<&[u8], DecodeError> {
    context
        .primary_item_coded_data()
        .ok_or_else(|| DecodeError::Unsupported("AVIF without a still image".into()))
}

impl AvifDecoder {
    pub(super) fn new(bytes: &[u8], limits: DecodeLimits) -> Result<Self, DecodeError> {
        let context = container(bytes)?;
        let color = still(&context)?;
        let (width, height) = declared_size(color)?;
        limits.check_rgba(width, height)?;
        let mut planes = Frame::decode(color, limits)?;
        // Checked in Chromium 156 and Firefox ESR 153 (libavif's rule): the `nclx`'s matrix,
        // range, primaries and transfer stand over the sequence header's.
        if let Some(nclx) = nclx(&context) {
            planes.matrix = u32::from(nclx.matrix);
            planes.full_range = nclx.full_range;
            planes.cicp = Some((nclx.primaries, nclx.transfer));
        }
        if (planes.width, planes.height) != (width, height) {
            return Err(DecodeError::Corrupt(format!(
                "AV1 frame is {}x{}, its sequence header {width}x{height}",
                planes.width, planes.height
            )));
        }
        let alpha = match context.alpha_item_coded_data() {
            Some(data) => Some(Frame::decode(data, limits)?),
            None => None,
        };
        if let Some(alpha) = &alpha {
            if (alpha.width, alpha.height) != (width, height) {
                return Err(DecodeError::Corrupt("AVIF alpha differs in size".into()));
            }
        }
        let channels = if alpha.is_some() { 4 } else { 3 };
        let rgb = |planes: &Frame| {
            let mut pixels = vec![0u8; width as usize * height as usize * channels];
            planes.to_rgb(&mut pixels, channels);
            if let Some(alpha) = &alpha {
                alpha.to_alpha(&mut pixels, context.premultiplied_alpha);
            }
            pixels
        };
        let mut pixels = rgb(&planes);
        // Where Firefox ESR 153 reads the matrix otherwise than Chromium 156 (checked on
        // flat colours): "unspecified" as BT.709, SMPTE 240M and YCgCo as BT.601.
        let firefox_matrix = match planes.matrix {
            DAV1D_MC_UNKNOWN => Some(DAV1D_MC_BT709),
            DAV1D_MC_SMPTE240 | DAV1D_MC_SMPTE_YCGCO => Some(DAV1D_MC_BT601),
            _ => None,
        };
        let mut firefox = None;
        if let (Some(matrix), false) = (firefox_matrix, planes.chroma[0].is_empty()) {
            planes.matrix = matrix;
            firefox = Some(rgb(&planes));
        }
        let rotation = context
            .image_rotation()
            .map_err(|e| DecodeError::Corrupt(format!("AVIF irot: {e:?}")))?;
        let mirror = context
            .image_mirror_ptr()
            .map_err(|e| DecodeError::Corrupt(format!("AVIF imir: {e:?}")))?;
        // SAFETY: mp4parse returns null or a pointer into `context`, which is alive here.
        let mirror = unsafe { mirror.as_ref() };
        // An unreadable `colr` is ignored, as browsers ignore it: shown as coded.
        let icc = context
            .icc_colour_information()
            .and_then(Result::ok)
            .map(<[u8]>::to_vec);
        // An ICC profile describes the colours where there is one (converted downstream,
        // as every format's); the code points otherwise, converted here.
        if icc.is_none() {
            let to_srgb = planes
                .cicp
                .and_then(|(primaries, transfer)| colour::cicp_shown(primaries, transfer))
                .as_ref()
                .and_then(colour::ToSrgb::new);
            if let Some(to_srgb) = to_srgb {
                pixels = to_srgb.shown_bytes(pixels, width, height, alpha.is_some());
                firefox = firefox.map(|f| to_srgb.shown_bytes(f, width, height, alpha.is_some()));
            }
        }
        Ok(Self {
            width,
            height,
            pixels,
            alpha: alpha.is_some(),
            orientation: orientation(rotation, mirror),
            icc,
            firefox,
        })
    }
}

impl AvifDecoder {
    /// The image as Firefox shows it, where it differs from the one decoded (which is
    /// Chromium's): oriented and colour-managed as that one is, by the caller.
    pub(super) fn take_firefox(&mut self) -> Option<image::DynamicImage> {
        let pixels = self.firefox.take()?;
        match self.alpha {
            true => image::RgbaImage::from_raw(self.width, self.height, pixels).map(Into::into),
            false => image::RgbImage::from_raw(self.width, self.height, pixels).map(Into::into),
        }
    }
}

/// HEIF's transformations, applied rotation first then mirror (MIAF's order), as one of
/// EXIF's eight orientations. `irot` turns anticlockwise; `imir` names the axis.
fn orientation(rotation: ImageRotation, mirror: Option<&ImageMirror>) -> Orientation {
    use Orientation::*;
    match (rotation, mirror) {
        (ImageRotation::D0, None) => NoTransforms,
        (ImageRotation::D90, None) => Rotate270,
        (ImageRotation::D180, None) => Rotate180,
        (ImageRotation::D270, None) => Rotate90,
        (ImageRotation::D0, Some(ImageMirror::LeftRight)) => FlipHorizontal,
        (ImageRotation::D0, Some(ImageMirror::TopBottom)) => FlipVertical,
        (ImageRotation::D180, Some(ImageMirror::LeftRight)) => FlipVertical,
        (ImageRotation::D180, Some(ImageMirror::TopBottom)) => FlipHorizontal,
        (ImageRotation::D270, Some(ImageMirror::LeftRight)) => Rotate90FlipH,
        (ImageRotation::D270, Some(ImageMirror::TopBottom)) => Rotate270FlipH,
        (ImageRotation::D90, Some(ImageMirror::LeftRight)) => Rotate270FlipH,
        (ImageRotation::D90, Some(ImageMirror::TopBottom)) => Rotate90FlipH,
    }
}

/// The frame size an AV1 image's sequence header declares, read before decoding.
fn declared_size(data: &[u8]) -> Result<(u32, u32), DecodeError> {
    let mut header = MaybeUninit::<Dav1dSequenceHeader>::zeroed();
    // SAFETY: `header` is writable; `data` is a live slice of `data.len()` bytes.
    let result = unsafe {
        dav1d::dav1d_parse_sequence_header(
            NonNull::new(header.as_mut_ptr()),
            NonNull::new(data.as_ptr().cast_mut()),
            data.len(),
        )
    };
    if result.0 != 0 {
        return Err(DecodeError::Corrupt(
            "AV1 sequence header unreadable".into(),
        ));
    }
    // SAFETY: a successful parse wrote the header.
    let header = unsafe { header.assume_init_ref() };
    let width = u32::try_from(header.max_width).unwrap_or(0);
    let height = u32::try_from(header.max_height).unwrap_or(0);
    if width == 0 || height == 0 {
        return Err(DecodeError::Corrupt(format!("image is {width}x{height}")));
    }
    Ok((width, height))
}

/// One decoded AV1 frame's planes, copied out of rav1d's picture.
struct Frame {
    width: u32,
    height: u32,
    /// Samples per plane (Y, then U and V unless monochrome), scaled to 8 bits' range
    /// only at conversion: `bits` says what they hold.
    luma: Vec<u16>,
    chroma: [Vec<u16>; 2],
    chroma_shift: (u32, u32),
    bits: u32,
    full_range: bool,
    matrix: u32,
    /// Colour primaries and transfer characteristics, where the sequence header has them.
    cicp: Option<(u8, u8)>,
}

/// The decoder handle, closed on every path.
struct Decoder(Option<Dav1dContext>);

impl Drop for Decoder {
    fn drop(&mut self) {
        // SAFETY: the context came from `dav1d_open` and is closed once.
        unsafe { dav1d::dav1d_close(NonNull::new(&mut self.0)) };
    }
}

/// A picture rav1d lent us, released on every path.
struct Picture(Dav1dPicture);

impl Drop for Picture {
    fn drop(&mut self) {
        // SAFETY: the picture came from `dav1d_get_picture`.
        unsafe { dav1d::dav1d_picture_unref(NonNull::new(&mut self.0)) };
    }
}

/// The AV1 frame size rav1d refuses to allocate beyond, whatever the header said.
fn frame_size_limit(limits: DecodeLimits) -> u32 {
    u32::try_from(limits.max_pixels).unwrap_or(u32::MAX)
}

impl Frame {
    fn decode(data: &[u8], limits: DecodeLimits) -> Result<Self, DecodeError> {
        let corrupt = |what: &str| DecodeError::Corrupt(format!("AV1 {what}"));
        let mut settings = MaybeUninit::<Dav1dSettings>::uninit();
        // SAFETY: `settings` is writable; the call initialises every field.
        let mut settings = unsafe {
            dav1d::dav1d_default_settings(NonNull::from(&mut settings).cast());
            settings.assume_init()
        };
        // One thread on Compute; a still image needs no frame delay; film grain is noise a
        // browser adds, not content.
        settings.n_threads = 1;
        settings.max_frame_delay = 1;
        settings.apply_grain = 0;
        settings.all_layers = 0;
        settings.frame_size_limit = frame_size_limit(limits);
        let mut decoder = Decoder(None);
        // SAFETY: both pointers are valid for the call.
        let opened =
            unsafe { dav1d::dav1d_open(NonNull::new(&mut decoder.0), NonNull::new(&mut settings)) };
        if opened.0 != 0 || decoder.0.is_none() {
            return Err(corrupt("decoder could not start"));
        }
        let mut input = Dav1dData::default();
        // SAFETY: `input` is writable; the returned buffer has `data.len()` bytes.
        let buffer = unsafe { dav1d::dav1d_data_create(NonNull::new(&mut input), data.len()) };
        if buffer.is_null() {
            return Err(corrupt("data could not be allocated"));
        }
        // SAFETY: `buffer` holds `data.len()` writable bytes that do not overlap `data`.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), buffer, data.len()) };
        let again = -libc::EAGAIN;
        let mut picture = Picture(Dav1dPicture::default());
        // Each round either consumes input or yields the picture; a bounded number of
        // rounds keeps a hostile stream from spinning.
        let mut decoded = false;
        for _ in 0..64 {
            if input.sz > 0 {
                // SAFETY: the context is open and `input` is rav1d's own data.
                let sent = unsafe { dav1d::dav1d_send_data(decoder.0, NonNull::new(&mut input)) };
                if sent.0 != 0 && sent.0 != again {
                    // SAFETY: `input` is released once, whatever it still holds.
                    unsafe { dav1d::dav1d_data_unref(NonNull::new(&mut input)) };
                    return Err(corrupt("data refused"));
                }
            }
            // SAFETY: the context is open and `picture` is writable.
            let got = unsafe { dav1d::dav1d_get_picture(decoder.0, NonNull::new(&mut picture.0)) };
            if got.0 == 0 {
                decoded = true;
                break;
            }
            if got.0 != again || input.sz == 0 {
                break;
            }
        }
        // SAFETY: as above; unref of consumed data is a no-op.
        unsafe { dav1d::dav1d_data_unref(NonNull::new(&mut input)) };
        if !decoded {
            return Err(corrupt("stream yielded no picture"));
        }
        Self::copy(&picture.0)
    }

    fn copy(picture: &Dav1dPicture) -> Result<Self, DecodeError> {
        let corrupt = |what: &str| DecodeError::Corrupt(format!("AV1 {what}"));
        let params = &picture.p;
        let width = u32::try_from(params.w).map_err(|_| corrupt("width"))?;
        let height = u32::try_from(params.h).map_err(|_| corrupt("height"))?;
        let bits = u32::try_from(params.bpc).map_err(|_| corrupt("depth"))?;
        if width == 0 || height == 0 || !matches!(bits, 8 | 10 | 12) {
            return Err(corrupt("picture parameters"));
        }
        let header = picture
            .seq_hdr
            .ok_or_else(|| corrupt("picture without header"))?;
        // SAFETY: a returned picture's sequence header lives as long as the picture.
        let header = unsafe { header.as_ref() };
        let chroma_shift = match params.layout {
            DAV1D_PIXEL_LAYOUT_I400 => (0, 0),
            DAV1D_PIXEL_LAYOUT_I420 => (1, 1),
            DAV1D_PIXEL_LAYOUT_I422 => (1, 0),
            _ => (0, 0),
        };
        let plane =
            |index: usize, w: u32, h: u32, stride: isize| -> Result<Vec<u16>, DecodeError> {
                let base = picture.data[index].ok_or_else(|| corrupt("plane missing"))?;
                let mut out = Vec::with_capacity(w as usize * h as usize);
                for row in 0..h as isize {
                    // SAFETY: rav1d's planes hold `h` rows of `stride` bytes, each at least `w`
                    // samples of 1 (8-bit) or 2 bytes.
                    unsafe {
                        let start = base.as_ptr().cast::<u8>().offset(row * stride);
                        if bits == 8 {
                            let line = std::slice::from_raw_parts(start, w as usize);
                            out.extend(line.iter().map(|&v| u16::from(v)));
                        } else {
                            let line = std::slice::from_raw_parts(start.cast::<u16>(), w as usize);
                            out.extend_from_slice(line);
                        }
                    }
                }
                Ok(out)
            };
        let luma = plane(0, width, height, picture.stride[0])?;
        let chroma = if params.layout == DAV1D_PIXEL_LAYOUT_I400 {
            [Vec::new(), Vec::new()]
        } else {
            let cw = (width + chroma_shift.0) >> chroma_shift.0;
            let ch = (height + chroma_shift.1) >> chroma_shift.1;
            [
                plane(1, cw, ch, picture.stride[1])?,
                plane(2, cw, ch, picture.stride[1])?,
            ]
        };
        Ok(Self {
            width,
            height,
            luma,
            chroma,
            chroma_shift,
            bits,
            full_range: header.color_range != 0,
            matrix: header.mtrx,
            cicp: (header.color_description_present != 0)
                .then(|| {
                    Some((
                        u8::try_from(header.pri).ok()?,
                        u8::try_from(header.trc).ok()?,
                    ))
                })
                .flatten(),
        })
    }

    fn to_rgb(&self, out: &mut [u8], channels: usize) {
        let yuv = Yuv::of(self);
        let width = self.width as usize;
        let rows = self.luma.chunks_exact(width);
        let out_rows = out.chunks_exact_mut(width * channels);
        if self.chroma[0].is_empty() {
            for (luma_row, out_row) in rows.zip(out_rows) {
                for (&sample, pixel) in luma_row.iter().zip(out_row.chunks_exact_mut(channels)) {
                    pixel[..3].fill(unit_to_u8(yuv.luma(sample)));
                }
            }
            return;
        }
        let (sx, sy) = self.chroma_shift;
        let chroma_width = ((self.width + sx) >> sx) as usize;
        let chroma_height = ((self.height + sy) >> sy) as usize;
        // Where each luma column and row falls between chroma samples, found once.
        let columns = chroma_taps(self.width, sx, chroma_width);
        let taps = chroma_taps(self.height, sy, chroma_height);
        // The chroma rows above and below the luma row, upsampled across once each (a
        // chroma row serves two luma rows in 4:2:0) rather than per pixel.
        let mut above = UpsampledRow::new(width);
        let mut below = UpsampledRow::new(width);
        // One row of each colour, written in plain arrays so the compiler vectorises the
        // arithmetic, then interleaved.
        let mut rgb = [vec![0u8; width], vec![0u8; width], vec![0u8; width]];
        for ((luma_row, out_row), &(y0, y1, fy)) in rows.zip(out_rows).zip(&taps) {
            if above.row != Some(y0) {
                if below.row == Some(y0) {
                    std::mem::swap(&mut above, &mut below);
                } else {
                    above.fill(&self.chroma, chroma_width, y0, &columns);
                }
            }
            if below.row != Some(y1) {
                below.fill(&self.chroma, chroma_width, y1, &columns);
            }
            yuv.row(luma_row, [&above, &below], fy, &mut rgb);
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            let done = match channels {
                3 => simd::interleave_rgb(&rgb, out_row),
                _ => 0,
            };
            #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
            let done = 0;
            let [red, green, blue] = &rgb;
            for (x, pixel) in out_row.chunks_exact_mut(channels).enumerate().skip(done) {
                pixel[0] = red[x];
                pixel[1] = green[x];
                pixel[2] = blue[x];
            }
        }
    }

    /// Writes this (monochrome) frame's luma as the alpha channel of RGBA `out`,
    /// un-premultiplying the colour when the file says it is premultiplied.
    fn to_alpha(&self, out: &mut [u8], premultiplied: bool) {
        let max = ((1u32 << self.bits) - 1) as f32;
        let scale = (1u32 << (self.bits - 8)) as f32;
        for (index, pixel) in out.chunks_exact_mut(4).enumerate() {
            let raw = f32::from(self.luma[index]);
            let alpha = if self.full_range {
                raw / max
            } else {
                (raw - 16.0 * scale) / (219.0 * scale)
            }
            .clamp(0.0, 1.0);
            pixel[3] = unit_to_u8(alpha);
            if premultiplied {
                for channel in &mut pixel[..3] {
                    *channel = if alpha > 0.0 {
                        (f32::from(*channel) / alpha).round().min(255.0) as u8
                    } else {
                        0
                    };
                }
            }
        }
    }
}

/// For each of `length` luma columns (or rows), the two chroma samples it falls between
/// and the weight of the second. Subsampled chroma sample centres sit at 2i + 0.5 in luma
/// units (libavif's assumption, centred).
fn chroma_taps(length: u32, shift: u32, chroma_length: usize) -> Vec<(usize, usize, f32)> {
    (0..length)
        .map(|v| {
            if shift == 0 {
                let i = v as usize;
                return (i, i, 0.0);
            }
            let c = (v as f32 + 0.5) / 2.0 - 0.5;
            let lo = c.floor();
            let frac = c - lo;
            let i0 = (lo.max(0.0) as usize).min(chroma_length - 1);
            let i1 = ((lo + 1.0).max(0.0) as usize).min(chroma_length - 1);
            (i0, i1, frac)
        })
        .collect()
}

/// A chroma row (both planes) upsampled to the luma width: bilinear between chroma sample
/// centres, as libavif's default upsampling, horizontally here and vertically in
/// [`Yuv::row`].
struct UpsampledRow {
    /// The chroma row it holds, once filled.
    row: Option<usize>,
    planes: [Vec<f32>; 2],
}

impl UpsampledRow {
    fn new(width: usize) -> Self {
        Self {
            row: None,
            planes: [vec![0.0; width], vec![0.0; width]],
        }
    }

    fn fill(
        &mut self,
        chroma: &[Vec<u16>; 2],
        chroma_width: usize,
        row: usize,
        columns: &[(usize, usize, f32)],
    ) {
        for (plane, out) in chroma.iter().zip(&mut self.planes) {
            let samples = &plane[row * chroma_width..(row + 1) * chroma_width];
            for (value, &(x0, x1, fx)) in out.iter_mut().zip(columns) {
                *value = f32::from(samples[x0]) * (1.0 - fx) + f32::from(samples[x1]) * fx;
            }
        }
        self.row = Some(row);
    }
}

/// A frame's YUV to RGB arithmetic: range, matrix and bit depth.
struct Yuv {
    y_off: f32,
    y_range: f32,
    c_range: f32,
    half: f32,
    kr: f32,
    kb: f32,
    kg: f32,
    form: Form,
}

/// How a frame's three planes make RGB.
#[derive(Clone, Copy, PartialEq)]
enum Form {
    /// Luma and two colour differences, weighed by `kr` and `kb`.
    YCbCr,
    /// GBR: Y holds green, U blue, V red (matrix 0).
    Identity,
    /// Y, Cg (in U) and Co (in V), matrix 8: Chromium 156 converts it as such (libavif);
    /// Firefox ESR 153 shows it as BT.601 YCbCr.
    YCgCo,
}

/// kr and kb derived from colour primaries (ITU-T H.273 equations for matrix 12,
/// "chromaticity-derived non-constant luminance", as libavif derives them): the luminance
/// of the red and blue primaries under the white point. `None` for unknown primaries.
fn derived_kr_kb(primaries: u8) -> Option<(f32, f32)> {
    let code = moxcms::CicpColorPrimaries::try_from(primaries).ok()?;
    let moxcms::ColorPrimaries { red, green, blue } = code.try_into().ok()?;
    // The white points H.273 gives: D65 but for BT.470M and film (C), XYZ (E) and DCI.
    let white = match primaries {
        4 | 8 => moxcms::Chromaticity { x: 0.310, y: 0.316 },
        10 => moxcms::Chromaticity {
            x: 1.0 / 3.0,
            y: 1.0 / 3.0,
        },
        11 => moxcms::Chromaticity { x: 0.314, y: 0.351 },
        _ => moxcms::Chromaticity::D65,
    };
    let [(xr, yr), (xg, yg), (xb, yb), (xw, yw)] =
        [red, green, blue, white].map(|c| (f64::from(c.x), f64::from(c.y)));
    let [zr, zg, zb, zw] = [(xr, yr), (xg, yg), (xb, yb), (xw, yw)].map(|(x, y)| 1.0 - x - y);
    let denominator =
        yw * (xr * (yg * zb - yb * zg) + xg * (yb * zr - yr * zb) + xb * (yr * zg - yg * zr));
    if denominator.abs() < 1e-12 {
        return None;
    }
    let kr = yr * (xw * (yg * zb - yb * zg) + yw * (xb * zg - xg * zb) + zw * (xg * yb - xb * yg))
        / denominator;
    let kb = yb * (xw * (yr * zg - yg * zr) + yw * (xg * zr - xr * zg) + zw * (xr * yg - xg * yr))
        / denominator;
    let sane = kr > 0.0 && kb > 0.0 && kr + kb < 1.0;
    sane.then_some((kr as f32, kb as f32))
}

impl Yuv {
    fn of(frame: &Frame) -> Self {
        let max = ((1u32 << frame.bits) - 1) as f32;
        let scale = (1u32 << (frame.bits - 8)) as f32;
        let (y_off, y_range, c_range) = if frame.full_range {
            (0.0, max, max)
        } else {
            (16.0 * scale, 219.0 * scale, 224.0 * scale)
        };
        // Unspecified matrices are BT.601, as in libavif.
        let bt601 = (0.299, 0.114);
        let (kr, kb) = match frame.matrix {
            DAV1D_MC_BT709 => (0.2126, 0.0722),
            DAV1D_MC_BT2020_NCL | DAV1D_MC_BT2020_CL => (0.2627, 0.0593),
            DAV1D_MC_SMPTE240 => (0.212, 0.087),
            DAV1D_MC_CHROMAT_NCL => frame
                .cicp
                .and_then(|(primaries, _)| derived_kr_kb(primaries))
                .unwrap_or(bt601),
            _ => bt601,
        };
        let form = match frame.matrix {
            DAV1D_MC_IDENTITY => Form::Identity,
            DAV1D_MC_SMPTE_YCGCO => Form::YCgCo,
            _ => Form::YCbCr,
        };
        Self {
            y_off,
            y_range,
            c_range,
            half: (1u32 << (frame.bits - 1)) as f32,
            kr,
            kb,
            kg: 1.0 - kr - kb,
            form,
        }
    }

    fn luma(&self, sample: u16) -> f32 {
        (f32::from(sample) - self.y_off) / self.y_range
    }

    /// One row's colours from its luma and the chroma rows `around` it (above, below),
    /// `fy` of the way from the first to the second.
    fn row(&self, luma: &[u16], around: [&UpsampledRow; 2], fy: f32, out: &mut [Vec<u8>; 3]) {
        let [above, below] = around;
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        let done = simd::row(self, luma, around, fy, out);
        #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
        let done = 0;
        let [red, green, blue] = out;
        let (red_cr, blue_cb) = (2.0 - 2.0 * self.kr, 2.0 - 2.0 * self.kb);
        let pixels = luma
            .iter()
            .zip(above.planes[0].iter().zip(&above.planes[1]))
            .zip(below.planes[0].iter().zip(&below.planes[1]))
            .zip(red.iter_mut().zip(green.iter_mut()).zip(blue.iter_mut()))
            .skip(done);
        for (((&sample, (&cb0, &cr0)), (&cb1, &cr1)), ((r, g), b)) in pixels {
            let luma = self.luma(sample);
            let cb = (cb0 * (1.0 - fy) + cb1 * fy - self.half) / self.c_range;
            let cr = (cr0 * (1.0 - fy) + cr1 * fy - self.half) / self.c_range;
            let [rv, gv, bv] = match self.form {
                Form::Identity => [cr + 0.5, luma, cb + 0.5],
                Form::YCbCr => {
                    let rv = luma + red_cr * cr;
                    let bv = luma + blue_cb * cb;
                    [rv, (luma - self.kr * rv - self.kb * bv) / self.kg, bv]
                }
                // U holds Cg, V holds Co.
                Form::YCgCo => {
                    let t = luma - cb;
                    [t + cr, luma + cb, t - cr]
                }
            };
            *r = unit_to_u8(rv);
            *g = unit_to_u8(gv);
            *b = unit_to_u8(bv);
        }
    }
}

/// `v` in 0..=1 as 0..=255: rounded half away from zero, as `f32::round`, then clamped.
/// Written with `trunc` (one instruction, in Wasm too) where `round` is a library call;
/// `x - trunc(x)` is exact for these magnitudes.
fn unit_to_u8(v: f32) -> u8 {
    let x = v * 255.0;
    let whole = x.trunc();
    let rounded = if x - whole >= 0.5 { whole + 1.0 } else { whole };
    rounded.clamp(0.0, 255.0) as u8
}

impl ImageDecoder for AvifDecoder {
    fn dimensions(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    fn color_type(&self) -> ColorType {
        if self.alpha {
            ColorType::Rgba8
        } else {
            ColorType::Rgb8
        }
    }

    fn orientation(&mut self) -> ImageResult<Orientation> {
        Ok(self.orientation)
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

    /// The conversion written per pixel, as it was before rows were upsampled once:
    /// the fast path must give the same bytes.
    fn per_pixel(frame: &Frame, out: &mut [u8], channels: usize) {
        let max = ((1u32 << frame.bits) - 1) as f32;
        let scale = (1u32 << (frame.bits - 8)) as f32;
        let (y_off, y_range, c_range) = if frame.full_range {
            (0.0, max, max)
        } else {
            (16.0 * scale, 219.0 * scale, 224.0 * scale)
        };
        let half = (1u32 << (frame.bits - 1)) as f32;
        // Unspecified matrices are BT.601, as in libavif.
        let (kr, kb) = match frame.matrix {
            DAV1D_MC_BT709 => (0.2126, 0.0722),
            DAV1D_MC_BT2020_NCL | DAV1D_MC_BT2020_CL => (0.2627, 0.0593),
            DAV1D_MC_SMPTE240 => (0.212, 0.087),
            _ => (0.299, 0.114),
        };
        let kg = 1.0 - kr - kb;
        let identity = frame.matrix == DAV1D_MC_IDENTITY && !frame.chroma[0].is_empty();
        let width = frame.width as usize;
        let (sx, sy) = frame.chroma_shift;
        let chroma_width = ((frame.width + sx) >> sx) as usize;
        let chroma_height = ((frame.height + sy) >> sy) as usize;
        // Where each luma column and row falls between chroma samples, found once.
        let columns = chroma_taps(frame.width, sx, chroma_width);
        let rows = chroma_taps(frame.height, sy, chroma_height);
        for (y, (luma_row, out_row)) in frame
            .luma
            .chunks_exact(width)
            .zip(out.chunks_exact_mut(width * channels))
            .enumerate()
        {
            let (y0, y1, fy) = rows[y];
            // The chroma plane's value under luma sample `x` of this row: bilinear between
            // chroma sample centres, as libavif's default upsampling.
            let chroma_at = |plane: &[u16], x: usize| -> f32 {
                let (x0, x1, fx) = columns[x];
                let at = |cx: usize, cy: usize| f32::from(plane[cy * chroma_width + cx]);
                let top = at(x0, y0) * (1.0 - fx) + at(x1, y0) * fx;
                let bottom = at(x0, y1) * (1.0 - fx) + at(x1, y1) * fx;
                top * (1.0 - fy) + bottom * fy
            };
            for (x, (&sample, pixel)) in luma_row
                .iter()
                .zip(out_row.chunks_exact_mut(channels))
                .enumerate()
            {
                let luma = (f32::from(sample) - y_off) / y_range;
                let rgb = if frame.chroma[0].is_empty() {
                    [luma; 3]
                } else {
                    let cb = (chroma_at(&frame.chroma[0], x) - half) / c_range;
                    let cr = (chroma_at(&frame.chroma[1], x) - half) / c_range;
                    if identity {
                        // GBR: Y holds green, U blue, V red.
                        [cr + 0.5, luma, cb + 0.5]
                    } else {
                        let r = luma + (2.0 - 2.0 * kr) * cr;
                        let b = luma + (2.0 - 2.0 * kb) * cb;
                        let g = (luma - kr * r - kb * b) / kg;
                        [r, g, b]
                    }
                };
                for (o, v) in pixel.iter_mut().zip(rgb) {
                    *o = unit_to_u8(v);
                }
            }
        }
    }

    #[test]
    fn derived_coefficients_are_those_the_standards_give() {
        for (primaries, (kr, kb)) in [(1, (0.2126, 0.0722)), (9, (0.2627, 0.0593))] {
            let (dr, db) = derived_kr_kb(primaries).unwrap();
            assert!(
                (dr - kr).abs() < 1e-3 && (db - kb).abs() < 1e-3,
                "{primaries}"
            );
        }
        assert_eq!(derived_kr_kb(2), None);
        assert_eq!(derived_kr_kb(3), None);
    }

    #[test]
    fn conversion_matches_the_per_pixel_formula() {
        let mut next = crate::media::decode::test_noise(0x9e37_79b9_7f4a_7c15);
        let matrices = [
            DAV1D_MC_BT709,
            DAV1D_MC_BT2020_NCL,
            DAV1D_MC_SMPTE240,
            DAV1D_MC_IDENTITY,
            2, // unspecified
        ];
        for (width, height) in [(1, 1), (2, 3), (7, 5), (33, 18), (64, 1)] {
            for shift in [(0, 0), (1, 0), (1, 1)] {
                for bits in [8, 10, 12] {
                    for monochrome in [false, true] {
                        let matrix = matrices[next() as usize % matrices.len()];
                        let full_range = next().is_multiple_of(2);
                        let max = (1u64 << bits) - 1;
                        let mut plane = |w: u32, h: u32| -> Vec<u16> {
                            (0..w * h).map(|_| (next() % (max + 1)) as u16).collect()
                        };
                        let (cw, ch) =
                            ((width + shift.0) >> shift.0, (height + shift.1) >> shift.1);
                        let frame = Frame {
                            width,
                            height,
                            luma: plane(width, height),
                            chroma: if monochrome {
                                [Vec::new(), Vec::new()]
                            } else {
                                [plane(cw, ch), plane(cw, ch)]
                            },
                            chroma_shift: shift,
                            bits,
                            full_range,
                            matrix,
                            cicp: None,
                        };
                        for channels in [3, 4] {
                            let size = (width * height) as usize * channels;
                            let (mut fast, mut slow) = (vec![7u8; size], vec![7u8; size]);
                            frame.to_rgb(&mut fast, channels);
                            per_pixel(&frame, &mut slow, channels);
                            assert_eq!(
                                fast, slow,
                                "{width}x{height} {shift:?} {bits} bits matrix {matrix}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn samples_round_as_f32_round_does() {
        let rounded = |v: f32| (v * 255.0).round().clamp(0.0, 255.0) as u8;
        // Every 2^-20 step over the range and past both ends, and each half-way point.
        let steps = (-(1i32 << 17)..(1 << 20) + (1 << 17)).map(|i| i as f32 / (1 << 20) as f32);
        let halves = (0..=511).map(|k| (k as f32 * 0.5) / 255.0);
        for v in steps.chain(halves).chain([f32::NAN, -1.0, 2.0]) {
            assert_eq!(unit_to_u8(v), rounded(v), "{v}");
        }
    }
}
