//! Inside Wasm, inference runs its 1×1 convolutions in 16-bit integers
//! (`src/classifier/pointwise.rs`), the rest on this crate's f32 matrix-multiply kernel
//! (`src/classifier/wasm_gemm.rs`) and tract's Wasm kernels; natively, on tract's x86
//! kernels. The scores the built module reports through `viceroy serve` must equal native
//! inference's in the same arithmetic ([`Arithmetic::Integer`], whose integer sums are
//! exact) on the same bytes. Needs `bin/main.wasm` (`make test` builds it).

mod support;

use edge_moderation::classifier::{Arithmetic, Classifier};
use edge_moderation::headers;
use edge_moderation::media::ImageFormat;
use edge_moderation::moderation::known::KnownLists;
use edge_moderation::moderation::moderate;
use edge_moderation::policy::Policy;
use support::fixtures::{bytes_of, format_images};
use support::{probabilities, Origin, Service};

#[test]
fn wasm_inference_scores_like_native_inference() {
    let fixtures = format_images();
    let origin = Origin::start(fixtures.clone());
    let service = Service::start("kernel", origin.port, None);
    let classifier = Classifier::load_with(Arithmetic::Integer).expect("the shipped model loads");
    let policy = Policy::default();
    for path in ["/photo.jpg", "/rocket.png", "/rocket.webp", "/photo.gif"] {
        let reply = service.get(path);
        let wasm = probabilities(reply.header(headers::SCORES).expect("scores header"));
        let bytes = bytes_of(&fixtures, path);
        let format = ImageFormat::sniff(&bytes).expect("an image");
        let native = moderate(&bytes, format, &policy, &KnownLists::none(), &classifier)
            .scores
            .expect("classified")
            .to_string();
        assert_eq!(wasm.len(), 5, "{path}: {wasm:?}");
        for (w, n) in wasm.iter().zip(probabilities(&native)) {
            // The header has four decimals; summation order differs between the kernels.
            assert!(
                (w - n).abs() <= 2e-4,
                "{path}: wasm {wasm:?} native {native}"
            );
        }
    }
}
