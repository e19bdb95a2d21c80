//! Known images: PDQ allow and deny lists, and matching an image's PDQ against them.
//!
//! A list is a set of 256-bit PDQ hashes, each with a label (shown in the reason and the
//! decision log). An image matches an entry when the Hamming distance of their hashes is
//! at most the policy's `lists.max_distance` (31 of 256 by default, the ThreatExchange
//! threshold), and its hash is of at least `lists.min_quality` (PDQ's own confidence:
//! flat images hash to noise). With `lists.dihedral`, the image's rotations and mirrors
//! (PDQ's eight dihedral hashes) match too. A deny match blocks and an allow match
//! passes, both without inference; deny wins when both match.
//!
//! # Stored formats (one list per KV Store key)
//! - **Text**: one entry per line, `<64 hex digits> <label>`; the label is the rest of
//!   the line (may be empty); blank lines and lines starting with `#` are ignored.
//! - **Packed** (for large lists: no per-request text parsing): `PDQL`, version byte 1,
//!   entry count as u32 little-endian, the hashes (32 bytes each, in the hex's order),
//!   then the labels, one per entry, separated by `\n`. `cargo run --example pdq -- pack`
//!   writes it from the text form.
//!
//! A list with any malformed entry is refused whole ([`ListError`]); the glue logs it and
//! judges without it.

use crate::media::pdq::PdqHash;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// Which list an entry is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListKind {
    Deny,
    Allow,
}

impl ListKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ListKind::Deny => "deny",
            ListKind::Allow => "allow",
        }
    }
}

/// A parsed list: hashes packed as 4 words each for a fast scan; the labels kept as one
/// text, a line per entry, and only split when an entry matches (a list of 100k entries
/// is read by every instance that judges an image).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KnownList {
    hashes: Vec<[u64; 4]>,
    labels: String,
}

/// Why a stored list was refused.
#[derive(Debug, PartialEq)]
pub enum ListError {
    /// Text line `line` (from 1) is not `<64 hex digits> <label>`.
    Line { line: usize },
    /// A packed list whose length or labels do not match its header.
    Packed(&'static str),
    /// Not UTF-8 text.
    NotText,
}

impl fmt::Display for ListError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListError::Line { line } => {
                write!(f, "line {line} is not '<64 hex digits> <label>'")
            }
            ListError::Packed(why) => write!(f, "packed list: {why}"),
            ListError::NotText => write!(f, "neither a packed list nor UTF-8 text"),
        }
    }
}

impl std::error::Error for ListError {}

const PACKED_MAGIC: &[u8; 5] = b"PDQL\x01";

fn words(hash: &PdqHash) -> [u64; 4] {
    let mut out = [0u64; 4];
    for (word, chunk) in out.iter_mut().zip(hash.0.chunks_exact(8)) {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        *word = u64::from_be_bytes(bytes);
    }
    out
}

fn distance(a: &[u64; 4], b: &[u64; 4]) -> u32 {
    (a[0] ^ b[0]).count_ones()
        + (a[1] ^ b[1]).count_ones()
        + (a[2] ^ b[2]).count_ones()
        + (a[3] ^ b[3]).count_ones()
}

impl KnownList {
    /// A list in either stored format.
    pub fn parse(stored: &[u8]) -> Result<KnownList, ListError> {
        match stored.strip_prefix(PACKED_MAGIC) {
            Some(packed) => Self::parse_packed(packed),
            None => Self::parse_text(std::str::from_utf8(stored).map_err(|_| ListError::NotText)?),
        }
    }

