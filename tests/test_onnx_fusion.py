"""The layer-norm fusion and the GELU rewrite on hand-built graphs of the form tf2onnx
writes: changed where the pattern is whole, left alone where anything else reads inside it
or a constant differs; outputs unchanged; ONNX Runtime fuses the rewritten GELU."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from bertclf.export.onnx_fusion import SIGMOID_GELU, fuse_layer_norms, tanh_gelus

HIDDEN = 8


def layer_norm_graph(extra_reader: bool = False) -> onnx.ModelProto:
    """y = LayerNorm(x) as Keras' moments + batch_normalization, the nodes tf2onnx writes;
    `extra_reader`: the variance is also a graph output (so it must not be fused away)."""
    rng = np.random.default_rng(0)
    weights = {
        "gamma": rng.normal(size=(1, 1, HIDDEN)).astype(np.float32),
        "beta": rng.normal(size=(1, 1, HIDDEN)).astype(np.float32),
        "eps": np.array(1e-12, np.float32),
    }

    def node(op, inputs, output):
        return helper.make_node(op, inputs, [output], name=f"ln/moments/{output}")

    nodes = [
        node("GlobalAveragePool", ["x"], "mean"),
        node("Neg", ["mean"], "neg"),
        node("Sub", ["x", "mean"], "centred"),
        node("Mul", ["centred", "centred"], "squared"),
        node("GlobalAveragePool", ["squared"], "var"),
        node("Add", ["var", "eps"], "var_eps"),
        node("Sqrt", ["var_eps"], "std"),
        node("Reciprocal", ["std"], "inv"),
        node("Mul", ["inv", "gamma"], "m"),
        node("Mul", ["x", "m"], "xm"),
        node("Mul", ["neg", "m"], "shift"),
        node("Add", ["shift", "beta"], "shift_beta"),
        node("Add", ["xm", "shift_beta"], "y"),
    ]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, None, HIDDEN])]
    if extra_reader:
        outputs.append(helper.make_tensor_value_info("var", TensorProto.FLOAT, [None, None, 1]))
    graph = helper.make_graph(
        nodes,
        "ln",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, None, HIDDEN])],
        outputs,
        [numpy_helper.from_array(v, k) for k, v in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["y"], {"x": x})[0]


def test_a_whole_layer_norm_becomes_one_node_with_the_same_outputs():
    model = layer_norm_graph()
    x = np.random.default_rng(1).normal(size=(3, 5, HIDDEN)).astype(np.float32) * 4 + 1
    before = run(model, x)
    assert fuse_layer_norms(model) == 1
    assert [n.op_type for n in model.graph.node] == ["LayerNormalization"]
    # The Keras-shaped weights are gone; the fused ones are one value a feature.
    assert sorted(i.name for i in model.graph.initializer) == ["ln/fused_beta", "ln/fused_gamma"]
    onnx.checker.check_model(model)
    np.testing.assert_allclose(run(model, x), before, atol=1e-5)
    # An empty batch and an empty sequence still run.
    assert run(model, np.zeros((0, 5, HIDDEN), np.float32)).shape == (0, 5, HIDDEN)


def test_a_pattern_read_from_inside_is_left_as_it_is():
    model = layer_norm_graph(extra_reader=True)
    ops = [n.op_type for n in model.graph.node]
    assert fuse_layer_norms(model) == 0
    assert [n.op_type for n in model.graph.node] == ops


def sigmoid_gelu_graph(c1: float = SIGMOID_GELU[0], extra_reader: bool = False):
    """y = x * Sigmoid(x * (c1 + c2 * x * x)) + 0, TensorFlow's approximate GELU as tf2onnx
    writes it (the Add after it stands for the next layer); `extra_reader`: the Sigmoid's
    argument is also a graph output."""
    nodes = [
        helper.make_node("Mul", ["x", "x"], ["square"], name="ffn/Square"),
        helper.make_node("Mul", ["c2", "square"], ["scaled"], name="ffn/mul"),
        helper.make_node("Add", ["c1", "scaled"], ["inner"], name="ffn/add"),
        helper.make_node("Mul", ["x", "inner"], ["argument"], name="ffn/mul_1"),
        helper.make_node("Sigmoid", ["argument"], ["gate"], name="ffn/Sigmoid"),
        helper.make_node("Mul", ["x", "gate"], ["gelu"], name="ffn/mul_2"),
        helper.make_node("Add", ["gelu", "zero"], ["y"], name="next/add"),
    ]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, None, HIDDEN])]
    if extra_reader:
        outputs.append(
            helper.make_tensor_value_info("argument", TensorProto.FLOAT, [None, None, HIDDEN])
        )
    constants = {"c1": c1, "c2": SIGMOID_GELU[1], "zero": 0.0}
    graph = helper.make_graph(
        nodes,
        "gelu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, None, HIDDEN])],
        outputs,
        [numpy_helper.from_array(np.array(v, np.float32), k) for k, v in constants.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


def test_a_sigmoid_gelu_is_written_as_the_tanh_gelu_onnx_runtime_fuses(tmp_path):
    model = sigmoid_gelu_graph()
    x = np.random.default_rng(2).normal(size=(2, 7, HIDDEN)).astype(np.float32) * 3
    before = run(model, x)
    assert tanh_gelus(model) == 1
    ops = [n.op_type for n in model.graph.node]
    assert "Sigmoid" not in ops and ops.count("Tanh") == 1
    onnx.checker.check_model(model)
    np.testing.assert_allclose(run(model, x), before, atol=1e-6)
    assert run(model, np.zeros((0, 7, HIDDEN), np.float32)).shape == (0, 7, HIDDEN)
    # ONNX Runtime, at its default optimization level, runs it as one FastGelu.
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    optimized = onnx.load(str(tmp_path / "optimized.onnx"))
    assert [n.op_type for n in optimized.graph.node if n.op_type != "Add"] == ["FastGelu"]


def test_a_gelu_read_from_inside_or_with_other_constants_is_left_as_it_is():
    for model in (sigmoid_gelu_graph(extra_reader=True), sigmoid_gelu_graph(c1=1.0)):
        ops = [n.op_type for n in model.graph.node]
        assert tanh_gelus(model) == 0
        assert [n.op_type for n in model.graph.node] == ops
