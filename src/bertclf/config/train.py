"""`TrainConfig`: how the encoder is fine-tuned (budget, optimizer, selection, devices).

Part of a run's configuration (`bertclf.config.RunConfig`); the defaults that come
from the training policy are `bertclf.config.policy`'s. No TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass

from bertclf.config import policy
from bertclf.config.fields import as_float, check, option

OPTIMIZERS = ("adamw", "adam")
EMBEDDING_UPDATES = ("lazy", "dense")
STRATEGIES = ("default", "mirrored", "multiworker")
TB_HISTOGRAMS = ("head", "all", "none")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
TOGGLES = ("auto", "on", "off")
SELECTS = ("macro_f1", "accuracy", "loss")
CLASS_WEIGHTS = ("auto", "balanced", "none")
CALIBRATIONS = ("temperature", "none")


@dataclass(frozen=True)
class TrainConfig:
    """How the encoder is fine-tuned.

    Args:
        epochs: passes over the training split; None: the budget rule (`bertclf.config.policy`).
        select: validation metric that picks the kept epoch (`macro_f1`,
            `accuracy`, `loss`); ties go to the lower validation loss.
        class_weight: `balanced` (inverse class frequency), `none`, or `auto`
            (balanced past an imbalance ratio, see `bertclf.config.policy`).
        patience: stop after this many epochs without a better kept epoch (None: off).
        checkpoint_every: also checkpoint every N optimizer steps (0: only at each
            epoch's end); `--resume` continues from the last checkpoint, mid-epoch too.
        thresholds: multilabel decision thresholds: `tune` (per label, best F1 on the
            validation split; see `bertclf.evaluation.thresholds`) or one probability for all.
        calibrate: after training, fit a `temperature` on the validation split so that
            scores mean what they say (`none`: the raw probabilities); see
            `bertclf.training.calibration`.
        abstain_precision: store the lowest confidence at which the validation
            predictions reach this precision; below it, predictions say `abstain`
            (None: never abstain).
        batch_size: global batch size (split across replicas).
        lr: peak learning rate.
        optimizer: `adamw` (decoupled weight decay, biases and LayerNorm
            excluded) or `adam`.
        weight_decay: AdamW weight decay.
        embedding_update: `lazy` (Adam moves only the embedding rows a batch uses,
            as TF Addons' LazyAdam) or `dense` (every row, every step, as PyTorch).
        warmup: fraction of all steps with a linear warm-up; then linear decay to 0.
        layer_decay: layer-wise learning-rate decay: transformer layer i of L trains
            at lr * layer_decay**(L - i), the embeddings at lr * layer_decay**(L + 1),
            the head at lr (1: off). See `bertclf.training.optimization.layer_scales`.
        reinit_layers: draw the encoder's top N transformer layers afresh before
            fine-tuning (`bertclf.model.encoders.reinitialize_top_layers`; 0: all pretrained).
        contrastive: SetFit's contrastive stage before fine-tuning, with this many pair
            draws per training text (`bertclf.training.contrastive`; 0: off; None: the rule in
            `bertclf.config.policy`).
        ema: decay of an exponential moving average of the weights, updated every
            step; validation, the kept weights and the export use the average (0: off,
            the raw weights). See `bertclf.config.policy`.
        strategy: `default` (one device), `mirrored` (all local GPUs) or
            `multiworker` (the TF_CONFIG cluster, `bertclf.training.cluster`).
        tb_histograms: optimizer-moment histograms for the `head`, `all`
            trainable variables, or `none`.
        bucketing: pad each batch only to its longest text, rounded up to a
            multiple of 4 (32 under XLA) (`auto`/`on`), or always to `seq_len` (`off`).
        jit: XLA-compile the train and eval steps (`auto` = where measured faster).
        precision: `fp32`, `bf16`, `fp16` (with loss scaling), or `auto` (bf16 where
            the hardware has native bf16, else fp32).
    """

    epochs: int | None = option(
        None,
        f"passes over the training split (default: at least {policy.MIN_EPOCHS} epochs and "
        f"{policy.MIN_STEPS} optimizer steps, at most {policy.MAX_EPOCHS}; see README)",
        type=int,
    )
    batch_size: int = option(16, "global batch size (split across replicas)")
    lr: float = option(
        policy.LEARNING_RATE,
        "peak learning rate (the default suits compact encoders such as the default "
        f"one; BERT-base size: {policy.rate(policy.LARGE_ENCODER_SUGGESTED_LR)}; see README)",
    )
    optimizer: str = option(
        "adamw", "adamw: decoupled weight decay; adam: none", choices=OPTIMIZERS
    )
    weight_decay: float = option(0.01, "AdamW weight decay (not on biases and LayerNorm)")
    embedding_update: str = option(
        "lazy",
        "lazy: Adam moves only the embedding rows a batch uses; dense: all rows",
        choices=EMBEDDING_UPDATES,
    )
    warmup: float = option(0.1, "fraction of all steps with a linear warm-up, then linear decay")
    layer_decay: float = option(
        1.0,
        "layer-wise learning-rate decay D: layer i of L trains at lr*D^(L-i), the "
        "embeddings at lr*D^(L+1), the head at lr (1: off)",
    )
    reinit_layers: int = option(
        0,
        "draw the encoder's top N transformer layers afresh before fine-tuning "
        "(0: keep every pretrained layer; see README)",
    )
    contrastive: int | None = option(
        None,
        "SetFit's contrastive stage before fine-tuning: N same-class and N other-class "
        f"partners per training text (0: off; default: {policy.CONTRASTIVE_ITERATIONS} "
        f"for at most {policy.CONTRASTIVE_MAX_TEXTS} single-label training texts of median "
        f"length <= {policy.CONTRASTIVE_MAX_WORDS} words; see README)",
        type=int,
    )
    ema: float = option(
        policy.EMA_DECAY,
        "validate, keep and export a moving average of the weights with this decay per "
        "step (0: the raw weights; see README)",
    )
    strategy: str = option(
        "default",
        "default: one device; mirrored: all local GPUs; multiworker: the TF_CONFIG cluster",
        choices=STRATEGIES,
    )
    tb_histograms: str = option(
        "head",
        "TensorBoard histograms of Adam's moments for these variables",
        choices=TB_HISTOGRAMS,
    )
    bucketing: str = option(
        "auto",
        "pad batches only to their longest text (multiples of 4; 32 under XLA)",
        choices=TOGGLES,
    )
    select: str = option(
        "macro_f1",
        "validation metric that picks the kept epoch; ties go to the lower validation loss",
        choices=SELECTS,
    )
    class_weight: str = option(
        "auto",
        "loss weights by inverse class frequency (auto: when the largest class is "
        f"{policy.IMBALANCE_RATIO}x the smallest or more)",
        choices=CLASS_WEIGHTS,
    )
    patience: int | None = option(
        None, "stop after N epochs without a better kept epoch (default: off)", type=int
    )
    checkpoint_every: int = option(
        0, "also checkpoint every N optimizer steps, for --resume mid-epoch (0: epoch ends only)"
    )
    thresholds: str = option(
        "tune",
        "multilabel decision thresholds: tune (per label, for the best F1 on the validation "
        "split) or one probability in (0, 1) for every label",
    )
    calibrate: str = option(
        "temperature",
        "after training, fit a temperature on the validation split so that a score of 0.9 "
        "is right about 90%% of the time (none: raw probabilities; see README, 'What a "
        "score means')",
        choices=CALIBRATIONS,
    )
    abstain_precision: float | None = option(
        None,
        "abstain (say so beside each prediction) below the lowest confidence at which the "
        "validation predictions reach this precision, in (0, 1] (default: never abstain)",
        type=float,
        metavar="P",
    )
    jit: str = option("auto", "XLA-compile the steps (auto: on GPUs)", choices=TOGGLES)
    precision: str = option(
        "auto",
        "mixed precision (auto: bf16 where the CPU or GPU has native bf16, else fp32)",
        choices=PRECISIONS,
    )

    def __post_init__(self) -> None:
        if self.epochs is not None:
            check(self.epochs >= 1, "--epochs", self.epochs, "use 1 or more")
        check(self.select in SELECTS, "--select", self.select, f"choose one of {SELECTS}")
        check(
            self.class_weight in CLASS_WEIGHTS,
            "--class-weight",
            self.class_weight,
            f"choose one of {CLASS_WEIGHTS}",
        )
        object.__setattr__(self, "thresholds", str(self.thresholds))
        check(
            self.thresholds == "tune" or 0.0 < as_float(self.thresholds) < 1.0,
            "--thresholds",
            self.thresholds,
            "use 'tune' or a probability in (0, 1) such as 0.5",
        )
        check(
            self.calibrate in CALIBRATIONS,
            "--calibrate",
            self.calibrate,
            f"choose one of {CALIBRATIONS}",
        )
        if self.abstain_precision is not None:
            check(
                0.0 < self.abstain_precision <= 1.0,
                "--abstain-precision",
                self.abstain_precision,
                "use a precision in (0, 1] such as 0.95",
            )
        if self.patience is not None:
            check(self.patience >= 1, "--patience", self.patience, "use 1 or more (or omit it)")
        check(
            self.checkpoint_every >= 0, "--checkpoint-every", self.checkpoint_every, "use 0 or more"
        )
        if self.contrastive is not None:
            check(self.contrastive >= 0, "--contrastive", self.contrastive, "use 0 (off) or more")
        check(0.0 <= self.ema < 1.0, "--ema", self.ema, "use 0 (off) or a decay in (0, 1)")
        self._check_optimization()

    def _check_optimization(self) -> None:
        check(self.batch_size >= 1, "--batch-size", self.batch_size, "use 1 or more")
        check(
            0.0 < self.lr < 1.0,
            "--lr",
            self.lr,
            f"use a small positive rate such as {policy.rate(policy.LEARNING_RATE)}",
        )
        check(self.optimizer in OPTIMIZERS, "--optimizer", self.optimizer, f"one of {OPTIMIZERS}")
        check(0.0 <= self.weight_decay < 1.0, "--weight-decay", self.weight_decay, "use [0, 1)")
        check(
            self.embedding_update in EMBEDDING_UPDATES,
            "--embedding-update",
            self.embedding_update,
            f"one of {EMBEDDING_UPDATES}",
        )
        check(0.0 <= self.warmup < 1.0, "--warmup", self.warmup, "use a fraction in [0, 1)")
        check(
            0.0 < self.layer_decay <= 1.0,
            "--layer-decay",
            self.layer_decay,
            "use a factor in (0, 1] such as 0.9 (1: off)",
        )
        check(self.reinit_layers >= 0, "--reinit-layers", self.reinit_layers, "use 0 or more")
        check(self.strategy in STRATEGIES, "--strategy", self.strategy, f"one of {STRATEGIES}")
        check(
            self.tb_histograms in TB_HISTOGRAMS,
            "--tb-histograms",
            self.tb_histograms,
            f"one of {TB_HISTOGRAMS}",
        )
        check(self.bucketing in TOGGLES, "--bucketing", self.bucketing, f"one of {TOGGLES}")
        check(self.jit in TOGGLES, "--jit", self.jit, f"one of {TOGGLES}")
        check(self.precision in PRECISIONS, "--precision", self.precision, f"one of {PRECISIONS}")
