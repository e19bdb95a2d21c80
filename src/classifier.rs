//! The embedded model and the preprocessing it was trained with.
//!
//! The model is nsfwjs's MobileNetV2 (see `models/README.md`), stored with upstream's own
//! uint8 weights; tract folds them to f32 when the model is loaded, after the batch norms
//! that follow depthwise convolutions are folded into those convolutions
//! (`batch_norm_fold`). Preprocessing reproduces nsfwjs exactly: take the RGB channels
//! (alpha is dropped, as `tf.browser.fromPixels` does), divide by 255, resize to 224×224
//! with TensorFlow's bilinear `align_corners = true` sampling (no crop, no mean/std), and
//! run the model on it as an NHWC f32 tensor (written 225×225 with a zero row and column,
//! which the first convolution would otherwise pad: [`TENSOR_SIDE`]). The output is a
//! softmax over [`Class`].

use crate::batch_norm_fold;
use anyhow::{bail, ensure, Context, Result};
use image::DynamicImage;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt;
use tract_onnx::pb::GraphProto;
use tract_onnx::prelude::*;

/// The shipped int8-weight model; `models/README.md` is its card.
pub const MODEL_ONNX: &[u8; MODEL_ONNX_LEN] =
    include_bytes!("../models/nsfw_mobilenet_v2_int8.onnx");
const MODEL_ONNX_LEN: usize = include_bytes!("../models/nsfw_mobilenet_v2_int8.onnx").len();

/// Side of the square image the model reads.
pub const INPUT_SIDE: usize = 224;

/// Side of the tensor [`preprocess`] writes: the image, plus the row below and the column
/// to the right that the model's first convolution pads with zeros (TensorFlow's `SAME`
/// padding at stride 2). Written here once, they spare tract a padded copy of the whole
/// input in every inference (`Pad`, ~0.8 ms in Wasm); the convolution itself then pads
/// nothing ([`Rewrites::padding_in_input`]).
pub const TENSOR_SIDE: usize = INPUT_SIDE + 1;

/// The changes [`Classifier::from_onnx`] makes to the ONNX graph before tract reads it.
#[derive(Clone, Copy, Debug)]
struct Rewrites {
    /// [`batch_norm_fold`]: batch norms after depthwise convolutions folded into them.
    fold_depthwise_batch_norms: bool,
    /// The first convolution reads the padded tensor [`preprocess`] writes.
    padding_in_input: bool,
}

const ALL_REWRITES: Rewrites = Rewrites {
    fold_depthwise_batch_norms: true,
    padding_in_input: true,
};

/// The five classes, in the model's output order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Class {
    Drawing,
    Hentai,
    Neutral,
    Porn,
    Sexy,
}

impl Class {
    pub const ALL: [Class; 5] = [
        Class::Drawing,
        Class::Hentai,
        Class::Neutral,
        Class::Porn,
        Class::Sexy,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Class::Drawing => "Drawing",
            Class::Hentai => "Hentai",
            Class::Neutral => "Neutral",
            Class::Porn => "Porn",
            Class::Sexy => "Sexy",
        }
    }
}

/// Class probabilities for one image; they sum to 1.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scores([f32; 5]);

impl Scores {
    pub fn new(probabilities: [f32; 5]) -> Self {
        Scores(probabilities)
    }

    pub fn get(&self, class: Class) -> f32 {
        self.0[class as usize]
    }

    /// The most probable class.
    pub fn top(&self) -> Class {
        let mut best = Class::Drawing;
        for class in Class::ALL {
            if self.get(class) > self.get(best) {
                best = class;
            }
        }
        best
    }
}

/// `Drawing=0.0123,Hentai=…` — the form used in the `x-moderation-scores` header.
impl fmt::Display for Scores {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, class) in Class::ALL.iter().enumerate() {
            let separator = if i == 0 { "" } else { "," };
            write!(f, "{separator}{}={:.4}", class.name(), self.get(*class))?;
        }
        Ok(())
    }
}

type Plan = std::sync::Arc<TypedSimplePlan>;

/// The loaded, optimised model, ready to run.
pub struct Classifier {
    plan: Plan,
}

impl Classifier {
    /// Loads and optimises the shipped model (hundreds of ms: do it once, ahead of requests).
    pub fn load() -> Result<Self> {
        Self::from_onnx(MODEL_ONNX)
    }

