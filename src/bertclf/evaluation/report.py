"""Figures and a self-contained HTML report for a dataset analysis or a trained run.

RUN/curves.png                 training and validation loss and accuracy per epoch
RUN/confusion_validation.png   (and confusion_test.png when a test set is given)
RUN/reliability.png            reliability diagrams before and after calibration
RUN/coverage.png               validation accuracy and macro-F1 against coverage
RUN/ood_validation.png         the validation split's out-of-distribution scores
RUN/misclassified.jsonl        the most confident mistakes
RUN/explanations.jsonl         the explained texts the report shows (single-label runs)
RUN/report.html                all of it in one file, images embedded
"""

from __future__ import annotations

import base64
import html
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import numpy as np  # noqa: E402

from bertclf.evaluation import explanations
from bertclf.evaluation.figures import (
    plot_confusion,
    plot_coverage,
    plot_curves,
    plot_ood,
    plot_reliability,
)
from bertclf.evaluation.metrics import coverage_curve
from bertclf.fileio import read_json, write_json, write_text  # noqa: E402
from bertclf.model import calibration as calibration_lib  # noqa: E402
from bertclf.model import rundir  # noqa: E402
from bertclf.prediction.predictor import apply  # noqa: E402

logger = logging.getLogger(__name__)


def misclassified(texts, labels, probs, names, sources, split: str, limit: int = 50):
    """The most confident mistakes: snippet, true label, predicted label, its probability."""
    predicted = probs.argmax(axis=1)
    wrong = np.flatnonzero(predicted != np.asarray(labels))
    wrong = wrong[np.argsort(-probs[wrong, predicted[wrong]], kind="stable")][:limit]
    return [
        {
            "split": split,
            "source": sources[i],
            "text": " ".join(texts[i].split())[:300],
            "true": names[labels[i]],
            "predicted": names[predicted[i]],
            "probability": float(probs[i, predicted[i]]),
        }
        for i in wrong
    ]


# ------------------------------------------------------------------ the run report


def misclassified_sets(texts, labels, probs, names, thresholds, sources, split, limit=50):
    """Multi-label: texts whose label set is wrong, the most confident wrong decision first.

    A wrong decision's confidence is its probability's distance from the threshold.
    """
    labels = np.asarray(labels)
    predicted = (probs >= thresholds[None, :]).astype(labels.dtype)
    margin = np.where(predicted != labels, np.abs(probs - thresholds[None, :]), -1.0)
    wrong = np.flatnonzero(margin.max(axis=1) >= 0)
    wrong = wrong[np.argsort(-margin[wrong].max(axis=1), kind="stable")][:limit]
    return [
        {
            "split": split,
            "source": sources[i],
            "text": " ".join(texts[i].split())[:300],
            "true": [n for n, y in zip(names, labels[i], strict=True) if y],
            "predicted": [n for n, y in zip(names, predicted[i], strict=True) if y],
            "probability": float(probs[i, int(np.argmax(margin[i]))]),
        }
        for i in wrong
    ]


def _score(run, examples, split: str):
    """(metrics, mistakes, the run's outputs) of one split."""
    from bertclf.evaluation.metrics import compute_metrics

    outputs = run.outputs(examples.texts)
    probs = outputs["scores"]
    thresholds = run.thresholds
    metrics = compute_metrics(np.asarray(examples.labels), probs, run.label_names, thresholds)
    if thresholds is not None:
        mistakes = misclassified_sets(
            examples.texts,
            examples.labels,
            probs,
            run.label_names,
            thresholds,
            examples.sources,
            split,
        )
    else:
        mistakes = misclassified(
            examples.texts, examples.labels, probs, run.label_names, examples.sources, split
        )
    return metrics, mistakes, outputs


@dataclass
class RunReport:
    """What `write_run_report` wrote, and the metrics of each split it scored."""

    path: Path
    metrics: dict[str, dict[str, Any]]


