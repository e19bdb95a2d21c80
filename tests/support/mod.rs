//! Test fixtures for the Viceroy suite: a real HTTP origin on loopback, real images, and
//! `viceroy serve` instances running the built, pre-initialised module.

#![allow(dead_code)]

use image::{DynamicImage, ImageFormat};
use std::collections::HashMap;
use std::io::{Cursor, Read};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn fidelity_image(name: &str) -> DynamicImage {
    image::open(repo().join("models/fidelity/images").join(name)).expect("fidelity image")
}

pub fn encode(image: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let image = match format {
        ImageFormat::Jpeg => DynamicImage::ImageRgb8(image.to_rgb8()),
        _ => DynamicImage::ImageRgba8(image.to_rgba8()),
    };
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, format).expect("encode fixture");
    out.into_inner()
}

/// One resource the origin serves.
#[derive(Clone)]
pub struct Resource {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Body,
    pub headers: Vec<(&'static str, String)>,
}

#[derive(Clone)]
pub enum Body {
    Bytes(Arc<Vec<u8>>),
    /// `len` bytes of [`pattern_byte`], generated while streaming.
    Pattern(u64),
}

pub fn pattern_byte(i: u64) -> u8 {
    (i.wrapping_mul(2654435761) >> 13) as u8
}

impl Resource {
    pub fn bytes(content_type: &'static str, body: Vec<u8>) -> Self {
        Resource {
            status: 200,
            content_type,
            body: Body::Bytes(Arc::new(body)),
            headers: vec![],
        }
    }

    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    pub fn with_header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_string()));
        self
    }
}

/// A loopback HTTP/1.1 origin serving fixed resources, with byte ranges like a real one.
pub struct Origin {
    pub port: u16,
}

impl Origin {
    pub fn start(resources: HashMap<&'static str, Resource>) -> Origin {
        let server = tiny_http::Server::http("127.0.0.1:0").expect("origin binds");
        let port = server.server_addr().to_ip().expect("ip address").port();
        let resources = Arc::new(resources);
        std::thread::spawn(move || {
            for request in server.incoming_requests() {
                let resources = resources.clone();
                std::thread::spawn(move || serve(request, &resources));
            }
        });
        Origin { port }
    }
}

fn serve(request: tiny_http::Request, resources: &HashMap<&'static str, Resource>) {
    let path = request.url().split('?').next().unwrap_or("").to_string();
    let Some(resource) = resources.get(path.as_str()).cloned() else {
        let _ =
            request.respond(tiny_http::Response::from_string("not found").with_status_code(404));
        return;
    };
    let total = match &resource.body {
        Body::Bytes(bytes) => bytes.len() as u64,
        Body::Pattern(len) => *len,
    };
    let range = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Range"))
        .and_then(|h| parse_range(h.value.as_str(), total));
    let (status, start, end) = match range {
        Some((start, end)) if resource.status == 200 => (206, start, end),
        _ => (resource.status, 0, total),
    };
    let mut headers = vec![
        header("Content-Type", resource.content_type),
        header("Accept-Ranges", "bytes"),
    ];
    if status == 206 {
        headers.push(header(
            "Content-Range",
            &format!("bytes {start}-{}/{total}", end - 1),
        ));
    }
    for (name, value) in &resource.headers {
        headers.push(header(name, value));
    }
    let reader: Box<dyn Read + Send> = match resource.body {
        Body::Bytes(bytes) => Box::new(Cursor::new(bytes[start as usize..end as usize].to_vec())),
        Body::Pattern(_) => Box::new(PatternReader { next: start, end }),
    };
    let response = tiny_http::Response::new(
        status.into(),
        headers,
        reader,
        Some((end - start) as usize),
        None,
    );
    let _ = request.respond(response);
}

fn header(name: &str, value: &str) -> tiny_http::Header {
    tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("valid header")
}

/// `bytes=a-b`, `bytes=a-`, `bytes=-n` → half-open [start, end).
fn parse_range(value: &str, total: u64) -> Option<(u64, u64)> {
    let spec = value.strip_prefix("bytes=")?;
    let (first, last) = spec.split_once('-')?;
    let (start, end) = match (first.parse::<u64>().ok(), last.parse::<u64>().ok()) {
        (Some(start), Some(last)) => (start, last + 1),
        (Some(start), None) => (start, total),
        (None, Some(suffix)) => (total.saturating_sub(suffix), total),
        (None, None) => return None,
    };
    (start < end.min(total)).then_some((start, end.min(total)))
}

struct PatternReader {
    next: u64,
    end: u64,
}

impl Read for PatternReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min((self.end - self.next) as usize);
        for (i, b) in buf[..n].iter_mut().enumerate() {
            *b = pattern_byte(self.next + i as u64);
        }
        self.next += n as u64;
        Ok(n)
    }
}

