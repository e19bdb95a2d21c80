//! Faults from the origin, end to end under `viceroy serve`: a connection closed (FIN) or
//! reset (RST) halfway through a body, a body shorter than its `Content-Length`, an origin that never
//! answers, an image body that stalls halfway, a 5xx, a 100 MB response declared
//! `image/png`. Each gets a defined status within a bounded time, and no truncated image
//! is ever passed as whole.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use support::faults::FaultyOrigin;
use support::fixtures::{bytes_of, format_images};
use support::Service;

/// What a client received, read off the socket.
struct Raw {
    status: u16,
    head: String,
    body: Vec<u8>,
    /// Whether the body arrived whole by its own framing (`Content-Length` reached, or a
    /// chunked body's last chunk).
    complete: bool,
    took: Duration,
}

fn world() -> &'static (FaultyOrigin, Service, Vec<u8>) {
    static WORLD: OnceLock<(FaultyOrigin, Service, Vec<u8>)> = OnceLock::new();
    WORLD.get_or_init(|| {
        let image = bytes_of(&format_images(), "/photo.png");
        let page = b"<p>hello</p>\n".repeat(20_000);
        let origin = FaultyOrigin::start(image.clone(), page);
        let policy =
            r#"{"origin": {"first_byte_timeout_ms": 2000, "between_bytes_timeout_ms": 2000}}"#;
        let service = Service::start("faults", origin.port, Some(policy));
        (origin, service, image)
    })
}

fn get(path: &str) -> Raw {
    let service = &world().1;
    let address = service.base.trim_start_matches("http://");
    let started = Instant::now();
    let mut stream = TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut received = Vec::new();
    // A reset or a timeout ends the read: what arrived is what the client has.
    let _ = stream.read_to_end(&mut received);
    let took = started.elapsed();
    let split = received
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| {
            panic!(
                "{path}: no response head in {:?}",
                String::from_utf8_lossy(&received)
            )
        });
    let head = String::from_utf8_lossy(&received[..split]).to_ascii_lowercase();
    let raw = received[split + 4..].to_vec();
    let status = head[9..12].parse().unwrap();
    let header = |name: &str| {
        head.lines()
            .find_map(|line| line.strip_prefix(&format!("{name}: ")).map(str::to_owned))
    };
    let (body, complete) = if header("transfer-encoding").is_some_and(|te| te.contains("chunked")) {
        dechunk(&raw)
    } else {
        let declared: usize = header("content-length")
            .and_then(|l| l.parse().ok())
            .unwrap_or(raw.len());
        let complete = raw.len() == declared;
        (raw, complete)
    };
    Raw {
        status,
        head,
        body,
        complete,
        took,
    }
}

/// A chunked body's data, and whether its last (empty) chunk arrived.
fn dechunk(mut raw: &[u8]) -> (Vec<u8>, bool) {
    let mut body = Vec::new();
    loop {
        let Some(end) = raw.windows(2).position(|w| w == b"\r\n") else {
            return (body, false);
        };
        let size = std::str::from_utf8(&raw[..end])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok());
        let Some(size) = size else {
            return (body, false);
        };
        if size == 0 {
            return (body, true);
        }
        let data = &raw[end + 2..];
        if data.len() < size + 2 {
            body.extend_from_slice(&data[..data.len().min(size)]);
            return (body, false);
        }
        body.extend_from_slice(&data[..size]);
        raw = &data[size + 2..];
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn an_image_cut_short_is_a_502_and_none_of_it_reaches_the_client() {
    let image = &world().2;
    for path in ["/cut/image.png", "/reset/image.png", "/short/image.png"] {
        let reply = get(path);
        assert_eq!(reply.status, 502, "{path}: {}", reply.head);
        assert!(
            reply
                .head
                .contains("x-moderation-error: origin body could not be read"),
            "{path}: {}",
            reply.head
        );
        assert!(
            !contains(&reply.body, &image[..64]),
            "{path}: image bytes reached the client"
        );
        assert!(
            reply.took < Duration::from_secs(10),
            "{path}: {:?}",
            reply.took
        );
    }
}

#[test]
fn a_page_cut_short_never_arrives_as_whole() {
    for path in ["/cut/page.html", "/reset/page.html", "/short/page.html"] {
        let reply = get(path);
        assert_eq!(
            reply.status, 200,
            "{path}: streaming had begun: {}",
            reply.head
        );
        assert!(
            !reply.complete,
            "{path}: a truncated body arrived framed as whole"
        );
        assert!(
            reply.took < Duration::from_secs(10),
            "{path}: {:?}",
            reply.took
        );
    }
}

#[test]
fn an_origin_that_never_answers_is_a_504_after_the_first_byte_timeout() {
    let reply = get("/stall/headers");
    assert_eq!(reply.status, 504, "{}", reply.head);
    assert!(
        reply
            .head
            .contains("origin sent no response within 2000 ms"),
        "{}",
        reply.head
    );
    assert!(
        reply.took >= Duration::from_secs(2) && reply.took < Duration::from_secs(8),
        "{:?}",
        reply.took
    );
}

#[test]
fn an_image_that_stalls_halfway_is_a_502_after_the_between_bytes_timeout() {
    let image = &world().2;
    let reply = get("/stall/body.png");
    assert_eq!(reply.status, 502, "{}", reply.head);
    assert!(
        reply.head.contains("no body data for 2000 ms"),
        "{}",
        reply.head
    );
    assert!(!contains(&reply.body, &image[..64]));
    assert!(
        reply.took >= Duration::from_secs(2) && reply.took < Duration::from_secs(8),
        "{:?}",
        reply.took
    );
}

#[test]
fn an_origin_error_passes_as_sent() {
    let reply = get("/error.png");
    assert_eq!(reply.status, 503);
    assert!(reply.complete);
    assert_eq!(reply.body, br#"{"error": "upstream unavailable"}"#);
}

#[test]
fn a_100_mb_image_gets_the_oversize_outcome_without_being_read_whole() {
    let reply = get("/huge.png");
    assert_eq!(reply.status, 403, "{}", reply.head);
    assert!(
        reply.head.contains("x-moderation-reason: oversize"),
        "{}",
        reply.head
    );
    assert!(!contains(&reply.body, b"\x89PNG"));
    assert!(reply.took < Duration::from_secs(30), "{:?}", reply.took);
}
