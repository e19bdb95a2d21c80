//! The operator's policy: which scores lead to pass, block or rewrite, and what happens to
//! images that cannot be classified. Schema, defaults, validation and [`Policy::decide`].
//!
//! A policy is JSON (stored in the Fastly Config Store `moderation`, key `policy`). Every
//! field is optional and falls back to [`Policy::default`], so an operator writes only what
//! differs. Rules are checked in order; the first whose classes together reach its
//! threshold decides. No matching rule means pass. The format is a contract with deployed
//! configurations: fields are only ever added, with defaults that keep old policies'
//! meaning.

mod routes;
mod rules;

pub use crate::media::obscure::{RewriteMethod, RewriteStyle};
pub use routes::{Direction, RouteError, RouteRequest, RouteTable, Selected};
pub use rules::{Action, Decision, Fallback, Rule, Verdict};

use crate::classifier::{Class, Scores};
use crate::media::content_type;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
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
    /// Failures of ours rather than of the image: the model unavailable, a sibling
    /// instance failed or timed out.
    pub on_error: Fallback,
    /// The verdict cache.
    pub cache: CacheSettings,
    /// How work is spread over sibling instances.
    pub siblings: SiblingSettings,
    /// Which request bodies are judged before they reach the origin, and how.
    pub uploads: UploadSettings,
    /// How animations (GIF, animated WebP, APNG) are judged.
    pub animations: AnimationSettings,
    /// `enforce` applies verdicts; `report` judges and logs everything but changes
    /// nothing (the origin's bytes and status, with the would-be verdict in headers).
    pub mode: Mode,
    /// Where each judged image's decision is logged.
    pub log: DecisionLogSettings,
    /// Known images: PDQ deny and allow lists (`moderation::known`).
    pub lists: ListSettings,
    /// How long the origin may take.
    pub origin: OriginSettings,
}

/// Bounds on the origin.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct OriginSettings {
    /// No response headers within this many milliseconds: 504.
    pub first_byte_timeout_ms: u64,
    /// A body (of the origin's response, or of an upload) read for judging that sends
    /// nothing for this many milliseconds is an error: 502 for a response, 400 for an
    /// upload.
    pub between_bytes_timeout_ms: u64,
}

impl Default for OriginSettings {
    /// Fastly's own defaults for backends: 15 s to the first byte, 10 s between bytes.
    fn default() -> Self {
        OriginSettings {
            first_byte_timeout_ms: 15_000,
            between_bytes_timeout_ms: 10_000,
        }
    }
}

impl OriginSettings {
    pub fn first_byte_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.first_byte_timeout_ms)
    }

    pub fn between_bytes_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.between_bytes_timeout_ms)
    }
}

/// Where the PDQ lists are and how they match. No `store` (the default): no lists, and
/// no PDQ is computed.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ListSettings {
    /// The Fastly KV Store holding the lists.
    pub store: Option<String>,
    /// The key of the deny list (match: block, without inference).
    pub deny_key: String,
    /// The key of the allow list (match: pass, whatever the rules say).
    pub allow_key: String,
    /// The largest Hamming distance (of 256 bits) that matches.
    pub max_distance: u32,
    /// Hashes of lower PDQ quality (0–100) match nothing: flat images hash to noise.
    pub min_quality: u8,
    /// Also match the image's rotations and mirrors (PDQ's dihedral hashes).
    pub dihedral: bool,
}

impl Default for ListSettings {
    /// ThreatExchange's thresholds: distance 31, quality 50.
    fn default() -> Self {
        ListSettings {
            store: None,
            deny_key: "deny".into(),
            allow_key: "allow".into(),
            max_distance: 31,
            min_quality: 50,
            dihedral: false,
        }
    }
}

/// Whether verdicts are applied or only reported: the way to roll a policy out.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Enforce,
    /// Judge and log, change nothing: `x-moderation-verdict: pass` and
    /// `x-moderation-would: block|rewrite`.
    Report,
}

/// The decision log: one JSON line per judged image to a Fastly log endpoint.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DecisionLogSettings {
    /// The log endpoint's name; none (the default) logs nothing.
    pub endpoint: Option<String>,
    /// Whether the logged path keeps its query string (dropped by default: queries carry
    /// tokens and personal data).
    pub keep_query: bool,
}