    /// Loads and optimises an ONNX model of this shape, folding the batch norms that follow
    /// its depthwise convolutions into them ([`crate::batch_norm_fold`]) and moving its
    /// first convolution's padding into the input tensor ([`TENSOR_SIDE`]).
    pub fn from_onnx(onnx: &[u8]) -> Result<Self> {
        Self::build(onnx, ALL_REWRITES)
    }

    fn build(mut onnx: &[u8], rewrites: Rewrites) -> Result<Self> {
        let framework = tract_onnx::onnx();
        let mut proto = framework
            .proto_model_for_read(&mut onnx)
            .context("parsing the ONNX model")?;
        let graph = proto
            .graph
            .as_mut()
            .context("the ONNX model has no graph")?;
        if rewrites.fold_depthwise_batch_norms {
            batch_norm_fold::fold_depthwise_batch_norms(graph);
        }
        let side = if rewrites.padding_in_input {
            take_first_convolution_padding(graph)?;
            TENSOR_SIDE
        } else {
            INPUT_SIDE
        };
        let plan = framework
            .model_for_proto_model(&proto)
            .context("reading the ONNX graph")?
            .with_input_fact(0, f32::fact([1, side, side, 3]).into())?
            .into_optimized()
            .context("optimising the model")?
            .into_runnable()?;
        Ok(Classifier { plan })
    }

    /// Scores an image already preprocessed by [`preprocess`].
    pub fn classify(&self, input: Tensor) -> Result<Scores> {
        let outputs = self.plan.run(tvec!(input.into()))?;
        let probabilities = outputs[0].to_plain_array_view::<f32>()?;
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
        Ok(Scores(scores))
    }

    pub fn classify_image(&self, image: &DynamicImage) -> Result<Scores> {
        self.classify(preprocess(image))
    }

    /// Runs the model once and reports how long each operator took, in plan order: the
    /// benchmark's view of where inference time goes (`examples/operators.rs`).
    pub fn profile(&self, input: Tensor) -> Result<Vec<OperatorTime>> {
        let mut times = Vec::new();
        let mut state = tract_onnx::tract_core::plan::SimpleState::new(&self.plan)?;
        state.run_plan_with_eval(tvec!(input.into()), |session, op_state, node, inputs| {
            let start = std::time::Instant::now();
            let outputs = tract_onnx::tract_core::plan::eval(session, op_state, node, inputs);
            times.push(OperatorTime {
                node: node.name.clone(),
                operator: node.op.name().to_string(),
                ms: start.elapsed().as_secs_f64() * 1e3,
            });
            outputs
        })?;
        Ok(times)
    }
}

/// Makes the model's first convolution read the padded tensor [`preprocess`] writes: its
/// `[top, left, bottom, right]` padding must be `[0, 0, 1, 1]`, the row and column the
/// tensor already holds as zeros, and becomes none.
fn take_first_convolution_padding(graph: &mut GraphProto) -> Result<()> {
    let reader_of = |graph: &GraphProto, tensor: &str| {
        graph
            .node
            .iter()
            .position(|n| n.input.first().is_some_and(|i| i == tensor))
    };
    let input = &graph.input.first().context("the model has no input")?.name;
    let transpose = reader_of(graph, input).context("nothing reads the model input")?;
    let transposed = &graph.node[transpose].output[0];
    let conv = reader_of(graph, transposed).context("nothing reads the transposed input")?;
    let node = &mut graph.node[conv];
    let pads = node.attribute.iter_mut().find(|a| a.name == "pads");
    match pads {
        Some(pads) if node.op_type == "Conv" && pads.ints == [0, 0, 1, 1] => {
            pads.ints = vec![0; 4];
            Ok(())
        }
        _ => bail!(
            "the model's first convolution does not pad by one row and column below and \
             to the right, as the tensor preprocess writes assumes"
        ),
    }
}

/// One operator's share of an inference, from [`Classifier::profile`].
#[derive(Clone, Debug, Serialize)]
pub struct OperatorTime {
    pub node: String,
    pub operator: String,
    pub ms: f64,
}

