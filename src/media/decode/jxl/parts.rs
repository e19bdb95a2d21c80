//! A JPEG XL decoded in parts, each region of the image in an instance of its own, when
//! one instance's CPU cannot decode it whole (jxl-oxide's decode cannot stop and resume,
//! as the JPEG decoder can). jxl-oxide renders a region by decoding only the groups
//! (256×256 pixels, usually) the region touches, with the few pixels around it its
//! filters read, and a region's pixels are exactly the whole render's there (a test
//! holds this on every JPEG XL in the tree). So the coordinator plans regions
//! ([`Layout::parts`]), siblings render them ([`decode_region`]), and the coordinator
//! assembles their samples ([`Assembly`]) into the image the pipeline judges
//! (`JxlDecoder::assembled`).
//!
//! A region's edges sit [`EDGE_MARGIN`] pixels past a group's start: jxl-render pads a
//! region by the pixels its filters read (up to 9 without upsampling: EPF, the Gabor-like
//! filter, chroma upsampling), so a region ending there needs the next group and one
//! starting there does not need the previous one; each boundary costs one row (or
//! column) of groups decoded twice, not two.
//!
//! ```text
//! assembly: "EMX1" | width: u32 LE | height: u32 LE | channels: u8 | samples, row-major
//! region:   "EMQ1" | channels: u8 | the region's samples, row-major
//!       or  "EMQ1" | 0 | kind: u8 (1 corrupt, 2 unsupported, 3 too large) | reason UTF-8
//! ```

use super::{DecodeError, DecodeLimits, Opened};

const ASSEMBLY: &[u8; 4] = b"EMX1";
const REGION: &[u8; 4] = b"EMQ1";
/// How far past a group's first pixel a region boundary sits: more than jxl-render pads
/// a region by, so only one side of a boundary decodes both groups.
const EDGE_MARGIN: u32 = 16;

/// A rectangle of the displayed image (its orientation applied), in pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub left: u32,
    pub top: u32,
    pub width: u32,
    pub height: u32,
}

impl Region {
    /// Whether the region is non-empty and inside a `width` × `height` image.
    pub fn within(self, width: u32, height: u32) -> bool {
        self.width > 0
            && self.height > 0
            && self
                .left
                .checked_add(self.width)
                .is_some_and(|r| r <= width)
            && self
                .top
                .checked_add(self.height)
                .is_some_and(|b| b <= height)
    }

    pub fn to_bytes(self) -> [u8; 16] {
        let mut out = [0; 16];
        for (i, v) in [self.left, self.top, self.width, self.height]
            .iter()
            .enumerate()
        {
            out[4 * i..4 * i + 4].copy_from_slice(&v.to_le_bytes());
        }
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Region> {
        let field = |i: usize| {
            Some(u32::from_le_bytes(
                bytes.get(4 * i..4 * i + 4)?.try_into().ok()?,
            ))
        };
        Some(Region {
            left: field(0)?,
            top: field(1)?,
            width: field(2)?,
            height: field(3)?,
        })
    }
}

/// What a plan of a JPEG XL's parts needs: its displayed size and its groups' size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub width: u32,
    pub height: u32,
    /// The side of the first frame's groups (128 to 1024 pixels).
    pub group: u32,
}

/// The layout of a JPEG XL, from its header (checked against `limits` as a decode
/// checks it; no frame is decoded).
pub fn layout(bytes: &[u8], limits: DecodeLimits) -> Result<Layout, DecodeError> {
    let opened = Opened::new(bytes, limits)?;
    let group = opened
        .image
        .frame_header(0)
        .map_or(256, |frame| frame.group_dim());
    Ok(Layout {
        width: opened.width,
        height: opened.height,
        group: group.max(1),
    })
}

