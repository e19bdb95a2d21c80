//! Colour management: decoded pixels brought to sRGB, as a browser shows them. Owns reading
//! how an image describes its colours (an embedded ICC profile; a PNG's `cICP`, `sRGB`,
//! `gAMA` and `cHRM` chunks, in Chromium's order of precedence) and converting pixels with
//! that description, through moxcms (the colour management system image-rs already links).
//!
//! Why it matters: browsers convert every tagged image to the display's space, so a picture
//! stored darkened, inverted or with its channels swapped, under a profile that restores
//! it, shows restored (checked in Chromium: grey 40 under `gAMA` 1.0 shows as 110). The
//! model must judge what is shown. A description equivalent to sRGB (most camera photos)
//! changes nothing and is skipped, so untagged and sRGB-tagged images keep their exact
//! pixels; one that cannot be read is ignored, as browsers ignore it (shown as coded).
//!
//! An AVIF's `nclx` (or AV1 sequence header) primaries and transfer are converted by its
//! decoder through [`cicp_shown`]; an icon's PNG entries as PNG files are (`media::icon`).
//!
//! Where browsers disagree (a BMP's calibrated RGB, which Firefox applies and Chromium
//! does not; a PNG `cICP`'s BT.709-family transfer, which each reads its own way),
//! [`firefox_reading`] gives Firefox's reading for a second rendering, judged beside the
//! first.
//!
//! Not converted: CMYK profiles (the decoder's own CMYK to RGB conversion stands) and HDR
//! transfers (PQ, HLG) beyond what moxcms's curves give: browsers tone-map those, each its
//! own way.

use crate::media::format::ImageFormat;
use image::{ColorType, DynamicImage, ImageDecoder, ImageReader};
use moxcms::{
    Chromaticity, CicpColorPrimaries, CicpProfile, ColorPrimaries, ColorProfile, DataColorSpace,
    Layout, MatrixCoefficients, ToneReprCurve, TransferCharacteristics, Transform8BitExecutor,
    TransformOptions, XyY,
};
use std::cell::OnceCell;
use std::io::Cursor;
use std::sync::Arc;

/// How an image says its stored colours are to be read.
#[derive(Clone, Debug, PartialEq)]
pub enum Description {
    /// An ICC profile (JPEG APP2, PNG `iCCP`, WebP `ICCP`, TIFF, AVIF `colr`, JPEG XL,
    /// BMP V5).
    Icc(Vec<u8>),
    /// A PNG `cICP` chunk: colour primaries and transfer characteristics (ITU-T H.273).
    Cicp { primaries: u8, transfer: u8 },
    /// A PNG's `gAMA` (the file's gamma × 100000, not 0) and `cHRM` (white point, red,
    /// green and blue x, y × 100000); sRGB's primaries stand in for a missing `cHRM`.
    Gamma {
        gamma: u32,
        chromaticities: Option<[u32; 8]>,
    },
    /// A BMP's `LCS_CALIBRATED_RGB` header, as Firefox reads it: the x and y of each
    /// primary (the first two of its three 2.30 fixed-point endpoint fields) and each
    /// channel's gamma (16.16 fixed point), under sRGB's white point.
    Calibrated {
        primaries: [[u32; 2]; 3],
        gammas: [u32; 3],
    },
}

/// How `bytes` (decoded by `decoder`) describe their colours; `None` when they do not, or
/// say sRGB.
pub fn description(
    bytes: &[u8],
    format: ImageFormat,
    decoder: &mut dyn ImageDecoder,
) -> Option<Description> {
    let icc = decoder
        .icc_profile()
        .ok()
        .flatten()
        .filter(|p| !p.is_empty());
    match format {
        ImageFormat::Png => png_description(bytes, icc),
        // image-rs's BMP decoder does not read the profile.
        ImageFormat::Bmp => bmp_profile(bytes).map(Description::Icc),
        _ => icc.map(Description::Icc),
    }
}

/// A BMP's embedded ICC profile: a V5 info header (124 bytes or more) whose colour space
/// is `PROFILE_EMBEDDED` ("MBED"), the profile `ProfileSize` bytes at `ProfileData` from
/// the header's start. Checked in Chromium 156 and Firefox ESR 153: both show grey 40
/// under a linear profile so embedded as 110. A `LCS_CALIBRATED_RGB` header (endpoints
/// and gammas) is not read: Firefox applies it, Chromium does not.
fn bmp_profile(bytes: &[u8]) -> Option<Vec<u8>> {
    /// Where the info header starts: after the 14-byte file header.
    const INFO: usize = 14;
    const PROFILE_EMBEDDED: usize = 0x4D42_4544;
    let le = |at: usize| -> Option<usize> {
        let field = bytes.get(at..at.checked_add(4)?)?;
        Some(u32::from_le_bytes(field.try_into().ok()?) as usize)
    };
    if !bytes.starts_with(b"BM") || le(INFO)? < 124 || le(INFO + 56)? != PROFILE_EMBEDDED {
        return None;
    }
    let start = INFO.checked_add(le(INFO + 112)?)?;
    let end = start.checked_add(le(INFO + 116)?)?;
    bytes
        .get(start..end)
        .filter(|profile| !profile.is_empty())
        .map(<[u8]>::to_vec)
}

