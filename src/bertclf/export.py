"""Export a trained run as a TensorFlow Serving SavedModel: raw text in, probabilities out.

    BASE/NAME/VERSION/saved_model.pb, variables/, assets/labels.txt,
                      assets.extra/bertclf.json (op audit, signatures, provenance),
                      assets.extra/tf_serving_warmup_requests (bertclf.warmup)

The graph holds the run's own `TextPreprocessor` (cleaning, WordPiece, packing)
and classifier, so serving needs no preprocessing outside the model. A version
is written into a hidden temporary directory beside its target, audited,
verified in a fresh process, and only then renamed into place: a TF Serving
instance polling BASE/NAME never sees a half-written version.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from bertclf import servable, warmup
from bertclf.archives import package_sagemaker, package_zip
from bertclf.command_config import EXPORT_PRECISIONS
from bertclf.errors import ExportError
from bertclf.export_check import DEFAULT_TARGET, TARGETS, audit, check_in_fresh_process
from bertclf.fileio import atomic_path, publish_modes, remove_stale_temps
from bertclf.pipeline import inference_features
from bertclf.run import TrainedRun, load_run
from bertclf.rundir import LABELS
from bertclf.thresholds import apply
from bertclf.version import __version__

logger = logging.getLogger(__name__)


@dataclass
class ExportResult:
    """Where a version was published and what was checked."""

    path: Path
    version: int
    seconds: float
    size_bytes: int
    non_core_ops: list[str]
    signatures: dict[str, Any]
    max_abs_diff: float | None = None
    packages: list[Path] = field(default_factory=list)


# ------------------------------------------------------------------ the graph


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


def build_archive(run: TrainedRun) -> keras.export.ExportArchive:
    """An ExportArchive with `serving_default` (predict) and `classify` endpoints.

    Single-label `serving_default`: `scores` [b, L], `classes` [b] and `class_ids` [b].
    Multi-label: `scores` [b, L] (each label's probability) and `predicted` [b, L] int32
    (1 where the score reaches the label's threshold, compiled in from thresholds.json):
    fixed-shape outputs, which TF Serving's REST API returns (ragged ones it cannot).
    `classify` returns every label with its score, for both.
    """
    preprocessor, model = run.preprocessor, run.model
    table = labels_table(run.path / LABELS)
    num_labels = len(run.label_names)
    thresholds = run.thresholds  # multi-label: [L]; None otherwise

    def scores_for(texts):
        # texts [batch] -> probabilities [batch, num_labels], the training graph's layers,
        # the batch padded only to its longest text (as `bertclf predict` does).
        features = inference_features(preprocessor, texts)  # [batch, width]
        return model.probabilities(model(features, training=False))

    def serve(text):
        scores = scores_for(text)
        if thresholds is not None:
            cuts = tf.constant(thresholds, tf.float32)[None, :]  # [1, L]
            return {"scores": scores, "predicted": tf.cast(scores >= cuts, tf.int32)}
        class_ids = tf.argmax(scores, axis=-1, output_type=tf.int32)
        classes = table.lookup(tf.cast(class_ids, tf.int64))
        return {"scores": scores, "classes": classes, "class_ids": class_ids}

    def classify(inputs):
        parsed = tf.io.parse_example(inputs, {"text": tf.io.FixedLenFeature([], tf.string)})
        scores = scores_for(parsed["text"])
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


# ------------------------------------------------------------------ publishing


def check_name(name: str) -> str:
    if not servable.valid_name(name):
        raise ExportError(
            f"model name {name!r} has characters outside [A-Za-z0-9_.-]; "
            "pass --name with only those"
        )
    return name


def prepare_model_dir(base: Path, name: str, version: int | None) -> Path:
    """Create BASE/NAME (writable), refuse an explicit --version that exists."""
    if base.exists() and not base.is_dir():
        raise ExportError(f"{base}: cannot create {base / name} (it is a file); choose a folder")
    try:
        (base / name).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ExportError(
            f"{base}: cannot create {base / name} ({e.strerror}); choose a writable --to"
        ) from None
    if not os.access(base / name, os.W_OK):
        raise ExportError(f"{base / name}: not writable; choose a writable --to")
    if version is not None and version < 1:
        raise ExportError(f"--version {version}: versions are positive integers")
    if version is not None and (base / name / str(version)).exists():
        raise ExportError(
            f"{base / name / str(version)} already exists and is never "
            "overwritten; omit --version to use the next free one"
        )
    return base / name


def next_version(model_dir: Path) -> int:
    existing = servable.versions(model_dir)
    return existing[-1] + 1 if existing else 1


def clean_stale_temps(base: Path, model_dir: Path) -> None:
    """Remove what killed exports left: version directories in progress, archives."""
    for directory in (model_dir, base):
        for path in remove_stale_temps(directory):
            logger.info("removed %s, left by an interrupted export", path)


def publish(tmp: Path, model_dir: Path, version: int | None, stamp) -> tuple[Path, int]:
    """Rename the finished version into place: atomic, and never over another version.

    With no explicit --version, a concurrent export that took the number first
    makes this one take the next free number (`stamp(tmp, version)` rewrites the
    metadata that records it); with --version, it fails with one line.
    """
    publish_modes(tmp)  # mkdtemp made it 0700: TF Serving may run as another user
    for _ in range(100):
        number = version if version is not None else next_version(model_dir)
        stamp(tmp, number)
        final = model_dir / str(number)
        try:
            # Atomic, and never onto a version that exists: rename(2) fails with
            # ENOTEMPTY/EEXIST when another export published that number first.
            os.rename(tmp, final)
        except OSError as e:
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            if version is not None:
                raise ExportError(
                    f"{final} was published by another export meanwhile and is never "
                    "overwritten; omit --version to use the next free one"
                ) from None
            continue
        return final, number
    raise ExportError(f"{model_dir}: could not claim a free version number; retry")


def sample_texts(run: TrainedRun) -> list[str]:
    """Texts to verify parity on: the run's stored validation sample, plus edge cases."""
    texts = run.sample_texts()
    if not texts:
        logger.warning("%s stores no validation sample; verifying on built-in texts", run.path)
        texts = ["The quick brown fox jumps over the lazy dog."]
    long_text = " ".join(["longer than the model's window"] * 200)
    return [*texts, "", long_text, "\u00dcn\u00efc\u00f6d\u00e9  and\nnew lines\t> quoted"]


def _write_version(run: TrainedRun, tmp: Path) -> None:
    build_archive(run).write_out(str(tmp), verbose=False)
    mark_classify_method(tmp)
    warmup.write(tmp, warmup.texts_for(run.preprocessor.sequence_length))


def _verify(run: TrainedRun, tmp: Path, verify: bool, target: str) -> tuple[dict, float | None]:
    texts = sample_texts(run) if verify else []
    result = check_in_fresh_process(tmp, texts)
    audit(result["non_core_ops"], target)
    if not verify:
        return result, None
    expected = run.predict_proba(texts)
    diff = float(np.max(np.abs(np.asarray(result["scores"]) - expected)))
    diff_classify = float(np.max(np.abs(np.asarray(result["classify_scores"]) - expected)))
    if max(diff, diff_classify) > 1e-5:
        raise ExportError(
            f"verification: the reloaded model's probabilities differ from the "
            f"trained model's by {max(diff, diff_classify):.2e} (> 1e-5)"
        )
    thresholds = run.thresholds
    if thresholds is not None:
        if result["predicted"] != apply(expected, thresholds).tolist():
            raise ExportError("verification: the reloaded model's label sets differ from the run's")
    elif result["classes"] != [run.label_names[i] for i in expected.argmax(1)]:
        raise ExportError("verification: the reloaded model's classes differ from the run's")
    return result, diff


def _warn_precision(run: TrainedRun) -> None:
    compute = run.model.backbone.dtype_policy.compute_dtype
    if compute != "float32":
        # The export computes as training did (same layers, same policy): parity.
        logger.warning(
            "%s trained with --precision %s, so this export computes in %s: faster on "
            "batches where the host has native support (AVX512_BF16/AMX CPUs, Ampere+ "
            "GPUs), slower elsewhere and, on AVX512_BF16 CPUs, on one text at a time: "
            "export with --precision fp32 for those hosts or for one-text requests",
            run.path,
            run.meta["config"]["train"]["precision"],
            compute,
        )


def export(
    run_dir: str | Path,
    base: str | Path,
    name: str | None = None,
    version: int | None = None,
    target: str = DEFAULT_TARGET,
    verify: bool = True,
    zip_archive: bool = False,
    sagemaker: bool = False,
    precision: str = "run",
) -> ExportResult:
    """Publish RUN's best weights as BASE/NAME/VERSION (TF Serving layout).

    Args:
        run_dir: a trained run.
        base: the model base path TF Serving watches.
        name: model name (default: the run directory's name), [A-Za-z0-9_.-].
        version: version number (default: one more than the highest, starting at 1).
        target: server whose ops the export must stay within (`tfserving-2.19`).
        verify: reload in a fresh process and compare probabilities (1e-5).
        zip_archive: also write BASE/NAME.zip.
        sagemaker: also write BASE/NAME-VERSION.model.tar.gz for SageMaker.
        precision: `run` (compute as trained) or `fp32` (float32 compute from the same
            weights; verified against the run loaded the same way).

    Example:
    >>> result = export("runs/demo", "exports")  # doctest: +SKIP
    >>> result.path
    PosixPath('exports/demo/1')
    """
    start = time.perf_counter()
    _check_choices(target, precision)
    name = check_name(name or Path(run_dir).resolve().name)
    base = Path(base)
    run = load_run(run_dir, precision)
    _warn_precision(run)
    model_dir = prepare_model_dir(base, name, version)
    clean_stale_temps(base, model_dir)
    final, version, result, diff = _publish_version(run, model_dir, name, version, verify, target)
    packages = []
    if zip_archive:
        packages.append(package_zip(base, name))
    if sagemaker:
        packages.append(package_sagemaker(base, name, version))
    size = sum(p.stat().st_size for p in final.rglob("*") if p.is_file())
    elapsed = time.perf_counter() - start
    return ExportResult(
        final, version, elapsed, size, result["non_core_ops"], result["signatures"], diff, packages
    )


def _check_choices(target: str, precision: str) -> None:
    if target not in TARGETS:
        raise ExportError(f"--target {target!r} is unknown; choose one of {sorted(TARGETS)}")
    if precision not in EXPORT_PRECISIONS:
        raise ExportError(
            f"--precision {precision!r} is unknown; choose one of {list(EXPORT_PRECISIONS)}"
        )


def _publish_version(run, model_dir: Path, name: str, version, verify: bool, target: str):
    """Write, verify and stamp a version in a temporary folder, then publish it by rename.

    Returns (final path, version number, the verification's result, its largest
    probability difference). Nothing is left behind if any step fails.
    """
    tmp = Path(
        tempfile.mkdtemp(
            prefix=f".{version or next_version(model_dir)}.pid{os.getpid()}.",
            suffix=".tmp",
            dir=model_dir,
        )
    )
    try:
        _write_version(run, tmp)
        result, diff = _verify(run, tmp, verify, target)

        def stamp(path: Path, number: int) -> None:
            write_metadata(path, run, name, number, target, result)

        final, version = publish(tmp, model_dir, version, stamp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final, version, result, diff


def portable_config(config: dict[str, Any]) -> dict[str, Any]:
    """The run's config with its local paths reduced to their last part (names only)."""
    data = dict(config["data"])
    for key in ("train", "test", "val"):
        if data.get(key):
            data[key] = Path(data[key]).name
    model = dict(config["model"])
    if Path(model["model"]).is_absolute():
        model["model"] = Path(model["model"]).name
    return {**config, "data": data, "model": model, "out": Path(config["out"]).name}


def write_metadata(
    tmp: Path, run: TrainedRun, name: str, version: int, target: str, result: dict[str, Any]
) -> None:
    """assets.extra/bertclf.json: signatures, op audit and provenance (no local paths)."""
    encoder = dict(run.meta["encoder"])
    if encoder.get("kind") != "hub":  # a local directory or the package's: names only
        encoder = {k: Path(v).name if k in ("name", "source") else v for k, v in encoder.items()}
    thresholds = run.thresholds
    meta = {
        "name": name,
        "version": version,
        "task": "multilabel" if thresholds is not None else "single",
        "compute_dtype": run.model.backbone.dtype_policy.compute_dtype,
        "signatures": result["signatures"],
        **({"thresholds": [float(t) for t in thresholds]} if thresholds is not None else {}),
        "op_audit": {"target": target, "non_core_ops": result["non_core_ops"]},
        "run": {
            "name": run.path.resolve().name,
            "config": portable_config(run.meta["config"]),
            "encoder": encoder,
        },
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "bertclf_version": __version__,
        "tensorflow": tf.__version__,
    }
    (tmp / servable.METADATA.parent).mkdir(exist_ok=True)
    with atomic_path(tmp / servable.METADATA) as path:
        path.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