/// Animations are judged on several frames (`media::frames` chooses which); the verdict
/// is the worst frame's.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AnimationSettings {
    /// Most frames judged per animation (each is one inference, on a sibling instance
    /// when this one's CPU runs short).
    pub max_frames: usize,
}

impl Default for AnimationSettings {
    fn default() -> Self {
        AnimationSettings { max_frames: 4 }
    }
}

/// Upload moderation: request bodies judged before anything is sent to the origin.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct UploadSettings {
    /// false: request bodies are forwarded unjudged.
    pub enabled: bool,
    /// Request methods whose bodies are judged (case-insensitive).
    pub methods: Vec<String>,
    /// Path patterns whose requests are judged: `*` matches any run of characters
    /// (`/api/*/avatar`), anything else itself; the query is not part of the path.
    pub paths: Vec<String>,
    /// What an upload the rules rewrite becomes: `rewrite` (the obscured image is
    /// forwarded) or `block`.
    pub rewrite_as: UploadRewrite,
    /// A blocked image in a multipart body: `block_request` (the origin receives
    /// nothing) or `drop_part` (the rest of the form is forwarded without it).
    pub blocked_part: BlockedPart,
    /// Most images judged in one request; an upload with more gets `on_oversize`.
    pub max_images: usize,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum UploadRewrite {
    Rewrite,
    Block,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BlockedPart {
    BlockRequest,
    DropPart,
}

impl Default for UploadSettings {
    fn default() -> Self {
        UploadSettings {
            enabled: true,
            methods: ["POST", "PUT", "PATCH"].map(String::from).to_vec(),
            paths: vec!["*".into()],
            rewrite_as: UploadRewrite::Rewrite,
            blocked_part: BlockedPart::BlockRequest,
            max_images: 8,
        }
    }
}

/// The most images a policy may allow in one request: each may take a sibling instance,
/// and an instance may send at most 32 backend requests.
pub const MAX_UPLOAD_IMAGES: usize = 16;

impl UploadSettings {
    /// Whether the body of a `method` request to `path` is judged.
    pub fn applies(&self, method: &str, path: &str) -> bool {
        self.enabled
            && self.methods.iter().any(|m| m.eq_ignore_ascii_case(method))
            && self.paths.iter().any(|pattern| glob_matches(pattern, path))
    }
}

/// `*` matches any run of characters (including `/`); everything else matches itself.
pub(crate) fn glob_matches(pattern: &str, text: &str) -> bool {
    let mut pieces = pattern.split('*');
    let first = pieces.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let pieces: Vec<&str> = pieces.collect();
    let Some((last, middle)) = pieces.split_last() else {
        return rest.is_empty();
    };
    for piece in middle {
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// When an instance hands the rest of an inference to a sibling instance (a fresh
/// instance with its own CPU allowance, reached through the service itself).
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SiblingSettings {
    /// An instance starts another segment of the network only while its CPU so far plus
    /// that segment's expected cost stays within this many milliseconds; otherwise the
    /// rest goes to a sibling. Compute allows 50 ms; the default leaves 10 for what
    /// follows inference (a rewrite). 0 hands every segment on (for testing).
    pub cpu_budget_ms: u64,
    /// How long an instance waits for a sibling's answer (which covers the rest of the
    /// chain after it); then the image gets `on_error`, as for any sibling failure.
    pub timeout_ms: u64,
}

impl Default for SiblingSettings {
    fn default() -> Self {
        SiblingSettings {
            cpu_budget_ms: 40,
            timeout_ms: 20_000,
        }
    }
}

impl SiblingSettings {
    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.timeout_ms)
    }
}

/// How long a verdict is remembered for the same image bytes under the same policy and
/// model. A policy change never reuses an older verdict: the policy's fingerprint is part
/// of the key.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CacheSettings {
    /// Seconds a verdict is kept; 0 turns the cache off.
    pub ttl_seconds: u64,
}

impl Default for CacheSettings {
    /// A day: verdicts only change with the policy (in the key) or the model.
    fn default() -> Self {
        CacheSettings {
            ttl_seconds: 86_400,
        }
    }
}

