"""Benchmark: the defaults on a few hundred texts, the size of the small-data issue's held-out set.

    python bench/tiny_data.py [civility|bbc] [--size 337] [--splits 1 2 3] [--extra ARGS...]

The small-data issue's held-out set has 337 short civil/uncivil sentences, split 75/25
three times; civility-gh (852 + 283 sentences) is 3.4x larger. This draws `--size`
sentences from civility-gh's train/ and test/ together (or articles from BBC; stratified,
seeded by the split number), splits them 75/25 (stratified) into class folders under
bench/out/, and runs `bertclf train TRAIN --test TEST --seed N` with no other flag (or
`--extra`) on each. Reported per split: test macro-F1 and accuracy of the kept epoch,
the baseline fitted inside the run on the same 80%, and the reference baseline (TF-IDF +
LinearSVC fitted on the whole 75%, as the issue quotes it). Results: one JSON line per
run, and bench/out/tiny_data.jsonl.

`ekman` is a second imbalanced single-label task of short texts: the GoEmotions comments
(train, dev and test together) that carry exactly one label, that label being one of
Ekman's six basic emotions (anger, disgust, fear, joy, sadness, surprise: 5,410 texts,
largest/smallest class 2.3, as civility-gh's).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bertclf.data.datasets import read_labelled  # noqa: E402
from bertclf.evaluation.baseline import make_baseline, score  # noqa: E402
from common import OUT, machine, write_class_folders  # noqa: E402
from small_data import DATA, run  # noqa: E402

SOURCES = {
    "civility": ["civility-gh/train", "civility-gh/test"],
    "bbc": ["bbc"],
    "ekman": ["goemotions"],
}
EKMAN = ["anger", "disgust", "fear", "joy", "sadness", "surprise"]


def read_source(source: str) -> tuple[list[str], list[int], list[str]]:
    """(texts, label ids, label names) of a whole source."""
    if source == "ekman":
        root = DATA / "goemotions"
        names = (root / "emotions.txt").read_text().split()
        texts, labels = [], []
        for part in ("train", "dev", "test"):
            for line in (root / f"{part}.tsv").read_text(encoding="utf-8").splitlines():
                text, ids, _ = line.split("\t")
                name = names[int(ids)] if "," not in ids else None
                if name in EKMAN:
                    texts.append(text)
                    labels.append(EKMAN.index(name))
        return texts, labels, EKMAN
    first, *rest = SOURCES[source]
    train = read_labelled(DATA / first)
    texts, labels = list(train.texts), list(train.labels)
    for folder in rest:
        more = read_labelled(DATA / folder, label_names=train.label_names)
        texts, labels = texts + more.texts, labels + list(more.labels)
    return texts, labels, train.label_names


def write_split(source: str, size: int, split: int) -> Path:
    """Class folders `train/` and `test/` holding a seeded, stratified draw of `size` texts."""
    from sklearn.model_selection import train_test_split

    texts, labels, names = read_source(source)
    texts, _, labels, _ = train_test_split(
        texts, labels, train_size=size, stratify=labels, random_state=split
    )
    parts = train_test_split(texts, labels, test_size=0.25, stratify=labels, random_state=split)
    root = OUT / f"tiny-data-{source}-{size}-{split}"
    shutil.rmtree(root, ignore_errors=True)
    for name, (xs, ys) in {"train": parts[0::2], "test": parts[1::2]}.items():
        write_class_folders(root / name, xs, ys, names)
    return root


def reference_baseline(root: Path) -> dict:
    train = read_labelled(root / "train")
    test = read_labelled(root / "test", label_names=train.label_names)
    metrics = score(make_baseline().fit(train.texts, train.labels), test)
    return {"reference_baseline_test_macro_f1": metrics["macro_f1"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("source", nargs="?", choices=SOURCES, default="civility")
    ap.add_argument("--size", type=int, default=337)
    ap.add_argument("--splits", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more train flags")
    args = ap.parse_args()
    tag = "".join(args.extra).replace("-", "")
    for split in args.splits:
        root = write_split(args.source, args.size, split)
        out = OUT / f"tiny-run-{args.source}-{args.size}-{split}{'-' + tag if tag else ''}"
        cmd = [str(root / "train"), "--test", str(root / "test"), "--seed", str(split)]
        result, _ = run([*cmd, *args.extra], out)
        line = {"source": args.source, "size": args.size, "draw": split, "extra": args.extra}
        line |= result
        line |= reference_baseline(root) | machine()
        print(json.dumps(line), flush=True)
        with open(OUT / "tiny_data.jsonl", "a") as f:
            f.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
