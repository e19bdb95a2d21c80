//! The Fastly Compute glue: everything here calls Compute hostcalls, and is tested under
//! Viceroy (`tests/proxy.rs`); the decisions themselves live in the library.
//!
//! - `context`: what is known of a request before it is sent on (method, host, path,
//!   the policy in force);
//! - `config`: the Config Store → the policy;
//! - `origin`: forwarding to the origin (Range widening) and its failures;
//! - `body`: sniffing and bounded buffering of any body, in either direction;
//! - `proxy`: the response direction: which responses are judged, and how;
//! - `cache`: the verdict cache (Core Cache);
//! - `model`: the shared classifier and the Wizer hook that loads it into the snapshot;
//! - `siblings`: handing parts of an inference to sibling instances, and serving them;
//! - `upload`: the request direction: bodies judged before the origin sees them;
//! - `respond`: what the client receives for each outcome.

pub mod body;
pub mod cache;
pub mod classify;
pub mod config;
pub mod context;
pub mod decisions;
pub mod known;
pub mod model;
pub mod origin;
pub mod proxy;
pub mod respond;
pub mod siblings;
pub mod upload;
pub mod wait;
