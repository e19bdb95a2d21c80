//! HTTP content codings (`Content-Encoding: gzip`, `deflate`, `br`, `zstd`): a browser
//! undoes them before it looks at the bytes, so an image sent compressed under any type
//! is still shown. We undo them too, to sniff and judge what the browser will see; what
//! passes is still the origin's encoded bytes.
//!
//! Decoders: flate2 on miniz_oxide (gzip, deflate), brotli-decompressor, ruzstd: pure
//! Rust, no threads. Every decode is bounded in output (a small compressed body can
//! expand a thousandfold) and in input read for a sniff.

use std::fmt;
use std::io::Read;

/// One content coding, as named in `Content-Encoding`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coding {
    Gzip,
    /// HTTP's `deflate` is zlib-wrapped; some servers send raw deflate, and browsers
    /// accept both, so both are read.
    Deflate,
    Brotli,
    Zstd,
}

/// Most codings stacked in one header we undo (`gzip, br` is two).
const MAX_CODINGS: usize = 3;

/// Why a body's coding could not be undone.
#[derive(Debug, PartialEq, Eq)]
pub enum CodingError {
    /// A coding we do not know, or too many stacked.
    Unknown(String),
    /// The decoded body is larger than the limit.
    TooLarge { limit: usize },
    /// The compressed data is damaged or truncated.
    Corrupt(String),
}

impl fmt::Display for CodingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodingError::Unknown(coding) => write!(f, "unsupported Content-Encoding {coding}"),
            CodingError::TooLarge { limit } => {
                write!(f, "decompresses to more than {limit} bytes")
            }
            CodingError::Corrupt(why) => write!(f, "damaged compressed body: {why}"),
        }
    }
}

impl std::error::Error for CodingError {}

/// The codings a `Content-Encoding` value lists, in the order they were applied
/// (`identity` dropped). Empty: nothing to undo.
pub fn parse(header: &str) -> Result<Vec<Coding>, CodingError> {
    let mut codings = Vec::new();
    for name in header.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let coding = match name.to_ascii_lowercase().as_str() {
            "identity" => continue,
            "gzip" | "x-gzip" => Coding::Gzip,
            "deflate" => Coding::Deflate,
            "br" => Coding::Brotli,
            "zstd" => Coding::Zstd,
            _ => return Err(CodingError::Unknown(name.to_string())),
        };
        codings.push(coding);
    }
    if codings.len() > MAX_CODINGS {
        return Err(CodingError::Unknown(header.to_string()));
    }
    Ok(codings)
}

/// A reader that undoes `codings` over `input`.
fn decoder<'a>(input: &'a [u8], codings: &[Coding]) -> Result<Box<dyn Read + 'a>, CodingError> {
    let mut reader: Box<dyn Read + 'a> = Box::new(input);
    // Applied first is undone last.
    for (undone, coding) in codings.iter().rev().enumerate() {
        reader = match coding {
            Coding::Gzip => Box::new(flate2::read::MultiGzDecoder::new(reader)),
            Coding::Deflate => {
                // The outermost layer's bytes are at hand: zlib's header is CMF 0x?8
                // with (CMF*256 + FLG) % 31 == 0. Inner layers are taken as zlib.
                let zlib = undone > 0
                    || (input.len() >= 2
                        && input[0] & 0x0F == 8
                        && (u16::from(input[0]) << 8 | u16::from(input[1])) % 31 == 0);
                if zlib {
                    Box::new(flate2::read::ZlibDecoder::new(reader))
                } else {
                    Box::new(flate2::read::DeflateDecoder::new(reader))
                }
            }
            Coding::Brotli => Box::new(brotli_decompressor::Decompressor::new(reader, 4096)),
            Coding::Zstd => Box::new(
                ruzstd::decoding::StreamingDecoder::new(reader)
                    .map_err(|e| CodingError::Corrupt(e.to_string()))?,
            ),
        };
    }
    Ok(reader)
}

/// The whole decoded body, at most `limit` bytes.
pub fn decode(input: &[u8], codings: &[Coding], limit: usize) -> Result<Vec<u8>, CodingError> {
    let mut out = Vec::new();
    decoder(input, codings)?
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| CodingError::Corrupt(e.to_string()))?;
    if out.len() > limit {
        return Err(CodingError::TooLarge { limit });
    }
    Ok(out)
}

