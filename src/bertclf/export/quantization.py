"""`--quantize int8`: an ONNX export with int8 weights, published only where it pays.

onnxruntime's dynamic quantization (`quantize_dynamic`) stores the encoder's MatMul and
Gemm weights as int8 and quantizes each activation as it arrives, so it needs no
calibration data. Whether that pays depends on the host (its int8 kernels) and on the
model (a small classifier loses more to the quantize and dequantize steps than its
MatMuls save), and users have found quantized BERTs both less accurate and slower
than float32. So the export measures both at once, on the run's own validation split:
macro-F1 (`bertclf.evaluation.metrics`, as training scored it) and the batch-1
latency a single-text server sees. It refuses, with the numbers, when macro-F1 falls by
more than `MAX_F1_DROP` or when int8 is not faster; the numbers go into the version's
metadata either way they are kept.
"""

from __future__ import annotations

import logging
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bertclf import servable
from bertclf.errors import DataError, ExportError
from bertclf.evaluation.metrics import compute_metrics
from bertclf.prediction.trained_run import TrainedRun

# The largest validation macro-F1 the int8 model may lose: one point, about what a
# single seed moves macro-F1 on a few hundred validation texts, so a smaller loss
# could not be told from noise and a larger one is a real cost.
MAX_F1_DROP = 0.01
# Batch-1 latency: each of up to LATENCY_TEXTS validation texts, LATENCY_ROUNDS times,
# the two models alternating so that neither gets a warmer cache or a quieter moment.
LATENCY_TEXTS = 32
LATENCY_ROUNDS = 3
BATCH = 32  # texts a call when scoring the validation split


@dataclass(frozen=True)
class QuantizationCheck:
    """What the int8 model costs and saves, measured on the run's validation split.

    Args:
        texts: validation texts macro-F1 was measured on.
        macro_f1_float32: the float32 ONNX model's validation macro-F1.
        macro_f1_int8: the int8 model's.
        p50_ms_float32: the float32 model's median batch-1 latency (milliseconds).
        p50_ms_int8: the int8 model's.
        latency_calls: calls each median is taken over.
    """

    texts: int
    macro_f1_float32: float
    macro_f1_int8: float
    p50_ms_float32: float
    p50_ms_int8: float
    latency_calls: int

    def refusal(self) -> str | None:
        """Why the int8 model must not be published, with every number (None: it may)."""
        drop = self.macro_f1_float32 - self.macro_f1_int8
        if drop > MAX_F1_DROP:
            why = f"validation macro-F1 falls by {drop:.4f} (more than {MAX_F1_DROP})"
        elif self.p50_ms_int8 >= self.p50_ms_float32:
            why = "it is not faster on this machine"
        else:
            return None
        return (
            f"--quantize int8: {why}: macro-F1 {self.macro_f1_int8:.4f} against "
            f"{self.macro_f1_float32:.4f} float32 ({self.texts} validation texts), batch-1 "
            f"p50 {self.p50_ms_int8:.2f} ms against {self.p50_ms_float32:.2f} ms; export "
            "without --quantize"
        )

    def metadata(self) -> dict:
        return {
            "method": "onnxruntime quantize_dynamic, int8 weights (MatMul, Gemm)",
            "max_macro_f1_drop": MAX_F1_DROP,
            **asdict(self),
        }


def quantize_int8(model_file: Path, out_file: Path) -> None:
    """model_file's weights as int8 (onnxruntime's dynamic quantization) in out_file.

    onnxruntime's pre-processing step (symbolic shape inference) is not run: it does not
    know onnxruntime-extensions' string ops, and dynamic quantization only needs the
    MatMul weights, which are constants."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # The quantizer writes its advice and the tensors it skips (the string side's) to
    # the root logger as warnings, which the CLI would print as bertclf's own lines.
    logging.disable(logging.WARNING)
    try:
        quantize_dynamic(str(model_file), str(out_file), weight_type=QuantType.QInt8)
    finally:
        logging.disable(logging.NOTSET)


def validation_split(run: TrainedRun):
    """The run's validation texts and labels, read again as training split them
    (config.json's data settings and seed): macro-F1 must be the one training reported."""
    from bertclf.data.datasets import load_splits

    config = run.config
    try:
        val = load_splits(config.data, config.seed).val
    except DataError as e:
        raise ExportError(
            f"--quantize int8 measures validation macro-F1 on the run's data, which cannot be "
            f"read ({e}); export where the run's data is, or drop --quantize"
        ) from None
    if list(val.label_names) != list(run.label_names):
        raise ExportError(
            f"--quantize int8: the run's data ({config.data.train}) now has labels "
            f"{val.label_names}, the run {run.label_names}; export where the run's own data is, "
            "or drop --quantize"
        )
    return val


def _scores(session, texts: list[str], num_labels: int) -> np.ndarray:
    parts = [
        servable.run_onnx(session, texts[i : i + BATCH], num_labels)["scores"]
        for i in range(0, len(texts), BATCH)
    ]
    return np.concatenate(parts) if parts else np.zeros((0, num_labels), np.float32)


def measure(float32_file: Path, int8_file: Path, run: TrainedRun, val) -> QuantizationCheck:
    """Validation macro-F1 and batch-1 p50 of two ONNX models (`val`: the run's
    validation `Examples`)."""
    sessions = [servable.onnx_session(f) for f in (float32_file, int8_file)]
    labels = np.asarray(val.labels)
    names = list(run.label_names)
    f1 = [
        compute_metrics(labels, _scores(s, val.texts, len(names)), names, run.thresholds)[
            "macro_f1"
        ]
        for s in sessions
    ]
    timed: list[list[float]] = [[], []]
    texts = val.texts[:LATENCY_TEXTS]
    for round_ in range(LATENCY_ROUNDS):
        for i, text in enumerate(texts):
            order = (0, 1) if (i + round_) % 2 == 0 else (1, 0)
            for k in order:
                start = time.perf_counter()
                servable.run_onnx(sessions[k], [text], len(names))
                timed[k].append((time.perf_counter() - start) * 1000)
    check = QuantizationCheck(
        texts=len(val.texts),
        macro_f1_float32=float(f1[0]),
        macro_f1_int8=float(f1[1]),
        p50_ms_float32=statistics.median(timed[0]),
        p50_ms_int8=statistics.median(timed[1]),
        latency_calls=len(timed[0]),
    )
    return check


def quantize_version(run: TrainedRun, tmp: Path, val) -> QuantizationCheck:
    """Replace tmp's float32 model.onnx with its int8 form, or raise ExportError with the
    numbers (tmp is then discarded by the exporter: nothing is published). `val`: the
    run's validation `Examples` (`validation_split`, read before any work)."""
    float32_file = tmp / servable.ONNX_MODEL
    int8_file = tmp / "model.int8.onnx"
    quantize_int8(float32_file, int8_file)
    check = measure(float32_file, int8_file, run, val)
    reason = check.refusal()
    if reason:
        raise ExportError(reason)
    int8_file.replace(float32_file)
    return check
