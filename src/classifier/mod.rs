//! Pixels to [`Scores`]: the embedded model, loaded and run with tract. Knows nothing of
//! HTTP or the policy.
//!
//! The model is nsfwjs's MobileNetV2 (`models/README.md` is its card), stored with
//! upstream's own uint8 weights, which tract dequantises to f32 when the model is loaded
//! (f32 compute: tract's int8 paths are far slower and static activation quantisation moved
//! scores). [`preprocess`] reproduces nsfwjs's input exactly, [`graph`] edits the ONNX
//! graph at load, and inside Wasm the 1×1 convolutions run on our own matrix-multiply
//! kernel (`wasm_gemm`), registered with tract-linalg. The output is a softmax over
//! [`Class`].

mod graph;
pub mod preprocess;
mod profile;
mod scores;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod wasm_gemm;

pub use preprocess::{preprocess, INPUT_SIDE, TENSOR_SIDE};
pub use profile::OperatorTime;
pub use scores::{Class, Scores};

use anyhow::{ensure, Context};
use image::DynamicImage;
use tract_onnx::prelude::*;

/// The shipped int8-weight model.
pub const MODEL_ONNX: &[u8; MODEL_ONNX_LEN] =
    include_bytes!("../../models/nsfw_mobilenet_v2_int8.onnx");
const MODEL_ONNX_LEN: usize = include_bytes!("../../models/nsfw_mobilenet_v2_int8.onnx").len();

/// Why the model could not give scores. Callers decide what an image gets then (the
/// policy's outcome for images that cannot be judged).
#[derive(Debug)]
pub enum ModelError {
    /// The ONNX model could not be parsed, edited or optimised.
    Load(anyhow::Error),
    /// Running the model failed or gave output of the wrong shape.
    Inference(anyhow::Error),
}

impl std::fmt::Display for ModelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModelError::Load(e) => write!(f, "model failed to load: {e:#}"),
            ModelError::Inference(e) => write!(f, "inference failed: {e:#}"),
        }
    }
}

impl std::error::Error for ModelError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ModelError::Load(e) | ModelError::Inference(e) => Some(e.as_ref()),
        }
    }
}

type Plan = std::sync::Arc<TypedSimplePlan>;

/// Which model judged: a digest of the ONNX file it was loaded from. Verdicts are only
/// reused for the same model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelIdentity(pub [u8; 32]);

/// The loaded, optimised model, ready to run.
pub struct Classifier {
    plan: Plan,
    identity: ModelIdentity,
}

impl Classifier {
    /// Loads and optimises the shipped model (hundreds of ms: do it once, ahead of requests).
    pub fn load() -> Result<Self, ModelError> {
        Self::from_onnx(MODEL_ONNX)
    }

    /// Loads and optimises an ONNX model of this shape, with the load-time graph edits.
    pub fn from_onnx(onnx: &[u8]) -> Result<Self, ModelError> {
        Self::build(onnx, graph::ALL_EDITS).map_err(ModelError::Load)
    }

    pub fn identity(&self) -> ModelIdentity {
        self.identity
    }

    fn build(mut onnx: &[u8], edits: graph::Edits) -> anyhow::Result<Self> {
        let identity = ModelIdentity(*blake3::hash(onnx).as_bytes());
        let framework = tract_onnx::onnx();
        let mut proto = framework
            .proto_model_for_read(&mut onnx)
            .context("parsing the ONNX model")?;
        let graph = proto
            .graph
            .as_mut()
            .context("the ONNX model has no graph")?;
        let side = graph::apply(graph, edits)?;
        let plan = framework
            .model_for_proto_model(&proto)
            .context("reading the ONNX graph")?
            .with_input_fact(0, f32::fact([1, side, side, 3]).into())?
            .into_optimized()
            .context("optimising the model")?
            .into_runnable()?;
        Ok(Classifier { plan, identity })
    }

    /// Scores an image already preprocessed by [`preprocess`].
    pub fn classify(&self, input: Tensor) -> Result<Scores, ModelError> {
        self.run(input).map_err(ModelError::Inference)
    }

    fn run(&self, input: Tensor) -> anyhow::Result<Scores> {
        let outputs = self.plan.run(tvec!(input.into()))?;
        let output = outputs.first().context("the model returned no output")?;
        let probabilities = output.to_plain_array_view::<f32>()?;
        ensure!(
            probabilities.len() == 5,
            "model returned {} values",
            probabilities.len()
        );
        let mut scores = [0.0; 5];
        scores
            .iter_mut()
            .zip(probabilities.iter())
            .for_each(|(s, p)| *s = *p);
        Ok(Scores::new(scores))
    }

    pub fn classify_image(&self, image: &DynamicImage) -> Result<Scores, ModelError> {
        self.classify(preprocess(image))
    }
}
