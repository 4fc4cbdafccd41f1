"""Fine-tuning, set up and finished: `train()` around the loop in `bertclf.training.trainer`.

Read it top to bottom: `train()` resolves the config (the machine's `auto` settings,
then the data's: budget, class weights, split, see `bertclf.config.policy`), reads and splits
the data, fits the linear baseline on the same split, builds the model under the
strategy's scope, runs `Trainer.fit()`, compares the kept epoch with the baseline, and
writes the report with the kept weights.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from bertclf import tflog
from bertclf.audit.duplicates import QuickChecks, quick_checks
from bertclf.config import policy
from bertclf.config.run import RunConfig
from bertclf.data import datasets as data_lib
from bertclf.errors import ConfigError, RunError
from bertclf.evaluation.baseline import NAME as BASELINE_NAME
from bertclf.evaluation.baseline import fit_baseline
from bertclf.evaluation.report import write_run_report
from bertclf.fileio import write_json
from bertclf.model import encoders, rundir
from bertclf.model.classifier import build_classifier
from bertclf.training import cluster, hardware
from bertclf.training.calibration import calibrate
from bertclf.training.contrastive import contrastive_stage, stage_steps
from bertclf.training.optimization import inner, make_optimizer
from bertclf.training.pipeline import EpochDataset
from bertclf.training.trainer import (
    Trainer,
    check_checkpoint,
    latest_checkpoint,
    restore,
    steps_bar,
)

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What `train()` returns: where the run is and how it went."""

    run_dir: Path
    history: list[dict[str, float]]
    best_val_accuracy: float  # of the kept epoch
    test_metrics: dict[str, Any] | None
    replicas: int = 1
    traces: dict[str, int] | None = None  # tf.function traces per step (1 = no retracing)
    kept_epoch: int = 0
    baseline: dict[str, Any] | None = None  # the linear baseline's metrics on the same split


# ------------------------------------------------------------------ set-up


def resolve_config(config: RunConfig) -> RunConfig:
    """Replace `auto` settings by what this machine gets, so config.json says what ran."""
    t = config.train
    task = cluster.read_tf_config()
    if t.strategy == "default" and task is not None and task.workers > 1:
        logger.info(
            "TF_CONFIG names %d workers: training with --strategy multiworker", task.workers
        )
        t = dataclasses.replace(t, strategy="multiworker")
    if t.strategy == "multiworker" and task is None:
        raise ConfigError(cluster.NEEDS_TF_CONFIG)
    resolved = dataclasses.replace(
        t,
        bucketing=hardware.resolve_bucketing(t.bucketing),
        jit=hardware.resolve_jit(t.jit, t.strategy),
        precision=hardware.resolve_precision(t.precision),
    )
    return dataclasses.replace(config, train=resolved)


def resolve_for_data(config: RunConfig, splits: data_lib.Splits) -> tuple[RunConfig, list, list]:
    """The data-dependent settings (`bertclf.config.policy`): epochs, class weights, the
    contrastive stage, the split.

    Returns the resolved config (what config.json records), the class weights (or None)
    and the sentences that say what was chosen and why (logged when training starts).
    """
    t = config.train
    epochs, why_epochs = policy.budget(t.epochs, len(splits.train), t.batch_size)
    pairs, why_pairs = policy.contrastive(
        t.contrastive, splits.train.texts, config.contrastive_unsupported()
    )
    weights, why_weights = policy.class_weights(
        t.class_weight, splits.train.labels, len(splits.label_names), splits.train.multilabel
    )
    resolved = dataclasses.replace(
        config,
        # The split method that ran (auto -> keras or stratified); a --val file: unchanged.
        data=dataclasses.replace(
            config.data, split=config.data.split if config.data.val else splits.split
        ),
        train=dataclasses.replace(
            t,
            epochs=epochs,
            class_weight="balanced" if weights else "none",
            contrastive=pairs,
        ),
    )
    notes = [
        f"training budget: {why_epochs}",
        f"class weights: {why_weights}",
        f"contrastive stage: {why_pairs}",
        f"kept epoch: best validation {t.select}, ties to the lower validation loss"
        + (f"; early stopping after {t.patience} epochs without one" if t.patience else ""),
    ]
    return resolved, weights, notes


# ------------------------------------------------------------------ entry point