/// The longest verdict TTL a policy may ask for: a year.
const MAX_CACHE_TTL: u64 = 365 * 86_400;

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BlockResponse {
    pub status: u16,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq)]
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
    /// full-size resize (see `media::decode::REDUCED_MIN_SIDE`).
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
            on_error: Fallback::Block,
            cache: CacheSettings::default(),
            siblings: SiblingSettings::default(),
            uploads: UploadSettings::default(),
            animations: AnimationSettings::default(),
            mode: Mode::default(),
            log: DecisionLogSettings::default(),
            lists: ListSettings::default(),
            origin: OriginSettings::default(),
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

/// A policy's digest ([`Policy::fingerprint`]); shown as 16 hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fingerprint(pub [u8; 32]);

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0[..8].iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// Why a stored policy was refused. The caller (the Compute glue) logs it and applies the
/// defaults; tests match on the case.
#[derive(Debug)]
pub enum PolicyError {
    /// Not JSON, or JSON that does not fit the schema: an unknown field, a wrong type, an
    /// unknown class or action.
    Schema(serde_json::Error),
    /// Well-formed, but a value is out of its range.
    OutOfRange {
        field: String,
        expected: &'static str,
    },
}

impl std::fmt::Display for PolicyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PolicyError::Schema(e) => write!(f, "{e}"),
            PolicyError::OutOfRange { field, expected } => {
                write!(f, "{field} must be {expected}")
            }
        }
    }
}

impl std::error::Error for PolicyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PolicyError::Schema(e) => Some(e),
            PolicyError::OutOfRange { .. } => None,
        }
    }
}

impl Policy {
    /// Parses and validates a stored policy.
    pub fn from_json(json: &str) -> Result<Policy, PolicyError> {
        let policy: Policy = serde_json::from_str(json).map_err(PolicyError::Schema)?;
        policy.validate()?;
        Ok(policy)
    }

    /// As [`Policy::from_json`], from parsed JSON (a route's patched policy).
    pub fn from_value(json: serde_json::Value) -> Result<Policy, PolicyError> {
        let policy: Policy = serde_json::from_value(json).map_err(PolicyError::Schema)?;
        policy.validate()?;
        Ok(policy)
    }

