"""`ExportConfig`: where and how `bertclf export` publishes a run, and the servers it targets."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from bertclf import servable
from bertclf.config.fields import check, option

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


EXPORT_PRECISIONS = ("run", "fp32")

# savedmodel: TF Serving's layout (and `bertclf serve`'s); onnx: one ONNX model with the
# tokenizer inside, for ONNX Runtime hosts (`bertclf.export.onnx`).
EXPORT_FORMATS = ("savedmodel", "onnx")

# none, or int8: an ONNX export's weights quantized to int8 (`bertclf.export.quantization`),
# kept only when it loses at most 0.01 validation macro-F1 and is faster at batch 1.
QUANTIZE_CHOICES = ("none", "int8")


@dataclass(frozen=True)
class ExportConfig:
    """`bertclf export`: where and how a run is published for TF Serving.

    Args:
        run: the trained run directory.
        base: the model base path TF Serving watches (BASE).
        name: model name (default: the run directory's name).
        version: version number (default: one more than the highest, from 1).
        target: server whose ops the export must stay within.
        verify: reload in a fresh process and compare probabilities.
        zip: also write BASE/NAME.zip.
        sagemaker: also write BASE/NAME-VERSION.model.tar.gz.
        precision: `run` (compute as the run trained: bf16 runs export bf16) or `fp32`
            (float32 compute from the same weights, for hosts without native bf16).
        format: `savedmodel` (TF Serving) or `onnx` (ONNX Runtime, tokenizer inside; an
            ONNX model computes in float32).
        quantize: `none`, or `int8` (ONNX only): int8 weights, refused with the numbers
            when validation macro-F1 falls by more than 0.01 or batch 1 is not faster.
    """

    run: str = option(dataclasses.MISSING, "run directory")
    base: str = option(
        dataclasses.MISSING,
        "BASE, the folder TF Serving (or bertclf serve) watches: the export is BASE/NAME/VERSION",
        flags=("--to",),
        metavar="BASE",
    )
    name: str | None = option(None, "model name (default: the run directory's name)", type=str)
    version: int | None = option(None, "version (default: the next free one, from 1)", type=int)
    target: str = option(
        DEFAULT_TARGET, "server whose ops the export must stay within", choices=tuple(TARGETS)
    )
    verify: bool = option(
        True,
        "skip reloading the export in a fresh process to compare its probabilities with the "
        "run's (the op audit still runs)",
        flags=("--no-verify",),
    )
    zip: bool = option(False, "also write BASE/NAME.zip")
    sagemaker: bool = option(False, "also write BASE/NAME-VERSION.model.tar.gz for SageMaker")
    precision: str = option(
        "run",
        "compute dtype of the export: run (as the run trained) or fp32 (float32 compute "
        "from the same weights: faster on hosts without native bf16)",
        choices=EXPORT_PRECISIONS,
    )
    format: str = option(
        "savedmodel",
        "savedmodel (TF Serving, bertclf serve) or onnx (one ONNX model with the tokenizer "
        "inside, for ONNX Runtime; bertclf predict runs both)",
        choices=EXPORT_FORMATS,
    )
    quantize: str = option(
        "none",
        "int8: quantize an ONNX export's weights (onnxruntime dynamic quantization); measured "
        "on the run's validation split at export and refused, with the numbers, when macro-F1 "
        "falls by more than 0.01 or batch-1 latency is not lower",
        choices=QUANTIZE_CHOICES,
    )

    def __post_init__(self) -> None:
        check(
            self.format in EXPORT_FORMATS,
            "--format",
            self.format,
            f"choose one of {EXPORT_FORMATS}",
        )
        if self.format == "onnx":
            check(
                not self.sagemaker,
                "--sagemaker",
                self.sagemaker,
                "SageMaker's TensorFlow container serves SavedModels: drop --format onnx",
            )
        check(
            self.quantize in QUANTIZE_CHOICES,
            "--quantize",
            self.quantize,
            f"choose one of {QUANTIZE_CHOICES}",
        )
        if self.quantize != "none":
            check(
                self.format == "onnx",
                "--quantize",
                self.quantize,
                "only ONNX exports are quantized: add --format onnx",
            )
        check(bool(self.base), "--to", self.base, "name a model base folder")
        check(
            self.precision in EXPORT_PRECISIONS,
            "--precision",
            self.precision,
            f"choose one of {EXPORT_PRECISIONS}",
        )
        if self.name is not None:
            check(servable.valid_name(self.name), "--name", self.name, "use only [A-Za-z0-9_.-]")
        if self.version is not None:
            check(self.version >= 1, "--version", self.version, "versions are positive integers")
