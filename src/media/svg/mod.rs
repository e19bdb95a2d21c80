//! SVG as a browser shows it in `<img>`: external references are not loaded there, but
//! rasters embedded as `data:` URIs are (`<image>` and `<feImage>` `href`/`xlink:href`, CSS
//! `url(data:…)` in `style` attributes and `<style>` elements), nested SVGs included. This
//! finds every one of them, so each can be judged.
//!
//! The document is parsed (roxmltree, with its DTD: entities can spell a URI), bounded in
//! nodes and nesting; every attribute value and text, entity-decoded, is searched for
//! `data:` URIs. Searching everything is a superset of where a browser looks, which is
//! the safe side for a filter.

mod draw;
mod html;

pub use draw::{draw, MAX_DRAWN_ELEMENTS};

use super::format::{unreadable_image, ImageFormat};
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use std::fmt;

/// Most nodes parsed in one document.
pub const MAX_NODES: u32 = 100_000;
/// Most SVG documents nested in data: URIs inside each other.
pub const MAX_NESTING: usize = 3;
/// Most embedded images one SVG may carry (each is an inference).
pub const MAX_EMBEDDED: usize = 16;

/// An image found in an SVG.
#[derive(Debug, PartialEq)]
pub enum Embedded {
    /// A raster the filter decodes.
    Raster { format: ImageFormat, bytes: Vec<u8> },
    /// An image it cannot decode (its type or name): the policy's `on_undecodable`.
    Unreadable(String),
}

#[derive(Debug, PartialEq)]
pub enum SvgError {
    /// Not well-formed XML (a browser shows nothing for it).
    Malformed(String),
    /// Beyond [`MAX_NESTING`] or [`MAX_EMBEDDED`].
    TooComplex(&'static str),
    /// Shows something that is not drawn here, so the picture it makes cannot be judged.
    Undrawable(&'static str),
}

impl fmt::Display for SvgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SvgError::Malformed(why) => write!(f, "malformed SVG: {why}"),
            SvgError::TooComplex(why) => write!(f, "SVG too complex to inspect: {why}"),
            SvgError::Undrawable(why) => write!(f, "SVG not drawn here: {why}"),
        }
    }
}

impl std::error::Error for SvgError {}

/// Whether a body with this `Content-Type` is SVG (browsers render SVG in `<img>` only when
/// so typed; they never sniff it).
pub fn is_svg_type(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|t| super::content_type::essence(t) == "image/svg+xml")
}

/// Every image an SVG document embeds, nested SVGs searched in turn.
pub fn embedded_images(svg: &[u8]) -> Result<Vec<Embedded>, SvgError> {
    let mut found = Vec::new();
    search(svg, 0, &mut found)?;
    Ok(found)
}

fn search(svg: &[u8], depth: usize, found: &mut Vec<Embedded>) -> Result<(), SvgError> {
    if depth > MAX_NESTING {
        return Err(SvgError::TooComplex("SVGs nested too deep"));
    }
    let text = std::str::from_utf8(svg).map_err(|e| SvgError::Malformed(e.to_string()))?;
    let document = parse(text)?;
    for node in document.descendants() {
        let texts = node
            .attributes()
            .map(|a| a.value())
            .chain(node.text().filter(|_| node.is_text()));
        for value in texts {
            for uri in data_uris(value) {
                let Some((mime, bytes)) = decode_data_uri(uri) else {
                    continue;
                };
                classify(&mime, bytes, depth, found)?;
            }
        }
    }
    Ok(())
}

/// The XML document, with its DTD (entities can spell a URI, and browsers expand them),
/// within [`MAX_NODES`].
fn parse(text: &str) -> Result<roxmltree::Document<'_>, SvgError> {
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        nodes_limit: MAX_NODES,
        // External entities are not loaded (nor are they by browsers in `<img>`).
        ..roxmltree::ParsingOptions::default()
    };
    roxmltree::Document::parse_with_options(text, options)
        .map_err(|e| SvgError::Malformed(e.to_string()))
}

fn classify(
    mime: &str,
    bytes: Vec<u8>,
    depth: usize,
    found: &mut Vec<Embedded>,
) -> Result<(), SvgError> {
    if let Some(format) = ImageFormat::sniff(&bytes) {
        if format.decoded_in_isolation() {
            // Decoded only in an isolated instance (edge::model): not from inside an SVG.
            return push(found, Embedded::Unreadable(format.name().into()));
        }
        push(found, Embedded::Raster { format, bytes })
    } else if let Some(name) = unreadable_image(&bytes) {
        push(found, Embedded::Unreadable(name.to_string()))
    } else if mime == "image/svg+xml" {
        search(&bytes, depth + 1, found)
    } else if mime.starts_with("image/") {
        push(found, Embedded::Unreadable(mime.to_string()))
    } else {
        // Fonts and the like: nothing a browser shows as a picture.
        Ok(())
    }
}

fn push(found: &mut Vec<Embedded>, embedded: Embedded) -> Result<(), SvgError> {
    if found.len() >= MAX_EMBEDDED {
        return Err(SvgError::TooComplex("too many embedded images"));
    }
    found.push(embedded);
    Ok(())
}

