//! Running it in production, end to end under `viceroy serve`: per-route policies,
//! report-only mode, the decision log (read from Viceroy's stdout, where log endpoints
//! print as `name :: line`) and the classify API.
//!
//! The default policy is the suites' Drawing policy (`/drawing.*` blocked with 451,
//! `/rocket.*` rewritten, `/photo.*` passes), logging to the endpoint `decisions`. Routes:
//! - `rollout`: paths `/report/*`, report-only, the query kept in the log;
//! - `partner`: host `partner.example`, served images, no rules (everything passes);
//! - `avatars`: uploads to `/avatars/*`, a rewrite blocks the upload;
//! - `lists`: paths `/lists/*`, PDQ deny and allow lists from the KV Store `lists` (the
//!   photo denied, the drawing allowed); `broken lists`: `/broken-lists/*`, a deny list
//!   that does not parse.
//!
//! The verdict cache (Viceroy's Core Cache, shared by the process's requests) keys each
//! verdict by the policy in force too: the same bytes under another route's policy miss.

mod support;

use edge_moderation::headers;
use edge_moderation::media::pdq;
use edge_moderation::moderation::record::ContentHash;
use edge_moderation::policy::Policy;
use std::collections::HashMap;
use std::sync::OnceLock;
use support::fixtures::{bytes_of, drawing_policy, format_images};
use support::viceroy::Setup;
use support::{Origin, Reply, Resource, Service, Siblings};

const TOKEN: &str = "test-classify-token-4242";
const CLASSIFY: &str = "/.edge-moderation/classify";

const ROUTES: &str = r#"[
  {"name": "lists", "paths": ["/lists/*"], "policy": {"lists": {"store": "lists"}}},
  {"name": "broken lists", "paths": ["/broken-lists/*"],
   "policy": {"lists": {"store": "lists", "deny_key": "broken", "allow_key": "absent"}}},
  {"name": "rollout", "paths": ["/report/*"],
   "policy": {"mode": "report", "log": {"keep_query": true}}},
  {"name": "partner", "hosts": ["partner.example"], "direction": "served",
   "policy": {"rules": []}},
  {"name": "avatars", "direction": "uploaded", "paths": ["/avatars/*"],
   "policy": {"uploads": {"rewrite_as": "block"}}}
]"#;

fn default_policy() -> String {
    drawing_policy(r#""log": {"endpoint": "decisions"}"#)
}

struct World {
    fixtures: HashMap<&'static str, Resource>,
    origin: Origin,
    service: Service,
    /// The same policy with a route list that does not validate.
    invalid_routes: Service,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let mut fixtures = format_images();
        for name in ["drawing.png", "rocket.png", "photo.png"] {
            let served = fixtures[format!("/{name}").as_str()].clone();
            let path: &'static str = Box::leak(format!("/report/{name}").into_boxed_str());
            fixtures.insert(path, served);
        }
        // The denied photo as someone re-uploads it: smaller, and JPEG at another quality.
        let photo = image::load_from_memory(&bytes_of(&fixtures, "/photo.png")).unwrap();
        let small = photo.resize(
            photo.width() * 3 / 5,
            photo.height() * 3 / 5,
            image::imageops::FilterType::Triangle,
        );
        let mut reencoded = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut reencoded, 70)
            .encode_image(&small.to_rgb8())
            .unwrap();
        fixtures.insert(
            "/lists/photo-small.jpg",
            Resource::bytes("image/jpeg", reencoded),
        );
        // Bytes no other test requests, so that the verdict cache starts empty for them.
        let drawing = image::load_from_memory(&bytes_of(&fixtures, "/drawing.png")).unwrap();
        let mut unique = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut unique, 91)
            .encode_image(&drawing.to_rgb8())
            .unwrap();
        fixtures.insert("/cached/drawing.jpg", Resource::bytes("image/jpeg", unique));
        for name in ["drawing.png", "rocket.png"] {
            let served = fixtures[format!("/{name}").as_str()].clone();
            for prefix in ["/lists", "/broken-lists"] {
                let path: &'static str = Box::leak(format!("{prefix}/{name}").into_boxed_str());
                fixtures.insert(path, served.clone());
            }
        }
        let lists =
            std::env::temp_dir().join(format!("edge-moderation-lists-{}", std::process::id()));
        std::fs::create_dir_all(&lists).unwrap();
        let deny = format!(
            "# test deny list\n{} known photo (case 7)\n",
            pdq_of(&fixtures, "/photo.png")
        );
        let allow = format!(
            "{} our street panorama\n",
            pdq_of(&fixtures, "/drawing.png")
        );
        for (key, text) in [
            ("deny", deny),
            ("allow", allow),
            ("broken", "not a hash\n".into()),
        ] {
            std::fs::write(lists.join(key), text).unwrap();
        }
        let origin = Origin::start(fixtures.clone());
        let port = origin.port;
        let setup = Setup {
            config: vec![("policy", default_policy()), ("routes", ROUTES.to_string())],
            secrets: vec![("classify_token", TOKEN.to_string())],
            kv: ["deny", "allow", "broken"]
                .map(|key| ("lists", key, lists.join(key)))
                .to_vec(),
            siblings: Siblings::Reachable,
        };
        let invalid = Setup {
            config: vec![
                ("policy", default_policy()),
                (
                    "routes",
                    r#"[{"paths": ["/report/*"], "policy": {"mode": "loud"}}]"#.into(),
                ),
            ],
            ..Setup::policy(None)
        };
        let invalid =
            std::thread::spawn(move || Service::start_setup("invalid-routes", port, &invalid));
        let service = Service::start_setup("operations", port, &setup);
        World {
            fixtures,
            origin,
            service,
            invalid_routes: invalid.join().unwrap(),
        }
    })
}

