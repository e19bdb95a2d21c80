//! The Compute module's HTTP behaviour end to end: the real pre-initialised wasm under
//! `viceroy serve`, a real origin on loopback, real HTTP. Needs `bin/main.wasm` (`make test`
//! builds it).
//!
//! Block and rewrite are driven by a test policy on the benign `Drawing` class
//! (`support::fixtures::format_images`): `/drawing.*` is blocked, `/rocket.*` rewritten,
//! `/photo.*` passes.

mod support;

use edge_moderation::headers;
use edge_moderation::media::ImageFormat as Format;
use image::GenericImageView;
use std::collections::HashMap;
use std::sync::OnceLock;
use support::fixtures::{
    animated_gif, animated_png, animated_webp, bytes_of, calibrated_bmp, drawing_policy,
    format_images, gzip, html_boxes_svg, in_html_svg, posterising_profile, profiled, strips_svg,
    text_cells_svg, traced_svg, turned, zlib,
};
use support::{encode, fidelity_image, pattern_byte, Body, Origin, Reply, Resource, Service};

const BIG_STREAM: u64 = 50 * 1024 * 1024 + 17;

/// The suites' Drawing policy, plus tighter limits whose oversize outcome is pass.
fn test_policy() -> String {
    drawing_policy(
        r#""limits": {"max_bytes": 2000000, "max_pixels": 4000000}, "on_oversize": "pass""#,
    )
}

struct World {
    fixtures: HashMap<&'static str, Resource>,
    default_policy: Service,
    /// Blocks `Neutral` ≥ 0.5: a photo in grey is Neutral to the model, a flat colour is
    /// not, so a picture hidden in an alpha channel can be told from its black ink.
    neutral_policy: Service,
    test_policy: Service,
    invalid_policy: Service,
    origin_down: Service,
}

