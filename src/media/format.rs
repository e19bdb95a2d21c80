//! The raster formats the filter reads, recognised by their leading bytes.
//!
//! `Content-Type` is chosen by whoever uploaded the file, so it is never trusted on its own:
//! image bytes under any type are moderated, and only the bytes decide which decoder runs.
//! Everything else that varies by format (its MIME type, its extension, the codec that
//! reads and writes it) is answered here, so a new format is added in one place.

/// How many leading bytes [`ImageFormat::sniff`] needs to recognise every format, but for
/// an ISO-BMFF file, whose brands may run on (see [`sniff_len`]).
pub const SNIFF_LEN: usize = 12;
/// The most leading bytes sniffing reads: an ISO-BMFF `ftyp` box with 32 compatible
/// brands, as much as Chromium reads to tell an AVIF (libavif's file type peek).
pub const MAX_SNIFF_LEN: usize = 144;

/// How many leading bytes sniffing needs, given at least the first [`SNIFF_LEN`]: the
/// whole `ftyp` box of an ISO-BMFF file (up to [`MAX_SNIFF_LEN`]), since a browser takes
/// it for an AVIF when any of its compatible brands is `avif` or `avis`; [`SNIFF_LEN`]
/// otherwise. Only ISO-BMFF files are read further, so a streamed body that is not an
/// image waits for no more bytes than before.
pub fn sniff_len(prefix: &[u8]) -> usize {
    match prefix {
        [a, b, c, d, b'f', b't', b'y', b'p', ..] => {
            let size = u32::from_be_bytes([*a, *b, *c, *d]) as usize;
            size.clamp(SNIFF_LEN, MAX_SNIFF_LEN)
        }
        _ => SNIFF_LEN,
    }
}

/// Whether `prefix` opens with a whole, well-formed `ftyp` box (within [`MAX_SNIFF_LEN`]
/// bytes) listing `avif` or `avis` among its compatible brands: libavif's file type peek,
/// by which Chromium takes a file for an AVIF whatever its major brand (checked: an AVIF
/// whose major brand is `miaf` renders in `<img>` under `application/octet-stream`).
fn compatible_with_avif(prefix: &[u8]) -> bool {
    let [a, b, c, d, b'f', b't', b'y', b'p', ..] = prefix else {
        return false;
    };
    let size = u32::from_be_bytes([*a, *b, *c, *d]) as usize;
    if !(16..=MAX_SNIFF_LEN).contains(&size) || !(size - 16).is_multiple_of(4) {
        return false;
    }
    // Past the box header, the major brand and the minor version.
    prefix.get(16..size).is_some_and(|brands| {
        brands
            .chunks_exact(4)
            .any(|brand| brand == b"avif" || brand == b"avis")
    })
}

/// A raster format the filter can decode, classify and re-encode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ImageFormat {
    Jpeg,
    Png,
    WebP,
    Gif,
    Bmp,
    /// ICO: a browser shows the entry it picks; image-rs decodes the largest.
    Ico,
    Tiff,
    /// AVIF stills (rav1d); an animated AVIF (an image sequence) is refused, not judged.
    Avif,
    /// JPEG XL stills (jxl-oxide), bare codestream or container; animations are not read.
    JpegXl,
}

impl ImageFormat {
    /// Every format, in the order reasons and documentation list them.
    pub const ALL: [ImageFormat; 9] = [
        Self::Jpeg,
        Self::Png,
        Self::WebP,
        Self::Gif,
        Self::Bmp,
        Self::Ico,
        Self::Tiff,
        Self::Avif,
        Self::JpegXl,
    ];

