"""Benchmark: what a score means: calibration, abstaining and the out-of-distribution score.

    python bench/calibration.py prepare                 # the splits (symlinks, bench/out)
    python bench/calibration.py train [--seeds 1 2 3]   # the runs, defaults
    python bench/calibration.py measure                 # the figures, from the runs

Runs (`bertclf train` with the defaults, each seed):
- civility-S: civility-gh train/ with --test test/.
- bbc-S: BBC with a fixed, stratified 20% held out as --test (seed 0 draws it, the same
  for every seed), so that test ECE is measured on texts no choice saw.
- goemotions-S: GoEmotions dev.tsv (5,426 comments, 80/20 split) with --test test.tsv,
  multi-label (the `quick` form of bench/goemotions.py; the 43k-comment training set
  takes hours on 2 cores).
- bbc-notech-1: BBC without `tech`, 200 articles a class; scored on 200 held-out
  in-distribution articles (50 a class), 100 `tech` articles and 200 GoEmotions comments.

measure: for each run, the validation and test ECE (15 bins), NLL and Brier before and
after calibration (RUN/calibration.json; a run that has none, trained before calibration
existed, is calibrated here by the same function `bertclf train` calls); the AUROC of
the OOD score and of the max-softmax and entropy references on the OOD run; the share of
texts given a label at 0.9 or more. Results: bench/out/calibration.json.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import BERTCLF, DATA, OUT, machine, run_training  # noqa: E402, F401

HERE = OUT / "calibration"
SPLITS = HERE / "data"
GOEMOTIONS = DATA / "goemotions"
CIVILITY = DATA / "civility-gh"
OOD_CLASSES = ("business", "entertainment", "politics", "sport")
OOD_OUT = "tech"


def _link(files: list[Path], root: Path) -> None:
    for f in files:
        target = root / f.parent.name / f.name
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            target.symlink_to(f.resolve())


def _by_class() -> dict[str, list[Path]]:
    bbc = DATA / "bbc"
    return {d.name: sorted(d.glob("*.txt")) for d in sorted(bbc.iterdir()) if d.is_dir()}


def _read(path: Path) -> str:
    return path.read_bytes().decode("utf-8", errors="replace")


def _with_header(name: str) -> Path:
    """GoEmotions' TSV files have no header row: a copy with one (text, labels, id)."""
    target = SPLITS / "goemotions" / name
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("text\tlabels\tid\n" + (GOEMOTIONS / name).read_text(encoding="utf-8"))
    return target


def prepare() -> None:
    """The held-out BBC test split, the OOD run's training data and its three probe sets."""
    rng = random.Random(0)
    classes = _by_class()
    train, test = [], []
    for files in classes.values():
        files = list(files)
        rng.shuffle(files)
        cut = round(0.2 * len(files))
        test += files[:cut]
        train += files[cut:]
    _link(train, SPLITS / "bbc-train")
    _link(test, SPLITS / "bbc-test")
    rng = random.Random(0)
    ood_train, inside = [], []
    for name in OOD_CLASSES:
        files = list(classes[name])
        rng.shuffle(files)
        ood_train += files[:200]
        inside += files[200:250]
    _link(ood_train, SPLITS / "bbc-notech-train")
    tech = list(classes[OOD_OUT])
    rng.shuffle(tech)
    rows = [line.split("\t")[0] for line in (GOEMOTIONS / "test.tsv").read_text().splitlines()]
    rng.shuffle(rows)
    probes = {
        "inside": [_read(f) for f in inside],
        "tech": [_read(f) for f in tech[:100]],
        "goemotions": rows[:200],
    }
    (SPLITS / "ood_probes.json").write_text(json.dumps(probes))
    _with_header("dev.tsv"), _with_header("test.tsv")
    print(f"prepared {SPLITS}: bbc {len(train)}/{len(test)}, notech {len(ood_train)}")


def commands(seeds: list[int]) -> dict[str, list[str]]:
    """Each run's `bertclf train` arguments (besides --out), by run name."""
    goemotions = [
        str(SPLITS / "goemotions" / "dev.tsv"),
        "--test",
        str(SPLITS / "goemotions" / "test.tsv"),
        "--task",
        "multilabel",
        "--label-field",
        "labels",
        "--label-sep",
        ",",
        "--label-names",
        str(GOEMOTIONS / "emotions.txt"),
    ]
    out = {}
    for s in seeds:
        out[f"civility-{s}"] = [str(CIVILITY / "train"), "--test", str(CIVILITY / "test")]
        out[f"civility-{s}"] += ["--seed", str(s)]
    out["bbc-notech-1"] = [str(SPLITS / "bbc-notech-train"), "--seed", "1"]
    for s in seeds:
        out[f"bbc-{s}"] = [str(SPLITS / "bbc-train"), "--test", str(SPLITS / "bbc-test")]
        out[f"bbc-{s}"] += ["--seed", str(s)]
    for s in seeds:
        out[f"goemotions-{s}"] = [*goemotions, "--seed", str(s)]
    return out


def train(seeds: list[int], only: list[str]) -> None:
    for name, args in commands(seeds).items():
        if only and not any(name.startswith(o) for o in only):
            continue
        out = HERE / name
        if (out / "best.weights.h5").is_file() and (out / "report.html").is_file():
            print(f"{name}: trained already")
            continue
        cmd = [str(BERTCLF), "train", *args, "--out", str(out), "--overwrite", "--no-progress"]
        history, _, wall = run_training(cmd, out)
        print(json.dumps({"run": name, "epochs": len(history), "wall_seconds": round(wall, 1)}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("step", choices=("prepare", "train", "measure"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--only", nargs="*", default=[], help="run names starting with these")
    a = ap.parse_args()
    if a.step == "prepare":
        prepare()
    elif a.step == "train":
        train(a.seeds, a.only)
    else:
        measure(a.seeds, a.only)


def measure(seeds: list[int], only: list[str]) -> None:
    raise SystemExit("measure: not written yet")


if __name__ == "__main__":
    main()
