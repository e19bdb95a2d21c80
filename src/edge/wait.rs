//! Waiting on the host with a deadline: `fastly_async_io::select` on one async handle (a
//! pending request, a body) with a timeout. The SDK keeps its own wrapper private; the
//! wait costs no CPU, and returns the moment the handle is ready.

use std::time::Duration;

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
