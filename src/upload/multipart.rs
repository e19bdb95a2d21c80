//! `multipart/*` framing (RFC 2046, RFC 7578), read as a stream and never re-written: a
//! [`Splitter`] is fed the body in chunks of any size and tells a [`Sink`] where each part
//! begins and ends, handing over every byte exactly once. Put back together in order, the
//! bytes a sink receives are the body, so a re-serialised body is the original byte for
//! byte except where a part's content is replaced on purpose.
//!
//! Why not a multipart crate: the well-kept ones (multer, used by axum) hand out parsed
//! fields, not the bytes between them, so the parts we do not change could not be
//! forwarded byte for byte. The framing is small; part headers are parsed by `httparse`,
//! and the delimiter search is `memchr`'s. `tests/multipart_reference.rs` checks the parts
//! against multer's.
//!
//! **Strict, because a filter must see the parts the origin will see.** A parser that
//! splits a body differently from the origin's lets an image hide inside what we took for
//! text. So everything a lenient parser might read in another way is refused
//! ([`MultipartError`], answered with 400): the boundary string anywhere except as a
//! delimiter at the start of a line, a delimiter line with anything but spaces after it,
//! bare line ends in part headers, encoded (`Content-Transfer-Encoding: base64`) or nested
//! multipart parts, a body that ends before its closing delimiter.

use crate::media::content_type;
use memchr::memmem;
use std::fmt;

/// RFC 2046: a boundary is 1 to 70 characters.
const MAX_BOUNDARY: usize = 70;
/// The most a part's header block may take.
pub const MAX_HEADER_BYTES: usize = 16 << 10;
const MAX_HEADERS: usize = 32;
/// Transport padding (spaces or tabs) allowed after a delimiter.
const MAX_PADDING: usize = 64;
/// Parts in one body: beyond this it is refused (every part costs bookkeeping).
pub const MAX_PARTS: usize = 1000;

/// Why a multipart body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultipartError {
    /// The `Content-Type` has no usable `boundary` parameter.
    Boundary(&'static str),
    /// The body ended before its closing delimiter (or never had an opening one).
    Truncated,
    /// The boundary string occurs where it is not a delimiter.
    StrayBoundary,
    /// A delimiter is followed by something other than padding and a line end, or `--`.
    Delimiter,
    /// A part's header block is too long, has too many headers, or does not parse.
    Headers(String),
    /// A part carries a transfer encoding, or is itself multipart: its bytes are not what
    /// an origin's form parser would store.
    Unsupported(String),
    TooManyParts,
}

impl fmt::Display for MultipartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MultipartError::Boundary(why) => write!(f, "multipart boundary: {why}"),
            MultipartError::Truncated => {
                write!(f, "multipart body ends before its closing delimiter")
            }
            MultipartError::StrayBoundary => {
                write!(
                    f,
                    "multipart boundary occurs inside a part or outside a delimiter"
                )
            }
            MultipartError::Delimiter => write!(f, "malformed multipart delimiter line"),
            MultipartError::Headers(why) => write!(f, "malformed part headers: {why}"),
            MultipartError::Unsupported(why) => write!(f, "unsupported part: {why}"),
            MultipartError::TooManyParts => write!(f, "more than {MAX_PARTS} parts"),
        }
    }
}

impl std::error::Error for MultipartError {}

/// The boundary a `Content-Type` declares, when it is `multipart/*`; `Ok(None)` for any
/// other type.
pub fn boundary(content_type: &str) -> Result<Option<String>, MultipartError> {
    if !content_type::essence(content_type).starts_with("multipart/") {
        return Ok(None);
    }
    let parameters =
        content_type::parameters(content_type).ok_or(MultipartError::Boundary("unreadable"))?;
    let mut boundaries = parameters
        .into_iter()
        .filter(|(name, _)| name == "boundary");
    let (_, boundary) = boundaries
        .next()
        .ok_or(MultipartError::Boundary("missing"))?;
    if boundaries.next().is_some() {
        return Err(MultipartError::Boundary("given twice"));
    }
    if boundary.is_empty() || boundary.len() > MAX_BOUNDARY {
        return Err(MultipartError::Boundary("must be 1 to 70 characters"));
    }
    if !boundary.bytes().all(|b| b.is_ascii_graphic() || b == b' ') || boundary.ends_with(' ') {
        return Err(MultipartError::Boundary("invalid characters"));
    }
    Ok(Some(boundary))
}

