//! Fastly Compute entry point. A request's journey:
//!
//! 1. **context** — before anything is sent, note what the rest needs to know of the
//!    request (method, host, path) and choose the policies in force by route; a hand-off
//!    from a sibling instance (authenticated by a shared secret) runs its part of an
//!    inference instead, and an authorised call of the classify API is answered here;
//! 2. **upload** — a request body (POST, PUT, PATCH by default) that is an image, or a
//!    multipart form with images, is judged before anything is sent: a blocked upload
//!    never reaches the origin, a rewritten one arrives obscured;
//! 3. **forward** — the request goes to the `origin` backend (a `Range` request for an
//!    image is widened, so unmoderated image bytes never leave in slices);
//! 4. **judge** — the response's leading bytes say whether it is an image; anything else
//!    streams to the client untouched, never buffered. An image is buffered within the
//!    policy's limits, classified by the embedded model and judged by the policy;
//! 5. **respond** — pass (the origin's bytes), block (a status and a reason) or rewrite
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
    use edge::upload::{self, Upload};
    use edge::{classify, context::RequestContext, origin, proxy, respond, siblings};
    use edge_moderation::headers;

    let context = RequestContext::new(&request);
    if let Some(call) = siblings::call(&request) {
        return Ok(siblings::serve(call, request, &context.served.policy));
    }
    if classify::call(&context, &request) {
        return Ok(classify::serve(&context, request));
    }
    let (request, upload) = match upload::judge(&context, request) {
        Upload::Forward { request, judged } => (request, judged),
        Upload::Reply(refused) => return Ok(refused),
    };
    let first_byte = context.served.policy.origin.first_byte_timeout();
    let response = match origin::fetch(request, first_byte) {
        Ok(response) => response,
        Err(failure) => return Ok(respond::origin_failure(&context, &failure)),
    };
    let mut response = proxy::judge(&context, response);
    // The upload's verdict, unless the response was judged itself.
    if let Some(upload) = upload.filter(|_| !response.contains_header(headers::VERDICT)) {
        upload.apply(&mut response);
    }
    Ok(response)
}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    eprintln!("edge-moderation runs on Fastly Compute: build it with `make build` (wasm32-wasip1)");
    std::process::exit(2);
}