impl Layout {
    pub fn pixels(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height)
    }

    /// Regions that tile the image, as few as can be, the pixels of the groups each
    /// decodes (its own and those across its lower and right edges) at most
    /// `max_decoded`, ties going to the split whose largest part decodes least; `None`
    /// when more than `max_parts` would be needed. (No part of a split decodes less than
    /// two groups along each axis it is split on, but the last.)
    pub fn parts(&self, max_decoded: u64, max_parts: usize) -> Option<Vec<Region>> {
        let (columns, rows) = (
            self.width.div_ceil(self.group),
            self.height.div_ceil(self.group),
        );
        let mut best: Option<(usize, u64, u32, u32)> = None;
        for across in 1..=columns {
            for down in 1..=rows {
                let count = across as usize * down as usize;
                if count > max_parts {
                    break;
                }
                let decoded = decoded_extent(columns, across, self.group, self.width)
                    * decoded_extent(rows, down, self.group, self.height);
                let better = best.is_none_or(|(c, d, _, _)| (count, decoded) < (c, d));
                if decoded <= max_decoded && better {
                    best = Some((count, decoded, across, down));
                }
            }
        }
        let (_, _, across, down) = best?;
        let xs = boundaries(columns, across, self.group, self.width);
        let ys = boundaries(rows, down, self.group, self.height);
        let mut regions = Vec::with_capacity(xs.len() * ys.len());
        for y in ys.windows(2) {
            for x in xs.windows(2) {
                regions.push(Region {
                    left: x[0],
                    top: y[0],
                    width: x[1] - x[0],
                    height: y[1] - y[0],
                });
            }
        }
        Some(regions)
    }
}

/// How `groups` split into `parts` runs as even as can be, the longer ones last: the last
/// run decodes no group beyond its own.
fn runs(groups: u32, parts: u32) -> impl Iterator<Item = u32> {
    let (short, extra) = (groups / parts, groups % parts);
    (0..parts).map(move |i| short + u32::from(i >= parts - extra))
}

/// The most pixels along an axis of `size` (groups of `group` pixels) that one of
/// `parts` runs decodes: its groups, and the next one but for the last run.
fn decoded_extent(groups: u32, parts: u32, group: u32, size: u32) -> u64 {
    let mut start = 0;
    runs(groups, parts)
        .enumerate()
        .map(|(i, run)| {
            let end = start + run + u32::from(i + 1 < parts as usize);
            let extent = (u64::from(end) * u64::from(group)).min(u64::from(size))
                - u64::from(start) * u64::from(group);
            start += run;
            extent
        })
        .max()
        .unwrap_or(0)
}

/// The pixel boundaries of `parts` runs over `groups` groups of `group` pixels along an
/// axis of `size` pixels: 0, each inner boundary [`EDGE_MARGIN`] past its group's start
/// (or just inside the axis, for a last group narrower than that), and `size`.
fn boundaries(groups: u32, parts: u32, group: u32, size: u32) -> Vec<u32> {
    let mut at = vec![0];
    let mut start = 0;
    for run in runs(groups, parts).take(parts as usize - 1) {
        start += run;
        let edge = start
            .saturating_mul(group)
            .saturating_add(EDGE_MARGIN)
            .min(size - 1);
        // Strictly increasing: a run of at least one group is longer than the margin.
        at.push(edge.max(at[at.len() - 1] + 1));
    }
    at.push(size);
    at
}

/// Renders `region` of a JPEG XL as a whole decode renders it there: its samples
/// (interleaved 8-bit) in the [`REGION`] answer form.
pub fn decode_region(bytes: &[u8], limits: DecodeLimits, region: Region) -> Vec<u8> {
    let mut out = REGION.to_vec();
    match Opened::new(bytes, limits).and_then(|mut opened| opened.render(Some(region))) {
        Ok((pixels, channels)) => {
            out.push(channels as u8);
            out.extend_from_slice(&pixels);
        }
        Err(error) => {
            let (kind, why) = match error {
                DecodeError::Corrupt(why) => (1, why),
                DecodeError::Unsupported(why) => (2, why),
                DecodeError::TooLarge { width, height } => (3, format!("{width}x{height}")),
                DecodeError::TooManyFrames { read } => (2, format!("{read} frames")),
            };
            out.extend_from_slice(&[0, kind]);
            out.extend_from_slice(why.as_bytes());
        }
    }
    out
}