/// A BMP's calibrated RGB (a V4 or V5 info header whose colour space is
/// `LCS_CALIBRATED_RGB`, 0): Firefox ESR 153 converts the pixels by it (grey 40 under a
/// gamma of 1.0 shows as 110), Chromium 156 shows them as coded. Both are what some
/// browser shows, so this is a second rendering to judge, not the one rendering.
pub fn bmp_calibrated(bytes: &[u8]) -> Option<Description> {
    const INFO: usize = 14;
    let le = |at: usize| -> Option<u32> {
        let field = bytes.get(INFO + at..INFO + at + 4)?;
        Some(u32::from_le_bytes(field.try_into().ok()?))
    };
    if !bytes.starts_with(b"BM") || le(0)? < 108 || le(56)? != 0 {
        return None;
    }
    // Endpoints at 60 (red, green, blue: X, Y, Z each), gammas at 96.
    let endpoint = |i: usize| Some([le(60 + 12 * i)?, le(64 + 12 * i)?]);
    Some(Description::Calibrated {
        primaries: [endpoint(0)?, endpoint(1)?, endpoint(2)?],
        gammas: [le(96)?, le(100)?, le(104)?],
    })
}

/// [`description`] when no decoder is at hand (the frames of an animation): image-rs's
/// decoder for the format reads the headers.
pub fn description_of(bytes: &[u8], format: ImageFormat) -> Option<Description> {
    let mut decoder = ImageReader::with_format(Cursor::new(bytes), format.codec()?)
        .into_decoder()
        .ok()?;
    description(bytes, format, &mut decoder)
}

/// How browsers read code points (ITU-T H.273) that describe an image's colours where no
/// ICC profile does (an AVIF's `nclx`, or its AV1 sequence header's): checked in Chromium
/// 156 and Firefox ESR 153 on AVIFs of flat colours. Both convert by the primaries (BT.2020,
/// Display P3, EBU 3213 change what is shown) and by the gamma 2.2, gamma 2.8 and linear
/// transfers (grey 40 under linear shows as 110), but show the BT.709-family transfers
/// (BT.709, BT.601, BT.2020 10/12-bit) as sRGB, and unspecified or reserved code points
/// as coded (Firefox refuses reserved ones; Chromium shows them as sRGB). `None`: shown
/// as coded.
pub fn cicp_shown(primaries: u8, transfer: u8) -> Option<Description> {
    let primaries = match primaries {
        0 | 2 => 1,
        other => other,
    };
    let transfer = match transfer {
        0 | 1 | 2 | 6 | 14 | 15 => 13,
        other => other,
    };
    (primaries, transfer)
        .ne(&(1, 13))
        .then_some(Description::Cicp {
            primaries,
            transfer,
        })
}

/// How Firefox ESR 153 reads a PNG `cICP` that Chromium 156 reads otherwise: a BT.709-family
/// transfer (1, 6, 14, 15) as sRGB's, the primaries applied (checked: grey 40 under
/// BT.709's transfer shows as 40 in Firefox, 28 in Chromium; Display P3 primaries alike in
/// both). `None` where they agree; `Some(None)` where Firefox shows the pixels as coded.
pub fn firefox_cicp(description: &Description) -> Option<Option<Description>> {
    match *description {
        Description::Cicp {
            primaries,
            transfer: transfer @ (1 | 6 | 14 | 15),
        } => Some(cicp_shown(primaries, transfer)),
        _ => None,
    }
}

/// How Firefox ESR 153 shows a file's colours where Chromium 156 shows them otherwise:
/// `None` where the two agree; `Some(None)` where Firefox shows the pixels as coded;
/// `Some(Some(conversion))` where it converts them. Two cases: a PNG `cICP` with a
/// BT.709-family transfer ([`firefox_cicp`]), and a BMP's calibrated RGB
/// ([`bmp_calibrated`]; a calibration without a conversion, such as one with no gamut, is
/// shown as coded by both).
pub fn firefox_reading(
    bytes: &[u8],
    format: ImageFormat,
    description: Option<&Description>,
) -> Option<Option<ToSrgb>> {
    if let Some(firefox) = description.and_then(firefox_cicp) {
        return Some(firefox.as_ref().and_then(ToSrgb::new));
    }
    let calibrated = (format == ImageFormat::Bmp)
        .then(|| bmp_calibrated(bytes))
        .flatten()?;
    ToSrgb::new(&calibrated).map(Some)
}

/// A PNG's colour chunks before its image data, weighed as Chromium weighs them: `cICP`,
/// then `iCCP`, then `sRGB`, then `gAMA` and `cHRM`. The first of a kind counts (libpng
/// ignores repeats).
fn png_description(bytes: &[u8], icc: Option<Vec<u8>>) -> Option<Description> {
    let (mut srgb, mut gamma, mut chromaticities, mut cicp) = (false, None, None, None);
    let mut at = 8usize;
    while let Some(header) = bytes.get(at..at.checked_add(8)?) {
        let length = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let end = at.checked_add(8)?.checked_add(length)?;
        let Some(data) = bytes.get(at + 8..end) else {
            break;
        };
        let be = |i: usize| u32::from_be_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]]);
        match &header[4..8] {
            b"IDAT" => break,
            b"sRGB" => srgb = true,
            b"gAMA" if length == 4 && gamma.is_none() => gamma = Some(be(0)),
            b"cHRM" if length == 32 && chromaticities.is_none() => {
                chromaticities = Some(std::array::from_fn(|i| be(i * 4)))
            }
            b"cICP" if length == 4 && cicp.is_none() => {
                cicp = Some(Description::Cicp {
                    primaries: data[0],
                    transfer: data[1],
                })
            }
            _ => {}
        }
        at = end.checked_add(4)?;
    }
    if cicp.is_some() {
        return cicp;
    }
    if let Some(icc) = icc {
        return Some(Description::Icc(icc));
    }
    // Checked in Chromium 156: `cHRM` without `gAMA` changes nothing, and a `gAMA` alone
    // within 5% of sRGB's 1/2.2 (libpng's test) is taken for sRGB; with `cHRM` it is not.
    let gamma = gamma.filter(|&g| g > 0)?;
    if srgb || (chromaticities.is_none() && close_to_srgb(gamma)) {
        return None;
    }
    Some(Description::Gamma {
        gamma,
        chromaticities,
    })
}

