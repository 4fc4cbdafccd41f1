"""One inference engine in its own process, timed on command (driven by bench/batch1_latency.py).

    python bench/latency_child.py savedmodel EXPORT_VERSION_DIR TEXTS_JSON
    python bench/latency_child.py onnx HF_MODEL_DIR TEXTS_JSON   (in bench/.venv-onnx)
    python bench/latency_child.py bertclf-onnx EXPORT_VERSION_DIR TEXTS_JSON  (--format onnx)

TEXTS_JSON maps a kind (short, medium, long, batch32) to its list of texts. The child
loads its engine, warms every kind up, prints "ready", then for each "round" line on
stdin times `calls` calls of every kind (the whole path from Python strings to
probabilities) and prints one JSON line {kind: [seconds, ...]}.

The onnx engine is what a user would pick instead: the same architecture as bertclf's
default model (all-MiniLM-L6-v2's encoder, masked mean pooling, a dense layer and a
softmax over 5 labels), exported from PyTorch with `torch.onnx.export`, run by ONNX
Runtime with its default session options, after the Hugging Face fast (Rust) tokenizer
with the same truncation (128 tokens) and padding to the batch's longest text. The
head's weights are random: only the time is compared.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import timed  # noqa: E402  (stdlib only: it imports in bench/.venv-onnx too)

SEQ_LEN = 128
LABELS = 5


def savedmodel(path: str):
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (the graph's WordPiece ops)

    serve = tf.saved_model.load(path).signatures["serving_default"]
    return lambda texts: serve(text=tf.constant(texts))["scores"].numpy()


def bertclf_onnx(path: str):
    """A `bertclf export --format onnx` version: ONNX Runtime, tokenizer inside, no TensorFlow."""
    from bertclf.prediction.onnx_model import OnnxModel

    model = OnnxModel(path)
    return lambda texts: model.run(texts)["scores"]


def onnx(model_dir: str):
    import numpy as np
    import onnxruntime as ort
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    out = Path(__file__).parent / "out" / "onnx" / "minilm-mean-5.onnx"
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        export_onnx(torch, AutoModel.from_pretrained(model_dir), tokenizer, out)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])

    def call(texts):
        enc = tokenizer(
            texts, truncation=True, max_length=SEQ_LEN, padding="longest", return_tensors="np"
        )
        feeds = {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask")}
        return session.run(["scores"], feeds)[0]

    return call


def export_onnx(torch, encoder, tokenizer, out: Path) -> None:
    class Classifier(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = encoder
            self.dense = torch.nn.Linear(encoder.config.hidden_size, LABELS)

        def forward(self, input_ids, attention_mask):
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask)[0]
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # [b, w, 1]
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            return torch.softmax(self.dense(pooled), dim=-1)

    torch.manual_seed(0)
    model = Classifier().eval()
    sample = tokenizer(["a sample text"], return_tensors="pt")
    dims = {0: "batch", 1: "width"}
    torch.onnx.export(
        model,
        (sample["input_ids"], sample["attention_mask"]),
        str(out),
        input_names=["input_ids", "attention_mask"],
        output_names=["scores"],
        dynamic_axes={"input_ids": dims, "attention_mask": dims, "scores": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )


def main() -> None:
    engine, path, texts_json = sys.argv[1:4]
    texts = json.loads(Path(texts_json).read_text())
    call = {"savedmodel": savedmodel, "onnx": onnx, "bertclf-onnx": bertclf_onnx}[engine](path)
    calls = {kind: (30 if kind != "batch32" else 3) for kind in texts}
    for batch in texts.values():  # warm-up: trace, allocate, set up kernels
        for _ in range(3):
            call(batch)
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() != "round":
            break
        times = {
            kind: timed(lambda b=batch: call(b), calls[kind], warmup=0)
            for kind, batch in texts.items()
        }
        print(json.dumps(times), flush=True)


if __name__ == "__main__":
    main()