    /// The format whose signature starts `prefix`, if any: the WHATWG mimesniff image
    /// table (what every browser sniffs, whatever the `Content-Type`), plus TIFF, which
    /// Safari renders, and JPEG XL, which Safari renders and Firefox and Chromium sniff
    /// where they enable it.
    pub fn sniff(prefix: &[u8]) -> Option<Self> {
        match prefix {
            [0xFF, 0xD8, 0xFF, ..] => Some(Self::Jpeg),
            [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, ..] => Some(Self::Png),
            [b'G', b'I', b'F', b'8', b'7' | b'9', b'a', ..] => Some(Self::Gif),
            [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'E', b'B', b'P', ..] => Some(Self::WebP),
            // Chromium's BMP decoder also takes OS/2's `BA` (bitmap array).
            [b'B', b'M' | b'A', ..] => Some(Self::Bmp),
            // Icon (1) and cursor (2) directories.
            [0, 0, 1 | 2, 0, ..] => Some(Self::Ico),
            [b'I', b'I', 42, 0, ..] | [b'M', b'M', 0, 42, ..] => Some(Self::Tiff),
            // ISO-BMFF `ftyp` with an AVIF major brand (still or sequence).
            [_, _, _, _, b'f', b't', b'y', b'p', b'a', b'v', b'i', b'f' | b's', ..] => {
                Some(Self::Avif)
            }
            // JPEG XL: a bare codestream, or its ISO-BMFF container.
            [0xFF, 0x0A, ..]
            | [0, 0, 0, 0x0C, b'J', b'X', b'L', b' ', 0x0D, 0x0A, 0x87, 0x0A, ..] => {
                Some(Self::JpegXl)
            }
            // Any other ISO-BMFF file that lists an AVIF brand as compatible.
            _ if compatible_with_avif(prefix) => Some(Self::Avif),
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
            Self::Bmp => "BMP",
            Self::Ico => "ICO",
            Self::Tiff => "TIFF",
            Self::Avif => "AVIF",
            Self::JpegXl => "JPEG XL",
        }
    }

    /// The `Content-Type` a response in this format should carry.
    pub fn mime_type(self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
            Self::WebP => "image/webp",
            Self::Gif => "image/gif",
            Self::Bmp => "image/bmp",
            Self::Ico => "image/x-icon",
            Self::Tiff => "image/tiff",
            Self::Avif => "image/avif",
            Self::JpegXl => "image/jxl",
        }
    }

    /// The usual file extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Jpeg => "jpg",
            Self::Png => "png",
            Self::WebP => "webp",
            Self::Gif => "gif",
            Self::Bmp => "bmp",
            Self::Ico => "ico",
            Self::Tiff => "tiff",
            Self::Avif => "avif",
            Self::JpegXl => "jxl",
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

    /// image-rs's name for the format, where image-rs has one (not JPEG XL).
    pub fn codec(self) -> Option<image::ImageFormat> {
        Some(match self {
            Self::Jpeg => image::ImageFormat::Jpeg,
            Self::Png => image::ImageFormat::Png,
            Self::WebP => image::ImageFormat::WebP,
            Self::Gif => image::ImageFormat::Gif,
            Self::Bmp => image::ImageFormat::Bmp,
            Self::Ico => image::ImageFormat::Ico,
            Self::Tiff => image::ImageFormat::Tiff,
            Self::Avif => image::ImageFormat::Avif,
            Self::JpegXl => return None,
        })
    }

    /// Whether images of this format are decoded only in an instance of their own (a
    /// sibling), never in one that answers the client: rav1d 1.1 aborts the instance on a
    /// damaged AV1 stream (memorysafety/rav1d#1497), and an abort there would be a bare
    /// 500; JPEG XL's decode (jxl-oxide, float planes) needs a CPU budget of its own, and
    /// is kept apart from the client's instance for the same reason as a new decoder.
    pub fn decoded_in_isolation(self) -> bool {
        matches!(self, Self::Avif | Self::JpegXl)
    }

    /// The format a rewrite of this one is written in: its own, except AVIF and JPEG XL,
    /// which have no encoder here (PNG keeps their alpha).
    pub fn rewritten_as(self) -> Self {
        match self {
            Self::Avif | Self::JpegXl => Self::Png,
            other => other,
        }
    }
}