/// libpng's `png_gamma_not_sRGB`, negated: `gamma` (× 100000) × 2.2 within 5% of 1.
fn close_to_srgb(gamma: u32) -> bool {
    let display = (u64::from(gamma) * 11 + 2) / 5;
    (95_000..=105_000).contains(&display)
}

/// A conversion to sRGB from a description that differs from it.
pub struct ToSrgb {
    source: ColorProfile,
    /// Whether grey pixels convert as RGB: true for a PNG's chunks, which describe any
    /// PNG; an RGB ICC profile on grey pixels is ignored instead, as browsers ignore it.
    converts_grey: bool,
    /// The transforms built so far, without alpha and with it: building one computes
    /// lookup tables, so a still converts with the one `new` built to probe, and an
    /// animation's frames share one.
    transforms: [OnceCell<Option<Arc<Transform8BitExecutor>>>; 2],
}

impl ToSrgb {
    /// The conversion `description` asks for; `None` when it is unreadable, not RGB or
    /// grey, or equivalent to sRGB (nothing to do).
    pub fn new(description: &Description) -> Option<Self> {
        let source = match description {
            Description::Icc(icc) => {
                let mut profile = ColorProfile::new_from_slice(icc).ok()?;
                // Convert by the profile's curves and colorants, which every CMS reads: a
                // `cicp` tag naming sRGB beside an inverting curve would otherwise make
                // moxcms pass the pixels through.
                profile.cicp = None;
                profile
            }
            Description::Cicp {
                primaries,
                transfer,
            } => from_cicp(*primaries, *transfer)?,
            Description::Gamma {
                gamma,
                chromaticities,
            } => from_gamma(*gamma, *chromaticities)?,
            Description::Calibrated { primaries, gammas } => from_calibrated(primaries, gammas)?,
        };
        if !matches!(
            source.color_space,
            DataColorSpace::Rgb | DataColorSpace::Gray
        ) {
            return None;
        }
        let conversion = Self {
            source,
            converts_grey: !matches!(description, Description::Icc(_)),
            transforms: Default::default(),
        };
        // A profile moxcms cannot build a transform from is ignored, as a browser ignores it.
        let probe = conversion.transform(false)?;
        (!conversion.is_srgb(probe.as_ref())).then_some(conversion)
    }

    /// The pixels of `image` as shown: converted to sRGB. An image whose kind the
    /// description does not fit (grey pixels under an RGB profile, or the reverse) is
    /// left as coded, as browsers leave it.
    pub fn apply(&self, image: DynamicImage) -> DynamicImage {
        let grey_image = matches!(
            image.color(),
            ColorType::L8 | ColorType::La8 | ColorType::L16 | ColorType::La16
        );
        let image = match (grey_image, self.is_grey()) {
            // A PNG's own chunks describe its grey pixels too: converted as RGB.
            (true, false) if self.converts_grey => match image.color().has_alpha() {
                true => DynamicImage::ImageRgba8(image.into_rgba8()),
                false => DynamicImage::ImageRgb8(image.into_rgb8()),
            },
            (grey_image, grey_profile) if grey_image != grey_profile => return image,
            _ => image,
        };
        let alpha = image.color().has_alpha();
        let Some(transform) = self.transform(alpha) else {
            return image;
        };
        let (width, height) = (image.width(), image.height());
        // moxcms refuses only buffers of the wrong length, which these are not; were it
        // to refuse, the pixels stay as coded (what a browser without the profile shows).
        match (self.is_grey(), alpha) {
            (false, false) => in_place(image.into_rgb8(), 3, transform.as_ref()).into(),
            (false, true) => in_place(image.into_rgba8(), 4, transform.as_ref()).into(),
            (true, false) => {
                let grey = image.into_luma8();
                let mut out = image::RgbImage::new(width, height);
                match transform.transform(grey.as_raw(), &mut out) {
                    Ok(()) => out.into(),
                    Err(_) => grey.into(),
                }
            }
            (true, true) => {
                let grey = image.into_luma_alpha8();
                let mut out = image::RgbaImage::new(width, height);
                match transform.transform(grey.as_raw(), &mut out) {
                    Ok(()) => out.into(),
                    Err(_) => grey.into(),
                }
            }
        }
    }

    /// [`apply`](Self::apply) to 8-bit RGB (or, with `alpha`, RGBA) samples of a
    /// `width` × `height` image, as a decoder holds them.
    pub fn shown_bytes(&self, pixels: Vec<u8>, width: u32, height: u32, alpha: bool) -> Vec<u8> {
        let channels = if alpha { 4 } else { 3 };
        if pixels.len() as u64 != u64::from(width) * u64::from(height) * channels {
            return pixels;
        }
        let image = if alpha {
            image::RgbaImage::from_raw(width, height, pixels).map(DynamicImage::from)
        } else {
            image::RgbImage::from_raw(width, height, pixels).map(DynamicImage::from)
        };
        // The length was checked: `from_raw` refuses nothing else.
        image.map_or_else(Vec::new, |image| self.apply(image).into_bytes())
    }

