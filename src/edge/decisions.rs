//! Writes each judged image's decision-log record (`edge_moderation::decision_log`, which
//! decides what a record may hold) to the log endpoint the policy names. Viceroy prints
//! log endpoints to stdout as `name :: line`. A missing endpoint is reported on stderr
//! and never affects the response.

use super::config::Loaded;
use super::context::RequestContext;
use edge_moderation::decision_log::{Decision, ImageFacts, Origin, RequestFacts};
use edge_moderation::moderation::Moderation;
use fastly::log::Endpoint;
use std::io::Write;

/// Logs `moderation` of one image of `context`'s request, judged by `loaded`'s policy.
pub fn log(
    context: &RequestContext,
    origin: Origin,
    loaded: &Loaded,
    moderation: &Moderation,
    image: ImageFacts,
) {
    let policy = &loaded.policy;
    let Some(name) = policy.log.endpoint.as_deref() else {
        return;
    };
    let request = RequestFacts::new(
        request_id(),
        context.method.as_str(),
        &context.host,
        &context.path,
        context.query.as_deref(),
        policy,
    );
    let route = loaded.route.as_deref();
    let decision = Decision::new(request, origin, route, policy, moderation, image);
    let written = Endpoint::try_from_name(name)
        .map_err(|e| e.to_string())
        .and_then(|mut endpoint| {
            writeln!(endpoint, "{}", decision.to_line()).map_err(|e| e.to_string())
        });
    if let Err(e) = written {
        eprintln!("moderation: decision log endpoint {name:?} unavailable: {e}");
    }
}

/// Fastly's id for this request: each request runs in its own instance, whose trace id
/// `FASTLY_TRACE_ID` is.
pub fn request_id() -> String {
    std::env::var("FASTLY_TRACE_ID").unwrap_or_default()
}
