//! The verdict cache end to end (`src/edge/cache.rs`): Viceroy implements Fastly's Core
//! Cache in memory, shared by the requests one `viceroy serve` process handles. Needs
//! `bin/main.wasm` (`make test` builds it).

mod support;

use edge_moderation::headers;
use std::collections::HashMap;
use support::fixtures::{bytes_of, drawing_policy, format_images};
use support::{Origin, Reply, Resource, Service};

struct World {
    fixtures: HashMap<&'static str, Resource>,
    drawing: Service,
    uncached: Service,
}

fn world() -> &'static World {
    static WORLD: std::sync::OnceLock<World> = std::sync::OnceLock::new();
    WORLD.get_or_init(|| {
        let mut fixtures = format_images();
        // The same bytes as /photo.png under another path and type.
        let photo = fixtures["/photo.png"].clone();
        fixtures.insert("/copy-of-photo", photo);
        let origin = Origin::start(fixtures.clone());
        let port = origin.port;
        let drawing =
            std::thread::spawn(move || Service::start("cache", port, Some(&drawing_policy(""))));
        let off = drawing_policy(r#""cache": {"ttl_seconds": 0}"#);
        let uncached = Service::start("uncached", port, Some(&off));
        World {
            fixtures,
            drawing: drawing.join().unwrap(),
            uncached,
        }
    })
}

fn timing(reply: &Reply) -> &str {
    reply.header(headers::SERVER_TIMING).unwrap_or_default()
}

/// Asserts the first request judged the image and the second was answered from the
/// cache alike, without decoding or inference; returns both replies.
fn miss_then_hit(path: &str) -> (Reply, Reply) {
    let service = &world().drawing;
    let first = service.get(path);
    assert_eq!(first.header(headers::CACHE), Some("miss"), "{path}");
    assert!(timing(&first).contains("inference;dur="), "{path}");
    let second = service.get(path);
    assert_eq!(second.header(headers::CACHE), Some("hit"), "{path}");
    assert!(
        timing(&second).starts_with("cache;dur=") && !timing(&second).contains("inference"),
        "{path}: {}",
        timing(&second)
    );
    for header in [headers::VERDICT, headers::REASON, headers::SCORES] {
        assert_eq!(
            first.header(header),
            second.header(header),
            "{path} {header}"
        );
    }
    assert_eq!(first.status, second.status, "{path}");
    (first, second)
}

#[test]
fn a_passed_image_is_served_from_the_origin_with_the_remembered_verdict() {
    let path = "/photo.jpg";
    let (first, second) = miss_then_hit(path);
    assert_eq!(second.verdict(), Some("pass"));
    let original = bytes_of(&world().fixtures, path);
    assert_eq!(first.body, original);
    assert_eq!(second.body, original);
}

#[test]
fn a_blocked_image_stays_blocked_without_a_byte_of_it() {
    let (_, second) = miss_then_hit("/drawing.webp");
    assert_eq!((second.status, second.verdict()), (451, Some("block")));
    assert!(edge_moderation::media::ImageFormat::sniff(&second.body).is_none());
}

#[test]
fn a_rewrite_is_served_from_the_cache_byte_for_byte() {
    let (first, second) = miss_then_hit("/rocket.gif");
    assert_eq!(second.verdict(), Some("rewrite"));
    assert_eq!(second.header("content-type"), Some("image/gif"));
    assert_eq!(second.body, first.body, "the obscured bytes differ");
    assert_ne!(second.body, bytes_of(&world().fixtures, "/rocket.gif"));
}

#[test]
fn the_key_is_the_content_not_the_address() {
    let service = &world().drawing;
    let first = service.get("/photo.png");
    let copy = service.get("/copy-of-photo");
    assert!(first.header(headers::CACHE).is_some());
    assert_eq!(copy.header(headers::CACHE), Some("hit"));
    assert_eq!(copy.body, bytes_of(&world().fixtures, "/copy-of-photo"));
}

#[test]
fn a_policy_with_the_cache_off_judges_every_time() {
    let service = &world().uncached;
    for _ in 0..2 {
        let reply = service.get("/drawing.jpg");
        assert_eq!((reply.status, reply.verdict()), (451, Some("block")));
        assert_eq!(reply.header(headers::CACHE), None);
        assert!(timing(&reply).contains("inference;dur="));
    }
}
