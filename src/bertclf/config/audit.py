"""`AuditConfig`: what `bertclf audit` checks in a labelled dataset, and where it writes."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from bertclf.config.data import DataConfig
from bertclf.config.fields import check, option

# Which model gives the out-of-fold probabilities (bertclf.audit.label_issues). `both`
# averages `encoder` and `tfidf`: the measured default (README, "Check your data").
# `finetune` fine-tunes the encoder once per fold (bertclf.training.cross_fitting).
ENGINES = ("both", "encoder", "tfidf", "finetune")
# Near duplicates: the cosine of character 3-5-gram TF-IDF vectors, at least this. A copy
# with one word in ten replaced stays at or above 0.8 for 99% of BBC's articles and 82%
# of civility-gh's sentences, while between distinct texts 0.8 adds 8 pairs to 0.9's 62
# on BBC (the same story filed twice) and 2 to 1 on civility-gh (docs/experiments/
# 2026-12.md §4, `bench/audit.py near`).
NEAR = 0.8


@dataclass(frozen=True)
class AuditConfig:
    """An audit of the labelled texts in `data.train` (and `data.val`, `data.test`).

    Args:
        data: the dataset, read as `bertclf train` reads it.
        out: the folder to write the audit's files to (created; never replaced
            without `overwrite`).
        engine: `encoder` (the encoder's sentence vectors + logistic regression),
            `tfidf` (TF-IDF + logistic regression), `both` (their probabilities
            averaged) or `finetune` (the encoder fine-tuned as `bertclf train` does, once
            per fold: k trainings).
        model: the encoder of the `encoder`, `both` and `finetune` engines.
        near: the cosine at or above which two texts are near duplicates.
        seed: the folds' shuffle.
        overwrite: replace an existing `out`.
    """

    data: DataConfig
    out: str = option(dataclasses.MISSING, "folder for the audit's files (new or empty)")
    engine: str = option(
        "both",
        "out-of-fold model: encoder (sentence vectors + logistic regression), tfidf "
        "(TF-IDF + logistic regression), both averaged, or finetune (the encoder "
        "fine-tuned once per fold: k trainings)",
        choices=ENGINES,
    )
    model: str = option("minilm-l6", "encoder of the encoder, both and finetune engines")
    near: float = option(NEAR, "near duplicates: cosine of character 3-5-gram TF-IDF, at least")
    seed: int = option(0, "seed of the folds")
    overwrite: bool = option(False, "replace an existing --out folder")

    def __post_init__(self) -> None:
        check(self.engine in ENGINES, "--engine", self.engine, f"choose one of {ENGINES}")
        check(0.0 < self.near <= 1.0, "--near", self.near, "use a cosine in (0, 1]")
        check(bool(self.out), "--out", self.out, "name a folder for the audit's files")