fn image(path: &str) -> Vec<u8> {
    bytes_of(&world().fixtures, path)
}

/// The PDQ (hex) of a fixture's pixels, as the service computes it.
fn pdq_of(fixtures: &HashMap<&'static str, Resource>, path: &str) -> String {
    let rgb = image::load_from_memory(&bytes_of(fixtures, path))
        .unwrap()
        .to_rgb8();
    let (width, height) = (rgb.width() as usize, rgb.height() as usize);
    pdq::hash_rgb(rgb.as_raw(), width, height)
        .unwrap()
        .hash
        .to_hex()
}

/// The decision-log records Viceroy has printed so far, parsed.
fn decisions(service: &Service) -> Vec<serde_json::Value> {
    service
        .output()
        .lines()
        .filter_map(|line| line.split_once("decisions :: "))
        .map(|(_, json)| serde_json::from_str(json).expect("a decision is one JSON object"))
        .collect()
}

/// The record logged for the request whose path (as logged) is `path`; waits briefly,
/// since Viceroy's stdout is written as the guest logs.
fn decision_for(service: &Service, path: &str) -> serde_json::Value {
    for _ in 0..50 {
        if let Some(found) = decisions(service)
            .into_iter()
            .rev()
            .find(|d| d["path"] == path)
        {
            return found;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("no decision logged for {path}:\n{}", service.output());
}

fn classify(query: &str, body: &[u8], token: &str) -> Reply {
    let auth = format!("Bearer {token}");
    world().service.post(
        &format!("{CLASSIFY}{query}"),
        &[("Authorization", &auth), ("Content-Type", "image/png")],
        body,
    )
}

fn json(reply: &Reply) -> serde_json::Value {
    serde_json::from_slice(&reply.body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&reply.body)))
}

#[test]
fn the_first_matching_route_decides_and_the_default_policy_applies_elsewhere() {
    let service = &world().service;
    let blocked = service.get("/drawing.png");
    assert_eq!(blocked.status, 451);
    assert_eq!(blocked.header(headers::ROUTE), None);

    // By host: the partner's images pass.
    let partner = service.request("GET", "/drawing.png", &[("Host", "partner.example")]);
    assert_eq!(partner.status, 200);
    assert_eq!(partner.verdict(), Some("pass"));
    assert_eq!(partner.header(headers::ROUTE), Some("partner"));
    assert_eq!(partner.body, image("/drawing.png"));

    // By direction and path: the avatars route blocks what the default would rewrite.
    let rocket = image("/rocket.png");
    let avatar = service.upload(
        "POST",
        "/avatars/me",
        &[("Content-Type", "image/png")],
        &rocket,
    );
    assert_eq!(
        avatar.status,
        451,
        "{}",
        String::from_utf8_lossy(&avatar.body)
    );
    assert_eq!(avatar.header(headers::ROUTE), Some("avatars"));
    assert!(world().origin.received("/avatars/me").is_empty());
    let elsewhere = service.upload(
        "POST",
        "/albums/1",
        &[("Content-Type", "image/png")],
        &rocket,
    );
    assert_eq!(elsewhere.verdict(), Some("rewrite"));
    let forwarded = world().origin.received("/albums/1");
    assert_eq!(forwarded.len(), 1);
    assert_ne!(forwarded[0].body, rocket, "the rewrite reached the origin");
}

