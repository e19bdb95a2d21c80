//! Waiting on the host with a deadline: `fastly_async_io::select` on one async handle (a
//! pending request, a body) with a timeout. The SDK keeps its own wrapper private; the
//! wait costs no CPU, and returns the moment the handle is ready.

use fastly::handle::{BodyHandle, PendingRequestHandle};
use fastly::http::request::SendErrorCause;
use fastly::{Request, Response};
use std::time::Duration;

/// A request sent to a backend, its response not yet taken.
pub struct Pending(PendingRequestHandle);

/// Why no response came.
pub enum SendFailure {
    Send(SendErrorCause),
    /// No response headers within this long.
    Timeout(Duration),
}

/// Sends `request` to `backend` without waiting for the response.
pub fn send(request: Request, backend: &str) -> Result<Pending, SendErrorCause> {
    let (request, body) = request.into_handles();
    let body = body.unwrap_or_else(BodyHandle::new);
    request.send_async(body, backend).map(Pending)
}

impl Pending {
    /// The response, or a timeout once `first_byte` has passed without its headers. The
    /// wait is the host's: no CPU is spent waiting, and the response is taken the moment
    /// it arrives. A refused wait falls through to the blocking one.
    pub fn within(self, first_byte: Duration) -> Result<Response, SendFailure> {
        if let Ok(false) = ready_within(self.0.as_u32(), first_byte) {
            return Err(SendFailure::Timeout(first_byte));
        }
        let (response, body) = self.0.wait().map_err(SendFailure::Send)?;
        Ok(Response::from_handles(response, body))
    }
}

/// Whether the async item `handle` became ready (a response arrived, body data or its end
/// arrived) within `timeout`; an error when the host refused to wait on it.
pub fn ready_within(handle: u32, timeout: Duration) -> Result<bool, String> {
    // 0 means "no timeout" to the hostcall; the timeout is signalled as index u32::MAX.
    let ms = u32::try_from(timeout.as_millis())
        .unwrap_or(u32::MAX)
        .max(1);
    let mut ready = 0u32;
    // One handle, read by the host; `ready` is written by it.
    let status = unsafe { fastly_sys::fastly_async_io::select(&handle, 1, ms, &mut ready) };
    if status.is_err() {
        return Err(format!("waiting on the host failed: {status:?}"));
    }
    Ok(ready != u32::MAX)
}
