//! Edge image moderation, free of the Fastly runtime.
//!
//! Everything that decides what happens to an image lives here so it is tested natively:
//! recognising an image ([`sniff`]), decoding it within limits ([`decode`]), scoring it with
//! the embedded model ([`classifier`]), mapping scores to a verdict ([`policy`]) and
//! producing the rewritten image ([`rewrite`]). [`moderation`] runs them in order for one
//! response body. `main.rs` only connects this to Fastly Compute. Built for Wasm, the crate
//! also carries the matrix-multiply kernel inference runs on there (`wasm_gemm`).

mod batch_norm_fold;
pub mod classifier;
pub mod decode;
pub mod moderation;
pub mod policy;
pub mod rewrite;
pub mod sniff;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod wasm_gemm;