/// What is known of a part once its headers are read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PartHead {
    /// Its position in the body, from 0.
    pub index: usize,
    /// `Content-Disposition`'s `name`.
    pub name: Option<String>,
    /// `Content-Disposition`'s `filename`.
    pub filename: Option<String>,
    pub content_type: Option<String>,
}

impl fmt::Display for PartHead {
    /// `part 2 "photo" (cat.png)`, as reasons name it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "part {}", self.index + 1)?;
        if let Some(name) = &self.name {
            write!(f, " {name:?}")?;
        }
        if let Some(filename) = &self.filename {
            write!(f, " ({filename})")?;
        }
        Ok(())
    }
}

/// Receives a body's bytes in order, each exactly once.
pub trait Sink {
    /// Bytes outside every part: the preamble, and at the end the closing delimiter and
    /// the epilogue.
    fn framing(&mut self, bytes: &[u8]);
    /// A part begins. `framing` is its delimiter line (with the line end before it) and
    /// its header block: dropping a part means dropping these and its content.
    fn part(&mut self, head: PartHead, framing: &[u8]);
    /// The next bytes of the current part's content.
    fn content(&mut self, bytes: &[u8]);
    /// The current part's content is complete.
    fn part_end(&mut self);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the first delimiter.
    Preamble,
    /// `pending` starts with a delimiter (its `--boundary` at `dash`); what follows it is
    /// not read yet.
    Delimiter {
        dash: usize,
    },
    /// `pending` starts with a part's header block.
    Headers {
        framing_start: usize,
    },
    Content,
    /// After the closing delimiter.
    Epilogue,
    Failed,
}

/// Splits one multipart body, fed in chunks ([`Splitter::feed`], then
/// [`Splitter::finish`]).
pub struct Splitter {
    /// `--boundary`.
    dash_boundary: Vec<u8>,
    state: State,
    /// Bytes received but not yet given to the sink.
    pending: Vec<u8>,
    /// The delimiter line and headers of the part being opened.
    framing: Vec<u8>,
    parts: usize,
}

const CRLF: &[u8] = b"\r\n";

impl Splitter {
    pub fn new(boundary: &str) -> Self {
        Splitter {
            dash_boundary: [b"--", boundary.as_bytes()].concat(),
            state: State::Preamble,
            pending: Vec::new(),
            framing: Vec::new(),
            parts: 0,
        }
    }

    /// Reads the next chunk of the body.
    pub fn feed(&mut self, chunk: &[u8], sink: &mut impl Sink) -> Result<(), MultipartError> {
        if self.state == State::Failed {
            return Err(MultipartError::Truncated);
        }
        self.pending.extend_from_slice(chunk);
        let result = self.advance(sink, false);
        if result.is_err() {
            self.state = State::Failed;
        }
        result
    }

    /// The body has ended: anything but a complete body is an error.
    pub fn finish(mut self, sink: &mut impl Sink) -> Result<(), MultipartError> {
        if self.state == State::Failed {
            return Err(MultipartError::Truncated);
        }
        self.advance(sink, true)?;
        match self.state {
            State::Epilogue => {
                sink.framing(&self.pending);
                Ok(())
            }
            _ => Err(MultipartError::Truncated),
        }
    }

    /// Consumes what `pending` allows; `at_end` when no more bytes will come.
    fn advance(&mut self, sink: &mut impl Sink, at_end: bool) -> Result<(), MultipartError> {
        // Out of `self` while the steps read it, so they can update the state.
        let mut pending = std::mem::take(&mut self.pending);
        let result = self.steps(&pending, sink, at_end);
        if let Ok(consumed) = result {
            pending.drain(..consumed);
        }
        self.pending = pending;
        result.map(|_| ())
    }

