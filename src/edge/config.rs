//! Reads the operator's configuration from the Config Store `moderation`: the default
//! policy (key `policy`) and the per-route policies (key `routes`, see
//! `edge_moderation::policy::RouteTable`).
//!
//! A missing store or key means the embedded defaults (no routes). A stored policy or
//! route list that does not parse or validate is logged (to stderr, which Fastly's log
//! tail and Viceroy show) and replaced by the defaults: a typo must never take the site
//! down. An invalid policy gives the built-in defaults; an invalid route list gives the
//! default policy on every route.

use edge_moderation::policy::{Policy, RouteRequest, RouteTable};
use fastly::ConfigStore;

pub const STORE: &str = "moderation";
pub const KEY: &str = "policy";
pub const ROUTES_KEY: &str = "routes";
/// Where the classify API listens (`edge/classify.rs`).
pub const CLASSIFY_PATH_KEY: &str = "classify_path";
pub const DEFAULT_CLASSIFY_PATH: &str = "/.edge-moderation/classify";

/// Where the policy in force came from; reported in `x-moderation-policy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Stored,
    Default,
    /// The stored policy was invalid; the defaults apply.
    DefaultAfterInvalid,
    /// The stored route list was invalid; the default policy applies to every request.
    RoutesInvalid,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Stored => "stored",
            Source::Default => "default",
            Source::DefaultAfterInvalid => "default (stored policy invalid)",
            Source::RoutesInvalid => "stored default (stored routes invalid)",
        }
    }
}

/// The policy in force for one direction of a request, and where it came from.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub policy: Policy,
    pub source: Source,
    /// The route that chose the policy; None for the default policy.
    pub route: Option<String>,
}

/// The configuration as stored, validated.
pub struct Config {
    table: RouteTable,
    source: Source,
    /// The classify API's path.
    pub classify_path: String,
}

impl Config {
    /// The policy for `request`.
    pub fn select(&self, request: &RouteRequest<'_>) -> Loaded {
        let selected = self.table.select(request);
        Loaded {
            policy: selected.policy.clone(),
            source: self.source,
            route: selected.route.map(str::to_owned),
        }
    }
}

pub fn load() -> Config {
    let store = ConfigStore::try_open(STORE).ok();
    let stored = |key: &str| {
        store
            .as_ref()
            .and_then(|store| store.try_get(key).ok().flatten())
    };
    let (default, mut source) = match stored(KEY) {
        None => (Policy::default(), Source::Default),
        Some(json) => match Policy::from_json(&json) {
            Ok(policy) => (policy, Source::Stored),
            Err(why) => {
                eprintln!("moderation: invalid policy in config store {STORE:?} key {KEY:?}, using defaults: {why}");
                (Policy::default(), Source::DefaultAfterInvalid)
            }
        },
    };
    let table = match stored(ROUTES_KEY) {
        None => RouteTable::single(default),
        Some(json) => match RouteTable::new(default.clone(), &json) {
            Ok(table) => table,
            Err(why) => {
                eprintln!("moderation: invalid routes in config store {STORE:?} key {ROUTES_KEY:?}, using the default policy for every request: {why}");
                if source == Source::Stored {
                    source = Source::RoutesInvalid;
                }
                RouteTable::single(default)
            }
        },
    };
    let classify_path = match stored(CLASSIFY_PATH_KEY) {
        Some(path) if path.starts_with('/') && !path.contains(['?', '#']) => path,
        Some(path) => {
            eprintln!("moderation: invalid {CLASSIFY_PATH_KEY:?} {path:?} (a path is needed), using {DEFAULT_CLASSIFY_PATH}");
            DEFAULT_CLASSIFY_PATH.to_string()
        }
        None => DEFAULT_CLASSIFY_PATH.to_string(),
    };
    Config {
        table,
        source,
        classify_path,
    }
}