/// nsfwjs's preprocessing: RGB / 255, then bilinear resize with `align_corners = true`,
/// into a `[1, TENSOR_SIDE, TENSOR_SIDE, 3]` tensor whose last row and column are zero.
pub fn preprocess(image: &DynamicImage) -> Tensor {
    let (pixels, channels) = interleaved(image);
    let stride = image.width() as usize * channels;
    // Grey images repeat their one value in R, G and B, as fromPixels does.
    let offsets: [usize; 3] = if channels >= 3 { [0, 1, 2] } else { [0; 3] };
    // The exact `value / 255.0` of every byte, computed once instead of four times per sample.
    let normalised: [f32; 256] = std::array::from_fn(|v| v as f32 / 255.0);
    let rows = axis_samples(image.height() as usize, INPUT_SIDE);
    let cols = axis_samples(image.width() as usize, INPUT_SIDE);
    let mut data = Vec::with_capacity(TENSOR_SIDE * TENSOR_SIDE * 3);
    for row in &rows {
        let top = &pixels[row.low * stride..][..stride];
        let bottom = &pixels[row.high * stride..][..stride];
        for col in &cols {
            let (left, right) = (col.low * channels, col.high * channels);
            for offset in offsets {
                let at = |line: &[u8], x: usize| normalised[usize::from(line[x + offset])];
                let upper = at(top, left) + (at(top, right) - at(top, left)) * col.fraction;
                let lower =
                    at(bottom, left) + (at(bottom, right) - at(bottom, left)) * col.fraction;
                data.push(upper + (lower - upper) * row.fraction);
            }
        }
        data.extend([0.0; 3]);
    }
    data.resize(TENSOR_SIDE * TENSOR_SIDE * 3, 0.0);
    Tensor::from_shape(&[1, TENSOR_SIDE, TENSOR_SIDE, 3], &data).expect("shape matches data length")
}

/// Where one output row (or column) samples the input, as TensorFlow computes it for
/// `resize_bilinear(align_corners = true, half_pixel_centers = false)`.
struct Sample {
    low: usize,
    high: usize,
    fraction: f32,
}

fn axis_samples(input: usize, output: usize) -> Vec<Sample> {
    let ratio = if output > 1 {
        (input - 1) as f32 / (output - 1) as f32
    } else {
        0.0
    };
    (0..output)
        .map(|i| {
            let source = ratio * i as f32;
            let low = source.floor() as usize;
            Sample {
                low,
                high: (source.ceil() as usize).min(input - 1),
                fraction: source - low as f32,
            }
        })
        .collect()
}

