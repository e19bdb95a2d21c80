//! Per-route policies: which policy judges an image, chosen by the request's host, path,
//! method and direction (an image served to a client, or uploaded to the origin).
//!
//! The stored configuration is a list of routes (Config Store key `routes`); the first
//! route that matches a request decides, and the default policy (key `policy`) applies
//! when none does. A route's `policy` is a JSON merge patch (RFC 7396) over the default
//! policy: it names only what differs (`{"mode": "report"}`), objects merge field by
//! field, arrays such as `rules` are replaced whole, `null` restores a field's built-in
//! default. The whole list is validated at once: one bad route refuses the list (the
//! caller logs it and applies the default policy everywhere), as one bad field refuses a
//! policy.

use super::{glob_matches, Policy, PolicyError};
use serde::Deserialize;
use std::fmt;

/// Which way an image crosses the service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// In a response from the origin, on its way to a client.
    Served,
    /// In a request body, on its way to the origin.
    Uploaded,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Served => "served",
            Direction::Uploaded => "uploaded",
        }
    }
}

/// The directions a route applies to.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Directions {
    #[default]
    Any,
    Served,
    Uploaded,
}

impl Directions {
    fn includes(self, direction: Direction) -> bool {
        match self {
            Directions::Any => true,
            Directions::Served => direction == Direction::Served,
            Directions::Uploaded => direction == Direction::Uploaded,
        }
    }
}

/// A route as stored. Every criterion is optional; an omitted one matches everything.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredRoute {
    /// Shown in `x-moderation-route` and the decision log; `route N` (from 1) otherwise.
    #[serde(default)]
    name: Option<String>,
    /// Host patterns, case-insensitive, without the port: `*` matches any run of
    /// characters (`*.example.com`, `images.example.com`).
    #[serde(default)]
    hosts: Vec<String>,
    /// Path patterns (the query is not part of the path), as in `uploads.paths`.
    #[serde(default)]
    paths: Vec<String>,
    /// Request methods, case-insensitive.
    #[serde(default)]
    methods: Vec<String>,
    #[serde(default)]
    direction: Directions,
    /// A merge patch over the default policy; `{}` (the default) is the default policy.
    #[serde(default)]
    policy: serde_json::Value,
}

/// A request as routes see it.
#[derive(Clone, Copy, Debug)]
pub struct RouteRequest<'a> {
    pub direction: Direction,
    pub method: &'a str,
    /// Lower case, without the port.
    pub host: &'a str,
    /// Without the query.
    pub path: &'a str,
}

struct Route {
    name: String,
    hosts: Vec<String>,
    paths: Vec<String>,
    methods: Vec<String>,
    direction: Directions,
    policy: Policy,
}

impl Route {
    fn matches(&self, request: &RouteRequest<'_>) -> bool {
        self.direction.includes(request.direction)
            && (self.hosts.is_empty() || self.hosts.iter().any(|p| glob_matches(p, request.host)))
            && (self.paths.is_empty() || self.paths.iter().any(|p| glob_matches(p, request.path)))
            && (self.methods.is_empty()
                || self
                    .methods
                    .iter()
                    .any(|m| m.eq_ignore_ascii_case(request.method)))
    }
}

/// The default policy and the routes, each with its policy resolved and validated.
pub struct RouteTable {
    default: Policy,
    routes: Vec<Route>,
}

/// The policy a request gets, and the route that chose it (None: the default).
#[derive(Clone, Copy, Debug)]
pub struct Selected<'a> {
    pub policy: &'a Policy,
    pub route: Option<&'a str>,
}

/// Why a stored route list was refused.
#[derive(Debug)]
pub enum RouteError {
    /// Not a JSON array of routes in the documented schema.
    Schema(serde_json::Error),
    /// Route number `index` (from 1) is invalid.
    Route { index: usize, why: String },
    /// Route number `index`'s policy, the default patched by it, is invalid.
    Policy { index: usize, error: PolicyError },
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteError::Schema(e) => write!(f, "{e}"),
            RouteError::Route { index, why } => write!(f, "route {index}: {why}"),
            RouteError::Policy { index, error } => write!(f, "route {index}: policy: {error}"),
        }
    }
}

