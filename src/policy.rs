//! The operator's policy: which scores lead to pass, block or rewrite, and what happens
//! to images that cannot be classified.
//!
//! A policy is JSON (stored in the Fastly Config Store `moderation`, key `policy`). Every
//! field is optional and falls back to [`Policy::default`], so an operator writes only what
//! differs. Rules are checked in order; the first whose classes together reach its
//! threshold decides. No matching rule means pass.

use crate::classifier::{Class, Scores};
use crate::decode::{DecodeLimits, COMPUTE_CANVAS_BUDGET};
use serde::Deserialize;

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    pub rules: Vec<Rule>,
    pub rewrite: RewriteStyle,
    pub block: BlockResponse,
    pub limits: Limits,
    /// Bytes sniffed as an image that fail to decode, and non-image bytes under an
    /// `image/*` type that is not in `unmoderated_types`.
    pub on_undecodable: Fallback,
    /// Images beyond `limits` (bytes or pixels).
    pub on_oversize: Fallback,
    /// `image/*` types we cannot classify and let through when their bytes are not a
    /// supported raster image (vector art and icons by default).
    pub unmoderated_types: Vec<String>,
}

/// When the named classes' probabilities add up to at least `at_least`, take `action`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub classes: Vec<Class>,
    pub at_least: f32,
    pub action: Action,
}

impl std::fmt::Display for Rule {
    /// `Porn+Hentai>=0.60 -> block`, as reported in `x-moderation-reason`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let classes: Vec<&str> = self.classes.iter().map(|c| c.name()).collect();
        let action = Verdict::from(self.action).as_str();
        write!(f, "{}>={:.2} -> {action}", classes.join("+"), self.at_least)
    }
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Pass,
    Block,
    Rewrite,
}

/// What to do with an image that could not be classified.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Fallback {
    Pass,
    Block,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RewriteStyle {
    pub method: RewriteMethod,
    /// Blur radius (sigma) or pixel-cell size, as a fraction of the image's shorter side.
    pub strength: f32,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RewriteMethod {
    Blur,
    Pixelate,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BlockResponse {
    pub status: u16,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest image body we buffer and classify.
    pub max_bytes: usize,
    /// Largest decoded canvas, width × height.
    pub max_pixels: u64,
    /// Largest width or height.
    pub max_dimension: u32,
    /// Decode large JPEGs at 1/2, 1/4 or 1/8 size (DCT scaling): several times faster
    /// and smaller, at the cost of scores that differ somewhat from nsfwjs's own
    /// full-size resize (see `decode::REDUCED_MIN_SIDE`).
    pub reduced_jpeg_decode: bool,
}

impl Default for Policy {
    /// A general-audience site: explicit content (Porn, Hentai) is blocked, suggestive
    /// content is blurred, and anything we cannot inspect fails closed.
    fn default() -> Self {
        Policy {
            rules: vec![
                Rule {
                    classes: vec![Class::Porn, Class::Hentai],
                    at_least: 0.6,
                    action: Action::Block,
                },
                Rule {
                    classes: vec![Class::Porn, Class::Hentai, Class::Sexy],
                    at_least: 0.6,
                    action: Action::Rewrite,
                },
            ],
            rewrite: RewriteStyle::default(),
            block: BlockResponse::default(),
            limits: Limits::default(),
            on_undecodable: Fallback::Block,
            on_oversize: Fallback::Block,
            unmoderated_types: ["image/svg+xml", "image/x-icon", "image/vnd.microsoft.icon"]
                .map(String::from)
                .to_vec(),
        }
    }
}

impl Default for RewriteStyle {
    fn default() -> Self {
        RewriteStyle {
            method: RewriteMethod::Blur,
            strength: 0.05,
        }
    }
}

impl Default for BlockResponse {
    fn default() -> Self {
        BlockResponse { status: 403 }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 20 << 20,
            max_pixels: 16_000_000,
            max_dimension: 16_384,
            reduced_jpeg_decode: true,
        }
    }
}

/// A verdict and the rule (index into [`Policy::rules`]) that produced it, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    pub rule: Option<usize>,
}

/// The outcome for one image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Block,
    Rewrite,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Block => "block",
            Verdict::Rewrite => "rewrite",
        }
    }
}

impl From<Action> for Verdict {
    fn from(action: Action) -> Self {
        match action {
            Action::Pass => Verdict::Pass,
            Action::Block => Verdict::Block,
            Action::Rewrite => Verdict::Rewrite,
        }
    }
}

impl From<Fallback> for Verdict {
    fn from(fallback: Fallback) -> Self {
        match fallback {
            Fallback::Pass => Verdict::Pass,
            Fallback::Block => Verdict::Block,
        }
    }
}

impl Policy {
    /// Parses and validates a stored policy.
    pub fn from_json(json: &str) -> Result<Policy, String> {
        let policy: Policy = serde_json::from_str(json).map_err(|e| e.to_string())?;
        policy.validate()?;
        Ok(policy)
    }

