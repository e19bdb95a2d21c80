//! Images the tests serve and compare: the fidelity set's real photos, encoded per format.

use super::origin::{Body, Resource};
use edge_moderation::media::ImageFormat as Format;
use image::{DynamicImage, ExtendedColorType, ImageEncoder, ImageFormat};
use std::collections::HashMap;
use std::io::Cursor;
use std::path::Path;

/// The policy the suites drive block and rewrite with, on the benign `Drawing` class
/// (`format_images`: `/drawing.*` blocked with 451, `/rocket.*` pixelated), with `extra`
/// fields (`"cache": {...}, ...`, or empty) added.
pub fn drawing_policy(extra: &str) -> String {
    let separator = if extra.is_empty() { "" } else { "," };
    format!(
        r#"{{
  "rules": [
    {{"classes": ["Drawing"], "at_least": 0.93, "action": "block"}},
    {{"classes": ["Drawing"], "at_least": 0.5, "action": "rewrite"}}
  ],
  "rewrite": {{"method": "pixelate", "strength": 0.05}},
  "block": {{"status": 451}}{separator}
  {extra}
}}"#
    )
}

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs a reference script of `tests/reference/` (Python, with the packages `make setup`
/// installs) on `args`; its standard output. `what` names the reference in the failure.
#[allow(dead_code)] // each test crate uses a different part of the support module
pub fn run_reference(script: &str, args: &[&Path], what: &str) -> String {
    let output = std::process::Command::new("python3")
        .arg(repo().join("tests/reference").join(script))
        .args(args)
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "the reference ({what}) failed; `make setup` installs it:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// Fails listing every file that disagreed with its reference, out of `total`.
pub fn assert_all_agree(failures: &[String], total: usize) {
    assert!(
        failures.is_empty(),
        "{} of {total} differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

pub fn fidelity_image(name: &str) -> DynamicImage {
    image::open(repo().join("models/fidelity/images").join(name)).expect("fidelity image")
}

pub fn encode(image: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    if format == ImageFormat::Ico {
        // An icon is at most 256 px a side, and image-rs reads back only RGBA entries.
        let icon = DynamicImage::ImageRgba8(image.thumbnail(256, 256).to_rgba8());
        let mut out = Cursor::new(Vec::new());
        icon.write_to(&mut out, format)
            .expect("encode icon fixture");
        return out.into_inner();
    }
    let image = match format {
        ImageFormat::Jpeg => DynamicImage::ImageRgb8(image.to_rgb8()),
        _ => DynamicImage::ImageRgba8(image.to_rgba8()),
    };
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, format).expect("encode fixture");
    out.into_inner()
}

/// The photos every suite serves, in every format the service reads, by path:
/// `/photo.EXT` (an astronaut, ~0.06 Drawing: passes the test policy), `/rocket.EXT`
/// (~0.81 Drawing: rewritten by it, served with validators and caching headers) and
/// `/drawing.EXT` (a cropped photo, ~0.97 Drawing: blocked by it).
pub fn format_images() -> HashMap<&'static str, Resource> {
    let photo = fidelity_image("photo_astronaut.png");
    let rocket = fidelity_image("photo_rocket.png");
    let drawing_like = fidelity_image("panorama_wide.png");
    let mut fixtures = HashMap::new();
    // Icons are at most 256 px a side; these crops classify as the full images do under
    // the test policy (a thumbnail of the panorama would not).
    let icon_rocket = rocket.crop_imm(192, 85, 256, 256);
    let icon_drawing = fidelity_image("flat_logo_alpha.png").crop_imm(44, 44, 256, 256);
    // AVIF and JPEG XL have no encoder here: their fixtures are files libavif and libjxl wrote (tests/fixtures).
    for format in Format::ALL.into_iter().filter(|f| f.rewritten_as() == *f) {
        let (ext, mime, codec) = (
            format.extension(),
            format.mime_type(),
            format.codec().expect("image-rs encodes it"),
        );
        let (rocket, drawing_like) = match format {
            Format::Ico => (&icon_rocket, &icon_drawing),
            _ => (&rocket, &drawing_like),
        };
        let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
        fixtures.insert(
            leak(format!("/photo.{ext}")),
            Resource::bytes(mime, encode(&photo, codec)),
        );
        fixtures.insert(
            leak(format!("/rocket.{ext}")),
            Resource::bytes(mime, encode(rocket, codec))
                .with_header("ETag", "\"original\"")
                .with_header("Content-MD5", "bm90IHJlYWxseQ==")
                .with_header("Cache-Control", "public, max-age=600"),
        );
        fixtures.insert(
            leak(format!("/drawing.{ext}")),
            Resource::bytes(mime, encode(drawing_like, codec)),
        );
    }
    fixtures
}

/// The bytes a fixture serves.
pub fn bytes_of(fixtures: &HashMap<&'static str, Resource>, path: &str) -> Vec<u8> {
    match &fixtures[path].body {
        Body::Bytes(bytes) => bytes.to_vec(),
        Body::Pattern(_) => panic!("{path} is generated while streaming"),
    }
}

/// `image` as a JPEG, PNG or WebP that stores it turned, with the EXIF orientation (`value`,
/// 1–8) that turns it back: a browser shows `image`, a reader ignoring EXIF does not.
pub fn turned(image: &DynamicImage, value: u16, format: ImageFormat) -> Vec<u8> {
    let stored = match value {
        6 => image.rotate270(), // shown rotated 90° clockwise
        8 => image.rotate90(),  // shown rotated 270° clockwise
        3 => image.rotate180(),
        _ => image.clone(),
    }
    .to_rgb8();
    // A TIFF header and one IFD entry: tag 0x0112 (Orientation), type SHORT, count 1,
    // the value; no next IFD.
    let mut tiff = b"MM\0\x2a\0\0\0\x08\0\x01".to_vec();
    tiff.extend_from_slice(&[0x01, 0x12, 0, 3, 0, 0, 0, 1]);
    tiff.extend_from_slice(&value.to_be_bytes());
    tiff.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    tagged(&stored, Tag::Exif(tiff), format)
}

/// An animated GIF: each frame (resized to the last's size) shown for its milliseconds.
pub fn animated_gif(frames: &[(&DynamicImage, u32)]) -> Vec<u8> {
    let last = frames[frames.len() - 1].0;
    let (width, height) = (last.width(), last.height());
    let mut out = Vec::new();
    {
        let mut encoder = image::codecs::gif::GifEncoder::new_with_speed(&mut out, 30);
        encoder
            .set_repeat(image::codecs::gif::Repeat::Infinite)
            .expect("loop");
        for (image, ms) in frames {
            let frame = image.resize_exact(width, height, image::imageops::FilterType::Triangle);
            let delay = image::Delay::from_numer_denom_ms(*ms, 1);
            encoder
                .encode_frame(image::Frame::from_parts(frame.to_rgba8(), 0, 0, delay))
                .expect("encode frame");
        }
    }
    out
}

/// An APNG whose default image (`IDAT`, what a reader ignoring animation shows) is the
/// first frame, each frame (resized to the last's size) shown for its milliseconds; with
/// `icc`, an `iCCP` chunk that says how every frame is shown.
pub fn animated_png(frames: &[(&DynamicImage, u16)], icc: Option<&[u8]>) -> Vec<u8> {
    let last = frames[frames.len() - 1].0;
    let (width, height) = (last.width(), last.height());
    let mut out = Vec::new();
    {
        let mut info = png::Info::with_size(width, height);
        info.icc_profile = icc.map(std::borrow::Cow::Borrowed);
        let mut encoder = png::Encoder::with_info(&mut out, info).expect("PNG header");
        encoder.set_color(png::ColorType::Rgba);
        encoder.set_depth(png::BitDepth::Eight);
        encoder
            .set_animated(frames.len() as u32, 0)
            .expect("animated");
        let mut writer = encoder.write_header().expect("header");
        for (image, ms) in frames {
            let frame = image.resize_exact(width, height, image::imageops::FilterType::Triangle);
            writer.set_frame_delay(*ms, 1000).expect("delay");
            writer
                .write_image_data(frame.to_rgba8().as_raw())
                .expect("frame");
        }
        writer.finish().expect("finish");
    }
    out
}

/// An animated WebP (the extended format: `VP8X`, `ICCP` with `icc`, `ANIM`, one `ANMF` a
/// frame holding a lossless `VP8L` bitstream), each frame (resized to the last's size)
/// shown for its milliseconds. image-rs writes only stills, so the container is put
/// together here from the RIFF layout of Google's WebP container specification.
pub fn animated_webp(frames: &[(&DynamicImage, u16)], icc: Option<&[u8]>) -> Vec<u8> {
    let last = frames[frames.len() - 1].0;
    let (width, height) = (last.width(), last.height());
    let u24 = |v: u32| v.to_le_bytes()[..3].to_vec();
    let chunk = |tag: &[u8], data: &[u8]| {
        let mut out = [tag, &(data.len() as u32).to_le_bytes()[..], data].concat();
        if data.len() % 2 == 1 {
            out.push(0);
        }
        out
    };
    // VP8X flags: ICC profile (bit 5) and animation (bit 1).
    let flags = if icc.is_some() { 0x20 | 0x02 } else { 0x02 };
    let mut body = b"WEBP".to_vec();
    body.extend(chunk(
        b"VP8X",
        &[vec![flags, 0, 0, 0], u24(width - 1), u24(height - 1)].concat(),
    ));
    if let Some(icc) = icc {
        body.extend(chunk(b"ICCP", icc));
    }
    // Background white, looping forever.
    body.extend(chunk(b"ANIM", &[255, 255, 255, 255, 0, 0]));
    for (image, ms) in frames {
        let frame = image.resize_exact(width, height, image::imageops::FilterType::Triangle);
        let still = encode(
            &DynamicImage::ImageRgba8(frame.to_rgba8()),
            ImageFormat::WebP,
        );
        // A simple-format lossless still: "RIFF" size "WEBP" then its one VP8L chunk.
        assert_eq!(
            &still[12..16],
            b"VP8L",
            "image-rs writes a simple lossless WebP"
        );
        let header = [
            u24(0),
            u24(0),
            u24(width - 1),
            u24(height - 1),
            u24(u32::from(*ms)),
            // Not blended onto the previous frame, nor disposed.
            vec![0x02],
        ]
        .concat();
        body.extend(chunk(b"ANMF", &[&header[..], &still[12..]].concat()));
    }
    [&b"RIFF"[..], &(body.len() as u32).to_le_bytes(), &body].concat()
}

/// `data` gzip-compressed (a `Content-Encoding: gzip` body).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).expect("compress fixture");
    encoder.finish().expect("finish gzip")
}

/// `data` zlib-compressed (HTTP's `Content-Encoding: deflate`).
pub fn zlib(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).expect("compress fixture");
    encoder.finish().expect("finish zlib")
}