impl std::error::Error for RouteError {}

impl RouteTable {
    /// Only the default policy.
    pub fn single(default: Policy) -> RouteTable {
        RouteTable {
            default,
            routes: Vec::new(),
        }
    }

    /// The default policy and the stored route list (`routes_json`).
    pub fn new(default: Policy, routes_json: &str) -> Result<RouteTable, RouteError> {
        let stored: Vec<StoredRoute> =
            serde_json::from_str(routes_json).map_err(RouteError::Schema)?;
        // Serialising plain data cannot fail; the patch applies to every field.
        let base = serde_json::to_value(&default).map_err(RouteError::Schema)?;
        let mut routes = Vec::with_capacity(stored.len());
        for (i, route) in stored.into_iter().enumerate() {
            let index = i + 1;
            let invalid = |why: &str| RouteError::Route {
                index,
                why: why.to_string(),
            };
            if !route.policy.is_object() && !route.policy.is_null() {
                return Err(invalid("policy must be an object (a patch of the default)"));
            }
            if route.hosts.iter().chain(&route.paths).any(String::is_empty) {
                return Err(invalid("an empty host or path pattern"));
            }
            let method_name = |m: &String| {
                !m.is_empty() && m.bytes().all(|b| b.is_ascii_alphabetic() || b == b'-')
            };
            if !route.methods.iter().all(method_name) {
                return Err(invalid("methods must be HTTP method names"));
            }
            let mut patched = base.clone();
            // A route without a policy (null) has the default's, unpatched.
            if route.policy.is_object() {
                json_patch::merge(&mut patched, &route.policy);
            }
            let policy =
                Policy::from_value(patched).map_err(|error| RouteError::Policy { index, error })?;
            routes.push(Route {
                name: route.name.unwrap_or_else(|| format!("route {index}")),
                hosts: route.hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
                paths: route.paths,
                methods: route.methods,
                direction: route.direction,
                policy,
            });
        }
        Ok(RouteTable { default, routes })
    }