def build(config: RunConfig, splits: data_lib.Splits, strategy, spec: encoders.EncoderSpec):
    """Encoder, preprocessor, classifier and optimizer, created under the strategy."""
    steps_per_epoch = math.ceil(len(splits.train) / config.train.batch_size)
    with strategy.scope():
        backbone, tokenizer = encoders.load(spec)
        if count := config.train.reinit_layers:
            encoders.reinitialize_top_layers(backbone, count, config.seed)
            logger.info(
                "--reinit-layers %d: the top %d of the encoder's %d transformer layers start "
                "from a fresh draw, not from pre-training",
                count,
                count,
                len(backbone.transformer_layers),
            )
        preprocessor, model = build_classifier(
            backbone,
            tokenizer,
            config.model,
            len(splits.label_names),
            multilabel=config.data.multilabel,
        )
        optimizer = make_optimizer(
            config.train,
            steps_per_epoch * config.train.epochs,
            loss_scaling=config.train.precision == "fp16",
        )
        optimizer.build(model.trainable_variables)
        decay = config.train.layer_decay
        if decay != 1.0 and not inner(optimizer).set_layer_decay(model.trainable_variables, decay):
            logger.warning(
                "--layer-decay %s changes nothing: no variable of %s is named as keras-hub "
                "names a BERT's layers (transformer_layer_N/, *embedding/); every variable "
                "trains at --lr",
                decay,
                spec.name,
            )
    return backbone, tokenizer, preprocessor, model, optimizer


def train(
    config: RunConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    verbose: bool = True,
    report: bool = True,
) -> TrainResult:
    """Fine-tune per `config`; returns the run directory, history and metrics.

    Args:
        config: the run's settings (`--out` is `config.out`).
        resume: continue an interrupted run in `config.out` from its last epoch.
        overwrite: delete an existing run in `config.out` first.
        progress: show a progress bar (on a terminal only).
        verbose: log the run's choices, each epoch's metrics, the baseline and the kept
            epoch on stderr, as the CLI does (unless you configured logging: then your
            configuration decides; `False`: warnings only).
        report: write report.html (and explanations.jsonl) at the end; the audit's
            fine-tuned folds (`cross_fitting`), scratch runs, skip it.

    Example:
    >>> from bertclf import DataConfig, RunConfig, TrainConfig
    >>> cfg = RunConfig(data=DataConfig("examples/demo_data"), out="runs/demo",
    ...                 train=TrainConfig(epochs=2))
    >>> result = train(cfg)  # doctest: +SKIP
    >>> result.best_val_accuracy  # doctest: +SKIP
    1.0
    """
    with tflog.quiet(), tflog.shown(verbose):
        config = resolve_config(config)
        # Keras' dtype policy is global: set it for this run only, and give the caller's back.
        with hardware.precision_policy(config.train.precision):
            return _train(config, resume, overwrite, progress, report)


def _train(
    config: RunConfig, resume: bool, overwrite: bool, progress: bool, report: bool = True
) -> TrainResult:
    task = cluster.read_tf_config() if config.train.strategy == "multiworker" else None
    if task is not None and task.workers > 1:
        cluster.rendezvous(task)  # every worker is up, or one line after PEER_TIMEOUT
    # Only the chief writes the run; another worker's copy goes to a scratch folder, and
    # --resume reads the chief's run (on storage every worker reads) on every worker.
    where, scratch = cluster.worker_out(config.out, task)
    source = Path(config.out if resume else where)
    try:
        return _train_in(
            config, Path(where), source, resume, overwrite, progress, not scratch, report
        )
    except (tf.errors.DeadlineExceededError, tf.errors.UnavailableError) as e:
        raise RunError(
            f"a peer did not answer ({type(e).__name__}, timeout {cluster.PEER_TIMEOUT:.0f} s, "
            "BERTCLF_PEER_TIMEOUT): check that every TF_CONFIG worker runs and is reachable"
        ) from None
    finally:
        if scratch:
            cluster.remove_scratch(where)


