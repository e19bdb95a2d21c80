//! Our multipart splitter against a reference: multer (the parser behind axum), on
//! generated forms and on damaged ones. Every well-formed form must be accepted, with the
//! same parts (names, filenames, types, contents); wherever both accept a damaged body
//! they must find the same part contents: a filter that saw other parts than the
//! origin's parser would let an image hide in plain sight. (On damaged bodies the labels
//! may differ where multer departs from the RFCs, e.g. it reads `fileName=` as no
//! filename; we judge parts by their bytes, not their labels.) Bodies only multer accepts
//! are those we refuse as ambiguous (400).

use edge_moderation::upload::multipart::{PartHead, Sink, Splitter};

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[derive(Debug, PartialEq, Clone)]
struct Part {
    name: Option<String>,
    filename: Option<String>,
    content_type: Option<String>,
    data: Vec<u8>,
}

fn ours(body: &[u8], boundary: &str, chunk: usize) -> Option<Vec<Part>> {
    #[derive(Default)]
    struct Parts(Vec<Part>);
    impl Sink for Parts {
        fn framing(&mut self, _: &[u8]) {}
        fn part(&mut self, head: PartHead, _: &[u8]) {
            self.0.push(Part {
                name: head.name,
                filename: head.filename,
                content_type: head.content_type,
                data: Vec::new(),
            });
        }
        fn content(&mut self, bytes: &[u8]) {
            self.0.last_mut().unwrap().data.extend_from_slice(bytes);
        }
        fn part_end(&mut self) {}
    }
    let mut parts = Parts::default();
    let mut splitter = Splitter::new(boundary);
    for piece in body.chunks(chunk.max(1)) {
        splitter.feed(piece, &mut parts).ok()?;
    }
    splitter.finish(&mut parts).ok()?;
    Some(parts.0)
}

fn reference(body: &[u8], boundary: &str) -> Option<Vec<Part>> {
    let stream = futures_util::stream::iter(
        body.chunks(977)
            .map(|c| Ok::<_, std::io::Error>(bytes::Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    );
    let mut multipart = multer::Multipart::new(stream, boundary);
    futures_executor::block_on(async {
        let mut parts = Vec::new();
        while let Some(field) = multipart.next_field().await.ok()? {
            let name = field.name().map(str::to_owned);
            let filename = field.file_name().map(str::to_owned);
            let content_type = field
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let data = field.bytes().await.ok()?.to_vec();
            parts.push(Part {
                name,
                filename,
                content_type,
                data,
            });
        }
        Some(parts)
    })
}

/// Bytes that stress a delimiter search: line ends, dashes, pieces of the boundary.
fn content(random: &mut Random, boundary: &str) -> Vec<u8> {
    let pieces: [&[u8]; 8] = [
        b"\r\n",
        b"--",
        b"\r\n--",
        &boundary.as_bytes()[..boundary.len() / 2],
        b"\x89PNG\r\n\x1a\n",
        b"plain text ",
        b"\r",
        b"\n",
    ];
    let mut out = Vec::new();
    for _ in 0..random.below(12) {
        match random.below(3) {
            0 => out.extend_from_slice(pieces[random.below(pieces.len())]),
            _ => out.extend((0..random.below(40)).map(|_| random.next() as u8)),
        }
    }
    out
}

fn generate(random: &mut Random, boundary: &str) -> (Vec<u8>, Vec<Part>) {
    let mut body = Vec::new();
    let mut parts = Vec::new();
    for i in 0..1 + random.below(5) {
        let part = Part {
            name: Some(format!("field{i}")),
            filename: (random.below(2) == 0).then(|| format!("file {i}.bin")),
            content_type: (random.below(2) == 0).then(|| "application/octet-stream".to_string()),
            data: content(random, boundary),
        };
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        let mut disposition = format!(
            "Content-Disposition: form-data; name=\"{}\"",
            part.name.as_deref().unwrap_or_default()
        );
        if let Some(filename) = &part.filename {
            disposition += &format!("; filename=\"{filename}\"");
        }
        body.extend_from_slice(disposition.as_bytes());
        body.extend_from_slice(b"\r\n");
        if let Some(content_type) = &part.content_type {
            body.extend_from_slice(format!("Content-Type: {content_type}\r\n").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(&part.data);
        body.extend_from_slice(b"\r\n");
        parts.push(part);
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (body, parts)
}

#[test]
fn well_formed_forms_split_as_multer_splits_them() {
    let mut random = Random(0x5eed_1234_abcd_0001);
    let mut checked = 0;
    for _ in 0..20_000 {
        let boundary = ["XyZ", "----WebKitFormBoundary7MA4YWxkTrZu0gW", "a-b"][random.below(3)];
        let (body, parts) = generate(&mut random, boundary);
        let expected = reference(&body, boundary);
        // Generated content may contain the boundary by chance: then the form is not
        // well-formed, and only agreement is required (below).
        let Some(expected) = expected else { continue };
        if expected != parts {
            continue;
        }
        let chunk = 1 + random.below(64);
        assert_eq!(
            ours(&body, boundary, chunk).as_ref(),
            Some(&parts),
            "{:?}",
            String::from_utf8_lossy(&body)
        );
        checked += 1;
    }
    assert!(checked > 15_000, "only {checked} forms were well-formed");
}

#[test]
fn where_both_accept_a_damaged_body_they_agree() {
    let mut random = Random(0x5eed_1234_abcd_0002);
    let (mut both, mut only_reference, mut only_ours) = (0, 0, 0);
    for _ in 0..100_000 {
        let boundary = "XyZ";
        let (mut body, _) = generate(&mut random, boundary);
        for _ in 0..1 + random.below(3) {
            if body.is_empty() {
                break;
            }
            let at = random.below(body.len());
            match random.below(4) {
                0 => body[at] = random.next() as u8,
                1 => {
                    body.remove(at);
                }
                2 => {
                    body.splice(at..at, *b"\r\n--XyZ");
                }
                _ => {
                    body.splice(at..at, *b"\n");
                }
            }
        }
        let chunk = 1 + random.below(64);
        match (ours(&body, boundary, chunk), reference(&body, boundary)) {
            (Some(ours), Some(reference)) => {
                let contents = |parts: &[Part]| -> Vec<Vec<u8>> {
                    parts.iter().map(|p| p.data.clone()).collect()
                };
                if contents(&ours) != contents(&reference) {
                    let summary = |parts: &[Part]| -> Vec<String> {
                        parts
                            .iter()
                            .map(|p| {
                                format!(
                                    "{:?} {:?} {:?} {}",
                                    p.name,
                                    p.filename,
                                    p.content_type,
                                    p.data.len()
                                )
                            })
                            .collect()
                    };
                    panic!(
                        "disagreement on {:?}
ours {:?}
multer {:?}",
                        String::from_utf8_lossy(&body)
                            .replace(|c: char| c.is_control() && !"\r\n".contains(c), "."),
                        summary(&ours),
                        summary(&reference)
                    );
                }
                both += 1;
            }
            (None, Some(_)) => only_reference += 1,
            (Some(_), None) => only_ours += 1,
            (None, None) => {}
        }
    }
    eprintln!(
        "damaged bodies: both accept {both}, only multer {only_reference}, only ours {only_ours}"
    );
    assert!(both > 100);
}