    /// Runs the state machine over `pending`; returns how many bytes the sink received.
    fn steps(
        &mut self,
        pending: &[u8],
        sink: &mut impl Sink,
        at_end: bool,
    ) -> Result<usize, MultipartError> {
        let mut consumed = 0;
        loop {
            let rest = &pending[consumed..];
            let step = match self.state {
                State::Preamble => self.preamble(rest, sink)?,
                State::Delimiter { dash } => self.delimiter(rest, dash, sink)?,
                State::Headers { framing_start } => self.headers(rest, framing_start, sink)?,
                State::Content => self.content(rest, sink, at_end)?,
                State::Epilogue => {
                    if memmem::find(rest, &self.dash_boundary).is_some() {
                        return Err(MultipartError::StrayBoundary);
                    }
                    // Held until `finish`, so a boundary split across chunks is still seen.
                    let keep = self.dash_boundary.len();
                    let flush = rest.len().saturating_sub(keep);
                    sink.framing(&rest[..flush]);
                    consumed += flush;
                    break;
                }
                State::Failed => return Err(MultipartError::Truncated),
            };
            match step {
                Some(used) => consumed += used,
                None => break,
            }
        }
        Ok(consumed)
    }

    /// Finds the first delimiter. Returns the bytes consumed, or None to wait for more.
    fn preamble(
        &mut self,
        rest: &[u8],
        sink: &mut impl Sink,
    ) -> Result<Option<usize>, MultipartError> {
        let Some(at) = memmem::find(rest, &self.dash_boundary) else {
            // Keep what could be the start of a delimiter and the line end before it.
            let flush = rest.len().saturating_sub(self.dash_boundary.len() + 1);
            sink.framing(&rest[..flush]);
            return Ok((flush > 0).then_some(flush));
        };
        let start = match at {
            0 => 0,
            _ if at >= 2 && &rest[at - 2..at] == CRLF => at - 2,
            _ => return Err(MultipartError::StrayBoundary),
        };
        sink.framing(&rest[..start]);
        self.state = State::Delimiter { dash: at - start };
        Ok(Some(start))
    }

    /// `rest` starts with a delimiter: decides whether it closes the body or opens a part.
    fn delimiter(
        &mut self,
        rest: &[u8],
        dash: usize,
        sink: &mut impl Sink,
    ) -> Result<Option<usize>, MultipartError> {
        let after = &rest[dash + self.dash_boundary.len()..];
        if after.len() < 2 {
            return Ok(None);
        }
        if after.starts_with(b"--") {
            let close = dash + self.dash_boundary.len() + 2;
            sink.framing(&rest[..close]);
            self.state = State::Epilogue;
            return Ok(Some(close));
        }
        let padding = after
            .iter()
            .take_while(|&&b| b == b' ' || b == b'\t')
            .count();
        if padding > MAX_PADDING {
            return Err(MultipartError::Delimiter);
        }
        match after.get(padding..padding + 2) {
            None => Ok(None),
            Some(CRLF) => {
                self.parts += 1;
                if self.parts > MAX_PARTS {
                    return Err(MultipartError::TooManyParts);
                }
                let line = dash + self.dash_boundary.len() + padding + 2;
                self.state = State::Headers {
                    framing_start: line,
                };
                Ok(Some(0))
            }
            Some(_) => Err(MultipartError::Delimiter),
        }
    }

    /// `rest` starts with a delimiter line of `framing_start` bytes, then a header block.
    fn headers(
        &mut self,
        rest: &[u8],
        framing_start: usize,
        sink: &mut impl Sink,
    ) -> Result<Option<usize>, MultipartError> {
        let block = &rest[framing_start..];
        if block.len() >= 2 && block.starts_with(CRLF) {
            // Legal in RFC 2046, never sent by a browser (form-data parts have a
            // Content-Disposition), and parsers split it differently: some read the
            // lines after it as the headers, so content we take for text would be, to
            // them, headers followed by an image.
            return Err(MultipartError::Headers("a part without headers".into()));
        }
        let end = memmem::find(block, b"\r\n\r\n").map(|at| at + 4);
        let Some(end) = end else {
            if block.len() > MAX_HEADER_BYTES {
                return Err(MultipartError::Headers("header block too long".into()));
            }
            return Ok(None);
        };
        if end > MAX_HEADER_BYTES {
            return Err(MultipartError::Headers("header block too long".into()));
        }
        let head = self.parse_head(&block[..end])?;
        if memmem::find(&block[..end], &self.dash_boundary).is_some() {
            return Err(MultipartError::StrayBoundary);
        }
        let framing_len = framing_start + end;
        self.framing.clear();
        self.framing.extend_from_slice(&rest[..framing_len]);
        sink.part(head, &self.framing);
        self.state = State::Content;
        Ok(Some(framing_len))
    }

