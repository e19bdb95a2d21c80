//! The benchmark's baseline: a Compute service that forwards every request to `origin`
//! and returns the response as is — what the filter costs is measured against this.

#[cfg(target_arch = "wasm32")]
#[fastly::main]
fn main(request: fastly::Request) -> Result<fastly::Response, fastly::Error> {
    Ok(request.send("origin")?)
}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    eprintln!("plain_proxy is a Compute module: build it for wasm32-wasip1");
}