def write_run_report(
    run_dir: str | Path, test: str | Path | None = None, *, run=None, splits=None
) -> RunReport:
    """`bertclf report RUN`: curves, confusion matrices, mistakes and report.html.

    Scores the validation split and the test set (the run's own --test, or `test`),
    and writes test_metrics.json for the latter.

    Args:
        run_dir: a trained run.
        test: a labelled test folder or file; defaults to the run's own --test, if any.
        run: the run, already loaded (training hands over its kept model).
        splits: the run's data, already read and split (training hands over its own).

    Example:
    >>> write_run_report("runs/demo").path  # doctest: +SKIP
    PosixPath('runs/demo/report.html')
    """
    from bertclf.data.datasets import load_splits, read_labelled
    from bertclf.evaluation.evaluator import run_label_format
    from bertclf.prediction.trained_run import load_run

    run = run or load_run(run_dir)
    cfg = run.config
    history = read_json(run.path / "history.json")
    kept = kept_epoch(history)
    baseline_f1 = history[-1].get("baseline_val_macro_f1") if history else None
    curves = plot_curves(history, run.path / "curves.png", baseline_f1, kept, run.multilabel)
    images = {"Training curves": curves}
    splits = splits or load_splits(cfg.data, cfg.seed)
    parts = [("validation", splits.val)]
    if test:
        fmt = run_label_format(run.path)
        test_set = read_labelled(test, cfg.data.text_field, fmt, label_names=run.label_names)
        parts.append(("test", test_set))
    elif splits.test is not None:
        parts.append(("test", splits.test))
    metrics, mistakes, outputs = _score_parts(run, parts, images)
    scores_html = _what_scores_mean(run, splits.val.labels, outputs["validation"])
    scores_html += _why_html(run, parts, mistakes)
    write_text(
        run.path / "misclassified.jsonl",
        "".join(json.dumps(m, ensure_ascii=False) + "\n" for m in mistakes),
    )
    baseline = _read_if_there(run.path / rundir.BASELINE)
    if baseline is not None and test:  # another test set than the one it was scored on
        baseline = {**baseline, "test": None}
    if "test" in metrics:
        metrics["test"]["baseline"] = (baseline or {}).get("test")  # beside it, same split
        write_json(run.path / "test_metrics.json", metrics["test"])
    stage = _read_if_there(run.path / rundir.CONTRASTIVE)
    checks = _read_if_there(run.path / rundir.DATA_CHECKS)
    top = mistakes[:20]
    page = render_html(
        run.path.name,
        run.meta,
        history,
        metrics,
        images,
        top,
        baseline,
        stage,
        checks,
        scores_html,
    )
    write_text(run.path / "report.html", page)
    return RunReport(run.path / "report.html", metrics)


def _why_html(run, parts, mistakes: list[dict[str, Any]]) -> str:
    """ "Why the model said it" (`bertclf.evaluation.explanations`); also written to
    RUN/explanations.jsonl."""
    full = {(split, s): t for split, ex in parts for s, t in zip(ex.sources, ex.texts, strict=True)}
    wrong = [(m["true"], full[m["split"], m["source"]]) for m in mistakes]
    val = parts[0][1]
    rows, table = explanations.explain_for_report(run, val.texts, val.labels, wrong)
    if rows is not None:
        write_text(
            run.path / "explanations.jsonl",
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
        )
    return explanations.section_html(rows, table)


def kept_epoch(history: list[dict[str, Any]]) -> int | None:
    """The kept epoch: the last that improved the selection key (a row's "kept" says it
    was the best so far when it ran; the last such row is the one kept)."""
    return max((r["epoch"] for r in history if r.get("kept")), default=None)


def _read_if_there(path: Path):
    return read_json(path) if path.is_file() else None


def _score_parts(run, parts, images: dict[str, Path]):
    """Metrics per split, the mistakes (most confident first) and each split's outputs;
    adds confusion plots."""
    metrics, mistakes, outputs = {}, [], {}
    for split, examples in parts:
        metrics[split], wrong, outputs[split] = _score(run, examples, split)
        mistakes += wrong
        if "confusion_matrix" not in metrics[split]:  # multi-label: per-label counts instead
            continue
        images[f"Confusion matrix, {split}"] = plot_confusion(
            metrics[split]["confusion_matrix"],
            run.label_names,
            f"{split} (rows: true, columns: predicted)",
            run.path / f"confusion_{split}.png",
        )
    mistakes.sort(key=lambda m: -m["probability"])
    return metrics, mistakes, outputs


def _img(path: Path, alt: str, wide: bool = False) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f"<figure{' class=wide' if wide else ''}>"
        f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(alt)}</figcaption></figure>"
    )


