//! What is known of a request before it is sent to the origin, kept for everything after:
//! sending consumes the request, yet the reply, logs and per-route decisions need its
//! method, host and path, and the policies in force (one per direction, chosen by route).

use super::config::{self, Config, Loaded};
use edge_moderation::policy::{Direction, RouteRequest};
use fastly::http::Method;
use fastly::Request;
use std::fmt;

pub struct RequestContext {
    pub method: Method,
    pub host: String,
    /// The path, without the query.
    pub path: String,
    /// The query string, when there is one (the decision log drops it by default).
    pub query: Option<String>,
    /// The policy for images in the response.
    pub served: Loaded,
    /// The policy for images in the request body.
    pub uploaded: Loaded,
    /// The configuration both came from.
    pub config: Config,
}

impl RequestContext {
    /// Reads the request's identity and chooses its policies.
    pub fn new(request: &Request) -> Self {
        let method = request.get_method().clone();
        let host = request
            .get_url()
            .host_str()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let path = request.get_path().to_string();
        let config = config::load();
        let select = |direction| {
            config.select(&RouteRequest {
                direction,
                method: method.as_str(),
                host: &host,
                path: &path,
            })
        };
        let (served, uploaded) = (select(Direction::Served), select(Direction::Uploaded));
        RequestContext {
            query: request.get_query_str().map(str::to_owned),
            method,
            host,
            path,
            served,
            uploaded,
            config,
        }
    }
}

/// `GET example.com/a/b.jpg`: the request, as log lines name it.
impl fmt::Display for RequestContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}{}", self.method, self.host, self.path)
    }
}