/// The colour at the centre of the `cell`-sized cell at (`x`, `y`), clamped to the image.
fn cell_colour(rgb: &image::RgbImage, cell: u32, x: u32, y: u32) -> [u8; 3] {
    let (width, height) = rgb.dimensions();
    rgb.get_pixel(
        (x + cell / 2).min(width - 1),
        (y + cell / 2).min(height - 1),
    )
    .0
}

/// Colours a tracing joins into one run: the same top 4 bits per channel.
fn alike(a: [u8; 3], b: [u8; 3]) -> bool {
    a.iter().zip(b).all(|(a, b)| a >> 4 == b >> 4)
}

/// `image` traced into an SVG of vectors only, as tracing tools do coarsely: each row of
/// `cell`×`cell` blocks becomes rectangles, a block joining the rectangle on its left
/// while its colour is alike (same top 4 bits per channel).
pub fn traced_svg(image: &DynamicImage, cell: u32) -> Vec<u8> {
    let rgb = image.to_rgb8();
    let (width, height) = rgb.dimensions();
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" shape-rendering="crispEdges">"#
    );
    let colour = |x: u32, y: u32| cell_colour(&rgb, cell, x, y);
    for y in (0..height).step_by(cell as usize) {
        let mut x = 0;
        while x < width {
            let [r, g, b] = colour(x, y);
            let mut run = cell;
            while x + run < width && alike(colour(x + run, y), [r, g, b]) {
                run += cell;
            }
            svg.push_str(&format!(
                r##"<rect x="{x}" y="{y}" width="{run}" height="{cell}" fill="#{r:02x}{g:02x}{b:02x}"/>"##
            ));
            x += run;
        }
    }
    svg.push_str("</svg>");
    svg.into_bytes()
}