/// `viceroy serve` running `bin/main.wasm` with a given origin and stored policy.
pub struct Service {
    pub base: String,
    pub log: PathBuf,
    child: Child,
}

impl Drop for Service {
    fn drop(&mut self) {
        // Closing the watchdog's stdin stops Viceroy (see `start_module`).
        self.child.stdin = None;
        let _ = self.child.wait();
    }
}

/// Runs Viceroy under a shell that stops it once its stdin, a pipe from this process, is
/// closed: by `Drop`, or by the kernel when this process exits. Services held in statics
/// (the test suite's shared world) are never dropped, and an orphaned Viceroy would keep
/// burning ~15% of a core (its epoch ticker wakes every millisecond).
/// Viceroy exiting by itself ends the shell too, with its status.
const WATCHDOG: &str = r#"exec 3<&0; "$0" "$@" < /dev/null 3<&- & viceroy=$!
(read -r _ <&3; kill $viceroy 2> /dev/null) & wait $viceroy"#;

impl Service {
    /// Starts Viceroy; `policy` is the Config Store value (None: no store at all).
    pub fn start(name: &str, origin_port: u16, policy: Option<&str>) -> Service {
        let wasm = repo().join("bin/main.wasm");
        assert!(
            wasm.exists(),
            "bin/main.wasm is missing: run `make test` (it builds the module first)"
        );
        Self::start_module(name, &wasm, origin_port, policy)
    }

    /// Starts Viceroy on any Compute module (the benchmark's baseline proxy, say).
    pub fn start_module(
        name: &str,
        wasm: &Path,
        origin_port: u16,
        policy: Option<&str>,
    ) -> Service {
        let dir = std::env::temp_dir().join(format!(
            "edge-moderation-test-{}-{name}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut manifest = format!(
            "manifest_version = 3\nname = \"edge-moderation\"\nlanguage = \"rust\"\n\
             [local_server.backends.origin]\nurl = \"http://127.0.0.1:{origin_port}\"\n"
        );
        if let Some(policy) = policy {
            manifest += &format!(
                "[local_server.config_stores.moderation]\nformat = \"inline-toml\"\n\
                 [local_server.config_stores.moderation.contents]\npolicy = '''{policy}'''\n"
            );
        }
        let config = dir.join("fastly.toml");
        std::fs::write(&config, manifest).unwrap();
        let port = free_port();
        let log = dir.join("viceroy.log");
        let viceroy = std::env::var("VICEROY").unwrap_or_else(|_| "viceroy".into());
        let child = Command::new("sh")
            .args(["-c", WATCHDOG])
            .arg(viceroy)
            .args(["serve", "-C"])
            .arg(&config)
            .args(["--addr", &format!("127.0.0.1:{port}")])
            .arg(wasm)
            .stdin(Stdio::piped())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.join("viceroy.stderr")).unwrap())
            .spawn()
            .expect("viceroy starts (is it installed? `make setup`)");
        let mut service = Service {
            base: format!("http://127.0.0.1:{port}"),
            log,
            child,
        };
        // Viceroy compiles the module before it listens; that takes seconds.
        let deadline = Instant::now() + Duration::from_secs(300);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = service.child.try_wait() {
                panic!(
                    "viceroy exited ({status}) before listening (is it installed? `make setup`):\n{}",
                    service.output()
                );
            }
            assert!(
                Instant::now() < deadline,
                "viceroy did not listen within 300 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        service
    }

    /// Everything Viceroy printed, including the guest's stdout and stderr.
    pub fn output(&self) -> String {
        let stderr = self.log.with_file_name("viceroy.stderr");
        std::fs::read_to_string(&self.log).unwrap_or_default()
            + &std::fs::read_to_string(stderr).unwrap_or_default()
    }

    pub fn get(&self, path: &str) -> Reply {
        self.request("GET", path, &[])
    }

    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
        let agent = ureq::AgentBuilder::new()
            .redirects(0)
            .timeout(Duration::from_secs(120))
            .build();
        let mut request = agent.request(method, &format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.set(name, value);
        }
        let response = match request.call() {
            Ok(response) => response,
            Err(ureq::Error::Status(_, response)) => response,
            Err(e) => panic!("{method} {path}: {e}"),
        };
        let status = response.status();
        let headers = response
            .headers_names()
            .into_iter()
            .map(|name| {
                let value = response.header(&name).unwrap_or_default().to_string();
                (name.to_ascii_lowercase(), value)
            })
            .collect();
        let mut body = Vec::new();
        response
            .into_reader()
            .take(u64::MAX)
            .read_to_end(&mut body)
            .expect("read body");
        Reply {
            status,
            headers,
            body,
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Reply {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    pub fn verdict(&self) -> Option<&str> {
        self.header("x-moderation-verdict")
    }
}