/// The `data:` URIs in a text: from each `data:` (any case) to the end of the value, a
/// closing parenthesis or a quote (CSS `url(...)`).
fn data_uris(value: &str) -> impl Iterator<Item = &str> {
    let lower = value.to_ascii_lowercase();
    let starts: Vec<usize> = lower.match_indices("data:").map(|(at, _)| at).collect();
    starts.into_iter().map(move |at| {
        let rest = &value[at..];
        let end = rest.find([')', '"', '\'']).unwrap_or(rest.len());
        &rest[..end]
    })
}

/// Browsers' forgiving base64: whitespace dropped, padding optional.
const FORGIVING: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// The media type (lower-case) and bytes of a `data:` URI.
/// Whether a `data:` URI holds an image: declared `image/*`, or bytes of one.
fn is_image_uri(uri: &str) -> bool {
    decode_data_uri(uri).is_some_and(|(mime, bytes)| {
        mime.starts_with("image/")
            || ImageFormat::sniff(&bytes).is_some()
            || unreadable_image(&bytes).is_some()
    })
}

fn decode_data_uri(uri: &str) -> Option<(String, Vec<u8>)> {
    let body = uri.get(5..)?;
    let (header, payload) = body.split_once(',')?;
    let mut parameters = header.split(';').map(str::trim);
    let mime = parameters.next().unwrap_or_default().to_ascii_lowercase();
    let base64 = parameters.any(|p| p.eq_ignore_ascii_case("base64"));
    let bytes = if base64 {
        let compact: String = payload
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        // Percent-escapes are undone first, as a browser does.
        FORGIVING.decode(percent_decode(compact.as_bytes())).ok()?
    } else {
        percent_decode(payload.as_bytes())
    };
    Some((mime, bytes))
}

fn percent_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (input[i], input.get(i + 1), input.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    fn rasters(svg: &str) -> Vec<Embedded> {
        embedded_images(svg.as_bytes()).unwrap()
    }

    #[test]
    fn every_way_of_embedding_a_raster_is_found() {
        let png = b64(PNG);
        let gif = b64(b"GIF89a\x01\0\x01\0");
        let nested = b64(
            format!(r#"<svg xmlns="http://www.w3.org/2000/svg"><image href="data:image/png;base64,{png}"/></svg>"#)
                .as_bytes(),
        );
        let svg = format!(
            r#"<?xml version="1.0"?>
<!DOCTYPE svg [<!ENTITY hidden "data:image/gif;base64,{gif}">]>
<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink">
  <image xlink:href="DATA:image/png;BASE64,{spaced}"/>
  <filter><feImage href="&hidden;"/></filter>
  <rect style="fill: url('data:image/png;base64,{png}')"/>
  <style>.a {{ background: url(data:image/png;base64,{png}) }}</style>
  <image href="data:image/svg+xml;base64,{nested}"/>
  <image href="data:image/avif;base64,AAAAHGZ0eXBhdmlm"/>
  <image href="https://example.com/not-fetched.png"/>
  <font-face src="data:font/woff;base64,d09GRg=="/>
</svg>"#,
            spaced = png.chars().map(|c| format!("{c}\n")).collect::<String>(),
        );
        let found = rasters(&svg);
        let formats: Vec<String> = found
            .iter()
            .map(|e| match e {
                Embedded::Raster { format, .. } => format.name().to_string(),
                Embedded::Unreadable(name) => name.clone(),
            })
            .collect();
        assert_eq!(formats, ["PNG", "GIF", "PNG", "PNG", "PNG", "AVIF"]);
        assert_eq!(
            found[0],
            Embedded::Raster {
                format: ImageFormat::Png,
                bytes: PNG.to_vec()
            }
        );
    }

    #[test]
    fn percent_encoded_uris_are_read_too() {
        let svg = r#"<svg xmlns="http://www.w3.org/2000/svg"><image href="data:image/gif,GIF89a%01%00%01%00"/></svg>"#;
        assert_eq!(
            rasters(svg),
            [Embedded::Raster {
                format: ImageFormat::Gif,
                bytes: b"GIF89a\x01\0\x01\0".to_vec()
            }]
        );
        assert!(rasters(r#"<svg xmlns="http://www.w3.org/2000/svg"><rect/></svg>"#).is_empty());
    }

    #[test]
    fn hostile_documents_are_bounded() {
        assert!(matches!(
            embedded_images(b"<svg><unclosed></svg>"),
            Err(SvgError::Malformed(_))
        ));
        let laughs = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;"><!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;"><!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;"><!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;"><!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;"><!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;"><!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;"><!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">]><svg>&lol9;</svg>"#;
        assert!(matches!(
            embedded_images(laughs.as_bytes()),
            Err(SvgError::Malformed(_))
        ));
        let many = format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg">{}</svg>"#,
            format!(r#"<image href="data:image/png;base64,{}"/>"#, b64(PNG))
                .repeat(MAX_EMBEDDED + 1)
        );
        assert_eq!(
            embedded_images(many.as_bytes()),
            Err(SvgError::TooComplex("too many embedded images"))
        );
        // An SVG nested in itself deeper than allowed.
        let mut svg = r#"<svg xmlns="http://www.w3.org/2000/svg"/>"#.to_string();
        for _ in 0..=MAX_NESTING + 1 {
            svg = format!(
                r#"<svg xmlns="http://www.w3.org/2000/svg"><image href="data:image/svg+xml;base64,{}"/></svg>"#,
                b64(svg.as_bytes())
            );
        }
        assert_eq!(
            embedded_images(svg.as_bytes()),
            Err(SvgError::TooComplex("SVGs nested too deep"))
        );
    }
}
