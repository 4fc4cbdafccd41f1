"""The TensorFlow Serving disk contract, in one place: names, versions, signatures, metadata.

    BASE/NAME/VERSION/saved_model.pb, variables/, assets/labels.txt,
                      assets.extra/bertclf.json, assets.extra/tf_serving_warmup_requests
    or (an ONNX export) BASE/NAME/VERSION/model.onnx, assets/labels.txt, assets.extra/...

TF Serving serves every numeric VERSION directory under BASE/NAME (the highest by
default) and ignores anything else there, such as a hidden export still in progress.
Export, the loaders, the fresh-process check and `bertclf serve` all read this module;
it imports nothing heavy: TensorFlow's protobufs (a tf.Example, the SavedModel's
signatures, the warm-up records) are imported only when one is asked for.

Warm-up records. TensorFlow Serving reads `assets.extra/tf_serving_warmup_requests` (a
TFRecord file of `PredictionLog` protos) when it loads a version, and runs each request
once before it marks the version available. The first call of a signature is the slow
one (graph optimization, kernel and allocator set-up: seconds for a BERT graph); with
the records, a client never waits for it. `bertclf export` writes one record per
signature (`serving_default` as a PredictRequest, `classify` as a ClassificationRequest
of tf.Examples), each a batch of a short text and one that fills the window, so both
ends of the trimmed widths are set up. `bertclf serve` replays the same file, so both
servers warm up alike; the fresh-process check replays it too, so a record that a
server could not run fails the export instead of the server's load.

An ONNX version runs through `onnx_session` and `run_onnx` (onnxruntime with
onnxruntime-extensions, imported when asked for): `bertclf predict`, `bertclf serve`'s
worker and `bertclf score` share them.

May import: nothing of bertclf but `errors`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
# ASCII digits only (str.isdigit() also accepts '²' and '١', which int() rejects or
# reads as 1), at most 18 of them so that the number fits TF Serving's int64.
VERSION_RE = re.compile(r"^[0-9]{1,18}$")

SAVED_MODEL = "saved_model.pb"
# `bertclf export --format onnx`: the whole serving graph, tokenizer included, in one file
# (`bertclf.export.onnx`); the same assets/labels.txt and assets.extra/bertclf.json.
ONNX_MODEL = "model.onnx"
LABELS_ASSET = Path("assets") / "labels.txt"
METADATA = Path("assets.extra") / "bertclf.json"
# TF Serving replays this file's requests when it loads a version (bertclf.servable).
WARMUP_REQUESTS = Path("assets.extra") / "tf_serving_warmup_requests"

DEFAULT_SIGNATURE = "serving_default"
CLASSIFY_SIGNATURE = "classify"
EXPLAIN_SIGNATURE = "explain"  # word attributions (`bertclf.model.attribution`)
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
TEXT_INPUT = "text"  # serving_default's input, and the tf.Example feature classify reads
EXAMPLES_INPUT = "inputs"  # classify's input: serialized tf.Examples


def valid_name(name: str) -> bool:
    return bool(NAME_RE.match(name)) and not name.startswith(".")


def parse_version(name: str) -> int | None:
    """A version directory's number, or None for any other name (as TF Serving)."""
    return int(name) if VERSION_RE.match(name) else None


def versions(model_dir: Path) -> list[int]:
    """Numeric version directories under BASE/NAME, complete or not, sorted."""
    if not model_dir.is_dir():
        return []
    found = (parse_version(p.name) for p in model_dir.iterdir() if p.is_dir())
    return sorted(v for v in found if v is not None)


def published(model_dir: Path) -> list[tuple[int, Path]]:
    """(version, path) of the version directories that hold a model (a SavedModel or an
    ONNX model), sorted."""
    return [
        (v, model_dir / str(v)) for v in versions(model_dir) if is_version_dir(model_dir / str(v))
    ]