#[test]
fn report_only_routes_change_nothing_and_say_what_would_have_happened() {
    let service = &world().service;
    for (path, would) in [
        ("/report/drawing.png", "block"),
        ("/report/rocket.png", "rewrite"),
    ] {
        let reply = service.get(path);
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(reply.body, image(path), "{path}: the origin's bytes");
        assert_eq!(reply.verdict(), Some("pass"));
        assert_eq!(reply.header(headers::WOULD), Some(would), "{path}");
        assert_eq!(reply.header(headers::ROUTE), Some("rollout"));
        assert!(reply.header(headers::REASON).unwrap().contains("Drawing"));
    }
    let photo = service.get("/report/photo.png");
    assert_eq!(
        (photo.verdict(), photo.header(headers::WOULD)),
        (Some("pass"), None)
    );

    // An upload the default policy would block reaches the origin untouched.
    let drawing = image("/drawing.png");
    let upload = service.upload(
        "PUT",
        "/report/up",
        &[("Content-Type", "image/png")],
        &drawing,
    );
    assert_eq!(upload.status, 201);
    assert_eq!(upload.header(headers::WOULD), Some("block"));
    let received = world().origin.received("/report/up");
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].body, drawing);
    assert_eq!(received[0].header(headers::WOULD), Some("block"));
}