/// `image` written in coloured characters: each row of `cell`×`cell` blocks a `<text>` of
/// full-block glyphs (U+2588), one `<tspan>` per run of alike colour (as [`traced_svg`]
/// joins them), at the size where a glyph of the embedded font (DejaVu Sans, whose block
/// advances 1575/2048 em) is a cell wide. A browser draws it with its own font; so does
/// the filter, with the one it embeds.
pub fn text_cells_svg(image: &DynamicImage, cell: u32) -> Vec<u8> {
    let rgb = image.to_rgb8();
    let (width, height) = rgb.dimensions();
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="DejaVu Sans" font-size="{:.3}">"#,
        cell as f32 * 2048.0 / 1575.0
    );
    let colour = |x: u32, y: u32| cell_colour(&rgb, cell, x, y);
    for y in (0..height).step_by(cell as usize) {
        svg.push_str(&format!(r#"<text x="0" y="{}">"#, y + cell));
        let mut x = 0;
        while x < width {
            let [r, g, b] = colour(x, y);
            let mut run = 1;
            while x + run * cell < width && alike(colour(x + run * cell, y), [r, g, b]) {
                run += 1;
            }
            svg.push_str(&format!(
                r##"<tspan fill="#{r:02x}{g:02x}{b:02x}">{}</tspan>"##,
                "\u{2588}".repeat(run as usize)
            ));
            x += run * cell;
        }
        svg.push_str("</text>");
    }
    svg.push_str("</svg>");
    svg.into_bytes()
}

/// `image` painted by HTML in a `<foreignObject>`, as CSS pixel art is: one box with a
/// shadow per `cell`-sized cell, which a browser shows in `<img>` and resvg does not draw.
pub fn html_boxes_svg(image: &DynamicImage, cell: u32) -> Vec<u8> {
    let rgb = image.to_rgb8();
    let (width, height) = rgb.dimensions();
    let shadows: Vec<String> = (0..height)
        .step_by(cell as usize)
        .flat_map(|y| (0..width).step_by(cell as usize).map(move |x| (x, y)))
        .map(|(x, y)| {
            let [r, g, b] = rgb.get_pixel(x, y).0;
            format!("{x}px {y}px 0 #{r:02x}{g:02x}{b:02x}")
        })
        .collect();
    format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}"><foreignObject width="{width}" height="{height}"><div xmlns="http://www.w3.org/1999/xhtml" style="width:{cell}px;height:{cell}px;box-shadow:{}"></div></foreignObject></svg>"#,
        shadows.join(",")
    )
    .into_bytes()
}

