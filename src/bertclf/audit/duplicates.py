"""Texts that are the same, or nearly: conflicts, duplicates and leakage between splits.

Two texts are the *same* when their normal forms are equal (`normalize`: Unicode NFKC,
case folded, punctuation dropped, runs of whitespace made one space): "Refund
please!" and "refund, please" are one text. Same texts with different labels are a
*conflict*: the model is asked to give two answers to one question.

Two texts are *near* duplicates when the cosine of their TF-IDF vectors of character
3-5-grams (within words, on the normal forms) is at least `NEAR` (0.8; its reason is
given where it is set, `bertclf.config.audit`). Character n-grams, rather than words, so
that a changed word ending or a typo moves the score a little, not by a whole word.

`quick_checks` is what every training run checks (seconds): conflicts in the training
data and training texts repeated in validation or test, logged as one line.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from bertclf.config.audit import NEAR

logger = logging.getLogger(__name__)

CHUNK = 512  # rows of the similarity matrix computed at once: [512, n] floats
_SPACE = re.compile(r"\s+")


def normalize(text: str) -> str:
    """The text's normal form: NFKC, case folded, no punctuation, single spaces.

    >>> normalize("  Refund,  PLEASE!! ")
    'refund please'
    """
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(" " if unicodedata.category(c).startswith("P") else c for c in text)
    return _SPACE.sub(" ", text).strip()


@dataclass
class Match:
    """Text `index` (of the queried set) is `similarity`-close to text `other` (of the
    reference set, or of the same set for duplicates: then `other < index`)."""

    index: int
    other: int
    similarity: float


def char_ngram_vectors(normal: Sequence[str], reference: Sequence[str]):
    """L2-normalised TF-IDF rows of `normal` and `reference`, fitted on both."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True)
    # An all-punctuation text normalises to "": give it a token so the vocabulary is
    # never empty; it then matches only other empty texts, exactly.
    vectors = vectorizer.fit_transform([t or "\x00" for t in [*normal, *reference]])
    return vectors[: len(normal)], vectors[len(normal) :]


def closest_rows(queries, reference, same_set: bool) -> tuple[np.ndarray, np.ndarray]:
    """For each query row: the index of its most similar reference row and the cosine.

    `same_set`: queries and reference are one set; a row is compared only with earlier
    rows, so each duplicate points at the first text it repeats (row 0 gets -1, 0.0).
    Chunked, so memory is [CHUNK, n], not [n, n].
    """
    n = queries.shape[0]
    best = np.full(n, -1, dtype=np.int64)
    score = np.zeros(n, dtype=np.float64)
    if reference.shape[0] == 0:
        return best, score
    for start in range(0, n, CHUNK):
        sims = (queries[start : start + CHUNK] @ reference.T).toarray()  # [chunk, m]
        if same_set:
            rows = np.arange(start, start + sims.shape[0])
            sims[np.arange(sims.shape[1])[None, :] >= rows[:, None]] = -1.0
        best[start : start + len(sims)] = sims.argmax(axis=1)
        score[start : start + len(sims)] = sims.max(axis=1)
    score = np.clip(score, -1.0, 1.0)
    best[score < 0] = -1
    return best, score


def duplicates(texts: Sequence[str], threshold: float = NEAR) -> list[Match]:
    """Each text that repeats an earlier one (same normal form: similarity 1.0, or
    near: cosine >= `threshold`), with the earlier text it is closest to."""
    normal = [normalize(t) for t in texts]
    first: dict[str, int] = {}
    found = []
    for i, t in enumerate(normal):
        if t in first:
            found.append(Match(i, first[t], 1.0))
        else:
            first[t] = i
    exact = {m.index for m in found}
    vectors, _ = char_ngram_vectors(normal, [])
    best, score = closest_rows(vectors, vectors, same_set=True)
    for i in np.flatnonzero(score >= threshold):
        if i not in exact:
            found.append(Match(int(i), int(best[i]), float(min(score[i], 1.0))))
    return sorted(found, key=lambda m: m.index)


def leakage(
    texts: Sequence[str], train_texts: Sequence[str], threshold: float = NEAR
) -> list[Match]:
    """Each of `texts` (test or validation) that is the same as a training text, or near
    one (cosine >= `threshold`), with the closest training text."""
    normal = [normalize(t) for t in texts]
    train_normal = [normalize(t) for t in train_texts]
    index = {t: i for i, t in reversed(list(enumerate(train_normal)))}  # the first one
    queries, reference = char_ngram_vectors(normal, train_normal)
    best, score = closest_rows(queries, reference, same_set=False)
    found = []
    for i, t in enumerate(normal):
        if t in index:
            found.append(Match(i, index[t], 1.0))
        elif score[i] >= threshold:
            found.append(Match(i, int(best[i]), float(min(score[i], 1.0))))
    return found


def conflicts(texts: Sequence[str], labels: Sequence[object]) -> list[list[int]]:
    """Groups (text indices, in order) of texts with one normal form and more than one
    label. `labels`: anything comparable per text (a class name, a set of names)."""
    groups: dict[str, list[int]] = {}
    for i, t in enumerate(texts):
        groups.setdefault(normalize(t), []).append(i)
    out = []
    for members in groups.values():
        distinct = {_key(labels[i]) for i in members}
        if len(distinct) > 1:
            out.append(members)
    return sorted(out, key=lambda g: g[0])


def _key(label: object) -> object:
    return tuple(sorted(label)) if isinstance(label, (list, set, tuple)) else label


@dataclass
class QuickChecks:
    """What a training run checks about its data before it trains (`quick_checks`)."""

    conflicts: int = 0  # groups of same training texts with different labels
    conflict_texts: int = 0
    leaked: dict[str, int] = field(default_factory=dict)  # split -> texts same as training

    def to_dict(self) -> dict:
        return {
            "conflicting_groups": self.conflicts,
            "conflicting_texts": self.conflict_texts,
            "same_as_training": self.leaked,
            "rule": "same text after case, spacing and punctuation are normalised "
            "(bertclf.audit.duplicates.normalize)",
        }

    def line(self) -> str:
        leaked = ", ".join(f"{n} {split}" for split, n in self.leaked.items()) or "none"
        return (
            f"data checks: {self.conflicts} group(s) of same texts with different labels "
            f"({self.conflict_texts} texts); texts also in training: {leaked}"
        )

    def found(self) -> bool:
        return bool(self.conflicts or any(self.leaked.values()))


def quick_checks(
    train_texts: Sequence[str], train_labels: Sequence[object], others: dict[str, Sequence[str]]
) -> QuickChecks:
    """Conflicts within the training texts and exact (normal-form) copies of training
    texts in each of `others` (split name -> texts). No TF-IDF: a hash per text."""
    groups = conflicts(train_texts, train_labels)
    seen = {normalize(t) for t in train_texts}
    leaked = {name: sum(normalize(t) in seen for t in texts) for name, texts in others.items()}
    return QuickChecks(len(groups), sum(len(g) for g in groups), leaked)
