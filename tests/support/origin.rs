//! A real HTTP/1.1 origin on loopback serving fixed resources, with byte ranges like a
//! real one, and bodies generated while streaming for the large ones. It records every
//! request it receives, body included, and stores any upload to a path it does not serve
//! (201).

use std::collections::HashMap;
use std::io::{Cursor, Read};
use std::sync::{Arc, Mutex};

/// A request as the origin received it.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    pub path: String,
    /// Names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
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
    received: Arc<Mutex<Vec<Received>>>,
}

impl Origin {
    pub fn start(resources: HashMap<&'static str, Resource>) -> Origin {
        let server = tiny_http::Server::http("127.0.0.1:0").expect("origin binds");
        let port = server.server_addr().to_ip().expect("ip address").port();
        let resources = Arc::new(resources);
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        std::thread::spawn(move || {
            for request in server.incoming_requests() {
                let resources = resources.clone();
                let log = log.clone();
                std::thread::spawn(move || serve(request, &resources, &log));
            }
        });
        Origin { port, received }
    }

    /// Every request received for `path` so far, in order.
    pub fn received(&self, path: &str) -> Vec<Received> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }
}

fn serve(
    mut request: tiny_http::Request,
    resources: &HashMap<&'static str, Resource>,
    log: &Mutex<Vec<Received>>,
) {
    let path = request.url().split('?').next().unwrap_or("").to_string();
    let mut body = Vec::new();
    if request.as_reader().read_to_end(&mut body).is_err() {
        return;
    }
    let method = request.method().as_str().to_string();
    log.lock().unwrap().push(Received {
        method: method.clone(),
        path: path.clone(),
        headers: request
            .headers()
            .iter()
            .map(|h| {
                (
                    h.field.as_str().as_str().to_ascii_lowercase(),
                    h.value.as_str().to_string(),
                )
            })
            .collect(),
        body,
    });
    let Some(resource) = resources.get(path.as_str()).cloned() else {
        if method != "GET" && method != "HEAD" {
            let stored = tiny_http::Response::from_string(r#"{"stored": true}"#)
                .with_status_code(201)
                .with_header(header("Content-Type", "application/json"));
            let _ = request.respond(stored);
            return;
        }
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
