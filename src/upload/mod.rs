//! Request bodies on their way to the origin: how a `multipart/*` body divides into parts
//! ([`multipart`]), and what one verdict for a whole upload is ([`Judgement`]).
//!
//! The HTTP side (reading the body, forwarding it, fanning images out to sibling
//! instances) is the Compute glue's `edge/upload.rs`; what is decided lives here.

pub mod multipart;

use crate::moderation::{Moderation, Outcome};
use crate::policy::{BlockedPart, Mode, Policy, UploadRewrite, Verdict};
use multipart::PartHead;

/// What becomes of one judged image of an upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartAction {
    /// Forwarded as received.
    Keep,
    /// Its obscured re-encoding is forwarded instead.
    Replace,
    /// Left out of the forwarded body (a multipart part, `blocked_part: drop_part`).
    Drop,
    /// The whole request stops here: the origin receives nothing.
    BlockRequest,
}

/// One image of an upload and its moderation: a raw body (`part` None) or a multipart
/// part.
#[derive(Debug)]
pub struct JudgedImage {
    pub part: Option<PartHead>,
    pub moderation: Moderation,
}

/// The upload's verdict as a whole, from the verdicts of its images.
#[derive(Debug, Clone, PartialEq)]
pub struct Judgement {
    /// What happens to each image, in order.
    pub actions: Vec<PartAction>,
    /// `block` when the request stops, `rewrite` when anything forwarded was changed,
    /// else `pass`.
    pub verdict: Verdict,
    /// In report-only mode, the verdict that was not applied: `verdict` is then pass and
    /// every image is kept.
    pub would: Option<Verdict>,
    /// The image whose verdict decided (reported in headers): the first that blocked the
    /// request, else the first changed, else the first.
    pub deciding: Option<usize>,
}

impl Judgement {
    /// What `policy` makes of an upload's images.
    pub fn new(images: &[JudgedImage], policy: &Policy) -> Judgement {
        let settings = &policy.uploads;
        let actions: Vec<PartAction> = images
            .iter()
            .map(|image| match (&image.moderation.outcome, &image.part) {
                (Outcome::Pass, _) => PartAction::Keep,
                (Outcome::Rewrite { .. }, _) if settings.rewrite_as == UploadRewrite::Rewrite => {
                    PartAction::Replace
                }
                (Outcome::Rewrite { .. } | Outcome::Block, Some(_))
                    if settings.blocked_part == BlockedPart::DropPart =>
                {
                    PartAction::Drop
                }
                (Outcome::Rewrite { .. } | Outcome::Block, _) => PartAction::BlockRequest,
            })
            .collect();
        let first = |wanted: &[PartAction]| actions.iter().position(|a| wanted.contains(a));
        let (verdict, deciding) = if let Some(i) = first(&[PartAction::BlockRequest]) {
            (Verdict::Block, Some(i))
        } else if let Some(i) = first(&[PartAction::Replace, PartAction::Drop]) {
            (Verdict::Rewrite, Some(i))
        } else {
            (Verdict::Pass, (!actions.is_empty()).then_some(0))
        };
        let judgement = Judgement {
            actions,
            verdict,
            deciding,
            would: None,
        };
        match policy.mode {
            Mode::Enforce => judgement,
            Mode::Report => judgement.report_only(),
        }
    }

    /// Nothing changes: every image is kept, the verdict that would have applied is kept
    /// aside.
    fn report_only(self) -> Judgement {
        if self.verdict == Verdict::Pass {
            return self;
        }
        Judgement {
            actions: vec![PartAction::Keep; self.actions.len()],
            verdict: Verdict::Pass,
            would: Some(self.verdict),
            deciding: self.deciding,
        }
    }