fn fixtures() -> HashMap<&'static str, Resource> {
    let photo = fidelity_image("photo_astronaut.png");
    let drawing_like = fidelity_image("panorama_wide.png");
    let mut fixtures = format_images();
    let jpeg = encode(&photo, image::ImageFormat::Jpeg);
    let drawing_png = encode(&drawing_like, image::ImageFormat::Png);
    fixtures.insert(
        "/lying.txt",
        Resource::bytes("text/plain", drawing_png.clone()),
    );
    // Every format browsers sniff, served as something else: each is judged.
    for (path, codec) in [
        ("/sniffed-bmp.bin", image::ImageFormat::Bmp),
        ("/sniffed-tiff.bin", image::ImageFormat::Tiff),
        ("/sniffed-webp.txt", image::ImageFormat::WebP),
    ] {
        fixtures.insert(
            path,
            Resource::bytes("application/octet-stream", encode(&drawing_like, codec)),
        );
    }
    // The icon stand-in (`format_images`) as an icon and as a cursor (directory type 2,
    // which Chromium shows as it shows an icon), under a type that is not an image.
    let icon = bytes_of(&fixtures, "/drawing.ico");
    let mut cursor = icon.clone();
    cursor[2] = 2;
    for (path, bytes) in [("/sniffed-ico.bin", icon), ("/sniffed-cur.bin", cursor)] {
        fixtures.insert(path, Resource::bytes("application/octet-stream", bytes));
    }
    // Two entries: a small photo whose directory claims 32 bits per pixel (image-rs's
    // pick) and the large stand-in claiming 8 (the one Chromium shows). Every entry is
    // judged; a photo at two sizes passes.
    let photo = fidelity_image("photo_astronaut.png");
    let logo = fidelity_image("flat_logo_alpha.png").crop_imm(44, 44, 256, 256);
    fixtures.insert(
        "/icon-two-entries.bin",
        Resource::bytes(
            "application/octet-stream",
            icon_of(&[(photo.thumbnail(32, 32), 32), (logo, 8)]),
        ),
    );
    fixtures.insert(
        "/icon-photo.ico",
        Resource::bytes(
            "image/x-icon",
            icon_of(&[
                (photo.thumbnail(48, 48), 32),
                (photo.thumbnail(128, 128), 32),
            ]),
        ),
    );
    // multipart/x-mixed-replace (an MJPEG camera's kind of stream): browsers show its
    // parts one after the other in <img>.
    let photo_png = bytes_of(&fixtures, "/photo.png");
    let photo_jpg = bytes_of(&fixtures, "/photo.jpg");
    let drawing_png = bytes_of(&fixtures, "/drawing.png");
    let stream = |parts: &[(&str, &[u8])]| {
        let mut body = Vec::new();
        for (kind, bytes) in parts {
            body.extend_from_slice(format!("--frame\r\nContent-Type: {kind}\r\n\r\n").as_bytes());
            body.extend_from_slice(bytes);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"--frame--\r\n");
        body
    };
    let replacing = "multipart/x-mixed-replace; boundary=frame";
    for (path, parts) in [
        (
            "/stream-drawing",
            vec![
                ("image/png", &photo_png[..]),
                ("image/png", &drawing_png[..]),
            ],
        ),
        (
            "/stream-photo",
            vec![
                ("image/png", &photo_png[..]),
                ("image/jpeg", &photo_jpg[..]),
            ],
        ),
        (
            "/stream-text",
            vec![("text/plain", &b"one"[..]), ("text/plain", &b"two"[..])],
        ),
        ("/stream-long", vec![("image/jpeg", &photo_jpg[..]); 5]),
    ] {
        fixtures.insert(path, Resource::bytes(replacing, stream(&parts)));
    }
    fixtures.insert(
        "/stream-no-boundary",
        Resource::bytes(
            "multipart/x-mixed-replace",
            stream(&[("image/png", &photo_png)]),
        ),
    );
    let hidden = picture_in_alpha(&fidelity_image("photo_rocket.png"));
    fixtures.insert(
        "/alpha-hidden.png",
        Resource::bytes("image/png", encode(&hidden, image::ImageFormat::Png)),
    );
    fixtures.insert(
        "/alpha-hidden.webp",
        Resource::bytes("image/webp", encode(&hidden, image::ImageFormat::WebP)),
    );
    // A translucent flat tint: flat colour over either backdrop.
    let sticker = image::RgbaImage::from_pixel(300, 300, image::Rgba([200, 30, 30, 128]));
    fixtures.insert(
        "/alpha-sticker.png",
        Resource::bytes(
            "image/png",
            encode(
                &image::DynamicImage::ImageRgba8(sticker),
                image::ImageFormat::Png,
            ),
        ),
    );
    // SVGs embedding rasters as data: URIs, one of them through a DTD entity.
    let b64 = |bytes: &[u8]| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(bytes)
    };
    let drawing_svg = format!(
        r#"<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY pic "data:image/png;base64,{}">]>
<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="1400" height="160">
<image xlink:href="data:image/jpeg;base64,{}" width="10" height="10"/>
<image href="&pic;" width="1400" height="160"/></svg>"#,
        b64(&encode(&drawing_like, image::ImageFormat::Png)),
        b64(&jpeg),
    );
    // SVGs that show the drawing-like picture only when drawn: traced into vector
    // shapes, and cut into strips; the photo traced the same way passes.
    for (path, svg) in [
        ("/traced-drawing.svg", traced_svg(&drawing_like, 6)),
        ("/strips-drawing.svg", strips_svg(&drawing_like, 6)),
        ("/traced-photo.svg", traced_svg(&photo, 8)),
        // Written in coloured characters, which browsers draw with their fonts: a logo
        // (the drawing-like panorama is past the drawing bound in cells the model still
        // reads as a drawing), and a photo.
        (
            "/text-drawing.svg",
            text_cells_svg(&fidelity_image("flat_logo_alpha.png"), 10),
        ),
        (
            "/text-photo.svg",
            text_cells_svg(&fidelity_image("photo_cat.png"), 12),
        ),
        // Painted by HTML, which resvg does not draw: boxes, and an inline SVG.
        ("/html-boxes-drawing.svg", html_boxes_svg(&drawing_like, 6)),
        (
            "/html-inline-drawing.svg",
            in_html_svg(&traced_svg(&drawing_like, 6)),
        ),
    ] {
        fixtures.insert(path, Resource::bytes("image/svg+xml", svg));
    }
    fixtures.insert(
        "/embedded-drawing.svg",
        Resource::bytes("image/svg+xml", drawing_svg.clone().into_bytes()),
    );
    fixtures.insert(
        "/embedded-drawing.svgz",
        Resource::bytes("image/svg+xml", gzip(drawing_svg.as_bytes()))
            .with_header("Content-Encoding", "gzip"),
    );
    fixtures.insert(
        "/embedded-photo.svg",
        Resource::bytes(
            "image/svg+xml",
            format!(
                r#"<svg xmlns="http://www.w3.org/2000/svg"><rect style="fill: url('data:image/jpeg;base64,{}')"/></svg>"#,
                b64(&jpeg)
            )
            .into_bytes(),
        ),
    );
    // A benign first frame for 80 ms, then the stand-in.
    let photo_small = photo.thumbnail(400, 400);
    fixtures.insert(
        "/animated-drawing.gif",
        Resource::bytes(
            "image/gif",
            animated_gif(&[(&photo_small, 80), (&drawing_like, 5000)]),
        ),
    );
    fixtures.insert(
        "/animated-drawing.png",
        Resource::bytes(
            "image/png",
            animated_png(&[(&photo_small, 80), (&drawing_like, 5000)], None),
        ),
    );
    fixtures.insert(
        "/animated-photo.gif",
        Resource::bytes(
            "image/gif",
            animated_gif(&[(&photo_small, 500), (&photo_small.fliph(), 500)]),
        ),
    );
    // A still GIF whose logical screen says 1×1 over its whole frame: browsers grow the
    // screen to hold the first frame and show it whole; read clipped to the screen, it
    // was judged on one pixel.
    for (path, image) in [
        ("/screen-1x1-drawing.gif", &drawing_like),
        ("/screen-1x1-photo.gif", &photo_small),
    ] {
        let mut bytes = animated_gif(&[(image, 0)]);
        bytes[6..10].copy_from_slice(&[1, 0, 1, 0]);
        fixtures.insert(path, Resource::bytes("image/gif", bytes));
    }
    // Animated WebP (libwebp through Pillow, tests/fixtures; image-rs cannot write one):
    // the same benign 80 ms first frame then the stand-in, and a photo flipped.
    for stem in ["animated_drawing", "animated_photo"] {
        let bytes =
            std::fs::read(support::repo().join(format!("tests/fixtures/{stem}.webp"))).unwrap();
        let path = format!("/{}.webp", stem.replace('_', "-"));
        fixtures.insert(
            Box::leak(path.into_boxed_str()),
            Resource::bytes("image/webp", bytes),
        );
    }
    // Stored turned, shown upright by its EXIF orientation. Colour-managed: the photo
    // stored as it is, under a profile that shows it as a poster (the stand-in); and under
    // a plain sRGB profile, shown as stored.
    let srgb = moxcms::ColorProfile::new_srgb()
        .encode()
        .expect("sRGB profile");
    for (ext, mime, format) in [
        ("jpg", "image/jpeg", image::ImageFormat::Jpeg),
        ("png", "image/png", image::ImageFormat::Png),
        ("webp", "image/webp", image::ImageFormat::WebP),
        ("bmp", "image/bmp", image::ImageFormat::Bmp),
    ] {
        let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
        // A BMP has no EXIF: profiled only.
        let oriented = (format != image::ImageFormat::Bmp).then(|| {
            [
                ("oriented-drawing", turned(&drawing_like, 6, format)),
                ("oriented-photo", turned(&photo, 8, format)),
            ]
        });
        let profiled = [
            (
                "profiled-drawing",
                profiled(&photo, &posterising_profile(), format),
            ),
            ("profiled-photo", profiled(&photo, &srgb, format)),
        ];
        for (path, bytes) in oriented.into_iter().flatten().chain(profiled) {
            fixtures.insert(leak(format!("/{path}.{ext}")), Resource::bytes(mime, bytes));
        }
    }
    // A BMP's calibrated RGB, which Firefox applies and Chromium ignores: the photo as
    // coded under gamma 1/256 (Firefox shows a near-white square: the stand-in's Drawing),
    // and under BT.709 primaries and gamma 2.2 (both show about the photo).
    let bt709 = [[0.64, 0.33], [0.30, 0.60], [0.15, 0.06]];
    for (path, gamma) in [
        ("/calibrated-drawing.bmp", 1.0 / 256.0),
        ("/calibrated-photo.bmp", 2.2),
    ] {
        let bytes = calibrated_bmp(&photo, bt709, [gamma; 3]);
        fixtures.insert(path, Resource::bytes("image/bmp", bytes));
    }
    // The same two profiles on an APNG and an animated WebP of the photo and its mirror
    // image: every frame is shown through the file's one profile (posterised: 0.79 and
    // 0.60 Drawing).
    let mirrored = photo.fliph();
    for (stem, profile) in [
        ("/profiled-drawing-animated", posterising_profile()),
        ("/profiled-photo-animated", srgb),
    ] {
        let frames = [(&photo, 500), (&mirrored, 500)];
        for (ext, mime, bytes) in [
            ("png", "image/png", animated_png(&frames, Some(&profile))),
            ("webp", "image/webp", animated_webp(&frames, Some(&profile))),
        ] {
            let path: &'static str = Box::leak(format!("{stem}.{ext}").into_boxed_str());
            fixtures.insert(path, Resource::bytes(mime, bytes));
        }
    }
    // Compressed bodies a browser decompresses and shows, whatever the type.
    let drawing = encode(&drawing_like, image::ImageFormat::Png);
    for (path, coding, bytes) in [
        ("/encoded-drawing.gz", "gzip", gzip(&drawing)),
        ("/encoded-drawing.zz", "deflate", zlib(&drawing)),
        (
            "/encoded-drawing.zst",
            "zstd",
            ruzstd::encoding::compress_to_vec(
                &drawing[..],
                ruzstd::encoding::CompressionLevel::Fastest,
            ),
        ),
        ("/encoded-drawing.br", "br", brotli(&drawing)),
        (
            "/encoded-drawing-twice",
            "gzip, gzip",
            gzip(&gzip(&drawing)),
        ),
        ("/encoded-photo.gz", "gzip", gzip(&jpeg)),
        (
            "/encoded-page.gz",
            "gzip",
            gzip(b"<!doctype html><p>compressed page</p>"),
        ),
    ] {
        fixtures.insert(
            path,
            Resource::bytes("application/octet-stream", bytes)
                .with_header("Content-Encoding", coding),
        );
    }
    fixtures.insert(
        "/encoded-unknown.png",
        Resource::bytes("image/png", drawing.clone()).with_header("Content-Encoding", "compress"),
    );
    fixtures.insert(
        "/encoded-bomb.gz",
        Resource::bytes(
            "application/octet-stream",
            gzip(&[&drawing[..], &vec![0; 30 << 20]].concat()),
        )
        .with_header("Content-Encoding", "gzip"),
    );
    // AVIF (made by Pillow's libavif, tests/fixtures): decoded and judged under any type.
    let avif = |stem: &str| {
        std::fs::read(support::repo().join(format!("tests/fixtures/{stem}.avif"))).unwrap()
    };
    fixtures.insert(
        "/sniffed-avif.bin",
        Resource::bytes("application/octet-stream", avif("panorama_wide")),
    );
    fixtures.insert(
        "/photo.avif",
        Resource::bytes("image/avif", avif("photo_astronaut")),
    );
    // Another major brand, `avif` only among the compatible ones: Chromium still takes it
    // for an AVIF (libavif's peek), under any type.
    let rebranded = |stem: &str| {
        let mut bytes = avif(stem);
        bytes[8..12].copy_from_slice(b"miaf");
        bytes
    };
    fixtures.insert(
        "/sniffed-miaf-avif.bin",
        Resource::bytes("application/octet-stream", rebranded("panorama_wide")),
    );
    fixtures.insert(
        "/photo-miaf.bin",
        Resource::bytes("application/octet-stream", rebranded("photo_astronaut")),
    );
    // An animated AVIF whose still item (its first frame) is a photo and whose second frame,
    // shown 80 ms later, the stand-in: a browser plays the track.
    fixtures.insert(
        "/animated.avif",
        Resource::bytes("image/avif", avif("animated_photo_then_drawing")),
    );
    // A byte flipped in its AV1 tile data: rav1d 1.1 aborts on it, so the AVIF is decoded
    // in a sibling, whose failure gets the policy's on_error outcome (not a bare 500).
    let mut aborting = avif("photo_astronaut");
    aborting[29256] ^= 0x5A;
    fixtures.insert("/aborting.avif", Resource::bytes("image/avif", aborting));
    // An AVIF whose container stops after its brands: damaged, the undecodable outcome.
    fixtures.insert(
        "/damaged.avif",
        Resource::bytes(
            "application/octet-stream",
            b"\0\0\0\x1cftypavif\0\0\0\0avifmif1miaf".to_vec(),
        ),
    );
    // JPEG XL (made by libjxl, tests/fixtures), decoded and judged in a sibling under any
    // type: the stand-in in the ISO-BMFF container, the photo as a bare codestream.
    let jxl = |stem: &str| {
        std::fs::read(support::repo().join(format!("tests/fixtures/{stem}.jxl"))).unwrap()
    };
    fixtures.insert(
        "/sniffed-jxl.bin",
        Resource::bytes("application/octet-stream", jxl("panorama_wide")),
    );
    fixtures.insert(
        "/photo.jxl",
        Resource::bytes("image/jxl", jxl("photo_astronaut")),
    );
    // A codestream cut after its first bytes: damaged, the undecodable outcome.
    fixtures.insert(
        "/damaged.jxl",
        Resource::bytes(
            "application/octet-stream",
            jxl("photo_astronaut")[..40].to_vec(),
        ),
    );
    // Images browsers render that are not decoded here: the undecodable outcome.
    fixtures.insert(
        "/unreadable.heic",
        Resource::bytes(
            "application/octet-stream",
            b"\0\0\0\x18ftypheic\0\0\0\0mif1heic".to_vec(),
        ),
    );
    fixtures.insert(
        "/untyped",
        Resource::bytes("application/octet-stream", jpeg.clone()),
    );
    fixtures.insert(
        "/fake.jpg",
        Resource::bytes("image/jpeg", b"<html>not an image</html>".to_vec()),
    );
    fixtures.insert(
        "/truncated.jpg",
        Resource::bytes("image/jpeg", jpeg[..jpeg.len() / 2].to_vec()),
    );
    let mut corrupt = drawing_png.clone();
    corrupt[40..400].fill(0x5A);
    fixtures.insert("/corrupt.png", Resource::bytes("image/png", corrupt));
    fixtures.insert(
        "/icon.svg",
        Resource::bytes(
            "image/svg+xml",
            b"<svg xmlns='http://www.w3.org/2000/svg'/>".to_vec(),
        ),
    );
    let mut padded = encode(&drawing_like, image::ImageFormat::Jpeg);
    padded.resize(3_000_000, 0);
    fixtures.insert("/oversize.jpg", Resource::bytes("image/jpeg", padded));
    // 16 megapixels (within the pixel limit) but a 48 MB canvas: beyond Compute's memory.
    let wide_canvas = image::DynamicImage::new_rgb8(4000, 4000);
    fixtures.insert(
        "/canvas.png",
        Resource::bytes("image/png", encode(&wide_canvas, image::ImageFormat::Png)),
    );
    let bomb = image::DynamicImage::new_luma8(5000, 4000);
    fixtures.insert(
        "/bomb.png",
        Resource::bytes("image/png", encode(&bomb, image::ImageFormat::Png)),
    );
    fixtures.insert(
        "/page.html",
        Resource::bytes("text/html", b"<!doctype html><p>hello</p>".to_vec()),
    );
    fixtures.insert(
        "/big.bin",
        Resource {
            status: 200,
            content_type: "application/octet-stream",
            body: Body::Pattern(BIG_STREAM),
            headers: vec![],
        },
    );
    fixtures.insert(
        "/moved",
        Resource::bytes("text/plain", vec![])
            .with_status(302)
            .with_header("Location", "/photo.jpg"),
    );
    fixtures.insert(
        "/unchanged.jpg",
        Resource::bytes("image/jpeg", vec![]).with_status(304),
    );
    fixtures.insert(
        "/broken.jpg",
        Resource::bytes("image/jpeg", b"origin exploded".to_vec()).with_status(500),
    );
    // Image bodies of error responses: Chromium shows them in <img> (404, 500 checked).
    let drawing_png = bytes_of(&fixtures, "/drawing.png");
    let photo_png = bytes_of(&fixtures, "/photo.png");
    for (path, status, kind, bytes) in [
        (
            "/missing-drawing.png",
            404,
            "image/png",
            drawing_png.clone(),
        ),
        ("/failing-drawing", 500, "text/html", drawing_png),
        ("/missing-photo.png", 404, "image/png", photo_png),
    ] {
        fixtures.insert(path, Resource::bytes(kind, bytes).with_status(status));
    }
    fixtures
}