    /// The first matching route's policy, else the default.
    pub fn select(&self, request: &RouteRequest<'_>) -> Selected<'_> {
        match self.routes.iter().find(|route| route.matches(request)) {
            Some(route) => Selected {
                policy: &route.policy,
                route: Some(&route.name),
            },
            None => Selected {
                policy: &self.default,
                route: None,
            },
        }
    }

    pub fn default_policy(&self) -> &Policy {
        &self.default
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Action, Fallback, Mode};

    fn request<'a>(
        direction: Direction,
        method: &'a str,
        host: &'a str,
        path: &'a str,
    ) -> RouteRequest<'a> {
        RouteRequest {
            direction,
            method,
            host,
            path,
        }
    }

    /// The README's dating-app example: profile photos served are rewritten, uploads of
    /// them blocked, everything else under the default policy.
    const DATING_APP: &str = r#"[
      {"name": "profile photos", "hosts": ["*.example.com"], "paths": ["/profiles/*"],
       "direction": "served",
       "policy": {"rules": [{"classes": ["Porn", "Hentai", "Sexy"], "at_least": 0.5, "action": "rewrite"}]}},
      {"name": "profile uploads", "paths": ["/profiles/*"], "methods": ["POST", "PUT"],
       "direction": "uploaded",
       "policy": {"rules": [{"classes": ["Porn", "Hentai", "Sexy"], "at_least": 0.5, "action": "block"}],
                  "uploads": {"rewrite_as": "block"}}},
      {"name": "trial", "paths": ["/beta/*"], "policy": {"mode": "report", "log": {"endpoint": "decisions"}}}
    ]"#;

    #[test]
    fn the_first_matching_route_decides_and_the_default_applies_otherwise() {
        let table = RouteTable::new(Policy::default(), DATING_APP).expect("valid routes");
        assert_eq!(table.len(), 3);
        let served = table.select(&request(
            Direction::Served,
            "GET",
            "img.example.com",
            "/profiles/9.jpg",
        ));
        assert_eq!(served.route, Some("profile photos"));
        assert_eq!(served.policy.rules.len(), 1);
        assert_eq!(served.policy.rules[0].action, Action::Rewrite);
        // Other fields are the default policy's.
        assert_eq!(served.policy.limits, Policy::default().limits);

        let upload = table.select(&request(
            Direction::Uploaded,
            "put",
            "example.org",
            "/profiles/9",
        ));
        assert_eq!(upload.route, Some("profile uploads"));
        assert_eq!(upload.policy.rules[0].action, Action::Block);
        assert_eq!(upload.policy.uploads.max_images, 8, "merged, not replaced");

        // Host outside the pattern, method outside the list, other paths: the default.
        for (direction, method, host, path) in [
            (Direction::Served, "GET", "example.org", "/profiles/9.jpg"),
            (Direction::Uploaded, "DELETE", "example.org", "/profiles/9"),
            (Direction::Served, "GET", "img.example.com", "/logo.png"),
        ] {
            let chosen = table.select(&request(direction, method, host, path));
            assert_eq!(chosen.route, None, "{method} {host}{path}");
            assert_eq!(chosen.policy, &Policy::default());
        }

        let trial = table.select(&request(
            Direction::Uploaded,
            "POST",
            "a.example.com",
            "/beta/x.png",
        ));
        assert_eq!(trial.route, Some("trial"));
        assert_eq!(trial.policy.mode, Mode::Report);
        assert_eq!(trial.policy.log.endpoint.as_deref(), Some("decisions"));
        assert_eq!(trial.policy.rules, Policy::default().rules);
    }

    #[test]
    fn a_patch_applies_over_the_stored_default_and_null_restores_a_built_in_default() {
        let default =
            Policy::from_json(r#"{"on_error": "pass", "block": {"status": 451}}"#).expect("valid");
        let table = RouteTable::new(
            default,
            r#"[{"paths": ["/a/*"], "policy": {"block": null}}, {"name": "b", "policy": {}}]"#,
        )
        .expect("valid");
        let a = table.select(&request(Direction::Served, "GET", "h", "/a/1"));
        assert_eq!(a.policy.on_error, Fallback::Pass);
        assert_eq!(a.policy.block.status, 403);
        assert_eq!(a.route, Some("route 1"));
        let b = table.select(&request(Direction::Served, "GET", "h", "/b"));
        assert_eq!(b.route, Some("b"));
        assert_eq!(b.policy.block.status, 451);
    }

    #[test]
    fn host_patterns_ignore_case() {
        let table =
            RouteTable::new(Policy::default(), r#"[{"hosts": ["*.Example.COM"]}]"#).expect("valid");
        let chosen = table.select(&request(Direction::Served, "GET", "cdn.example.com", "/"));
        assert_eq!(chosen.route, Some("route 1"));
    }

    #[test]
    fn invalid_route_lists_are_refused_with_the_route_named() {
        for (json, expected) in [
            ("{}", "invalid type"),
            ("[{\"paths\": [\"/a\"], \"colour\": 1}]", "unknown field"),
            ("[{\"direction\": \"sideways\"}]", "unknown variant"),
            ("[{}, {\"policy\": 3}]", "route 2: policy must be an object"),
            ("[{\"paths\": [\"\"]}]", "route 1: an empty host or path pattern"),
            ("[{\"methods\": [\"G T\"]}]", "route 1: methods must be"),
            (
                "[{\"policy\": {\"rules\": [{\"classes\": [], \"at_least\": 0.5, \"action\": \"block\"}]}}]",
                "route 1: policy: rules[0].classes",
            ),
            ("[{\"policy\": {\"mode\": \"shadow\"}}]", "route 1: policy: unknown variant"),
        ] {
            let error = RouteTable::new(Policy::default(), json)
                .err()
                .unwrap_or_else(|| panic!("{json} accepted"));
            assert!(error.to_string().contains(expected), "{json}: {error}");
        }
    }
}
