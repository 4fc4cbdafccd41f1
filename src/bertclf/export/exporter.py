"""`export()`: a trained run as BASE/NAME/VERSION, its steps in the order they run.

Load the run (`bertclf.prediction`), write the graph into a hidden temporary folder
beside the target (`savedmodel`), audit its ops and reload it in a fresh process to
compare probabilities (`verification`), stamp its metadata and rename it into place
(`publishing`), then the optional archives (`archives`). Any failure removes the
temporary folder: nothing is half-published.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertclf.config.export import (
    DEFAULT_TARGET,
    EXPORT_FORMATS,
    EXPORT_PRECISIONS,
    QUANTIZE_CHOICES,
    TARGETS,
)
from bertclf.errors import ExportError
from bertclf.export.archives import package_sagemaker, package_zip
from bertclf.export.onnx import write_onnx_version
from bertclf.export.publishing import (
    check_name,
    clean_stale_temps,
    next_version,
    prepare_model_dir,
    publish,
    write_metadata,
)
from bertclf.export.quantization import quantize_version, validation_split
from bertclf.export.savedmodel import write_version
from bertclf.export.verification import verify_onnx_version, verify_version
from bertclf.prediction.trained_run import TrainedRun, load_run

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
    quantization: dict | None = None  # --quantize int8: what the guard measured


def _note_precision(run: TrainedRun) -> None:
    """One info line: the default path computes as training did (parity), which is a
    choice for batches on bf16 hosts, not a fault; README, Export, says when fp32 is the
    better export."""
    compute = run.model.backbone.dtype_policy.compute_dtype
    if compute != "float32":
        logger.info(
            "computes in %s as the run trained (--precision fp32 is faster for one text "
            "a request, or on hosts without native bf16)",
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
    format: str = "savedmodel",
    quantize: str = "none",
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
        format: `savedmodel`, or `onnx`: one model.onnx with the tokenizer inside
            (`bertclf.export.onnx`), float32, verified (1e-4) in a process without
            TensorFlow; `target` and `sagemaker` do not apply.
        quantize: `none`, or `int8` (format onnx): int8 weights, published only when
            validation macro-F1 falls by at most 0.01 and batch-1 latency is lower,
            both measured at export on the run's validation split
            (`bertclf.export.quantization`); ExportError with the numbers otherwise.

    Example:
    >>> result = export("runs/demo", "exports")  # doctest: +SKIP
    >>> result.path
    PosixPath('exports/demo/1')
    """
    start = time.perf_counter()
    _check_choices(target, precision, format, sagemaker, quantize)
    name = check_name(name or Path(run_dir).resolve().name)
    base = Path(base)
    if format == "onnx":
        precision = "fp32"  # ONNX Runtime's CPU kernels compute BERT in float32
    run = load_run(run_dir, precision)
    # --quantize int8 measures on the run's validation split: read it before any work.
    val = validation_split(run) if quantize == "int8" else None
    if format != "onnx":
        _note_precision(run)
    # Folders this export creates, removed again (when still empty) if it fails: a refused
    # or failed export leaves the base as it found it.
    created = [p for p in (base / name, base) if not p.exists()]
    model_dir = prepare_model_dir(base, name, version)
    clean_stale_temps(base, model_dir)
    try:
        final, version, result, diff = _publish_version(
            run, model_dir, name, version, verify, target, format, val
        )
    except BaseException:
        for folder in created:  # innermost first; rmdir refuses a folder with anything in it
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    packages = []
    if zip_archive:
        packages.append(package_zip(base, name))
    if sagemaker:
        packages.append(package_sagemaker(base, name, version))
    size = sum(p.stat().st_size for p in final.rglob("*") if p.is_file())
    elapsed = time.perf_counter() - start
    return ExportResult(
        final,
        version,
        elapsed,
        size,
        result["non_core_ops"],
        result["signatures"],
        diff,
        packages,
        result.get("quantization"),
    )


def _check_choices(
    target: str, precision: str, format: str, sagemaker: bool, quantize: str
) -> None:
    if format not in EXPORT_FORMATS:
        raise ExportError(f"--format {format!r} is unknown; choose one of {list(EXPORT_FORMATS)}")
    if quantize not in QUANTIZE_CHOICES:
        raise ExportError(f"--quantize {quantize!r} is unknown; choose one of {QUANTIZE_CHOICES}")
    if quantize != "none" and format != "onnx":
        raise ExportError(
            f"--quantize {quantize}: only ONNX exports are quantized; add --format onnx"
        )
    if format == "onnx" and sagemaker:
        raise ExportError(
            "--sagemaker: SageMaker's TensorFlow container serves SavedModels; drop --format onnx"
        )
    if target not in TARGETS:
        raise ExportError(f"--target {target!r} is unknown; choose one of {sorted(TARGETS)}")
    if precision not in EXPORT_PRECISIONS:
        raise ExportError(
            f"--precision {precision!r} is unknown; choose one of {list(EXPORT_PRECISIONS)}"
        )


def _publish_version(
    run,
    model_dir: Path,
    name: str,
    version,
    verify: bool,
    target: str,
    format: str,
    val=None,
):
    """Write, verify and stamp a version in a temporary folder, then publish it by rename.

    `val` (--quantize int8): the run's validation examples the int8 guard measures on.
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
        if format == "onnx":
            write_onnx_version(run, tmp)
            result, diff = verify_onnx_version(run, tmp, verify)  # float32: the run's outputs
            if val is not None:
                check = quantize_version(run, tmp, val)  # refuses, with the numbers, or replaces
                result, diff = verify_onnx_version(run, tmp, verify, quantized=True)
                result["quantization"] = check.metadata()
        else:
            write_version(run, tmp)
            result, diff = verify_version(run, tmp, verify, target)

        def stamp(path: Path, number: int) -> None:
            write_metadata(path, run, name, number, target, result, format)

        final, version = publish(tmp, model_dir, version, stamp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final, version, result, diff
