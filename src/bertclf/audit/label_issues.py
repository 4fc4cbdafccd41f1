"""Likely label errors: out-of-fold probabilities from a cheap model, ranked by cleanlab.

Confident learning (Northcutt et al. 2021) needs, for every training text, probabilities
from a model that did not see that text: `out_of_fold` fits one model per fold
(stratified k-fold; plain k-fold for multi-label data) and predicts the held-out fold.
cleanlab then flags the texts whose given label disagrees with those probabilities
beyond what each class's own noise rate explains (`find_label_issues`, pruned by noise
rate); `rank_issues` lists them, and the texts the out-of-fold model labels otherwise,
ranked by self-confidence: the probability the model gives the given label.

Engines, each a feature map followed by the same logistic regression:
- `tfidf`: TF-IDF of word unigrams and bigrams (sublinear tf), the baseline's features;
  seconds on thousands of texts (terms of one text left out).
- `encoder`: the encoder's mean-pooled sentence vectors (`--model`, default the offline
  MiniLM, which was trained for exactly such vectors), L2-normalised; one encoding pass,
  then k cheap fits. The default: see README "Check your data" for the measured recall.

The regression's strength C is chosen once per audit by 3-fold cross-validated log-loss
over (0.1, 1, 10, 100) (on at most 5,000 texts), because confident learning reads
probabilities, and log-loss is what says whether they are good: no constant fitted to
one dataset.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bertclf.errors import DataError

logger = logging.getLogger(__name__)

ENGINES = ("encoder", "tfidf")
FOLDS = 5  # cleanlab's own default for cross-validated probabilities
C_GRID = (0.1, 1.0, 10.0, 100.0)
C_SAMPLE = 5000  # texts the choice of C looks at, at most
ENCODE_BATCH = 32


# ------------------------------------------------------------------ features


def tfidf_features(texts: Sequence[str]):
    """[n, vocabulary] sparse TF-IDF rows (word 1-2 grams, sublinear tf).

    Terms of a single text are left out (`min_df=2`): such a term never reaches a held-out
    fold, so it adds nothing to out-of-fold probabilities, only time (on BBC it is 2/3
    of the 360,000 terms and 3x the fitting time)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    try:
        return TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2).fit_transform(texts)
    except ValueError:  # a handful of texts share no term: keep them all
        return TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit_transform(texts)


def encoder_features(
    texts: Sequence[str], model: str = "minilm-l6", seq_len: int = 128, progress: bool = False
) -> np.ndarray:
    """[n, hidden] L2-normalised mean-pooled sentence vectors of `model`'s encoder.

    Texts are cut as training cuts them (`ModelConfig` defaults: head and tail), and
    encoded in order of length so a batch pads little (`inference_features` pads a batch
    to its longest text); rows come back in `texts` order.
    """
    import tensorflow as tf
    from tqdm.auto import tqdm

    from bertclf.config.model import ModelConfig
    from bertclf.model import encoders
    from bertclf.model.classifier import build_classifier
    from bertclf.model.preprocessing import inference_features
    from bertclf.tflog import stderr_is_terminal

    backbone, tokenizer = encoders.load(encoders.resolve(model))
    # training's default length, or all the encoder reads when that is less
    config = ModelConfig(model=model, seq_len=min(seq_len, backbone.max_sequence_length))
    preprocessor, classifier = build_classifier(backbone, tokenizer, config, num_labels=2)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def embed(batch):  # [b] strings -> [b, hidden]
        vectors = classifier.pool(inference_features(preprocessor, batch))
        return tf.math.l2_normalize(vectors, axis=-1)

    # Length order by characters, a close proxy of tokens that needs no extra tokenizing pass.
    order = np.argsort([len(t) for t in texts], kind="stable")
    out = np.zeros((len(texts), backbone.hidden_dim), dtype=np.float32)
    disable = not (progress and stderr_is_terminal())
    with tqdm(total=len(texts), unit="text", disable=disable, desc="encoding") as bar:
        for start in range(0, len(texts), ENCODE_BATCH):
            ids = order[start : start + ENCODE_BATCH]
            out[ids] = embed(tf.constant([texts[i] for i in ids])).numpy()
            bar.update(len(ids))
    return out


# ------------------------------------------------------------------ out-of-fold


def _regression(c: float, multilabel: bool):
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    lr = LogisticRegression(C=c, max_iter=2000)
    return OneVsRestClassifier(lr) if multilabel else lr


def split_folds(labels: np.ndarray, multilabel: bool, seed: int, folds: int) -> list:
    """[(fit rows, held-out rows)] for each of `folds` folds: stratified by label, or
    (multi-label: no one label to stratify by) plain shuffled k-fold."""
    from sklearn.model_selection import KFold, StratifiedKFold

    if multilabel:
        splitter = KFold(folds, shuffle=True, random_state=seed)
    else:
        splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    split_on = np.zeros(len(labels)) if multilabel else labels
    return list(splitter.split(split_on, split_on))


def fold_count(labels: np.ndarray, multilabel: bool, names: Sequence[str]) -> int:
    """`FOLDS`, or fewer when the smallest class has fewer texts (at least 2)."""
    if multilabel:
        if len(labels) < 2 * FOLDS:
            raise DataError(f"{len(labels)} texts: an audit needs at least {2 * FOLDS}; add data")
        return FOLDS
    counts = np.bincount(labels, minlength=len(names))
    smallest = int(counts.argmin())
    if counts[smallest] < 2:
        raise DataError(
            f"label {names[smallest]!r} has {counts[smallest]} text(s); out-of-fold "
            "probabilities need at least 2 per label: add texts or drop the label"
        )
    return int(min(FOLDS, counts[smallest]))


