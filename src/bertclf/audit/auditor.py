"""`bertclf audit`: read a labelled dataset, run every check, write the audit folder.

OUT/
  label_issues.csv   training texts to review, most likely mislabelled first: source,
                     given, suggested, score (cleanlab's label quality), confident (1:
                     among the errors confident learning estimates), text
  conflicts.csv      same texts (case, spacing, punctuation aside), different labels:
                     group, source, label, text
  duplicates.csv     training texts that repeat an earlier one, exactly or nearly:
                     source, duplicate_of, similarity, label, label_of_duplicate, text
  leakage.csv        validation and test texts that repeat a training text:
                     split, test_source, train_source, similarity, text
  summary.json       the counts, the settings, how long each step took
  audit.html         all of it on one page, with what to do next

A `source` names a text as a user finds it: a folder's file relative to DATA
(`sport/123.txt`), a table's 1-based data row; `bertclf train --exclude` reads them.
The folder is written beside OUT under a temporary name and renamed when complete.
"""

from __future__ import annotations

import csv
import html
import io
import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from bertclf.audit import duplicates as dup
from bertclf.audit import label_issues as li
from bertclf.config.audit import AuditConfig
from bertclf.data.datasets import Examples, check_source, read_labelled, user_sources
from bertclf.data.labels import LabelFormat
from bertclf.errors import ConfigError, DataError
from bertclf.evaluation.report import STYLE
from bertclf.fileio import publish_modes
from bertclf.model import encoders

logger = logging.getLogger(__name__)

SHOWN = 20  # rows of each table on the HTML page (the CSV files hold all of them)


def check_out(config: AuditConfig) -> Path:
    """The output folder, refused when it is a file or already holds something."""
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: is a file; name a folder for the audit")
    if out.is_dir() and any(out.iterdir()) and not config.overwrite:
        raise ConfigError(
            f"--out {out}: already holds files; choose a new folder or pass --overwrite"
        )
    return out


def check_inputs(config: AuditConfig) -> LabelFormat:
    """What can be checked before any reading: the output folder, the sources and (for
    the engines that use it) the encoder's name."""
    check_out(config)
    if config.engine != "tfidf":
        encoders.precheck(config.model)
    fmt = LabelFormat.from_config(config.data)
    for path in (config.data.train, config.data.val, config.data.test):
        if path:
            check_source(path, config.data.text_field, fmt)
    return fmt


def _read(config: AuditConfig, fmt: LabelFormat) -> tuple[Examples, dict[str, Examples]]:
    data = config.data
    train = read_labelled(data.train, data.text_field, fmt)
    if len(train.label_names) < 2:
        raise DataError(
            f"{data.train}: every text has the label {train.label_names}; an audit (and a "
            "classifier) needs at least two labels"
        )
    others = {}
    for split, path in (("validation", data.val), ("test", data.test)):
        if path:
            others[split] = read_labelled(path, data.text_field, fmt)
    return train, others


def engine_features(config: AuditConfig, engine: str, texts: list[str], progress: bool = False):
    """The rows `engine` (`encoder` or `tfidf`) fits its regression on."""
    if engine == "tfidf":
        return li.tfidf_features(texts)
    return li.encoder_features(texts, config.model, progress=progress)


# `--engine finetune`: (data config, training examples, their sources, model, seed,
# progress) -> OutOfFold. It trains, and `bertclf.training` imports this package (every
# run's quick checks), so the caller hands it in: `bertclf.training.cross_fitting`.
FineTuner = Callable[..., li.OutOfFold]


def out_of_fold(
    config: AuditConfig,
    train: Examples,
    progress: bool = False,
    features: dict | None = None,
    fine_tune: FineTuner | None = None,
) -> li.OutOfFold:
    """The engine's out-of-fold probabilities for every training text (`both`: the mean
    of the encoder's and TF-IDF's). `features`: engine -> rows already computed for
    `train.texts` (a benchmark reuses them across label draws). `fine_tune`: the
    `finetune` engine (`bertclf.training.cross_fitting.fine_tuned_out_of_fold`)."""
    if config.engine == "finetune":
        if fine_tune is None:
            raise ConfigError(
                "--engine finetune: pass fine_tune=bertclf.training.cross_fitting."
                "fine_tuned_out_of_fold to audit() (the CLI does)"
            )
        sources = user_sources(config.data.train, train.sources)
        return fine_tune(config.data, train, sources, config.model, config.seed, progress)
    labels = np.asarray(train.labels)
    engines = ("encoder", "tfidf") if config.engine == "both" else (config.engine,)
    results = []
    for engine in engines:
        rows = (features or {}).get(engine)
        if rows is None:
            rows = engine_features(config, engine, train.texts, progress)
        results.append(
            li.out_of_fold(rows, labels, train.label_names, train.multilabel, engine, config.seed)
        )
    probs = np.mean([r.probs for r in results], axis=0)
    c = {r.engine: r.c for r in results}  # each engine's own regression strength
    return li.OutOfFold(probs, config.engine, results[0].folds, c)


