"""Benchmark: long texts whose label sits in their last sentence (a constructed check).

    python bench/label_at_end.py [NAME ...] [--seed 1] [--filler-words 250]

BBC tells its topic in the first lines, so on it reading further buys little (BENCHMARKS.md
section 10). This builds the opposite case from two of the project's datasets: every
civility-gh sentence (train/ and test/) is put after the first `--filler-words` words of a
BBC article drawn at random (seeded), so that the text is long and only its last sentence
decides the label, as in an email whose last line is the uncivil one. Each NAME trains
`bertclf train TRAIN --test TEST --seed N` with the defaults plus its flags:

    truncate   --truncate waterfall (the first --seq-len tokens)
    head_tail  --truncate head_tail (the default since 2026-11-27)
    chunk      --long chunk
    chunk_max  --long chunk --chunk-pool max

Reported per NAME: test macro-F1 and accuracy of the kept epoch, the baseline's fitted on
the same split (it reads every word), and wall time. Results: one JSON line per run, and
bench/out/label_at_end.jsonl.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bertclf.data.datasets import read_labelled  # noqa: E402
from common import OUT, bbc_texts, machine, write_class_folders  # noqa: E402
from small_data import DATA, run  # noqa: E402

FLAGS = {
    "truncate": ["--truncate", "waterfall"],  # the default until 2026-11-27
    "head_tail": ["--truncate", "head_tail"],
    "chunk": ["--long", "chunk"],
    "chunk_max": ["--long", "chunk", "--chunk-pool", "max"],
}


def write_data(filler_words: int, seed: int) -> Path:
    """Class folders train/ and test/: a BBC article's opening, then a civility sentence."""
    rng = random.Random(seed)
    fillers = bbc_texts()
    root = OUT / f"label-at-end-{filler_words}-{seed}"
    shutil.rmtree(root, ignore_errors=True)
    names = None
    for part in ("train", "test"):
        examples = read_labelled(DATA / "civility-gh" / part, label_names=names)
        names = examples.label_names
        openings = [" ".join(rng.choice(fillers).split()[:filler_words]) for _ in examples.texts]
        texts = [f"{o}\n\n{t}" for o, t in zip(openings, examples.texts, strict=True)]
        write_class_folders(root / part, texts, examples.labels, names)
    return root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("names", nargs="*", default=list(FLAGS), help=f"of {', '.join(FLAGS)}")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--filler-words", type=int, default=250)
    args = ap.parse_args()
    if unknown := set(args.names) - set(FLAGS):
        ap.error(f"unknown: {', '.join(sorted(unknown))}; use {', '.join(FLAGS)}")
    root = write_data(args.filler_words, args.seed)
    for name in args.names:
        out = OUT / f"label-at-end-run-{name}-{args.seed}"
        cmd = [str(root / "train"), "--test", str(root / "test"), "--seed", str(args.seed)]
        result, _ = run([*cmd, *FLAGS[name]], out)
        line = {"name": name, "seed": args.seed, "filler_words": args.filler_words}
        line |= result | machine()
        print(json.dumps(line), flush=True)
        with open(OUT / "label_at_end.jsonl", "a") as f:
            f.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
