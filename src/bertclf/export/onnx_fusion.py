"""Fusions of the converted encoder graph: layer norms as one ONNX `LayerNormalization`,
GELUs in the form ONNX Runtime fuses into one kernel.

tf2onnx writes each of the encoder's 13 layer norms as Keras computes it (`moments`,
then `batch_normalization`), 13 nodes on [b, s, h] tensors:

    mean = GlobalAveragePool(x)              # [b, s, 1]: the mean over h
    var  = GlobalAveragePool((x - mean)^2)   # (x - mean) once, squared by a Mul
    m    = gamma * Reciprocal(Sqrt(var + eps))
    y    = x * m + (Neg(mean) * m + beta)

Neither tf2onnx nor ONNX Runtime fuses that: ONNX Runtime's own `LayerNormFusion` and its
transformers optimizer (`FusionLayerNormalizationTF`) match `ReduceMean` and
`beta - mean * m`, not `GlobalAveragePool` and `Neg(mean) * m + beta`; so the match is
written here. It walks the graph once from each `GlobalAveragePool`, checks every node
of the pattern and that nothing else reads its intermediate tensors, and replaces the 13
nodes with `LayerNormalization(x, gamma, beta, axis=2, epsilon=eps)` (opset 17): axis 2
normalizes over the dimensions GlobalAveragePool averages (2 and after), so the two are
the same function for any rank. gamma and beta must be initializers (the weights); a
match that finds anything else is left as it is. The parity check that follows every
export compares the fused model with the run.

The feed-forward activation (keras-hub's `gelu(approximate=True)`) reaches ONNX as
TensorFlow rewrites it, `x * Sigmoid(x * (c1 + c2 * x * x))` with c1 = 2 sqrt(2 / pi) and
c2 = 0.044715 c1, six elementwise nodes on [b, s, 1536] each (1.3 ms a 40-word call of
kernel time, profiled). ONNX Runtime's `FastGeluFusion` makes one kernel of the same
function written with Tanh, `x * 0.5 * (1 + Tanh(0.7978845834732056 * x * (1 + 0.044715 *
x * x)))`, node for node as it matches it (its first formula); `tanh_gelus` writes each
activation in that form. The model stays plain ONNX; ONNX Runtime fuses it when it loads
(any graph optimization level from `ORT_ENABLE_EXTENDED`, the default being all).
"""

from __future__ import annotations

import logging
import math

import numpy as np

logger = logging.getLogger(__name__)


def fuse_layer_norms(model) -> int:
    """Replace each layer norm of `model` (an onnx ModelProto, changed in place) with one
    `LayerNormalization` node; returns how many were fused."""
    from onnx import helper, numpy_helper

    graph = model.graph
    index = _Index(graph)
    removed, replacements, weights = set(), {}, []
    for node in list(graph.node):
        if node.op_type != "GlobalAveragePool" or id(node) in removed:
            continue
        match = _match(index, node)
        if match is None:
            continue
        group, x, gamma, beta, eps = match
        stem = node.name.rsplit("/moments", 1)[0]
        if any(w.name.startswith(f"{stem}/fused_") for w in weights):
            stem = f"{stem}_{len(replacements)}"  # two layer norms under one name scope
        names = []
        for value, suffix in ((gamma, "gamma"), (beta, "beta")):
            weights.append(numpy_helper.from_array(value.reshape(-1), f"{stem}/fused_{suffix}"))
            names.append(weights[-1].name)
        last = group[-1]  # the final Add: its output is the layer norm's
        removed.update(id(n) for n in group)
        replacements[id(last)] = helper.make_node(
            "LayerNormalization",
            [x, *names],
            [last.output[0]],
            name=f"{stem}/LayerNormalization",
            axis=2,
            epsilon=float(eps.reshape(())),
        )
    if replacements:
        # Each new node takes the place of its pattern's last node, so the list stays in
        # topological order (x and the initializers are there before that node).
        nodes = [replacements.get(id(n), n) for n in graph.node]
        nodes = [n for n in nodes if id(n) not in removed]
        del graph.node[:]
        graph.node.extend(nodes)
        used = _inputs_read(graph)
        kept = [i for i in [*graph.initializer, *weights] if i.name in used]
        del graph.initializer[:]
        graph.initializer.extend(kept)
    logger.debug("layer norms fused: %d", len(replacements))
    return len(replacements)


