"""TF Serving warm-up records: the requests a server replays before it takes traffic.

TensorFlow Serving reads `assets.extra/tf_serving_warmup_requests` (a TFRecord file of
`PredictionLog` protos) when it loads a version, and runs each request once before it
marks the version available. The first call of a signature is the slow one (graph
optimization, kernel and allocator set-up: seconds for a BERT graph); with the
records, a client never waits for it. `bertclf export` writes one record per
signature (`serving_default` as a PredictRequest, `classify` as a ClassificationRequest
of tf.Examples), each a batch of a short text and one that fills the window, so both
ends of the trimmed widths are set up. `bertclf serve` replays the same file, so both
servers warm up alike; the fresh-process check replays it too, so a record that a
server could not run fails the export instead of the server's load.

Example:
>>> write(Path("exports/demo/1"), ["warm up"])  # doctest: +SKIP
>>> [(r.signature, r.texts) for r in read(Path("exports/demo/1"))]  # doctest: +SKIP
[('serving_default', [b'warm up']), ('classify', [b'warm up'])]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bertclf import servable


@dataclass(frozen=True)
class WarmupRequest:
    """One replayable request: its signature, its kind (`servable.PREDICT_METHOD` or
    `CLASSIFY_METHOD`) and its raw texts."""

    signature: str
    method: str
    texts: list[bytes]


def texts_for(sequence_length: int) -> list[str]:
    """A short text and one with more words than `sequence_length` tokens."""
    return ["warm up", " ".join(["warm"] * sequence_length)]


def write(version_dir: Path, texts: list[str]) -> Path:
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
        model_spec=model_pb2.ModelSpec(signature_name=servable.DEFAULT_SIGNATURE),
        inputs={servable.TEXT_INPUT: tf.make_tensor_proto(raw, dtype=tf.string)},
    )
    classify = classification_pb2.ClassificationRequest(
        model_spec=model_pb2.ModelSpec(signature_name=servable.CLASSIFY_SIGNATURE)
    )
    for text in raw:
        example = classify.input.example_list.examples.add()
        example.CopyFrom(example_pb2.Example.FromString(servable.text_example(text)))
    logs = [
        prediction_log_pb2.PredictionLog(
            predict_log=prediction_log_pb2.PredictLog(request=predict)
        ),
        prediction_log_pb2.PredictionLog(
            classify_log=prediction_log_pb2.ClassifyLog(request=classify)
        ),
    ]
    path = version_dir / servable.WARMUP_REQUESTS
    path.parent.mkdir(exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for log in logs:
            writer.write(log.SerializeToString())
    return path


def read(version_dir: Path) -> list[WarmupRequest]:
    """The records under `version_dir` as requests ([] when it has none)."""
    path = version_dir / servable.WARMUP_REQUESTS
    if not path.is_file():
        return []
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    requests = []
    for record in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
        log = prediction_log_pb2.PredictionLog.FromString(record)
        if log.HasField("predict_log"):
            request = log.predict_log.request
            tensor = request.inputs[servable.TEXT_INPUT]
            texts = list(tf.make_ndarray(tensor).reshape(-1))
            method = servable.PREDICT_METHOD
        elif log.HasField("classify_log"):
            request = log.classify_log.request
            examples = request.input.example_list.examples
            texts = [e.features.feature[servable.TEXT_INPUT].bytes_list.value[0] for e in examples]
            method = servable.CLASSIFY_METHOD
        else:
            raise ValueError(f"{path}: a record of kind {log.WhichOneof('log_type')!r}")
        requests.append(WarmupRequest(request.model_spec.signature_name, method, texts))
    return requests


def replay(model, version_dir: Path) -> int:
    """Run each record once on a loaded SavedModel, as TF Serving does; returns how many."""
    import tensorflow as tf

    requests = read(version_dir)
    for request in requests:
        if request.method == servable.CLASSIFY_METHOD:
            examples = [servable.text_example(t) for t in request.texts]
            inputs = {servable.EXAMPLES_INPUT: tf.constant(examples)}
        else:
            inputs = {servable.TEXT_INPUT: tf.constant(request.texts)}
        model.signatures[request.signature](**inputs)
    return len(requests)