    fn is_grey(&self) -> bool {
        self.source.color_space == DataColorSpace::Gray
    }

    fn layouts(&self, alpha: bool) -> (Layout, Layout) {
        match (self.is_grey(), alpha) {
            (false, false) => (Layout::Rgb, Layout::Rgb),
            (false, true) => (Layout::Rgba, Layout::Rgba),
            (true, false) => (Layout::Gray, Layout::Rgb),
            (true, true) => (Layout::GrayAlpha, Layout::Rgba),
        }
    }

    /// The transform for pixels with or without `alpha`, built on first use.
    fn transform(&self, alpha: bool) -> Option<Arc<Transform8BitExecutor>> {
        self.transforms[usize::from(alpha)]
            .get_or_init(|| {
                let (from, to) = self.layouts(alpha);
                let options = TransformOptions::default();
                self.source
                    .create_transform_8bit(from, &ColorProfile::new_srgb(), to, options)
                    .ok()
            })
            .clone()
    }

    /// Whether the conversion leaves every colour within one level of itself. Decided only
    /// for descriptions that convert channel by channel (sRGB's primaries, or grey), where
    /// each channel's 256 levels can all be tried; a profile built on lookup tables is
    /// always applied, since a sample of its colours proves nothing about the rest.
    fn is_srgb(&self, probe: &Transform8BitExecutor) -> bool {
        let srgb = ColorProfile::new_srgb();
        let close = |a: moxcms::Xyzd, b: moxcms::Xyzd| {
            (a.x - b.x).abs() < 2e-3 && (a.y - b.y).abs() < 2e-3 && (a.z - b.z).abs() < 2e-3
        };
        let separable = if self.is_grey() {
            self.source.gray_trc.is_some()
        } else {
            self.source.is_matrix_shaper()
                && close(self.source.red_colorant, srgb.red_colorant)
                && close(self.source.green_colorant, srgb.green_colorant)
                && close(self.source.blue_colorant, srgb.blue_colorant)
        };
        if !separable {
            return false;
        }
        // Every level of each channel alone, and of grey.
        let mut input = Vec::with_capacity(256 * 4 * 3);
        for level in 0..=255u8 {
            if self.is_grey() {
                input.push(level);
            } else {
                for colour in [[level, 0, 0], [0, level, 0], [0, 0, level], [level; 3]] {
                    input.extend_from_slice(&colour);
                }
            }
        }
        let per_input = if self.is_grey() { 1 } else { 3 };
        let mut output = vec![0u8; input.len() / per_input * 3];
        if probe.transform(&input, &mut output).is_err() {
            return false;
        }
        let expected: Vec<u8> = if self.is_grey() {
            input.iter().flat_map(|&v| [v; 3]).collect()
        } else {
            input
        };
        expected
            .iter()
            .zip(&output)
            .all(|(&want, &got)| want.abs_diff(got) <= 1)
    }
}

/// Converts an image's rows in place, one row of scratch memory at a time; a row the
/// transform refuses stays as coded.
fn in_place<P: image::Pixel<Subpixel = u8>>(
    mut image: image::ImageBuffer<P, Vec<u8>>,
    channels: usize,
    transform: &Transform8BitExecutor,
) -> image::ImageBuffer<P, Vec<u8>> {
    let row_bytes = (image.width() as usize * channels).max(1);
    let mut scratch = vec![0u8; row_bytes];
    for row in image.chunks_exact_mut(row_bytes) {
        scratch.copy_from_slice(row);
        if transform.transform(&scratch, row).is_err() {
            row.copy_from_slice(&scratch);
        }
    }
    image
}

/// A PNG `cICP` as a profile: primaries and transfer from H.273's tables (video range and
/// matrices do not apply to RGB PNGs). The BT.709-family transfers (1, 6, 14, 15) are a
/// pure 2.4 power, BT.1886's display gamma, as Chromium 156 shows them (grey 40 as 28, red
/// 200 as 197), not the camera curve H.273 gives (which would show 40 as 56).
fn from_cicp(primaries: u8, transfer: u8) -> Option<ColorProfile> {
    let bt1886 = matches!(transfer, 1 | 6 | 14 | 15);
    let cicp = CicpProfile {
        color_primaries: CicpColorPrimaries::try_from(primaries).ok()?,
        transfer_characteristics: match bt1886 {
            true => TransferCharacteristics::Srgb,
            false => TransferCharacteristics::try_from(transfer).ok()?,
        },
        matrix_coefficients: MatrixCoefficients::Identity,
        full_range: true,
    };
    let mut profile = ColorProfile::new_from_cicp(cicp);
    if bt1886 {
        let curve = ToneReprCurve::Parametric(vec![2.4]);
        profile.red_trc = Some(curve.clone());
        profile.green_trc = Some(curve.clone());
        profile.blue_trc = Some(curve);
        // Converted by the curves: moxcms would take the code points' own otherwise.
        profile.cicp = None;
    }
    // Primaries without chromaticities or a transfer without a curve leave the profile
    // without colorants or curves: not one to convert with.
    Some(profile).filter(ColorProfile::is_matrix_shaper)
}

