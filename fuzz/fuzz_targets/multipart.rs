//! The multipart splitter on arbitrary bodies, fed in arbitrary chunks. Besides not
//! panicking: every byte reaches the sink exactly once and in order (the forwarded body
//! is the original), events come in a valid order, and the chunking changes nothing.
#![no_main]

use edge_moderation::upload::multipart::{MultipartError, PartHead, Sink, Splitter};
use libfuzzer_sys::fuzz_target;

#[derive(Default, PartialEq, Debug)]
struct Recorder {
    bytes: Vec<u8>,
    parts: Vec<(PartHead, usize, usize)>,
    open: bool,
}

impl Sink for Recorder {
    fn framing(&mut self, bytes: &[u8]) {
        assert!(!self.open);
        self.bytes.extend_from_slice(bytes);
    }
    fn part(&mut self, head: PartHead, framing: &[u8]) {
        assert!(!self.open);
        self.open = true;
        self.bytes.extend_from_slice(framing);
        self.parts.push((head, self.bytes.len(), 0));
    }
    fn content(&mut self, bytes: &[u8]) {
        assert!(self.open);
        assert!(!bytes.is_empty());
        self.bytes.extend_from_slice(bytes);
        self.parts.last_mut().unwrap().2 += bytes.len();
    }
    fn part_end(&mut self) {
        assert!(self.open);
        self.open = false;
    }
}

fn split(body: &[u8], boundary: &str, chunks: &[usize]) -> (Recorder, Result<(), MultipartError>) {
    let mut recorder = Recorder::default();
    let mut splitter = Splitter::new(boundary);
    let mut rest = body;
    let mut sizes = chunks.iter().cycle();
    while !rest.is_empty() {
        let size = (*sizes.next().unwrap_or(&rest.len())).clamp(1, rest.len());
        let (chunk, after) = rest.split_at(size);
        rest = after;
        if let Err(e) = splitter.feed(chunk, &mut recorder) {
            return (recorder, Err(e));
        }
    }
    let result = splitter.finish(&mut recorder);
    (recorder, result)
}

fuzz_target!(|data: &[u8]| {
    // First byte: boundary length; then the boundary; one byte of chunk sizes; the body.
    let Some((&length, rest)) = data.split_first() else {
        return;
    };
    let length = usize::from(length % 8) + 1;
    if rest.len() < length + 1 {
        return;
    }
    let (boundary, rest) = rest.split_at(length);
    let Ok(boundary) = std::str::from_utf8(boundary) else {
        return;
    };
    let chunks = [usize::from(rest[0] % 16) + 1, 3, 1, 64];
    let body = &rest[1..];

    let (whole, whole_result) = split(body, boundary, &[body.len().max(1)]);
    let (chunked, chunked_result) = split(body, boundary, &chunks);
    assert_eq!(whole_result, chunked_result);
    if whole_result.is_ok() {
        assert_eq!(whole.bytes, body, "bytes lost or repeated");
        assert!(!whole.open);
        assert_eq!(whole, chunked);
    } else {
        // What was handed on before the error is a prefix of the body.
        assert!(body.starts_with(&whole.bytes));
        assert!(body.starts_with(&chunked.bytes));
    }
});
