"""The serving graph: raw text in, probabilities out, around the run's own layers.

    BASE/NAME/VERSION/saved_model.pb, variables/, assets/labels.txt,
                      assets.extra/bertclf.json (op audit, signatures, provenance),
                      assets.extra/tf_serving_warmup_requests (`bertclf.servable`)

The graph holds the run's own `TextPreprocessor` (cleaning, WordPiece, packing) and
classifier, so serving needs no preprocessing outside the model.
"""

from __future__ import annotations

from pathlib import Path

import keras
import tensorflow as tf

from bertclf import servable
from bertclf.fileio import atomic_path
from bertclf.model.rundir import LABELS
from bertclf.prediction.trained_run import TrainedRun


def labels_table(labels_file: Path) -> tf.lookup.StaticHashTable:
    """class id -> label name, initialised from labels.txt (copied into assets/)."""
    return tf.lookup.StaticHashTable(
        tf.lookup.TextFileInitializer(
            str(labels_file),
            key_dtype=tf.int64,
            key_index=tf.lookup.TextFileIndex.LINE_NUMBER,
            value_dtype=tf.string,
            value_index=tf.lookup.TextFileIndex.WHOLE_LINE,
        ),
        default_value="",
        # Anonymous: a shared table's name would embed labels.txt's local path.
        experimental_is_anonymous=True,
    )


def serving_outputs(outputs: dict, thresholds, class_names) -> dict:
    """`serving_default`'s outputs from the run's (`scores` [b, L], a calibrated run's
    `ood_score`, `abstain`): multi-label (`thresholds` [L]) adds `predicted` [b, L] int32,
    single-label `class_ids` [b] int32 and `classes` [b] (`class_names`: ids -> names).
    The SavedModel and the ONNX export (`bertclf.export.onnx`) both answer with these."""
    scores = outputs["scores"]
    if thresholds is not None:
        cuts = tf.constant(thresholds, tf.float32)[None, :]  # [1, L]
        return {**outputs, "predicted": tf.cast(scores >= cuts, tf.int32)}
    class_ids = tf.argmax(scores, axis=-1, output_type=tf.int32)
    return {**outputs, "classes": class_names(class_ids), "class_ids": class_ids}


def build_archive(run: TrainedRun) -> keras.export.ExportArchive:
    """An ExportArchive with `serving_default` (predict) and `classify` endpoints.

    Single-label `serving_default`: `scores` [b, L], `classes` [b] and `class_ids` [b].
    Multi-label: `scores` [b, L] (each label's probability) and `predicted` [b, L] int32
    (1 where the score reaches the label's threshold, compiled in from thresholds.json):
    fixed-shape outputs, which TF Serving's REST API returns (ragged ones it cannot).
    A calibrated run (`bertclf.model.calibration`) adds `ood_score` [b] float32 and
    `abstain` [b] bool, and its `scores` are the calibrated probabilities. `classify`
    returns every label with its score, for both. `explain` returns the word
    attributions of each explained label (`bertclf.model.attribution`).
    """
    table = labels_table(run.path / LABELS)
    num_labels = len(run.label_names)
    thresholds = run.thresholds  # multi-label: [L]; None otherwise

    def serve(text):
        # The run's own graph (`TrainedRun.outputs_graph`): the preprocessor, the
        # classifier and the calibration, the batch padded only to its longest text.
        return serving_outputs(
            run.outputs_graph(text), thresholds, lambda ids: table.lookup(tf.cast(ids, tf.int64))
        )

    def classify(inputs):
        parsed = tf.io.parse_example(inputs, {"text": tf.io.FixedLenFeature([], tf.string)})
        scores = run.outputs_graph(parsed["text"])["scores"]
        # TF Serving's Classify API wants one class name per score.
        names = table.lookup(tf.range(num_labels, dtype=tf.int64))  # [num_labels]
        classes = tf.tile(names[None, :], [tf.shape(scores)[0], 1])
        return {"classes": classes, "scores": scores}

    archive = keras.export.ExportArchive()
    # Variables are tracked through the endpoints (tracking the Keras model as well
    # would store every weight twice); the labels table is a resource: tracked here.
    archive.track(table)
    archive.add_endpoint(
        "serving_default", serve, input_signature=[tf.TensorSpec([None], tf.string, name="text")]
    )
    archive.add_endpoint(
        "classify", classify, input_signature=[tf.TensorSpec([None], tf.string, name="inputs")]
    )
    # Word attributions (integrated gradients: 34 forward and backward passes a text),
    # a signature of its own so that predict's cost never includes them; TF Serving
    # serves it as `"signature_name": "explain"`.
    archive.add_endpoint(
        servable.EXPLAIN_SIGNATURE,
        run.explainer.explain,
        input_signature=[tf.TensorSpec([None], tf.string, name=servable.TEXT_INPUT)],
    )
    return archive


def mark_classify_method(export_dir: Path) -> None:
    """TF2 saves every signature as predict; TF Serving's :classify needs its own method."""
    from tensorflow.core.protobuf import saved_model_pb2

    pb = export_dir / servable.SAVED_MODEL
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString(pb.read_bytes())
    for meta_graph in proto.meta_graphs:
        if "classify" in meta_graph.signature_def:
            meta_graph.signature_def["classify"].method_name = servable.CLASSIFY_METHOD
    with atomic_path(pb) as tmp:
        tmp.write_bytes(proto.SerializeToString())


def write_version(run: TrainedRun, tmp: Path) -> None:
    build_archive(run).write_out(str(tmp), verbose=False)
    mark_classify_method(tmp)
    servable.write_warmup(tmp, servable.warmup_texts(run.preprocessor.sequence_length))
