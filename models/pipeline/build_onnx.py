"""Rebuilds nsfwjs's MobileNetV2 as ONNX whose weights are upstream's own uint8 tensors.

Input:  build/model.json + build/weights.bin (from extract_upstream.cjs).
Output: the int8-weight ONNX model (path given as the first argument).

Every upstream weight is stored as its original uint8 tensor q plus the per-tensor
scale and min from the manifest, and is rebuilt in the graph as
    Cast(q -> f64) * scale + min -> Cast(f32)
which is bit-for-bit what tfjs computes when it loads the model (JavaScript evaluates
`q * scale + min` in f64 and stores the result in a Float32Array). tract folds these
constant subgraphs at load time, so inference runs at fp32 speed on upstream's exact
weights. No activation is quantized and Softmax stays in plain f32.
"""

import json
import sys
from itertools import permutations

import numpy as np
import onnx
import tensorflow as tf
import tf2onnx
from onnx import TensorProto, helper, numpy_helper
from tf2onnx.optimizer import back_to_back_optimizer

CLASSES = ["Drawing", "Hentai", "Neutral", "Porn", "Sexy"]
INPUT_NAME = "input"
OUTPUT_NAME = "probabilities"


def load_upstream():
    manifest_and_topology = json.load(open("build/model.json"))
    raw = np.fromfile("build/weights.bin", dtype=np.uint8)
    weights, offset = {}, 0
    for spec in manifest_and_topology["weightsManifest"][0]["weights"]:
        count = int(np.prod(spec["shape"]))
        q = raw[offset : offset + count].reshape(spec["shape"])
        offset += count
        quant = spec["quantization"]
        weights[spec["name"]] = (q, float(quant["scale"]), float(quant["min"]))
    assert offset == raw.size, "weights.bin has trailing bytes"
    return manifest_and_topology["modelTopology"], weights


def dequantize(q, scale, minimum):
    # Same arithmetic as tfjs io_utils.decodeWeight: f64 multiply-add, rounded to f32.
    return (q.astype(np.float64) * scale + minimum).astype(np.float32)


def export_fp32(topology, weights):
    model = tf.keras.models.model_from_json(json.dumps(topology["model_config"]))
    names = [w.name.split(":")[0] for w in model.weights]
    assert sorted(names) == sorted(weights), "Keras weights differ from the manifest"
    model.set_weights([dequantize(*weights[n]) for n in names])
    # Conv+BatchNormalization fusion would replace upstream's tensors by products of them;
    # keep them separate so each stays exactly representable by its uint8 original.
    # tract fuses them itself after loading.
    del back_to_back_optimizer._func_map[("Conv", "BatchNormalization")]
    spec = (tf.TensorSpec((1, 224, 224, 3), tf.float32, name=INPUT_NAME),)
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=13)
    return proto


def find_upstream(array, weights, used):
    """Finds the upstream tensor and axis permutation that equal this initializer exactly."""
    for name, (q, scale, minimum) in weights.items():
        if name in used or q.size != array.size:
            continue
        values = dequantize(q, scale, minimum)
        for perm in permutations(range(q.ndim)):
            candidate = values.transpose(perm)
            if candidate.size == array.size:
                candidate = candidate.reshape(array.shape) if candidate.shape != array.shape else candidate
                if candidate.shape == array.shape and np.array_equal(candidate, array):
                    return name, perm
    return None, None


def quantize_initializers(proto, weights):
    graph = proto.graph
    kept, dequantizers, used, renamed = [], {}, set(), {}
    for init in graph.initializer:
        array = numpy_helper.to_array(init)
        name, perm = (None, None)
        if array.dtype == np.float32 and array.ndim >= 1:
            name, perm = find_upstream(array, weights, used)
        if name is None:
            kept.append(init)
            continue
        used.add(name)
        q, scale, minimum = weights[name]
        q_stored = np.ascontiguousarray(q.transpose(perm).reshape(array.shape))
        assert np.array_equal(dequantize(q_stored, scale, minimum), array)
        base = name
        renamed[init.name] = base
        kept.append(numpy_helper.from_array(q_stored, base + "__q"))
        kept.append(numpy_helper.from_array(np.array(scale, dtype=np.float64), base + "__scale"))
        kept.append(numpy_helper.from_array(np.array(minimum, dtype=np.float64), base + "__min"))
        dequantizers[name] = [
            helper.make_node("Cast", [base + "__q"], [base + "__q64"], to=TensorProto.DOUBLE),
            helper.make_node("Mul", [base + "__q64", base + "__scale"], [base + "__scaled"]),
            helper.make_node("Add", [base + "__scaled", base + "__min"], [base + "__f64"]),
            helper.make_node("Cast", [base + "__f64"], [base], to=TensorProto.FLOAT),
        ]
    missing = sorted(set(weights) - used)
    assert not missing, f"upstream tensors not found in the graph: {missing}"
    existing = list(graph.node)
    for node in existing:
        node.input[:] = [renamed.get(i, i) for i in node.input]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    del graph.node[:]
    graph.node.extend([n for name in sorted(dequantizers) for n in dequantizers[name]] + existing)
    return len(used)


def canonical_names(proto, weight_names):
    """Renames tf2onnx's counter-based names (they differ between runs) by position, so
    the pipeline is byte-for-byte reproducible. Graph inputs, outputs and the upstream
    weights (and their dequantization steps) keep their meaningful names."""
    graph = proto.graph
    kept = {v.name for v in graph.input} | {v.name for v in graph.output} | {""}
    for weight in weight_names:
        kept |= {weight} | {weight + s for s in ("__q", "__scale", "__min", "__q64", "__scaled", "__f64")}
    mapping = {}

    def rename(name):
        if name in kept:
            return name
        return mapping.setdefault(name, f"tensor{len(mapping)}")

    for index, node in enumerate(graph.node):
        node.name = f"node{index}"
        node.input[:] = [rename(i) for i in node.input]
        node.output[:] = [rename(o) for o in node.output]
    for init in graph.initializer:
        init.name = rename(init.name)
    ordered = sorted(graph.initializer, key=lambda i: i.name)
    del graph.initializer[:]
    graph.initializer.extend(ordered)
    del graph.value_info[:]


def name_output(proto):
    graph = proto.graph
    old = graph.output[0].name
    for node in graph.node:
        node.output[:] = [OUTPUT_NAME if o == old else o for o in node.output]
    graph.output[0].name = OUTPUT_NAME


def main():
    out_path = sys.argv[1]
    topology, weights = load_upstream()
    proto = export_fp32(topology, weights)
    count = quantize_initializers(proto, weights)
    name_output(proto)
    canonical_names(proto, weights)
    assert [n.op_type for n in proto.graph.node].count("Softmax") == 1
    assert not any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in proto.graph.node)
    proto.producer_name = "edge-moderation model pipeline"
    proto.doc_string = "nsfwjs 4.4.0 MobileNetV2 (MIT), upstream uint8 weights; input NHWC f32 [1,224,224,3] in [0,1]"
    del proto.metadata_props[:]
    for key, value in {"classes": ",".join(CLASSES), "source": "npm:nsfwjs@4.4.0", "license": "MIT"}.items():
        proto.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
    onnx.checker.check_model(proto)
    onnx.save(proto, out_path)
    print(f"{out_path}: {count} uint8 tensors, {len(proto.graph.node)} nodes")


if __name__ == "__main__":
    main()