def _table(header: list[str], rows: list[list[Any]]) -> str:
    def cell(v):
        return f"{v:.4f}" if isinstance(v, float) else html.escape(str(v))

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _metrics_html(metrics: dict[str, Any], baseline: dict[str, Any] | None) -> str:
    rows = [
        ["fine-tuned", s, m["examples"], m["loss"], m["accuracy"], m["macro_f1"]]
        for s, m in metrics.items()
    ]
    for split in ("validation", "test"):
        b = (baseline or {}).get(split)
        if b is not None:
            rows.append(
                [baseline["model"], split, b["examples"], "-", b["accuracy"], b["macro_f1"]]
            )
    summary = _table(["model", "split", "examples", "loss", "accuracy", "macro-F1"], rows)
    per_class = "".join(_per_class_html(split, m) for split, m in metrics.items())
    return summary + per_class


def _per_class_html(split: str, m: dict[str, Any]) -> str:
    header = ["label", "precision", "recall", "F1", "support"]
    rows = [
        [n, c["precision"], c["recall"], c["f1"], c["support"]] for n, c in m["per_class"].items()
    ]
    if not m.get("multilabel"):
        return f"<h3>{html.escape(split)}: per class</h3>" + _table(header, rows)
    averages = _table(
        ["micro-F1", "macro-F1", "samples-F1", "subset accuracy", "Hamming loss"],
        [[m["micro_f1"], m["macro_f1"], m["samples_f1"], m["accuracy"], m["hamming_loss"]]],
    )
    for row, c in zip(rows, m["per_class"].values(), strict=True):
        (tn, fp), (fn, tp) = c["confusion"] or [[0, 0], [0, 0]]
        row += [c["threshold"], tp, fp, fn, tn]
    header += ["threshold", "TP", "FP", "FN", "TN"]
    return f"<h3>{html.escape(split)}: per label</h3>" + averages + _table(header, rows)


def _setting(value: Any) -> str:
    """A setting as the command line spells it: none for None or an empty list, lists
    comma-separated, not Python's reprs."""
    if value is None or value == [] or value == ():
        return "none"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return str(value)


def _config_rows(meta: dict[str, Any]) -> list[list[Any]]:
    config = meta["config"]
    multilabel = config["data"].get("task") == "multilabel"
    rows = []
    for section in ("data", "model", "train"):
        for k, v in config[section].items():
            if section == "model" and k == "head" and multilabel:
                v = "sigmoid per label (--task multilabel)"  # `head` applies to single-label
            rows.append([f"{section}.{k}", _setting(v)])
    encoder = meta["encoder"]
    # The package's checkpoint lives inside a virtualenv: its path says nothing to a reader.
    source = Path(encoder["source"]).name if encoder.get("kind") == "package" else encoder["source"]
    rows += [
        ["seed", config["seed"]],
        ["labels", ", ".join(meta["labels"])],
        ["encoder", f"{encoder['name']} ({source})"],
    ]
    return rows


STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1400px;padding:0 1rem;color:#222}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}td,th{border:1px solid #ccc;
padding:.25rem .6rem;text-align:left}th{background:#f3f3f3}
.figures{display:flex;flex-wrap:wrap;gap:1rem;align-items:flex-start}
figure{margin:0;flex:1 1 420px}figure.wide{flex-basis:100%}
img{width:100%;border:1px solid #eee}figcaption{color:#555;font-size:.9rem}
"""


def render_html(
    name: str,
    meta: dict[str, Any],
    history: list[dict[str, float]],
    metrics: dict[str, Any],
    images: dict[str, Path],
    mistakes: list[dict[str, Any]],
    baseline: dict[str, Any] | None = None,
    stage: dict[str, Any] | None = None,
    checks: dict[str, Any] | None = None,
    scores_html: str = "",
) -> str:
    """One self-contained page: images are embedded as data: URIs. `stage`: the
    contrastive stage's figures (contrastive.json), when it ran; `checks`: the data
    checks (data_checks.json) and the texts `--exclude` dropped; `scores_html`: the
    section on calibration, abstaining and the OOD score."""
    kept = kept_epoch(history) or "?"
    hist, wrong = _stage_html(stage) + _history_html(history), _mistakes_html(mistakes)
    # The curves across the page; the confusion matrices side by side under them.
    figures = "".join(
        _img(path, alt, wide=alt == "Training curves") for alt, path in images.items()
    )
    figures = f'<div class="figures">{figures}</div>'
    return (
        f"<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>bertclf report: {html.escape(name)}</title><style>{STYLE}</style></head>"
        f"<body><h1>bertclf report: {html.escape(name)}</h1>"
        f"<h2>Metrics (kept epoch {kept}), beside the linear baseline</h2>"
        f"{_metrics_html(metrics, baseline)}"
        f"<h2>Figures</h2>{figures}{scores_html}<h2>History</h2>{hist}"
        f"<h2>Most confident mistakes</h2>{wrong}"
        f"{_checks_html(checks, meta.get('excluded', []))}"
        f"<h2>Configuration</h2>{_table(['setting', 'value'], _config_rows(meta))}"
        f"</body></html>\n"
    )


def _checks_html(checks: dict[str, Any] | None, excluded: list[str]) -> str:
    """The data checks every run makes (runs made before them have none)."""
    if checks is None:
        return ""
    rows = [
        ["groups of same training texts with different labels", checks["conflicting_groups"]],
        ["training texts in those groups", checks["conflicting_texts"]],
        *[
            [f"{split} texts also in training", n]
            for split, n in checks["same_as_training"].items()
        ],
        ["training texts dropped by --exclude", len(excluded)],
    ]
    advice = (
        "<p>Same text: equal after case, spacing and punctuation are set aside. "
        "<code>bertclf audit DATA --test TEST --out DIR</code> lists them, with near "
        "duplicates and likely label errors.</p>"
    )
    return f"<h2>Data checks</h2>{_table(['check', 'found'], rows)}{advice}"


def _stage_html(stage: dict[str, Any] | None) -> str:
    if not stage:
        return ""
    return (
        f"<p>Contrastive stage before epoch 1 (--contrastive {stage['iterations']}): "
        f"{stage['pairs']} pairs in {stage['steps']} steps, {stage['seconds']:.0f} s; "
        f"pair loss {stage['first_loss']:.4f} &rarr; {stage['last_loss']:.4f}.</p>"
    )


def _history_html(history: list[dict[str, float]]) -> str:
    """One row an epoch. "best so far": the epoch improved the selection key when it ran;
    "kept": the one whose weights the run keeps (the last best so far)."""
    kept = kept_epoch(history)
    head = ["epoch", "best so far", "kept", "train loss", "train acc", "val loss", "val acc"]
    head.append("val macro-F1")
    rows = [
        [
            r["epoch"],
            "yes" if r.get("kept") else "",
            "kept" if r["epoch"] == kept else "",
            r["train_loss"],
            r["train_accuracy"],
            r["val_loss"],
            r["val_accuracy"],
            r.get("val_macro_f1", "-"),
            f"{r['learning_rate']:.2e}",
            f"{r['examples_per_second']:.1f}",
        ]
        for r in history
    ]
    return _table([*head, "lr", "ex/s"], rows)


def _mistakes_html(mistakes: list[dict[str, Any]]) -> str:
    if not mistakes:
        return "<p>No mistakes.</p>"
    multilabel = any(isinstance(m["true"], list) for m in mistakes)
    # Multi-label: the probability of the label decided most confidently wrong (furthest
    # from its threshold); single-label: of the predicted class.
    score = "probability of the worst label" if multilabel else "probability"
    head = ["split", "true", "predicted", score, "text"]
    rows = [
        [m["split"], _labels(m["true"]), _labels(m["predicted"]), m["probability"], m["text"][:160]]
        for m in mistakes
    ]
    note = (
        "<p>A text is listed when its label set is wrong; the probability is that of its "
        "label decided most confidently wrong (the furthest from that label's threshold).</p>"
        if multilabel
        else ""
    )
    return note + _table(head, rows)


def _labels(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(value) or "(none)"
    return str(value)


# ------------------------------------------------------------------ what a score means


KEYS = ("ece", "nll", "brier")


def _what_scores_mean(run, labels, outputs: dict[str, np.ndarray]) -> str:
    """Calibration before and after (table and reliability diagram), accuracy against
    coverage, the OOD score's validation distribution, and multi-label thresholds with
    the validation support they were chosen on."""
    head = "<h2>What a score means</h2>"
    file = run.path / calibration_lib.CALIBRATION
    if run.calibration is None or not file.is_file():
        return head + (
            "<p>This run was made before calibration existed: its scores are the raw "
            "probabilities, with no abstain flag and no out-of-distribution score.</p>"
        )
    cal = read_json(file)
    fitted = cal["fitted"]
    splits = {s: cal[s] for s in ("validation", "test") if s in cal}
    rows = [
        [
            s,
            m["examples"],
            *[m[f"{k}_{w}"] for k in ("ece", "nll", "brier") for w in ("before", "after")],
        ]
        for s, m in splits.items()
    ]
    header = ["split", "texts", "ECE before", "ECE after", "NLL before", "NLL after"]
    table = _table([*header, "Brier before", "Brier after"], rows)
    if cal.get("skipped"):
        how = f"Not calibrated: {cal['skipped']}."
    elif fitted["method"] == "none":
        how = "Not calibrated (--calibrate none): the scores are the raw probabilities."
    else:
        t = fitted["temperature"]
        value = f"{t[0]:.3f}" if len(t) == 1 else f"one per label, {min(t):.3f} to {max(t):.3f}"
        how = (
            f"Scores are divided by a temperature fitted on the validation split ({value}): "
            "a score of 0.8 should be right about 80% of the time. ECE: the mean gap "
            "between score and observed frequency over 15 bins (lower is better)."
        )
    confidence = calibration_lib.confidence_np(outputs["scores"], run.thresholds)
    predicted = (
        outputs["scores"].argmax(axis=1)
        if run.thresholds is None
        else apply(outputs["scores"], run.thresholds)
    )
    curve = coverage_curve(labels, predicted, confidence, len(run.label_names))
    abstain = fitted.get("abstain_threshold")
    figures = [
        _img(
            plot_reliability(splits, run.path / "reliability.png"),
            "Reliability, before and after calibration",
        ),
        _img(
            plot_coverage(curve, abstain, run.path / "coverage.png"),
            "Validation accuracy and macro-F1 against coverage",
        ),
        _img(
            plot_ood(
                outputs["ood_score"], fitted["ood_threshold"], run.path / "ood_validation.png"
            ),
            "Out-of-distribution score, validation",
        ),
    ]
    if abstain is None:
        abstain_text = (
            "The model never abstains: train with --abstain-precision P to store the lowest "
            "confidence at which the validation predictions reach precision P."
        )
    else:
        a = cal["abstain"]
        reached = a["validation_precision"]
        abstain_text = (
            f"--abstain-precision {a['precision']}: predictions with confidence below "
            f"{abstain:.4f} say abstain; on validation the rest "
            f"({100 * a['validation_coverage']:.0f}% of the texts) reach precision "
            f"{'-' if reached is None else f'{reached:.4f}'}."
        )
    ood_text = (
        f"Each prediction carries ood_score, the Mahalanobis distance of the text's "
        f"sentence vector to the nearest training class mean: higher is less like the "
        f"training texts. 1% of validation texts score above {fitted['ood_threshold']:.2f}."
    )
    return (
        f"{head}<p>{html.escape(how)}</p>{table}<p>{html.escape(abstain_text)}</p>"
        f"<p>{html.escape(ood_text)}</p>{_thresholds_html(run)}"
        f'<div class="figures">{"".join(figures)}</div>'
    )


def _thresholds_html(run) -> str:
    """Multi-label: each label's threshold and the validation support behind it."""
    file = run.path / rundir.THRESHOLDS
    if run.thresholds is None or not file.is_file():
        return ""
    stored = read_json(file)
    if "positives" not in stored:
        return ""
    tuned = stored.get("tuned") or [None] * len(stored["thresholds"])
    rows = [
        [name, t, p, n, "fixed" if ok is None else ("tuned" if ok else "0.5: too few to tune")]
        for name, t, p, n, ok in zip(
            run.label_names,
            stored["thresholds"],
            stored["positives"],
            stored["negatives"],
            tuned,
            strict=True,
        )
    ]
    return "<h3>Decision thresholds</h3>" + _table(
        ["label", "threshold", "validation positives", "validation negatives", "how"], rows
    )
