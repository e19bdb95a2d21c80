//! What is known of a request before it is sent to the origin, kept for everything after:
//! sending consumes the request, yet the reply, logs and per-route decisions need its
//! method, host and path, and the policy in force.

use super::config::{self, Loaded};
use edge_moderation::policy::Policy;
use fastly::http::Method;
use fastly::Request;
use std::fmt;

pub struct RequestContext {
    pub method: Method,
    pub host: String,
    /// The path, without the query.
    pub path: String,
    pub config: Loaded,
}

impl RequestContext {
    /// Reads the request's identity and loads the policy.
    pub fn new(request: &Request) -> Self {
        RequestContext {
            method: request.get_method().clone(),
            host: request
                .get_url()
                .host_str()
                .unwrap_or_default()
                .to_ascii_lowercase(),
            path: request.get_path().to_string(),
            config: config::load_policy(),
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.config.policy
    }
}

/// `GET example.com/a/b.jpg`: the request, as log lines name it.
impl fmt::Display for RequestContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}{}", self.method, self.host, self.path)
    }
}
