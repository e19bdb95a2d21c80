//! Edge image moderation for Fastly Compute: every image that crosses the service is
//! judged by an embedded neural network, and the operator's policy passes, blocks or
//! rewrites it.
//!
//! # Layout
//!
//! Layers, each using only the ones above it:
//! - [`media`]: bytes and pixels. Which format a body is (by its bytes), what a
//!   `Content-Type` claims, decoding within limits, obscuring, encoding.
//! - [`classifier`]: pixels to [`classifier::Scores`]. The embedded model, its
//!   preprocessing, the load-time graph edits, and inside Wasm our matrix-multiply kernel.
//! - [`policy`]: the operator's JSON. Schema, defaults, validation, scores to a verdict.
//! - [`moderation`]: one image body in, one [`moderation::Moderation`] (an
//!   [`moderation::Outcome`], a reason, scores, timings) out; the stages in order, and the
//!   instance's memory budget they plan with.
//! - [`decision_log`]: the JSON record logged for each judged image (what it may hold).
//! - [`headers`]: the header names the service writes.
//! - [`snapshot`]: the Wizer snapshot's allocator (wasm32), and its books (pure).
//!
//! The binary's `edge/` module connects this to Fastly Compute: request context, config
//! store, origin, body inspection, replies, the shared classifier and the Wizer hook.
//!
//! **The layering rule:** only `edge/` (in the binary) and [`snapshot`] may name `fastly`
//! or Wizer. Everything here is pure Rust, runs natively and is tested with `cargo test`
//! on the host; the Viceroy suites test the glue.
//!
//! # Errors
//!
//! Typed errors where a caller decides what happens next, each case mapped to a policy
//! outcome: [`policy::PolicyError`] (the glue logs it and applies the defaults),
//! [`media::decode::DecodeError`] (`TooLarge` → `on_oversize`; `Corrupt` and `Unsupported`
//! → `on_undecodable`), [`classifier::ModelError`] (→ `on_undecodable`). Where no caller
//! branches on the cause (obscuring and encoding a rewrite; the model's internals),
//! `anyhow` carries the chain, and it ends as a [`moderation::Reason`] the client can
//! read. No function here panics on input-derived data.

pub mod classifier;
pub mod decision_log;
pub mod headers;
pub mod media;
pub mod moderation;
pub mod policy;
pub mod snapshot;
pub mod upload;