    fn validate(&self) -> Result<(), String> {
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.classes.is_empty() {
                return Err(format!("rule {i} names no classes"));
            }
            if !(0.0..=1.0).contains(&rule.at_least) {
                return Err(format!("rule {i}: at_least must be within 0..=1"));
            }
        }
        if !(self.rewrite.strength > 0.0 && self.rewrite.strength <= 1.0) {
            return Err("rewrite.strength must be within (0, 1]".into());
        }
        if !(200..=599).contains(&self.block.status) {
            return Err("block.status must be an HTTP status within 200..=599".into());
        }
        if self.limits.max_bytes == 0
            || self.limits.max_pixels == 0
            || self.limits.max_dimension == 0
        {
            return Err("limits must be positive".into());
        }
        Ok(())
    }

    /// The first rule the scores satisfy decides.
    pub fn decide(&self, scores: &Scores) -> Decision {
        for (index, rule) in self.rules.iter().enumerate() {
            let combined: f32 = rule.classes.iter().map(|c| scores.get(*c)).sum();
            if combined >= rule.at_least {
                let verdict = Verdict::from(rule.action);
                return Decision {
                    verdict,
                    rule: Some(index),
                };
            }
        }
        Decision {
            verdict: Verdict::Pass,
            rule: None,
        }
    }

    pub fn decode_limits(&self) -> DecodeLimits {
        DecodeLimits {
            max_pixels: self.limits.max_pixels,
            max_dimension: self.limits.max_dimension,
            reduce_jpeg: self.limits.reduced_jpeg_decode,
            max_canvas_bytes: COMPUTE_CANVAS_BUDGET,
        }
    }

    /// Whether a response of this `Content-Type` whose bytes are not a raster image
    /// should still be treated as an image we failed to read.
    pub fn claims_moderated_image(&self, content_type: Option<&str>) -> bool {
        let Some(content_type) = content_type else {
            return false;
        };
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        essence.starts_with("image/")
            && !self
                .unmoderated_types
                .iter()
                .any(|t| t.eq_ignore_ascii_case(&essence))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scores(drawing: f32, hentai: f32, neutral: f32, porn: f32, sexy: f32) -> Scores {
        Scores::new([drawing, hentai, neutral, porn, sexy])
    }

    #[test]
    fn default_policy_blocks_explicit_and_blurs_suggestive() {
        let policy = Policy::default();
        assert_eq!(
            policy.decide(&scores(0.0, 0.1, 0.3, 0.6, 0.0)).verdict,
            Verdict::Block
        );
        assert_eq!(
            policy.decide(&scores(0.0, 0.3, 0.1, 0.3, 0.3)).verdict,
            Verdict::Block
        );
        assert_eq!(
            policy.decide(&scores(0.0, 0.0, 0.3, 0.2, 0.5)),
            Decision {
                verdict: Verdict::Rewrite,
                rule: Some(1)
            }
        );
        assert_eq!(
            policy.decide(&scores(0.4, 0.0, 0.5, 0.05, 0.05)),
            Decision {
                verdict: Verdict::Pass,
                rule: None
            }
        );
    }

    #[test]
    fn rules_describe_themselves() {
        assert_eq!(
            Policy::default().rules[0].to_string(),
            "Porn+Hentai>=0.60 -> block"
        );
    }

    #[test]
    fn first_matching_rule_wins() {
        let policy = Policy::from_json(
            r#"{"rules": [
                {"classes": ["Drawing"], "at_least": 0.9, "action": "pass"},
                {"classes": ["Drawing"], "at_least": 0.5, "action": "block"}
            ]}"#,
        )
        .unwrap();
        assert_eq!(
            policy.decide(&scores(0.95, 0.0, 0.05, 0.0, 0.0)),
            Decision {
                verdict: Verdict::Pass,
                rule: Some(0)
            }
        );
        assert_eq!(
            policy.decide(&scores(0.6, 0.0, 0.4, 0.0, 0.0)),
            Decision {
                verdict: Verdict::Block,
                rule: Some(1)
            }
        );
    }

    #[test]
    fn partial_json_keeps_the_other_defaults() {
        let policy =
            Policy::from_json(r#"{"block": {"status": 451}, "limits": {"max_bytes": 1000}}"#)
                .unwrap();
        assert_eq!(policy.block.status, 451);
        assert_eq!(policy.limits.max_bytes, 1000);
        assert_eq!(policy.limits.max_pixels, Limits::default().max_pixels);
        assert_eq!(policy.rules, Policy::default().rules);
    }

    #[test]
    fn invalid_policies_are_rejected_with_a_reason() {
        for (json, why) in [
            ("{", "EOF"),
            (
                r#"{"rules": [{"classes": ["Nudity"], "at_least": 0.5, "action": "block"}]}"#,
                "unknown variant",
            ),
            (
                r#"{"rules": [{"classes": ["Porn"], "at_least": 1.5, "action": "block"}]}"#,
                "at_least",
            ),
            (
                r#"{"rules": [{"classes": [], "at_least": 0.5, "action": "block"}]}"#,
                "no classes",
            ),
            (r#"{"block": {"status": 99}}"#, "block.status"),
            (r#"{"rewrite": {"strength": 0}}"#, "strength"),
            (r#"{"limits": {"max_bytes": 0}}"#, "positive"),
            (r#"{"on_oversize": "rewrite"}"#, "unknown variant"),
            (r#"{"treshold": 0.5}"#, "unknown field"),
        ] {
            let err = Policy::from_json(json).unwrap_err();
            assert!(err.contains(why), "{json}: {err}");
        }
    }

    #[test]
    fn content_types_that_claim_an_image() {
        let policy = Policy::default();
        assert!(policy.claims_moderated_image(Some("image/jpeg")));
        assert!(policy.claims_moderated_image(Some("Image/AVIF; q=1")));
        assert!(!policy.claims_moderated_image(Some("image/svg+xml; charset=utf-8")));
        assert!(!policy.claims_moderated_image(Some("text/html")));
        assert!(!policy.claims_moderated_image(None));
    }
}