class _Index:
    """Who reads each tensor of a graph, and its initializers' values."""

    def __init__(self, graph):
        from onnx import numpy_helper

        self.outputs = {o.name for o in graph.output}
        self.readers: dict[str, list] = {}
        self.producer = {out: node for node in graph.node for out in node.output}
        for node in graph.node:
            for name in node.input:  # a node that reads a tensor twice is listed twice
                self.readers.setdefault(name, []).append(node)
        self.values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}

    def only(self, tensor: str, op: str, count: int = 1):
        """The `count` reads of `tensor`, all by `op` nodes, or None if it has others
        (or is a graph output): a fused tensor must have no other reader."""
        readers = self.readers.get(tensor, [])
        if tensor in self.outputs or len(readers) != count:
            return None
        return readers if all(r.op_type == op for r in readers) else None

    def constant(self, node, tensor: str):
        """The initializer value of the two-input `node`'s input that is not `tensor`."""
        a, b = node.input
        return self.values.get(b if a == tensor else a)


def _match(index: _Index, mean):
    """The pattern of the module doc from its first GlobalAveragePool `mean`, as (its 13
    nodes ending with the final Add, x, gamma, beta, eps), or None where any part differs."""
    x, mean_out = mean.input[0], mean.output[0]
    readers = index.readers.get(mean_out, [])
    if mean_out in index.outputs or sorted(r.op_type for r in readers) != ["Neg", "Sub"]:
        return None
    neg = next(r for r in readers if r.op_type == "Neg")
    sub = next(r for r in readers if r.op_type == "Sub")
    square = index.only(sub.output[0], "Mul", 2)  # (x - mean) * (x - mean)
    if list(sub.input) != [x, mean_out] or not square or square[0] is not square[1]:
        return None
    chain, tensor = [square[0]], square[0].output[0]
    for op in ("GlobalAveragePool", "Add", "Sqrt", "Reciprocal", "Mul"):
        found = index.only(tensor, op)
        if not found:
            return None
        chain.append(found[0])
        tensor = found[0].output[0]
    _, var, add_eps, _, recip, scale = chain
    eps = index.constant(add_eps, var.output[0])
    gamma = index.constant(scale, recip.output[0])
    both = index.only(scale.output[0], "Mul", 2)  # m times x, and m times -mean
    shifts = index.only(neg.output[0], "Mul")
    if eps is None or eps.size != 1 or gamma is None or not both or not shifts:
        return None
    shift = shifts[0]
    times_x = next((n for n in both if set(n.input) == {x, scale.output[0]}), None)
    add_beta = index.only(shift.output[0], "Add")
    final = index.only(times_x.output[0], "Add") if times_x else None
    if shift not in both or not add_beta or not final:
        return None
    add_beta, final = add_beta[0], final[0]
    beta = index.constant(add_beta, shift.output[0])
    if beta is None or set(final.input) != {times_x.output[0], add_beta.output[0]}:
        return None
    if gamma.size != beta.size or gamma.size != max(gamma.shape, default=1):
        return None  # one weight a feature, in whatever leading ones Keras gave it
    group = [mean, neg, sub, *chain, shift, times_x, add_beta, final]
    return group, x, gamma, beta, eps


# The sigmoid form's constants (float32), and the tanh form's as FastGeluFusion checks them.
SIGMOID_GELU = (2 * (2 / math.pi) ** 0.5, 2 * (2 / math.pi) ** 0.5 * 0.044715)
TANH_GELU = {"cubic": 0.044715, "one": 1.0, "scale": 0.7978845834732056, "half": 0.5}
CONSTANTS = "bertclf/tanh_gelu"  # initializer names, shared by every rewritten GELU


def tanh_gelus(model) -> int:
    """Rewrite each sigmoid-form GELU of `model` (changed in place) in the tanh form ONNX
    Runtime fuses (module doc); returns how many were rewritten."""
    from onnx import numpy_helper

    graph = model.graph
    index = _Index(graph)
    replacements, removed = {}, set()
    for node in graph.node:
        match = _match_sigmoid_gelu(index, node) if node.op_type == "Sigmoid" else None
        if match is not None:
            group, x, y = match
            stem = f"{node.name.rsplit('/', 1)[0]}/tanh_gelu"
            replacements[id(group[-1])] = _tanh_gelu_nodes(stem, x, y)
            removed.update(id(n) for n in group)
    if replacements:
        nodes = []
        for n in graph.node:  # each rewrite where its pattern's last node was
            nodes.extend(replacements.get(id(n), [] if id(n) in removed else [n]))
        del graph.node[:]
        graph.node.extend(nodes)
        graph.initializer.extend(
            numpy_helper.from_array(np.array(value, np.float32), f"{CONSTANTS}/{name}")
            for name, value in TANH_GELU.items()
        )
        used = _inputs_read(graph)
        kept = [i for i in graph.initializer if i.name in used]
        del graph.initializer[:]
        graph.initializer.extend(kept)
    logger.debug("GELUs in the tanh form: %d", len(replacements))
    return len(replacements)


