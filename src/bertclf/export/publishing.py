"""Publishing a version: BASE/NAME/VERSION by an atomic rename, and its metadata.

A version is written into a hidden temporary directory beside its target and renamed
into place only when it is complete and checked: a TF Serving instance polling
BASE/NAME never sees a half-written version, and a version number is never reused.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import tensorflow as tf

from bertclf import servable
from bertclf.errors import ExportError
from bertclf.fileio import atomic_path, publish_modes, remove_stale_temps
from bertclf.prediction.trained_run import TrainedRun
from bertclf.version import __version__

logger = logging.getLogger(__name__)


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
    tmp: Path,
    run: TrainedRun,
    name: str,
    version: int,
    target: str,
    result: dict[str, Any],
    format: str = "savedmodel",
) -> None:
    """assets.extra/bertclf.json: signatures, op audit and provenance (no local paths).

    An ONNX export (`format` onnx) records the ops it needs beyond standard ONNX (from
    onnxruntime-extensions) and the ONNX Runtime it was checked with, and has no
    `explain` signature."""
    encoder = dict(run.meta["encoder"])
    if encoder.get("kind") != "hub":  # a local directory or the package's: names only
        encoder = {k: Path(v).name if k in ("name", "source") else v for k, v in encoder.items()}
    thresholds = run.thresholds
    meta = {
        "name": name,
        "version": version,
        "task": "multilabel" if run.multilabel else "single",
        "compute_dtype": run.model.backbone.dtype_policy.compute_dtype,
        "signatures": result["signatures"],
        **({"thresholds": [float(t) for t in thresholds]} if thresholds is not None else {}),
        "format": format,
        # --quantize int8: what the guard measured (None: float32 weights).
        **({"quantization": result.get("quantization")} if format == "onnx" else {}),
        "op_audit": (
            {"target": target, "non_core_ops": result["non_core_ops"]}
            if format != "onnx"
            else {
                "runtime": f"onnxruntime {result['onnxruntime']} with onnxruntime-extensions",
                "custom_ops": result["custom_ops"],
                "opsets": result["opsets"],
            }
        ),
        # A run made before calibration existed has none: raw scores, no extra outputs.
        "calibration": None if run.calibration is None else run.calibration.metadata(),
        "explain": None
        if format == "onnx"
        else {
            "signature": servable.EXPLAIN_SIGNATURE,
            "method": "integrated gradients on the token embeddings, summed to words",
            "baseline": "every WordPiece token replaced by [PAD]",
            "steps": run.explainer.steps,
        },
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
