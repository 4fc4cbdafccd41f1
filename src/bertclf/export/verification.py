"""Checks of an export before it is published: the op audit and a reload in a fresh process.

The op audit lists every op of the graph (and its function library) that core
TensorFlow does not register and refuses those the target server lacks. The fresh
process (`python -m bertclf.export.fresh_check`) holds only what a serving host has,
`tensorflow` and then `tensorflow_text`, and runs both signatures on sample texts.
Without verification (`verify=False`) the graph is read here and audited against the
ops a TensorFlow-only process registers (`core_ops`, asked once a process).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from bertclf import servable
from bertclf.config.export import TARGETS
from bertclf.errors import ExportError
from bertclf.prediction.predictor import apply
from bertclf.prediction.trained_run import TrainedRun

logger = logging.getLogger(__name__)


def _fresh_process(module: str, argument: str, request: dict) -> subprocess.CompletedProcess:
    """`python -m MODULE ARGUMENT PID` with `request` as JSON on stdin; the child dies with
    this process (a killed export leaves no verifier running)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run(
        [sys.executable, "-m", module, argument, str(os.getpid())],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        env=env,
    )


def _last_line(proc: subprocess.CompletedProcess) -> str:
    """The failed child's last stderr line (its error), cut to 300 characters."""
    return (proc.stderr.strip().splitlines()[-1:] or ["no output"])[0][:300]


def check_in_fresh_process(
    export_dir: Path, texts: list[str], module: str = "bertclf.export.fresh_check"
) -> dict[str, Any]:
    """Run `python -m bertclf.export.fresh_check` (tensorflow + tensorflow_text) on the export
    (`module`: `bertclf.export.onnx_check` for an ONNX model, without TensorFlow).

    The texts go in on stdin and the result comes back on stdout: no temporary files.
    """
    proc = _fresh_process(module, str(export_dir), {"texts": texts})
    if proc.returncode != 0:
        raise ExportError(
            f"{export_dir}: the model failed to load in a fresh process ({_last_line(proc)})"
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])


@functools.cache
def core_ops() -> frozenset[str]:
    """The ops core TensorFlow registers, read once a process from a fresh one that imports
    only TensorFlow: this process has imported TF Text, whose ops are registered too."""
    proc = _fresh_process("bertclf.export.fresh_check", "--core-ops", {})
    if proc.returncode != 0:
        raise ExportError(f"op audit: TensorFlow failed in a fresh process ({_last_line(proc)})")
    return frozenset(json.loads(proc.stdout.strip().splitlines()[-1]))


def read_graph(export_dir: Path) -> dict[str, Any]:
    """What `fresh_check` reports without running the model (`verify=False`), read here:
    the graph's ops, those core TensorFlow lacks, and the signatures. A process exporting
    several versions starts one fresh process for all of them (`core_ops`)."""
    import tensorflow as tf

    proto = servable.read_saved_model(export_dir)
    ops = servable.graph_ops(proto)
    return {
        "tensorflow": tf.__version__,
        "ops": sorted(ops),
        "non_core_ops": sorted(ops - core_ops()),
        "signatures": servable.signatures(proto),
    }


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


def sample_texts(run: TrainedRun) -> list[str]:
    """Texts to verify parity on: the run's stored validation sample, plus edge cases."""
    texts = run.sample_texts()
    if not texts:
        logger.warning("%s stores no validation sample; verifying on built-in texts", run.path)
        texts = ["The quick brown fox jumps over the lazy dog."]
    long_text = " ".join(["longer than the model's window"] * 200)
    return [*texts, "", long_text, "\u00dcn\u00efc\u00f6d\u00e9  and\nnew lines\t> quoted"]