/// Why a region's answer gave no samples.
#[derive(Debug, PartialEq)]
pub enum RegionError {
    /// The sibling could not decode it (as a whole decode would have failed).
    Decode(DecodeError),
    /// The answer is not a region's (a bug or a damaged message).
    Malformed(&'static str),
}

/// An image being assembled from its regions' samples, into the state
/// `decode_resumable` reads (`JxlDecoder::assembled`).
pub struct Assembly {
    width: u32,
    height: u32,
    /// The channels of the regions placed so far (every region's must agree).
    channels: Option<u8>,
    state: Vec<u8>,
    placed: u64,
}

impl Assembly {
    pub fn new(layout: Layout) -> Assembly {
        Assembly {
            width: layout.width,
            height: layout.height,
            channels: None,
            state: Vec::new(),
            placed: 0,
        }
    }

    /// Places a sibling's answer for `region` (one of the plan's, each once).
    pub fn place(&mut self, region: Region, answer: &[u8]) -> Result<(), RegionError> {
        let body = answer
            .strip_prefix(REGION)
            .ok_or(RegionError::Malformed("not a region's answer"))?;
        let (&channels, samples) = body
            .split_first()
            .ok_or(RegionError::Malformed("truncated"))?;
        if channels == 0 {
            let (&kind, why) = samples
                .split_first()
                .ok_or(RegionError::Malformed("truncated"))?;
            let why = String::from_utf8_lossy(why).into_owned();
            return Err(RegionError::Decode(match kind {
                1 => DecodeError::Corrupt(why),
                3 => DecodeError::TooLarge {
                    width: self.width,
                    height: self.height,
                },
                _ => DecodeError::Unsupported(why),
            }));
        }
        if channels > 4 || self.channels.is_some_and(|c| c != channels) {
            return Err(RegionError::Malformed("channels"));
        }
        if !region.within(self.width, self.height) {
            return Err(RegionError::Malformed("region outside the image"));
        }
        let c = usize::from(channels);
        let row = region.width as usize * c;
        if samples.len() != row * region.height as usize {
            return Err(RegionError::Malformed("samples do not fill the region"));
        }
        if self.channels.is_none() {
            self.channels = Some(channels);
            let size = self.width as usize * self.height as usize * c;
            self.state.reserve_exact(13 + size);
            self.state.extend_from_slice(ASSEMBLY);
            self.state.extend_from_slice(&self.width.to_le_bytes());
            self.state.extend_from_slice(&self.height.to_le_bytes());
            self.state.push(channels);
            self.state.resize(13 + size, 0);
        }
        let stride = self.width as usize * c;
        let canvas = &mut self.state[13..];
        for (y, source) in samples.chunks_exact(row).enumerate() {
            let at = (region.top as usize + y) * stride + region.left as usize * c;
            canvas[at..at + row].copy_from_slice(source);
        }
        self.placed += u64::from(region.width) * u64::from(region.height);
        Ok(())
    }

    /// The state, once the regions placed cover the image.
    pub fn finish(self) -> Result<Vec<u8>, RegionError> {
        if self.placed != u64::from(self.width) * u64::from(self.height) {
            return Err(RegionError::Malformed("the regions do not cover the image"));
        }
        Ok(self.state)
    }
}

/// An assembled image, read back from its state.
pub(super) struct Assembled<'a> {
    pub width: u32,
    pub height: u32,
    pub channels: u32,
    pub pixels: &'a [u8],
}

