//! The decision log's record: one JSON object per judged image, written by the Compute
//! glue to the log endpoint the policy names (`log.endpoint`).
//!
//! What a record may hold is decided here, not at the call sites: the request's method,
//! host and path (the query only when the route keeps it), the image's digest, format,
//! size and frames, the verdict and why, the scores, the policy's fingerprint, the cache,
//! what each stage cost. Never image bytes, never request headers (cookies and
//! authorization stay out by construction: nothing here can carry them).

use crate::classifier::{Class, Scores};
use crate::moderation::record::ContentHash;
use crate::moderation::{Moderation, Timings};
use crate::policy::{Direction, Mode, Policy, Verdict};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::SystemTime;

/// The request an image belongs to, as logged.
#[derive(Clone, Debug, Serialize)]
pub struct RequestFacts {
    /// Fastly's id for the request (`FASTLY_TRACE_ID`).
    pub request_id: String,
    pub method: String,
    pub host: String,
    /// The path, with the query only when the route's policy keeps it.
    pub path: String,
}

impl RequestFacts {
    pub fn new(
        request_id: String,
        method: &str,
        host: &str,
        path: &str,
        query: Option<&str>,
        policy: &Policy,
    ) -> Self {
        let path = match query {
            Some(query) if policy.log.keep_query && !query.is_empty() => format!("{path}?{query}"),
            _ => path.to_string(),
        };
        RequestFacts {
            request_id,
            method: method.to_string(),
            host: host.to_string(),
            path,
        }
    }
}

/// Where a judged image came from, for the `direction` field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    Crossing(Direction),
    /// Posted to the classify API: judged, never forwarded.
    Classify,
}

impl Origin {
    fn as_str(self) -> &'static str {
        match self {
            Origin::Crossing(direction) => direction.as_str(),
            Origin::Classify => "classify",
        }
    }
}

/// Stage costs in milliseconds; absent stages did not run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StageMs {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_lookup: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decode: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inference: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<f64>,
}

impl StageMs {
    pub fn from_timings(timings: &Timings, cache_lookup: Option<std::time::Duration>) -> StageMs {
        let ms = |d: std::time::Duration| (!d.is_zero()).then(|| round2(d.as_secs_f64() * 1e3));
        StageMs {
            cache_lookup: cache_lookup.map(|d| round2(d.as_secs_f64() * 1e3)),
            decode: ms(timings.decode),
            inference: ms(timings.inference),
            rewrite: ms(timings.rewrite),
        }
    }
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// One judged image.
#[derive(Clone, Debug, Serialize)]
pub struct Decision {
    /// RFC 3339, UTC, milliseconds.
    pub time: String,
    #[serde(flatten)]
    pub request: RequestFacts,
    /// `served`, `uploaded` or `classify`.
    pub direction: &'static str,
    /// The route whose policy judged; absent for the default policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    pub mode: Mode,
    /// The multipart part, for an image in a form (`part 2 "avatar" (me.jpg)`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub part: Option<String>,
    /// Absent when the bytes were not read whole (beyond the limits).
    pub content_hash: Option<String>,
    pub format: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub frames_judged: Option<usize>,
    /// The PDQ hash (64 hex digits, ThreatExchange's form) of the image as judged (an
    /// animation's deciding frame): what a deny or allow list entry for it would hold.
    pub pdq: Option<String>,
    /// PDQ's quality, 0–100 (below the lists' `min_quality` nothing matches).
    pub pdq_quality: Option<u8>,
    /// What was applied (`pass` in report-only mode).
    pub verdict: Verdict,
    /// In report-only mode, what would have been applied, when not pass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub would: Option<Verdict>,
    pub reason: String,
    /// Class name to probability, when the model ran.
    pub scores: Option<BTreeMap<&'static str, f32>>,
    /// The first 16 hex digits of the policy's fingerprint.
    pub policy: String,
    /// `hit` or `miss`; absent when the cache was not consulted.
    pub cache: Option<&'static str>,
    pub timings_ms: StageMs,
    /// This instance's CPU milliseconds when the record was written.
    pub cpu_ms: Option<u64>,
    /// The CPU milliseconds of each sibling instance that took part.
    pub sibling_cpu_ms: Vec<u64>,
    /// The most CPU any one instance spent on this image (Compute's limit is per instance).
    pub largest_instance_cpu_ms: Option<u64>,
}

/// What the glue knows of one judged image besides its moderation.
#[derive(Clone, Debug, Default)]
pub struct ImageFacts {
    pub part: Option<String>,
    pub content: Option<ContentHash>,
    pub format: Option<String>,
    pub cache: Option<&'static str>,
    pub cache_lookup: Option<std::time::Duration>,
    pub cpu_ms: Option<u64>,
    pub sibling_cpu_ms: Vec<u64>,
}

/// The verdict shown and the one withheld, for a policy's mode.
pub fn applied(policy: &Policy, verdict: Verdict) -> (Verdict, Option<Verdict>) {
    match policy.mode {
        Mode::Report if verdict != Verdict::Pass => (Verdict::Pass, Some(verdict)),
        _ => (verdict, None),
    }
}

impl Decision {
    pub fn new(
        request: RequestFacts,
        origin: Origin,
        route: Option<&str>,
        policy: &Policy,
        moderation: &Moderation,
        image: ImageFacts,
    ) -> Decision {
        let (verdict, would) = applied(policy, moderation.verdict());
        let judged = moderation.judged.as_ref();
        let largest = image
            .cpu_ms
            .into_iter()
            .chain(image.sibling_cpu_ms.iter().copied())
            .max();
        Decision {
            time: now_rfc3339(),
            request,
            direction: origin.as_str(),
            route: route.map(str::to_owned),
            mode: policy.mode,
            part: image.part,
            content_hash: image.content.map(|hash| hash.to_string()),
            format: image.format,
            width: judged.map(|j| j.width),
            height: judged.map(|j| j.height),
            frames_judged: judged.map(|j| j.frames),
            pdq: judged.and_then(|j| j.pdq).map(|hash| hash.to_hex()),
            pdq_quality: judged.and_then(|j| j.pdq_quality),
            verdict,
            would,
            reason: moderation.reason.to_string(),
            scores: moderation.scores.as_ref().map(scores_by_class),
            policy: policy.fingerprint().to_string(),
            cache: image.cache,
            timings_ms: StageMs::from_timings(&moderation.timings, image.cache_lookup),
            cpu_ms: image.cpu_ms,
            sibling_cpu_ms: image.sibling_cpu_ms,
            largest_instance_cpu_ms: largest,
        }
    }

