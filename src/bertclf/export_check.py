"""Checks of an export before it is published: the op audit and a reload in a fresh process.

The op audit lists every op of the graph (and its function library) that core
TensorFlow does not register and refuses those the target server lacks. The fresh
process (`python -m bertclf.savedmodel_check`) holds only what a serving host has,
`tensorflow` and then `tensorflow_text`, and runs both signatures on sample texts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from bertclf.errors import ExportError

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


def check_in_fresh_process(export_dir: Path, texts: list[str]) -> dict[str, Any]:
    """Run `python -m bertclf.savedmodel_check` (tensorflow + tensorflow_text) on the export.

    The texts go in on stdin and the result comes back on stdout: no temporary files,
    and the child dies with this process (a killed export leaves no verifier running).
    """
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run(
        [sys.executable, "-m", "bertclf.savedmodel_check", str(export_dir), str(os.getpid())],
        input=json.dumps({"texts": texts}),
        capture_output=True,
        text=True,
        env=env,
    )
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        raise ExportError(
            f"{export_dir}: the SavedModel failed to load in a fresh process ({tail[0][:300]})"
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])


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