    fn parse_head(&self, block: &[u8]) -> Result<PartHead, MultipartError> {
        // Bare CR or LF: parsers disagree on them, so the headers could mean two things.
        let lines_ok = block.iter().enumerate().all(|(i, &b)| match b {
            b'\r' => block.get(i + 1) == Some(&b'\n'),
            b'\n' => i > 0 && block[i - 1] == b'\r',
            _ => true,
        });
        if !lines_ok {
            return Err(MultipartError::Headers("bare CR or LF".into()));
        }
        let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let parsed = match httparse::parse_headers(block, &mut storage) {
            Ok(httparse::Status::Complete((used, headers))) if used == block.len() => headers,
            Ok(_) => {
                return Err(MultipartError::Headers(
                    "header block does not end where expected".into(),
                ))
            }
            Err(e) => return Err(MultipartError::Headers(e.to_string())),
        };
        let mut head = PartHead {
            index: self.parts - 1,
            ..PartHead::default()
        };
        let mut dispositions = 0;
        for header in parsed.iter() {
            let value = std::str::from_utf8(header.value)
                .map_err(|_| MultipartError::Headers(format!("{} is not UTF-8", header.name)))?;
            let name = header.name.to_ascii_lowercase();
            match name.as_str() {
                "content-disposition" => {
                    dispositions += 1;
                    // One token (`form-data`), else parsers disagree on what follows.
                    let kind = value.split(';').next().unwrap_or_default().trim();
                    if kind.is_empty() || !kind.bytes().all(content_type::is_token_byte) {
                        return Err(MultipartError::Headers(
                            "unreadable Content-Disposition".into(),
                        ));
                    }
                    let parameters = content_type::parameters(value).ok_or_else(|| {
                        MultipartError::Headers("unreadable Content-Disposition".into())
                    })?;
                    for (key, value) in parameters {
                        match key.as_str() {
                            "name" => head.name = Some(value),
                            "filename" => head.filename = Some(value),
                            _ => {}
                        }
                    }
                }
                "content-type" => {
                    if head.content_type.is_some() {
                        return Err(MultipartError::Headers("Content-Type given twice".into()));
                    }
                    if content_type::essence(value).starts_with("multipart/") {
                        return Err(MultipartError::Unsupported(format!("nested {value}")));
                    }
                    head.content_type = Some(value.to_string());
                }
                "content-transfer-encoding" => {
                    let encoding = value.trim().to_ascii_lowercase();
                    if !matches!(encoding.as_str(), "binary" | "8bit" | "7bit") {
                        return Err(MultipartError::Unsupported(format!(
                            "Content-Transfer-Encoding {value}"
                        )));
                    }
                }
                "content-encoding" => {
                    return Err(MultipartError::Unsupported(format!(
                        "Content-Encoding {value}"
                    )));
                }
                _ => {}
            }
        }
        if dispositions > 1 {
            return Err(MultipartError::Headers(
                "Content-Disposition given twice".into(),
            ));
        }
        Ok(head)
    }

