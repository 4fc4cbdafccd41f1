"""Check an exported SavedModel in a fresh process, as a server would see it.

Run as a module in its own process (never imported by the rest of bertclf), so the
process holds only what a serving host has: `tensorflow`, then `tensorflow_text`
(and bertclf's dependency-free `servable` constants, and `warmup`, which reads the
warm-up records with tensorflow-serving-api's protobufs).

    python -m bertclf.savedmodel_check EXPORT_DIR PARENT_PID < {"texts": [...]}

It reads the request on stdin and prints the result as one JSON line on stdout, and
dies with PARENT_PID (the exporting process), so a killed export leaves nothing behind.

1. Op audit, before TF Text is imported: every op in the graph and its function
   library that core TensorFlow does not register is listed as non-core.
2. Signatures, in the form `saved_model_cli show --all` prints.
3. If the request has "texts": load the model, replay its TF Serving warm-up
   records (`bertclf.warmup`, as the server will), run `serving_default` on the texts
   and `classify` on the same texts as tf.Examples; return both score arrays.
"""

import ctypes
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow.python.framework import op_def_registry

from bertclf import servable, warmup


def read_saved_model(export_dir: Path) -> saved_model_pb2.SavedModel:
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((export_dir / servable.SAVED_MODEL).read_bytes())
    return proto


def all_ops(proto) -> set:
    ops = set()
    for meta_graph in proto.meta_graphs:
        ops.update(node.op for node in meta_graph.graph_def.node)
        for function in meta_graph.graph_def.library.function:
            ops.update(node.op for node in function.node_def)
    return ops


def signatures(proto) -> dict:
    out = {}
    for key, sig in proto.meta_graphs[0].signature_def.items():
        if key.startswith("__"):  # __saved_model_init_op: internal, not servable
            continue
        out[key] = {
            "method_name": sig.method_name,
            "inputs": {k: _tensor(v) for k, v in sig.inputs.items()},
            "outputs": {k: _tensor(v) for k, v in sig.outputs.items()},
        }
    return out


def _tensor(info) -> dict:
    dims = None if info.tensor_shape.unknown_rank else [d.size for d in info.tensor_shape.dim]
    return {"dtype": types_pb2.DataType.Name(info.dtype), "shape": dims, "name": info.name}


def run_model(export_dir: Path, texts: list) -> dict:
    import tensorflow_text  # noqa: F401  (registers the TF Text ops the graph uses)

    model = tf.saved_model.load(str(export_dir))
    replayed = warmup.replay(model, export_dir)
    batch = tf.constant(texts)
    predicted = model.signatures[servable.DEFAULT_SIGNATURE](**{servable.TEXT_INPUT: batch})
    examples = [servable.text_example(t.encode("utf-8")) for t in texts]
    classified = model.signatures[servable.CLASSIFY_SIGNATURE](
        **{servable.EXAMPLES_INPUT: tf.constant(examples)}
    )
    result = {"scores": predicted["scores"].numpy().tolist()}
    if "predicted" in predicted:  # a multi-label export: 0/1 per label
        result["predicted"] = predicted["predicted"].numpy().tolist()
    else:
        result["classes"] = [c.decode("utf-8") for c in predicted["classes"].numpy().tolist()]
        result["class_ids"] = predicted["class_ids"].numpy().tolist()
    return {
        **result,
        "warmup_requests": replayed,
        "classify_scores": classified["scores"].numpy().tolist(),
        "classify_classes": [
            [c.decode("utf-8") for c in row] for row in classified["classes"].numpy().tolist()
        ],
    }


def die_with_parent(parent: int) -> None:
    """Exit when the exporting process is gone (prctl on Linux, else a watcher thread)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):

        def watch():
            while os.getppid() == parent:
                time.sleep(0.5)
            os._exit(1)

        threading.Thread(target=watch, daemon=True).start()
    if os.getppid() != parent:  # it died before prctl took effect
        os._exit(1)


def main(argv: list) -> int:
    export_dir = Path(argv[1])
    if len(argv) > 2:
        die_with_parent(int(argv[2]))
    request = json.loads(sys.stdin.read() or "{}")
    proto = read_saved_model(export_dir)
    ops = all_ops(proto)
    result = {
        "tensorflow": tf.__version__,
        "ops": sorted(ops),
        "non_core_ops": sorted(op for op in ops if op_def_registry.get(op) is None),
        "signatures": signatures(proto),
    }
    if request.get("texts"):
        result.update(run_model(export_dir, request["texts"]))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