def is_version_dir(path: Path) -> bool:
    """A version directory holding a model: saved_model.pb or model.onnx."""
    return (path / SAVED_MODEL).is_file() or is_onnx_version(path)


def is_onnx_version(path: Path) -> bool:
    return (path / ONNX_MODEL).is_file()


def find_version_dir(path: Path) -> Path | None:
    """BASE/NAME/VERSION itself, or the highest version under BASE/NAME."""
    if is_version_dir(path):
        return path
    found = published(path)
    return found[-1][1] if found else None


def read_labels(version_dir: Path) -> list[str]:
    """The label names of an export, in output order (assets/labels.txt)."""
    text = (version_dir / LABELS_ASSET).read_text(encoding="utf-8")
    return [line for line in text.split("\n") if line]


def text_example(text: bytes) -> bytes:
    """A serialized tf.Example with one bytes feature `text`, as `classify` reads."""
    from tensorflow.core.example import example_pb2, feature_pb2

    feature = feature_pb2.Feature(bytes_list=feature_pb2.BytesList(value=[text]))
    example = example_pb2.Example(features=feature_pb2.Features(feature={TEXT_INPUT: feature}))
    return example.SerializeToString()


# ------------------------------------------------------------------ the SavedModel's signatures


def read_saved_model(export_dir: Path):
    """The SavedModel protobuf of a version directory (saved_model.pb)."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((export_dir / SAVED_MODEL).read_bytes())
    return proto


def graph_ops(proto) -> set[str]:
    """Every op type in the SavedModel's graphs and their function libraries."""
    ops = set()
    for meta_graph in proto.meta_graphs:
        ops.update(node.op for node in meta_graph.graph_def.node)
        for function in meta_graph.graph_def.library.function:
            ops.update(node.op for node in function.node_def)
    return ops


def signatures(proto) -> dict:
    """Each servable signature: its method, inputs and outputs (as `saved_model_cli show`)."""
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
    from tensorflow.core.framework import types_pb2

    dims = None if info.tensor_shape.unknown_rank else [d.size for d in info.tensor_shape.dim]
    return {"dtype": types_pb2.DataType.Name(info.dtype), "shape": dims, "name": info.name}


# ------------------------------------------------------------------ warm-up records


@dataclass(frozen=True)
class WarmupRequest:
    """One replayable request: its signature, its kind (`PREDICT_METHOD` or
    `CLASSIFY_METHOD`) and its raw texts."""

    signature: str
    method: str
    texts: list[bytes]


def warmup_texts(sequence_length: int) -> list[str]:
    """A short text and one with more words than `sequence_length` tokens."""
    return ["warm up", " ".join(["warm"] * sequence_length)]


