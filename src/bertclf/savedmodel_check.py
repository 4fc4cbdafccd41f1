"""Check an exported SavedModel in a fresh process, as a server would see it.

Run as a script (never imported by bertclf), so the process holds only what a
serving host has: `tensorflow`, then `tensorflow_text`.

    python savedmodel_check.py EXPORT_DIR REQUEST_JSON RESULT_JSON

1. Op audit, before TF Text is imported: every op in the graph and its function
   library that core TensorFlow does not register is listed as non-core.
2. Signatures, in the form `saved_model_cli show --all` prints.
3. If the request has "texts": load the model, run `serving_default` on them
   and `classify` on the same texts as tf.Examples; return both score arrays.
"""

import json
import sys
from pathlib import Path

import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow.python.framework import op_def_registry


def read_saved_model(export_dir: Path) -> saved_model_pb2.SavedModel:
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((export_dir / "saved_model.pb").read_bytes())
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
    batch = tf.constant(texts)
    predicted = model.signatures["serving_default"](text=batch)
    examples = [
        tf.train.Example(
            features=tf.train.Features(
                feature={
                    "text": tf.train.Feature(
                        bytes_list=tf.train.BytesList(value=[t.encode("utf-8")])
                    )
                }
            )
        ).SerializeToString()
        for t in texts
    ]
    classified = model.signatures["classify"](inputs=tf.constant(examples))
    return {
        "scores": predicted["scores"].numpy().tolist(),
        "classes": [c.decode("utf-8") for c in predicted["classes"].numpy().tolist()],
        "class_ids": predicted["class_ids"].numpy().tolist(),
        "classify_scores": classified["scores"].numpy().tolist(),
        "classify_classes": [
            [c.decode("utf-8") for c in row] for row in classified["classes"].numpy().tolist()
        ],
    }


def main(argv: list) -> int:
    export_dir, request_file, result_file = Path(argv[1]), Path(argv[2]), Path(argv[3])
    request = json.loads(request_file.read_text())
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
    result_file.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
