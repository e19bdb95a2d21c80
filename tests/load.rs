//! Load: mixed traffic at concurrency 32 through `viceroy serve`: 60% non-image pages,
//! 30% images in every format (passed, blocked, rewritten by the suites' Drawing policy),
//! 10% uploads. No 5xx from us, no wrong byte (every pass and every page compared with
//! the origin's), and Viceroy's memory flat within 10% after warm-up.
//!
//! `make test` sends 1,000 requests; `make bench` sends 10,000 (`LOAD_REQUESTS`) and
//! reports throughput and latency (`LOAD_REPORT` names the JSON file).

mod support;

use edge_moderation::media::ImageFormat;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::fixtures::{bytes_of, drawing_policy, format_images};
use support::{pattern_byte, Origin, Resource, Service};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Viceroy's resident memory in MB.
fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// What request `i` is, and what must come back.
enum Expect {
    /// Exactly these bytes with 200.
    Bytes(Vec<u8>),
    /// `status`, and no byte of the image.
    Blocked(u16, Vec<u8>),
    /// 200 with an image of this format that is not the original.
    Rewritten(ImageFormat, Vec<u8>),
    /// An upload: the origin's `201`, or our block.
    Status(u16),
}

#[test]
fn mixed_traffic_at_concurrency_32_is_served_whole_and_memory_stays_flat() {
    let requests = env("LOAD_REQUESTS", 1_000);
    let concurrency = env("LOAD_CONCURRENCY", 32);
    let mut fixtures = format_images();
    let mut pages = Vec::new();
    for (i, size) in [900usize, 12_000, 60_000, 180_000, 3_000]
        .into_iter()
        .enumerate()
    {
        let body: Vec<u8> = (0..size as u64)
            .map(|b| pattern_byte(b + i as u64))
            .collect();
        let path: &'static str = Box::leak(format!("/page-{i}.html").into_boxed_str());
        fixtures.insert(path, Resource::bytes("text/html", body.clone()));
        pages.push((path, body));
    }
    let images: Vec<(String, Expect)> = ImageFormat::ALL
        .iter()
        .filter(|f| f.rewritten_as() == **f)
        .flat_map(|format| {
            let ext = format.extension();
            let fixtures = &fixtures;
            [
                (
                    format!("/photo.{ext}"),
                    Expect::Bytes(bytes_of(fixtures, &format!("/photo.{ext}"))),
                ),
                (
                    format!("/drawing.{ext}"),
                    Expect::Blocked(451, bytes_of(fixtures, &format!("/drawing.{ext}"))),
                ),
                (
                    format!("/rocket.{ext}"),
                    Expect::Rewritten(*format, bytes_of(fixtures, &format!("/rocket.{ext}"))),
                ),
            ]
        })
        .collect();
    let photo = bytes_of(&fixtures, "/photo.png");
    let drawing = bytes_of(&fixtures, "/drawing.png");
    let origin = Origin::start(fixtures);
    let service = Service::start("load", origin.port, Some(&drawing_policy("")));
    let pid = service.viceroy_pid().expect("viceroy's pid");

    let plan = |i: usize| -> (&'static str, String, Option<Vec<u8>>, Expect) {
        match i % 10 {
            0..=5 => {
                let (path, body) = &pages[i % pages.len()];
                ("GET", path.to_string(), None, Expect::Bytes(body.clone()))
            }
            6..=8 => {
                let (path, expect) = &images[(i / 10 * 3 + i % 10 - 6) % images.len()];
                let expect = match expect {
                    Expect::Bytes(b) => Expect::Bytes(b.clone()),
                    Expect::Blocked(s, b) => Expect::Blocked(*s, b.clone()),
                    Expect::Rewritten(f, b) => Expect::Rewritten(*f, b.clone()),
                    Expect::Status(s) => Expect::Status(*s),
                };
                ("GET", path.clone(), None, expect)
            }
            _ if i % 20 == 9 => (
                "POST",
                format!("/uploads/{i}"),
                Some(photo.clone()),
                Expect::Status(201),
            ),
            _ => (
                "POST",
                format!("/uploads/{i}"),
                Some(drawing.clone()),
                Expect::Status(451),
            ),
        }
    };

    let next = Arc::new(AtomicUsize::new(0));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(requests)));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let warm_rss = Arc::new(Mutex::new(None::<f64>));
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..concurrency {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= requests {
                    break;
                }
                if i == requests / 10 {
                    *warm_rss.lock().unwrap() = Some(rss_mb(pid));
                }
                let (method, path, body, expect) = plan(i);
                let sent = Instant::now();
                let reply = match body {
                    Some(body) => {
                        service.upload(method, &path, &[("Content-Type", "image/png")], &body)
                    }
                    None => service.get(&path),
                };
                latencies.lock().unwrap().push(sent.elapsed());
                let wrong = if reply.status >= 500 {
                    Some(format!("{} from us", reply.status))
                } else {
                    match expect {
                        Expect::Bytes(bytes) => (reply.status != 200 || reply.body != bytes)
                            .then(|| format!("status {} or bytes differ", reply.status)),
                        Expect::Blocked(status, image) => (reply.status != status
                            || reply
                                .body
                                .windows(16)
                                .any(|w| w == &image[image.len() / 2..image.len() / 2 + 16]))
                        .then(|| format!("not blocked: {}", reply.status)),
                        Expect::Rewritten(format, original) => (reply.status != 200
                            || reply.body == original
                            || ImageFormat::sniff(&reply.body) != Some(format))
                        .then(|| format!("not rewritten: {}", reply.status)),
                        Expect::Status(status) => {
                            (reply.status != status).then(|| format!("status {}", reply.status))
                        }
                    }
                };
                if let Some(why) = wrong {
                    failures
                        .lock()
                        .unwrap()
                        .push(format!("{i} {method} {path}: {why}"));
                }
            });
        }
    });
    let seconds = started.elapsed().as_secs_f64();
    let end_rss = rss_mb(pid);
    let warm_rss = warm_rss.lock().unwrap().unwrap_or(end_rss);
    let mut latencies = latencies.lock().unwrap().clone();
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let failures = failures.lock().unwrap();
    let report = format!(
        "{{\"requests\": {requests}, \"concurrency\": {concurrency}, \"seconds\": {seconds:.1}, \
         \"throughput_rps\": {:.1}, \"p50_ms\": {:.1}, \"p99_ms\": {:.1}, \"rss_warm_mb\": {warm_rss:.1}, \
         \"rss_end_mb\": {end_rss:.1}, \"failures\": {}}}",
        requests as f64 / seconds,
        ms(at(0.5)),
        ms(at(0.99)),
        failures.len()
    );
    eprintln!("load: {report}");
    if let Ok(file) = std::env::var("LOAD_REPORT") {
        std::fs::write(file, &report).unwrap();
    }
    assert!(
        failures.is_empty(),
        "{} of {requests} wrong:\n{}",
        failures.len(),
        failures[..failures.len().min(20)].join("\n")
    );
    assert!(
        end_rss <= warm_rss * 1.10,
        "Viceroy's memory grew from {warm_rss:.1} MB after warm-up to {end_rss:.1} MB"
    );
}