def _train_in(
    config: RunConfig,
    out: Path,
    source: Path,
    resume: bool,
    overwrite: bool,
    progress: bool,
    chief: bool = True,
    report: bool = True,
) -> TrainResult:
    """Train into `out`; with `resume`, continue the run in `source` (`out` but on a
    non-chief worker, whose `out` is a fresh scratch copy: `chief` False)."""
    spec, splits, config, class_weights, checks = _read_and_check(config, source, resume, overwrite)
    baseline = _fit_baseline_logged(splits, config)
    keras.utils.set_random_seed(config.seed)
    strategy = hardware.make_strategy(config.train.strategy)
    backbone, tokenizer, preprocessor, model, optimizer = build(config, splits, strategy, spec)
    if warning := policy.learning_rate_warning(config.train.lr, backbone.hidden_dim):
        logger.warning("%s", warning)
    in_place = resume and out == source
    run_dir = rundir.prepare_run_dir(out, resume=in_place, overwrite=overwrite)
    if not in_place:
        rundir.write_run_files(
            run_dir,
            config,
            splits.label_names,
            spec.to_dict(),
            backbone,
            tokenizer,
            splits.val.texts,
            splits.excluded,
        )
    write_json(run_dir / rundir.BASELINE, baseline.to_dict())
    write_json(run_dir / rundir.DATA_CHECKS, checks.to_dict())
    # The training split, tokenized and packed once for the stage and the loop alike.
    train_data = EpochDataset.for_run(splits.train, preprocessor, config.train)
    bar = None
    if config.train.contrastive and not (resume and latest_checkpoint(source)):
        labels = splits.train.labels
        # One bar for the stage and every epoch after it: the ETA is the run's.
        loop = config.train.epochs * math.ceil(len(splits.train) / config.train.batch_size)
        bar = steps_bar(stage_steps(labels, config.train.contrastive) + loop, progress)
        contrastive_stage(config, train_data, labels, model, preprocessor, run_dir, bar)
    trainer = Trainer(
        config,
        splits,
        strategy,
        model,
        preprocessor,
        optimizer,
        run_dir,
        progress,
        class_weights,
        baseline.validation["macro_f1"],
        train_data,
    )
    trainer.bar = bar
    if config.train.strategy == "multiworker":
        _watch_preemption(trainer, strategy, source)
    history = restore(trainer, source) if resume else []
    history = trainer.fit(history)
    replicas = strategy.num_replicas_in_sync
    return _finish(trainer, history, splits, baseline, run_dir, replicas, chief, report)


def _read_and_check(config: RunConfig, source: Path, resume: bool, overwrite: bool):
    """Refuse bad arguments before any work, read and split the data, resolve the policy.

    Returns (encoder spec, splits, the config resolved for the data, class weights, the
    data checks).
    """
    rundir.check_run_dir(source, resume=resume, overwrite=overwrite)
    if resume:
        check_checkpoint(source)
    spec = encoders.resolve(config.model.model)  # a bad --model fails before any output
    encoders.check_fits(config.model.model, config.model.seq_len, config.train.reinit_layers)
    splits = data_lib.load_splits(config.data, config.seed)
    config, class_weights, notes = resolve_for_data(config, splits)
    if resume:
        check_resume(config, source)
    for line in [*data_lib.describe(splits), *notes]:
        logger.info("%s", line)
    checks = data_checks(splits)
    log = logger.warning if checks.found() else logger.info
    log("%s%s", checks.line(), " (bertclf audit DATA lists them)" if checks.found() else "")
    return spec, splits, config, class_weights, checks


def data_checks(splits) -> QuickChecks:
    """The checks every run makes of its data (`bertclf.audit.duplicates.quick_checks`)."""
    train = splits.train
    others = {"validation": splits.val.texts}
    if splits.test is not None:
        others["test"] = splits.test.texts
    return quick_checks(train.texts, train.named_labels(), others)


def _fit_baseline_logged(splits, config: RunConfig):
    baseline = fit_baseline(splits, config.train.thresholds)
    logger.info(
        "baseline, %s: validation macro-F1 %.4f, accuracy %.4f",
        BASELINE_NAME,
        baseline.validation["macro_f1"],
        baseline.validation["accuracy"],
    )
    return baseline


