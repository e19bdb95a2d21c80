//! What moderating one image produced: the [`Outcome`] (with the rewritten image when
//! there is one), the [`Reason`], the scores and what each stage cost.

use super::known::{ListKind, ListMatch, Probe};
use crate::classifier::Scores;
use crate::media::decode::DecodeError;
use crate::media::pdq::PdqHash;
use crate::media::ImageFormat;
use crate::policy::{Fallback, Policy, Verdict};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// What happens to the image.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// The original bytes go on untouched.
    Pass,
    /// Not one byte of the image goes on.
    Block,
    /// These bytes, an obscured re-encoding in `format`, replace the image.
    Rewrite { bytes: Vec<u8>, format: ImageFormat },
}

impl Outcome {
    pub fn verdict(&self) -> Verdict {
        match self {
            Outcome::Pass => Verdict::Pass,
            Outcome::Block => Verdict::Block,
            Outcome::Rewrite { .. } => Verdict::Rewrite,
        }
    }
}

impl From<Fallback> for Outcome {
    fn from(fallback: Fallback) -> Self {
        match fallback {
            Fallback::Pass => Outcome::Pass,
            Fallback::Block => Outcome::Block,
        }
    }
}

/// What was decided for an image, why, and what it cost.
#[derive(Debug)]
pub struct Moderation {
    pub outcome: Outcome,
    pub reason: Reason,
    /// Present when the model ran.
    pub scores: Option<Scores>,
    pub timings: Timings,
    /// What was judged, when the image was decoded.
    pub judged: Option<Judged>,
}

/// What the model saw of an image: its size as shown and how many frames were judged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Judged {
    pub width: u32,
    pub height: u32,
    /// 1 for a still image; for an animation, the frames chosen for judging.
    pub frames: usize,
    /// The PDQ of the image as judged (an animation's deciding frame), when lists are
    /// configured: what a list entry for this image would hold.
    #[serde(default)]
    pub pdq: Option<PdqHash>,
    #[serde(default)]
    pub pdq_quality: Option<u8>,
    /// Every judged view's PDQ (with dihedral variants when configured), so that lists
    /// are checked again when the verdict is reused from the cache.
    #[serde(default)]
    pub probes: Vec<Probe>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Reason {
    /// Rule number `index` of the policy matched; `rule` is its description.
    Rule {
        index: usize,
        rule: String,
    },
    NoRuleMatched,
    Oversize(String),
    Undecodable(String),
    /// The image was classified for rewrite but could not be re-encoded; it is blocked.
    RewriteFailed(String),
    /// The model could not run. A failure of ours, not a property of the image: the
    /// policy's `on_error` outcome, never remembered.
    ModelFailed(String),
    /// A sibling instance given part of the inference failed or did not answer; as
    /// `ModelFailed`.
    SiblingFailed(String),
    /// An image embedded in an SVG (number `index`, from 1, in `format`) decided.
    Embedded {
        index: usize,
        format: String,
        reason: Box<Reason>,
    },
    /// The SVG as drawn (its vectors and its rasters as shown) decided.
    Drawn(Box<Reason>),
    /// Image part number `index` (from 1) of a `multipart/x-mixed-replace` stream, in
    /// `format`, decided.
    StreamPart {
        index: usize,
        format: String,
        reason: Box<Reason>,
    },
    /// An SVG that embeds no image and draws nothing: nothing the model can judge.
    NoEmbeddedImage,
    /// The image's PDQ matched an entry of a deny or allow list (no inference ran).
    Listed(ListMatch),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Rule { index, rule } => write!(f, "rule {index}: {rule}"),
            Reason::NoRuleMatched => write!(f, "no rule matched"),
            Reason::Oversize(detail) => write!(f, "oversize: {detail}"),
            Reason::Undecodable(detail) => write!(f, "undecodable: {detail}"),
            Reason::RewriteFailed(detail) => write!(f, "rewrite failed: {detail}"),
            Reason::ModelFailed(detail) => write!(f, "model failed: {detail}"),
            Reason::SiblingFailed(detail) => write!(f, "sibling failed: {detail}"),
            Reason::Embedded {
                index,
                format,
                reason,
            } => write!(f, "embedded image {index} ({format}): {reason}"),
            Reason::Drawn(reason) => write!(f, "the SVG as drawn: {reason}"),
            Reason::StreamPart {
                index,
                format,
                reason,
            } => write!(f, "stream part {index} ({format}): {reason}"),
            Reason::NoEmbeddedImage => write!(f, "SVG draws nothing and embeds no image"),
            Reason::Listed(found) => write!(f, "{found}"),
        }
    }
}