/// The first `want` decoded bytes of a body that starts with `prefix` (a prefix of the
/// compressed body): fewer when the body is shorter, or when `prefix` is not enough to
/// produce them (the caller then reads more, or gives up).
pub fn decoded_prefix(prefix: &[u8], codings: &[Coding], want: usize) -> Vec<u8> {
    let Ok(reader) = decoder(prefix, codings) else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(want);
    let mut reader = reader.take(want as u64);
    let mut buffer = [0u8; 64];
    // Read until `want` bytes, the end, or an error (a prefix ends mid-stream).
    loop {
        match reader.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buffer[..n]),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    fn raw_deflate(data: &[u8]) -> Vec<u8> {
        let mut encoder =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    /// The first bytes a sniff looks for.
    const PNG_START: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

    #[test]
    fn headers_list_codings_in_order() {
        assert_eq!(parse("gzip").unwrap(), [Coding::Gzip]);
        assert_eq!(parse(" GZIP , br").unwrap(), [Coding::Gzip, Coding::Brotli]);
        assert_eq!(parse("identity").unwrap(), []);
        assert_eq!(parse("x-gzip, zstd").unwrap(), [Coding::Gzip, Coding::Zstd]);
        assert!(matches!(parse("compress"), Err(CodingError::Unknown(_))));
        assert!(parse("gzip, gzip, gzip, gzip").is_err());
    }

    #[test]
    fn gzip_and_both_deflates_decode() {
        let data = [PNG_START, &[7u8; 5000][..]].concat();
        for (codings, encoded) in [
            (vec![Coding::Gzip], gzip(&data)),
            (vec![Coding::Deflate], zlib(&data)),
            (vec![Coding::Deflate], raw_deflate(&data)),
            (vec![Coding::Gzip, Coding::Gzip], gzip(&gzip(&data))),
        ] {
            assert_eq!(
                decode(&encoded, &codings, 1 << 20).unwrap(),
                data,
                "{codings:?}"
            );
            let head = &encoded[..encoded.len().min(300)];
            assert_eq!(
                decoded_prefix(head, &codings, 12),
                &data[..12],
                "{codings:?}"
            );
        }
    }

    #[test]
    fn brotli_and_zstd_decode() {
        let data = [PNG_START, &[7u8; 5000][..]].concat();
        let mut brotli = Vec::new();
        brotli_compress(&data, &mut brotli);
        assert_eq!(decode(&brotli, &[Coding::Brotli], 1 << 20).unwrap(), data);
        let zstd = ruzstd::encoding::compress_to_vec(
            &data[..],
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        assert_eq!(decode(&zstd, &[Coding::Zstd], 1 << 20).unwrap(), data);
        assert_eq!(decoded_prefix(&zstd, &[Coding::Zstd], 12), &data[..12]);
    }

    /// A stored (uncompressed) brotli stream, written by hand from RFC 7932 §9.2: the
    /// decoder must read what any encoder may produce.
    fn brotli_compress(data: &[u8], out: &mut Vec<u8>) {
        // WBITS=16 (one bit 0), then meta-blocks: ISLAST=0, MNIBBLES=4 (00), MLEN-1 in
        // 16 bits, ISUNCOMPRESSED=1, byte-aligned data; finally ISLAST=1, ISLASTEMPTY=1.
        let mut bits = BitWriter::default();
        bits.put(0, 1);
        for chunk in data.chunks(65536) {
            bits.put(0, 1);
            bits.put(0, 2);
            bits.put((chunk.len() - 1) as u32, 16);
            bits.put(1, 1);
            bits.align();
            bits.bytes.extend_from_slice(chunk);
        }
        bits.put(1, 1);
        bits.put(1, 1);
        bits.align();
        out.extend_from_slice(&bits.bytes);
    }

    #[derive(Default)]
    struct BitWriter {
        bytes: Vec<u8>,
        used: u32,
    }

    impl BitWriter {
        fn put(&mut self, value: u32, count: u32) {
            for i in 0..count {
                if self.used.is_multiple_of(8) {
                    self.bytes.push(0);
                }
                let bit = (value >> i) & 1;
                *self.bytes.last_mut().unwrap() |= (bit as u8) << (self.used % 8);
                self.used += 1;
            }
        }
        fn align(&mut self) {
            self.used = self.used.div_ceil(8) * 8;
        }
    }

    #[test]
    fn bombs_and_damage_are_refused() {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(&vec![0u8; 10 << 20]).unwrap();
        let bomb = encoder.finish().unwrap();
        assert!(bomb.len() < 20_000, "{}", bomb.len());
        assert_eq!(
            decode(&bomb, &[Coding::Gzip], 1 << 20),
            Err(CodingError::TooLarge { limit: 1 << 20 })
        );
        let data = gzip(&[PNG_START, &[1u8; 3000][..]].concat());
        assert!(matches!(
            decode(&data[..data.len() / 2], &[Coding::Gzip], 1 << 20),
            Err(CodingError::Corrupt(_))
        ));
        assert!(decoded_prefix(b"not gzip at all", &[Coding::Gzip], 12).is_empty());
    }
}