/// A PNG's `gAMA` and `cHRM` as a profile, as Chromium builds it: the transfer is a pure
/// power of 1 / gamma, the primaries and white point those of `cHRM` (sRGB's when missing
/// or degenerate).
fn from_gamma(gamma: u32, chromaticities: Option<[u32; 8]>) -> Option<ColorProfile> {
    if gamma == 0 {
        return None;
    }
    let mut profile = ColorProfile::new_srgb();
    let curve = ToneReprCurve::Parametric(vec![100_000.0 / gamma as f32]);
    profile.red_trc = Some(curve.clone());
    profile.green_trc = Some(curve.clone());
    profile.blue_trc = Some(curve);
    if let Some(c) = chromaticities {
        let xy = |i: usize| Chromaticity::new(c[i] as f32 / 100_000.0, c[i + 1] as f32 / 100_000.0);
        let [white, red, green, blue] = [xy(0), xy(2), xy(4), xy(6)];
        let sane = [white, red, green, blue]
            .iter()
            .all(|p| p.y > 0.0 && p.x >= 0.0 && p.x + p.y <= 1.0);
        // A degenerate triangle (zero area) has no matrix: sRGB's gamut stands.
        let area = (green.x - red.x) * (blue.y - red.y) - (blue.x - red.x) * (green.y - red.y);
        if sane && area.abs() > 1e-6 {
            let white = XyY::new(f64::from(white.x), f64::from(white.y), 1.0);
            profile.update_rgb_colorimetry(white, ColorPrimaries { red, green, blue });
        }
    }
    profile.cicp = None;
    Some(profile)
}

