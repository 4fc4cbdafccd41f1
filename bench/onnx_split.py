"""Benchmark: where a batch-1 ONNX call's time goes, the text side against the encoder.

    .venv/bin/python bench/onnx_split.py RUN ONNX_VERSION_DIR [--onnx] [--rounds 5]

Times a `bertclf export --format onnx` model (and, with `--onnx`, the reference pipeline
of `bench/batch1_latency.py --onnx`: the Hugging Face fast tokenizer, then ONNX Runtime on
the same architecture exported from PyTorch; needs bench/.venv-onnx, `make bench-onnx`),
split in two: the text side alone (bertclf: RUN's text-to-features graph converted with
the export's own handlers, in ONNX Runtime; the reference: its tokenizer call) and the
whole call. The encoder's share is the difference. Each side runs in its own process
without TensorFlow (as a serving host would); per round, each process is started, warms
up and times 40 calls of each kind on the 10- and 40-word texts of batch1_latency; the
two processes take turns, round by round. Reports the medians over all rounds. Results:
JSON on stdout and bench/out/onnx_split.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import LATENCY_WORDS, ONNX_PYTHON, OUT, ROOT, bbc_texts, machine  # noqa: E402

WORDS = {k: LATENCY_WORDS[k] for k in ("short", "medium")}  # batch 1: its 10 and 40 words
CALLS = 40

# The child: times `text side` and `whole` for each kind; prints {part: {kind: [s, ...]}}.
CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[3])
from common import timed
engine, target, texts = sys.argv[1], sys.argv[2], json.loads(sys.argv[4])
if engine == "bertclf":
    import numpy as np
    from pathlib import Path
    from bertclf.prediction.onnx_model import OnnxModel, session
    model = OnnxModel(target)
    features = session(Path(sys.argv[5]))  # as the export's: the same library and options
    parts = {
        "text side": lambda t: features.run(None, {"text": np.array(t, dtype=object)}),
        "whole": lambda t: model.run(t)["scores"],
    }
else:
    sys.argv = [sys.argv[0], "onnx", target]
    import latency_child
    from transformers import AutoTokenizer
    whole = latency_child.onnx(target)
    tokenizer = AutoTokenizer.from_pretrained(target)
    parts = {
        "text side": lambda t: tokenizer(
            t, truncation=True, max_length=latency_child.SEQ_LEN, padding="longest",
            return_tensors="np",
        ),
        "whole": whole,
    }
out = {p: {k: timed(lambda: f(t), CALLS, warmup=10) for k, t in texts.items()}
       for p, f in parts.items()}
print(json.dumps(out))
""".replace("CALLS", str(CALLS))


def features_model(run_dir: str, path: Path) -> None:
    """RUN's text-to-features graph (what the encoder reads), converted as the export is."""
    import tensorflow as tf

    from bertclf.export.onnx import onnx_friendly, text_function_to_onnx
    from bertclf.model.preprocessing import inference_features
    from bertclf.prediction.trained_run import load_run

    run = load_run(run_dir, "fp32")

    @tf.function
    def features(text):
        return inference_features(run.preprocessor, text)

    with onnx_friendly(run.preprocessor):
        model = text_function_to_onnx(features, run.preprocessor.tokenizer)
    path.write_bytes(model.SerializeToString())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="the run the export was made from")
    p.add_argument("export", help="the ONNX export's version directory")
    p.add_argument("--onnx", action="store_true", help="add the reference (bench/.venv-onnx)")
    p.add_argument("--rounds", type=int, default=5)
    a = p.parse_args()
    words = bbc_texts(1)[0].split()
    texts = json.dumps({kind: [" ".join(words[:n])] for kind, n in WORDS.items()})
    features = OUT / "onnx_split_features.onnx"
    features_model(a.run, features)
    from bertclf.model.encoders import offline_model_dir

    engines = {"bertclf": [sys.executable, a.export, features]}
    if a.onnx:
        engines["reference"] = [ONNX_PYTHON, str(offline_model_dir()), ""]
    times: dict = {e: {} for e in engines}
    for _ in range(a.rounds):
        for engine, (python, target, extra) in engines.items():
            args = [str(python), "-c", CHILD, engine, str(target), str(ROOT / "bench"), texts]
            done = subprocess.run(
                [*args, str(extra)], capture_output=True, text=True, check=True, cwd=ROOT
            )
            for part, kinds in json.loads(done.stdout.strip().splitlines()[-1]).items():
                for kind, seconds in kinds.items():
                    times[engine].setdefault(part, {}).setdefault(kind, []).extend(seconds)
    median_ms = {
        e: {p: {k: 1000 * statistics.median(v) for k, v in ks.items()} for p, ks in ps.items()}
        for e, ps in times.items()
    }
    for e in median_ms:  # the encoder (and head): the whole call less the text side
        whole, text = median_ms[e]["whole"], median_ms[e]["text side"]
        median_ms[e]["rest"] = {k: whole[k] - text[k] for k in whole}
    result = {**machine(), "rounds": a.rounds, "words": WORDS, "median_ms": median_ms}
    (OUT / "onnx_split.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
