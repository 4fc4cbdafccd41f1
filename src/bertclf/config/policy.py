"""The training policy: how long to train, how to weigh classes, which epoch to keep, when to stop.

Each rule is here with its reason; `training.py` applies them and logs what they chose.

Budget. Fine-tuning a BERT needs a number of optimizer steps, not of epochs: with few
texts, 3 epochs are a few dozen steps, too few to move the encoder, and runs end
wherever their seed left them (Mosbach et al. 2021, "On the Stability of Fine-tuning
BERT": train for more iterations). Unless `--epochs` is given, a run gets at least
`MIN_EPOCHS` epochs and at least `MIN_STEPS` optimizer steps, and at most `MAX_EPOCHS`
epochs: 1,780 BBC articles in batches of 16 are 112 steps an epoch, so they keep their 3
epochs; 680 short sentences get 7; 200 texts get 20 (the cap: 260 steps).

Class weights. With `--class-weight auto`, a loss weighted by inverse class frequency
(scikit-learn's "balanced": n / (k * n_c)) is used when the largest training class is
at least `IMBALANCE_RATIO` times the smallest: below that, BBC's 1.3 for instance, the
weights would change little and the plain loss is kept. Multi-label: `balanced` weighs
each label's positives by its negatives/positives ratio (PyTorch's `pos_weight`
recipe); `auto` leaves the loss plain, because each label's decision threshold is
tuned on the validation split (`bertclf.evaluation.thresholds`), which is what counters a rare
label at decision time, while that ratio reaches the hundreds for rare labels
(GoEmotions' "grief": 77 of 43,410 texts, a weight of 563) and would dominate the loss.

Learning rate. The peak rate `LEARNING_RATE` is 1e-4, not BERT-base's usual 2e-5 to
5e-5 (Devlin et al. 2019): the default encoder is a compact BERT (6 layers, hidden 384),
and compact BERTs are fine-tuned at higher rates (Turc et al. 2019, "Well-Read Students
Learn Better", chose each task's rate for their 24 compact models from 3e-4, 1e-4, 5e-5
and 3e-5). Measured with the default encoder on three datasets (BENCHMARKS.md section
13): it was 3e-5 before. With a BERT-base-size `--model` (hidden 768 or more) and a rate
above `LARGE_ENCODER_LR`, the run warns and names Devlin et al.'s range.

The kept epoch. `--select macro_f1` (default) keeps the epoch with the best validation
macro-F1, a tie broken by the lower validation loss: accuracy on an imbalanced set
rewards predicting the majority class, and on a small validation set several epochs
tie, where the loss still tells a sharper model from a blunter one. `--patience N` stops
after N epochs without a better kept epoch (off by default: the kept weights are the
best seen whatever comes after).

Weight averaging. Validation, the kept weights and the export use an exponential moving
average of the weights, updated after every optimizer step (`--ema EMA_DECAY`), rather
than the weights the last mini-batches left: on a small set those jump from epoch to
epoch (civility-gh's validation macro-F1 moves by 0.03 between neighbouring epochs), and
an average over recent steps sits in a flatter region that generalizes better
(Izmailov et al. 2018, stochastic weight averaging; Lu et al. 2022, "Improving
Generalization of Pre-trained Language Models via Stochastic Weight Averaging", for
compact PLMs). The decay is tf.train.ExponentialMovingAverage's rule with its
`num_updates`, min(EMA_DECAY, (1 + t) / (10 + t)) after t steps: the average spans about
the last ninth of the steps so far, and at most about 1 / (1 - EMA_DECAY) = 100 steps
(0.99, Keras' default `ema_momentum`); neither number was fitted to a dataset. The raw
weights go on training and are what `--resume` continues from.

Contrastive stage. A single-label run of at most `CONTRASTIVE_MAX_TEXTS` training texts,
whose median text has at most `CONTRASTIVE_MAX_WORDS` words, first runs SetFit's
contrastive stage (`bertclf.training.contrastive`; Tunstall et al. 2022): `CONTRASTIVE_ITERATIONS`
(SetFit's default) same-class and other-class partners per text teach the encoder's
sentence vectors the classes before the loop fine-tunes it. It is made for few labelled
texts, where the loop alone sees each label a few times, and for a sentence encoder's
regime: the default encoder's card calls it a sentence and short-paragraph encoder.
Measured (BENCHMARKS.md section 8) with 202 training texts: ahead of the loop alone on
civility-gh and a six-emotion task (median 12-17 words), behind on BBC articles (median
340 words); the length rule was added after that BBC measurement, and the three datasets
lie far on either side of it. Its cost grows with the texts (two encodings for each of
2 * iterations pairs per text): at `CONTRASTIVE_MAX_TEXTS` short texts it adds about six
minutes on a 2-core CPU. With 402 training texts it still gained on both short-text sets
(+0.042, +0.026), but at civility-gh's 682 it scored no better than the loop alone (0.005
lower on the mean of three seeds) for 9x the time, so larger sets skip it.
Multi-label (no single "same class"), `--long chunk` and multi-device runs skip it.
`--contrastive N` sets it (0: off).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np

MIN_EPOCHS = 3
MIN_STEPS = 300
MAX_EPOCHS = 20
IMBALANCE_RATIO = 1.5
LEARNING_RATE = 1e-4
LARGE_ENCODER_LR = 5e-5  # the top of Devlin et al.'s grid for BERT-base and BERT-large
LARGE_ENCODER_HIDDEN = 768
LARGE_ENCODER_SUGGESTED_LR = 3e-5  # the middle of Devlin et al.'s grid
EMA_DECAY = 0.99
CONTRASTIVE_ITERATIONS = 20  # SetFit's default num_iterations
CONTRASTIVE_MAX_TEXTS = 500
CONTRASTIVE_MAX_WORDS = 100  # median words per text: about 130 word pieces


def budget(epochs: int | None, examples: int, batch_size: int) -> tuple[int, str]:
    """(epochs, a sentence saying why) for `examples` training texts."""
    steps = math.ceil(examples / batch_size)
    if epochs is not None:
        return epochs, f"--epochs {epochs}: {epochs * steps} optimizer steps ({steps} an epoch)"
    chosen = min(MAX_EPOCHS, max(MIN_EPOCHS, math.ceil(MIN_STEPS / steps)))
    return chosen, (
        f"{chosen} epochs = {chosen * steps} optimizer steps ({examples} texts, {steps} steps "
        f"an epoch; rule: at least {MIN_EPOCHS} epochs and {MIN_STEPS} steps, at most "
        f"{MAX_EPOCHS} epochs; --epochs overrides it)"
    )


def contrastive(choice: int | None, texts: list[str], unsupported: str | None) -> tuple[int, str]:
    """(pair draws per text for the contrastive stage, 0 = off; a sentence saying why).

    Args:
        choice: `--contrastive` (None: the rule).
        texts: the training texts.
        unsupported: the setting that rules the stage out ("--task multilabel"), or None.
    """
    if choice is not None:
        return choice, f"--contrastive {choice}" + ("" if choice else " (off)")
    if unsupported:
        return 0, f"off ({unsupported})"
    n = len(texts)
    words = float(np.median([len(t.split()) for t in texts])) if texts else 0.0
    if n > CONTRASTIVE_MAX_TEXTS:
        return 0, f"off ({n} training texts > {CONTRASTIVE_MAX_TEXTS}; --contrastive N sets it)"
    if words > CONTRASTIVE_MAX_WORDS:
        return 0, (
            f"off (median text {words:.0f} words > {CONTRASTIVE_MAX_WORDS}, longer than the "
            "sentences and short paragraphs it suits; --contrastive N sets it)"
        )
    return CONTRASTIVE_ITERATIONS, (
        f"{CONTRASTIVE_ITERATIONS} same-class and other-class partners per text ({n} training "
        f"texts <= {CONTRASTIVE_MAX_TEXTS}, median {words:.0f} words <= "
        f"{CONTRASTIVE_MAX_WORDS}; --contrastive 0 skips it)"
    )


def class_weights(
    choice: str, labels: list, num_labels: int, multilabel: bool = False
) -> tuple[list[float] | None, str]:
    """(per-class loss weights or None, a sentence saying why).

    Multilabel (`labels` are 0/1 rows): per-label weights of the positive term.
    """
    if multilabel:
        return _positive_weights(choice, np.asarray(labels).reshape(len(labels), num_labels))
    counts = Counter(labels)
    sizes = [counts.get(i, 0) for i in range(num_labels)]
    ratio = max(sizes) / max(1, min(sizes))
    if choice == "none":
        return None, "off (--class-weight none)"
    if choice == "auto" and ratio < IMBALANCE_RATIO:
        return None, f"off (largest/smallest class {ratio:.2f} < {IMBALANCE_RATIO})"
    n, k = len(labels), num_labels
    weights = [n / (k * max(1, c)) for c in sizes]
    shown = ", ".join(f"{w:.2f}" for w in weights)
    return weights, f"balanced [{shown}] (largest/smallest class {ratio:.2f})"


def _positive_weights(choice: str, labels: np.ndarray) -> tuple[list[float] | None, str]:
    if choice != "balanced":
        return None, (
            f"off (--class-weight {choice}; multi-label: per-label thresholds tuned on the "
            "validation split handle rare labels)"
        )
    positives = labels.sum(axis=0)
    negatives = len(labels) - positives
    weights = [float(n / p) if p else 1.0 for n, p in zip(negatives, positives, strict=True)]
    shown = ", ".join(f"{w:.1f}" for w in weights)
    return weights, f"balanced: each label's positives weighted negatives/positives [{shown}]"


def rate(lr: float) -> str:
    """A learning rate as papers write it: 1e-4, 3e-5 (not 0.0001, 3e-05).

    >>> rate(1e-4), rate(3e-5), rate(2.5e-5)
    ('1e-4', '3e-5', '2.5e-5')
    """
    mantissa, exponent = f"{lr:e}".split("e")
    return f"{float(mantissa):g}e{int(exponent)}"


def learning_rate_warning(lr: float, hidden_dim: int) -> str | None:
    """A warning when `lr` is high for an encoder of BERT-base size or larger, else None."""
    if hidden_dim < LARGE_ENCODER_HIDDEN or lr <= LARGE_ENCODER_LR:
        return None
    return (
        f"--lr {rate(lr)} is above the rates published for encoders of this size (hidden "
        f"{hidden_dim}: 2e-5 to {rate(LARGE_ENCODER_LR)}, Devlin et al. 2019); the default "
        f"{rate(LEARNING_RATE)} is for compact encoders such as the default one: pass --lr "
        f"{rate(LARGE_ENCODER_SUGGESTED_LR)} if the validation loss jumps or the run predicts "
        "one class"
    )


def selection_key(row: dict[str, float], select: str) -> tuple[float, ...]:
    """Bigger is better: the selection metric, then (a tie) the lower validation loss."""
    if select == "loss":
        return (-row["val_loss"],)
    return (row["val_accuracy" if select == "accuracy" else "val_macro_f1"], -row["val_loss"])


@dataclass
class Stopper:
    """Early stopping on the kept-epoch rule: stop after `patience` epochs without a new one."""

    patience: int | None
    since_kept: int = 0

    def update(self, kept: bool) -> bool:
        """Record an epoch; True when training should stop."""
        self.since_kept = 0 if kept else self.since_kept + 1
        return self.patience is not None and self.since_kept >= self.patience
