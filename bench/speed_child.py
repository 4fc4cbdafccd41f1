"""One training-speed measurement in a fresh process (run by bench/train_speed.py).

    python bench/speed_child.py --framework bertclf|torch --data F.jsonl --steps N
        [--precision fp32|bf16] [--jit on|off] [--bucketing on|off]

Trains for one untimed warm-up pass over the N*batch examples (tracing, XLA
compilation, allocator warm-up), then times a second pass over them: bertclf through its
public `train()` (the second epoch's time and tokens from history.json), PyTorch through
a plain loop. Prints one
JSON line: examples/s, real (non-padding) tokens/s, padded tokens/s, real token
lengths (for the attention FLOP count).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

BATCH, SEQ_LEN = 16, 128


def read(path: str, n: int) -> tuple[list[str], list[int], list[str]]:
    rows = [json.loads(line) for line in Path(path).read_text().splitlines()][:n]
    names = sorted({r["label"] for r in rows})
    return [r["text"] for r in rows], [names.index(r["label"]) for r in rows], names


def run_bertclf(a) -> dict:
    """Two epochs of `bertclf.train` on the texts (validated on them too, which is not
    timed): the second epoch's seconds and token counts, from the run's history.json."""
    from bertclf import DataConfig, ModelConfig, RunConfig, TrainConfig, train
    from bertclf.model.preprocessing import token_lengths
    from bertclf.prediction.trained_run import load_run

    config = RunConfig(
        data=DataConfig(a.data, val=a.data),  # every text trains; validation is not timed
        out=a.out,
        model=ModelConfig(model=a.model, seq_len=SEQ_LEN),
        train=TrainConfig(
            epochs=2,  # the first is the warm-up: tracing, allocators, XLA's compilation
            batch_size=BATCH,
            precision=a.precision,
            jit=a.jit,
            bucketing=a.bucketing,
            tb_histograms="none",
            contrastive=0,
        ),
        seed=0,
    )
    result = train(config, overwrite=True, progress=False)
    timed = result.history[1]
    resolved = json.loads((Path(a.out) / "config.json").read_text())["config"]["train"]
    run = load_run(a.out)
    texts = [json.loads(line)["text"] for line in Path(a.data).read_text().splitlines()]
    return {
        "seconds": timed["seconds"],
        "examples": round(timed["examples_per_second"] * timed["seconds"]),
        "real_tokens": round(timed["real_tokens_per_second"] * timed["seconds"]),
        "padded_tokens": round(timed["padded_tokens_per_second"] * timed["seconds"]),
        "lengths": token_lengths(run.preprocessor, texts).tolist(),
        "train_loss": timed["train_loss"],
        "resolved": {k: resolved[k] for k in ("precision", "bucketing", "jit", "embedding_update")},
    }


def run_torch(a) -> dict:
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
    )

    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count() or 1)
    texts, labels, names = read(a.data, a.steps * BATCH)
    tokenizer = AutoTokenizer.from_pretrained(a.model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(a.model_dir, num_labels=len(names))
    enc = tokenizer(texts, truncation=True, max_length=SEQ_LEN)
    rows = [
        {"input_ids": i, "attention_mask": m, "labels": y}
        for i, m, y in zip(enc["input_ids"], enc["attention_mask"], labels, strict=True)
    ]
    collate = DataCollatorWithPadding(tokenizer)  # pads each batch to its longest text
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-5, weight_decay=0.01)
    model.train()

    def one_pass(seed):
        g = torch.Generator().manual_seed(seed)
        loader = torch.utils.data.DataLoader(
            rows, batch_size=BATCH, shuffle=True, collate_fn=collate, generator=g
        )
        padded = 0
        for batch in loader:
            padded += batch["input_ids"].numel()
            loss = model(**batch).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        return padded

    one_pass(0)
    start = time.perf_counter()
    padded = one_pass(1)
    seconds = time.perf_counter() - start
    lengths = [len(i) for i in enc["input_ids"]]
    return {
        "seconds": seconds,
        "examples": len(texts),
        "real_tokens": sum(lengths),
        "padded_tokens": padded,
        "lengths": lengths,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--framework", choices=["bertclf", "torch"], required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--precision", default="fp32")
    p.add_argument("--jit", default="off")
    p.add_argument("--bucketing", default="on")
    p.add_argument("--out", default="/tmp/bertclf-speed-run")
    p.add_argument("--model-dir", help="the all-MiniLM-L6-v2 checkpoint (for PyTorch)")
    p.add_argument("--model", default="minilm-l6", help="bertclf's --model")
    a = p.parse_args()
    r = run_bertclf(a) if a.framework == "bertclf" else run_torch(a)
    r["examples_per_s"] = r["examples"] / r["seconds"]
    r["real_tokens_per_s"] = r["real_tokens"] / r["seconds"]
    print(json.dumps(r))


if __name__ == "__main__":
    main()