/// A BMP's calibrated RGB as Firefox builds its profile (qcms): a pure power curve per
/// channel, the gamma kept to 1/256 (an ICC `u8Fixed8`), the primaries' x and y read from
/// the endpoints' first two fields, sRGB's white point. Primaries with no gamut (zero
/// endpoints, a degenerate triangle) build none; imaginary ones do (Firefox ESR 153
/// applies sRGB's D50 colorants' X and Y taken for x and y, green's summing past 1).
fn from_calibrated(primaries: &[[u32; 2]; 3], gammas: &[u32; 3]) -> Option<ColorProfile> {
    let fixed_2_30 = |v: u32| (f64::from(v) / f64::from(1u32 << 30)) as f32;
    let [red, green, blue] =
        primaries.map(|[x, y]| Chromaticity::new(fixed_2_30(x), fixed_2_30(y)));
    // Imaginary primaries (x + y > 1) are taken as given, as Firefox takes them.
    let sane = [red, green, blue].iter().all(|p| p.y > 0.0);
    let area = (green.x - red.x) * (blue.y - red.y) - (blue.x - red.x) * (green.y - red.y);
    if !sane || area.abs() <= 1e-6 {
        return None;
    }
    let mut profile = ColorProfile::new_srgb();
    let curve = |gamma: u32| {
        let gamma = f64::from(gamma) / 65536.0;
        ToneReprCurve::Parametric(vec![
            ((gamma * 256.0 + 0.5).floor().min(65535.0) / 256.0) as f32,
        ])
    };
    profile.red_trc = Some(curve(gammas[0]));
    profile.green_trc = Some(curve(gammas[1]));
    profile.blue_trc = Some(curve(gammas[2]));
    let white = XyY::new(0.3127, 0.3290, 1.0);
    profile.update_rgb_colorimetry(white, ColorPrimaries { red, green, blue });
    profile.cicp = None;
    Some(profile)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::decode::tests::{bmp_calibrated, bmp_v5, jpeg_tagged};
    use crate::media::decode::{decode_reduced, DecodeLimits};
    use image::{GenericImageView, Rgb, RgbImage};

    const LIMITS: DecodeLimits = DecodeLimits {
        max_pixels: 4_000_000,
        max_dimension: 4096,
        max_canvas_bytes: 16_000_000,
        reduce_jpeg: true,
    };

    /// A PNG of `image` (RGB, or grey when `grey`) with extra chunks before its data.
    fn png(image: &RgbImage, grey: bool, chunks: &[(&[u8; 4], Vec<u8>)]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, image.width(), image.height());
        encoder.set_color(if grey {
            png::ColorType::Grayscale
        } else {
            png::ColorType::Rgb
        });
        let mut writer = encoder.write_header().unwrap();
        for (kind, data) in chunks {
            writer
                .write_chunk(png::chunk::ChunkType(**kind), data)
                .unwrap();
        }
        let data: Vec<u8> = if grey {
            image.pixels().map(|p| p[0]).collect()
        } else {
            image.as_raw().clone()
        };
        writer.write_image_data(&data).unwrap();
        writer.finish().unwrap();
        out
    }

    fn flat(width: u32, height: u32, value: [u8; 3]) -> RgbImage {
        RgbImage::from_pixel(width, height, Rgb(value))
    }

    fn shown(bytes: &[u8], format: ImageFormat, reduce_jpeg: bool) -> image::RgbImage {
        let limits = DecodeLimits {
            reduce_jpeg,
            ..LIMITS
        };
        decode_reduced(bytes, format, limits)
            .unwrap()
            .image
            .to_rgb8()
    }

    fn gathered(bytes: &[u8]) -> image::RgbImage {
        let decoded = decode_reduced(bytes, ImageFormat::Jpeg, LIMITS).unwrap();
        decoded
            .gathered
            .expect("the sampled decoder ran")
            .image
            .to_rgb8()
    }

    /// An sRGB profile whose three curves take level `i` to `curve(i)` of linear light.
    fn profile_with_curve(curve: impl Fn(u16) -> f64) -> Vec<u8> {
        let mut profile = ColorProfile::new_srgb();
        // moxcms writes sRGB's `cicp` tag along: the curves below must be what counts.
        profile.cicp = Some(ColorProfile::new_srgb().cicp.unwrap());
        let lut = ToneReprCurve::Lut(
            (0..256)
                .map(|i| (curve(i).clamp(0.0, 1.0) * 65535.0).round() as u16)
                .collect(),
        );
        profile.red_trc = Some(lut.clone());
        profile.green_trc = Some(lut.clone());
        profile.blue_trc = Some(lut);
        profile.encode().unwrap()
    }

    fn jpeg_with_icc(image: &RgbImage, icc: &[u8]) -> Vec<u8> {
        jpeg_tagged(image, |encoder| encoder.add_icc_profile(icc).unwrap())
    }

    #[test]
    fn a_png_gamma_is_applied_as_chromium_applies_it() {
        // Checked in Chromium 156: grey 40 under gAMA 1.0 (linear) shows as 110.
        let linear = 100_000u32.to_be_bytes().to_vec();
        for grey in [false, true] {
            let bytes = png(&flat(8, 8, [40; 3]), grey, &[(b"gAMA", linear.clone())]);
            let pixel = *shown(&bytes, ImageFormat::Png, true).get_pixel(3, 3);
            assert!(pixel.0.iter().all(|&v| v.abs_diff(110) <= 1), "{pixel:?}");
            // An sRGB chunk overrides gAMA: shown as coded.
            let srgb = png(
                &flat(8, 8, [40; 3]),
                grey,
                &[(b"sRGB", vec![0]), (b"gAMA", linear.clone())],
            );
            assert_eq!(
                shown(&srgb, ImageFormat::Png, true).get_pixel(3, 3).0,
                [40; 3]
            );
        }
        // cICP (BT.709 primaries, linear transfer) outranks everything, sRGB included.
        let cicp = png(
            &flat(8, 8, [40; 3]),
            false,
            &[(b"cICP", vec![1, 8, 0, 1]), (b"sRGB", vec![0])],
        );
        let pixel = *shown(&cicp, ImageFormat::Png, true).get_pixel(3, 3);
        assert!(pixel.0.iter().all(|&v| v.abs_diff(110) <= 1), "{pixel:?}");
        // Swapped primaries in cHRM (red where green is): a red pixel shows green, with a
        // gAMA; cHRM alone changes nothing (both as Chromium 156 shows them).
        let mut chrm = Vec::new();
        for v in [31270u32, 32900, 30000, 60000, 64000, 33000, 15000, 6000] {
            chrm.extend_from_slice(&v.to_be_bytes());
        }
        let red = flat(8, 8, [255, 0, 0]);
        let srgb_gamma = 45_455u32.to_be_bytes().to_vec();
        let bytes = png(
            &red,
            false,
            &[(b"cHRM", chrm.clone()), (b"gAMA", srgb_gamma)],
        );
        let pixel = shown(&bytes, ImageFormat::Png, true).get_pixel(3, 3).0;
        assert!(pixel[1] > 200 && pixel[0] < 100, "{pixel:?}");
        let alone = png(&red, false, &[(b"cHRM", chrm)]);
        assert_eq!(
            shown(&alone, ImageFormat::Png, true).get_pixel(3, 3).0,
            [255, 0, 0]
        );
        // A gAMA alone within 5% of 1/2.2 is sRGB; past it, a pure power (Chromium 156:
        // grey 10 shows as 10 under 47700, as 4 under 47750; grey 40 as 25 under 40000).
        for (gamma, grey, want) in [(47_700u32, 10u8, 10u8), (47_750, 10, 4), (40_000, 40, 25)] {
            let bytes = png(
                &flat(8, 8, [grey; 3]),
                false,
                &[(b"gAMA", gamma.to_be_bytes().to_vec())],
            );
            let pixel = shown(&bytes, ImageFormat::Png, true).get_pixel(3, 3).0;
            assert!(
                pixel.iter().all(|&v| v.abs_diff(want) <= 1),
                "{gamma}: {pixel:?}"
            );
        }
    }

    #[test]
    fn an_icc_profile_is_applied_on_every_jpeg_path_and_an_srgb_one_changes_nothing() {
        // Stored inverted, shown upright by a profile whose curves invert.
        let picture = RgbImage::from_fn(320, 240, |x, y| Rgb([(x / 2) as u8, (y / 2) as u8, 200]));
        let inverted = RgbImage::from_fn(320, 240, |x, y| {
            Rgb(picture.get_pixel(x, y).0.map(|v| 255 - v))
        });
        // The curve takes level v to the light of level 255 - v: sRGB's decoding, reversed
        // (Chromium 156 shows such a JPEG, PNG and WebP restored).
        let srgb_light = |level: f64| {
            let v = level / 255.0;
            if v <= 0.04045 {
                v / 12.92
            } else {
                ((v + 0.055) / 1.055).powf(2.4)
            }
        };
        let bytes = jpeg_with_icc(
            &inverted,
            &profile_with_curve(|i| srgb_light(f64::from(255 - i))),
        );
        let plain = jpeg_with_icc(&picture, &ColorProfile::new_srgb().encode().unwrap());
        for reduce_jpeg in [false, true] {
            let restored = shown(&bytes, ImageFormat::Jpeg, reduce_jpeg);
            let upright = shown(&plain, ImageFormat::Jpeg, reduce_jpeg);
            let worst = restored
                .as_raw()
                .iter()
                .zip(upright.as_raw())
                .map(|(a, b)| a.abs_diff(*b))
                .max()
                .unwrap();
            assert!(
                worst <= 6,
                "reduce {reduce_jpeg}: off by {worst}: {:?} {:?} {:?} {:?}",
                restored.get_pixel(0, 0),
                upright.get_pixel(0, 0),
                restored.get_pixel(300, 200),
                upright.get_pixel(300, 200)
            );
        }
        let worst = gathered(&bytes)
            .as_raw()
            .iter()
            .zip(gathered(&plain).as_raw())
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap();
        assert!(worst <= 6, "gathered pixels off by {worst}");
        // An sRGB profile leaves every pixel as an untagged file's, on every path.
        let untagged = jpeg_tagged(&picture, |_| {});
        for reduce_jpeg in [false, true] {
            assert_eq!(
                shown(&plain, ImageFormat::Jpeg, reduce_jpeg),
                shown(&untagged, ImageFormat::Jpeg, reduce_jpeg)
            );
        }
        assert_eq!(gathered(&plain), gathered(&untagged));
    }

    #[test]
    fn unreadable_or_unfitting_descriptions_are_ignored_as_browsers_ignore_them() {
        let picture = flat(16, 16, [40, 80, 120]);
        let mut broken = profile_with_curve(|i| 1.0 - f64::from(i) / 255.0);
        broken.truncate(60);
        for icc in [broken, b"not a profile at all".to_vec(), vec![0; 200]] {
            let bytes = jpeg_with_icc(&picture, &icc);
            let pixel = shown(&bytes, ImageFormat::Jpeg, false).get_pixel(8, 8).0;
            assert!(
                pixel[0].abs_diff(40) <= 2 && pixel[2].abs_diff(120) <= 2,
                "{pixel:?}"
            );
            assert!(ToSrgb::new(&Description::Icc(icc)).is_none());
        }
        // A grey profile on RGB pixels: left as coded.
        let grey = ColorProfile::new_gray_with_gamma(1.0).encode().unwrap();
        let conversion = ToSrgb::new(&Description::Icc(grey)).expect("gamma 1 is not sRGB");
        let image = DynamicImage::ImageRgb8(picture.clone());
        assert_eq!(conversion.apply(image).to_rgb8(), picture);
        // Nor do unknown cICP codes or a zero gamma convert anything; degenerate primaries
        // (three equal points) leave sRGB's in place, under the gamma.
        assert!(from_cicp(200, 8).is_none() && from_cicp(1, 200).is_none());
        let zero = Description::Gamma {
            gamma: 0,
            chromaticities: None,
        };
        assert!(ToSrgb::new(&zero).is_none());
        let degenerate = Description::Gamma {
            gamma: 100_000,
            chromaticities: Some([31270, 32900, 30000, 60000, 30000, 60000, 30000, 60000]),
        };
        let grey = DynamicImage::ImageRgb8(flat(2, 2, [40; 3]));
        let pixel = ToSrgb::new(&degenerate)
            .unwrap()
            .apply(grey)
            .to_rgb8()
            .get_pixel(0, 0)
            .0;
        assert!(pixel.iter().all(|&v| v.abs_diff(110) <= 1), "{pixel:?}");
        // Chunks past the image data, or cut short, are not read.
        let mut late = png(&picture, false, &[]);
        let end = late.len() - 12;
        let mut chunk = vec![0, 0, 0, 4];
        chunk.extend_from_slice(b"gAMA");
        chunk.extend_from_slice(&100_000u32.to_be_bytes());
        chunk.extend_from_slice(&[0; 4]);
        late.splice(end..end, chunk);
        assert_eq!(png_description(&late, None), None);
        assert_eq!(png_description(&late[..20], None), None);
    }

    #[test]
    fn a_bmp_profile_is_applied_as_browsers_apply_it() {
        let picture = flat(8, 8, [40; 3]);
        let linear = profile_with_curve(|i| f64::from(i) / 255.0);
        let embedded = bmp_v5(&picture, 0x4D42_4544, &linear);
        let pixel = shown(&embedded, ImageFormat::Bmp, true).get_pixel(3, 3).0;
        assert!(pixel.iter().all(|&v| v.abs_diff(110) <= 1), "{pixel:?}");
        // Shown as coded: the sRGB colour space with the profile's fields set, the
        // profile's offset past the end, and a V4 header.
        let mut srgb = embedded.clone();
        srgb[70..74].copy_from_slice(b"BGRs");
        let mut past = embedded.clone();
        past[126..130].copy_from_slice(&u32::MAX.to_le_bytes());
        let mut v4 = embedded.clone();
        v4[14..18].copy_from_slice(&108u32.to_le_bytes());
        for (what, bytes) in [("sRGB", srgb), ("past the end", past), ("V4", v4)] {
            assert_eq!(bmp_profile(&bytes), None, "{what}");
        }
        assert_eq!(bmp_profile(&embedded), Some(linear));
        assert_eq!(bmp_profile(&embedded[..100]), None);
        assert_eq!(bmp_profile(&bmp_v5(&picture, 0x7352_4742, &[])), None);
        assert_eq!(
            shown(&bmp_v5(&picture, 0, &[]), ImageFormat::Bmp, true),
            picture
        );
    }

    #[test]
    fn a_bmp_calibration_is_a_second_rendering_as_firefox_shows_it() {
        // Grey 40, a red, a green, a blue: one pixel each.
        let colours = [[40, 40, 40], [200, 60, 30], [30, 180, 60], [40, 60, 200]];
        let picture = RgbImage::from_fn(4, 1, |x, _| Rgb(colours[x as usize]));
        let calibrated = |endpoints, gammas| bmp_calibrated(&picture, endpoints, gammas);
        let bt709 = [[0.64, 0.33], [0.30, 0.60], [0.15, 0.06]];
        // sRGB's D50 colorants' X and Y, as a writer filling the endpoints with XYZ puts
        // them (Firefox takes them for x and y all the same).
        let xyz = [[0.43607, 0.22250], [0.38515, 0.71687], [0.14307, 0.06061]];
        // What Firefox ESR 153 shows at each colour (headless screenshots); Chromium 156
        // shows every one of these files as coded.
        let cases = [
            (
                "BT.709 primaries, gamma 2.2",
                calibrated(bt709, [2.2; 3]),
                [[35, 35, 35], [201, 57, 24], [24, 181, 57], [35, 57, 201]],
            ),
            (
                "XYZ endpoints, gamma 1.0",
                calibrated(xyz, [1.0; 3]),
                [
                    [110, 110, 110],
                    [217, 134, 148],
                    [132, 217, 83],
                    [109, 134, 220],
                ],
            ),
            (
                "XYZ endpoints, gammas 1.8, 2.2, 3.0",
                calibrated(xyz, [1.8, 2.2, 3.0]),
                [[51, 35, 26], [195, 61, 122], [93, 180, 0], [43, 60, 178]],
            ),
            (
                "red and green primaries swapped, gamma 1.0",
                calibrated([bt709[1], bt709[0], bt709[2]], [1.0; 3]),
                [
                    [110, 110, 110],
                    [133, 229, 96],
                    [219, 96, 133],
                    [133, 110, 229],
                ],
            ),
        ];
        for (name, bytes, firefox) in cases {
            let decoded = decode_reduced(&bytes, ImageFormat::Bmp, LIMITS).unwrap();
            assert_eq!(decoded.image.to_rgb8(), picture, "{name}: as coded");
            let also = decoded.also_shown.expect(name);
            assert_eq!(also.by, "Firefox");
            let shown = also.image.to_rgb8();
            for (x, want) in (0u32..).zip(firefox) {
                let got = shown.get_pixel(x, 0).0;
                let close = got.iter().zip(want).all(|(&g, w)| g.abs_diff(w) <= 3);
                assert!(close, "{name}, colour {x}: {got:?}, Firefox shows {want:?}");
            }
        }
        // Zero endpoints (a V4/V5 header left blank), a degenerate triangle, the sRGB
        // colour space: one rendering.
        let degenerate = calibrated([[0.3, 0.3]; 3], [1.0; 3]);
        let mut srgb = calibrated(bt709, [1.0; 3]);
        srgb[70..74].copy_from_slice(b"BGRs");
        for bytes in [bmp_v5(&picture, 0, &[]), degenerate, srgb] {
            let decoded = decode_reduced(&bytes, ImageFormat::Bmp, LIMITS).unwrap();
            assert!(decoded.also_shown.is_none());
        }
    }

    #[test]
    fn a_png_cicp_is_judged_as_each_browser_reads_it() {
        let colours = [[40, 40, 40], [200, 60, 30], [30, 180, 60], [40, 60, 200]];
        let picture = RgbImage::from_fn(4, 1, |x, _| Rgb(colours[x as usize]));
        // What Chromium 156 and Firefox ESR 153 show (headless screenshots).
        let near = |image: &DynamicImage, shown: [[u8; 3]; 4], what: &str| {
            let image = image.to_rgb8();
            for (x, want) in (0u32..).zip(shown) {
                let got = image.get_pixel(x, 0).0;
                let close = got.iter().zip(want).all(|(&g, w)| g.abs_diff(w) <= 2);
                assert!(close, "{what}, colour {x}: {got:?}, shown as {want:?}");
            }
        };
        let bt709 = png(&picture, false, &[(b"cICP", vec![1, 1, 0, 1])]);
        let decoded = decode_reduced(&bt709, ImageFormat::Png, LIMITS).unwrap();
        let chromium = [[28, 28, 28], [197, 49, 18], [18, 176, 49], [28, 49, 197]];
        near(&decoded.image, chromium, "BT.709 transfer, Chromium");
        let firefox = decoded.also_shown.expect("Firefox's rendering");
        assert_eq!(firefox.by, "Firefox");
        near(&firefox.image, colours, "BT.709 transfer, Firefox");
        // Display P3 under sRGB's transfer: read alike, one rendering.
        let p3 = png(&picture, false, &[(b"cICP", vec![12, 13, 0, 1])]);
        let decoded = decode_reduced(&p3, ImageFormat::Png, LIMITS).unwrap();
        let both = [[40, 40, 40], [217, 42, 0], [0, 183, 31], [34, 61, 208]];
        near(&decoded.image, both, "Display P3");
        assert!(decoded.also_shown.is_none());
    }

    #[test]
    fn a_grey_profile_converts_grey_pixels() {
        let grey = ColorProfile::new_gray_with_gamma(1.0).encode().unwrap();
        let conversion = ToSrgb::new(&Description::Icc(grey)).unwrap();
        let image = DynamicImage::ImageLuma8(image::GrayImage::from_pixel(4, 4, image::Luma([40])));
        let shown = conversion.apply(image);
        assert_eq!(shown.dimensions(), (4, 4));
        let pixel = shown.to_rgb8().get_pixel(1, 1).0;
        assert!(pixel.iter().all(|&v| v.abs_diff(110) <= 1), "{pixel:?}");
    }
}
