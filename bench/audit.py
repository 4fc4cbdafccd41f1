"""Benchmark: how many injected label errors `bertclf audit` finds, per engine; the near-duplicate
threshold; and whether dropping what it flags wins back accuracy.

    python bench/audit.py flips bbc civility goemotions [--draws 3] [--engines ...]
    python bench/audit.py flips civility --engines finetune  (k fine-tunings a draw)
    python bench/audit.py oracle civility [--draws 3]
    python bench/audit.py near bbc civility
    python bench/audit.py loop [--draws 3] [--drop audit oracle] [--extra TRAIN ARGS...]

flips: a seeded draw flips 10% of the training labels, each to another label chosen
uniformly (GoEmotions, multi-label: on 5% of the texts one label added or removed), and
`bertclf.audit.auditor.out_of_fold` + `label_issues.rank_issues` (what `bertclf audit`
runs) rank the texts; recall = the share of flipped texts among the first k (and 1.5 k;
GoEmotions 2 k) rows of label_issues.csv, k = the number flipped. Each engine's features
are computed once per dataset (the texts do not change between draws); the seconds of
one audit's out-of-fold step (its features, computed once, + the folds and the ranking
of that draw) are reported per engine and draw. `finetune` (not in the default list: 5
trainings a draw) writes each draw's noisy labels to a table its fold runs train on.
oracle: the same flips, ranked by out-of-fold probabilities fitted on the clean labels:
what each feature set could find if the noise did not hurt its fit (a ceiling).
near: each text with one word in ten replaced by a random word of the corpus, against
the original (the cosine `bertclf.audit.duplicates` uses), and the distinct texts with
an earlier one at or above each threshold.
loop: civility-gh with 10% of train/ flipped (seeded), trained three ways: clean, noisy,
and noisy with `--exclude` of the first k rows of the noisy data's audit (default
engine); test macro-F1 on test/ for each, one run per `--seeds` seed. `--drop oracle`
excludes exactly the flipped texts instead (a perfect audit: the most dropping can win).
Results: bench/out/audit_<mode>.json (`_<engines>` added for a non-default engine list).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import random
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import BERTCLF, DATA, MODEL, OUT, machine, write_class_folders  # noqa: E402

warnings.filterwarnings("ignore")  # scikit-learn's convergence notes, cleanlab's on tiny sets

from bertclf.audit import label_issues  # noqa: E402
from bertclf.audit.auditor import engine_features, out_of_fold  # noqa: E402
from bertclf.audit.duplicates import normalize  # noqa: E402
from bertclf.config.audit import AuditConfig  # noqa: E402
from bertclf.config.data import DataConfig  # noqa: E402
from bertclf.data.datasets import read_labelled  # noqa: E402

CIVILITY = DATA / "civility-gh"
PARTS = {"tfidf": ("tfidf",), "encoder": ("encoder",), "both": ("encoder", "tfidf"), "finetune": ()}
DEFAULT_ENGINES = ["tfidf", "encoder", "both"]
GOEMOTIONS = DATA / "goemotions"


def dataset(name: str):
    if name == "bbc":
        return read_labelled(DATA / "bbc")
    if name == "civility":
        return read_labelled(CIVILITY / "train")
    from bertclf.data.labels import LabelFormat

    # dev.tsv (5,426 comments): the size of set an audit is for; with a header row, as
    # goemotions.py writes it
    table = OUT / "goemotions" / "dev.tsv"
    if not table.is_file():
        table.parent.mkdir(parents=True, exist_ok=True)
        table.write_text("text\tlabels\tid\n" + (GOEMOTIONS / "dev.tsv").read_text())
    names = tuple((GOEMOTIONS / "emotions.txt").read_text().split())
    fmt = LabelFormat("labels", multilabel=True, sep=",", id_names=names)
    return read_labelled(table, labels=fmt)


def flip(labels: np.ndarray, multilabel: bool, seed: int) -> tuple[np.ndarray, list[int]]:
    """A copy of `labels` with 10% of the rows flipped (multi-label: 5%, one label
    toggled), and the rows changed."""
    rng = np.random.default_rng(seed)
    noisy = labels.copy()
    n = len(labels)
    rows = rng.choice(n, int((0.05 if multilabel else 0.10) * n), replace=False)
    for i in rows:
        if multilabel:
            j = rng.integers(labels.shape[1])
            noisy[i, j] = 1 - noisy[i, j]
        else:
            noisy[i] = rng.choice([k for k in range(labels.max() + 1) if k != labels[i]])
    return noisy, sorted(int(i) for i in rows)


def flips(a) -> dict:
    result = {"machine": machine(), "engines": a.engines, "draws": a.draws, "datasets": {}}
    for name in a.datasets:
        ex = dataset(name)
        labels = np.asarray(ex.labels)
        multi = ex.multilabel
        depth = 2.0 if multi else 1.5
        per = {}
        features, feature_seconds = {}, {}
        config = AuditConfig(DataConfig(str(DATA)), out="unused", model=MODEL)
        for engine in {e for name in a.engines for e in PARTS[name]}:
            start = time.perf_counter()
            features[engine] = engine_features(config, engine, ex.texts)
            feature_seconds[engine] = time.perf_counter() - start
            print(name, engine, f"features: {feature_seconds[engine]:.1f} s", flush=True)
        for engine in a.engines:
            runs = []
            config = AuditConfig(DataConfig(str(DATA)), out="unused", engine=engine, model=MODEL)
            for draw in range(a.draws):
                noisy, rows = flip(labels, multi, 100 + draw)
                ex.labels = list(noisy)
                start = time.perf_counter()
                if engine == "finetune":
                    oof = fine_tuned(name, ex, noisy, draw)
                else:
                    oof = out_of_fold(config, ex, features=features)
                issues = label_issues.rank_issues(noisy, oof.probs, multi)
                seconds = time.perf_counter() - start
                seconds += sum(feature_seconds[e] for e in PARTS[engine])
                order = [i.index for i in issues]
                k = len(rows)
                flipped = set(rows)
                runs.append(
                    {
                        "draw": draw,
                        "flipped": k,
                        "listed": len(order),
                        "recall_at_k": len(flipped & set(order[:k])) / k,
                        f"recall_at_{depth}k": len(flipped & set(order[: int(depth * k)])) / k,
                        "audit_seconds": round(seconds, 1),
                    }
                )
                print(name, engine, runs[-1], flush=True)
            ex.labels = list(labels)
            per[engine] = {
                "runs": runs,
                "mean_recall_at_k": float(np.mean([r["recall_at_k"] for r in runs])),
                f"mean_recall_at_{depth}k": float(
                    np.mean([r[f"recall_at_{depth}k"] for r in runs])
                ),
            }
        result["datasets"][name] = {"texts": len(ex), "multilabel": multi, "engines": per}
    return result


def fine_tuned(name: str, ex, noisy: np.ndarray, draw: int):
    """The `finetune` engine on the noisy labels: its fold runs read DATA from disk, so
    the draw is written out as a JSONL table first (sources: row numbers, in `ex` order)."""
    from bertclf.data.datasets import user_sources
    from bertclf.training.cross_fitting import fine_tuned_out_of_fold

    if ex.multilabel:
        raise SystemExit("--engines finetune: single-label datasets only here")
    table = OUT / "audit-finetune" / f"{name}-draw{draw}.jsonl"
    table.parent.mkdir(parents=True, exist_ok=True)
    names = [ex.label_names[int(y)] for y in noisy]
    rows = [{"text": t, "label": n} for t, n in zip(ex.texts, names, strict=True)]
    table.write_text("".join(json.dumps(r) + "\n" for r in rows))
    noisy_ex = read_labelled(table)
    assert noisy_ex.texts == ex.texts and noisy_ex.label_names == ex.label_names
    sources = user_sources(table, noisy_ex.sources)
    return fine_tuned_out_of_fold(DataConfig(str(table)), noisy_ex, sources, MODEL, seed=0)


def oracle(a) -> dict:
    """The ceiling of a feature set: out-of-fold probabilities fitted on the clean labels
    (noise cannot hurt the fit), ranking the flipped labels by self-confidence."""
    result = {"machine": machine(), "datasets": {}}
    for name in a.datasets:
        ex = dataset(name)
        labels = np.asarray(ex.labels)
        per = {}
        for engine in ("tfidf", "encoder"):
            config = AuditConfig(DataConfig(str(DATA)), out="unused", engine=engine, model=MODEL)
            probs = out_of_fold(config, ex).probs
            recalls = []
            for draw in range(a.draws):
                noisy, rows = flip(labels, ex.multilabel, 100 + draw)
                if ex.multilabel:
                    own = np.where(noisy == 1, probs, 1 - probs).min(axis=1)
                else:
                    own = probs[np.arange(len(noisy)), noisy]
                order = np.argsort(own, kind="stable")
                k = len(rows)
                recalls.append(len(set(rows) & set(order[: int(1.5 * k)].tolist())) / k)
            per[engine] = {"recall_at_1.5k": recalls, "mean": float(np.mean(recalls))}
            print(name, engine, per[engine], flush=True)
        result["datasets"][name] = per
    return result


def near(a) -> dict:
    from bertclf.audit.duplicates import char_ngram_vectors, closest_rows

    result = {"machine": machine(), "datasets": {}}
    for name in a.datasets:
        ex = dataset(name)
        texts = list(dict.fromkeys(normalize(t) for t in ex.texts))  # distinct texts only
        rng = random.Random(0)
        vocab = sorted({w for t in texts for w in t.split()})
        edited = []
        for t in texts:
            words = t.split()
            for _ in range(max(1, len(words) // 10)):
                words[rng.randrange(len(words))] = rng.choice(vocab)
            edited.append(" ".join(words))
        queries, reference = char_ngram_vectors(edited, texts)
        sims = np.asarray(queries.multiply(reference).sum(axis=1)).ravel()  # row i to row i
        vectors, _ = char_ngram_vectors(texts, [])
        _, closest = closest_rows(vectors, vectors, same_set=True)
        result["datasets"][name] = {
            "texts": len(texts),
            "edited_cosine_p5": float(np.percentile(sims, 5)),
            "edited_cosine_median": float(np.median(sims)),
            "thresholds": {
                str(t): {
                    "edited_share_at_or_above": float(np.mean(sims >= t)),
                    "distinct_texts_with_an_earlier_one_at_or_above": int((closest >= t).sum()),
                }
                for t in (0.7, 0.8, 0.85, 0.9)
            },
        }
        print(name, result["datasets"][name], flush=True)
    return result


def _train(data: Path, out: Path, seed: int, extra: list[str]) -> float:
    import subprocess

    cmd = [str(BERTCLF), "train", str(data), "--test", str(CIVILITY / "test"), "--out", str(out)]
    cmd += ["--model", MODEL, "--seed", str(seed), "--quiet", "--no-progress", *extra]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"train failed:\n{done.stderr[-3000:]}")
    return json.loads((out / "test_metrics.json").read_text())["macro_f1"]


def _mean_f1(data: Path, out: Path, seeds: list[int], extra: list[str]) -> list[float]:
    """Test macro-F1 of one run per seed (a single seed's spread on civility-gh, about
    0.02-0.04, is as large as what 10% flipped labels cost)."""
    return [_train(data, out.with_name(f"{out.name}-seed{s}"), s, extra) for s in seeds]


def _audit_top(data: Path, audit_dir: Path, k: int) -> list[str]:
    """The sources of the first k rows of `bertclf audit`'s label_issues.csv (default engine)."""
    import subprocess

    cmd = [str(BERTCLF), "audit", str(data), "--out", str(audit_dir), "--model", MODEL]
    done = subprocess.run([*cmd, "--quiet", "--no-progress"], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"audit failed:\n{done.stderr[-3000:]}")
    listed = (audit_dir / "label_issues.csv").read_text(encoding="utf-8")
    return [r["source"] for r in list(csv.DictReader(io.StringIO(listed)))[:k]]