const NEUTRAL_POLICY: &str =
    r#"{"rules": [{"classes": ["Neutral"], "at_least": 0.5, "action": "block"}]}"#;

/// A picture drawn in the alpha channel of black ink: a white page shows it (in grey);
/// with alpha dropped, as the model alone reads it, it is a black square.
/// An icon of PNG entries, each with the bits per pixel its directory claims.
fn icon_of(entries: &[(image::DynamicImage, u16)]) -> Vec<u8> {
    let mut directory = vec![0, 0, 1, 0];
    directory.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    let mut data = Vec::new();
    for (picture, bits) in entries {
        let png = encode(picture, image::ImageFormat::Png);
        let at = 6 + 16 * entries.len() + data.len();
        let side = |n: u32| (n % 256) as u8;
        directory.extend_from_slice(&[side(picture.width()), side(picture.height()), 0, 0, 1, 0]);
        directory.extend_from_slice(&bits.to_le_bytes());
        directory.extend_from_slice(&(png.len() as u32).to_le_bytes());
        directory.extend_from_slice(&(at as u32).to_le_bytes());
        data.extend_from_slice(&png);
    }
    [directory, data].concat()
}

fn picture_in_alpha(picture: &image::DynamicImage) -> image::DynamicImage {
    let grey = picture.to_luma8();
    image::DynamicImage::ImageRgba8(image::RgbaImage::from_fn(
        grey.width(),
        grey.height(),
        |x, y| image::Rgba([0, 0, 0, 255 - grey.get_pixel(x, y)[0]]),
    ))
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let fixtures = fixtures();
        let origin = Origin::start(fixtures.clone());
        let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // Viceroy compiles the module at start-up; start all four at once.
        let port = origin.port;
        let default_policy = std::thread::spawn(move || Service::start("default", port, None));
        let test_policy =
            std::thread::spawn(move || Service::start("test", port, Some(&test_policy())));
        let invalid_policy = std::thread::spawn(move || {
            Service::start("invalid", port, Some(r#"{"rules": "block everything"}"#))
        });
        let origin_down = std::thread::spawn(move || Service::start("down", closed_port, None));
        let neutral_policy =
            std::thread::spawn(move || Service::start("neutral", port, Some(NEUTRAL_POLICY)));
        World {
            fixtures,
            default_policy: default_policy.join().unwrap(),
            neutral_policy: neutral_policy.join().unwrap(),
            test_policy: test_policy.join().unwrap(),
            invalid_policy: invalid_policy.join().unwrap(),
            origin_down: origin_down.join().unwrap(),
        }
    })
}

