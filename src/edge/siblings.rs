//! Sibling instances: the service sending part of its work to itself. Each sub-request is
//! a fresh instance with its own 50 ms of CPU, so an inference that would not fit in one
//! instance runs segment by segment (`edge_moderation::classifier::SEGMENTS`) across
//! several: an instance runs segments while its CPU allows (`siblings.cpu_budget_ms`),
//! then hands the rest, with the tensor at the cut, to a sibling, which does the same.
//!
//! Siblings are reached through the backend [`BACKEND`] (production: the service's own
//! domain; locally: Viceroy's address), on [`ROUTE`], with a shared secret from the Secret
//! Store [`SECRET_STORE`]. Without the secret, a request to the route is ordinary traffic
//! (forwarded to the origin), so nothing reveals it. Without a secret configured, nothing
//! is handed off. Every hand-off moves at least one segment forward, so a chain has at most
//! as many instances as segments.

use super::{model, respond};
use edge_moderation::classifier::{Classifier, Scores};
use edge_moderation::headers;
use edge_moderation::moderation::handoff::Handoff;
use edge_moderation::moderation::{Inference, InferenceError};
use edge_moderation::policy::Policy;
use fastly::http::{header, Method, StatusCode};
use fastly::{Request, Response, SecretStore};
use tract_onnx::prelude::Tensor;

pub const BACKEND: &str = "self";
pub const ROUTE: &str = headers::SIBLING_ROUTE;
pub const SECRET_STORE: &str = "moderation";
pub const SECRET_KEY: &str = "sibling_key";
const KEY_HEADER: &str = headers::SIBLING_KEY;
/// What one segment is assumed to cost before this instance has run one.
const FIRST_SEGMENT_ESTIMATE_MS: u64 = 10;

fn shared_secret() -> Option<Vec<u8>> {
    let secret = SecretStore::open(SECRET_STORE)
        .ok()?
        .try_get(SECRET_KEY)
        .ok()??;
    let plaintext = secret.try_plaintext().ok()?.to_vec();
    (!plaintext.is_empty()).then_some(plaintext)
}

/// Equality that takes as long whatever the first differing byte.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether `request` is a hand-off from one of this service's instances.
pub fn is_sibling_call(request: &Request) -> bool {
    request.get_method() == Method::POST
        && request.get_path() == ROUTE
        && request
            .get_header(KEY_HEADER)
            .zip(shared_secret())
            .is_some_and(|(given, secret)| same_secret(given.as_bytes(), &secret))
}

fn cpu_ms() -> u64 {
    respond::cpu_ms().unwrap_or(0)
}

/// An inference run here while the CPU allows, and handed to siblings after that.
pub struct Relay<'a> {
    classifier: &'a Classifier,
    budget_ms: u64,
    /// Looked up the first time a hand-off is due: most images never need one, and a
    /// fresh instance pays for every Secret Store lookup.
    secret: Option<Option<Vec<u8>>>,
    /// The host siblings are addressed by (the service's own).
    host: String,
    /// A sibling must move the work on before handing it further.
    must_run_one: bool,
    /// The CPU milliseconds of every sibling that took part, in order.
    pub sibling_cpu: Vec<u64>,
}

impl<'a> Relay<'a> {
    pub fn new(classifier: &'a Classifier, policy: &Policy, host: &str) -> Self {
        Relay {
            classifier,
            budget_ms: policy.siblings.cpu_budget_ms,
            secret: None,
            host: host.to_string(),
            must_run_one: false,
            sibling_cpu: Vec::new(),
        }
    }

    /// Runs segments from `work.next` to the end, here or via siblings; returns the
    /// network's output.
    fn advance(&mut self, mut work: Handoff) -> Result<Tensor, InferenceError> {
        let count = self.classifier.segment_count();
        let (mut ran, mut estimate) = (0, FIRST_SEGMENT_ESTIMATE_MS);
        while work.next < count {
            let used = cpu_ms();
            let over_budget = used + estimate > self.budget_ms;
            if over_budget && !(self.must_run_one && ran == 0) {
                if let Some(secret) = self.secret.get_or_insert_with(shared_secret).clone() {
                    return self.hand_off(work, &secret);
                }
            }
            work.tensor = self
                .classifier
                .run_segment(work.next, work.tensor)
                .map_err(InferenceError::Model)?;
            work.next += 1;
            ran += 1;
            let cost = cpu_ms().saturating_sub(used);
            estimate = if ran == 1 { cost } else { estimate.max(cost) };
        }
        Ok(work.tensor)
    }

