//! `viceroy serve` processes running the built module, and an HTTP client for them.

use super::fixtures::repo;
use super::ports;
use edge_moderation::headers;
use std::collections::HashMap;
use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

/// The secret the suites' services share with their sibling instances.
pub const SIBLING_KEY: &str = "test-sibling-key-0123456789";

/// How a service reaches its sibling instances.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Siblings {
    /// The `self` backend is the service's own address, and the secret is set.
    Reachable,
    /// The secret is set but `self` points at a closed port: every hand-off fails.
    Unreachable,
    /// The secret is set but `self` accepts connections and never answers.
    Silent,
    /// No secret: nothing is handed off, and the route is ordinary traffic.
    Off,
}

/// A service's stores, beyond the origin.
#[derive(Clone, Debug)]
pub struct Setup {
    /// Config Store `moderation` entries (none: no store at all).
    pub config: Vec<(&'static str, String)>,
    /// Secret Store `moderation` entries besides the sibling key.
    pub secrets: Vec<(&'static str, String)>,
    /// KV Store entries: (store, key, file holding the value).
    pub kv: Vec<(&'static str, &'static str, PathBuf)>,
    pub siblings: Siblings,
}

impl Setup {
    /// A stored policy (None: no config store), siblings reachable.
    pub fn policy(policy: Option<&str>) -> Setup {
        Setup {
            config: policy
                .map(|p| ("policy", p.to_string()))
                .into_iter()
                .collect(),
            secrets: Vec::new(),
            kv: Vec::new(),
            siblings: Siblings::Reachable,
        }
    }

    fn manifest(&self, origin_port: u16, self_port: u16) -> String {
        let mut manifest = format!(
            "manifest_version = 3\nname = \"edge-moderation\"\nlanguage = \"rust\"\n\
             [local_server.backends.origin]\nurl = \"http://127.0.0.1:{origin_port}\"\n\
             [local_server.backends.self]\nurl = \"http://127.0.0.1:{self_port}\"\n"
        );
        if !self.config.is_empty() {
            manifest += "[local_server.config_stores.moderation]\nformat = \"inline-toml\"\n\
                         [local_server.config_stores.moderation.contents]\n";
            for (key, value) in &self.config {
                manifest += &format!("{key} = '''{value}'''\n");
            }
        }
        let mut secrets: Vec<String> = self
            .secrets
            .iter()
            .map(|(key, data)| format!("{{key = \"{key}\", data = \"{data}\"}}"))
            .collect();
        if self.siblings != Siblings::Off {
            secrets.push(format!(
                "{{key = \"sibling_key\", data = \"{SIBLING_KEY}\"}}"
            ));
        }
        let mut stores: Vec<&str> = self.kv.iter().map(|(store, ..)| *store).collect();
        stores.dedup();
        if !stores.is_empty() {
            manifest += "[local_server.kv_stores]\n";
        }
        for store in stores {
            let entries: Vec<String> = self
                .kv
                .iter()
                .filter(|(s, ..)| *s == store)
                .map(|(_, key, file)| format!("{{key = \"{key}\", file = \"{}\"}}", file.display()))
                .collect();
            manifest += &format!("{store} = [{}]\n", entries.join(", "));
        }
        if !secrets.is_empty() {
            manifest += &format!(
                "[local_server.secret_stores]\nmoderation = [{}]\n",
                secrets.join(", ")
            );
        }
        manifest
    }
}

impl Service {
    /// Starts Viceroy; `policy` is the Config Store value (None: no store at all).
    pub fn start(name: &str, origin_port: u16, policy: Option<&str>) -> Service {
        Self::start_with(name, origin_port, policy, Siblings::Reachable)
    }

    /// As `start`, choosing how siblings are reached.
    pub fn start_with(
        name: &str,
        origin_port: u16,
        policy: Option<&str>,
        siblings: Siblings,
    ) -> Service {
        let setup = Setup {
            siblings,
            ..Setup::policy(policy)
        };
        Self::start_setup(name, origin_port, &setup)
    }

    /// As `start`, with any stores.
    pub fn start_setup(name: &str, origin_port: u16, setup: &Setup) -> Service {
        let wasm = repo().join("bin/main.wasm");
        assert!(
            wasm.exists(),
            "bin/main.wasm is missing: run `make test` (it builds the module first)"
        );
        Self::launch(name, &wasm, origin_port, setup)
    }

    /// Starts Viceroy on any Compute module (the benchmark's baseline proxy, say).
    pub fn start_module(
        name: &str,
        wasm: &Path,
        origin_port: u16,
        policy: Option<&str>,
    ) -> Service {
        Self::launch(name, wasm, origin_port, &Setup::policy(policy))
    }

    fn launch(name: &str, wasm: &Path, origin_port: u16, setup: &Setup) -> Service {
        let dir = std::env::temp_dir().join(format!(
            "edge-moderation-test-{}-{name}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        // A port can be taken by another process while Viceroy compiles (see `ports`).
        for _ in 0..3 {
            if let Some(service) = Self::launch_on(ports::free(), &dir, wasm, origin_port, setup) {
                return service;
            }
        }
        panic!("viceroy lost its port three times");
    }

    /// Starts Viceroy on `port` and waits until it listens; None if the port was taken.
    fn launch_on(
        port: u16,
        dir: &Path,
        wasm: &Path,
        origin_port: u16,
        setup: &Setup,
    ) -> Option<Service> {
        let self_port = match setup.siblings {
            Siblings::Unreachable => ports::free(),
            Siblings::Silent => silent_port(),
            _ => port,
        };
        let manifest = setup.manifest(origin_port, self_port);
        let config = dir.join("fastly.toml");
        std::fs::write(&config, manifest).unwrap();
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
        while !service
            .viceroy_pid()
            .is_some_and(|pid| ports::listens(pid, port))
        {
            if let Ok(Some(status)) = service.child.try_wait() {
                let output = service.output();
                if output.contains("in use") {
                    return None;
                }
                panic!(
                    "viceroy exited ({status}) before listening (is it installed? `make setup`):\n{output}"
                );
            }
            assert!(
                Instant::now() < deadline,
                "viceroy did not listen within 300 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(service)
    }

    /// The Viceroy process (a child of the watchdog shell), for its memory.
    pub fn viceroy_pid(&self) -> Option<u32> {
        let shell = self.child.id();
        let children =
            std::fs::read_to_string(format!("/proc/{shell}/task/{shell}/children")).ok()?;
        children
            .split_whitespace()
            .filter_map(|pid| pid.parse::<u32>().ok())
            .find(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|comm| comm.trim() == "viceroy")
            })
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
        self.send(method, path, headers, None)
    }

    pub fn post(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        self.send("POST", path, headers, Some(body))
    }

    /// A request with a body, any method, sent with `Content-Length`.
    pub fn upload(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        self.send(method, path, headers, Some(body))
    }

    /// A request with a body written by hand on a raw connection, as `framing` says:
    /// chunked, or sent only after the service answers `100 Continue`.
    pub fn upload_raw(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        framing: Framing,
    ) -> Reply {
        use std::io::Write;
        let address = self.base.trim_start_matches("http://");
        let mut stream = TcpStream::connect(address).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(120)))
            .unwrap();
        let mut head = format!("POST {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
        for (name, value) in headers {
            head += &format!("{name}: {value}\r\n");
        }
        match framing {
            Framing::Chunked => head += "Transfer-Encoding: chunked\r\n\r\n",
            Framing::ExpectContinue => {
                head += &format!(
                    "Content-Length: {}\r\nExpect: 100-continue\r\n\r\n",
                    body.len()
                )
            }
        }
        stream.write_all(head.as_bytes()).unwrap();
        match framing {
            Framing::Chunked => {
                for chunk in body.chunks(7_000) {
                    write!(stream, "{:x}\r\n", chunk.len()).unwrap();
                    stream.write_all(chunk).unwrap();
                    stream.write_all(b"\r\n").unwrap();
                }
                stream.write_all(b"0\r\n\r\n").unwrap();
            }
            Framing::ExpectContinue => {
                let mut interim = [0u8; 25];
                stream.read_exact(&mut interim).expect("interim response");
                assert!(
                    interim.starts_with(b"HTTP/1.1 100 Continue\r\n"),
                    "expected 100 Continue, got {:?}",
                    String::from_utf8_lossy(&interim)
                );
                stream.write_all(body).unwrap();
            }
        }
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).expect("read response");
        parse_response(&raw)
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Reply {
        let agent = ureq::AgentBuilder::new()
            .redirects(0)
            .timeout(Duration::from_secs(120))
            .build();
        let mut request = agent.request(method, &format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.set(name, value);
        }
        let sent = match body {
            Some(body) => request.send_bytes(body),
            None => request.call(),
        };
        let response = match sent {
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

/// How [`Service::upload_raw`] frames its body.
#[derive(Clone, Copy, Debug)]
pub enum Framing {
    Chunked,
    ExpectContinue,
}

/// An HTTP/1.1 response read to the connection's end.
fn parse_response(raw: &[u8]) -> Reply {
    let mut storage = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut storage);
    let start = match response.parse(raw).expect("an HTTP response") {
        httparse::Status::Complete(start) => start,
        httparse::Status::Partial => panic!("incomplete response head"),
    };
    let headers: HashMap<String, String> = response
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let mut rest = &raw[start..];
    let body = if headers
        .get("transfer-encoding")
        .is_some_and(|te| te.contains("chunked"))
    {
        let mut body = Vec::new();
        loop {
            let line_end = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .expect("chunk size");
            let size =
                usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).unwrap().trim(), 16)
                    .expect("hex chunk size");
            rest = &rest[line_end + 2..];
            if size == 0 {
                break body;
            }
            body.extend_from_slice(&rest[..size]);
            rest = &rest[size + 2..];
        }
    } else {
        rest.to_vec()
    };
    Reply {
        status: response.code.expect("status"),
        headers,
        body,
    }
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
        self.header(headers::VERDICT)
    }
}

/// A port that accepts connections and never answers them (held open for the process).
fn silent_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    port
}