def verify_version(
    run: TrainedRun, tmp: Path, verify: bool, target: str
) -> tuple[dict, float | None]:
    if not verify:
        result = read_graph(tmp)
        audit(result["non_core_ops"], target)
        return result, None
    texts = sample_texts(run)
    result = check_in_fresh_process(tmp, texts)
    audit(result["non_core_ops"], target)
    diff = compare(run, texts, result, 1e-5)
    expected = run.outputs(texts)["scores"]
    diff_classify = float(np.max(np.abs(np.asarray(result["classify_scores"]) - expected)))
    if diff_classify > 1e-5:
        raise ExportError(
            f"verification: the reloaded model's classify scores differ from the trained "
            f"model's by {diff_classify:.2e} (> 1e-5)"
        )
    return result, diff


def verify_onnx_version(
    run: TrainedRun, tmp: Path, verify: bool, quantized: bool = False
) -> tuple[dict, float | None]:
    """The ONNX model in a process without TensorFlow (`onnx_check`): it loads, and (with
    `verify`) its outputs on the sample texts are the run's within `onnx.PARITY`. An
    int8 model (`quantized`) cannot equal the run: its outputs must equal the ones
    the quantization guard measured, in this process, on the same file."""
    from bertclf.export.onnx import PARITY

    texts = sample_texts(run) if verify else []
    result = check_in_fresh_process(tmp, texts, module="bertclf.export.onnx_check")
    if result["tensorflow_imported"]:
        raise ExportError("verification: checking the ONNX model imported TensorFlow (a bug)")
    result["non_core_ops"] = result["custom_ops"]
    result["signatures"] = {
        servable.DEFAULT_SIGNATURE: {
            "method_name": "onnx",
            "inputs": result["inputs"],
            "outputs": result["outputs"],
        }
    }
    if not verify:
        return result, None
    if quantized:
        session = servable.onnx_session(tmp / servable.ONNX_MODEL)
        here = servable.run_onnx(session, texts, len(run.label_names))["scores"]
        diff = float(np.max(np.abs(np.asarray(result["scores"]) - here))) if texts else 0.0
        if diff > PARITY:
            raise ExportError(
                f"verification: the int8 model's probabilities in a fresh process differ from "
                f"this process's by {diff:.2e} (> {PARITY:.0e})"
            )
        return result, diff
    return result, compare(run, texts, result, PARITY)


def compare(run: TrainedRun, texts: list[str], result: dict[str, Any], tolerance: float) -> float:
    """The largest probability difference between the reloaded model's `result` and the
    run on `texts`; ExportError when above `tolerance` or when any other output differs."""
    outputs = run.outputs(texts)
    expected = outputs["scores"]  # calibrated where the run is
    diff = float(np.max(np.abs(np.asarray(result["scores"]) - expected)))
    if diff > tolerance:
        raise ExportError(
            f"verification: the reloaded model's probabilities differ from the "
            f"trained model's by {diff:.2e} (> {tolerance:.0e})"
        )
    _check_extras(outputs, result)
    thresholds = run.thresholds
    if thresholds is not None:
        if result["predicted"] != apply(expected, thresholds).tolist():
            raise ExportError("verification: the reloaded model's label sets differ from the run's")
    elif result["classes"] != [run.label_names[i] for i in expected.argmax(1)]:
        raise ExportError("verification: the reloaded model's classes differ from the run's")
    return diff


def _check_extras(outputs: dict[str, np.ndarray], result: dict[str, Any]) -> None:
    """A calibrated run's `ood_score` (relative 1e-4: distances of hundreds in float32)
    and `abstain` must come back as the run computes them."""
    if set(outputs) - {"scores"} != set(result) & {"ood_score", "abstain"}:
        raise ExportError("verification: the reloaded model's outputs differ from the run's")
    if "ood_score" not in outputs:
        return
    ood = np.asarray(result["ood_score"])
    if not np.allclose(ood, outputs["ood_score"], rtol=1e-4, atol=1e-4):
        raise ExportError(
            "verification: the reloaded model's ood_score differs from the run's by "
            f"{np.max(np.abs(ood - outputs['ood_score'])):.2e}"
        )
    if result["abstain"] != outputs["abstain"].tolist():
        raise ExportError("verification: the reloaded model's abstain flags differ from the run's")