    fn parse_text(text: &str) -> Result<KnownList, ListError> {
        let mut list = KnownList::default();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (hex, label) = line.split_at(line.find(char::is_whitespace).unwrap_or(line.len()));
            let hash = PdqHash::from_hex(hex).ok_or(ListError::Line { line: i + 1 })?;
            list.push(&hash, label.trim());
        }
        Ok(list)
    }

    fn parse_packed(packed: &[u8]) -> Result<KnownList, ListError> {
        let (count, rest) = packed
            .split_first_chunk::<4>()
            .ok_or(ListError::Packed("truncated header"))?;
        let count = u32::from_le_bytes(*count) as usize;
        let hash_bytes = count
            .checked_mul(32)
            .filter(|&n| n <= rest.len())
            .ok_or(ListError::Packed("fewer hashes than its count"))?;
        let (hashes, labels) = rest.split_at(hash_bytes);
        let labels =
            std::str::from_utf8(labels).map_err(|_| ListError::Packed("labels not UTF-8"))?;
        let lines = if count == 0 && labels.is_empty() {
            0
        } else {
            memchr::memchr_iter(b'\n', labels.as_bytes()).count() + 1
        };
        if lines != count {
            return Err(ListError::Packed("label count differs from its count"));
        }
        let labels = labels.to_string();
        let hashes = hashes
            .chunks_exact(32)
            .map(|chunk| {
                let mut hash = PdqHash([0; 32]);
                hash.0.copy_from_slice(chunk);
                words(&hash)
            })
            .collect();
        Ok(KnownList { hashes, labels })
    }

    pub fn push(&mut self, hash: &PdqHash, label: &str) {
        if !self.hashes.is_empty() {
            self.labels.push('\n');
        }
        self.hashes.push(words(hash));
        // A label is one line.
        self.labels.push_str(&label.replace(['\n', '\r'], " "));
    }

    /// Entry `entry`'s label.
    fn label(&self, entry: usize) -> String {
        self.labels
            .split('\n')
            .nth(entry)
            .unwrap_or_default()
            .to_string()
    }

    /// The packed stored form.
    pub fn pack(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(9 + self.hashes.len() * 40);
        out.extend_from_slice(PACKED_MAGIC);
        out.extend_from_slice(&(self.hashes.len() as u32).to_le_bytes());
        for hash in &self.hashes {
            for word in hash {
                out.extend_from_slice(&word.to_be_bytes());
            }
        }
        out.extend_from_slice(self.labels.as_bytes());
        out
    }

    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// The nearest entry to any of `probes` within `max_distance`: (entry, distance).
    fn nearest(&self, probes: &[[u64; 4]], max_distance: u32) -> Option<(usize, u32)> {
        let mut best: Option<(usize, u32)> = None;
        for (i, entry) in self.hashes.iter().enumerate() {
            for probe in probes {
                let d = distance(entry, probe);
                if d <= max_distance && best.is_none_or(|(_, b)| d < b) {
                    best = Some((i, d));
                }
            }
        }
        best
    }
}

/// An image's PDQ as the lists see it: the hash, its dihedral variants when configured,
/// and its quality. Kept with a cached verdict, so lists are checked again on a hit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    /// The image's hash first, then (with `lists.dihedral`) the seven other variants.
    pub hashes: Vec<PdqHash>,
    pub quality: u8,
}

/// A match: which list, the entry's label, how far.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ListMatch {
    pub list: ListKind,
    pub label: String,
    pub distance: u32,
}

impl fmt::Display for ListMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let label = if self.label.is_empty() {
            "(no label)"
        } else {
            &self.label
        };
        write!(
            f,
            "{} list: {label} (PDQ distance {})",
            self.list.as_str(),
            self.distance
        )
    }
}

/// The lists in force for a request, with the policy's matching settings.
#[derive(Clone, Debug, Default)]
pub struct KnownLists {
    /// Shared: an instance reads a list once, however many images it judges.
    pub deny: Option<Arc<KnownList>>,
    pub allow: Option<Arc<KnownList>>,
    pub max_distance: u32,
    pub min_quality: u8,
    pub dihedral: bool,
}

impl KnownLists {
    /// No lists: nothing matches, and no PDQ needs computing.
    pub fn none() -> KnownLists {
        KnownLists::default()
    }

    pub fn is_empty(&self) -> bool {
        self.deny.as_ref().is_none_or(|list| list.is_empty())
            && self.allow.as_ref().is_none_or(|list| list.is_empty())
    }

    /// The verdict the lists give an image judged on `views` (a still's one image, an
    /// animation's frames): a deny match on any view, else an allow match on every view.
    /// Returns the match and the view it was found on.
    pub fn decide(&self, views: &[Probe]) -> Option<(ListMatch, usize)> {
        if self.is_empty() || views.is_empty() {
            return None;
        }
        let found: Vec<Option<ListMatch>> = views.iter().map(|view| self.check(view)).collect();
        if let Some(i) = found
            .iter()
            .position(|m| m.as_ref().is_some_and(|m| m.list == ListKind::Deny))
        {
            return found[i].clone().map(|m| (m, i));
        }
        if found.iter().all(Option::is_some) {
            return found[0].clone().map(|m| (m, 0));
        }
        None
    }

