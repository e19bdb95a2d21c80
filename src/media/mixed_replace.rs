//! `multipart/x-mixed-replace`: a body of parts, each replacing the one before (an MJPEG
//! camera's stream). Chromium and Firefox show it in `<img>`, part after part (checked:
//! Chromium shows a stream's last PNG), so a benign first part would carry anything after
//! it; every image part is judged.
//!
//! Parts are split as Chromium's multipart image parser splits them, leniently: at every
//! `--boundary` (a boundary given with a leading `--` loses it first), whatever precedes
//! it; a part's headers end at its first blank line; the line break before the next
//! delimiter is not part of the body; `--boundary--` ends the stream. Splitting at every
//! occurrence means no image a browser finds can hide inside a part we judge as another.

use super::format::{unreadable_image, ImageFormat};
use super::{content_type, svg};

/// An image one part of a stream shows.
#[derive(Debug, PartialEq, Eq)]
pub enum PartImage<'a> {
    /// A raster, by its bytes (whatever its part's `Content-Type`).
    Raster(ImageFormat, &'a [u8]),
    /// An SVG (by its part's `Content-Type`, as browsers decide).
    Svg(&'a [u8]),
    /// An image we cannot read (HEIF), or a part claiming an image type whose bytes are
    /// none we read: why.
    Unreadable(String),
}

/// The boundary parts are split at, from a `Content-Type` of
/// `multipart/x-mixed-replace`; `None` for any other type; `Some(Err)` when the stream
/// declares no usable boundary.
pub fn boundary(content_type: &str) -> Option<Result<String, String>> {
    if content_type::essence(content_type) != "multipart/x-mixed-replace" {
        return None;
    }
    let declared = content_type::parameters(content_type).and_then(|parameters| {
        parameters
            .into_iter()
            .find(|(name, _)| name == "boundary")
            .map(|(_, value)| value)
    });
    Some(match declared {
        Some(value) => {
            let value = value.strip_prefix("--").unwrap_or(&value);
            if value.is_empty() {
                Err("multipart/x-mixed-replace with an empty boundary".into())
            } else {
                Ok(value.to_string())
            }
        }
        None => Err("multipart/x-mixed-replace without a readable boundary".into()),
    })
}

/// The images `body`'s parts show, in order (parts that are not images are left out).
pub fn images<'a>(body: &'a [u8], boundary: &str) -> Vec<PartImage<'a>> {
    let delimiter = [b"--", boundary.as_bytes()].concat();
    let starts = occurrences(body, &delimiter);
    let mut found = Vec::new();
    for (i, &start) in starts.iter().enumerate() {
        let from = start + delimiter.len();
        let to = starts.get(i + 1).copied().unwrap_or(body.len());
        let segment = &body[from..to];
        if segment.starts_with(b"--") {
            break;
        }
        if let Some(image) = part_image(segment) {
            found.push(image);
        }
    }
    found
}

/// Where `needle` starts in `haystack`, each occurrence after the end of the one before.
fn occurrences(haystack: &[u8], needle: &[u8]) -> Vec<usize> {
    let mut found = Vec::new();
    let mut at = 0;
    while let Some(offset) = haystack
        .get(at..)
        .and_then(|rest| rest.windows(needle.len()).position(|w| w == needle))
    {
        found.push(at + offset);
        at += offset + needle.len();
    }
    found
}