#[test]
fn every_judged_image_is_logged_without_queries_cookies_or_credentials() {
    let service = &world().service;
    let reply = service.request(
        "GET",
        "/drawing.png?session=s3cr3t",
        &[
            ("Cookie", "id=c00kie"),
            ("Authorization", "Basic YWxhZGRpbjpvcGVu"),
        ],
    );
    assert_eq!(reply.status, 451);
    let logged = decision_for(service, "/drawing.png");
    let line = logged.to_string();
    for secret in ["s3cr3t", "c00kie", "YWxhZGRpbjpvcGVu"] {
        assert!(!line.contains(secret), "{secret} logged: {line}");
    }
    let stored = Policy::from_json(&default_policy()).unwrap();
    assert_eq!(logged["direction"], "served");
    assert_eq!(logged["method"], "GET");
    assert_eq!(logged["verdict"], "block");
    assert_eq!(logged["mode"], "enforce");
    assert_eq!(logged["format"], "PNG");
    assert_eq!(logged["policy"], stored.fingerprint().to_string());
    assert_eq!(
        logged["content_hash"],
        ContentHash::of(&image("/drawing.png")).to_string()
    );
    let source = image::load_from_memory(&image("/drawing.png")).unwrap();
    assert_eq!(logged["width"], source.width());
    assert_eq!(logged["height"], source.height());
    assert_eq!(logged["frames_judged"], 1);
    assert_eq!(logged["pdq"], pdq_of(&world().fixtures, "/drawing.png"));
    assert!(logged["pdq_quality"].as_u64().unwrap() >= 50);
    assert!(logged["scores"]["Drawing"].as_f64().unwrap() > 0.93);
    assert!(logged["reason"].as_str().unwrap().starts_with("rule 0"));
    assert!(logged["request_id"].is_string());
    assert!(logged["cache"].is_string());
    assert!(logged["largest_instance_cpu_ms"].as_u64().is_some());
    assert!(logged
        .get("time")
        .and_then(|t| t.as_str())
        .is_some_and(|t| t.ends_with('Z')));

    // The rollout route keeps the query and logs what would have happened.
    service.get("/report/rocket.png?campaign=7");
    let reported = decision_for(service, "/report/rocket.png?campaign=7");
    assert_eq!(reported["verdict"], "pass");
    assert_eq!(reported["would"], "rewrite");
    assert_eq!(reported["route"], "rollout");
    assert_eq!(reported["mode"], "report");

    // Each image of an upload, naming its part.
    let form = multipart(&[
        ("a", "a.png", image("/photo.png")),
        ("b", "b.png", image("/rocket.png")),
    ]);
    let upload = service.upload(
        "POST",
        "/forms/two?x=1",
        &[("Content-Type", "multipart/form-data; boundary=XyZ")],
        &form,
    );
    assert_eq!(upload.verdict(), Some("rewrite"));
    let parts: Vec<String> = (0..50)
        .find_map(|_| {
            let found: Vec<String> = decisions(service)
                .into_iter()
                .filter(|d| d["path"] == "/forms/two" && d["direction"] == "uploaded")
                .map(|d| {
                    format!(
                        "{} {}",
                        d["part"].as_str().unwrap_or_default(),
                        d["verdict"]
                    )
                })
                .collect();
            if found.len() == 2 {
                return Some(found);
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
            None
        })
        .expect("both parts logged");
    assert!(
        parts
            .iter()
            .any(|p| p.starts_with("part 1 \"a\"") && p.ends_with("\"pass\"")),
        "{parts:?}"
    );
    assert!(
        parts
            .iter()
            .any(|p| p.starts_with("part 2 \"b\"") && p.ends_with("\"rewrite\"")),
        "{parts:?}"
    );
}

fn multipart(parts: &[(&str, &str, Vec<u8>)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, filename, data) in parts {
        body.extend_from_slice(
            format!(
                "--XyZ\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\n\
                 Content-Type: image/png\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"--XyZ--\r\n");
    body
}

#[test]
fn the_classify_api_answers_with_the_routes_verdict() {
    let drawing = image("/drawing.png");
    let reply = classify("", &drawing, TOKEN);
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let answer = json(&reply);
    assert_eq!(answer["verdict"], "block");
    assert_eq!(answer["direction"], "classify");
    assert_eq!(
        answer["content_hash"],
        ContentHash::of(&drawing).to_string()
    );
    assert!(answer["scores"]["Drawing"].as_f64().unwrap() > 0.93);
    assert!(answer["timings_ms"].is_object());
    assert_eq!(answer["pdq"], pdq_of(&world().fixtures, "/drawing.png"));

    // Another route's policy: the rollout's report-only mode, the partner's rules.
    let rollout = json(&classify("?path=/report/x.png", &drawing, TOKEN));
    assert_eq!(
        (rollout["verdict"].as_str(), rollout["would"].as_str()),
        (Some("pass"), Some("block"))
    );
    assert_eq!(rollout["route"], "rollout");
    let partner = world().service.post(
        &format!("{CLASSIFY}?direction=served"),
        &[
            ("Authorization", &format!("Bearer {TOKEN}")),
            ("Host", "partner.example"),
        ],
        &drawing,
    );
    assert_eq!(json(&partner)["verdict"], "pass");
    assert_eq!(json(&partner)["route"], "partner");

    // Bytes claimed as an image that are none get the policy's undecodable outcome;
    // a body that is not an image at all is refused.
    let claimed = json(&classify("", b"just text", TOKEN));
    assert_eq!(claimed["verdict"], "block");
    assert!(claimed["reason"]
        .as_str()
        .unwrap()
        .starts_with("undecodable"));
    let auth = format!("Bearer {TOKEN}");
    let text = world().service.post(
        CLASSIFY,
        &[("Authorization", &auth), ("Content-Type", "text/plain")],
        b"just text",
    );
    assert_eq!(text.status, 415);
    assert_eq!(classify("?direction=sideways", &drawing, TOKEN).status, 400);
    let get = world().service.request(
        "GET",
        CLASSIFY,
        &[("Authorization", &format!("Bearer {TOKEN}"))],
    );
    assert_eq!(get.status, 405);
}

#[test]
fn without_the_token_the_classify_path_is_ordinary_traffic() {
    let photo = image("/photo.png");
    let wrong = classify("", &photo, "not-the-token");
    assert_eq!(wrong.status, 201, "forwarded to the origin like any upload");
    assert_eq!(world().origin.received(CLASSIFY).len(), 1);
    assert_eq!(world().origin.received(CLASSIFY)[0].body, photo);
    // And an image the policy blocks is blocked as an upload, not classified.
    let drawing = classify("", &image("/drawing.png"), "");
    assert_eq!(drawing.status, 451);
    assert_eq!(world().origin.received(CLASSIFY).len(), 1);
}

#[test]
fn an_invalid_route_list_is_logged_and_the_default_policy_applies_everywhere() {
    let service = &world().invalid_routes;
    let reply = service.get("/report/drawing.png");
    assert_eq!(
        reply.status, 451,
        "enforced: the report-only route was refused"
    );
    assert_eq!(reply.header(headers::ROUTE), None);
    assert_eq!(
        reply.header(headers::POLICY),
        Some("stored default (stored routes invalid)")
    );
    assert!(service.output().contains("invalid routes in config store"));
    assert!(service
        .output()
        .contains("route 1: policy: unknown variant `loud`"));
}

#[test]
fn known_images_are_decided_by_the_pdq_lists_without_inference() {
    let service = &world().service;
    // Denied, although re-encoded and resized: the rules alone would pass this photo.
    let denied = service.get("/lists/photo-small.jpg");
    assert_eq!(denied.status, 451, "{:?}", denied.headers);
    assert_eq!(denied.verdict(), Some("block"));
    let reason = denied.header(headers::REASON).unwrap();
    assert!(
        reason.starts_with("deny list: known photo (case 7) (PDQ distance "),
        "{reason}"
    );
    let distance: u32 = reason
        .rsplit(' ')
        .next()
        .unwrap()
        .trim_end_matches(')')
        .parse()
        .unwrap();
    assert!(distance <= 31, "{reason}");
    assert_eq!(denied.header(headers::SCORES), None, "no inference ran");
    assert!(!denied.body.windows(4).any(|w| w == b"JFIF"));

    // Allowed, although the rules block it: the origin's bytes.
    let allowed = service.get("/lists/drawing.png");
    assert_eq!(allowed.status, 200);
    assert_eq!(allowed.verdict(), Some("pass"));
    assert_eq!(
        allowed.header(headers::REASON),
        Some("allow list: our street panorama (PDQ distance 0)")
    );
    assert_eq!(allowed.body, image("/drawing.png"));

    // An image on neither list is judged by the rules, as everywhere.
    let unrelated = service.get("/lists/rocket.png");
    assert_eq!(unrelated.verdict(), Some("rewrite"));
    assert!(unrelated.header(headers::SCORES).is_some());

    // The decision log names the match.
    let logged = decision_for(service, "/lists/photo-small.jpg");
    assert_eq!(logged["verdict"], "block");
    assert!(logged["reason"].as_str().unwrap().starts_with("deny list:"));
    assert!(logged["pdq"].as_str().is_some_and(|hex| hex.len() == 64));
}

#[test]
fn a_malformed_list_is_logged_and_ignored() {
    let service = &world().service;
    let reply = service.get("/broken-lists/drawing.png");
    assert_eq!(reply.status, 451, "judged by the rules");
    assert!(reply.header(headers::REASON).unwrap().starts_with("rule 0"));
    let output = service.output();
    assert!(
        output.contains("PDQ list \"lists\"/\"broken\" ignored: line 1 is not"),
        "{output}"
    );
}

#[test]
fn another_policy_misses_the_verdict_cache_by_construction() {
    let service = &world().service;
    let path = "/cached/drawing.jpg";
    let under_partner = [("Host", "partner.example")];
    // Judged, then remembered, under the default policy: blocked.
    let first = service.get(path);
    let again = service.get(path);
    for (reply, cache) in [(&first, "miss"), (&again, "hit")] {
        assert_eq!(
            (reply.status, reply.header(headers::CACHE)),
            (451, Some(cache))
        );
    }
    // The same bytes under the partner's policy (no rules): its own verdict, not the
    // remembered block, then remembered in turn.
    let first = service.request("GET", path, &under_partner);
    let again = service.request("GET", path, &under_partner);
    for (reply, cache) in [(&first, "miss"), (&again, "hit")] {
        assert_eq!(reply.header(headers::ROUTE), Some("partner"));
        assert_eq!(
            (reply.status, reply.header(headers::CACHE)),
            (200, Some(cache))
        );
        assert_eq!(reply.verdict(), Some("pass"));
        assert_eq!(reply.body, image(path));
    }
    // And the default policy's verdict is still there.
    assert_eq!(service.get(path).header(headers::CACHE), Some("hit"));
}
