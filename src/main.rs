//! Fastly Compute entry point. A request's journey:
//!
//! 1. **context** — before anything is sent, note what the rest needs to know of the
//!    request (method, host, path) and load the policy in force; a hand-off from a sibling
//!    instance (authenticated by a shared secret) runs its part of an inference instead;
//! 2. **forward** — every request goes to the `origin` backend (a `Range` request for an
//!    image is widened, so unmoderated image bytes never leave in slices);
//! 3. **judge** — the response's leading bytes say whether it is an image; anything else
//!    streams to the client untouched, never buffered. An image is buffered within the
//!    policy's limits, classified by the embedded model and judged by the policy;
//! 4. **respond** — pass (the origin's bytes), block (a status and a reason) or rewrite
//!    (an obscured re-encoding), each with `x-moderation-*` and `Server-Timing` headers.

#[cfg(target_arch = "wasm32")]
mod edge;

#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOCATOR: edge_moderation::snapshot::SnapshotAllocator =
    edge_moderation::snapshot::SnapshotAllocator;

#[cfg(target_arch = "wasm32")]
#[fastly::main]
fn main(request: fastly::Request) -> Result<fastly::Response, fastly::Error> {
    use edge::{context::RequestContext, origin, proxy, respond, siblings};

    let context = RequestContext::new(&request);
    if siblings::is_sibling_call(&request) {
        return Ok(siblings::serve(request, context.policy()));
    }
    let response = match origin::fetch(request) {
        Ok(response) => response,
        Err(failure) => return Ok(respond::origin_failure(&context, &failure)),
    };
    Ok(proxy::judge(&context, response))
}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    eprintln!("edge-moderation runs on Fastly Compute: build it with `make build` (wasm32-wasip1)");
    std::process::exit(2);
}
