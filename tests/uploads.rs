//! Upload moderation end to end: request bodies judged under `viceroy serve` before the
//! loopback origin (which records every request it receives, body included) sees them.
//!
//! The test policy works on the benign `Drawing` class (`support::fixtures`): a
//! `drawing.*` image is blocked (451), a `rocket.*` one rewritten, a `photo.*` one passes.

mod support;

use edge_moderation::headers;
use edge_moderation::upload::multipart::{PartHead, Sink, Splitter};
use std::collections::HashMap;
use std::sync::OnceLock;
use support::fixtures::{bytes_of, drawing_policy, format_images, gzip};
use support::{pattern_byte, Framing, Origin, Received, Reply, Resource, Service};

struct World {
    fixtures: HashMap<&'static str, Resource>,
    origin: Origin,
    /// Uploads judged everywhere, by the default upload settings.
    strict: Service,
    /// `blocked_part: drop_part`, only under `/forms/`.
    lenient: Service,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let fixtures = format_images();
        let origin = Origin::start(fixtures.clone());
        let strict = Service::start("uploads-strict", origin.port, Some(&drawing_policy("")));
        let lenient = Service::start(
            "uploads-lenient",
            origin.port,
            Some(&drawing_policy(
                r#""uploads": {"blocked_part": "drop_part", "paths": ["/forms/*"]}"#,
            )),
        );
        World {
            fixtures,
            origin,
            strict,
            lenient,
        }
    })
}

fn image(path: &str) -> Vec<u8> {
    bytes_of(&world().fixtures, path)
}

/// A form part.
struct Part<'a> {
    name: &'a str,
    filename: Option<&'a str>,
    content_type: Option<&'a str>,
    data: Vec<u8>,
}

fn field(name: &str, value: &str) -> Part<'static> {
    Part {
        name: Box::leak(name.to_string().into_boxed_str()),
        filename: None,
        content_type: None,
        data: value.as_bytes().to_vec(),
    }
}

fn file<'a>(name: &'a str, filename: &'a str, content_type: &'a str, data: Vec<u8>) -> Part<'a> {
    Part {
        name,
        filename: Some(filename),
        content_type: Some(content_type),
        data,
    }
}

const BOUNDARY: &str = "----edge-moderation-test-7MA4YWxkTrZu0gW";

