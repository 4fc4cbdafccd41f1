"""Export a trained run as a TensorFlow Serving SavedModel: raw text in, probabilities out.

    BASE/NAME/VERSION/saved_model.pb, variables/, assets/labels.txt,
                      assets.extra/bertclf.json (labels, op audit, signatures, provenance)

The graph holds the run's own `TextPreprocessor` (cleaning, WordPiece, packing)
and classifier, so serving needs no preprocessing outside the model. A version
is written into a hidden temporary directory beside its target, audited,
verified in a fresh process, and only then renamed into place: a TF Serving
instance polling BASE/NAME never sees a half-written version.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from bertclf import __version__
from bertclf.archives import package_sagemaker, package_zip
from bertclf.errors import ExportError
from bertclf.fileio import atomic_path
from bertclf.run import LABELS, TrainedRun, load_run

logger = logging.getLogger(__name__)

NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
METADATA = Path("assets.extra") / "bertclf.json"
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"

# TF Text ops that TF Serving 2.19.x links (TF Text 2.12.1, as in SageMaker's TF 2.20
# image). `TFText>RoundRobinTrim` (keras-hub's default truncation) is not among them.
TF_TEXT_2_12_OPS = frozenset(
    {
        "CaseFoldUTF8",
        "NormalizeUTF8",
        "NormalizeUTF8WithOffsetsMap",
        "RegexSplitWithOffsets",
        "WordpieceTokenizeWithOffsets",
        "FastWordpieceTokenizeWithOffsets",
        "FastWordpieceDetokenize",
        "FastBertNormalize",
        "WhitespaceTokenizeWithOffsets",
        "WhitespaceTokenizeWithOffsetsV2",
        "UnicodeScriptTokenizeWithOffsets",
        "SentencepieceOp",
        "SentencepieceTokenizeOp",
        "SentencepieceTokenizeWithOffsetsOp",
        "SentencepieceDetokenizeOp",
        "SplitMergeTokenizeWithOffsets",
        "MaxSpanningTree",
        "TFText>WhitespaceTokenizeWithOffsetsV2",
        "TFText>FastWordpieceTokenizeWithOffsets",
        "TFText>FastBertNormalize",
        "TFText>FastSentencepieceTokenize",
        "TFText>ConstrainedSequence",
        "TFText>SentenceFragmentsV2",
        "TFText>Ngrams",
    }
)
TARGETS = {
    # target -> (TF Serving image tag, allowed non-core ops; None = whatever loads here)
    "tfserving-2.19": ("2.19.1", TF_TEXT_2_12_OPS),
    "tensorflow-2.21": (None, None),
}
DEFAULT_TARGET = "tfserving-2.19"


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
    )


def build_archive(run: TrainedRun) -> keras.export.ExportArchive:
    """An ExportArchive with `serving_default` (predict) and `classify` endpoints."""
    preprocessor, model = run.preprocessor, run.model
    table = labels_table(run.path / LABELS)
    num_labels = len(run.label_names)

    def scores_for(texts):
        # texts [batch] -> probabilities [batch, num_labels], the training graph's layers.
        return model.probabilities(model(preprocessor(texts), training=False))

    def serve(text):
        scores = scores_for(text)
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

    pb = export_dir / "saved_model.pb"
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString(pb.read_bytes())
    for meta_graph in proto.meta_graphs:
        if "classify" in meta_graph.signature_def:
            meta_graph.signature_def["classify"].method_name = CLASSIFY_METHOD
    with atomic_path(pb) as tmp:
        tmp.write_bytes(proto.SerializeToString())


# ------------------------------------------------------------------ checks


def check_in_fresh_process(export_dir: Path, texts: list[str]) -> dict[str, Any]:
    """Run savedmodel_check.py (tensorflow + tensorflow_text only) on the export."""
    script = Path(__file__).with_name("savedmodel_check.py")
    with tempfile.TemporaryDirectory() as tmp:
        request, result = Path(tmp) / "request.json", Path(tmp) / "result.json"
        request.write_text(json.dumps({"texts": texts}))
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        proc = subprocess.run(
            [sys.executable, str(script), str(export_dir), str(request), str(result)],
            capture_output=True,
            text=True,
            env=env,
        )
        if proc.returncode != 0:
            tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
            raise ExportError(
                f"{export_dir}: the SavedModel failed to load in a fresh process ({tail[0][:300]})"
            )
        return json.loads(result.read_text())


def audit(non_core_ops: list[str], target: str) -> None:
    """Fail when the graph needs an op the target server does not have."""
    allowed = TARGETS[target][1]
    if allowed is None:
        return
    missing = sorted(set(non_core_ops) - allowed)
    if missing:
        raise ExportError(
            f"op audit: the export uses {missing}, which {target} does not register (it would "
            "fail to load with 'Op type not registered'); train with --truncate waterfall, or "
            "export with a newer --target"
        )


def format_signatures(sigs: dict[str, Any]) -> str:
    """The signatures, laid out as `saved_model_cli show --all` does."""
    lines = []
    for key in sorted(sigs):
        sig = sigs[key]
        lines.append(f"signature_def['{key}']:")
        for kind in ("inputs", "outputs"):
            lines.append(
                f"  The given SavedModel SignatureDef contains the following "
                f"{'input' if kind == 'inputs' else 'output'}(s):"
            )
            for name, t in sorted(sig[kind].items()):
                shape = (
                    "unknown_rank" if t["shape"] is None else f"({', '.join(map(str, t['shape']))})"
                )
                lines += [
                    f"    {kind}['{name}'] tensor_info:",
                    f"        dtype: {t['dtype']}",
                    f"        shape: {shape}",
                    f"        name: {t['name']}",
                ]
        lines.append(f"  Method name is: {sig['method_name']}")
    return "\n".join(lines)


# ------------------------------------------------------------------ publishing


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise ExportError(
            f"model name {name!r} has characters outside [A-Za-z0-9_.-]; "
            "pass --name with only those"
        )
    return name


def versions(model_dir: Path) -> list[int]:
    """Numeric version directories, as TF Serving sees them."""
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def prepare_target(base: Path, name: str, version: int | None) -> tuple[Path, int]:
    try:
        (base / name).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ExportError(
            f"{base}: cannot create {base / name} ({e.strerror}); choose a writable --to"
        ) from None
    if not os.access(base / name, os.W_OK):
        raise ExportError(f"{base / name}: not writable; choose a writable --to")
    existing = versions(base / name)
    if version is None:
        version = (existing[-1] + 1) if existing else 1
    elif version < 1:
        raise ExportError(f"--version {version}: versions are positive integers")
    if (base / name / str(version)).exists():
        raise ExportError(
            f"{base / name / str(version)} already exists and is never "
            "overwritten; omit --version to use the next free one"
        )
    return base / name / str(version), version


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def clean_stale_temps(model_dir: Path) -> None:
    """Remove temporary export directories left by exports that were killed."""
    for path in model_dir.glob(".tmp-*-pid*-*"):
        match = re.match(r"^\.tmp-.*-pid(\d+)-", path.name)
        if match and not _pid_alive(int(match.group(1))):
            logger.info("removing %s, left by an interrupted export", path)
            shutil.rmtree(path, ignore_errors=True)


def sample_texts(run: TrainedRun, limit: int = 64) -> list[str]:
    """Texts to verify parity on: the run's validation texts, plus edge cases."""
    from bertclf.data import load_splits
    from bertclf.errors import BertclfError

    try:
        texts = load_splits(run.config.data, run.config.seed).val.texts[:limit]
    except BertclfError:
        logger.warning("the run's data is not readable here; verifying on built-in texts")
        texts = ["The quick brown fox jumps over the lazy dog."]
    long_text = " ".join(["longer than the model's window"] * 200)
    return [*texts, "", long_text, "Ünïcödé  and\nnew lines\t> quoted"]


