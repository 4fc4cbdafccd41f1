"""Benchmark: what a score means: calibration, abstaining and the out-of-distribution score.

    python bench/calibration.py prepare [--per-class 200]  # the splits (symlinks, bench/out)
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
from common import BERTCLF, DATA, OUT, machine, pct, run_training, timed  # noqa: E402
from goemotions import with_header  # noqa: E402  (GoEmotions' TSV files with a header row)

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


def prepare(per_class: int = 200) -> None:
    """The held-out BBC test split, the OOD run's training data and its three probe sets
    (`per_class` training articles a class; a quarter as many held out, half as many
    tech articles, as many GoEmotions comments)."""
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
        ood_train += files[:per_class]
        inside += files[per_class : per_class + per_class // 4]
    _link(ood_train, SPLITS / "bbc-notech-train")
    tech = list(classes[OOD_OUT])
    rng.shuffle(tech)
    rows = [line.split("\t")[0] for line in (GOEMOTIONS / "test.tsv").read_text().splitlines()]
    rng.shuffle(rows)
    probes = {
        "inside": [_read(f) for f in inside],
        "tech": [_read(f) for f in tech[: per_class // 2]],
        "goemotions": rows[:per_class],
    }
    (SPLITS / "ood_probes.json").write_text(json.dumps(probes))
    with_header("dev.tsv"), with_header("test.tsv")
    print(f"prepared {SPLITS}: bbc {len(train)}/{len(test)}, notech {len(ood_train)}")


def commands(seeds: list[int]) -> dict[str, list[str]]:
    """Each run's `bertclf train` arguments (besides --out), by run name."""
    goemotions = [
        str(with_header("dev.tsv")),
        "--test",
        str(with_header("test.tsv")),
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


def train(seeds: list[int], only: list[str], extra: list[str]) -> None:
    for name, args in commands(seeds).items():
        if only and not any(name.startswith(o) for o in only):
            continue
        out = HERE / name
        if (out / "best.weights.h5").is_file() and (out / "report.html").is_file():
            print(f"{name}: trained already")
            continue
        cmd = [str(BERTCLF), "train", *args, *extra, "--out", str(out), "--overwrite"]
        cmd.append("--no-progress")
        history, _, wall = run_training(cmd, out)
        print(json.dumps({"run": name, "epochs": len(history), "wall_seconds": round(wall, 1)}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("step", choices=("prepare", "train", "measure"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--only", nargs="*", default=[], help="run names starting with these")
    ap.add_argument("--recalibrate", action="store_true", help="fit every run's calibration again")
    ap.add_argument("--per-class", type=int, default=200, help="prepare: OOD training articles")
    ap.add_argument("--rounds", type=int, default=5, help="measure: latency rounds")
    ap.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="train: more flags")
    a = ap.parse_args()
    global RECALIBRATE
    RECALIBRATE = a.recalibrate
    if a.step == "prepare":
        prepare(a.per_class)
    elif a.step == "train":
        train(a.seeds, a.only, a.extra)
    else:
        measure(a.seeds, a.only, a.rounds)


RECALIBRATE = False  # --recalibrate: fit again (after a change to the calibration step)


def _calibrated(path: Path) -> tuple[object, object, dict]:
    """(run, splits, notes): the run loaded, calibrated first when it was trained before
    calibration existed (the same function `bertclf train` calls after training), with
    what the run said before calibration (its training-time thresholds and test metrics)."""
    from bertclf import RunConfig
    from bertclf.data import datasets
    from bertclf.evaluation.report import write_run_report
    from bertclf.prediction.trained_run import load_run
    from bertclf.training.calibration import calibrate

    meta = json.loads((path / "config.json").read_text())
    config = RunConfig.from_dict(meta["config"])
    splits = datasets.load_splits(config.data, config.seed)
    notes = {"calibrated_after_training": not (path / "calibration.json").is_file()}
    if (path / "test_metrics.json").is_file():
        notes["test_before"] = json.loads((path / "test_metrics.json").read_text())
    if (path / "thresholds.json").is_file():
        notes["thresholds_before"] = json.loads((path / "thresholds.json").read_text())
    if notes["calibrated_after_training"] or RECALIBRATE:
        calibrate(load_run(path), splits, config)
        write_run_report(path, run=load_run(path), splits=splits)
    run = load_run(path)
    notes["test_after"] = (
        json.loads((path / "test_metrics.json").read_text())
        if (path / "test_metrics.json").is_file()
        else None
    )
    return run, splits, notes


def _calibration_row(name: str, path: Path) -> dict:
    run, _, notes = _calibrated(path)
    report = json.loads((path / "calibration.json").read_text())
    row = {"run": name, "temperature": report["fitted"]["temperature"]}
    row["calibrated_after_training"] = notes["calibrated_after_training"]
    for split in ("validation", "test"):
        if split in report:
            m = report[split]
            row[split] = {
                k: round(v, 5)
                for k, v in m.items()
                if k.endswith(("_before", "_after")) and not k.startswith("reliability")
            }
    before, after = notes.get("test_before"), notes.get("test_after")
    if before and after:
        for key in ("accuracy", "macro_f1", "micro_f1"):
            if key in before:
                row[f"test_{key}_before"], row[f"test_{key}_after"] = before[key], after[key]
    return row


def _ood(path: Path) -> dict:
    """AUROC of each score for in-distribution articles against tech and GoEmotions."""
    import numpy as np
    from scipy.special import logsumexp
    from sklearn.metrics import roc_auc_score

    run, _, _ = _calibrated(path)
    probes = json.loads((SPLITS / "ood_probes.json").read_text())
    scores = {}
    for name, texts in probes.items():
        out = run.outputs(texts)
        logits, _ = run.logits_and_vectors(texts)
        raw = np.exp(logits - logsumexp(logits, axis=1, keepdims=True))
        scores[name] = {
            "mahalanobis (ours)": out["ood_score"],
            "1 - max softmax": 1 - raw.max(axis=1),
            "1 - max calibrated probability": 1 - out["scores"].max(axis=1),
            "entropy": -np.sum(raw * np.log(np.clip(raw, 1e-12, 1)), axis=1),
            "energy (-logsumexp)": -logsumexp(logits, axis=1),
            "p90_raw": raw.max(axis=1) >= 0.9,
            "p90_calibrated": out["scores"].max(axis=1) >= 0.9,
            "unusual": out["ood_score"]
            > json.loads((path / "calibration.json").read_text())["fitted"]["ood_threshold"],
        }
    result = {}
    for other in ("goemotions", "tech"):
        y = np.r_[np.zeros(len(probes["inside"])), np.ones(len(probes[other]))]
        result[other] = {
            key: round(float(roc_auc_score(y, np.r_[scores["inside"][key], scores[other][key]])), 4)
            for key in scores["inside"]
            if not key.startswith(("p90", "unusual"))
        }
        for key in ("p90_raw", "p90_calibrated", "unusual"):
            result[other][key] = f"{int(scores[other][key].sum())}/{len(probes[other])}"
    result["inside"] = {
        key: f"{int(scores['inside'][key].sum())}/{len(probes['inside'])}"
        for key in ("p90_raw", "p90_calibrated", "unusual")
    }
    return result


def _latency(path: Path, rounds: int = 5) -> dict:
    """Batch 1 and batch 32 of the same run exported with and without the extra outputs
    (a copy of the run without calibration.json exports as runs made before it did)."""
    import shutil
    import tempfile

    import tensorflow as tf

    from bertclf.export.exporter import export
    from common import bbc_texts

    work = Path(tempfile.mkdtemp(prefix="bertclf-calib-lat-"))
    plain = work / "plain-run"
    shutil.copytree(path, plain, ignore=shutil.ignore_patterns("checkpoints", "logs"))
    (plain / "calibration.json").unlink()
    (plain / "ood.npz").unlink()
    exports = {
        "with extra outputs": export(path, work / "exports", name="calibrated").path,
        "without": export(plain, work / "exports", name="plain").path,
    }
    sigs = {
        k: tf.saved_model.load(str(v)).signatures["serving_default"] for k, v in exports.items()
    }
    one = tf.constant([" ".join(bbc_texts(1)[0].split()[:40])])
    batch = tf.constant(bbc_texts(32))
    result = {k: {"batch1_ms": [], "batch32_ms": []} for k in sigs}
    for _ in range(rounds):  # alternate, so both see the same machine
        for name, sig in sigs.items():
            result[name]["batch1_ms"].append(pct(timed(lambda s=sig: s(text=one), 50), 50) * 1e3)
            result[name]["batch32_ms"].append(pct(timed(lambda s=sig: s(text=batch), 5), 50) * 1e3)
    shutil.rmtree(work, ignore_errors=True)
    out = {
        k: {m: round(sorted(v)[len(v) // 2], 3) for m, v in r.items()} for k, r in result.items()
    }
    for m in ("batch1_ms", "batch32_ms"):
        out[f"{m} ratio"] = round(out["with extra outputs"][m] / out["without"][m], 4)
    return out


def measure(seeds: list[int], only: list[str], rounds: int = 5) -> None:
    wanted = [f"{k}-{s}" for k in ("civility", "bbc", "goemotions") for s in seeds]
    result = {"machine": machine(), "runs": []}
    for name in wanted:
        path = HERE / name
        if (only and not any(name.startswith(o) for o in only)) or not path.is_dir():
            continue
        row = _calibration_row(name, path)
        result["runs"].append(row)
        print(json.dumps(row))
    if (HERE / "bbc-notech-1").is_dir() and (not only or "ood" in only):
        result["ood"] = _ood(HERE / "bbc-notech-1")
        print(json.dumps({"ood": result["ood"]}))
    if (HERE / "civility-1").is_dir() and (not only or "latency" in only):
        result["latency"] = _latency(HERE / "civility-1", rounds)
        print(json.dumps({"latency": result["latency"]}))
    target = OUT / ("calibration.json" if not only else f"calibration_{'_'.join(only)}.json")
    target.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