fn origin_bytes(path: &str) -> Vec<u8> {
    bytes_of(&world().fixtures, path)
}

fn assert_scored(reply: &Reply) {
    let scores = reply.header(headers::SCORES).expect("scores header");
    for class in ["Drawing=", "Hentai=", "Neutral=", "Porn=", "Sexy="] {
        assert!(scores.contains(class), "{scores}");
    }
    let timing = reply
        .header(headers::SERVER_TIMING)
        .expect("server-timing header");
    // Tests share services, so an image may have been judged already (tests/cache.rs).
    let judged_now = match reply.header(headers::CACHE) {
        Some("miss") => timing.contains("decode;dur=") && timing.contains("inference;dur="),
        Some("hit") => timing.starts_with("cache;dur=") && !timing.contains("inference"),
        other => panic!("x-moderation-cache: {other:?}"),
    };
    assert!(judged_now, "{timing}");
    assert!(
        timing.contains("cpu;dur="),
        "the instance reports its CPU: {timing}"
    );
}

/// `path` under the test policy: blocked with 451 and a reason, and not one byte of what
/// `data` brotli-compressed (a `Content-Encoding: br` body).
fn brotli(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut writer = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
        std::io::Write::write_all(&mut writer, data).expect("brotli");
    }
    out
}