def _write_version(run: TrainedRun, tmp: Path) -> None:
    build_archive(run).write_out(str(tmp), verbose=False)
    mark_classify_method(tmp)


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
    if result["classes"] != [run.label_names[i] for i in expected.argmax(1)]:
        raise ExportError("verification: the reloaded model's classes differ from the run's")
    return result, diff


def export(
    run_dir: str | Path,
    base: str | Path,
    name: str | None = None,
    version: int | None = None,
    target: str = DEFAULT_TARGET,
    verify: bool = True,
    zip_archive: bool = False,
    sagemaker: bool = False,
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

    Example:
    >>> result = export("runs/demo", "exports")  # doctest: +SKIP
    >>> result.path
    PosixPath('exports/demo/1')
    """
    start = time.perf_counter()
    if target not in TARGETS:
        raise ExportError(f"--target {target!r} is unknown; choose one of {sorted(TARGETS)}")
    run = load_run(run_dir)
    compute = run.model.backbone.dtype_policy.compute_dtype
    if compute != "float32":
        # The export computes as training did (same layers, same policy): parity.
        logger.warning(
            "%s trained with --precision %s, so this export computes in %s; serving "
            "hosts without native support (AVX512_BF16/AMX CPUs, Ampere+ GPUs) run it "
            "slower than float32: train with --precision fp32 for those",
            run_dir,
            run.meta["config"]["train"]["precision"],
            compute,
        )
    name = check_name(name or Path(run_dir).resolve().name)
    base = Path(base)
    final, version = prepare_target(base, name, version)
    clean_stale_temps(base / name)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{version}-pid{os.getpid()}-", dir=base / name))
    try:
        _write_version(run, tmp)
        result, diff = _verify(run, tmp, verify, target)
        write_metadata(tmp, run, name, version, target, result)
        os.rename(tmp, final)  # atomic; fails rather than replace a version made meanwhile
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    packages = []
    if zip_archive:
        packages.append(package_zip(base, name))
    if sagemaker:
        packages.append(package_sagemaker(base, name, version))
    size = sum(p.stat().st_size for p in final.rglob("*") if p.is_file())
    return ExportResult(
        final,
        version,
        time.perf_counter() - start,
        size,
        result["non_core_ops"],
        result["signatures"],
        diff,
        packages,
    )


def write_metadata(
    tmp: Path, run: TrainedRun, name: str, version: int, target: str, result: dict[str, Any]
) -> None:
    meta = {
        "name": name,
        "version": version,
        "labels": run.label_names,
        "compute_dtype": run.model.backbone.dtype_policy.compute_dtype,
        "signatures": result["signatures"],
        "op_audit": {"target": target, "non_core_ops": result["non_core_ops"]},
        "run": {
            "path": str(run.path.resolve()),
            "config": run.meta["config"],
            "encoder": run.meta["encoder"],
        },
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "bertclf_version": __version__,
        "tensorflow": tf.__version__,
    }
    (tmp / METADATA.parent).mkdir(exist_ok=True)
    (tmp / METADATA).write_text(json.dumps(meta, indent=2) + "\n")