def loop(a) -> dict:
    import shutil

    root = OUT / "audit_loop"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    ex = dataset("civility")
    labels = np.asarray(ex.labels)
    result = {"machine": machine(), "seeds": a.seeds, "extra": a.extra, "draws": []}
    result["clean"] = _mean_f1(CIVILITY / "train", root / "clean", a.seeds, a.extra)
    clean = float(np.mean(result["clean"]))
    print("clean", result["clean"], flush=True)
    for draw in range(a.from_draw, a.draws):
        noisy, rows = flip(labels, False, 100 + draw)
        data = write_class_folders(root / f"noisy{draw}", ex.texts, list(noisy), ex.label_names)
        names = {f"{ex.label_names[noisy[i]]}/{i:04d}.txt" for i in rows}  # write_class_folders
        row = {"draw": draw, "flipped": len(rows)}
        row["noisy"] = _mean_f1(data, root / f"noisy{draw}", a.seeds, a.extra)
        cost = clean - float(np.mean(row["noisy"]))  # what the noise cost; none: nothing to win
        for drop in a.drop:
            if drop == "audit":
                top = _audit_top(data, root / f"audit{draw}", len(rows))
                row["excluded_that_were_flipped"] = sum(source in names for source in top)
            else:  # oracle: a perfect audit, exactly the flipped texts (the loop's ceiling)
                top = sorted(names)
            exclude = root / f"exclude-{drop}{draw}.txt"
            exclude.write_text("".join(source + "\n" for source in top))
            key = "cleaned" if drop == "audit" else "oracle"
            row[key] = _mean_f1(
                data, root / f"{key}{draw}", a.seeds, [*a.extra, "--exclude", str(exclude)]
            )
            gain = float(np.mean(row[key])) - float(np.mean(row["noisy"]))
            row[f"{key}_recovered"] = gain / cost if cost > 0 else None
        result["draws"].append(row)
        print(row, flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=("flips", "oracle", "near", "loop"))
    parser.add_argument("datasets", nargs="*", default=["civility"])
    parser.add_argument("--draws", type=int, default=3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2], help="loop: per condition")
    parser.add_argument(
        "--engines", nargs="+", default=DEFAULT_ENGINES, choices=[*DEFAULT_ENGINES, "finetune"]
    )
    parser.add_argument(
        "--from-draw", type=int, default=0, help="loop: start at this draw (the same flips)"
    )
    parser.add_argument(
        "--drop",
        nargs="+",
        default=["audit"],
        choices=["audit", "oracle"],
        help="loop: what to --exclude: the audit's first k rows, or exactly the flipped texts",
    )
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[])
    a = parser.parse_args()
    result = {"flips": flips, "oracle": oracle, "near": near, "loop": loop}[a.mode](a)
    tag = "" if a.engines == DEFAULT_ENGINES else "_" + "_".join(a.engines)
    tag += "" if a.drop == ["audit"] else "_" + "_".join(a.drop)
    path = OUT / f"audit_{a.mode}{tag}.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"written: {path}")


if __name__ == "__main__":
    main()
