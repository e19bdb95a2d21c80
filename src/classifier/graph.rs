//! The edits made to the ONNX graph when the model is loaded, before tract reads it. The
//! model file keeps upstream's weights unchanged; these run once, at build time inside the
//! snapshot, so their cost never reaches a request.
//!
//! - **Depthwise batch norms folded** ([`fold_depthwise_batch_norms`]). tract folds a
//!   `BatchNormalization` into the convolution before it only when the convolution is not
//!   grouped, so every depthwise layer of MobileNetV2 would keep its batch norm as a
//!   separate multiply and add over the whole activation (17 layers). The convolution's
//!   kernel is scaled per output channel by `γ / √(σ² + ε)` and given the bias
//!   `β − μ·γ / √(σ² + ε)`, both as ONNX nodes over the existing weight nodes, which tract
//!   evaluates as constants at load.
//! - **Segments** ([`segments`]): the network cut at tensors that are the only thing one
//!   part passes to the next (block boundaries), so an inference can run part by part, in
//!   one instance or handed across instances with the tensor at the cut.
//! - **Input padding taken by preprocessing** ([`take_first_convolution_padding`]): the
//!   first convolution reads the zero-padded tensor `preprocess` writes, and pads nothing.

use super::preprocess::{INPUT_SIDE, TENSOR_SIDE};
use anyhow::{bail, Context, Result};
use std::collections::HashSet;
use tract_onnx::pb::type_proto;
use tract_onnx::pb::{tensor_proto::DataType, GraphProto, NodeProto, TensorProto, ValueInfoProto};

/// Which edits [`apply`] makes; tests switch each off to compare with the original graph.
#[derive(Clone, Copy, Debug)]
pub(super) struct Edits {
    pub fold_depthwise_batch_norms: bool,
    pub padding_in_input: bool,
}

pub(super) const ALL_EDITS: Edits = Edits {
    fold_depthwise_batch_norms: true,
    padding_in_input: true,
};

/// Makes the chosen edits and returns the side of the square input the edited graph reads.
pub(super) fn apply(graph: &mut GraphProto, edits: Edits) -> Result<usize> {
    if edits.fold_depthwise_batch_norms {
        fold_depthwise_batch_norms(graph);
    }
    if edits.padding_in_input {
        take_first_convolution_padding(graph)?;
        Ok(TENSOR_SIDE)
    } else {
        Ok(INPUT_SIDE)
    }
}

/// Rewrites every `Conv(group > 1) → BatchNormalization` pair of `graph` into one `Conv`,
/// and returns how many it folded. Pairs it cannot fold exactly (a convolution that
/// already has a bias, or whose output is read elsewhere too) are left as they are.
pub(super) fn fold_depthwise_batch_norms(graph: &mut GraphProto) -> usize {
    let mut folded = 0;
    let mut index = 0;
    while index < graph.node.len() {
        let node = &graph.node[index];
        if node.op_type == "BatchNormalization" && node.input.len() == 5 {
            if let Some(conv) = foldable_conv(graph, &node.input[0]) {
                // The batch norm is gone and new nodes sit before it: skip past them.
                index += fold(graph, conv, index);
                folded += 1;
                continue;
            }
        }
        index += 1;
    }
    folded
}

/// The index of the grouped, bias-less `Conv` whose output is `name` and only feeds one node.
fn foldable_conv(graph: &GraphProto, name: &str) -> Option<usize> {
    let conv = graph
        .node
        .iter()
        .position(|n| n.output.first().is_some_and(|o| o == name))?;
    let node = &graph.node[conv];
    let grouped = node.attribute.iter().any(|a| a.name == "group" && a.i > 1);
    let readers = graph
        .node
        .iter()
        .flat_map(|n| &n.input)
        .filter(|i| *i == name)
        .count();
    let is_graph_output = graph.output.iter().any(|o| o.name == name);
    (node.op_type == "Conv" && grouped && node.input.len() == 2 && readers == 1 && !is_graph_output)
        .then_some(conv)
}

/// Folds the batch norm at `batch_norm` into the convolution at `conv` (which precedes it)
/// and returns how many nodes it inserted before the convolution.
fn fold(graph: &mut GraphProto, conv: usize, batch_norm: usize) -> usize {
    let norm = graph.node.remove(batch_norm);
    let epsilon = norm
        .attribute
        .iter()
        .find(|a| a.name == "epsilon")
        .map_or(1e-5, |a| a.f);
    let [_, gamma, beta, mean, variance] = [0, 1, 2, 3, 4].map(|i| norm.input[i].clone());
    let out = norm.output[0].clone();
    let name = |suffix: &str| format!("{out}/fold_{suffix}");

    graph.initializer.push(TensorProto {
        name: name("epsilon"),
        data_type: DataType::Float as i32,
        float_data: vec![epsilon],
        ..TensorProto::default()
    });
    graph.initializer.push(TensorProto {
        name: name("per_output_channel"),
        data_type: DataType::Int64 as i32,
        dims: vec![4],
        int64_data: vec![-1, 1, 1, 1],
        ..TensorProto::default()
    });

    let kernel = graph.node[conv].input[1].clone();
    let nodes = [
        node("Add", [&variance, &name("epsilon")], &name("variance")),
        node("Sqrt", [&name("variance")], &name("deviation")),
        node("Div", [&gamma, &name("deviation")], &name("scale")),
        node(
            "Reshape",
            [&name("scale"), &name("per_output_channel")],
            &name("kernel_scale"),
        ),
        node("Mul", [&kernel, &name("kernel_scale")], &name("kernel")),
        node("Mul", [&mean, &name("scale")], &name("shift")),
        node("Sub", [&beta, &name("shift")], &name("bias")),
    ];
    let inserted = nodes.len();

    let conv_node = &mut graph.node[conv];
    conv_node.input[1] = name("kernel");
    conv_node.input.push(name("bias"));
    conv_node.output[0] = out;
    // The convolution precedes its batch norm, so it is still at `conv`.
    graph.node.splice(conv..conv, nodes);
    inserted
}