def _tanh_gelu_nodes(stem: str, x: str, y: str) -> list:
    """y = x * 0.5 * (1 + Tanh(0.79788 x * (1 + 0.044715 x x))), node for node as ONNX
    Runtime's FastGeluFusion matches it (which input is the constant does not matter)."""
    from onnx import helper

    def node(op, a, b, name):
        out = y if name == "output" else f"{stem}/{name}:0"
        return helper.make_node(op, [a, b], [out], name=f"{stem}/{name}"), out

    c = {name: f"{CONSTANTS}/{name}" for name in TANH_GELU}
    cubic, t = node("Mul", x, c["cubic"], "cubic")  # 0.044715 x
    cubic_x, t = node("Mul", t, x, "cubic_x")  # 0.044715 x x
    inner, inner_out = node("Add", t, c["one"], "inner")  # 1 + 0.044715 x x
    scaled, scaled_out = node("Mul", x, c["scale"], "scaled")  # 0.79788 x
    argument, t = node("Mul", inner_out, scaled_out, "argument")
    tanh = helper.make_node("Tanh", [t], [f"{stem}/tanh:0"], name=f"{stem}/tanh")
    gate, gate_out = node("Add", f"{stem}/tanh:0", c["one"], "gate")  # 1 + tanh(...)
    half, half_out = node("Mul", x, c["half"], "half")  # 0.5 x
    output, _ = node("Mul", gate_out, half_out, "output")
    return [cubic, cubic_x, inner, scaled, argument, tanh, gate, half, output]


def _match_sigmoid_gelu(index: _Index, sigmoid):
    """From `sigmoid`: (the six nodes of `x * Sigmoid(x * (c1 + c2 * x * x))`, ending with
    the output Mul; x; the output's name), or None where any part differs or a tensor
    inside has another reader."""
    gates = index.only(sigmoid.output[0], "Mul")
    times = index.producer.get(sigmoid.input[0])
    if not gates or times is None or times.op_type != "Mul":
        return None
    output = gates[0]
    x = _other_input(output, sigmoid.output[0])
    inner = _other_input(times, x)
    add = index.producer.get(inner)
    if x is None or inner is None or add is None or add.op_type != "Add":
        return None
    scaled = next((index.producer.get(i) for i in add.input if i in index.producer), None)
    if scaled is None or scaled.op_type != "Mul":
        return None
    square = next((index.producer.get(i) for i in scaled.input if i in index.producer), None)
    if square is None or square.op_type != "Mul" or list(square.input) != [x, x]:
        return None
    c1 = index.constant(add, scaled.output[0])
    c2 = index.constant(scaled, square.output[0])
    if c1 is None or c2 is None or c1.size != 1 or c2.size != 1:
        return None
    if not np.allclose([c1.item(), c2.item()], SIGMOID_GELU, rtol=1e-6):
        return None
    for tensor, op in (
        (square.output[0], "Mul"),
        (scaled.output[0], "Add"),
        (inner, "Mul"),
        (sigmoid.input[0], "Sigmoid"),
    ):
        if index.only(tensor, op) is None:
            return None
    return [square, scaled, add, times, sigmoid, output], x, output.output[0]


def _other_input(node, tensor: str | None):
    """The input of the two-input `node` that is not `tensor` (None if neither is)."""
    a, b = node.input
    return b if a == tensor else a if b == tensor else None


def _inputs_read(graph) -> set[str]:
    """Every tensor name a node of `graph` or of a graph nested in one (a Loop's or an
    If's body) reads, and the graph's outputs."""
    names = {o.name for o in graph.output}
    for node in graph.node:
        names.update(node.input)
        for attribute in node.attribute:
            nested = [attribute.g] if attribute.HasField("g") else []
            for sub in [*nested, *attribute.graphs]:
                names.update(_inputs_read(sub))
    return names
