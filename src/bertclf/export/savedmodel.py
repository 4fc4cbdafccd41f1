"""The serving graph: raw text in, probabilities out, around the run's own layers.

    BASE/NAME/VERSION/saved_model.pb, variables/, assets/labels.txt,
                      assets.extra/bertclf.json (op audit, signatures, provenance),
                      assets.extra/tf_serving_warmup_requests (`bertclf.servable`)

The graph holds the run's own `TextPreprocessor` (cleaning, WordPiece, packing) and
classifier, so serving needs no preprocessing outside the model.
"""

from __future__ import annotations

from pathlib import Path

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


def servable_module(run: TrainedRun) -> tf.Module:
    """The SavedModel's root: `serving_default` (predict), `classify` and `explain`.

    Single-label `serving_default`: `scores` [b, L], `classes` [b] and `class_ids` [b].
    Multi-label: `scores` [b, L] (each label's probability) and `predicted` [b, L] int32
    (1 where the score reaches the label's threshold, compiled in from thresholds.json):
    fixed-shape outputs, which TF Serving's REST API returns (ragged ones it cannot).
    A calibrated run (`bertclf.model.calibration`) adds `ood_score` [b] float32 and
    `abstain` [b] bool, and its `scores` are the calibrated probabilities. `classify`
    returns every label with its score, for both. `explain` returns the word
    attributions of each explained label (`bertclf.model.attribution`).

    A plain `tf.Module` rather than `keras.export.ExportArchive`: the archive traces
    each endpoint twice when it writes (once outside `tf.saved_model.save` to find the
    variables, once inside it, whose save context is part of tf.function's cache key),
    which was half of a tiny export's writing time. Here each endpoint is traced once,
    inside the save, and the module tracks the model's variables and the labels table
    itself (the save refuses a graph that captures anything untracked).
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

    def endpoint(fn, input_name: str):
        spec = [tf.TensorSpec([None], tf.string, name=input_name)]
        return tf.function(fn, input_signature=spec, autograph=False)

    module = tf.Module()
    module.labels = table
    module.weights = [v.value for v in run.model.variables]  # Keras variables' tf.Variables
    module.serving_default = endpoint(serve, servable.TEXT_INPUT)
    module.classify = endpoint(classify, servable.EXAMPLES_INPUT)
    # Word attributions (integrated gradients: 34 forward and backward passes a text),
    # a signature of its own so that predict's cost never includes them; TF Serving
    # serves it as `"signature_name": "explain"`.
    module.explain = endpoint(run.explainer.explain, servable.TEXT_INPUT)
    return module


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
    module = servable_module(run)
    signatures = {
        name: getattr(module, name)
        for name in (
            servable.DEFAULT_SIGNATURE,
            servable.CLASSIFY_SIGNATURE,
            servable.EXPLAIN_SIGNATURE,
        )
    }
    tf.saved_model.save(module, str(tmp), signatures=signatures)
    mark_classify_method(tmp)
    servable.write_warmup(tmp, servable.warmup_texts(run.preprocessor.sequence_length))