/// Time spent in each stage (zero for stages that did not run).
#[derive(Clone, Copy, Debug, Default)]
pub struct Timings {
    pub decode: Duration,
    /// Computing the PDQ hashes (and matching the lists).
    pub pdq: Duration,
    pub inference: Duration,
    pub rewrite: Duration,
}

/// The time of two pieces of work, stage by stage.
impl std::ops::Add for Timings {
    type Output = Timings;
    fn add(self, other: Timings) -> Timings {
        Timings {
            decode: self.decode + other.decode,
            pdq: self.pdq + other.pdq,
            inference: self.inference + other.inference,
            rewrite: self.rewrite + other.rewrite,
        }
    }
}

impl Timings {
    /// The `Server-Timing` value: `decode;dur=6.29, inference;dur=48.89[, rewrite;dur=…]`.
    pub fn server_timing(&self) -> String {
        let entry = |name: &str, d: Duration| format!("{name};dur={:.2}", d.as_secs_f64() * 1e3);
        let mut entries = vec![entry("decode", self.decode)];
        if !self.pdq.is_zero() {
            entries.push(entry("pdq", self.pdq));
        }
        entries.push(entry("inference", self.inference));
        if !self.rewrite.is_zero() {
            entries.push(entry("rewrite", self.rewrite));
        }
        entries.join(", ")
    }
}

impl Moderation {
    /// The policy's outcome for an image beyond its limits.
    pub fn oversize(policy: &Policy, detail: String) -> Self {
        Self::unclassified(policy.on_oversize, Reason::Oversize(detail))
    }

    /// The policy's outcome for bytes that cannot be read as the image they claim to be.
    pub fn undecodable(policy: &Policy, detail: String) -> Self {
        Self::unclassified(policy.on_undecodable, Reason::Undecodable(detail))
    }

    /// The policy's outcome for an image that could not be decoded: beyond the limits
    /// (`on_oversize`) or unreadable (`on_undecodable`).
    pub fn not_decoded(policy: &Policy, error: DecodeError) -> Self {
        match error {
            DecodeError::TooLarge { .. } | DecodeError::TooManyFrames { .. } => {
                Self::oversize(policy, error.to_string())
            }
            DecodeError::Corrupt(_) | DecodeError::Unsupported(_) => {
                Self::undecodable(policy, error.to_string())
            }
        }
    }

    /// The policy's outcome for an image the model could not judge.
    pub fn model_failed(policy: &Policy, detail: String) -> Self {
        Self::unclassified(policy.on_error, Reason::ModelFailed(detail))
    }

    /// The policy's outcome for an image whose inference a sibling instance failed.
    pub fn sibling_failed(policy: &Policy, detail: String) -> Self {
        Self::unclassified(policy.on_error, Reason::SiblingFailed(detail))
    }

    /// Decided by a deny or allow list, without inference.
    pub fn listed(found: ListMatch, timings: Timings, judged: Judged) -> Self {
        Moderation {
            outcome: match found.list {
                ListKind::Deny => Outcome::Block,
                ListKind::Allow => Outcome::Pass,
            },
            reason: Reason::Listed(found),
            scores: None,
            timings,
            judged: Some(judged),
        }
    }

    fn unclassified(fallback: Fallback, reason: Reason) -> Self {
        Moderation {
            outcome: fallback.into(),
            reason,
            scores: None,
            timings: Timings::default(),
            judged: None,
        }
    }

    pub fn verdict(&self) -> Verdict {
        self.outcome.verdict()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_timing_lists_the_stages_that_ran() {
        let mut timings = Timings {
            decode: Duration::from_micros(6_290),
            inference: Duration::from_micros(48_891),
            ..Timings::default()
        };
        assert_eq!(
            timings.server_timing(),
            "decode;dur=6.29, inference;dur=48.89"
        );
        timings.rewrite = Duration::from_millis(12);
        assert!(timings.server_timing().ends_with(", rewrite;dur=12.00"));
    }
}
