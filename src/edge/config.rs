//! Reads the operator's policy from the Config Store `moderation`, key `policy`.
//!
//! A missing store or key means the embedded defaults. A stored policy that does not
//! parse or validate is logged (once per request, to stderr, which Fastly's log tail and
//! Viceroy show) and replaced by the defaults: a typo must never take the site down.

use edge_moderation::policy::Policy;
use fastly::ConfigStore;

pub const STORE: &str = "moderation";
pub const KEY: &str = "policy";

/// Where the policy in force came from; reported in `x-moderation-policy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Stored,
    Default,
    /// The stored policy was invalid; the defaults apply.
    DefaultAfterInvalid,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Stored => "stored",
            Source::Default => "default",
            Source::DefaultAfterInvalid => "default (stored policy invalid)",
        }
    }
}

/// The policy in force for a request, and where it came from.
pub struct Loaded {
    pub policy: Policy,
    pub source: Source,
}

pub fn load_policy() -> Loaded {
    let stored = ConfigStore::try_open(STORE)
        .ok()
        .and_then(|store| store.try_get(KEY).ok().flatten());
    let Some(json) = stored else {
        return Loaded {
            policy: Policy::default(),
            source: Source::Default,
        };
    };
    match Policy::from_json(&json) {
        Ok(policy) => Loaded {
            policy,
            source: Source::Stored,
        },
        Err(why) => {
            eprintln!("moderation: invalid policy in config store {STORE:?} key {KEY:?}, using defaults: {why}");
            Loaded {
                policy: Policy::default(),
                source: Source::DefaultAfterInvalid,
            }
        }
    }
}