    /// The reason reported for the upload: the deciding image's, naming its part.
    pub fn reason(&self, images: &[JudgedImage]) -> Option<String> {
        let i = self.deciding?;
        let image = images.get(i)?;
        let reason = &image.moderation.reason;
        let dropped = if self.actions[i] == PartAction::Drop {
            " dropped"
        } else {
            ""
        };
        Some(match &image.part {
            Some(part) => format!("{part}{dropped}: {reason}"),
            None => reason.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::ImageFormat;
    use crate::moderation::Reason;
    use crate::policy::Policy;

    fn image(part: Option<usize>, outcome: Outcome) -> JudgedImage {
        JudgedImage {
            part: part.map(|index| PartHead {
                index,
                name: Some(format!("f{index}")),
                ..PartHead::default()
            }),
            moderation: Moderation {
                outcome,
                reason: Reason::NoRuleMatched,
                scores: None,
                timings: Default::default(),
                judged: None,
            },
        }
    }

    fn rewrite() -> Outcome {
        Outcome::Rewrite {
            bytes: vec![1],
            format: ImageFormat::Png,
        }
    }

    fn settings(json: &str) -> Policy {
        Policy::from_json(json).unwrap()
    }

    #[test]
    fn one_blocked_image_blocks_the_request() {
        let images = [
            image(Some(0), Outcome::Pass),
            image(Some(1), rewrite()),
            image(Some(2), Outcome::Block),
        ];
        let judgement = Judgement::new(&images, &Policy::default());
        assert_eq!(judgement.verdict, Verdict::Block);
        assert_eq!(judgement.deciding, Some(2));
        assert_eq!(
            judgement.reason(&images).unwrap(),
            "part 3 \"f2\": no rule matched"
        );
    }

    #[test]
    fn parts_may_be_dropped_and_rewrites_blocked_instead() {
        let images = [
            image(Some(0), Outcome::Pass),
            image(Some(1), Outcome::Block),
            image(Some(2), rewrite()),
        ];
        let drop = Judgement::new(
            &images,
            &settings(r#"{"uploads": {"blocked_part": "drop_part"}}"#),
        );
        assert_eq!(
            drop.actions,
            [PartAction::Keep, PartAction::Drop, PartAction::Replace]
        );
        assert_eq!(drop.verdict, Verdict::Rewrite);
        assert_eq!(
            drop.reason(&images).unwrap(),
            "part 2 \"f1\" dropped: no rule matched"
        );
        let strict = Judgement::new(
            &images[2..],
            &settings(r#"{"uploads": {"rewrite_as": "block"}}"#),
        );
        assert_eq!(strict.actions, [PartAction::BlockRequest]);
        // A raw body has no part to drop.
        let raw = [image(None, Outcome::Block)];
        let judgement = Judgement::new(
            &raw,
            &settings(r#"{"uploads": {"blocked_part": "drop_part"}}"#),
        );
        assert_eq!(judgement.actions, [PartAction::BlockRequest]);
        assert_eq!(judgement.reason(&raw).unwrap(), "no rule matched");
    }

    #[test]
    fn an_upload_without_changes_passes() {
        let images = [image(None, Outcome::Pass)];
        let judgement = Judgement::new(&images, &Policy::default());
        assert_eq!(
            (judgement.verdict, judgement.deciding),
            (Verdict::Pass, Some(0))
        );
        let none = Judgement::new(&[], &Policy::default());
        assert_eq!((none.verdict, none.deciding), (Verdict::Pass, None));
    }

    #[test]
    fn report_only_keeps_every_image_and_says_what_would_have_happened() {
        let images = [
            image(Some(0), Outcome::Pass),
            image(Some(1), rewrite()),
            image(Some(2), Outcome::Block),
        ];
        let report = settings(r#"{"mode": "report", "uploads": {"blocked_part": "drop_part"}}"#);
        let judgement = Judgement::new(&images, &report);
        assert_eq!(judgement.actions, [PartAction::Keep; 3]);
        assert_eq!(judgement.verdict, Verdict::Pass);
        assert_eq!(judgement.would, Some(Verdict::Rewrite));
        assert_eq!(
            judgement.reason(&images).unwrap(),
            "part 2 \"f1\": no rule matched"
        );
        let benign = [image(None, Outcome::Pass)];
        let passed = Judgement::new(&benign, &report);
        assert_eq!((passed.verdict, passed.would), (Verdict::Pass, None));
    }
}
