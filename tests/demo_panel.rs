//! The demo page's "Try your own image" panel, in a real browser: the demo origin
//! (`demo/origin.py`) behind the service under `viceroy serve` with the demo policy and
//! classify token from `fastly.toml`, and headless Chromium (Debian's `/usr/bin/chromium`,
//! driven by playwright-core from `tests/browser/`) choosing an image in the panel's file
//! picker. What the panel shows is checked against the classify API's own answer.
//! Needs `make setup` (Chromium and `tests/browser/node_modules`); fails without them.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::ports;
use support::viceroy::Setup;
use support::{repo, Service, Siblings};

const TOKEN: &str = "local-demo-classify-token";
const CHROMIUM: &str = "/usr/bin/chromium";

/// `python3 demo/origin.py PORT`, stopped on drop.
struct DemoOrigin {
    port: u16,
    child: Child,
}

impl DemoOrigin {
    fn start() -> DemoOrigin {
        let port = ports::free();
        let child = Command::new("python3")
            .arg(repo().join("demo/origin.py"))
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs demo/origin.py");
        let mut origin = DemoOrigin { port, child };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !ports::listens(origin.child.id(), port) {
            if let Ok(Some(status)) = origin.child.try_wait() {
                panic!("demo/origin.py exited ({status}) before listening on {port}");
            }
            assert!(Instant::now() < deadline, "demo/origin.py did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        origin
    }
}

impl Drop for DemoOrigin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The demo policy, as `make serve` stores it: `policy = '''…'''` in `fastly.toml`'s
/// `[local_server.config_stores.moderation.contents]`.
fn demo_policy() -> String {
    let manifest = std::fs::read_to_string(repo().join("fastly.toml")).expect("fastly.toml");
    let contents = manifest
        .split_once("[local_server.config_stores.moderation.contents]")
        .expect("fastly.toml has the demo's config store contents")
        .1;
    let policy = contents
        .split_once("policy = '''")
        .and_then(|(_, rest)| rest.split_once("'''"))
        .expect("fastly.toml stores the demo policy as policy = '''…'''")
        .0;
    policy.trim().to_string()
}

/// Fails, naming the fix, when the browser or its driver is missing.
fn require_browser() {
    let driver = repo().join("tests/browser/node_modules/playwright-core/package.json");
    let mut missing = Vec::new();
    if !Path::new(CHROMIUM).exists() {
        missing.push(format!("{CHROMIUM} (Debian's chromium package)"));
    }
    if !driver.exists() {
        missing.push("tests/browser/node_modules (playwright-core)".to_string());
    }
    if Command::new("node").arg("--version").output().is_err() {
        missing.push("node".to_string());
    }
    assert!(
        missing.is_empty(),
        "the browser test needs {}: run `make setup`",
        missing.join(", ")
    );
}

/// What the panel shows after `image` is chosen in the page at `base`/, as printed by
/// `tests/browser/classify_panel.mjs`; its screenshot of the panel goes to `screenshot`.
fn panel_shows(base: &str, image: &Path, screenshot: &Path) -> serde_json::Value {
    let output = Command::new("node")
        .arg(repo().join("tests/browser/classify_panel.mjs"))
        .arg(format!("{base}/"))
        .arg(image)
        .arg(screenshot)
        .output()
        .expect("node runs tests/browser/classify_panel.mjs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "classify_panel.mjs failed ({}) for {}:\n{stdout}\n{}",
        output.status,
        image.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let line = stdout.lines().last().unwrap_or_default();
    let shown: serde_json::Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("{e}: classify_panel.mjs printed {stdout:?}"));
    assert_eq!(shown["page_errors"], serde_json::json!([]), "{shown}");
    assert_eq!(shown["token"], TOKEN, "the token field is prefilled");
    assert!(
        screenshot.exists(),
        "no screenshot at {}",
        screenshot.display()
    );
    shown
}

/// The classify API's answer for `bytes`, sent directly.
fn api_answer(service: &Service, bytes: &[u8]) -> serde_json::Value {
    let reply = service.post(
        "/.edge-moderation/classify",
        &[("Authorization", &format!("Bearer {TOKEN}"))],
        bytes,
    );
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    serde_json::from_slice(&reply.body).expect("the classify API answers JSON")
}

#[test]
fn the_try_your_own_image_panel_shows_the_verdict_the_classify_api_gives() {
    require_browser();
    let origin = DemoOrigin::start();
    let setup = Setup {
        config: vec![("policy", demo_policy())],
        secrets: vec![("classify_token", TOKEN.into())],
        kv: Vec::new(),
        siblings: Siblings::Reachable,
    };
    let service = Service::start_setup("demo-panel", origin.port, &setup);
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("demo-panel");
    std::fs::create_dir_all(&shots).unwrap();

    // The demo's own images (the page has just loaded them through the filter, so their
    // verdicts may come from the cache), and a photo the page never loads: judged afresh.
    let cases = [
        ("demo/site/street.png", "block", false),
        ("demo/site/rocket.jpg", "rewrite", false),
        ("demo/site/cat.jpg", "pass", false),
        ("models/fidelity/images/panorama_wide.png", "block", true),
    ];
    for (path, verdict, fresh) in cases {
        let image = repo().join(path);
        let name = Path::new(path).file_stem().unwrap().to_string_lossy();
        let shown = panel_shows(&service.base, &image, &shots.join(format!("{name}.png")));
        assert_eq!(shown["verdict"], verdict, "{path}: {shown}");
        assert_eq!(shown["error"], "", "{path}: {shown}");

        let api = api_answer(&service, &std::fs::read(&image).unwrap());
        assert_eq!(api["verdict"], verdict, "{path}: {api}");
        assert_eq!(shown["reason"], api["reason"], "{path}");
        assert_eq!(
            shown["would"], "",
            "{path}: enforce mode has no would-be verdict"
        );
        let scores = api["scores"].as_object().expect("scores");
        assert_eq!(scores.len(), 5, "{api}");
        for (class, score) in scores {
            let on_page: f64 = shown["scores"][class]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("{path}: no {class} score on the page: {shown}"));
            assert!(
                (on_page - score.as_f64().unwrap()).abs() <= 0.0005 + 1e-9,
                "{path}: {class} {on_page} on the page, {score} from the API"
            );
        }
        let facts = shown["facts"].as_str().unwrap();
        let size = format!("{}×{}", api["width"], api["height"]);
        assert!(facts.contains(api["format"].as_str().unwrap()), "{facts}");
        assert!(facts.contains(&size), "{facts} lacks {size}");
        let timings = shown["timings"].as_str().unwrap();
        assert!(timings.contains("round trip"), "{timings}");
        if fresh {
            assert!(facts.contains("cache miss"), "{facts}");
            for stage in ["decode", "inference", "CPU"] {
                assert!(timings.contains(stage), "{path}: {timings} lacks {stage}");
            }
        }
    }

    // Not an image: the API's 415 shows as the panel's error, with no verdict.
    let shown = panel_shows(
        &service.base,
        &repo().join("demo/site/index.html"),
        &shots.join("not-an-image.png"),
    );
    assert_eq!(shown["verdict"], "", "{shown}");
    let error = shown["error"].as_str().unwrap();
    assert!(
        error.starts_with("415") && error.contains("not an image"),
        "{error}"
    );
    eprintln!("panel screenshots in {}", shots.display());
}