/// the origin sent (no image, no SVG); the reason.
fn blocked_by_test_policy(path: &str) -> String {
    let reply = world().test_policy.get(path);
    let reason = reply
        .header(headers::REASON)
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        (reply.status, reply.verdict()),
        (451, Some("block")),
        "{path}: {reason}"
    );
    assert!(
        Format::sniff(&reply.body).is_none()
            && !reply.body.starts_with(b"<")
            && reply.body != origin_bytes(path),
        "{path}: image bytes in a block"
    );
    reason
}

#[test]
fn pass_returns_the_origin_bytes_untouched_in_every_format() {
    let service = &world().default_policy;
    for format in Format::ALL.into_iter().filter(|f| f.rewritten_as() == *f) {
        let (ext, mime) = (format.extension(), format.mime_type());
        let path = format!("/photo.{ext}");
        let reply = service.get(&path);
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(reply.verdict(), Some("pass"), "{path}");
        assert_eq!(reply.header("content-type"), Some(mime));
        assert_eq!(reply.body, origin_bytes(&path), "{path} bytes changed");
        assert_scored(&reply);
        assert_eq!(reply.header(headers::POLICY), Some("default"));
    }
}

#[test]
fn block_returns_the_configured_status_and_no_image_bytes() {
    let service = &world().test_policy;
    for format in Format::ALL.into_iter().filter(|f| f.rewritten_as() == *f) {
        let ext = format.extension();
        let reply = service.get(&format!("/drawing.{ext}"));
        assert_eq!(reply.status, 451, "{ext}");
        assert_eq!(reply.verdict(), Some("block"));
        let reason = reply.header(headers::REASON).unwrap();
        assert!(
            reason.starts_with("rule 0: Drawing>=0.93"),
            "{ext}: {reason}"
        );
        assert!(reply
            .header("content-type")
            .unwrap()
            .starts_with("text/plain"));
        assert!(Format::sniff(&reply.body).is_none());
        assert!(
            reply.body.len() < 200,
            "block body is {} bytes",
            reply.body.len()
        );
        assert_scored(&reply);
    }
}

#[test]
fn rewrite_returns_an_obscured_image_of_the_same_format_and_size() {
    let service = &world().test_policy;
    for format in Format::ALL.into_iter().filter(|f| f.rewritten_as() == *f) {
        let (ext, mime) = (format.extension(), format.mime_type());
        let path = format!("/rocket.{ext}");
        let reply = service.get(&path);
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(
            reply.verdict(),
            Some("rewrite"),
            "{path}: {:?}",
            reply.header(headers::SCORES)
        );
        assert_eq!(reply.header("content-type"), Some(mime));
        assert_eq!(
            reply.header("content-length"),
            Some(reply.body.len().to_string().as_str())
        );
        assert_eq!(reply.header("etag"), None);
        assert_eq!(reply.header("content-md5"), None);
        assert_eq!(reply.header("cache-control"), Some("public, max-age=600"));
        let original =
            image::load_from_memory_with_format(&origin_bytes(&path), format.codec().unwrap())
                .unwrap();
        let rewritten = image::load_from_memory_with_format(&reply.body, format.codec().unwrap())
            .expect("decodable rewrite");
        assert_eq!(rewritten.dimensions(), original.dimensions());
        assert_ne!(
            rewritten.to_rgb8().into_raw(),
            original.to_rgb8().into_raw()
        );
        // Timed where it ran: in this instance, unless its CPU ran short and a sibling
        // finished the decode (and the rest) for it, as on a loaded host.
        let here = reply.header(headers::SIBLING_CPU).is_none();
        if reply.header(headers::CACHE) == Some("miss") && here {
            let timing = reply.header(headers::SERVER_TIMING).unwrap();
            assert!(timing.contains("rewrite;dur="), "{path}: {timing}");
        }
    }
}

#[test]
fn non_image_bodies_stream_through_byte_identical() {
    let service = &world().default_policy;
    let page = service.get("/page.html");
    assert_eq!(page.body, origin_bytes("/page.html"));
    assert_eq!(page.verdict(), None);

    let big = service.get("/big.bin");
    assert_eq!(big.status, 200);
    assert_eq!(big.verdict(), None);
    assert_eq!(big.body.len() as u64, BIG_STREAM);
    assert!(
        big.body
            .iter()
            .enumerate()
            .all(|(i, b)| *b == pattern_byte(i as u64)),
        "50 MB stream altered"
    );
}

