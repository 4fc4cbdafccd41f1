"""Benchmark: does an ONNX export (`bertclf export --format onnx`) read and score texts as its run?

    .venv/bin/python bench/onnx_parity.py RUN ONNX_VERSION_DIR [--per-corpus N]

Corpora: every text of BBC, civility-gh (train/ and test/) and GoEmotions dev.tsv (or the
first N of each), and a list of hard cases (case folding beyond lower-casing, CJK,
emoji, long words, control characters). Two checks, each side in its own process (ONNX
Runtime as on a serving host, never beside TensorFlow: `OnnxModel` binds onnxruntime-
extensions to its own RE2, diary 2026-12 §9, and this keeps the measurement free of it):
- tokens: the run's tokenizer (TensorFlow) against the same tokenizer converted with the
  export's handlers (`bertclf.export.onnx.text_function_to_onnx`): texts whose ids differ;
- scores: the run loaded in float32 against the ONNX export: the largest probability
  difference, and texts whose predicted label differs.
Results: bench/out/onnx_parity.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import DATA, OUT, machine  # noqa: E402

HARD = [
    "husband´s straße İstanbul ﬁne Ⅷ ① ΣΊΣΥΦΟΣ ς",
    "e\u0301te\u0301 café naïve façade Über ÅNGSTRÖM",
    "soft\u00adhyphen zero\u200bwidth jo\u200dined \u00a0nbsp",
    "日本語のテキスト and 中文, 한국어!",
    "emoji 😀 test 👍🏽 ok",
    "x" * 150,
    "ca" * 50,
    "дом" * 30,
    "а" * 60,
    "tab\tnew\nline\r\nend",
    "",
    "[CLS] [SEP] [UNK] ##ing",
    "ＦＵＬＬＷＩＤＴＨ ｔｅｘｔ",
    "quotes “like” ‘this’ — dash – and … ellipsis ™",
]

ONNX_SIDE = """
import json, sys
import numpy as np
from bertclf.prediction.onnx_model import OnnxModel, session
request = json.loads(open(sys.argv[1]).read())
tokens = session(request["tokenizer"])
model = OnnxModel(request["export"])
out = {"tensorflow": None}
for name, texts in request["corpora"].items():
    ids, scores = [], []
    for i in range(0, len(texts), 32):
        batch = texts[i : i + 32]
        flat, splits = tokens.run(None, {"text": np.array(batch, dtype=object)})
        ids += [flat[splits[j] : splits[j + 1]].tolist() for j in range(len(batch))]
        scores += model.run(batch)["scores"].tolist()
    out[name] = {"ids": ids, "scores": scores}
out["tensorflow"] = "tensorflow" in sys.modules
print(json.dumps(out))
"""


def corpora(per_corpus: int | None) -> dict[str, list[str]]:
    from bertclf.data.datasets import read_labelled

    civility = DATA / "civility-gh"
    found = {
        "bbc": read_labelled(DATA / "bbc").texts,
        "civility-gh": read_labelled(civility / "train").texts
        + read_labelled(civility / "test").texts,
        "goemotions-dev": [
            line.split("\t")[0]
            for line in (DATA / "goemotions" / "dev.tsv").read_text().splitlines()
        ],
    }
    found = {k: v[:per_corpus] for k, v in found.items()}
    return {**found, "hard cases": HARD}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run")
    p.add_argument("export", help="the ONNX export's version directory")
    p.add_argument("--per-corpus", type=int, default=None, help="first N texts of each")
    a = p.parse_args()

    import tensorflow as tf

    from bertclf.export.onnx import text_function_to_onnx
    from bertclf.prediction.trained_run import load_run

    run = load_run(a.run, "fp32")
    texts = corpora(a.per_corpus)

    @tf.function
    def tokenize(text):
        ids = run.preprocessor.tokenize(text)
        return {"ids": ids.flat_values, "splits": ids.row_splits}

    tokenizer = OUT / "onnx_parity_tokenizer.onnx"
    tokenizer.write_bytes(
        text_function_to_onnx(tokenize, run.preprocessor.tokenizer).SerializeToString()
    )
    request = OUT / "onnx_parity_request.json"
    request.write_text(
        json.dumps({"tokenizer": str(tokenizer), "export": a.export, "corpora": texts})
    )
    done = subprocess.run(
        [sys.executable, "-c", ONNX_SIDE, str(request)], capture_output=True, text=True, check=True
    )
    onnx_side = json.loads(done.stdout.strip().splitlines()[-1])
    result = {
        **machine(),
        "run": Path(a.run).name,
        "tensorflow_in_onnx_process": onnx_side["tensorflow"],
    }
    for name, batch in texts.items():
        tf_ids, tf_scores = [], []
        for i in range(0, len(batch), 32):
            out = tokenize(tf.constant(batch[i : i + 32]))
            flat, splits = out["ids"].numpy(), out["splits"].numpy()
            tf_ids += [flat[splits[j] : splits[j + 1]].tolist() for j in range(len(splits) - 1)]
            tf_scores.append(run.outputs(batch[i : i + 32])["scores"])
        scores = np.concatenate(tf_scores)
        onnx_scores = np.asarray(onnx_side[name]["scores"])
        differ = [
            t for t, x, y in zip(batch, tf_ids, onnx_side[name]["ids"], strict=True) if x != y
        ]
        result[name] = {
            "texts": len(batch),
            "token_ids_differ": len(differ),
            "first_differing": differ[:3],
            "max_abs_probability_difference": float(np.abs(scores - onnx_scores).max()),
            "labels_differ": int((scores.argmax(1) != onnx_scores.argmax(1)).sum()),
        }
        print(name, result[name], flush=True)
    (OUT / "onnx_parity.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
