"""The head's starting weights: a linear probe on the encoder's vectors (LP-FT).

A fresh head is random, and for the first steps its gradients push the pretrained
encoder in directions chosen by chance, which a small training set may never undo
(Kumar et al. 2022, "Fine-Tuning can Distort Pretrained Features and Underperform
Out-of-Distribution": fit a linear probe first, then fine-tune everything, "LP-FT").
With `--head-init probe` (the default) a run fits, before its first step, a logistic
regression (scikit-learn, L2 with C=1, its default) on the pooled vectors the head
reads, of up to `texts_for(hidden)` training texts (10 per encoder dimension, a
random sample beyond that), with the run's class weights, and starts the head from it;
then the whole model is fine-tuned as before. It costs one forward pass over those
texts. `--head-init random` keeps Keras' random start.

Example:
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=(40, 8)).astype("float32")
>>> y = (x[:, 0] > 0).astype(int)
>>> kernel, bias = fit_head(x, y, num_labels=2, head="softmax")
>>> kernel.shape, bias.shape
((8, 2), (2,))
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from bertclf.data import Examples

logger = logging.getLogger(__name__)

TEXTS_PER_DIMENSION = 10


def texts_for(hidden: int) -> int:
    """How many training texts the probe reads at most (10 per dimension of the vectors)."""
    return TEXTS_PER_DIMENSION * hidden


def sample(examples: Examples, limit: int, seed: int) -> Examples:
    """`examples` itself when it has `limit` texts or fewer, else a seeded random `limit`."""
    if len(examples) <= limit:
        return examples
    keep = np.sort(np.random.default_rng(seed).choice(len(examples), limit, replace=False))
    return Examples(
        texts=[examples.texts[i] for i in keep],
        labels=[examples.labels[i] for i in keep],
        label_names=examples.label_names,
        sources=[examples.sources[i] for i in keep],
        multilabel=examples.multilabel,
    )


def _logistic(x: np.ndarray, y: np.ndarray, weights: dict | None):
    model = LogisticRegression(C=1.0, max_iter=1000, class_weight=weights)
    with warnings.catch_warnings():  # a probe a little short of convergence is a fine start
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(x, y)


def fit_head(
    vectors: np.ndarray,
    labels: np.ndarray,
    num_labels: int,
    head: str,
    class_weights: list[float] | None = None,
) -> tuple[np.ndarray, np.ndarray] | None:
    """The head's (kernel [hidden, units], bias [units]) from a logistic regression.

    Args:
        vectors: [n, hidden] the head's input vectors.
        labels: [n] class ids, or (`head="multilabel"`) [n, num_labels] 0/1 rows.
        num_labels: classes (labels).
        head: `softmax`, `sigmoid` (binary, one logit) or `multilabel`.
        class_weights: per-class loss weights (multilabel: of each label's positives).

    Returns:
        The weights, or None when a class has no training text (nothing to fit).
    """
    labels = np.asarray(labels)
    if head == "multilabel":
        return _fit_labels(vectors, labels, class_weights)
    if len(np.unique(labels)) < num_labels:
        return None
    weights = dict(enumerate(class_weights)) if class_weights is not None else None
    fitted = _logistic(vectors, labels, weights)
    coef, intercept = fitted.coef_.T, fitted.intercept_  # [hidden, 1 or k], [1 or k]
    if head == "sigmoid":
        return coef, intercept
    if num_labels == 2:  # one margin z: softmax([-z/2, z/2]) is sigmoid(z)
        return np.concatenate([-coef, coef], axis=1) / 2, np.concatenate(
            [-intercept, intercept]
        ) / 2
    return coef, intercept


def _fit_labels(
    vectors: np.ndarray, labels: np.ndarray, class_weights: list[float] | None
) -> tuple[np.ndarray, np.ndarray]:
    """One binary logistic regression per label; a label that is always (or never) set
    gets a zero kernel and its base rate's log-odds (add-one smoothed) as bias."""
    n, num_labels = labels.shape
    kernel = np.zeros((vectors.shape[1], num_labels), np.float32)
    bias = np.zeros(num_labels, np.float32)
    for j in range(num_labels):
        y = labels[:, j]
        if 0 < y.sum() < n:
            weights = {0: 1.0, 1: class_weights[j]} if class_weights is not None else None
            fitted = _logistic(vectors, y, weights)
            kernel[:, j], bias[j] = fitted.coef_[0], fitted.intercept_[0]
        else:
            rate = (y.sum() + 1) / (n + 2)
            bias[j] = np.log(rate / (1 - rate))
    return kernel, bias


def init_head(trainer) -> str:
    """Start `trainer`'s head from a probe on its training texts; a sentence saying how."""
    cfg, model = trainer.cfg, trainer.model
    if cfg.train.head_init == "random":
        return "head: random start (--head-init random)"
    hidden = int(model.classifier.kernel.shape[0])
    examples = sample(trainer.splits.train, texts_for(hidden), cfg.seed)
    vectors, labels = trainer.text_vectors(examples)
    weights = None if trainer.class_weights is None else list(trainer.class_weights.numpy())
    fitted = fit_head(vectors, labels, len(examples.label_names), model.head, weights)
    if fitted is None:
        return "head: random start (a class has no training text, so no probe)"
    kernel, bias = fitted
    model.classifier.kernel.assign(kernel.astype(np.float32))
    model.classifier.bias.assign(bias.astype(np.float32))
    return (
        f"head: started from a logistic regression on the encoder's vectors of {len(examples)} "
        "training texts (LP-FT; --head-init random to skip)"
    )