#[test]
fn content_type_does_not_decide_what_is_an_image() {
    let test = &world().test_policy;
    let lying = test.get("/lying.txt");
    assert_eq!(
        (lying.status, lying.verdict()),
        (451, Some("block")),
        "PNG bytes served as text/plain"
    );

    for path in [
        "/sniffed-bmp.bin",
        "/sniffed-tiff.bin",
        "/sniffed-webp.txt",
        "/sniffed-avif.bin",
        "/sniffed-miaf-avif.bin",
        "/sniffed-jxl.bin",
        "/sniffed-ico.bin",
        "/sniffed-cur.bin",
        "/icon-two-entries.bin",
    ] {
        blocked_by_test_policy(path);
    }
    let icon = test.get("/icon-photo.ico");
    assert_eq!(
        (icon.status, icon.verdict()),
        (200, Some("pass")),
        "an icon of a photo at two sizes"
    );
    assert_eq!(icon.body, origin_bytes("/icon-photo.ico"));
    let aborting = world().default_policy.get("/aborting.avif");
    assert_eq!(
        (aborting.status, aborting.verdict()),
        (403, Some("block")),
        "an AVIF whose decode aborts its (sibling) instance"
    );
    assert!(aborting.header(headers::REASON).is_some());
    assert_ne!(aborting.body, origin_bytes("/aborting.avif"));
    for (path, name) in [("/damaged.avif", "AVIF"), ("/damaged.jxl", "JPEG XL")] {
        let reason = blocked_by_test_policy(path);
        assert!(
            reason.starts_with(&format!("undecodable: corrupt image: {name}")),
            "{path}: {reason}"
        );
    }
    assert_eq!(
        blocked_by_test_policy("/unreadable.heic"),
        "undecodable: HEIF images are not decoded here"
    );

    let default = &world().default_policy;
    let photo = default.get("/photo.avif");
    assert_eq!(
        (photo.status, photo.verdict()),
        (200, Some("pass")),
        "a benign AVIF"
    );
    assert_eq!(photo.body, origin_bytes("/photo.avif"));
    let photo = default.get("/photo-miaf.bin");
    assert_eq!(
        (photo.status, photo.verdict()),
        (200, Some("pass")),
        "a benign AVIF of major brand miaf"
    );
    assert_eq!(photo.body, origin_bytes("/photo-miaf.bin"));
    let photo = default.get("/photo.jxl");
    assert_eq!(
        (photo.status, photo.verdict()),
        (200, Some("pass")),
        "a benign JPEG XL"
    );
    assert_eq!(photo.body, origin_bytes("/photo.jxl"));
    let untyped = default.get("/untyped");
    assert_eq!(untyped.verdict(), Some("pass"));
    assert_eq!(untyped.body, origin_bytes("/untyped"));

    let fake = default.get("/fake.jpg");
    assert_eq!(
        (fake.status, fake.verdict()),
        (403, Some("block")),
        "HTML served as image/jpeg"
    );
    assert!(fake
        .header(headers::REASON)
        .unwrap()
        .starts_with("undecodable"));

    let svg = default.get("/icon.svg");
    assert_eq!(
        (svg.status, svg.verdict()),
        (200, Some("pass")),
        "vector art without embedded images passes"
    );
    assert_eq!(
        svg.header(headers::REASON),
        Some("SVG draws nothing and embeds no image")
    );
    assert_eq!(svg.body, origin_bytes("/icon.svg"));
}

#[test]
fn transparent_images_are_judged_as_shown_on_white_and_on_black() {
    let neutral = &world().neutral_policy;
    for path in ["/alpha-hidden.png", "/alpha-hidden.webp"] {
        let reply = neutral.get(path);
        assert_eq!(
            (reply.status, reply.verdict()),
            (403, Some("block")),
            "{path}"
        );
        assert!(
            reply
                .header(headers::REASON)
                .unwrap()
                .ends_with("(shown on white)"),
            "{path}: {:?}",
            reply.header(headers::REASON)
        );
    }
    // A translucent tint is Neutral over neither: it passes untouched.
    let sticker = neutral.get("/alpha-sticker.png");
    assert_eq!(
        (sticker.status, sticker.verdict()),
        (200, Some("pass")),
        "{:?}",
        sticker.header(headers::SCORES)
    );
    assert_eq!(sticker.body, origin_bytes("/alpha-sticker.png"));
}

#[test]
fn svgs_are_judged_by_the_images_they_embed() {
    let test = &world().test_policy;
    for path in ["/embedded-drawing.svg", "/embedded-drawing.svgz"] {
        let reason = blocked_by_test_policy(path);
        assert!(
            reason.starts_with("embedded image 2 (PNG): rule 0"),
            "{path}: {reason}"
        );
    }
    for path in [
        "/embedded-photo.svg",
        "/traced-photo.svg",
        "/text-photo.svg",
    ] {
        let photo = test.get(path);
        assert_eq!(
            (photo.status, photo.verdict()),
            (200, Some("pass")),
            "{path}: {:?}",
            photo.header(headers::REASON)
        );
        assert_eq!(photo.body, origin_bytes(path), "{path}");
    }
}

#[test]
fn svgs_are_judged_as_drawn() {
    blocked_by_test_policy("/strips-drawing.svg");
    // Vectors only: nothing embedded, the drawing decided; and the same picture written
    // in coloured characters, drawn with the embedded font.
    for path in ["/traced-drawing.svg", "/text-drawing.svg"] {
        let reason = blocked_by_test_policy(path);
        assert!(
            reason.starts_with("the SVG as drawn: ") && !reason.contains("undecodable"),
            "{path}: {reason}"
        );
    }
    // A picture HTML paints (CSS pixel art, an inline SVG) is not drawn by us: refused.
    for (path, why) in [
        (
            "/html-boxes-drawing.svg",
            "paints a picture from styled boxes",
        ),
        ("/html-inline-drawing.svg", "holding an SVG drawing"),
    ] {
        let reason = blocked_by_test_policy(path);
        assert!(
            reason.starts_with("the SVG as drawn: undecodable") && reason.ends_with(why),
            "{path}: {reason}"
        );
    }
}