/// The image one part (what follows its delimiter) shows, if any.
fn part_image(segment: &[u8]) -> Option<PartImage<'_>> {
    // The rest of the delimiter's line, then header lines up to a blank one.
    let mut lines = segment.split_inclusive(|&b| b == b'\n');
    let mut at = lines.next()?.len();
    let mut claimed = None;
    loop {
        let line = lines.next()?;
        at += line.len();
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end_matches(['\r', '\n']);
        if text.is_empty() {
            break;
        }
        if let Some((name, value)) = text.split_once(':') {
            if name.trim().eq_ignore_ascii_case("content-type") {
                claimed = Some(value.trim().to_string());
            }
        }
    }
    let mut body = &segment[at..];
    body = body.strip_suffix(b"\n").unwrap_or(body);
    body = body.strip_suffix(b"\r").unwrap_or(body);
    if let Some(format) = ImageFormat::sniff(body) {
        return Some(PartImage::Raster(format, body));
    }
    if let Some(name) = unreadable_image(body) {
        return Some(PartImage::Unreadable(format!(
            "{name} images are not decoded here"
        )));
    }
    let claimed = claimed.as_deref();
    if svg::is_svg_type(claimed) {
        return Some(PartImage::Svg(body));
    }
    content_type::claims_image(claimed).then(|| {
        PartImage::Unreadable(format!(
            "{} part is not a {}",
            claimed.unwrap_or_default(),
            ImageFormat::list()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDRrest";
    const GIF: &[u8] = b"GIF89a\x01\0\x01\0rest";

    #[test]
    fn the_boundary_comes_from_the_type_without_a_leading_dash_pair() {
        let b = |value: &str| boundary(value);
        assert_eq!(
            b("multipart/x-mixed-replace; boundary=frame"),
            Some(Ok("frame".into()))
        );
        assert_eq!(
            b("Multipart/X-Mixed-Replace;boundary=\"--my frame\""),
            Some(Ok("my frame".into()))
        );
        assert!(matches!(b("multipart/x-mixed-replace"), Some(Err(_))));
        assert!(matches!(
            b("multipart/x-mixed-replace; boundary=--"),
            Some(Err(_))
        ));
        assert_eq!(b("multipart/form-data; boundary=x"), None);
        assert_eq!(b("image/png"), None);
    }

    #[test]
    fn every_image_part_is_found_as_browsers_split_them() {
        let stream = [
            &b"preamble\r\n--frame\r\nContent-Type: image/png\r\nContent-Length: 9\r\n\r\n"[..],
            PNG,
            b"\r\n--frame\r\nContent-Type: text/plain\r\n\r\nhello\r\n",
            // No line break before the delimiter, none in the headers but LF.
            b"--frame\nContent-Type: image/gif\n\n",
            GIF,
            b"--frame\r\nContent-Type: image/svg+xml\r\n\r\n<svg/>\r\n",
            b"--frame\r\nContent-Type: image/png\r\n\r\nnot a png\r\n",
            b"--frame--\r\n--frame\r\n\r\n",
            PNG,
        ]
        .concat();
        let images = images(&stream, "frame");
        assert_eq!(images.len(), 4, "{images:?}");
        assert_eq!(images[0], PartImage::Raster(ImageFormat::Png, PNG));
        assert_eq!(images[1], PartImage::Raster(ImageFormat::Gif, GIF));
        assert_eq!(images[2], PartImage::Svg(b"<svg/>"));
        assert!(matches!(&images[3], PartImage::Unreadable(why) if why.starts_with("image/png")));
    }

    #[test]
    fn an_image_after_a_delimiter_inside_a_part_is_found() {
        // A part whose PNG is followed by a delimiter and a GIF without headers' blank
        // line in between: the lenient split still finds both.
        let stream = [
            &b"--x\r\n\r\n"[..],
            PNG,
            b"--x\r\nContent-Type: image/gif\r\n\r\n",
            GIF,
        ]
        .concat();
        let images = images(&stream, "x");
        assert_eq!(
            images,
            [
                PartImage::Raster(ImageFormat::Png, PNG),
                PartImage::Raster(ImageFormat::Gif, GIF)
            ]
        );
        // A part whose headers never end shows nothing.
        assert_eq!(
            super::images(b"--x\r\nContent-Type: image/png\r\n", "x"),
            []
        );
        assert_eq!(super::images(b"no delimiter at all", "x"), []);
    }
}
