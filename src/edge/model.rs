//! The process-wide classifier.
//!
//! Loading and optimising the model costs hundreds of milliseconds, far beyond a request's
//! CPU budget, so it happens once: at build time when the module is pre-initialised
//! (Wizer calls `wizer-initialize`, and the loaded model is part of the snapshot), or
//! lazily on first use when it is not.

use edge_moderation::classifier::Classifier;
use edge_moderation::moderation::{moderate as run, Moderation};
use edge_moderation::policy::Policy;
use edge_moderation::sniff::ImageFormat;
use std::sync::OnceLock;

static CLASSIFIER: OnceLock<Result<Classifier, String>> = OnceLock::new();

fn classifier() -> &'static Result<Classifier, String> {
    CLASSIFIER.get_or_init(|| Classifier::load().map_err(|e| format!("{e:#}")))
}

/// Moderates one image with the shared classifier.
pub fn moderate(bytes: &[u8], format: ImageFormat, policy: &Policy) -> Moderation {
    match classifier() {
        Ok(classifier) => run(bytes, format, policy, classifier),
        Err(why) => Moderation::undecodable(policy, format!("model unavailable: {why}")),
    }
}

extern "C" {
    fn __wasm_call_ctors();
}

/// Wizer's build-time hook: load the model so the snapshot carries it ready to run.
#[export_name = "wizer-initialize"]
pub extern "C" fn wizer_initialize() {
    // tract registers its kernels in static constructors, which a reactor-style call like
    // this one does not run by itself; without them the snapshot traps at inference.
    unsafe { __wasm_call_ctors() };
    super::snapshot::prepare(|| {
        let _ = classifier();
    });
}