#[test]
fn a_gif_is_judged_on_the_canvas_a_browser_shows_not_its_declared_screen() {
    let reason = blocked_by_test_policy("/screen-1x1-drawing.gif");
    assert!(reason.contains("Drawing"), "{reason}");
    let photo = world().test_policy.get("/screen-1x1-photo.gif");
    assert_eq!((photo.status, photo.verdict()), (200, Some("pass")));
    assert_eq!(photo.body, origin_bytes("/screen-1x1-photo.gif"));
}

#[test]
fn animations_are_judged_beyond_their_first_frame() {
    let test = &world().test_policy;
    for path in [
        "/animated-drawing.gif",
        "/animated-drawing.png",
        "/animated-drawing.webp",
    ] {
        let reason = blocked_by_test_policy(path);
        assert!(reason.contains("(frame 2"), "{path}: {reason}");
    }
    for path in ["/animated-photo.gif", "/animated-photo.webp"] {
        let photo = test.get(path);
        assert_eq!(
            (photo.status, photo.verdict()),
            (200, Some("pass")),
            "{path}"
        );
        assert_eq!(photo.body, origin_bytes(path), "{path}");
    }
    // An animated AVIF's frames are not decoded: refused rather than judged by its still
    // (the first frame, here a photo).
    assert_eq!(
        blocked_by_test_policy("/animated.avif"),
        "undecodable: unsupported image: animated AVIF (an image sequence): its frames are not judged"
    );
}

#[test]
fn every_part_of_a_mixed_replace_stream_is_judged() {
    let reason = blocked_by_test_policy("/stream-drawing");
    assert!(reason.starts_with("stream part 2 (PNG): rule"), "{reason}");
    let test = &world().test_policy;
    for path in ["/stream-photo", "/stream-text"] {
        let reply = test.get(path);
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(reply.body, origin_bytes(path), "{path}");
    }
    assert_eq!(test.get("/stream-photo").verdict(), Some("pass"));
    assert_eq!(
        test.get("/stream-text").verdict(),
        None,
        "no image part: not judged"
    );
    // Beyond animations.max_frames (4) images, and without a boundary: the default
    // policy's oversize and undecodable outcomes.
    let default = &world().default_policy;
    for (path, why) in [
        (
            "/stream-long",
            "oversize: a multipart/x-mixed-replace stream of 5 images",
        ),
        (
            "/stream-no-boundary",
            "undecodable: multipart/x-mixed-replace without",
        ),
    ] {
        let reply = default.get(path);
        assert_eq!(
            (reply.status, reply.verdict()),
            (403, Some("block")),
            "{path}"
        );
        let reason = reply.header(headers::REASON).unwrap_or_default();
        assert!(reason.starts_with(why), "{path}: {reason}");
        assert_ne!(reply.body, origin_bytes(path));
    }
}

#[test]
fn images_are_judged_in_the_orientation_browsers_show() {
    let test = &world().test_policy;
    // Stored turned, the stand-in is no drawing to a reader that ignores EXIF (0.43).
    // JPEG (APP1), PNG (eXIf) and WebP (EXIF chunk).
    for ext in ["jpg", "png", "webp"] {
        blocked_by_test_policy(&format!("/oriented-drawing.{ext}"));
        let path = format!("/oriented-photo.{ext}");
        let photo = test.get(&path);
        assert_eq!(
            (photo.status, photo.verdict()),
            (200, Some("pass")),
            "{path}"
        );
        assert_eq!(photo.body, origin_bytes(&path), "{path}");
    }
}

#[test]
fn images_are_judged_in_the_colours_browsers_show() {
    let test = &world().test_policy;
    // The photo as stored (0.06 Drawing) under an ICC profile that shows it posterised
    // (0.79-0.84, the test policy's rewrite band): JPEG (APP2), PNG (iCCP), WebP (ICCP)
    // and BMP (a V5 header's), each served obscured. Under an sRGB profile it passes as
    // sent. An animation's frames are judged under its profile too (APNG `iCCP`, animated
    // WebP `ICCP`): served as an obscured still.
    let stills = ["jpg", "png", "webp", "bmp"].map(|ext| ("", ext));
    let animations = ["png", "webp"].map(|ext| ("-animated", ext));
    for (kind, ext) in stills.into_iter().chain(animations) {
        let path = format!("/profiled-drawing{kind}.{ext}");
        let shown = test.get(&path);
        let reason = shown.header(headers::REASON).unwrap_or_default();
        assert_eq!(
            (shown.status, shown.verdict()),
            (200, Some("rewrite")),
            "{path}: {reason}"
        );
        assert!(reason.contains("Drawing"), "{path}: {reason}");
        assert_ne!(shown.body, origin_bytes(&path), "{path}");
        let path = format!("/profiled-photo{kind}.{ext}");
        let photo = test.get(&path);
        assert_eq!(
            (photo.status, photo.verdict()),
            (200, Some("pass")),
            "{path}"
        );
        assert_eq!(photo.body, origin_bytes(&path), "{path}");
    }
}

#[test]
fn a_bmp_is_judged_as_each_browser_shows_it() {
    let test = &world().test_policy;
    // Chromium shows the photo, Firefox a near-white square through the header's
    // calibration: the worse of the two decides, and the reason names the browser.
    let shown = test.get("/calibrated-drawing.bmp");
    let reason = shown.header(headers::REASON).unwrap_or_default();
    assert!(
        matches!(shown.verdict(), Some("block" | "rewrite")),
        "{}: {reason}",
        shown.status
    );
    assert!(reason.contains("as Firefox shows it"), "{reason}");
    assert_ne!(shown.body, origin_bytes("/calibrated-drawing.bmp"));
    let photo = test.get("/calibrated-photo.bmp");
    assert_eq!((photo.status, photo.verdict()), (200, Some("pass")));
    assert_eq!(photo.body, origin_bytes("/calibrated-photo.bmp"));
}

