"""Check an exported SavedModel in a fresh process, as a server would see it.

Run as a module in its own process (never imported by the rest of bertclf), so the
process holds only what a serving host has: `tensorflow`, then `tensorflow_text`
(and bertclf's dependency-free `servable`, which reads the signatures and the warm-up
records with TensorFlow's and tensorflow-serving-api's protobufs).

    python -m bertclf.export.fresh_check EXPORT_DIR PARENT_PID < {"texts": [...]}
    python -m bertclf.export.fresh_check --core-ops PARENT_PID

It reads the request on stdin and prints the result as one JSON line on stdout, and
dies with PARENT_PID (the exporting process), so a killed export leaves nothing behind.
`--core-ops` prints every op core TensorFlow registers (a JSON list): what an export
with `verify=False` audits against, in its own process (`verification.read_graph`).

1. Op audit, before TF Text is imported: every op in the graph and its function
   library that core TensorFlow does not register is listed as non-core.
2. Signatures, in the form `saved_model_cli show --all` prints.
3. If the request has "texts": load the model, replay its TF Serving warm-up
   records (`bertclf.servable`, as the server will), run `serving_default` on the texts
   and `classify` on the same texts as tf.Examples; return both score arrays.
"""

import json
import sys
from pathlib import Path

import tensorflow as tf
from tensorflow.python.framework import op_def_registry

from bertclf import servable
from bertclf.processes import die_with_parent


def core_ops() -> list[str]:
    """Every op registered in this process, which has imported only TensorFlow."""
    from tensorflow.core.framework import op_def_pb2
    from tensorflow.python.client import pywrap_tf_session

    ops = op_def_pb2.OpList()
    ops.ParseFromString(pywrap_tf_session.TF_GetBuffer(pywrap_tf_session.TF_GetAllOpList()))
    return sorted(op.name for op in ops.op)


def run_model(export_dir: Path, texts: list) -> dict:
    import tensorflow_text  # noqa: F401  (registers the TF Text ops the graph uses)

    model = tf.saved_model.load(str(export_dir))
    replayed = servable.replay_warmup(model, export_dir)
    batch = tf.constant(texts)
    predicted = model.signatures[servable.DEFAULT_SIGNATURE](**{servable.TEXT_INPUT: batch})
    examples = [servable.text_example(t.encode("utf-8")) for t in texts]
    classified = model.signatures[servable.CLASSIFY_SIGNATURE](
        **{servable.EXAMPLES_INPUT: tf.constant(examples)}
    )
    result = {"scores": predicted["scores"].numpy().tolist()}
    for extra in ("ood_score", "abstain"):  # a calibrated run's outputs
        if extra in predicted:
            result[extra] = predicted[extra].numpy().tolist()
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


def main(argv: list) -> int:
    if len(argv) > 2:
        die_with_parent(int(argv[2]))
    if argv[1] == "--core-ops":
        print(json.dumps(core_ops()))
        return 0
    export_dir = Path(argv[1])
    request = json.loads(sys.stdin.read() or "{}")
    proto = servable.read_saved_model(export_dir)
    ops = servable.graph_ops(proto)
    result = {
        "tensorflow": tf.__version__,
        "ops": sorted(ops),
        "non_core_ops": sorted(op for op in ops if op_def_registry.get(op) is None),
        "signatures": servable.signatures(proto),
    }
    if request.get("texts"):
        result.update(run_model(export_dir, request["texts"]))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
