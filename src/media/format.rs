//! The raster formats the filter reads, recognised by their leading bytes.
//!
//! `Content-Type` is chosen by whoever uploaded the file, so it is never trusted on its own:
//! image bytes under any type are moderated, and only the bytes decide which decoder runs.
//! Everything else that varies by format (its MIME type, its extension, the codec that
//! reads and writes it) is answered here, so a new format is added in one place.

/// How many leading bytes [`ImageFormat::sniff`] needs to recognise every format.
pub const SNIFF_LEN: usize = 12;

/// A raster format the filter can decode, classify and re-encode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ImageFormat {
    Jpeg,
    Png,
    WebP,
    Gif,
}

impl ImageFormat {
    /// Every format, in the order reasons and documentation list them.
    pub const ALL: [ImageFormat; 4] = [Self::Jpeg, Self::Png, Self::WebP, Self::Gif];

    /// The format whose signature starts `prefix`, if any.
    pub fn sniff(prefix: &[u8]) -> Option<Self> {
        match prefix {
            [0xFF, 0xD8, 0xFF, ..] => Some(Self::Jpeg),
            [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, ..] => Some(Self::Png),
            [b'G', b'I', b'F', b'8', b'7' | b'9', b'a', ..] => Some(Self::Gif),
            [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'E', b'B', b'P', ..] => Some(Self::WebP),
            _ => None,
        }
    }

    /// The format's name as people write it (`JPEG`, `WebP`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Jpeg => "JPEG",
            Self::Png => "PNG",
            Self::WebP => "WebP",
            Self::Gif => "GIF",
        }
    }

    /// The `Content-Type` a response in this format should carry.
    pub fn mime_type(self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
            Self::WebP => "image/webp",
            Self::Gif => "image/gif",
        }
    }

    /// The usual file extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Jpeg => "jpg",
            Self::Png => "png",
            Self::WebP => "webp",
            Self::Gif => "gif",
        }
    }

    /// `JPEG, PNG, WebP or GIF`: what a reason says the filter reads.
    pub fn list() -> String {
        let names: Vec<&str> = Self::ALL.iter().map(|f| f.name()).collect();
        match names.split_last() {
            Some((last, [])) => last.to_string(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
            None => String::new(),
        }
    }

    /// image-rs's name for the format, for the codecs it provides.
    pub fn codec(self) -> image::ImageFormat {
        match self {
            Self::Jpeg => image::ImageFormat::Jpeg,
            Self::Png => image::ImageFormat::Png,
            Self::WebP => image::ImageFormat::WebP,
            Self::Gif => image::ImageFormat::Gif,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_each_signature() {
        assert_eq!(
            ImageFormat::sniff(b"\xFF\xD8\xFF\xE0\x00\x10JFIF"),
            Some(ImageFormat::Jpeg)
        );
        assert_eq!(
            ImageFormat::sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"),
            Some(ImageFormat::Png)
        );
        assert_eq!(
            ImageFormat::sniff(b"GIF89a\x01\0\x01\0"),
            Some(ImageFormat::Gif)
        );
        assert_eq!(
            ImageFormat::sniff(b"GIF87a\x01\0\x01\0"),
            Some(ImageFormat::Gif)
        );
        assert_eq!(
            ImageFormat::sniff(b"RIFF\x24\0\0\0WEBPVP8 "),
            Some(ImageFormat::WebP)
        );
    }

    #[test]
    fn rejects_lookalikes_and_short_input() {
        assert_eq!(ImageFormat::sniff(b""), None);
        assert_eq!(ImageFormat::sniff(b"\xFF\xD8"), None);
        assert_eq!(ImageFormat::sniff(b"RIFF\x24\0\0\0WAVEfmt "), None);
        assert_eq!(ImageFormat::sniff(b"GIF88a"), None);
        assert_eq!(ImageFormat::sniff(b"<svg xmlns="), None);
        assert_eq!(ImageFormat::sniff(b"\x89PNG\r\n\x1a\x0b"), None);
    }

    #[test]
    fn every_format_names_itself_consistently() {
        assert_eq!(ImageFormat::list(), "JPEG, PNG, WebP or GIF");
        for format in ImageFormat::ALL {
            assert_eq!(
                format.mime_type(),
                format.codec().to_mime_type(),
                "{format:?}"
            );
            assert!(format
                .codec()
                .extensions_str()
                .contains(&format.extension()));
        }
    }
}