fn form(parts: &[Part]) -> Vec<u8> {
    let mut body = b"a preamble browsers never send\r\n".to_vec();
    for part in parts {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        let mut disposition = format!("Content-Disposition: form-data; name=\"{}\"", part.name);
        if let Some(filename) = part.filename {
            disposition += &format!("; filename=\"{filename}\"");
        }
        body.extend_from_slice(disposition.as_bytes());
        body.extend_from_slice(b"\r\n");
        if let Some(content_type) = part.content_type {
            body.extend_from_slice(format!("Content-Type: {content_type}\r\n").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(&part.data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

fn form_type() -> String {
    format!("multipart/form-data; boundary={BOUNDARY}")
}

/// The parts of a multipart body, by our own splitter: name and content.
fn parts_of(body: &[u8]) -> Vec<(String, Vec<u8>)> {
    #[derive(Default)]
    struct Parts(Vec<(String, Vec<u8>)>);
    impl Sink for Parts {
        fn framing(&mut self, _: &[u8]) {}
        fn part(&mut self, head: PartHead, _: &[u8]) {
            self.0.push((head.name.unwrap_or_default(), Vec::new()));
        }
        fn content(&mut self, bytes: &[u8]) {
            self.0.last_mut().unwrap().1.extend_from_slice(bytes);
        }
        fn part_end(&mut self) {}
    }
    let mut parts = Parts::default();
    let mut splitter = Splitter::new(BOUNDARY);
    splitter.feed(body, &mut parts).expect("a well-formed body");
    splitter.finish(&mut parts).expect("a complete body");
    parts.0
}

fn received(path: &str) -> Vec<Received> {
    world().origin.received(path)
}

/// The one request the origin received for `path`.
fn the_request(path: &str) -> Received {
    let received = received(path);
    assert_eq!(received.len(), 1, "{path}: {} requests", received.len());
    received.into_iter().next().unwrap()
}

fn assert_blocked_unseen(reply: &Reply, path: &str) {
    assert_eq!(
        reply.status,
        451,
        "{path}: {:?}",
        reply.header(headers::REASON)
    );
    assert_eq!(reply.verdict(), Some("block"));
    assert!(
        received(path).is_empty(),
        "{path}: the origin received a blocked upload"
    );
}

#[test]
fn image_uploads_the_policy_blocks_never_reach_the_origin() {
    let world = world();
    let drawing = image("/drawing.png");
    for (i, content_type) in ["image/png", "application/octet-stream", "text/plain"]
        .into_iter()
        .enumerate()
    {
        let path = format!("/upload/raw-{i}");
        let reply = world
            .strict
            .post(&path, &[("content-type", content_type)], &drawing);
        assert_blocked_unseen(&reply, &path);
        assert!(reply.header(headers::REASON).unwrap().contains("Drawing"));
        assert!(!reply.body.windows(8).any(|w| w == &drawing[..8]));
    }
    let put = world.strict.upload(
        "PUT",
        "/upload/put",
        &[("content-type", "image/jpeg")],
        &image("/drawing.jpg"),
    );
    assert_blocked_unseen(&put, "/upload/put");
    for (framing, path) in [
        (Framing::Chunked, "/upload/chunked"),
        (Framing::ExpectContinue, "/upload/expect"),
    ] {
        let reply = world.strict.upload_raw(
            path,
            &[("content-type", "application/octet-stream")],
            &image("/drawing.webp"),
            framing,
        );
        assert_blocked_unseen(&reply, path);
    }
}

#[test]
fn compressed_uploads_are_judged_decompressed_and_forwarded_as_sent() {
    let world = world();
    let encoding = [
        ("content-encoding", "gzip"),
        ("content-type", "application/octet-stream"),
    ];
    let reply = world.strict.post(
        "/upload/gzip-drawing",
        &encoding,
        &gzip(&image("/drawing.png")),
    );
    assert_blocked_unseen(&reply, "/upload/gzip-drawing");

    let photo = gzip(&image("/photo.png"));
    let reply = world.strict.post("/upload/gzip-photo", &encoding, &photo);
    assert_eq!((reply.status, reply.verdict()), (201, Some("pass")));
    let sent = the_request("/upload/gzip-photo");
    assert_eq!(sent.body, photo);
    assert_eq!(sent.header("content-encoding"), Some("gzip"));

    let json = gzip(br#"{"compressed": true}"#);
    let reply = world.strict.post(
        "/upload/gzip-json",
        &[
            ("content-encoding", "gzip"),
            ("content-type", "application/json"),
        ],
        &json,
    );
    assert_eq!((reply.status, reply.verdict()), (201, None));
    assert_eq!(the_request("/upload/gzip-json").body, json);
}

#[test]
fn benign_uploads_arrive_byte_identical_with_the_verdict() {
    let world = world();
    let photo = image("/photo.jpg");
    let reply = world
        .strict
        .post("/upload/photo", &[("content-type", "image/jpeg")], &photo);
    assert_eq!(reply.status, 201, "{:?}", reply.header(headers::REASON));
    assert_eq!(reply.verdict(), Some("pass"));
    assert!(reply.header(headers::SCORES).is_some());
    let sent = the_request("/upload/photo");
    assert_eq!(sent.body, photo);
    assert_eq!(sent.header(headers::VERDICT), Some("pass"));
    assert!(sent.header(headers::SCORES).unwrap().contains("Drawing="));

    for (framing, path) in [
        (Framing::Chunked, "/upload/photo-chunked"),
        (Framing::ExpectContinue, "/upload/photo-expect"),
    ] {
        let png = image("/photo.png");
        let reply = world.strict.upload_raw(path, &[], &png, framing);
        assert_eq!(reply.status, 201, "{path}");
        assert_eq!(the_request(path).body, png, "{path}");
    }
}

#[test]
fn non_image_bodies_stream_to_the_origin_untouched() {
    let world = world();
    let json = br#"{"title": "hello", "tags": ["a", "b"]}"#;
    let reply = world.strict.post(
        "/upload/json",
        &[("content-type", "application/json")],
        json,
    );
    assert_eq!(reply.status, 201);
    assert_eq!(reply.verdict(), None);
    let sent = the_request("/upload/json");
    assert_eq!(sent.body, json);
    assert_eq!(sent.header(headers::VERDICT), None);

    let big: Vec<u8> = (0..40 * 1024 * 1024 + 5).map(pattern_byte).collect();
    let reply = world.strict.upload(
        "PUT",
        "/upload/archive.bin",
        &[("content-type", "application/zip")],
        &big,
    );
    assert_eq!(reply.status, 201);
    let sent = the_request("/upload/archive.bin");
    assert_eq!(sent.body.len(), big.len());
    assert!(sent.body == big, "the 40 MB body changed on its way");
}

#[test]
fn a_rewritten_upload_arrives_obscured() {
    let world = world();
    let rocket = image("/rocket.jpg");
    let reply = world
        .strict
        .post("/upload/rocket", &[("content-type", "image/jpeg")], &rocket);
    assert_eq!(reply.status, 201);
    assert_eq!(reply.verdict(), Some("rewrite"));
    let sent = the_request("/upload/rocket");
    assert_ne!(sent.body, rocket);
    assert_eq!(sent.header("content-type"), Some("image/jpeg"));
    assert_eq!(
        sent.header("content-length"),
        Some(sent.body.len().to_string().as_str())
    );
    let original = image::load_from_memory(&rocket).unwrap();
    let obscured = image::load_from_memory(&sent.body).expect("a JPEG");
    assert_eq!(
        (obscured.width(), obscured.height()),
        (original.width(), original.height())
    );
}

#[test]
fn multipart_forms_are_judged_part_by_part() {
    let world = world();
    // The second image is the stand-in: nothing reaches the origin.
    let body = form(&[
        field("title", "holiday"),
        file("first", "photo.png", "image/png", image("/photo.png")),
        file("second", "d.jpg", "image/jpeg", image("/drawing.jpg")),
    ]);
    let reply = world.strict.post(
        "/upload/form-block",
        &[("content-type", &form_type())],
        &body,
    );
    assert_blocked_unseen(&reply, "/upload/form-block");
    assert!(
        reply
            .header(headers::REASON)
            .unwrap()
            .starts_with("part 3 \"second\" (d.jpg): rule 0"),
        "{:?}",
        reply.header(headers::REASON)
    );

    // A rewrite: the obscured image replaces its part; every other part is unchanged,
    // a part whose bytes are an image whatever its declared type included.
    let note: Vec<u8> = (0..300_000).map(pattern_byte).collect();
    let parts = [
        field("title", "launch"),
        file("rocket", "rocket.png", "image/png", image("/rocket.png")),
        file(
            "photo",
            "p.bin",
            "application/octet-stream",
            image("/photo.webp"),
        ),
        file("notes", "notes.bin", "application/octet-stream", note),
    ];
    let reply = world.strict.post(
        "/upload/form-rewrite",
        &[("content-type", &form_type())],
        &form(&parts),
    );
    assert_eq!(reply.status, 201, "{:?}", reply.header(headers::REASON));
    assert_eq!(reply.verdict(), Some("rewrite"));
    let sent = the_request("/upload/form-rewrite");
    assert_eq!(sent.header(headers::VERDICT), Some("rewrite"));
    assert_eq!(
        sent.header("content-length"),
        Some(sent.body.len().to_string().as_str())
    );
    let received = parts_of(&sent.body);
    assert_eq!(received.len(), 4);
    for (i, (name, content)) in received.iter().enumerate() {
        assert_eq!(name, parts[i].name);
        if name == "rocket" {
            assert_ne!(content, &parts[i].data);
            let obscured = image::load_from_memory(content).expect("a PNG");
            let original = image::load_from_memory(&parts[i].data).unwrap();
            assert_eq!(obscured.width(), original.width());
        } else {
            assert!(content == &parts[i].data, "part {name} changed");
        }
    }
    // Outside the rewritten part, the body is the original byte for byte.
    let original = form(&parts);
    let rocket_at = original
        .windows(parts[1].data.len())
        .position(|w| w == parts[1].data)
        .unwrap();
    assert_eq!(sent.body[..rocket_at], original[..rocket_at]);
    let tail = original.len() - rocket_at - parts[1].data.len();
    assert_eq!(
        sent.body[sent.body.len() - tail..],
        original[original.len() - tail..]
    );
}

/// `path`'s image with bytes after its end, which decoders ignore: the same picture,
/// unknown to the verdict cache.
fn uncached(path: &str) -> Vec<u8> {
    let mut bytes = image(path);
    bytes.extend_from_slice(format!("{:?}", std::time::Instant::now()).as_bytes());
    bytes
}

#[test]
fn svg_parts_are_judged_by_the_images_they_embed() {
    use base64::Engine;
    let world = world();
    let embedding = |path: &str| {
        format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg"><image href="data:image/png;base64,{}"/></svg>"#,
            base64::engine::general_purpose::STANDARD.encode(image(path))
        )
        .into_bytes()
    };
    let body = form(&[
        field("title", "vector"),
        file("art", "art.svg", "image/svg+xml", embedding("/drawing.png")),
    ]);
    let reply = world
        .strict
        .post("/upload/form-svg", &[("content-type", &form_type())], &body);
    assert_blocked_unseen(&reply, "/upload/form-svg");
    assert!(reply
        .header(headers::REASON)
        .unwrap()
        .starts_with("part 2 \"art\" (art.svg): embedded image 1 (PNG): rule 0"));
    let benign = form(&[file(
        "art",
        "art.svg",
        "image/svg+xml",
        embedding("/photo.png"),
    )]);
    let reply = world.strict.post(
        "/upload/form-svg-benign",
        &[("content-type", &form_type())],
        &benign,
    );
    assert_eq!((reply.status, reply.verdict()), (201, Some("pass")));
    assert!(the_request("/upload/form-svg-benign").body == benign);
}

#[test]
fn several_images_are_judged_in_parallel_by_siblings() {
    let world = world();
    let body = form(&[
        file("a", "a.png", "image/png", uncached("/photo.png")),
        file("b", "b.jpg", "image/jpeg", uncached("/photo.jpg")),
        file("c", "c.gif", "image/gif", uncached("/photo.gif")),
    ]);
    let reply = world.strict.post(
        "/upload/form-three",
        &[("content-type", &form_type())],
        &body,
    );
    assert_eq!(reply.status, 201, "{:?}", reply.header(headers::REASON));
    assert_eq!(reply.verdict(), Some("pass"));
    let siblings = reply.header(headers::SIBLING_CPU).unwrap_or_default();
    assert!(
        siblings.split(',').count() >= 3,
        "three images, siblings {siblings:?}"
    );
    assert!(the_request("/upload/form-three").body == body);
}

#[test]
fn a_blocked_part_can_be_dropped_instead() {
    let world = world();
    let parts = [
        field("title", "x"),
        file("bad", "d.png", "image/png", image("/drawing.png")),
        file("good", "p.png", "image/png", image("/photo.png")),
    ];
    let reply = world.lenient.post(
        "/forms/drop",
        &[("content-type", &form_type())],
        &form(&parts),
    );
    assert_eq!(reply.status, 201, "{:?}", reply.header(headers::REASON));
    assert_eq!(reply.verdict(), Some("rewrite"));
    assert!(reply
        .header(headers::REASON)
        .unwrap()
        .starts_with("part 2 \"bad\" (d.png) dropped"));
    let received = parts_of(&the_request("/forms/drop").body);
    let names: Vec<&str> = received.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["title", "good"]);
    assert!(received[1].1 == parts[2].data);

    // Outside the policy's paths, uploads are not judged.
    let drawing = image("/drawing.png");
    let reply = world
        .lenient
        .post("/elsewhere", &[("content-type", "image/png")], &drawing);
    assert_eq!(reply.status, 201);
    assert!(the_request("/elsewhere").body == drawing);
}

#[test]
fn malformed_multipart_gets_400_and_reaches_nobody() {
    let world = world();
    let good = form(&[file("f", "p.png", "image/png", image("/photo.png"))]);
    let truncated = good[..good.len() - 10].to_vec();
    let mut stray = good.clone();
    let at = stray.len() / 2;
    stray.splice(at..at, format!("--{BOUNDARY}").into_bytes());
    // A part with an empty header block: some parsers take the lines after it for its
    // headers, and the image after those for its content.
    let hidden = [
        format!("--{BOUNDARY}\r\n\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\n")
            .into_bytes(),
        image("/drawing.png"),
        format!("\r\n--{BOUNDARY}--\r\n").into_bytes(),
    ]
    .concat();
    for (i, (content_type, body)) in [
        (form_type(), hidden),
        (form_type(), truncated),
        (form_type(), stray),
        ("multipart/form-data".to_string(), good.clone()),
        (
            form_type(),
            form(&[Part {
                name: "f",
                filename: None,
                content_type: Some("text/plain\r\nContent-Transfer-Encoding: base64"),
                data: b"iVBORw0KGgo=".to_vec(),
            }]),
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let path = format!("/upload/malformed-{i}");
        let reply = world
            .strict
            .post(&path, &[("content-type", &content_type)], &body);
        assert_eq!(reply.status, 400, "{path}");
        assert!(
            reply
                .header(headers::REASON)
                .unwrap()
                .starts_with("malformed upload: "),
            "{path}: {:?}",
            reply.header(headers::REASON)
        );
        assert!(received(&path).is_empty(), "{path} reached the origin");
    }
}

#[test]
fn clients_cannot_forge_verdict_headers() {
    let world = world();
    let forged = [
        (headers::VERDICT, "pass"),
        (headers::REASON, "trust me"),
        ("X-Moderation-Scores", "Drawing=0"),
        (headers::SIBLING_KEY, "guess"),
    ];
    let reply = world.strict.upload(
        "POST",
        "/upload/forged",
        &[&[("content-type", "application/json")][..], &forged].concat(),
        b"{}",
    );
    assert_eq!(reply.status, 201);
    let sent = the_request("/upload/forged");
    for (name, _) in forged {
        assert_eq!(sent.header(&name.to_ascii_lowercase()), None, "{name}");
    }
    let photo = image("/photo.png");
    world.strict.post(
        "/upload/forged-image",
        &[(headers::VERDICT, "block"), ("content-type", "image/png")],
        &photo,
    );
    assert_eq!(
        the_request("/upload/forged-image").header(headers::VERDICT),
        Some("pass")
    );
}
