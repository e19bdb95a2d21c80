//! One image body in, one verdict out: decode → preprocess → classify → decide → rewrite.
//!
//! This is the whole moderation of an image, independent of HTTP. Every failure has a
//! defined outcome taken from the policy, so the caller never has to interpret errors.

use crate::classifier::{preprocess, Classifier, Scores};
use crate::decode::{decode_reduced, DecodeError};
use crate::policy::{Policy, Verdict};
use crate::rewrite::rewrite;
use crate::sniff::ImageFormat;
use std::fmt;
use std::time::{Duration, Instant};

/// What was decided for an image, why, and what it cost.
#[derive(Debug)]
pub struct Moderation {
    pub verdict: Verdict,
    pub reason: Reason,
    pub scores: Option<Scores>,
    /// The obscured image, present exactly when the verdict is `Rewrite`.
    pub rewritten: Option<Vec<u8>>,
    pub timings: Timings,
}

#[derive(Clone, Debug, PartialEq)]
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
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Rule { index, rule } => write!(f, "rule {index}: {rule}"),
            Reason::NoRuleMatched => write!(f, "no rule matched"),
            Reason::Oversize(detail) => write!(f, "oversize: {detail}"),
            Reason::Undecodable(detail) => write!(f, "undecodable: {detail}"),
            Reason::RewriteFailed(detail) => write!(f, "rewrite failed: {detail}"),
        }
    }
}

/// Time spent in each stage (zero for stages that did not run).
#[derive(Clone, Copy, Debug, Default)]
pub struct Timings {
    pub decode: Duration,
    pub inference: Duration,
    pub rewrite: Duration,
}

impl Moderation {
    /// The policy's outcome for an image beyond its limits.
    pub fn oversize(policy: &Policy, detail: String) -> Self {
        Self::unclassified(policy.on_oversize.into(), Reason::Oversize(detail))
    }

    /// The policy's outcome for bytes that cannot be read as the image they claim to be.
    pub fn undecodable(policy: &Policy, detail: String) -> Self {
        Self::unclassified(policy.on_undecodable.into(), Reason::Undecodable(detail))
    }

    fn unclassified(verdict: Verdict, reason: Reason) -> Self {
        Moderation {
            verdict,
            reason,
            scores: None,
            rewritten: None,
            timings: Timings::default(),
        }
    }
}

/// Largest output canvas (bytes) that is rewritten; larger images to rewrite are blocked.
const REWRITE_CANVAS_BUDGET: usize = 8_000_000;

pub fn moderate(
    bytes: &[u8],
    format: ImageFormat,
    policy: &Policy,
    classifier: &Classifier,
) -> Moderation {
    if bytes.len() > policy.limits.max_bytes {
        return Moderation::oversize(policy, format!("{} bytes", bytes.len()));
    }
    let started = Instant::now();
    let decoded = match decode_reduced(bytes, format, policy.decode_limits()) {
        Ok(decoded) => decoded,
        Err(too_large @ DecodeError::TooLarge { .. }) => {
            return Moderation::oversize(policy, too_large.to_string())
        }
        Err(DecodeError::Corrupt(why)) => return Moderation::undecodable(policy, why),
    };
    let input = preprocess(&decoded.image);
    let preprocessed = Instant::now();
    let scores = match classifier.classify(input) {
        Ok(scores) => scores,
        Err(e) => return Moderation::undecodable(policy, format!("classifier: {e}")),
    };
    let classified = Instant::now();
    let decision = policy.decide(&scores);
    let mut moderation = Moderation {
        verdict: decision.verdict,
        reason: decision
            .rule
            .map_or(Reason::NoRuleMatched, |index| Reason::Rule {
                index,
                rule: policy.rules[index].to_string(),
            }),
        scores: Some(scores),
        rewritten: None,
        timings: Timings {
            decode: preprocessed - started,
            inference: classified - preprocessed,
            rewrite: Duration::ZERO,
        },
    };
    let channels = if decoded.image.color().has_alpha() {
        4
    } else {
        3
    };
    let output_canvas = decoded.width as usize * decoded.height as usize * channels;
    if decision.verdict == Verdict::Rewrite && output_canvas > REWRITE_CANVAS_BUDGET {
        // Rewriting holds several full-size copies; beyond this it would not fit in a
        // Compute instance's memory and abort it. The image is withheld instead.
        moderation.verdict = Verdict::Block;
        moderation.reason =
            Reason::RewriteFailed("image too large to rewrite within memory".into());
    }
    if moderation.verdict == Verdict::Rewrite {
        match rewrite(
            &decoded.image,
            (decoded.width, decoded.height),
            format,
            policy.rewrite,
        ) {
            Ok(bytes) => moderation.rewritten = Some(bytes),
            Err(e) => {
                moderation.verdict = Verdict::Block;
                moderation.reason = Reason::RewriteFailed(format!("{e:#}"));
            }
        }
        moderation.timings.rewrite = classified.elapsed();
    }
    moderation
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{DynamicImage, ImageFormat as Codec};
    use std::io::Cursor;

    fn jpeg(width: u32, height: u32) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        DynamicImage::new_rgb8(width, height)
            .write_to(&mut out, Codec::Jpeg)
            .unwrap();
        out.into_inner()
    }

    #[test]
    fn rewrite_beyond_the_memory_budget_blocks_instead() {
        let classifier = Classifier::load().unwrap();
        let rewrite_all = Policy::from_json(
            r#"{"rules": [{"classes": ["Drawing", "Hentai", "Neutral", "Porn", "Sexy"],
                "at_least": 0.0, "action": "rewrite"}]}"#,
        )
        .unwrap();
        let small = moderate(
            &jpeg(300, 200),
            ImageFormat::Jpeg,
            &rewrite_all,
            &classifier,
        );
        assert_eq!(small.verdict, Verdict::Rewrite);
        assert!(small.rewritten.is_some());
        let large = moderate(
            &jpeg(2000, 1500),
            ImageFormat::Jpeg,
            &rewrite_all,
            &classifier,
        );
        assert_eq!(large.verdict, Verdict::Block);
        assert!(matches!(large.reason, Reason::RewriteFailed(_)));
        assert!(large.scores.is_some());
    }
}
