//! Fastly Compute entry point. A request's journey:
//!
//! 1. **route** — every request goes to the `origin` backend (a `Range` request for an
//!    image is widened, so unmoderated image bytes never leave in slices);
//! 2. **inspect** — the response's leading bytes say whether it is an image; anything
//!    else streams to the client untouched, never buffered;
//! 3. **decide** — an image is buffered within the policy's limits, classified by the
//!    embedded model and judged by the operator's policy;
//! 4. **respond** — pass (the origin's bytes), block (a status and a reason) or rewrite
//!    (an obscured re-encoding), each with `x-moderation-*` and `Server-Timing` headers.

#[cfg(target_arch = "wasm32")]
mod edge;

#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOCATOR: edge::snapshot::SnapshotAllocator = edge::snapshot::SnapshotAllocator;

#[cfg(target_arch = "wasm32")]
#[fastly::main]
fn main(request: fastly::Request) -> Result<fastly::Response, fastly::Error> {
    use edge::origin::{self, Inspected};
    use edge::{config, model, responses};
    use edge_moderation::moderation::Moderation;

    let loaded = config::load_policy();
    let policy = &loaded.policy;

    let response = match origin::fetch(request) {
        Ok(response) => response,
        Err(failure) => return Ok(responses::origin_failure(&failure)),
    };

    let (response, moderation) = match origin::inspect(response, policy) {
        Inspected::Untouched(response) => return Ok(response),
        Inspected::Failed(failure) => return Ok(responses::origin_failure(&failure)),
        Inspected::Oversize { response, detail } => {
            (response, Moderation::oversize(policy, detail))
        }
        Inspected::Undecodable { response, detail } => {
            (response, Moderation::undecodable(policy, detail))
        }
        Inspected::Image {
            response,
            bytes,
            format,
        } => {
            let moderation = model::moderate(&bytes, format, policy);
            (response.with_body(bytes), moderation)
        }
    };

    Ok(responses::moderated(response, moderation, &loaded))
}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    eprintln!("edge-moderation runs on Fastly Compute: build it with `make build` (wasm32-wasip1)");
    std::process::exit(2);
}