    /// The deny match, else the allow match, for `probe`.
    pub fn check(&self, probe: &Probe) -> Option<ListMatch> {
        if probe.quality < self.min_quality {
            return None;
        }
        let probes: Vec<[u64; 4]> = probe.hashes.iter().map(words).collect();
        [(ListKind::Deny, &self.deny), (ListKind::Allow, &self.allow)]
            .into_iter()
            .find_map(|(kind, list)| {
                let list = list.as_ref()?;
                let (entry, distance) = list.nearest(&probes, self.max_distance)?;
                Some(ListMatch {
                    list: kind,
                    label: list.label(entry),
                    distance,
                })
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(seed: u8) -> PdqHash {
        let mut bytes = [0u8; 32];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = seed
                .wrapping_mul(31)
                .wrapping_add(i as u8)
                .wrapping_mul(167);
        }
        PdqHash(bytes)
    }

    /// `hash` with its first `bits` bits flipped.
    fn flipped(hash: &PdqHash, bits: usize) -> PdqHash {
        let mut out = *hash;
        for bit in 0..bits {
            out.0[bit / 8] ^= 0x80 >> (bit % 8);
        }
        out
    }

    fn lists(deny: &str, allow: &str) -> KnownLists {
        KnownLists {
            deny: Some(Arc::new(KnownList::parse(deny.as_bytes()).unwrap())),
            allow: Some(Arc::new(KnownList::parse(allow.as_bytes()).unwrap())),
            max_distance: 31,
            min_quality: 50,
            dihedral: false,
        }
    }

    fn probe(hash: PdqHash) -> Probe {
        Probe {
            hashes: vec![hash],
            quality: 100,
        }
    }

    #[test]
    fn text_lists_parse_with_labels_comments_and_blank_lines() {
        let text = format!(
            "# known\n\n{}  case 17: re-upload\n{}\n",
            hash(1).to_hex(),
            hash(2).to_hex().to_uppercase()
        );
        let list = KnownList::parse(text.as_bytes()).unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list.label(0), "case 17: re-upload");
        assert_eq!(list.label(1), "");
        assert_eq!(KnownList::parse(&list.pack()).unwrap(), list);
        assert_eq!(KnownList::parse(b"").unwrap().len(), 0);
        assert_eq!(
            KnownList::parse(&KnownList::default().pack())
                .unwrap()
                .len(),
            0
        );
    }

    #[test]
    fn malformed_lists_are_refused_with_the_line() {
        let good = hash(1).to_hex();
        for (text, line) in [
            (format!("{good} ok\nnot a hash\n"), 2),
            (format!("{} short", &good[..63]), 1),
            (format!("{good}0 long"), 1),
            (format!("{}g x", &good[..63]), 1),
        ] {
            assert_eq!(
                KnownList::parse(text.as_bytes()),
                Err(ListError::Line { line }),
                "{text}"
            );
        }
        assert_eq!(KnownList::parse(&[0xff, 0xfe]), Err(ListError::NotText));
        let mut packed = KnownList::parse(format!("{good} a").as_bytes())
            .unwrap()
            .pack();
        packed.truncate(20);
        assert!(matches!(
            KnownList::parse(&packed),
            Err(ListError::Packed(_))
        ));
        let mut count_lies = KnownList::default().pack();
        count_lies[5] = 9;
        assert!(matches!(
            KnownList::parse(&count_lies),
            Err(ListError::Packed(_))
        ));
    }

    #[test]
    fn matches_within_the_distance_deny_first() {
        let known = lists(
            &format!("{} bad thing\n", hash(1).to_hex()),
            &format!(
                "{} our logo\n{} also bad\n",
                hash(2).to_hex(),
                hash(1).to_hex()
            ),
        );
        let near = known.check(&probe(flipped(&hash(1), 31))).unwrap();
        assert_eq!(
            (near.list, near.label.as_str(), near.distance),
            (ListKind::Deny, "bad thing", 31)
        );
        assert_eq!(near.to_string(), "deny list: bad thing (PDQ distance 31)");
        assert_eq!(known.check(&probe(flipped(&hash(1), 32))), None);
        let allowed = known.check(&probe(flipped(&hash(2), 3))).unwrap();
        assert_eq!(
            (allowed.list, allowed.label.as_str(), allowed.distance),
            (ListKind::Allow, "our logo", 3)
        );
        // Low-quality hashes match nothing.
        let weak = Probe {
            hashes: vec![hash(1)],
            quality: 49,
        };
        assert_eq!(known.check(&weak), None);
        assert_eq!(KnownLists::none().check(&probe(hash(1))), None);
    }

    #[test]
    fn a_deny_match_on_any_frame_decides_an_allow_match_must_cover_every_frame() {
        let known = lists(
            &format!("{} bad\n", hash(1).to_hex()),
            &format!("{} fine\n{} fine too\n", hash(2).to_hex(), hash(3).to_hex()),
        );
        let frames = [probe(hash(2)), probe(hash(7)), probe(hash(1))];
        let (found, view) = known.decide(&frames).unwrap();
        assert_eq!((found.list, view), (ListKind::Deny, 2));
        assert_eq!(known.decide(&frames[..2]), None, "frame 2 is on no list");
        let (found, _) = known.decide(&[probe(hash(2)), probe(hash(3))]).unwrap();
        assert_eq!(found.list, ListKind::Allow);
        assert_eq!(KnownLists::none().decide(&frames), None);
    }

    #[test]
    fn the_nearest_entry_is_reported_and_any_probe_may_match() {
        let text = format!(
            "{} far\n{} near\n",
            flipped(&hash(5), 20).to_hex(),
            flipped(&hash(5), 2).to_hex()
        );
        let known = lists(&text, "");
        let found = known.check(&probe(hash(5))).unwrap();
        assert_eq!((found.label.as_str(), found.distance), ("near", 2));
        // A variant (a rotation's hash) matching is a match.
        let rotated = Probe {
            hashes: vec![hash(9), hash(5)],
            quality: 80,
        };
        assert_eq!(known.check(&rotated).unwrap().label, "near");
    }
}