/// Images browsers render that the filter recognises but cannot decode: their name, for
/// the reason they get the policy's `on_undecodable` outcome (never a silent pass).
pub fn unreadable_image(prefix: &[u8]) -> Option<&'static str> {
    match prefix {
        // ISO-BMFF `ftyp` with a HEIF major brand (AVIF's are decoded: `ImageFormat::sniff`).
        [_, _, _, _, b'f', b't', b'y', b'p', brand @ ..] if brand.len() >= 4 => match &brand[..4] {
            b"heic" | b"heix" | b"hevc" | b"hevx" | b"heim" | b"heis" | b"mif1" | b"msf1" => {
                Some("HEIF")
            }
            _ => None,
        },
        _ => None,
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
        for (prefix, format) in [
            (&b"BM\x36\0\0\0\0\0"[..], ImageFormat::Bmp),
            (b"BA\x36\0", ImageFormat::Bmp),
            (b"\0\0\x01\0\x01\0", ImageFormat::Ico),
            (b"\0\0\x02\0\x01\0", ImageFormat::Ico),
            (b"II*\0\x08\0", ImageFormat::Tiff),
            (b"MM\0*\0\0", ImageFormat::Tiff),
            (b"\0\0\0\x1cftypavif", ImageFormat::Avif),
            (b"\0\0\0\x1cftypavis", ImageFormat::Avif),
        ] {
            assert_eq!(ImageFormat::sniff(prefix), Some(format), "{prefix:?}");
        }
    }

    #[test]
    fn recognises_images_it_cannot_decode() {
        assert_eq!(unreadable_image(b"\0\0\0\x1cftypavif\0\0"), None);
        assert_eq!(unreadable_image(b"\0\0\0\x18ftypheic"), Some("HEIF"));
        assert_eq!(unreadable_image(b"\0\0\0\x18ftypmif1"), Some("HEIF"));
        assert_eq!(unreadable_image(b"\xff\x0a\xfa"), None);
        assert_eq!(
            ImageFormat::sniff(b"\xff\x0a\xfa"),
            Some(ImageFormat::JpegXl)
        );
        assert_eq!(
            ImageFormat::sniff(b"\0\0\0\x0cJXL \r\n\x87\n"),
            Some(ImageFormat::JpegXl)
        );
        assert_eq!(unreadable_image(b"\0\0\0\x18ftypisom"), None);
        assert_eq!(unreadable_image(b"\0\0\0\x18ftyp"), None);
    }

    #[test]
    fn takes_any_iso_bmff_file_compatible_with_avif_for_one() {
        // Major brand `miaf` (or `mif1`, HEIF's), `avif` among the compatible brands.
        let miaf = b"\0\0\0\x1cftypmiaf\0\0\0\0mif1avifMA1B";
        assert_eq!(sniff_len(&miaf[..SNIFF_LEN]), 28);
        assert_eq!(ImageFormat::sniff(miaf), Some(ImageFormat::Avif));
        let mut mif1 = miaf.to_vec();
        mif1[8..12].copy_from_slice(b"mif1");
        mif1[20..24].copy_from_slice(b"avis");
        assert_eq!(ImageFormat::sniff(&mif1), Some(ImageFormat::Avif));
        // Not before the whole box is read.
        assert_eq!(ImageFormat::sniff(&miaf[..SNIFF_LEN]), None);
        // A box libavif would not read: brands cut mid-way, or past what Chromium reads.
        let mut ragged = miaf.to_vec();
        ragged[3] = 0x1e;
        ragged.extend_from_slice(b"\0\0");
        assert_eq!(ImageFormat::sniff(&ragged), None);
        let mut long = b"\0\0\0\x94ftypmiaf\0\0\0\0".to_vec();
        long.extend(std::iter::repeat_n(*b"mif1", 32).flatten());
        long[136..140].copy_from_slice(b"avif");
        assert_eq!(sniff_len(&long), MAX_SNIFF_LEN);
        assert_eq!(ImageFormat::sniff(&long), None);
        // Other ISO-BMFF files (MP4 video, HEIC) are not AVIF; no other file reads further.
        assert_eq!(
            ImageFormat::sniff(b"\0\0\0\x18ftypisom\0\0\0\0isomavc1"),
            None
        );
        assert_eq!(sniff_len(b"\0\0\0\x18ftypisom"), 0x18);
        assert_eq!(sniff_len(b"\xFF\xD8\xFF\xE0\x00\x10JFIF"), SNIFF_LEN);
        assert_eq!(sniff_len(b"\0\0\0\x01ftypavif"), SNIFF_LEN);
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
        assert_eq!(
            ImageFormat::list(),
            "JPEG, PNG, WebP, GIF, BMP, ICO, TIFF, AVIF or JPEG XL"
        );
        for format in ImageFormat::ALL {
            let Some(codec) = format.codec() else {
                assert_eq!(format, ImageFormat::JpegXl);
                continue;
            };
            assert_eq!(format.mime_type(), codec.to_mime_type(), "{format:?}");
            assert!(codec.extensions_str().contains(&format.extension()));
        }
    }
}
