//! The classify API: an operator (or the demo page) `POST`s an image and gets, as JSON,
//! the verdict a route's policy gives it, with the reason, scores, digest, size and
//! timings: the decision log's record (`edge_moderation::decision_log::Decision`).
//!
//! - Path: Config Store `moderation` key `classify_path` (default
//!   `/.edge-moderation/classify`).
//! - Auth: `Authorization: Bearer <token>`, the token from the Secret Store `moderation`
//!   key `classify_token`. No token configured, or a request without the right one: the
//!   path is ordinary traffic (it goes to the origin), so nothing reveals the API.
//! - Body: the image's bytes (any `Content-Type`; a `Content-Encoding` is undone).
//! - Query, choosing the route whose policy judges: `direction=served|uploaded`
//!   (default served), `path` (default `/`), `method` (default GET when served, POST
//!   when uploaded); the host is the request's.
//!
//! Answers: 200 with the decision; 415 for a body that is not an image we judge; 405 for
//! a method other than POST; 400 for a bad query. The image is never stored or echoed.

use super::body::{self, Inspection};
use super::context::RequestContext;
use super::respond::Report;
use super::{decisions, model, siblings};
use edge_moderation::decision_log::{Decision, Origin, RequestFacts};
use edge_moderation::moderation::{Moderation, Subject};
use edge_moderation::policy::{Direction, RouteRequest};
use fastly::http::{header, Method, StatusCode};
use fastly::{Request, Response};

pub const TOKEN_KEY: &str = "classify_token";

/// Whether `request` is an authorised call of the classify API.
pub fn call(context: &RequestContext, request: &Request) -> bool {
    if request.get_path() != context.config.classify_path {
        return false;
    }
    let Some(given) = request
        .get_header_str(header::AUTHORIZATION)
        .and_then(|value| value.strip_prefix("Bearer "))
    else {
        return false;
    };
    siblings::secret(TOKEN_KEY)
        .is_some_and(|token| siblings::same_secret(given.trim().as_bytes(), &token))
}

/// Judges the posted image and answers with the decision.
pub fn serve(context: &RequestContext, mut request: Request) -> Response {
    if request.get_method() != Method::POST {
        return error(StatusCode::METHOD_NOT_ALLOWED, "POST an image".into())
            .with_header(header::ALLOW, "POST");
    }
    let target = match Target::from_query(request.get_query_str().unwrap_or_default()) {
        Ok(target) => target,
        Err(why) => return error(StatusCode::BAD_REQUEST, why),
    };
    let loaded = context.config.select(&RouteRequest {
        direction: target.direction,
        method: &target.method,
        host: &context.host,
        path: &target.path,
    });
    let policy = &loaded.policy;
    let content_type = request
        .get_header_str(header::CONTENT_TYPE)
        .map(str::to_owned);
    let coding = request
        .get_header_str(header::CONTENT_ENCODING)
        .map(str::to_owned);
    let inspection = match body::inspect(
        request.take_body(),
        content_type.as_deref(),
        coding.as_deref(),
        policy,
    ) {
        Ok(inspection) => inspection,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("body could not be read: {e}"),
            )
        }
    };
    let (moderation, report) = match inspection {
        Inspection::NotImage(_) => {
            return error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "the body is not an image this service judges".into(),
            )
        }
        Inspection::Oversize { detail, .. } => {
            (Moderation::oversize(policy, detail), Report::default())
        }
        Inspection::Undecodable { detail, .. } => {
            (Moderation::undecodable(policy, detail), Report::default())
        }
        Inspection::Image { bytes, format, .. } => {
            model::judge(&bytes, Subject::Raster(format), policy, &context.host)
        }
        Inspection::Svg { bytes, .. } => model::judge(&bytes, Subject::Svg, policy, &context.host),
        Inspection::Stream {
            bytes, boundary, ..
        } => match model::judge_stream(&bytes, &boundary, policy, &context.host) {
            Some(judged) => judged,
            None => {
                return error(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "no part of the stream is an image this service judges".into(),
                )
            }
        },
    };
    let facts = report.image_facts(None);
    decisions::log(
        context,
        Origin::Classify,
        &loaded,
        &moderation,
        facts.clone(),
    );
    let request = RequestFacts::new(
        decisions::request_id(),
        Method::POST.as_str(),
        &context.host,
        &target.path,
        None,
        policy,
    );
    let decision = Decision::new(
        request,
        Origin::Classify,
        loaded.route.as_deref(),
        policy,
        &moderation,
        facts,
    );
    Response::from_status(StatusCode::OK)
        .with_header(header::CACHE_CONTROL, "no-store")
        .with_content_type(fastly::mime::APPLICATION_JSON)
        .with_body(decision.to_line())
}

/// The request whose route's policy judges the image.
struct Target {
    direction: Direction,
    method: String,
    path: String,
}

impl Target {
    fn from_query(query: &str) -> Result<Target, String> {
        let mut direction = Direction::Served;
        let (mut method, mut path) = (None, "/".to_string());
        for (key, value) in form_urlencoded(query) {
            match key.as_str() {
                "direction" => {
                    direction = match value.as_str() {
                        "served" => Direction::Served,
                        "uploaded" => Direction::Uploaded,
                        _ => return Err("direction must be served or uploaded".into()),
                    }
                }
                "method" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_alphabetic()) => {
                    method = Some(value.to_ascii_uppercase())
                }
                "path" if value.starts_with('/') => path = value,
                "method" | "path" => return Err(format!("invalid {key}")),
                _ => {}
            }
        }
        let method = method.unwrap_or_else(|| match direction {
            Direction::Served => "GET".into(),
            Direction::Uploaded => "POST".into(),
        });
        Ok(Target {
            direction,
            method,
            path,
        })
    }
}

/// `key=value&…` pairs, percent-decoded (`+` is a space).
fn form_urlencoded(query: &str) -> Vec<(String, String)> {
    fastly::http::Url::parse(&format!("http://q/?{query}"))
        .map(|url| {
            url.query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

fn error(status: StatusCode, why: String) -> Response {
    let body = serde_json::json!({ "error": why }).to_string();
    Response::from_status(status)
        .with_header(header::CACHE_CONTROL, "no-store")
        .with_content_type(fastly::mime::APPLICATION_JSON)
        .with_body(body)
}