class _Named:
    """The training texts as the audit's files name them: sources and label names."""

    def __init__(self, train: Examples, sources: list[str]):
        self.train, self.sources = train, sources
        names = train.label_names
        self.given = [  # multi-label: the names in label order, as `suggested` lists them
            ",".join(k for k in names if k in n) if train.multilabel else n
            for n in train.named_labels()
        ]

    def issue_row(self, issue: li.Issue) -> list[Any]:
        i, names = issue.index, self.train.label_names
        suggested = ",".join(names[k] for k in issue.suggested)
        row = [self.sources[i], self.given[i], suggested, round(issue.score, 6)]
        return [*row, int(issue.confident), self.train.texts[i]]

    def repeat_row(self, m: dup.Match) -> list[Any]:
        row = [self.sources[m.index], self.sources[m.other], round(m.similarity, 4)]
        return [*row, self.given[m.index], self.given[m.other], self.train.texts[m.index]]


def _csv(header: list[str], rows: list[list[Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def audit(
    config: AuditConfig, progress: bool = False, fine_tune: FineTuner | None = None
) -> dict[str, Any]:
    """Run every check on `config.data` and write `config.out` (layout above).

    Returns the summary (also in summary.json). `fine_tune`: the `finetune` engine
    (`bertclf.training.cross_fitting.fine_tuned_out_of_fold`), needed for that engine only.

    Example:
    >>> from bertclf.config.data import DataConfig
    >>> config = AuditConfig(DataConfig("examples/demo_data"), out="runs/audit")
    >>> summary = audit(config)  # doctest: +SKIP
    >>> summary["texts"]
    96
    """
    fmt = check_inputs(config)
    timings = {}
    start = time.perf_counter()
    train, others = _read(config, fmt)
    table = _Named(train, user_sources(config.data.train, train.sources))
    timings["read"] = time.perf_counter() - start

    start = time.perf_counter()
    oof = out_of_fold(config, train, progress, fine_tune=fine_tune)
    issues = li.rank_issues(np.asarray(train.labels), oof.probs, train.multilabel)
    issue_rows = [table.issue_row(i) for i in issues]
    timings["label_issues"] = time.perf_counter() - start

    start = time.perf_counter()
    groups = dup.conflicts(train.texts, train.named_labels())
    conflict_rows = [
        [g + 1, table.sources[i], table.given[i], train.texts[i]]
        for g, members in enumerate(groups)
        for i in members
    ]
    repeats = dup.duplicates(train.texts, config.near)
    duplicate_rows = [table.repeat_row(m) for m in repeats]
    leak_rows = []
    for split, examples in others.items():
        names = user_sources(getattr(config.data, _FLAG[split]), examples.sources)
        for m in dup.leakage(examples.texts, train.texts, config.near):
            row = [split, names[m.index], table.sources[m.other], round(m.similarity, 4)]
            leak_rows.append([*row, examples.texts[m.index]])
    timings["duplicates"] = time.perf_counter() - start

    summary = {
        "data": config.data.train,
        "texts": len(train),
        "labels": train.label_names,
        "multilabel": train.multilabel,
        "counts": {
            "label_issues": len(issue_rows),
            "confident_learning_estimate": sum(i.confident for i in issues),
            "conflict_groups": len(groups),
            "conflicting_texts": len(conflict_rows),
            "duplicates": len(duplicate_rows),
            "exact_duplicates": sum(1 for m in repeats if m.similarity >= 1.0),
            "leaked": {split: sum(r[0] == split for r in leak_rows) for split in others},
        },
        "engine": {"name": config.engine, "folds": oof.folds, "C": oof.c},
        "near": config.near,
        "seconds": {k: round(v, 2) for k, v in timings.items()},
        "settings": asdict(config),
    }
    files = {
        "label_issues.csv": _csv(ISSUE_HEADER, issue_rows),
        "conflicts.csv": _csv(["group", "source", "label", "text"], conflict_rows),
        "duplicates.csv": _csv(
            ["source", "duplicate_of", "similarity", "label", "label_of_duplicate", "text"],
            duplicate_rows,
        ),
        "leakage.csv": _csv(
            ["split", "test_source", "train_source", "similarity", "text"], leak_rows
        ),
        "audit.html": render_html(summary, issue_rows, conflict_rows, duplicate_rows, leak_rows),
    }
    _publish(Path(config.out), files, summary, config.overwrite)
    return summary


_FLAG = {"validation": "val", "test": "test"}


def _publish(out: Path, files: dict[str, str], summary: dict, overwrite: bool) -> None:
    """Write every file into a temporary folder beside `out`, then rename it into place."""
    import json

    out = out.absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        for name, text in files.items():
            (tmp / name).write_text(text, encoding="utf-8")
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        publish_modes(tmp)
        if out.exists() and overwrite:
            shutil.rmtree(out)
        elif out.is_dir():  # empty (check_out refused one that is not)
            out.rmdir()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def summary_lines(summary: dict[str, Any], out: str) -> list[str]:
    """What `bertclf audit` prints when it is done."""
    c = summary["counts"]
    leaked = ", ".join(f"{n} {s}" for s, n in c["leaked"].items()) or "no --val/--test given"
    return [
        f"{summary['texts']} training texts, labels {summary['labels']}",
        f"likely mislabelled: {c['label_issues']} to review, {c['confident_learning_estimate']} "
        f"by confident learning's estimate (label_issues.csv, most likely first; engine "
        f"{summary['engine']['name']})",
        f"same text, different labels: {c['conflict_groups']} group(s), "
        f"{c['conflicting_texts']} texts (conflicts.csv)",
        f"duplicates in training: {c['duplicates']} ({c['exact_duplicates']} exact; "
        "duplicates.csv)",
        f"validation/test texts that repeat a training text: {leaked} (leakage.csv)",
        f"page: {Path(out) / 'audit.html'}",
    ]


# ------------------------------------------------------------------ the page


def _table(header: list[str], rows: list[list[Any]], total: int) -> str:
    if not rows:
        return "<p>None found.</p>"
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows
    )
    more = (
        f"<p>First {len(rows)} of {total}; all of them in the CSV file.</p>"
        if total > len(rows)
        else ""
    )
    return f"<table><tr>{head}</tr>{body}</table>{more}"


def _short(rows: list[list[Any]]) -> list[list[Any]]:
    """The first `SHOWN` rows, each text cut to 300 characters for the page."""
    return [[*r[:-1], r[-1] if len(r[-1]) <= 300 else r[-1][:300] + " ..."] for r in rows[:SHOWN]]


NEXT_STEPS = (
    "<ol><li>Read the likely mislabelled texts from the top: fix a wrong label in the data, "
    "or list the text's source in a file for <code>bertclf train --exclude FILE</code> "
    "(label_issues.csv cut to the rows you checked is such a file). A flagged text is a "
    "question for a person, not an answer: the model that ranked them is a cheap one.</li>"
    "<li>Give each group of conflicting texts one label.</li>"
    "<li>Remove validation or test texts that repeat a training text: they score the "
    "model on what it has seen.</li>"
    "<li>Exact duplicates weigh a text twice in training; near duplicates are often "
    "quoted replies or a text filed twice.</li></ol>"
)


ISSUE_HEADER = ["source", "given", "suggested", "score", "confident", "text"]
LEAK_HEADER = ["split", "source", "training source", "similarity", "text"]
REPEAT_HEADER = ["source", "repeats", "similarity", "label", "its label", "text"]


def render_html(
    summary: dict[str, Any],
    issues: list[list[Any]],
    conflicts: list[list[Any]],
    repeats: list[list[Any]],
    leaks: list[list[Any]],
) -> str:
    """One self-contained page, in the run report's look."""
    c = summary["counts"]
    counts = [
        ["training texts", summary["texts"]],
        [
            "likely mislabelled: to review (confident learning's estimate)",
            f"{c['label_issues']} ({c['confident_learning_estimate']})",
        ],
        ["groups of same texts with different labels", c["conflict_groups"]],
        ["duplicates in training (exact)", f"{c['duplicates']} ({c['exact_duplicates']})"],
        *[[f"{split} texts that repeat a training text", n] for split, n in c["leaked"].items()],
        ["out-of-fold engine", f"{summary['engine']['name']}, {summary['engine']['folds']} folds"],
        ["near duplicates", f"cosine of character 3-5-gram TF-IDF >= {summary['near']}"],
    ]
    title = f"bertclf audit: {html.escape(str(summary['data']))}"
    return (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{title}</title>"
        f"<style>{STYLE}</style></head><body><h1>{title}</h1>"
        f"<h2>Counts</h2>{_table(['check', 'found'], counts, len(counts))}"
        f"<h2>What to do next</h2>{NEXT_STEPS}"
        "<h2>Likely mislabelled (most likely first)</h2>"
        "<p>score: cleanlab's label quality, the out-of-fold probability of the given "
        "label (0: surely wrong, 1: surely right). confident: 1 for the texts confident "
        "learning counts among the errors; the others are texts a model that never saw "
        "them labels otherwise.</p>"
        f"{_table(ISSUE_HEADER, _short(issues), len(issues))}"
        "<h2>Same text, different labels</h2>"
        f"{_table(['group', 'source', 'label', 'text'], _short(conflicts), len(conflicts))}"
        "<h2>Validation and test texts that repeat a training text</h2>"
        f"{_table(LEAK_HEADER, _short(leaks), len(leaks))}"
        "<h2>Duplicates in the training data</h2>"
        f"{_table(REPEAT_HEADER, _short(repeats), len(repeats))}"
        "</body></html>\n"
    )