    fn hand_off(&mut self, work: Handoff, secret: &[u8]) -> Result<Tensor, InferenceError> {
        let failed = |why: String| InferenceError::Sibling(why);
        let body = work.encode().map_err(|e| failed(e.to_string()))?;
        let mut request = Request::post(format!("https://{}{ROUTE}", self.host))
            .with_header(header::CONTENT_TYPE, "application/octet-stream")
            .with_body(body);
        request.set_header(
            KEY_HEADER,
            fastly::http::HeaderValue::from_bytes(secret).map_err(|e| failed(e.to_string()))?,
        );
        let mut reply = request
            .send(BACKEND)
            .map_err(|e| failed(format!("segment {}: {}", work.next, e.root_cause())))?;
        let status = reply.get_status();
        let body = reply.take_body_bytes();
        if status != StatusCode::OK {
            let why = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            return Err(failed(format!("segment {}: {status}: {why}", work.next)));
        }
        if let Some(cpu) = reply.get_header_str(headers::SIBLING_CPU) {
            self.sibling_cpu.extend(
                cpu.split(',')
                    .filter_map(|ms| ms.trim().parse::<u64>().ok()),
            );
        }
        let done = Handoff::decode(&body).map_err(|e| failed(e.to_string()))?;
        if done.next != self.classifier.segment_count() {
            return Err(failed(format!(
                "a sibling stopped at segment {}",
                done.next
            )));
        }
        Ok(done.tensor)
    }
}

impl Inference for Relay<'_> {
    fn infer(&mut self, input: Tensor) -> Result<Scores, InferenceError> {
        let output = self.advance(Handoff {
            next: 0,
            tensor: input,
        })?;
        self.classifier
            .scores(&output)
            .map_err(InferenceError::Model)
    }
}

/// Serves a hand-off (`is_sibling_call` said so): runs at least one segment, hands the
/// rest on if its own CPU runs out, and answers with the network's output and the CPU of
/// every instance in the chain from this one on (`x-moderation-sibling-cpu`).
pub fn serve(mut request: Request, policy: &Policy) -> Response {
    let host = request.get_url().host_str().unwrap_or_default().to_string();
    let body = request.take_body_bytes();
    let reply = |status: StatusCode, why: String| {
        Response::from_status(status).with_body_text_plain(&format!("{why}\n"))
    };
    let classifier = match model::shared() {
        Ok(classifier) => classifier,
        Err(e) => return reply(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    let work = match Handoff::decode(&body) {
        Ok(work) if work.next < classifier.segment_count() => work,
        Ok(work) => return reply(StatusCode::BAD_REQUEST, format!("no segment {}", work.next)),
        Err(e) => return reply(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let mut relay = Relay::new(classifier, policy, &host);
    relay.must_run_one = true;
    let output = match relay.advance(work) {
        Ok(output) => output,
        Err(InferenceError::Model(e)) => {
            return reply(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
        Err(InferenceError::Sibling(why)) => return reply(StatusCode::BAD_GATEWAY, why),
    };
    let done = Handoff {
        next: classifier.segment_count(),
        tensor: output,
    };
    let encoded = match done.encode() {
        Ok(encoded) => encoded,
        Err(e) => return reply(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let own = cpu_ms();
    let chain: Vec<String> = std::iter::once(own)
        .chain(relay.sibling_cpu)
        .map(|ms| ms.to_string())
        .collect();
    Response::from_status(StatusCode::OK)
        .with_header(header::CONTENT_TYPE, "application/octet-stream")
        .with_header(headers::SIBLING_CPU, chain.join(","))
        .with_header(headers::SERVER_TIMING, respond::cpu_timing(own))
        .with_body(encoded)
}