fn node<const N: usize>(op_type: &str, inputs: [&String; N], output: &str) -> NodeProto {
    NodeProto {
        op_type: op_type.to_string(),
        name: output.to_string(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.to_string()],
        ..NodeProto::default()
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

/// Which tensors are constants: initializers, and the outputs of nodes that read only
/// constants (weight dequantisation, the batch-norm fold's arithmetic).
fn constants(graph: &GraphProto) -> HashSet<&str> {
    let mut constant: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    for node in &graph.node {
        if node
            .input
            .iter()
            .all(|i| i.is_empty() || constant.contains(i.as_str()))
        {
            constant.extend(node.output.iter().map(String::as_str));
        }
    }
    constant
}

/// The places the graph can be cut: `(node index, tensor)` such that, constants aside,
/// `tensor` (produced at or before the node) is the only value the nodes after it read
/// from the nodes up to it. In node order.
pub(super) fn cut_points(graph: &GraphProto) -> Vec<(usize, String)> {
    let constant = constants(graph);
    let computed = |node: &NodeProto| node.output.iter().any(|o| !constant.contains(o.as_str()));
    // Where each value is last read; graph outputs are read "at the end".
    let mut last_read: std::collections::HashMap<&str, usize> = Default::default();
    for (index, node) in graph.node.iter().enumerate() {
        for input in &node.input {
            last_read.insert(input.as_str(), index);
        }
    }
    for output in &graph.output {
        last_read.insert(output.name.as_str(), usize::MAX);
    }
    let mut live: Vec<&str> = graph.input.iter().map(|i| i.name.as_str()).collect();
    let mut cuts = Vec::new();
    for (index, node) in graph.node.iter().enumerate() {
        if !computed(node) {
            continue;
        }
        live.extend(node.output.iter().map(String::as_str));
        live.retain(|t| last_read.get(t).is_some_and(|&last| last > index));
        if let [only] = live[..] {
            if index + 1 < graph.node.len() && last_read.get(only) != Some(&usize::MAX) {
                cuts.push((index, only.to_string()));
            }
        }
    }
    cuts
}

/// The graph cut into `count` segments of about the same number of convolutions (a
/// proxy for their cost), each a graph of its own: segment `i` reads the tensor segment
/// `i - 1` outputs. The first reads the model's input, the last gives its output.
pub(super) fn segments(graph: &GraphProto, count: usize) -> Result<Vec<GraphProto>> {
    let cuts = cut_points(graph);
    let is_conv = |n: &NodeProto| n.op_type == "Conv";
    let total = graph.node.iter().filter(|n| is_conv(n)).count();
    let mut chosen: Vec<&(usize, String)> = Vec::new();
    for part in 1..count {
        let target = total * part / count;
        let best = cuts
            .iter()
            .filter(|(at, _)| chosen.last().is_none_or(|(last, _)| at > last))
            .min_by_key(|(at, _)| {
                let convs = graph.node[..=*at].iter().filter(|n| is_conv(n)).count();
                convs.abs_diff(target)
            })
            .context("not enough places to cut the graph")?;
        chosen.push(best);
    }
    let input = graph.input.first().context("the model has no input")?;
    let mut bounds: Vec<(usize, ValueInfoProto)> = vec![(0, input.clone())];
    for (at, tensor) in &chosen {
        bounds.push((at + 1, untyped(input, tensor)));
    }
    let mut parts = Vec::with_capacity(count);
    for (i, (start, input)) in bounds.iter().enumerate() {
        let (end, output) = match bounds.get(i + 1) {
            Some((end, next_input)) => (*end, vec![next_input.clone()]),
            None => (graph.node.len(), graph.output.clone()),
        };
        parts.push(subgraph(graph, *start..end, input.clone(), output));
    }
    Ok(parts)
}

/// A float input named `name`, its shape left to the loader.
fn untyped(like: &ValueInfoProto, name: &str) -> ValueInfoProto {
    let mut info = like.clone();
    info.name = name.to_string();
    if let Some(type_proto::Value::TensorType(tensor)) =
        info.r#type.as_mut().and_then(|t| t.value.as_mut())
    {
        tensor.shape = None;
    }
    info
}

/// The computed nodes in `range`, with the constant nodes and initializers they need.
fn subgraph(
    graph: &GraphProto,
    range: std::ops::Range<usize>,
    input: ValueInfoProto,
    output: Vec<ValueInfoProto>,
) -> GraphProto {
    let constant = constants(graph);
    let mut needed: HashSet<&str> = HashSet::new();
    let mut keep = vec![false; graph.node.len()];
    for index in range.clone() {
        let node = &graph.node[index];
        if node.output.iter().all(|o| constant.contains(o.as_str())) {
            continue;
        }
        keep[index] = true;
        needed.extend(node.input.iter().map(String::as_str));
    }
    // Constant nodes feeding the kept ones, transitively (they precede their readers).
    for index in (0..graph.node.len()).rev() {
        let node = &graph.node[index];
        let feeds = node.output.iter().any(|o| needed.contains(o.as_str()));
        if !keep[index] && feeds && node.output.iter().all(|o| constant.contains(o.as_str())) {
            keep[index] = true;
            needed.extend(node.input.iter().map(String::as_str));
        }
    }
    GraphProto {
        node: graph
            .node
            .iter()
            .zip(&keep)
            .filter(|(_, kept)| **kept)
            .map(|(node, _)| node.clone())
            .collect(),
        initializer: graph
            .initializer
            .iter()
            .filter(|t| needed.contains(t.name.as_str()))
            .cloned()
            .collect(),
        input: vec![input],
        output,
        name: graph.name.clone(),
        ..GraphProto::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classifier::preprocess::preprocess;
    use crate::classifier::{Arithmetic, Class, Classifier, MODEL_ONNX};
    use image::{DynamicImage, Rgb, RgbImage};
    use tract_onnx::prelude::*;

    #[test]
    fn folding_depthwise_batch_norms_keeps_the_scores() {
        let mut onnx: &[u8] = MODEL_ONNX;
        let mut proto = tract_onnx::onnx().proto_model_for_read(&mut onnx).unwrap();
        let graph = proto.graph.as_mut().unwrap();
        // MobileNetV2 has 17 depthwise convolutions, each followed by a batch norm.
        assert_eq!(fold_depthwise_batch_norms(graph), 17);
        let remaining = graph
            .node
            .iter()
            .filter(|n| n.op_type == "BatchNormalization");
        assert_eq!(remaining.count(), 52 - 17);

        let folded = Classifier::build(MODEL_ONNX, ALL_EDITS, Arithmetic::SHIPPED).unwrap();
        let unfolded = Classifier::build(
            MODEL_ONNX,
            Edits {
                fold_depthwise_batch_norms: false,
                ..ALL_EDITS
            },
            Arithmetic::SHIPPED,
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
            Edits {
                padding_in_input: false,
                ..ALL_EDITS
            },
            Arithmetic::SHIPPED,
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
    fn the_network_cuts_at_block_boundaries_and_segments_score_like_the_whole() {
        let mut onnx: &[u8] = MODEL_ONNX;
        let framework = tract_onnx::onnx();
        let mut proto = framework.proto_model_for_read(&mut onnx).unwrap();
        let graph = proto.graph.as_mut().unwrap();
        let side = apply(graph, ALL_EDITS).unwrap();
        let cuts = cut_points(graph);
        // MobileNetV2: one cut after each of its 17 blocks at least, and none inside a
        // residual block (where the skip and the block's branch are both live).
        assert!(cuts.len() >= 17, "{} cuts", cuts.len());
        let parts = segments(graph, 4).unwrap();
        assert_eq!(parts.len(), 4);
        let constant = constants(graph);
        let computed = |g: &GraphProto| {
            g.node
                .iter()
                .filter(|n| n.output.iter().any(|o| !constant.contains(o.as_str())))
                .count()
        };
        assert_eq!(parts.iter().map(computed).sum::<usize>(), computed(graph));

        let whole = framework
            .model_for_proto_model(&proto)
            .unwrap()
            .with_input_fact(0, f32::fact([1, side, side, 3]).into())
            .unwrap()
            .into_optimized()
            .unwrap()
            .into_runnable()
            .unwrap();
        let segmented = Classifier::load().unwrap();
        assert_eq!(segmented.segment_count(), 4);
        let image = RgbImage::from_fn(300, 200, |x, y| {
            Rgb([x as u8, y as u8, (x * y % 251) as u8])
        });
        let tensor = preprocess(&DynamicImage::ImageRgb8(image));
        let expected = whole.run(tvec!(tensor.clone().into())).unwrap();
        let expected = expected[0].to_plain_array_view::<f32>().unwrap();
        let actual = segmented.classify(tensor).unwrap();
        for (i, class) in Class::ALL.iter().enumerate() {
            assert!(
                (actual.get(*class) - expected[[0, i]]).abs() < 1e-6,
                "{actual} vs {expected:?}"
            );
        }
    }
}
