//! Folds the batch normalisations that follow depthwise convolutions into the convolutions.
//!
//! tract folds a `BatchNormalization` into the convolution before it only when the
//! convolution is not grouped, so in MobileNetV2 every depthwise layer keeps its batch
//! norm as a separate multiply and add over the whole activation (17 layers, ~2.3 ms of a
//! Wasm inference). This rewrite works on the ONNX graph before tract reads it: the
//! convolution's kernel is scaled per output channel by `γ / √(σ² + ε)` and given the bias
//! `β − μ·γ / √(σ² + ε)`, both as ONNX nodes over the existing weight nodes. The model
//! file keeps upstream's weights unchanged; tract evaluates the new constant nodes when it
//! loads the model, which is done once at build time, in the snapshot.

use tract_onnx::pb::{tensor_proto::DataType, GraphProto, NodeProto, TensorProto};

/// Rewrites every `Conv(group > 1) → BatchNormalization` pair of `graph` into one `Conv`,
/// and returns how many it folded. Pairs it cannot fold exactly (a convolution that
/// already has a bias, or whose output is read elsewhere too) are left as they are.
pub fn fold_depthwise_batch_norms(graph: &mut GraphProto) -> usize {
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
