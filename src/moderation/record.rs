//! The verdict cache's contract, free of the cache itself: the key a verdict is stored
//! under, and a [`Moderation`] as stored (metadata plus, for a rewrite, the obscured
//! image as the body).
//!
//! The key digests the image bytes, the policy's fingerprint, the model's identity and
//! [`REVISION`]: a verdict is reused only for the very same bytes judged by the same
//! policy, model and pipeline. BLAKE3 makes a collision (one image taking another's
//! verdict) computationally out of reach.

use super::outcome::{Judged, Moderation, Outcome, Reason, Timings};
use crate::classifier::{ModelIdentity, Scores};
use crate::media::ImageFormat;
use crate::policy::{Fingerprint, Verdict};
use serde::{Deserialize, Serialize};

/// The pipeline's revision: raise it when decoding, preprocessing or rewriting change
/// what a verdict would be, so verdicts cached by older code are not reused.
pub const REVISION: u32 = 5;

/// Where one image's verdict under one policy and model is stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheKey(String);

/// A digest of an image's bytes: the cache key's part, and what the decision log names an
/// image by (hashed once per image).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContentHash(pub [u8; 32]);

impl ContentHash {
    pub fn of(bytes: &[u8]) -> ContentHash {
        ContentHash(*blake3::hash(bytes).as_bytes())
    }
}

/// `blake3:` and 64 hex digits.
impl std::fmt::Display for ContentHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("blake3:")?;
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl CacheKey {
    pub fn new(image: &[u8], policy: Fingerprint, model: ModelIdentity) -> Self {
        Self::for_content(&ContentHash::of(image), policy, model)
    }

    pub fn for_content(content: &ContentHash, policy: Fingerprint, model: ModelIdentity) -> Self {
        let mut hasher = blake3::Hasher::new();
        hasher.update(&REVISION.to_le_bytes());
        hasher.update(&policy.0);
        hasher.update(&model.0);
        hasher.update(&content.0);
        CacheKey(format!(
            "moderation/v{REVISION}/{}",
            hasher.finalize().to_hex()
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What the metadata holds; the rewritten bytes travel as the body.
#[derive(Serialize, Deserialize)]
struct Stored {
    verdict: Verdict,
    /// The rewrite's format, with verdict `rewrite`.
    format: Option<ImageFormat>,
    reason: Reason,
    scores: Option<Scores>,
    #[serde(default)]
    judged: Option<Judged>,
}

/// A moderation as stored: `metadata`, and `body` (the rewritten image, or empty).
pub struct Record<'a> {
    pub metadata: Vec<u8>,
    pub body: &'a [u8],
}

/// Why a stored record could not be read back (it is then treated as a miss).
#[derive(Debug)]
pub enum RecordError {
    Metadata(serde_json::Error),
    /// A rewrite without its image, or an image with another verdict.
    Inconsistent,
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecordError::Metadata(e) => write!(f, "unreadable cache metadata: {e}"),
            RecordError::Inconsistent => write!(f, "cache record body does not match its verdict"),
        }
    }
}

impl std::error::Error for RecordError {}

/// Whether this moderation may be reused for the same bytes: everything that follows
/// from the image and the policy, never a failure of ours, nor a list's decision (lists
/// change without the key changing: they are checked again on every hit).
pub fn cacheable(moderation: &Moderation) -> bool {
    !transient(&moderation.reason)
}

/// Whether a reason will not hold for the same bytes next time, seen through the parts of
/// an SVG that carry it.
fn transient(reason: &Reason) -> bool {
    match reason {
        Reason::ModelFailed(_) | Reason::SiblingFailed(_) | Reason::Listed(_) => true,
        Reason::Embedded { reason, .. }
        | Reason::Drawn(reason)
        | Reason::StreamPart { reason, .. } => transient(reason),
        _ => false,
    }
}

/// The record to store for `moderation`.
pub fn encode(moderation: &Moderation) -> Record<'_> {
    let (format, body) = match &moderation.outcome {
        Outcome::Rewrite { bytes, format } => (Some(*format), bytes.as_slice()),
        Outcome::Pass | Outcome::Block => (None, &[][..]),
    };
    let stored = Stored {
        verdict: moderation.verdict(),
        format,
        reason: moderation.reason.clone(),
        scores: moderation.scores,
        judged: moderation.judged.clone(),
    };
    Record {
        // Serialising plain data into JSON cannot fail.
        metadata: serde_json::to_vec(&stored).unwrap_or_default(),
        body,
    }
}