/// The image's 8-bit interleaved samples and how many channels each pixel has, borrowed
/// for the layouts decoders produce and converted to RGB for the rest.
fn interleaved(image: &DynamicImage) -> (Cow<'_, [u8]>, usize) {
    match image {
        DynamicImage::ImageRgb8(buffer) => (Cow::Borrowed(buffer.as_raw()), 3),
        DynamicImage::ImageRgba8(buffer) => (Cow::Borrowed(buffer.as_raw()), 4),
        DynamicImage::ImageLuma8(buffer) => (Cow::Borrowed(buffer.as_raw()), 1),
        DynamicImage::ImageLumaA8(buffer) => (Cow::Borrowed(buffer.as_raw()), 2),
        other => (Cow::Owned(other.to_rgb8().into_raw()), 3),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgb, RgbImage};

    #[test]
    fn model_sized_input_is_only_normalised() {
        let image = RgbImage::from_fn(224, 224, |x, y| Rgb([x as u8, y as u8, 7]));
        let tensor = preprocess(&DynamicImage::ImageRgb8(image));
        let view = tensor.to_plain_array_view::<f32>().unwrap();
        assert_eq!(view[[0, 10, 200, 0]], 200.0 / 255.0);
        assert_eq!(view[[0, 10, 200, 1]], 10.0 / 255.0);
        assert_eq!(view[[0, 10, 200, 2]], 7.0 / 255.0);
    }

    #[test]
    fn align_corners_keeps_the_corner_pixels() {
        let image = RgbImage::from_fn(1000, 30, |x, y| Rgb([(x % 256) as u8, y as u8, 0]));
        let tensor = preprocess(&DynamicImage::ImageRgb8(image));
        let view = tensor.to_plain_array_view::<f32>().unwrap();
        assert_eq!(view[[0, 0, 0, 0]], 0.0);
        assert_eq!(view[[0, 223, 223, 0]], (999 % 256) as f32 / 255.0);
        assert_eq!(view[[0, 223, 223, 1]], 29.0 / 255.0);
    }

    #[test]
    fn upsamples_a_single_pixel_everywhere() {
        let image = RgbImage::from_pixel(1, 1, Rgb([255, 0, 51]));
        let tensor = preprocess(&DynamicImage::ImageRgb8(image));
        let view = tensor.to_plain_array_view::<f32>().unwrap();
        assert_eq!(view[[0, 111, 37, 0]], 1.0);
        assert_eq!(view[[0, 111, 37, 2]], 0.2);
    }

    #[test]
    fn folding_depthwise_batch_norms_keeps_the_scores() {
        let mut onnx: &[u8] = MODEL_ONNX;
        let mut proto = tract_onnx::onnx().proto_model_for_read(&mut onnx).unwrap();
        let graph = proto.graph.as_mut().unwrap();
        // MobileNetV2 has 17 depthwise convolutions, each followed by a batch norm.
        assert_eq!(batch_norm_fold::fold_depthwise_batch_norms(graph), 17);
        let remaining = graph
            .node
            .iter()
            .filter(|n| n.op_type == "BatchNormalization");
        assert_eq!(remaining.count(), 52 - 17);

        let folded = Classifier::build(MODEL_ONNX, ALL_REWRITES).unwrap();
        let unfolded = Classifier::build(
            MODEL_ONNX,
            Rewrites {
                fold_depthwise_batch_norms: false,
                ..ALL_REWRITES
            },
        )
        .unwrap();
        let images = [
            RgbImage::from_fn(300, 200, |x, y| {
                Rgb([x as u8, y as u8, (x * y % 251) as u8])
            }),
            RgbImage::from_fn(224, 224, |x, y| Rgb([200, (x ^ y) as u8, 90])),
        ];
        for image in images {
            let image = DynamicImage::ImageRgb8(image);
            let (a, b) = (
                folded.classify_image(&image).unwrap(),
                unfolded.classify_image(&image).unwrap(),
            );
            for class in Class::ALL {
                assert!((a.get(class) - b.get(class)).abs() < 1e-4, "{a} vs {b}");
            }
        }
    }

    #[test]
    fn padding_written_by_preprocess_matches_the_model_padding_it() {
        let padded = Classifier::load().unwrap();
        let model_pads = Classifier::build(
            MODEL_ONNX,
            Rewrites {
                padding_in_input: false,
                ..ALL_REWRITES
            },
        )
        .unwrap();
        let image = RgbImage::from_fn(300, 200, |x, y| {
            Rgb([x as u8, y as u8, (x * y % 251) as u8])
        });
        let tensor = preprocess(&DynamicImage::ImageRgb8(image));
        let view = tensor.to_plain_array_view::<f32>().unwrap();
        assert_eq!(view.shape(), [1, TENSOR_SIDE, TENSOR_SIDE, 3]);
        assert!(view
            .slice(tract_ndarray::s![.., INPUT_SIDE, .., ..])
            .iter()
            .all(|v| *v == 0.0));
        assert!(view
            .slice(tract_ndarray::s![.., .., INPUT_SIDE, ..])
            .iter()
            .all(|v| *v == 0.0));
        let image_only = view
            .slice(tract_ndarray::s![.., ..INPUT_SIDE, ..INPUT_SIDE, ..])
            .to_owned();

        let a = padded.classify(tensor.clone()).unwrap();
        let b = model_pads.classify(image_only.into_tensor()).unwrap();
        for class in Class::ALL {
            assert!((a.get(class) - b.get(class)).abs() < 1e-6, "{a} vs {b}");
        }
    }

    #[test]
    fn scores_report_top_class_and_header_form() {
        let scores = Scores::new([0.1, 0.0, 0.7, 0.15, 0.05]);
        assert_eq!(scores.top(), Class::Neutral);
        assert_eq!(
            scores.to_string(),
            "Drawing=0.1000,Hentai=0.0000,Neutral=0.7000,Porn=0.1500,Sexy=0.0500"
        );
    }
}