#[test]
fn compressed_bodies_are_judged_as_the_browser_shows_them() {
    let test = &world().test_policy;
    for path in [
        "/encoded-drawing.gz",
        "/encoded-drawing.zz",
        "/encoded-drawing.zst",
        "/encoded-drawing.br",
        "/encoded-drawing-twice",
    ] {
        blocked_by_test_policy(path);
    }
    // What passes is the origin's encoded bytes, still encoded.
    for path in ["/encoded-photo.gz", "/encoded-page.gz"] {
        let reply = test.get(path);
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(reply.body, origin_bytes(path), "{path}");
        assert_eq!(reply.header("content-encoding"), Some("gzip"), "{path}");
    }
    assert_eq!(test.get("/encoded-photo.gz").verdict(), Some("pass"));
    assert_eq!(test.get("/encoded-page.gz").verdict(), None);

    assert!(blocked_by_test_policy("/encoded-unknown.png")
        .contains("unsupported Content-Encoding compress"));
    // 30 MB of decompressed output from ~30 KB: stopped at the byte limit, on_oversize
    // (pass under this policy) sends the origin's bytes.
    let bomb = test.get("/encoded-bomb.gz");
    assert!(bomb
        .header(headers::REASON)
        .unwrap()
        .starts_with("oversize: decompresses"));
    assert_eq!(bomb.body, origin_bytes("/encoded-bomb.gz"));
}

#[test]
fn corrupt_and_truncated_images_get_the_undecodable_outcome() {
    let service = &world().default_policy;
    for path in ["/truncated.jpg", "/corrupt.png"] {
        let reply = service.get(path);
        assert_eq!(
            (reply.status, reply.verdict()),
            (403, Some("block")),
            "{path}"
        );
        let reason = reply.header(headers::REASON).unwrap();
        assert!(reason.starts_with("undecodable"), "{path}: {reason}");
        assert!(Format::sniff(&reply.body).is_none());
    }
}

#[test]
fn oversize_images_get_the_oversize_outcome() {
    // Default policy: a 20-megapixel canvas (a few KB of PNG) is refused before decoding.
    let bomb = world().default_policy.get("/bomb.png");
    assert_eq!((bomb.status, bomb.verdict()), (403, Some("block")));
    assert!(bomb
        .header(headers::REASON)
        .unwrap()
        .starts_with("oversize"));
    let canvas = world().default_policy.get("/canvas.png");
    assert_eq!(
        (canvas.status, canvas.verdict()),
        (403, Some("block")),
        "not a 500 from running out of memory"
    );
    assert!(canvas
        .header(headers::REASON)
        .unwrap()
        .starts_with("oversize"));

    // Test policy: beyond max_bytes, and its on_oversize is pass: the whole body, intact.
    let big = world().test_policy.get("/oversize.jpg");
    assert_eq!((big.status, big.verdict()), (200, Some("pass")));
    assert!(big.header(headers::REASON).unwrap().starts_with("oversize"));
    assert_eq!(big.body, origin_bytes("/oversize.jpg"));
}

#[test]
fn head_redirects_304_and_origin_errors_pass_as_sent() {
    let service = &world().default_policy;
    let head = service.request("HEAD", "/photo.jpg", &[]);
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(head.header("content-type"), Some("image/jpeg"));
    assert_eq!(head.verdict(), None);

    let moved = service.get("/moved");
    assert_eq!(
        (moved.status, moved.header("location")),
        (302, Some("/photo.jpg"))
    );
    let unchanged = service.get("/unchanged.jpg");
    assert_eq!((unchanged.status, unchanged.verdict()), (304, None));
    let broken = service.get("/broken.jpg");
    assert_eq!(
        (broken.status, broken.body.as_slice()),
        (500, &b"origin exploded"[..])
    );
}

#[test]
fn error_responses_showing_images_are_judged() {
    // A 404 typed as PNG, a 500 typed as HTML: the stand-in's bytes are blocked.
    for path in ["/missing-drawing.png", "/failing-drawing"] {
        blocked_by_test_policy(path);
    }
    let photo = world().test_policy.get("/missing-photo.png");
    assert_eq!((photo.status, photo.verdict()), (404, Some("pass")));
    assert_eq!(photo.body, origin_bytes("/missing-photo.png"));
}

#[test]
fn range_requests_never_leak_unmoderated_image_bytes() {
    let default = &world().default_policy;
    for range in ["bytes=0-99", "bytes=1000-1999", "bytes=-500"] {
        let reply = default.request("GET", "/photo.png", &[("Range", range)]);
        assert_eq!(
            reply.status, 200,
            "{range}: an image range is answered whole, after moderation"
        );
        assert_eq!(reply.verdict(), Some("pass"));
        assert_eq!(reply.body, origin_bytes("/photo.png"));
    }
    let blocked = world()
        .test_policy
        .request("GET", "/drawing.jpg", &[("Range", "bytes=500-")]);
    assert_eq!((blocked.status, blocked.verdict()), (451, Some("block")));

    let slice = default.request("GET", "/big.bin", &[("Range", "bytes=100-199")]);
    assert_eq!(slice.status, 206, "non-image ranges are served as ranges");
    assert_eq!(
        slice.body,
        (100..200).map(pattern_byte).collect::<Vec<u8>>()
    );
}

#[test]
fn origin_failures_are_502_with_a_reason() {
    let down = world().origin_down.get("/photo.jpg");
    assert_eq!(down.status, 502);
    assert!(down
        .header(headers::ERROR)
        .unwrap()
        .contains("origin request failed"));
}

#[test]
fn an_invalid_stored_policy_is_logged_and_replaced_by_the_defaults() {
    let service = &world().invalid_policy;
    let reply = service.get("/photo.jpg");
    assert_eq!((reply.status, reply.verdict()), (200, Some("pass")));
    assert_eq!(
        reply.header(headers::POLICY),
        Some("default (stored policy invalid)")
    );
    assert_eq!(reply.body, origin_bytes("/photo.jpg"));
    let output = service.output();
    assert!(
        output.contains("invalid policy in config store"),
        "log was: {output}"
    );
}
