//! An origin that fails on purpose, on raw TCP (a well-behaved HTTP library would not
//! misbehave like this): one behaviour per path.

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::Duration;

/// How long a stalled connection is held before the origin gives up on it.
const STALL: Duration = Duration::from_secs(120);

pub struct FaultyOrigin {
    pub port: u16,
}

impl FaultyOrigin {
    /// Serves `image` (a PNG) and `page` (HTML) badly:
    /// - `/cut/image.png`, `/cut/page.html`: half the body, then the connection closes;
    /// - `/reset/image.png`, `/reset/page.html`: half the body, then the connection is
    ///   reset (TCP RST);
    /// - `/short/image.png`, `/short/page.html`: all of it, but 1,000 bytes fewer than
    ///   its `Content-Length`, then the connection closes;
    /// - `/stall/headers`: the request is read, nothing is ever sent;
    /// - `/stall/body.png`: the head and half the image, then nothing;
    /// - `/error.png`: 503 with a JSON body;
    /// - `/huge.png`: 100 MB declared `image/png`, a PNG header then zeros, written for
    ///   as long as anyone reads.
    pub fn start(image: Vec<u8>, page: Vec<u8>) -> FaultyOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (image, page) = (image.clone(), page.clone());
                std::thread::spawn(move || serve(stream, &image, &page));
            }
        });
        FaultyOrigin { port }
    }
}

fn head(status: &str, content_type: &str, length: usize) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
    )
}

fn serve(stream: TcpStream, image: &[u8], page: &[u8]) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    // The rest of the request head (our service sends GETs without bodies).
    let mut line = String::new();
    while reader.read_line(&mut line).map(|n| n > 2).unwrap_or(false) {
        line.clear();
    }
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .to_string();
    let mut out = stream;
    let _ = match path.as_str() {
        "/reset/image.png" | "/reset/page.html" => {
            let (body, content_type) = if path.ends_with(".png") {
                (image, "image/png")
            } else {
                (page, "text/html")
            };
            let sent = out
                .write_all(head("200 OK", content_type, body.len()).as_bytes())
                .and_then(|()| out.write_all(&body[..body.len() / 2]))
                .and_then(|()| out.flush());
            // Give the bytes time to leave, then close with a reset instead of a FIN.
            std::thread::sleep(Duration::from_millis(200));
            reset(&out);
            return drop(sent);
        }
        "/cut/image.png" | "/cut/page.html" | "/short/image.png" | "/short/page.html" => {
            let (body, content_type) = if path.ends_with(".png") {
                (image, "image/png")
            } else {
                (page, "text/html")
            };
            let (declared, sent) = if path.starts_with("/cut/") {
                (body.len(), &body[..body.len() / 2])
            } else {
                (body.len() + 1000, body)
            };
            out.write_all(head("200 OK", content_type, declared).as_bytes())
                .and_then(|()| out.write_all(sent))
                .and_then(|()| out.flush())
        }
        "/stall/headers" => {
            std::thread::sleep(STALL);
            Ok(())
        }
        "/stall/body.png" => {
            let sent = out
                .write_all(head("200 OK", "image/png", image.len()).as_bytes())
                .and_then(|()| out.write_all(&image[..image.len() / 2]))
                .and_then(|()| out.flush());
            std::thread::sleep(STALL);
            sent
        }
        "/error.png" => {
            let body = br#"{"error": "upstream unavailable"}"#;
            out.write_all(
                head("503 Service Unavailable", "application/json", body.len()).as_bytes(),
            )
            .and_then(|()| out.write_all(body))
        }
        "/huge.png" => {
            let declared = 100 << 20;
            let zeros = vec![0u8; 64 << 10];
            let mut written = image.len().min(64);
            let mut result = out
                .write_all(head("200 OK", "image/png", declared).as_bytes())
                .and_then(|()| out.write_all(&image[..written]));
            while result.is_ok() && written < declared {
                let n = zeros.len().min(declared - written);
                result = out.write_all(&zeros[..n]);
                written += n;
            }
            result
        }
        _ => out.write_all(head("404 Not Found", "text/plain", 0).as_bytes()),
    };
    let _ = out.shutdown(Shutdown::Both);
}

/// Makes closing `stream` send a TCP reset (SO_LINGER with a zero timeout).
fn reset(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // Setting a socket option on a socket we own; the size is the struct's.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}