/// The moderation a record holds. Its timings are zero: nothing ran to produce it.
pub fn decode(metadata: &[u8], body: Vec<u8>) -> Result<Moderation, RecordError> {
    let stored: Stored = serde_json::from_slice(metadata).map_err(RecordError::Metadata)?;
    let outcome = match (stored.verdict, stored.format) {
        (Verdict::Pass, None) if body.is_empty() => Outcome::Pass,
        (Verdict::Block, None) if body.is_empty() => Outcome::Block,
        (Verdict::Rewrite, Some(format)) if ImageFormat::sniff(&body) == Some(format) => {
            Outcome::Rewrite {
                bytes: body,
                format,
            }
        }
        _ => return Err(RecordError::Inconsistent),
    };
    Ok(Moderation {
        outcome,
        reason: stored.reason,
        scores: stored.scores,
        timings: Timings::default(),
        judged: stored.judged,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;

    fn moderation(outcome: Outcome, reason: Reason) -> Moderation {
        Moderation {
            outcome,
            reason,
            scores: Some(Scores::new([0.7, 0.0, 0.3, 0.0, 0.0])),
            timings: Timings::default(),
            judged: None,
        }
    }

    #[test]
    fn a_cached_verdict_is_checked_against_the_lists_as_they_are_now() {
        use crate::media::pdq::PdqHash;
        use crate::moderation::known::{KnownList, KnownLists, ListKind, Probe};
        use crate::moderation::{with_lists, Judged};
        use std::sync::Arc;
        let pdq = PdqHash([0x3c; 32]);
        let mut judged = moderation(Outcome::Pass, Reason::NoRuleMatched);
        judged.judged = Some(Judged {
            width: 10,
            height: 10,
            frames: 1,
            pdq: Some(pdq),
            pdq_quality: Some(90),
            probes: vec![Probe {
                hashes: vec![pdq],
                quality: 90,
            }],
        });
        let record = encode(&judged);
        let cached = || decode(&record.metadata, record.body.to_vec()).unwrap();
        let list = |text: String| Some(Arc::new(KnownList::parse(text.as_bytes()).unwrap()));
        let mut lists = KnownLists {
            max_distance: 31,
            min_quality: 50,
            ..KnownLists::none()
        };
        // No list yet: the cached verdict stands.
        assert_eq!(with_lists(cached(), &lists).outcome, Outcome::Pass);
        // The image is added to the deny list: the same record now blocks.
        lists.deny = list(format!("{} added later", pdq.to_hex()));
        let denied = with_lists(cached(), &lists);
        assert_eq!(denied.outcome, Outcome::Block);
        assert!(
            matches!(&denied.reason, Reason::Listed(m) if m.list == ListKind::Deny && m.label == "added later")
        );
        assert!(!cacheable(&denied), "a list's decision is never remembered");
        // Removed again: the verdict is the classifier's once more.
        lists.deny = list(String::new());
        assert_eq!(with_lists(cached(), &lists).reason, Reason::NoRuleMatched);
    }

    #[test]
    fn every_outcome_round_trips() {
        let rule = Reason::Rule {
            index: 1,
            rule: "Drawing>=0.50 -> rewrite".into(),
        };
        let png = b"\x89PNG\r\n\x1a\n rest of an image".to_vec();
        for original in [
            moderation(Outcome::Pass, Reason::NoRuleMatched),
            moderation(Outcome::Block, rule.clone()),
            moderation(
                Outcome::Rewrite {
                    bytes: png.clone(),
                    format: ImageFormat::Png,
                },
                rule.clone(),
            ),
            Moderation {
                scores: None,
                ..moderation(Outcome::Block, Reason::Undecodable("truncated".into()))
            },
        ] {
            let record = encode(&original);
            let back = decode(&record.metadata, record.body.to_vec()).unwrap();
            assert_eq!(back.outcome, original.outcome);
            assert_eq!(back.reason, original.reason);
            assert_eq!(back.scores, original.scores);
        }
    }

    #[test]
    fn damaged_records_are_refused() {
        let rewrite = moderation(
            Outcome::Rewrite {
                bytes: b"GIF89a....".to_vec(),
                format: ImageFormat::Gif,
            },
            Reason::NoRuleMatched,
        );
        let record = encode(&rewrite);
        assert!(matches!(
            decode(&record.metadata, vec![]),
            Err(RecordError::Inconsistent)
        ));
        assert!(matches!(
            decode(&record.metadata, b"\xFF\xD8\xFF jpeg".to_vec()),
            Err(RecordError::Inconsistent)
        ));
        let pass = moderation(Outcome::Pass, Reason::NoRuleMatched);
        let pass = encode(&pass);
        assert!(decode(&pass.metadata, b"extra".to_vec()).is_err());
        assert!(matches!(
            decode(b"{not json", vec![]),
            Err(RecordError::Metadata(_))
        ));
    }

    #[test]
    fn model_failures_are_never_remembered() {
        let failed = Moderation::model_failed(&Policy::default(), "no plan".into());
        assert!(!cacheable(&failed));
        assert!(cacheable(&moderation(Outcome::Pass, Reason::NoRuleMatched)));
        // A failure inside a part of an SVG is a failure of the SVG's moderation.
        let failed = Reason::Drawn(Box::new(Reason::SiblingFailed("timeout".into())));
        assert!(!cacheable(&moderation(Outcome::Block, failed)));
    }

    #[test]
    fn the_key_changes_with_bytes_policy_and_model() {
        let policy = Policy::default().fingerprint();
        let other_policy = Policy::from_json(r#"{"rules": []}"#).unwrap().fingerprint();
        let model = ModelIdentity([1; 32]);
        let key = CacheKey::new(b"image", policy, model);
        assert_eq!(key, CacheKey::new(b"image", policy, model));
        assert!(key
            .as_str()
            .starts_with(&format!("moderation/v{REVISION}/")));
        for other in [
            CacheKey::new(b"imagf", policy, model),
            CacheKey::new(b"image", other_policy, model),
            CacheKey::new(b"image", policy, ModelIdentity([2; 32])),
        ] {
            assert_ne!(key, other);
        }
    }
}