    fn validate(&self) -> Result<(), PolicyError> {
        let out_of_range = |field: String, expected| PolicyError::OutOfRange { field, expected };
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.classes.is_empty() {
                return Err(out_of_range(
                    format!("rules[{i}].classes"),
                    "at least one class",
                ));
            }
            if !(0.0..=1.0).contains(&rule.at_least) {
                return Err(out_of_range(format!("rules[{i}].at_least"), "within 0..=1"));
            }
        }
        if !(self.rewrite.strength > 0.0 && self.rewrite.strength <= 1.0) {
            return Err(out_of_range("rewrite.strength".into(), "within (0, 1]"));
        }
        if !(200..=599).contains(&self.block.status) {
            return Err(out_of_range(
                "block.status".into(),
                "an HTTP status within 200..=599",
            ));
        }
        if self.siblings.cpu_budget_ms > 50_000 {
            return Err(out_of_range(
                "siblings.cpu_budget_ms".into(),
                "at most 50000",
            ));
        }
        if !(1..=600_000).contains(&self.siblings.timeout_ms) {
            return Err(out_of_range(
                "siblings.timeout_ms".into(),
                "within 1..=600000",
            ));
        }
        if self.cache.ttl_seconds > MAX_CACHE_TTL {
            return Err(out_of_range(
                "cache.ttl_seconds".into(),
                "at most a year (31536000)",
            ));
        }
        if !(1..=16).contains(&self.animations.max_frames) {
            return Err(out_of_range(
                "animations.max_frames".into(),
                "within 1..=16",
            ));
        }
        if !(1..=MAX_UPLOAD_IMAGES).contains(&self.uploads.max_images) {
            return Err(out_of_range("uploads.max_images".into(), "within 1..=16"));
        }
        if let Some(i) =
            self.uploads.methods.iter().position(|m| {
                m.is_empty() || !m.bytes().all(|b| b.is_ascii_alphabetic() || b == b'-')
            })
        {
            return Err(out_of_range(
                format!("uploads.methods[{i}]"),
                "an HTTP method name",
            ));
        }
        if let Some(i) = self.uploads.paths.iter().position(|p| p.is_empty()) {
            return Err(out_of_range(
                format!("uploads.paths[{i}]"),
                "a path pattern",
            ));
        }
        if let Some(endpoint) = &self.log.endpoint {
            let valid = !endpoint.is_empty()
                && endpoint.len() <= 255
                && endpoint
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
            if !valid {
                return Err(out_of_range(
                    "log.endpoint".into(),
                    "a log endpoint name (letters, digits, _ - .)",
                ));
            }
        }
        for (field, value) in [
            (
                "origin.first_byte_timeout_ms",
                self.origin.first_byte_timeout_ms,
            ),
            (
                "origin.between_bytes_timeout_ms",
                self.origin.between_bytes_timeout_ms,
            ),
        ] {
            if !(1..=600_000).contains(&value) {
                return Err(out_of_range(field.into(), "within 1..=600000"));
            }
        }
        if self.lists.max_distance > 128 {
            return Err(out_of_range("lists.max_distance".into(), "within 0..=128"));
        }
        if self.lists.min_quality > 100 {
            return Err(out_of_range("lists.min_quality".into(), "within 0..=100"));
        }
        let store_names = [Some(&self.lists.deny_key), Some(&self.lists.allow_key)];
        if self.lists.store.as_ref().is_some_and(String::is_empty)
            || store_names.iter().flatten().any(|key| key.is_empty())
        {
            return Err(out_of_range(
                "lists.store, deny_key and allow_key".into(),
                "non-empty names",
            ));
        }
        for (field, value) in [
            ("limits.max_bytes", self.limits.max_bytes as u64),
            ("limits.max_pixels", self.limits.max_pixels),
            ("limits.max_dimension", u64::from(self.limits.max_dimension)),
        ] {
            if value == 0 {
                return Err(out_of_range(field.into(), "positive"));
            }
        }
        Ok(())
    }

    /// A digest of everything the policy decides with: two policies with the same
    /// fingerprint judge every image alike. Computed over the policy as parsed (defaults
    /// filled in), so formatting and field order do not matter.
    pub fn fingerprint(&self) -> Fingerprint {
        // Serialising plain data into JSON cannot fail.
        let canonical = serde_json::to_vec(self).unwrap_or_default();
        Fingerprint(*blake3::hash(&canonical).as_bytes())
    }

    /// The first rule the scores satisfy decides.
    pub fn decide(&self, scores: &Scores) -> Decision {
        rules::decide(&self.rules, scores)
    }

    /// Whether a body of this `Content-Type` whose bytes are not a raster image should
    /// still be treated as an image we failed to read.
    pub fn claims_moderated_image(&self, content_type: Option<&str>) -> bool {
        let Some(claimed) = content_type.filter(|t| content_type::claims_image(Some(t))) else {
            return false;
        };
        let essence = content_type::essence(claimed);
        !self
            .unmoderated_types
            .iter()
            .any(|t| content_type::essence(t) == essence)
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
            (r#"{"on_oversize": "rewrite"}"#, "unknown variant"),
            (r#"{"treshold": 0.5}"#, "unknown field"),
        ] {
            let err = Policy::from_json(json).unwrap_err();
            assert!(
                matches!(&err, PolicyError::Schema(e) if e.to_string().contains(why)),
                "{json}: {err}"
            );
        }
        for (json, field) in [
            (
                r#"{"rules": [{"classes": ["Porn"], "at_least": 1.5, "action": "block"}]}"#,
                "rules[0].at_least",
            ),
            (
                r#"{"rules": [{"classes": [], "at_least": 0.5, "action": "block"}]}"#,
                "rules[0].classes",
            ),
            (r#"{"block": {"status": 99}}"#, "block.status"),
            (r#"{"rewrite": {"strength": 0}}"#, "rewrite.strength"),
            (r#"{"limits": {"max_bytes": 0}}"#, "limits.max_bytes"),
            (r#"{"siblings": {"timeout_ms": 0}}"#, "siblings.timeout_ms"),
            (
                r#"{"limits": {"max_dimension": 0}}"#,
                "limits.max_dimension",
            ),
        ] {
            match Policy::from_json(json) {
                Err(PolicyError::OutOfRange { field: f, .. }) => assert_eq!(f, field, "{json}"),
                other => panic!("{json}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_policy_in_the_documented_format_keeps_its_meaning() {
        // The README's example, as operators have it deployed.
        let documented = r#"{
          "rules": [
            {"classes": ["Porn", "Hentai"], "at_least": 0.6, "action": "block"},
            {"classes": ["Porn", "Hentai", "Sexy"], "at_least": 0.6, "action": "rewrite"}
          ],
          "rewrite": {"method": "blur", "strength": 0.05},
          "block": {"status": 403},
          "limits": {"max_bytes": 20971520, "max_pixels": 16000000, "max_dimension": 16384,
                     "reduced_jpeg_decode": true},
          "on_undecodable": "block",
          "on_oversize": "block",
          "unmoderated_types": ["image/svg+xml", "image/x-icon", "image/vnd.microsoft.icon"]
        }"#;
        assert_eq!(Policy::from_json(documented).unwrap(), Policy::default());
    }

    #[test]
    fn fingerprints_follow_meaning_not_formatting() {
        let default = Policy::default().fingerprint();
        assert_eq!(Policy::from_json("{}").unwrap().fingerprint(), default);
        assert_eq!(
            Policy::from_json(r#"{ "block" : {"status":403} }"#)
                .unwrap()
                .fingerprint(),
            default
        );
        for changed in [
            r#"{"block": {"status": 451}}"#,
            r#"{"rules": []}"#,
            r#"{"rewrite": {"method": "pixelate"}}"#,
            r#"{"limits": {"reduced_jpeg_decode": false}}"#,
            r#"{"cache": {"ttl_seconds": 60}}"#,
        ] {
            let other = Policy::from_json(changed).unwrap().fingerprint();
            assert_ne!(other, default, "{changed}");
        }
        assert_eq!(default.to_string().len(), 16);
    }

    #[test]
    fn uploads_are_judged_by_method_and_path() {
        let default = UploadSettings::default();
        assert!(default.applies("POST", "/anything"));
        assert!(default.applies("put", "/"));
        assert!(!default.applies("GET", "/upload"));
        assert!(!default.applies("DELETE", "/upload"));
        let policy = Policy::from_json(
            r#"{"uploads": {"methods": ["POST"], "paths": ["/api/*/avatar", "/upload", "/media/*"]}}"#,
        )
        .unwrap();
        let uploads = &policy.uploads;
        assert!(uploads.applies("POST", "/api/users/avatar"));
        assert!(uploads.applies("POST", "/api/a/b/avatar"));
        assert!(uploads.applies("POST", "/upload"));
        assert!(uploads.applies("POST", "/media/"));
        assert!(uploads.applies("POST", "/media/x/y.png"));
        assert!(!uploads.applies("POST", "/upload/2"));
        assert!(!uploads.applies("POST", "/api/avatar"));
        assert!(!uploads.applies("PUT", "/upload"));
        let off = Policy::from_json(r#"{"uploads": {"enabled": false}}"#).unwrap();
        assert!(!off.uploads.applies("POST", "/upload"));
        for (json, field) in [
            (r#"{"uploads": {"max_images": 0}}"#, "uploads.max_images"),
            (r#"{"uploads": {"max_images": 17}}"#, "uploads.max_images"),
            (
                r#"{"uploads": {"methods": ["PO ST"]}}"#,
                "uploads.methods[0]",
            ),
            (r#"{"uploads": {"paths": [""]}}"#, "uploads.paths[0]"),
        ] {
            match Policy::from_json(json) {
                Err(PolicyError::OutOfRange { field: f, .. }) => assert_eq!(f, field, "{json}"),
                other => panic!("{json}: {other:?}"),
            }
        }
        assert!(Policy::from_json(r#"{"uploads": {"rewrite_as": "blur"}}"#).is_err());
    }

    #[test]
    fn glob_patterns() {
        for (pattern, text, expected) in [
            ("*", "", true),
            ("*", "/a", true),
            ("/a*", "/a", true),
            ("/a*b", "/ab", true),
            ("/a*b", "/a", false),
            ("*b*b", "/bb", true),
            ("*b*b", "/b", false),
            ("/x", "/x", true),
            ("/x", "/xy", false),
        ] {
            assert_eq!(glob_matches(pattern, text), expected, "{pattern} {text}");
        }
    }

    #[test]
    fn a_policy_travels_as_json() {
        let policy = Policy::from_json(
            r#"{"rules": [{"classes": ["Drawing"], "at_least": 0.5, "action": "rewrite"}],
                "uploads": {"blocked_part": "drop_part"}}"#,
        )
        .unwrap();
        let sent = serde_json::to_string(&policy).unwrap();
        assert_eq!(Policy::from_json(&sent).unwrap(), policy);
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
