"""Fusions of the converted encoder graph: layer norms as one ONNX `LayerNormalization`.

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
"""

from __future__ import annotations

import logging

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