    /// The record as one line of JSON.
    pub fn to_line(&self) -> String {
        // Serialising plain data into JSON cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

pub fn scores_by_class(scores: &Scores) -> BTreeMap<&'static str, f32> {
    Class::ALL
        .iter()
        .map(|&class| (class.name(), scores.get(class)))
        .collect()
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::pdq::PdqHash;
    use crate::moderation::{Judged, Outcome, Reason};
    use std::time::Duration;

    fn moderation(outcome: Outcome) -> Moderation {
        Moderation {
            outcome,
            reason: Reason::Rule {
                index: 0,
                rule: "Drawing>=0.50 -> block".into(),
            },
            scores: Some(Scores::new([0.9, 0.02, 0.05, 0.02, 0.01])),
            timings: Timings {
                decode: Duration::from_micros(6_290),
                inference: Duration::from_micros(31_004),
                ..Timings::default()
            },
            judged: Some(Judged {
                width: 1024,
                height: 768,
                frames: 1,
                pdq: PdqHash::from_hex(&"5a".repeat(32)),
                pdq_quality: Some(87),
                probes: Vec::new(),
            }),
        }
    }

    fn request(policy: &Policy) -> RequestFacts {
        RequestFacts::new(
            "9f1c".into(),
            "GET",
            "img.example.com",
            "/a/b.jpg",
            Some("token=secret&user=42"),
            policy,
        )
    }

    #[test]
    fn a_record_names_the_image_and_the_decision_and_drops_the_query() {
        let policy = Policy::default();
        let facts = ImageFacts {
            content: Some(ContentHash::of(b"image")),
            format: Some("JPEG".into()),
            cache: Some("miss"),
            cpu_ms: Some(12),
            sibling_cpu_ms: vec![31, 9],
            ..ImageFacts::default()
        };
        let decision = Decision::new(
            request(&policy),
            Origin::Crossing(Direction::Served),
            Some("photos"),
            &policy,
            &moderation(Outcome::Block),
            facts,
        );
        let line = decision.to_line();
        assert!(!line.contains('\n'));
        let json: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(json["path"], "/a/b.jpg");
        assert!(!line.contains("secret"), "{line}");
        assert_eq!(json["request_id"], "9f1c");
        assert_eq!(json["direction"], "served");
        assert_eq!(json["route"], "photos");
        assert_eq!(json["verdict"], "block");
        assert!(json.get("would").is_none());
        assert_eq!(json["mode"], "enforce");
        assert_eq!(json["width"], 1024);
        assert_eq!(json["frames_judged"], 1);
        assert_eq!(json["pdq"], "5a".repeat(32));
        assert_eq!(json["pdq_quality"], 87);
        assert_eq!(json["content_hash"], ContentHash::of(b"image").to_string());
        assert!((json["scores"]["Drawing"].as_f64().unwrap() - 0.9).abs() < 1e-6);
        assert_eq!(json["policy"], policy.fingerprint().to_string());
        assert_eq!(json["timings_ms"]["decode"], 6.29);
        assert!(json["timings_ms"].get("rewrite").is_none());
        assert_eq!(json["largest_instance_cpu_ms"], 31);
        let time = json["time"].as_str().unwrap();
        assert!(humantime::parse_rfc3339(time).is_ok(), "{time}");
    }

    #[test]
    fn report_only_logs_pass_and_what_would_have_happened() {
        let policy =
            Policy::from_json(r#"{"mode": "report", "log": {"keep_query": true}}"#).unwrap();
        let decision = Decision::new(
            request(&policy),
            Origin::Classify,
            None,
            &policy,
            &moderation(Outcome::Block),
            ImageFacts::default(),
        );
        let json: serde_json::Value = serde_json::from_str(&decision.to_line()).unwrap();
        assert_eq!(json["verdict"], "pass");
        assert_eq!(json["would"], "block");
        assert_eq!(json["mode"], "report");
        assert_eq!(json["direction"], "classify");
        assert_eq!(json["path"], "/a/b.jpg?token=secret&user=42");
        assert!(json.get("route").is_none());
        assert_eq!(applied(&policy, Verdict::Pass), (Verdict::Pass, None));
    }
}