def write_warmup(version_dir: Path, texts: list[str]) -> Path:
    """Write the records for both signatures under `version_dir`; returns the file."""
    import tensorflow as tf
    from tensorflow.core.example import example_pb2
    from tensorflow_serving.apis import (
        classification_pb2,
        model_pb2,
        predict_pb2,
        prediction_log_pb2,
    )

    raw = [t.encode("utf-8") for t in texts]
    predict = predict_pb2.PredictRequest(
        model_spec=model_pb2.ModelSpec(signature_name=DEFAULT_SIGNATURE),
        inputs={TEXT_INPUT: tf.make_tensor_proto(raw, dtype=tf.string)},
    )
    classify = classification_pb2.ClassificationRequest(
        model_spec=model_pb2.ModelSpec(signature_name=CLASSIFY_SIGNATURE)
    )
    for text in raw:
        example = classify.input.example_list.examples.add()
        example.CopyFrom(example_pb2.Example.FromString(text_example(text)))
    logs = [
        prediction_log_pb2.PredictionLog(
            predict_log=prediction_log_pb2.PredictLog(request=predict)
        ),
        prediction_log_pb2.PredictionLog(
            classify_log=prediction_log_pb2.ClassifyLog(request=classify)
        ),
    ]
    path = version_dir / WARMUP_REQUESTS
    path.parent.mkdir(exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for log in logs:
            writer.write(log.SerializeToString())
    return path


def read_warmup(version_dir: Path) -> list[WarmupRequest]:
    """The records under `version_dir` as requests ([] when it has none)."""
    path = version_dir / WARMUP_REQUESTS
    if not path.is_file():
        return []
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    requests = []
    for record in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
        log = prediction_log_pb2.PredictionLog.FromString(record)
        if log.HasField("predict_log"):
            request = log.predict_log.request
            tensor = request.inputs[TEXT_INPUT]
            texts = list(tf.make_ndarray(tensor).reshape(-1))
            method = PREDICT_METHOD
        elif log.HasField("classify_log"):
            request = log.classify_log.request
            examples = request.input.example_list.examples
            texts = [e.features.feature[TEXT_INPUT].bytes_list.value[0] for e in examples]
            method = CLASSIFY_METHOD
        else:
            raise ValueError(f"{path}: a record of kind {log.WhichOneof('log_type')!r}")
        requests.append(WarmupRequest(request.model_spec.signature_name, method, texts))
    return requests


def replay_warmup(model, version_dir: Path) -> int:
    """Run each record once on a loaded SavedModel, as TF Serving does; returns how many."""
    import tensorflow as tf

    requests = read_warmup(version_dir)
    for request in requests:
        if request.method == CLASSIFY_METHOD:
            examples = [text_example(t) for t in request.texts]
            inputs = {EXAMPLES_INPUT: tf.constant(examples)}
        else:
            inputs = {TEXT_INPUT: tf.constant(request.texts)}
        model.signatures[request.signature](**inputs)
    return len(requests)


# ------------------------------------------------------------------ explanations


def explanation_rows(
    outputs: dict[str, np.ndarray], labels: list[str], multilabel: bool
) -> list[dict[str, Any]]:
    """The `explain` signature's arrays -> one row per text (what `predict --explain` and
    `bertclf serve`'s :explain return; `bertclf.prediction.predictor.Predictor.explain`
    says what the keys mean)."""
    rows = []
    for i, n in enumerate(outputs["num_words"].tolist()):
        words = [w.decode("utf-8", errors="replace") for w in outputs["words"][i, :n].tolist()]
        read = outputs["read"][i, :n]
        per_label = {}
        for j in np.flatnonzero(outputs["explained"][i]).tolist():
            weights = outputs["weights"][i, j, :n]
            per_label[labels[j]] = {
                "explanation": [
                    [w, float(x)] for w, x, r in zip(words, weights, read, strict=True) if r
                ],
                "score": float(outputs["scores"][i, j]),
                "baseline_score": float(outputs["baseline_scores"][i, j]),
                "log_odds": float(outputs["log_odds"][i, j]),
                "baseline_log_odds": float(outputs["baseline_log_odds"][i, j]),
            }
        if multilabel:  # each key holds {label: value}, for the predicted labels
            row: dict[str, Any] = {
                "explanation": {k: v["explanation"] for k, v in per_label.items()},
                "baseline_scores": {k: v["baseline_score"] for k, v in per_label.items()},
                "log_odds": {k: v["log_odds"] for k, v in per_label.items()},
                "baseline_log_odds": {k: v["baseline_log_odds"] for k, v in per_label.items()},
            }
        else:
            ((label, values),) = per_label.items()
            row = {"label": label, **values}
        if not read.all():
            row["not_read"] = _ranges(np.flatnonzero(~read) + 1)
        rows.append(row)
    return rows


def _ranges(numbers: np.ndarray) -> list[list[int]]:
    """Sorted numbers -> [[first, last], ...] runs of consecutive ones."""
    runs: list[list[int]] = []
    for k in numbers.tolist():
        if runs and runs[-1][1] == k - 1:
            runs[-1][1] = k
        else:
            runs.append([k, k])
    return runs


# ------------------------------------------------------------------ running an ONNX version

# ONNX Runtime's element types -> numpy's, and TensorFlow's names for the REST metadata.
ONNX_TYPES = {
    "tensor(float)": (np.float32, "DT_FLOAT"),
    "tensor(string)": (object, "DT_STRING"),
    "tensor(int32)": (np.int32, "DT_INT32"),
    "tensor(int64)": (np.int64, "DT_INT64"),
    "tensor(bool)": (bool, "DT_BOOL"),
}


def _load_extensions_privately() -> None:
    """Load onnxruntime-extensions' library with its own symbols first (RTLD_DEEPBIND).

    Why: it carries a build of RE2, and so does TensorFlow. In a process that imported
    TensorFlow first, the library's RE2 calls went to TensorFlow's build and its string
    ops split and replaced wrongly ("New Orleans??" read as [UNK] [UNK]; measured, diary
    2026-12 §9). Bound to its own symbols, it reads texts as in a process without
    TensorFlow, whatever was imported before. Done once, before the package is imported."""
    import ctypes
    import glob
    import importlib.util
    import os
    import sys

    if "onnxruntime_extensions" in sys.modules or not hasattr(os, "RTLD_DEEPBIND"):
        return
    spec = importlib.util.find_spec("onnxruntime_extensions")
    if spec is None or not spec.submodule_search_locations:
        return
    pattern = os.path.join(spec.submodule_search_locations[0], "_extensions_pydll*.so")
    for library in glob.glob(pattern):
        ctypes.CDLL(library, mode=os.RTLD_NOW | os.RTLD_DEEPBIND)


def onnx_session(model_file: Path, threads: int = 0):
    """An ONNX Runtime session of an ONNX export's model.onnx, with onnxruntime-extensions'
    string ops registered (`threads`: intra-op threads, 0: ONNX Runtime's choice)."""
    from bertclf.errors import RunError

    _load_extensions_privately()
    try:
        import onnxruntime as ort
        import onnxruntime_extensions
    except ImportError:
        raise RunError(
            f"{model_file}: running an ONNX export needs onnxruntime and "
            "onnxruntime-extensions: pip install 'bertclf[onnx]'"
        ) from None
    options = ort.SessionOptions()
    options.register_custom_ops_library(onnxruntime_extensions.get_library_path())
    options.intra_op_num_threads = threads
    options.log_severity_level = 3  # errors only: its warnings are for ONNX Runtime's authors
    return ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])


