//! Rules and what they decide: scores in, a [`Verdict`] and the rule that gave it out.

use crate::classifier::{Class, Scores};
use serde::{Deserialize, Serialize};

/// When the named classes' probabilities add up to at least `at_least`, take `action`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
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

impl Rule {
    fn matches(&self, scores: &Scores) -> bool {
        let combined: f32 = self.classes.iter().map(|c| scores.get(*c)).sum();
        combined >= self.at_least
    }
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Pass,
    Block,
    Rewrite,
}

/// What to do with an image that could not be classified.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Fallback {
    Pass,
    Block,
}

/// What the policy decides for one image.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Block,
    Rewrite,
}

impl Verdict {
    /// How much of the image a verdict lets through, least first: block < rewrite < pass
    /// in what is shown, so block is the most severe.
    pub fn severity(self) -> u8 {
        match self {
            Verdict::Pass => 0,
            Verdict::Rewrite => 1,
            Verdict::Block => 2,
        }
    }

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

/// A verdict and the rule (index into the policy's rules) that produced it, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    pub rule: Option<usize>,
}

/// The first rule the scores satisfy decides; none: pass.
pub fn decide(rules: &[Rule], scores: &Scores) -> Decision {
    rules.iter().position(|rule| rule.matches(scores)).map_or(
        Decision {
            verdict: Verdict::Pass,
            rule: None,
        },
        |index| Decision {
            verdict: rules[index].action.into(),
            rule: Some(index),
        },
    )
}