    /// Passes content on up to the next delimiter.
    fn content(
        &mut self,
        rest: &[u8],
        sink: &mut impl Sink,
        at_end: bool,
    ) -> Result<Option<usize>, MultipartError> {
        let Some(at) = memmem::find(rest, &self.dash_boundary) else {
            // Keep what could be a delimiter's line end and start.
            let keep = if at_end {
                0
            } else {
                self.dash_boundary.len() + 1
            };
            let flush = rest.len().saturating_sub(keep);
            if flush > 0 {
                sink.content(&rest[..flush]);
            }
            return Ok((flush > 0 && !at_end).then_some(flush));
        };
        if at < 2 || &rest[at - 2..at] != CRLF {
            return Err(MultipartError::StrayBoundary);
        }
        if at > 2 {
            sink.content(&rest[..at - 2]);
        }
        sink.part_end();
        self.state = State::Delimiter { dash: 2 };
        Ok(Some(at - 2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records what a splitter reports, and the bytes in order.
    #[derive(Default, Debug, PartialEq)]
    struct Recorder {
        bytes: Vec<u8>,
        parts: Vec<(PartHead, Vec<u8>)>,
        open: bool,
    }

    impl Sink for Recorder {
        fn framing(&mut self, bytes: &[u8]) {
            assert!(!self.open, "framing inside a part");
            self.bytes.extend_from_slice(bytes);
        }
        fn part(&mut self, head: PartHead, framing: &[u8]) {
            assert!(!self.open);
            self.open = true;
            self.bytes.extend_from_slice(framing);
            self.parts.push((head, Vec::new()));
        }
        fn content(&mut self, bytes: &[u8]) {
            assert!(self.open, "content outside a part");
            self.bytes.extend_from_slice(bytes);
            self.parts.last_mut().unwrap().1.extend_from_slice(bytes);
        }
        fn part_end(&mut self) {
            assert!(self.open);
            self.open = false;
        }
    }

    fn split(body: &[u8], boundary: &str, chunk: usize) -> Result<Recorder, MultipartError> {
        let mut recorder = Recorder::default();
        let mut splitter = Splitter::new(boundary);
        for piece in body.chunks(chunk.max(1)) {
            splitter.feed(piece, &mut recorder)?;
        }
        splitter.finish(&mut recorder)?;
        Ok(recorder)
    }

    /// Every chunk size gives the same parts, and the bytes come back whole.
    fn split_all_ways(body: &[u8], boundary: &str) -> Result<Recorder, MultipartError> {
        let whole = split(body, boundary, body.len());
        for chunk in [1, 2, 3, 5, 7, 16, 64] {
            assert_eq!(split(body, boundary, chunk), whole, "chunk {chunk}");
        }
        if let Ok(recorder) = &whole {
            assert_eq!(recorder.bytes, body);
        }
        whole
    }

    const FORM: &[u8] = b"preamble\r\n--XyZ\r\n\
Content-Disposition: form-data; name=\"title\"\r\n\r\n\
hello\r\n--XyZ  \r\n\
Content-Disposition: form-data; name=\"photo\"; filename=\"a.png\"\r\n\
Content-Type: image/png\r\n\r\n\
\x89PNG\r\n\x1a\n--XyNOT the boundary\r\n\r\n--XyZ\r\n\
X-Other: header\r\n\r\n\
no disposition\r\n--XyZ--\r\nepilogue";

    #[test]
    fn parts_are_found_and_bytes_kept() {
        let recorder = split_all_ways(FORM, "XyZ").unwrap();
        let parts: Vec<_> = recorder
            .parts
            .iter()
            .map(|(head, content)| (head.clone(), String::from_utf8_lossy(content).into_owned()))
            .collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0].0.name.as_deref(), Some("title"));
        assert_eq!(parts[0].1, "hello");
        assert_eq!(parts[1].0.filename.as_deref(), Some("a.png"));
        assert_eq!(parts[1].0.content_type.as_deref(), Some("image/png"));
        assert_eq!(
            parts[1].1,
            "\u{fffd}PNG\r\n\u{1a}\n--XyNOT the boundary\r\n"
        );
        assert_eq!(parts[1].0.to_string(), "part 2 \"photo\" (a.png)");
        assert_eq!(
            parts[2].0,
            PartHead {
                index: 2,
                ..PartHead::default()
            }
        );
        assert_eq!(parts[2].1, "no disposition");
    }

    #[test]
    fn a_body_may_open_with_its_delimiter_and_parts_may_be_empty() {
        let body = b"--b\r\nContent-Disposition: form-data; name=\"e\"\r\n\r\n\r\n--b--";
        let recorder = split_all_ways(body, "b").unwrap();
        assert_eq!(recorder.parts.len(), 1);
        assert!(recorder.parts[0].1.is_empty());
    }

    #[test]
    fn ambiguous_or_incomplete_bodies_are_refused() {
        let part = "Content-Disposition: form-data; name=\"f\"\r\n\r\n";
        for (body, expected) in [
            (format!("--b\r\n{part}data"), MultipartError::Truncated),
            (
                format!("--b\r\n{part}data\r\n--b"),
                MultipartError::Truncated,
            ),
            ("no delimiter at all".to_string(), MultipartError::Truncated),
            (String::new(), MultipartError::Truncated),
            (
                format!("--b\r\n{part}da--bta\r\n--b--"),
                MultipartError::StrayBoundary,
            ),
            (
                format!("--b\r\n{part}data\n--b\r\n{part}x\r\n--b--"),
                MultipartError::StrayBoundary,
            ),
            (
                format!("pre--b\r\n{part}x\r\n--b--"),
                MultipartError::StrayBoundary,
            ),
            (
                format!("--b\r\n{part}x\r\n--b--\r\n--b\r\n{part}y"),
                MultipartError::StrayBoundary,
            ),
            (
                format!("--b\r\n{part}x\r\n--bc\r\n{part}y\r\n--b--"),
                MultipartError::Delimiter,
            ),
            (format!("--b\n{part}x\r\n--b--"), MultipartError::Delimiter),
        ] {
            assert_eq!(
                split_all_ways(body.as_bytes(), "b").map(|r| r.parts.len()),
                Err(expected.clone()),
                "{body:?}"
            );
        }
        for (headers, why) in [
            ("Content-Disposition: form-data\nX: y\r\n\r\n", "bare"),
            (
                "Content-Type: image/png\r\nContent-Type: text/plain\r\n\r\n",
                "twice",
            ),
            ("no colon here\r\n\r\n", "header"),
            ("\r\nContent-Type: image/png\r\n\r\n", "without headers"),
        ] {
            let body = format!("--b\r\n{headers}x\r\n--b--");
            match split_all_ways(body.as_bytes(), "b") {
                Err(MultipartError::Headers(message)) => {
                    assert!(message.contains(why), "{headers:?}: {message}")
                }
                other => panic!("{headers:?}: {other:?}"),
            }
        }
        for headers in [
            "Content-Transfer-Encoding: base64\r\n\r\n",
            "Content-Type: multipart/mixed; boundary=c\r\n\r\n",
            "Content-Encoding: gzip\r\n\r\n",
        ] {
            let body = format!("--b\r\n{headers}x\r\n--b--");
            assert!(
                matches!(
                    split_all_ways(body.as_bytes(), "b"),
                    Err(MultipartError::Unsupported(_))
                ),
                "{headers:?}"
            );
        }
        let long = format!(
            "--b\r\nX: {}\r\n\r\nx\r\n--b--",
            "v".repeat(MAX_HEADER_BYTES)
        );
        assert!(matches!(
            split_all_ways(long.as_bytes(), "b"),
            Err(MultipartError::Headers(_))
        ));
    }

    #[test]
    fn part_count_is_bounded() {
        let many = "--b\r\nX: y\r\n\r\nx\r\n".repeat(MAX_PARTS + 1) + "--b--";
        assert_eq!(
            split(many.as_bytes(), "b", 4096).map(|r| r.parts.len()),
            Err(MultipartError::TooManyParts)
        );
    }

    #[test]
    fn boundaries_are_read_from_the_content_type() {
        assert_eq!(
            boundary("multipart/form-data; boundary=----WebKitFormBoundaryA1b2"),
            Ok(Some("----WebKitFormBoundaryA1b2".into()))
        );
        assert_eq!(
            boundary("Multipart/Mixed; boundary=\"with space\""),
            Ok(Some("with space".into()))
        );
        assert_eq!(boundary("application/json"), Ok(None));
        for bad in [
            "multipart/form-data",
            "multipart/form-data; boundary=",
            "multipart/form-data; boundary=a; boundary=b",
            "multipart/form-data; boundary=\"unterminated",
        ] {
            assert!(
                matches!(boundary(bad), Err(MultipartError::Boundary(_))),
                "{bad}"
            );
        }
        let long = format!("multipart/form-data; boundary={}", "x".repeat(71));
        assert!(boundary(&long).is_err());
    }
}