def run_onnx(session, texts: list, num_labels: int) -> dict[str, np.ndarray]:
    """Every output of an ONNX export for a batch of texts (str, or UTF-8 bytes as the REST
    API hands them on). No text: empty outputs, which the converted graph cannot make."""
    outputs = session.get_outputs()
    if not len(texts):
        return {
            o.name: np.zeros((0, *[num_labels] * (len(o.shape) - 1)), ONNX_TYPES[o.type][0])
            for o in outputs
        }
    strings = [t.decode("utf-8", errors="replace") if isinstance(t, bytes) else t for t in texts]
    feed = {TEXT_INPUT: np.asarray(strings, dtype=object).reshape(-1)}
    return dict(zip([o.name for o in outputs], session.run(None, feed), strict=True))


def onnx_signatures(session) -> dict:
    """An ONNX export's one signature, `serving_default`, in `signatures()`' form."""

    def tensors(values):
        return {
            v.name: {
                "dtype": ONNX_TYPES.get(v.type, (None, v.type))[1],
                "shape": [d if isinstance(d, int) else -1 for d in v.shape],
                "name": v.name,
            }
            for v in values
        }

    return {
        DEFAULT_SIGNATURE: {
            "method_name": PREDICT_METHOD,
            "inputs": tensors(session.get_inputs()),
            "outputs": tensors(session.get_outputs()),
        }
    }
