//! Pixels to [`Scores`]: the embedded model, loaded and run with tract. Knows nothing of
//! HTTP or the policy.
//!
//! The model is nsfwjs's MobileNetV2 (`models/README.md` is its card), stored with
//! upstream's own uint8 weights, which tract dequantises to f32 when the model is loaded
//! (f32 compute: tract's int8 paths are far slower and static activation quantisation moved
//! scores). [`preprocess`] reproduces nsfwjs's input exactly, [`graph`] edits the ONNX
//! graph at load. Inside Wasm the 1×1 convolutions run in 16-bit integers on our own
//! operator ([`pointwise`], [`Arithmetic`]), and the remaining f32 matrix products on our
//! own kernel (`wasm_gemm`), registered with tract-linalg. The output is a softmax over
//! [`Class`].

mod depthwise;
mod graph;
mod pointwise;
pub mod preprocess;
mod profile;
mod scores;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod wasm_gemm;

pub use pointwise::{Arithmetic, Rewritten};
pub use preprocess::{
    preprocess, preprocess_over, transparency, Backdrop, INPUT_SIDE, TENSOR_SIDE,
};
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

/// Which model judged: a digest of the ONNX file it was loaded from and, for integer 1×1
/// convolutions, of that arithmetic (it moves scores by up to ~1.5e-4, enough to move a
/// score across a threshold). Verdicts are only reused for the same model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelIdentity(pub [u8; 32]);

/// How many segments the network is cut into ([`graph::segments`]): the unit of work an
/// inference can be handed across instances in. Each is a quarter of the convolutions.
pub const SEGMENTS: usize = 4;

/// The loaded, optimised model, ready to run: one plan per segment of the network.
pub struct Classifier {
    segments: Vec<Plan>,
    identity: ModelIdentity,
    rewritten: Rewritten,
}

impl Classifier {
    /// Loads and optimises the shipped model (hundreds of ms: do it once, ahead of requests).
    pub fn load() -> Result<Self, ModelError> {
        Self::from_onnx(MODEL_ONNX)
    }

    /// The shipped model with its 1×1 convolutions in the given arithmetic: tests run the
    /// Wasm build's integers natively with it.
    pub fn load_with(arithmetic: Arithmetic) -> Result<Self, ModelError> {
        Self::build(MODEL_ONNX, graph::ALL_EDITS, arithmetic).map_err(ModelError::Load)
    }

    /// Loads and optimises an ONNX model of this shape, with the load-time graph edits.
    pub fn from_onnx(onnx: &[u8]) -> Result<Self, ModelError> {
        Self::build(onnx, graph::ALL_EDITS, Arithmetic::SHIPPED).map_err(ModelError::Load)
    }

    /// Which 1×1 convolutions run in integers ([`Arithmetic::Integer`]).
    pub fn rewritten(&self) -> Rewritten {
        self.rewritten
    }

    pub fn identity(&self) -> ModelIdentity {
        self.identity
    }

    fn build(mut onnx: &[u8], edits: graph::Edits, arithmetic: Arithmetic) -> anyhow::Result<Self> {
        let mut digest = blake3::Hasher::new();
        digest.update(onnx);
        if arithmetic == Arithmetic::Integer {
            digest.update(pointwise::IDENTITY);
            digest.update(depthwise::IDENTITY);
        }
        let identity = ModelIdentity(*digest.finalize().as_bytes());
        let framework = tract_onnx::onnx();
        let mut proto = framework
            .proto_model_for_read(&mut onnx)
            .context("parsing the ONNX model")?;
        let mut graph = proto.graph.take().context("the ONNX model has no graph")?;
        let side = graph::apply(&mut graph, edits)?;
        let mut fact = f32::fact([1, side, side, 3]);
        let mut segments = Vec::with_capacity(SEGMENTS);
        let mut rewritten = Rewritten::default();
        for (index, part) in graph::segments(&graph, SEGMENTS)?.into_iter().enumerate() {
            let mut model = proto.clone();
            model.graph = Some(part);
            let mut typed = framework
                .model_for_proto_model(&model)
                .with_context(|| format!("reading segment {index} of the ONNX graph"))?
                .with_input_fact(0, fact.clone().into())?
                .into_typed()?;
            if arithmetic == Arithmetic::Integer {
                typed = typed.into_decluttered()?;
                let done = pointwise::rewrite(&mut typed)
                    .with_context(|| format!("integer convolutions in segment {index}"))?;
                rewritten.layers += done.layers;
                rewritten.inexact_rows += done.inexact_rows;
                rewritten.fused += depthwise::rewrite(&mut typed)
                    .with_context(|| format!("fused expansions in segment {index}"))?;
            }
            let plan = typed
                .into_optimized()
                .with_context(|| format!("optimising segment {index}"))?
                .into_runnable()?;
            let output = plan.model().output_fact(0)?;
            let shape = output
                .shape
                .as_concrete()
                .context("a segment output without a shape")?;
            fact = f32::fact(shape);
            segments.push(plan);
        }
        Ok(Classifier {
            segments,
            identity,
            rewritten,
        })
    }

    /// How many segments an inference runs through.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Runs segment `index` on what the one before produced (for the first, a tensor from
    /// [`preprocess`]) and returns what it produces: for the last, the class probabilities.
    pub fn run_segment(&self, index: usize, input: Tensor) -> Result<Tensor, ModelError> {
        let plan = self.segments.get(index).ok_or_else(|| {
            ModelError::Inference(anyhow::anyhow!("no segment {index} in this model"))
        })?;
        let run = || -> anyhow::Result<Tensor> {
            let mut outputs = plan.run(tvec!(input.into()))?;
            ensure!(!outputs.is_empty(), "segment {index} returned nothing");
            Ok(outputs.remove(0).into_tensor())
        };
        run().map_err(ModelError::Inference)
    }

    /// Reads the last segment's output as scores.
    pub fn scores(&self, output: &Tensor) -> Result<Scores, ModelError> {
        let read = || -> anyhow::Result<Scores> {
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
        };
        read().map_err(ModelError::Inference)
    }

    /// Scores an image already preprocessed by [`preprocess`], running every segment.
    pub fn classify(&self, input: Tensor) -> Result<Scores, ModelError> {
        let mut tensor = input;
        for index in 0..self.segments.len() {
            tensor = self.run_segment(index, tensor)?;
        }
        self.scores(&tensor)
    }

    pub fn classify_image(&self, image: &DynamicImage) -> Result<Scores, ModelError> {
        self.classify(preprocess(image))
    }
}