def _finish(
    trainer: Trainer,
    history,
    splits,
    baseline,
    run_dir: Path,
    replicas: int,
    chief: bool,
    write_report: bool = True,
):
    """Compare the kept epoch with the baseline, write the report, gather the result.

    Only the chief reports: a non-chief worker's run folder is scratch, removed when it
    ends, and after a resume it holds no kept weights when no later epoch beat the one
    the chief kept (its kept weights are the chief's, in the run): nothing to load there.
    """
    kept = history[int(trainer.kept.numpy()) - 1]
    _compare_with_baseline(kept, baseline.validation["macro_f1"])
    test_metrics = None
    if chief:
        # The kept weights, into the model in memory: calibration fits on them, then the
        # report scores the splits in hand with the calibrated run.
        calibrate(trainer.kept_run(), splits, trainer.cfg)
        if write_report:
            report = write_run_report(run_dir, run=trainer.kept_run(), splits=splits)
            logger.info("report: %s", report.path)
            test_metrics = report.metrics.get("test")
    traces = {
        "train_step": trainer.train_step.experimental_get_tracing_count(),
        "eval_step": trainer.eval_step.experimental_get_tracing_count(),
    }
    return TrainResult(
        run_dir,
        history,
        kept["val_accuracy"],
        test_metrics,
        replicas=replicas,
        traces=traces,
        kept_epoch=kept["epoch"],
        baseline=baseline.to_dict(),
    )


def _watch_preemption(trainer: Trainer, strategy, source: Path) -> None:
    """A SIGTERM to any worker: all checkpoint at the same step, then exit 42 (restart me).

    TensorFlow's PreemptionCheckpointHandler agrees on the step across the cluster and
    calls `Trainer.save` on every worker (the chief's checkpoint is the one a restart
    reads). Its own restore at creation reads `source`, as `resuming.restore` does next, so every
    worker counts steps from the same checkpoint.
    """
    read = tf.train.CheckpointManager(
        trainer.checkpoint, str(source / rundir.CHECKPOINTS), max_to_keep=1
    )
    handler = tf.distribute.experimental.PreemptionCheckpointHandler(
        strategy.cluster_resolver,
        read,
        termination_config=tf.distribute.experimental.TerminationConfig(
            save_fn=trainer.save, exit_fn=cluster.exit_preempted
        ),
    )
    trainer.run_step = lambda batch: handler.run(trainer.train_step, batch)
    # One function object: addFilter skips it when a later train() adds it again.
    logging.getLogger("tensorflow").addFilter(_not_handler_deprecation)
    trainer.preemption = handler  # alive as long as the trainer: its threads watch SIGTERM


def _not_handler_deprecation(record: logging.LogRecord) -> bool:
    """TensorFlow's handler calls its own deprecated property when it saves (TF 2.21):
    three lines of warning about TensorFlow's code, not the user's, at preemption."""
    return "PreemptionCheckpointHandler.total_run_calls" not in record.getMessage()


def _compare_with_baseline(kept: dict[str, float], baseline_f1: float) -> None:
    logger.info(
        "kept epoch %d: validation macro-F1 %.4f, accuracy %.4f, loss %.4f (baseline macro-F1 "
        "%.4f)",
        kept["epoch"],
        kept["val_macro_f1"],
        kept["val_accuracy"],
        kept["val_loss"],
        baseline_f1,
    )
    if kept["val_macro_f1"] <= baseline_f1:
        logger.warning(
            "the fine-tuned model does not beat the linear baseline on validation macro-F1 "
            "(%.4f <= %.4f): see README, 'Small datasets', for what to try",
            kept["val_macro_f1"],
            baseline_f1,
        )


# Settings that do not change what is trained (the last two act after it): --resume
# may give other values.
RESUMABLE_CHANGES = ("checkpoint_every", "calibrate", "abstain_precision")


def check_resume(config: RunConfig, run_dir: Path) -> None:
    """--resume must continue the same run: every (resolved) setting must match the saved one."""
    saved = rundir.read_meta(run_dir)["config"]
    now = json.loads(json.dumps(config.to_dict()))  # as config.json holds it: lists, not tuples
    diffs = [
        f"{section}.{key}: run has {saved[section][key]!r}, now {value!r}"
        for section in ("data", "model", "train")
        for key, value in now[section].items()
        if saved.get(section, {}).get(key) != value and key not in RESUMABLE_CHANGES
    ]
    if saved.get("seed") != now["seed"]:
        diffs.append(f"seed: run has {saved.get('seed')}, now {now['seed']}")
    if diffs:
        raise RunError(
            f"{run_dir}: --resume with different settings ({diffs[0]}); repeat the "
            "original command, or use --overwrite to start over"
        )