/// An SVG drawing inline in the HTML of another SVG's `<foreignObject>`.
pub fn in_html_svg(svg: &[u8]) -> Vec<u8> {
    let inner = String::from_utf8_lossy(svg);
    format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="1400" height="800"><foreignObject width="100%" height="100%"><div xmlns="http://www.w3.org/1999/xhtml">{inner}</div></foreignObject></svg>"#
    )
    .into_bytes()
}

/// `image` cut into `count` vertical strips, each an `<image>` of its own PNG, laid side
/// by side in an SVG: a browser shows the picture whole, each strip alone is a part.
pub fn strips_svg(image: &DynamicImage, count: u32) -> Vec<u8> {
    use base64::Engine;
    let (width, height) = (image.width(), image.height());
    let mut svg =
        format!(r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">"#);
    for i in 0..count {
        let (x0, x1) = (i * width / count, (i + 1) * width / count);
        let strip = image.crop_imm(x0, 0, x1 - x0, height);
        let png =
            base64::engine::general_purpose::STANDARD.encode(encode(&strip, ImageFormat::Png));
        svg.push_str(&format!(
            r#"<image x="{x0}" href="data:image/png;base64,{png}"/>"#
        ));
    }
    svg.push_str("</svg>");
    svg.into_bytes()
}

/// `image` encoded in `format` (JPEG, PNG, WebP or BMP) with the ICC profile `icc`
/// embedded (APP2, `iCCP`, `ICCP`, a V5 header's).
pub fn profiled(image: &DynamicImage, icc: &[u8], format: ImageFormat) -> Vec<u8> {
    tagged(&image.to_rgb8(), Tag::Icc(icc.to_vec()), format)
}

/// What a fixture's header carries beside its pixels.
enum Tag {
    /// A bare TIFF structure: JPEG carries it in APP1 after "Exif\0\0", PNG (`eXIf`) and
    /// WebP (`EXIF`) bare.
    Exif(Vec<u8>),
    /// An ICC profile: JPEG APP2, PNG `iCCP`, WebP `ICCP`.
    Icc(Vec<u8>),
    /// A BMP's calibrated RGB: each primary's first two endpoint fields (x and y to
    /// Firefox) and each channel's gamma.
    Calibrated {
        endpoints: [[f64; 2]; 3],
        gammas: [f64; 3],
    },
}

/// `image` as a 24-bit BMP whose V5 header is in `LCS_CALIBRATED_RGB` with these
/// `endpoints` and `gammas`: Firefox ESR 153 shows it through them, Chromium 156 as coded.
pub fn calibrated_bmp(image: &DynamicImage, endpoints: [[f64; 2]; 3], gammas: [f64; 3]) -> Vec<u8> {
    tagged(
        &image.to_rgb8(),
        Tag::Calibrated { endpoints, gammas },
        ImageFormat::Bmp,
    )
}

/// `stored` as a JPEG (quality 95), PNG, lossless WebP or (with a profile) 24-bit BMP whose
/// header carries `tag`.
fn tagged(stored: &image::RgbImage, tag: Tag, format: ImageFormat) -> Vec<u8> {
    let (width, height) = stored.dimensions();
    let mut out = Vec::new();
    match format {
        ImageFormat::Jpeg => {
            let mut encoder = jpeg_encoder::Encoder::new(&mut out, 95);
            match tag {
                Tag::Exif(tiff) => encoder
                    .add_app_segment(1, [&b"Exif\0\0"[..], &tiff].concat())
                    .expect("EXIF segment"),
                Tag::Icc(icc) => encoder.add_icc_profile(&icc).expect("JPEG ICC"),
                Tag::Calibrated { .. } => panic!("calibrated RGB is a BMP's"),
            }
            let side = |side: u32| u16::try_from(side).expect("fixture fits a JPEG");
            encoder
                .encode(
                    stored.as_raw(),
                    side(width),
                    side(height),
                    jpeg_encoder::ColorType::Rgb,
                )
                .expect("encode tagged fixture");
        }
        ImageFormat::Png => {
            let mut encoder = image::codecs::png::PngEncoder::new(&mut out);
            match tag {
                Tag::Exif(tiff) => encoder.set_exif_metadata(tiff).expect("PNG eXIf"),
                Tag::Icc(icc) => encoder.set_icc_profile(icc).expect("PNG iCCP"),
                Tag::Calibrated { .. } => panic!("calibrated RGB is a BMP's"),
            }
            encoder
                .write_image(stored.as_raw(), width, height, ExtendedColorType::Rgb8)
                .expect("encode tagged fixture");
        }
        ImageFormat::WebP => {
            let mut encoder = image::codecs::webp::WebPEncoder::new_lossless(&mut out);
            match tag {
                Tag::Exif(tiff) => encoder.set_exif_metadata(tiff).expect("WebP EXIF"),
                Tag::Icc(icc) => encoder.set_icc_profile(icc).expect("WebP ICCP"),
                Tag::Calibrated { .. } => panic!("calibrated RGB is a BMP's"),
            }
            encoder
                .write_image(stored.as_raw(), width, height, ExtendedColorType::Rgb8)
                .expect("encode tagged fixture");
        }
        ImageFormat::Bmp => {
            // The colour space, the endpoints and gammas (36 and 12 bytes), the profile.
            let (space, calibration, icc) = match tag {
                Tag::Icc(icc) => (0x4D42_4544u32, Vec::new(), icc),
                Tag::Calibrated { endpoints, gammas } => {
                    let fields = endpoints
                        .into_iter()
                        .flat_map(|[x, y]| [x * f64::from(1 << 30), y * f64::from(1 << 30), 0.0])
                        .chain(gammas.map(|gamma| gamma * 65536.0));
                    let bytes = fields.flat_map(|f| (f as u32).to_le_bytes()).collect();
                    (0, bytes, Vec::new())
                }
                Tag::Exif(_) => panic!("a BMP carries no EXIF"),
            };
            image::codecs::bmp::BmpEncoder::new(&mut out)
                .write_image(stored.as_raw(), width, height, ExtendedColorType::Rgb8)
                .expect("encode tagged fixture");
            // image-rs writes a 40-byte BITMAPINFOHEADER: grown here to a V5 header (124
            // bytes) in the colour space the tag gives, a profile after the pixels.
            assert_eq!(out[14..18], 40u32.to_le_bytes(), "image-rs's BMP header");
            let pixels = out.split_off(54);
            let mut info = out.split_off(14);
            info.splice(0..4, 124u32.to_le_bytes());
            info.extend_from_slice(&[0; 16]); // channel masks, unused at 24 bits
            info.extend_from_slice(&space.to_le_bytes());
            info.extend_from_slice(&calibration);
            info.resize(info.len() + 48 - calibration.len(), 0);
            let at = (info.len() + 4 * 4 + pixels.len()) as u32;
            for field in [4, at, icc.len() as u32, 0] {
                info.extend_from_slice(&field.to_le_bytes());
            }
            let size = (14 + info.len() + pixels.len() + icc.len()) as u32;
            out.splice(2..6, size.to_le_bytes());
            out.splice(10..14, (14 + info.len() as u32).to_le_bytes());
            out.extend([info, pixels, icc].concat());
        }
        other => panic!("no tagged fixture in {other:?}"),
    }
    out
}

/// An ICC profile with sRGB's primaries whose curves show each channel's level v as
/// level (v / 32) × 36: eight levels a channel, a poster of the picture (Chromium 156
/// shows such curves applied in JPEG, PNG and WebP). The astronaut photo, 0.06 Drawing
/// as stored, is 0.79 Drawing so shown.
pub fn posterising_profile() -> Vec<u8> {
    let light = |level: f64| {
        let v = level / 255.0;
        if v <= 0.04045 {
            v / 12.92
        } else {
            ((v + 0.055) / 1.055).powf(2.4)
        }
    };
    let curve = moxcms::ToneReprCurve::Lut(
        (0..256u16)
            .map(|v| (light(f64::from(v / 32 * 36)) * 65535.0).round() as u16)
            .collect(),
    );
    let mut profile = moxcms::ColorProfile::new_srgb();
    profile.cicp = None;
    profile.red_trc = Some(curve.clone());
    profile.green_trc = Some(curve.clone());
    profile.blue_trc = Some(curve);
    profile.encode().expect("an ICC profile")
}