impl<'a> Assembled<'a> {
    pub fn parse(state: &'a [u8]) -> Result<Assembled<'a>, DecodeError> {
        let malformed = || DecodeError::Corrupt("JPEG XL assembly is malformed".into());
        let rest = state.strip_prefix(ASSEMBLY).ok_or_else(malformed)?;
        let (head, pixels) = rest.split_first_chunk::<9>().ok_or_else(malformed)?;
        let width = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        let height = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        let channels = u32::from(head[8]);
        let expected = u64::from(width) * u64::from(height) * u64::from(channels);
        if pixels.len() as u64 != expected {
            return Err(malformed());
        }
        Ok(Assembled {
            width,
            height,
            channels,
            pixels,
        })
    }
}

/// Whether `state` is an assembly's (not a JPEG decoder's or a GIF reading's).
pub fn is_assembly(state: &[u8]) -> bool {
    state.starts_with(ASSEMBLY)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: DecodeLimits = DecodeLimits {
        max_pixels: 40_000_000,
        max_dimension: 16_384,
        max_canvas_bytes: 160_000_000,
        reduce_jpeg: true,
    };

    /// Every JPEG XL in the tree that decodes whole: its bytes and its whole render.
    fn decodable() -> Vec<(String, Vec<u8>, Vec<u8>, u32)> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut found = Vec::new();
        for dir in ["fuzz/corpus/jxl", "tests/fixtures"] {
            let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
                continue;
            };
            for path in entries.flatten().map(|e| e.path()) {
                if path.extension().is_none_or(|e| e != "jxl") {
                    continue;
                }
                let bytes = std::fs::read(&path).expect("readable");
                let whole = Opened::new(&bytes, LIMITS).and_then(|mut o| o.render(None));
                if let Ok((pixels, channels)) = whole {
                    found.push((path.display().to_string(), bytes, pixels, channels));
                }
            }
        }
        found.sort();
        found
    }

    /// The regions' answers assembled, as `JxlDecoder::assembled` reads them.
    fn assembled(bytes: &[u8], regions: &[Region]) -> Result<Vec<u8>, RegionError> {
        let mut assembly = Assembly::new(layout(bytes, LIMITS).unwrap());
        for &region in regions {
            assembly.place(region, &decode_region(bytes, LIMITS, region))?;
        }
        let state = assembly.finish()?;
        Ok(Assembled::parse(&state).unwrap().pixels.to_vec())
    }

    /// Regions split at arbitrary pixels (not at groups), `across` × `down`.
    fn even_split(width: u32, height: u32, across: u32, down: u32) -> Vec<Region> {
        let cut = |size: u32, parts: u32, i: u32| (size as u64 * i as u64 / parts as u64) as u32;
        let mut regions = Vec::new();
        for j in 0..down {
            for i in 0..across {
                let (left, top) = (cut(width, across, i), cut(height, down, j));
                regions.push(Region {
                    left,
                    top,
                    width: cut(width, across, i + 1) - left,
                    height: cut(height, down, j + 1) - top,
                });
            }
        }
        regions.retain(|r| r.width > 0 && r.height > 0);
        regions
    }

    /// jxl-oxide's regions are the whole render there, on every JPEG XL we have (lossy,
    /// lossless, alpha, grey, orientations, containers), split at groups as planned and
    /// at arbitrary pixels; so the assembled image is the whole decode, byte for byte.
    #[test]
    fn regions_assemble_into_the_whole_decode() {
        let all = decodable();
        assert!(all.len() >= 50, "only {} JPEG XL files decode", all.len());
        let mut planned = 0;
        for (name, bytes, whole, _) in &all {
            let layout = layout(bytes, LIMITS).unwrap();
            let mut splits = vec![even_split(layout.width, layout.height, 2, 3)];
            // A plan whose parts each decode less than the whole, where one can (not
            // below 3 × 1 groups).
            if let Some(regions) = layout.parts(layout.pixels() - 1, 64) {
                assert!(regions.len() > 1, "{name}");
                splits.push(regions);
                planned += 1;
            }
            for regions in splits {
                let pixels = assembled(bytes, &regions).unwrap();
                assert!(
                    &pixels == whole,
                    "{name}: {regions:?} differ from the whole"
                );
            }
        }
        assert!(planned >= 3, "only {planned} images span several groups");
    }

    #[test]
    fn plans_tile_the_image_within_their_bounds() {
        let sizes = [
            (800, 600),
            (512, 512),
            (1400, 160),
            (4032, 3024),
            (259, 7),
            (1, 1),
            (520, 1030),
        ];
        for (width, height) in sizes {
            for group in [128, 256, 1024] {
                let layout = Layout {
                    width,
                    height,
                    group,
                };
                for max_groups in [1, 2, 4, 6, 9, 12, 40, 1000] {
                    let max_decoded = max_groups * u64::from(group * group);
                    let Some(regions) = layout.parts(max_decoded, 32) else {
                        continue;
                    };
                    // Each pixel once.
                    let mut covered = vec![0u8; (width * height) as usize];
                    for r in &regions {
                        assert!(r.within(width, height), "{r:?}");
                        for y in r.top..r.top + r.height {
                            for x in r.left..r.left + r.width {
                                covered[(y * width + x) as usize] += 1;
                            }
                        }
                        // The pixels of the groups it decodes: those its pixels and the
                        // padding around them (up to 9) touch.
                        let span = |start: u32, len: u32, size: u32| {
                            let first = start.saturating_sub(9) / group * group;
                            let last = ((start + len + 9).min(size) - 1) / group;
                            u64::from(((last + 1) * group).min(size) - first)
                        };
                        let decoded = span(r.left, r.width, width) * span(r.top, r.height, height);
                        assert!(
                            decoded <= max_decoded,
                            "{width}x{height}/{group}: {r:?} decodes {decoded} > {max_decoded}"
                        );
                    }
                    assert!(
                        covered.iter().all(|&c| c == 1),
                        "{width}x{height}/{group}/{max_groups}"
                    );
                    if u64::from(width) * u64::from(height) <= max_decoded {
                        assert_eq!(regions.len(), 1);
                    }
                }
            }
        }
        // More parts than allowed: no plan.
        let large = Layout {
            width: 4032,
            height: 3024,
            group: 256,
        };
        let nine = 9 * 256 * 256;
        assert!(large.parts(nine, 32).is_none());
        assert_eq!(large.parts(nine, 64).map(|r| r.len()), Some(48));
        // The bench's 800x600: six parts of at most 2 x 2 groups decoded.
        let bench = Layout {
            width: 800,
            height: 600,
            group: 256,
        };
        assert_eq!(bench.parts(4 * 256 * 256, 16).map(|r| r.len()), Some(6));
    }

    #[test]
    fn bad_answers_are_refused_and_failures_kept() {
        let (_, bytes, _, channels) = decodable().into_iter().next().unwrap();
        let layout = layout(&bytes, LIMITS).unwrap();
        let all = Region {
            left: 0,
            top: 0,
            width: layout.width,
            height: layout.height,
        };
        let good = decode_region(&bytes, LIMITS, all);
        let place = |answer: &[u8], region: Region| Assembly::new(layout).place(region, answer);
        assert!(place(&good, all).is_ok());
        for cut in 0..good.len().min(64) {
            assert!(place(&good[..cut], all).is_err(), "cut at {cut}");
        }
        assert!(place(&good[..good.len() - 1], all).is_err());
        let mut other_channels = good.clone();
        other_channels[4] = (channels % 4 + 1) as u8;
        assert!(place(&other_channels, all).is_err());
        let outside = Region { left: 1, ..all };
        assert_eq!(
            place(&good, outside),
            Err(RegionError::Malformed("region outside the image"))
        );
        // Half the image placed: not a whole image.
        let mut half = Assembly::new(layout);
        let top = Region {
            height: layout.height / 2,
            ..all
        };
        if top.height > 0 {
            half.place(top, &decode_region(&bytes, LIMITS, top))
                .unwrap();
            assert!(half.finish().is_err());
        }
        // A sibling's decode failure comes back as the decode's error.
        let damaged = &bytes[..bytes.len() / 2];
        match place(&decode_region(damaged, LIMITS, all), all) {
            Err(RegionError::Decode(DecodeError::Corrupt(_))) => {}
            other => panic!("{other:?}"),
        }
        // An assembly's state is checked whole.
        let mut assembly = Assembly::new(layout);
        assembly.place(all, &good).unwrap();
        let state = assembly.finish().unwrap();
        assert!(Assembled::parse(&state).is_ok());
        for cut in 0..state.len().min(64) {
            assert!(Assembled::parse(&state[..cut]).is_err());
        }
        assert!(Assembled::parse(&state[..state.len() - 1]).is_err());
    }
}