def choose_c(features, labels: np.ndarray, multilabel: bool, seed: int) -> float:
    """C by 3-fold cross-validated log-loss over `C_GRID`, on at most `C_SAMPLE` texts."""
    from sklearn.metrics import log_loss

    rng = np.random.default_rng(seed)
    rows = np.arange(len(labels))
    if len(rows) > C_SAMPLE:
        rows = np.sort(rng.choice(rows, C_SAMPLE, replace=False))
    x, y = features[rows], labels[rows]
    folds = min(3, fold_count(y, multilabel, [str(i) for i in range(int(y.max()) + 1)]))
    best, best_loss = C_GRID[0], np.inf
    for c in C_GRID:
        probs = _oof(x, y, multilabel, seed, folds, c)
        if multilabel:
            eps = 1e-7
            p = np.clip(probs, eps, 1 - eps)
            loss = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
        else:  # a class missing from a fold's fit leaves a row that sums to under 1
            probs = np.clip(probs, 1e-7, None)
            loss = log_loss(
                y, probs / probs.sum(axis=1, keepdims=True), labels=np.arange(probs.shape[1])
            )
        if loss < best_loss:
            best, best_loss = c, loss
    return best


def _oof(features, labels: np.ndarray, multilabel: bool, seed: int, folds: int, c: float):
    from sklearn.exceptions import ConvergenceWarning

    num = labels.shape[1] if multilabel else int(labels.max()) + 1
    probs = np.zeros((len(labels), num), dtype=np.float64)
    for fit, held in split_folds(labels, multilabel, seed, folds):
        model = _regression(c, multilabel)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            # a label absent from a fold's training part: OneVsRest predicts it constant
            warnings.simplefilter("ignore", UserWarning)
            model.fit(features[fit], labels[fit])
        p = model.predict_proba(features[held])
        if multilabel:
            probs[held] = p
        else:
            probs[np.ix_(held, model.classes_)] = p
    return probs


@dataclass
class OutOfFold:
    """Out-of-fold probabilities [n, labels] and how they were made (`c`: the regression
    strength, each engine's under `both`, None for fine-tuned folds)."""

    probs: np.ndarray
    engine: str
    folds: int
    c: float | dict[str, float] | None


def out_of_fold(
    features, labels: np.ndarray, names: Sequence[str], multilabel: bool, engine: str, seed: int = 0
) -> OutOfFold:
    """Probabilities for every text from a regression that did not see it.

    Args:
        features: [n, d] rows (dense or sparse), from `tfidf_features` or `encoder_features`.
        labels: [n] class ids, or [n, labels] 0/1 rows (`multilabel`).
        names: the label names (for messages).
        engine: recorded with the result.
        seed: folds and the sample that chooses C.
    """
    folds = fold_count(labels, multilabel, names)
    c = choose_c(features, labels, multilabel, seed)
    return OutOfFold(_oof(features, labels, multilabel, seed, folds, c), engine, folds, c)


# ------------------------------------------------------------------ ranking


@dataclass
class Issue:
    """Training text `index` may carry a wrong label. `score`: cleanlab's label quality,
    the out-of-fold probability of the given label (multi-label: its labels' combined);
    0 surely wrong .. 1 surely right. `suggested`: the label(s) the out-of-fold model
    prefers. `confident`: confident learning counts it among the errors it estimates."""

    index: int
    score: float
    suggested: list[int]
    confident: bool


def rank_issues(labels: np.ndarray, probs: np.ndarray, multilabel: bool) -> list[Issue]:
    """The texts to review, most likely wrong first (lowest label quality).

    The list holds every text confident learning flags (cleanlab's `find_label_issues`,
    pruned by noise rate) and (single-label data) every text whose out-of-fold
    prediction is not its given label. Why both: cleanlab's count is an estimate, and on
    small sets it falls short (3 labels flipped among 90 texts: it flagged 1, though the
    3 had the lowest scores); a text that a model which never saw it labels otherwise
    deserves a look, and the order puts the likeliest first, so a longer list costs a
    reviewer nothing above the point where they stop.
    """
    with warnings.catch_warnings():
        # cleanlab's notes on small sets (a class with few texts) are not the user's to read
        warnings.simplefilter("ignore")
        return _rank(labels, probs, multilabel)


def _rank(labels: np.ndarray, probs: np.ndarray, multilabel: bool) -> list[Issue]:
    if multilabel:
        from cleanlab.multilabel_classification import filter as ml_filter
        from cleanlab.multilabel_classification import rank as ml_rank

        given = [list(np.flatnonzero(row)) for row in labels]
        flagged = ml_filter.find_label_issues(given, probs)
        quality = ml_rank.get_label_quality_scores(given, probs)
        predicted = probs >= 0.5  # [n, labels]
        # Multi-label: cleanlab's flags only. A row whose predicted set differs from its
        # given set in any of its labels is most rows of a hard set (GoEmotions: 80% of
        # dev.tsv), not a list to review.
        disagree = np.zeros(len(labels), dtype=bool)
        suggested = [list(np.flatnonzero(row)) for row in predicted]
    else:
        from cleanlab.filter import find_label_issues
        from cleanlab.rank import get_label_quality_scores

        flagged = find_label_issues(labels, probs)
        quality = get_label_quality_scores(labels, probs)
        disagree = probs.argmax(axis=1) != labels
        suggested = [[int(k)] for k in probs.argmax(axis=1)]
    listed = np.flatnonzero(flagged | disagree)
    listed = listed[np.argsort(quality[listed], kind="stable")]
    return [Issue(int(i), float(quality[i]), suggested[i], bool(flagged[i])) for i in listed]
