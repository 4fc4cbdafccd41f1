"""Fine-tuning: a custom `tf.GradientTape` loop under a `tf.distribute` strategy.

Read it top to bottom: `train()` resolves the config, reads the data, builds the
model under the strategy's scope, then runs `Trainer.fit()`, whose epoch loop
calls two `tf.function`-compiled steps. After every epoch it validates, keeps
the best weights, writes TensorBoard summaries and history, and checkpoints
model + optimizer so that `--resume` replays an interrupted epoch exactly.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf
from tqdm.auto import tqdm

from bertclf import data as data_lib
from bertclf import encoders, hardware, rundir
from bertclf import run as run_lib
from bertclf.config import RunConfig
from bertclf.errors import RunError
from bertclf.fileio import atomic_path, read_json, write_json
from bertclf.model import build_classifier
from bertclf.optimization import current_lr, make_optimizer, moments
from bertclf.pipeline import (
    EpochDataset,
    bucket_width,
    grouped_order,
    shuffled_order,
)
from bertclf.preprocessing import TextPreprocessor
from bertclf.report import write_run_report

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What `train()` returns: where the run is and how it went."""

    run_dir: Path
    history: list[dict[str, float]]
    best_val_accuracy: float
    test_metrics: dict[str, Any] | None
    replicas: int = 1
    traces: dict[str, int] | None = None  # tf.function traces per step (1 = no retracing)


# ------------------------------------------------------------------ set-up


def resolve_config(config: RunConfig) -> RunConfig:
    """Replace `auto` settings by what this machine gets, so config.json says what ran."""
    t = config.train
    resolved = dataclasses.replace(
        t,
        bucketing=hardware.resolve_bucketing(t.bucketing),
        jit=hardware.resolve_jit(t.jit, t.strategy),
        precision=hardware.resolve_precision(t.precision),
    )
    return dataclasses.replace(config, train=resolved)


def check_resume(config: RunConfig, run_dir: Path) -> None:
    """--resume must continue the same run: every (resolved) setting must match the saved one."""
    saved = rundir.read_meta(run_dir)["config"]
    now = config.to_dict()  # already resolved by train()
    diffs = [
        f"{section}.{key}: run has {saved[section][key]!r}, now {value!r}"
        for section in ("data", "model", "train")
        for key, value in now[section].items()
        if saved.get(section, {}).get(key) != value
    ]
    if saved.get("seed") != now["seed"]:
        diffs.append(f"seed: run has {saved.get('seed')}, now {now['seed']}")
    if diffs:
        raise RunError(
            f"{run_dir}: --resume with different settings ({diffs[0]}); repeat the "
            "original command, or use --overwrite to start over"
        )


# ------------------------------------------------------------------ the loop


class Trainer:
    """Owns the model, optimizer, compiled steps and run-directory outputs."""

    def __init__(
        self,
        config: RunConfig,
        splits: data_lib.Splits,
        strategy,
        model,
        preprocessor: TextPreprocessor,
        optimizer,
        run_dir: Path,
        progress: bool,
    ):
        self.cfg, self.splits, self.strategy = config, splits, strategy
        self.model, self.preprocessor, self.optimizer = model, preprocessor, optimizer
        self.run_dir, self.progress = run_dir, progress
        self.bucketing = config.train.bucketing == "on"
        jit = config.train.jit == "on"
        self.bucket = bucket_width(jit)
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.best = tf.Variable(-1.0, dtype=tf.float64, trainable=False, name="best_val_accuracy")
        self.checkpoint = tf.train.Checkpoint(
            model=model, optimizer=optimizer, epoch=self.epoch, best=self.best
        )
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, str(run_dir / rundir.CHECKPOINTS), max_to_keep=1
        )
        # Dropout's random state. Reset from (seed, epoch) at each epoch start, so a
        # replayed epoch draws the same masks as the interrupted one did.
        self.rng_states = [v for v in model.variables if v.path.endswith("seed_generator_state")]
        self._datasets: dict[int, EpochDataset] = {}
        # Tokenizes the training texts (once); their lengths group similar texts.
        self.train_lengths = self._epoch_dataset(splits.train).lengths
        # Every batch has the same spec ([None] batch, [None] width), so each step
        # is traced once, not per batch or per width (XLA compiles once per width).
        spec = self._distribute(self._dataset(self.splits.val, None)).element_spec
        self.train_step = tf.function(self._train_step, input_signature=[spec], jit_compile=jit)
        self.eval_step = tf.function(self._eval_step, input_signature=[spec], jit_compile=jit)
        self.writers = {
            part: tf.summary.create_file_writer(str(run_dir / rundir.LOGS / part))
            for part in ("train", "validation")
        }

    def _train_order(self, epoch: int):
        seed = self.cfg.seed + epoch
        if self.bucketing:
            return grouped_order(self.train_lengths, self.cfg.train.batch_size, seed)
        return shuffled_order(len(self.splits.train), seed)

    def _epoch_dataset(self, examples) -> EpochDataset:
        # One EpochDataset per split, built (and tokenized) once: each epoch only sets the order.
        key = id(examples)
        if key not in self._datasets:
            self._datasets[key] = EpochDataset(
                examples, self.preprocessor, self.cfg.train.batch_size, self.bucketing, self.bucket
            )
        return self._datasets[key]

    def _dataset(self, examples, order):
        return self._epoch_dataset(examples)(order)

    def _distribute(self, ds):
        return self.strategy.experimental_distribute_dataset(ds)

    # The per-replica bodies. features: dict of [b, w]; labels: [b] int32.
    def _replica_train(self, features, labels):
        with tf.GradientTape() as tape:
            logits = self.model(features, training=True)  # [b, L] (or [b, 1] sigmoid)
            per_example = self.model.per_example_loss(labels, logits)  # [b]
            # Mean over the *global* batch, whose size is summed across replicas (a short
            # last batch splits unevenly): the optimizer sums the replicas' gradients.
            global_count = tf.distribute.get_replica_context().all_reduce(
                tf.distribute.ReduceOp.SUM, tf.cast(tf.size(labels), tf.float32)
            )
            loss = tf.reduce_sum(per_example) / global_count
            scaled = self.optimizer.scale_loss(loss)  # identity unless fp16 loss scaling
        variables = self.model.trainable_variables
        grads = tape.gradient(scaled, variables)
        self.optimizer.apply_gradients(zip(grads, variables, strict=True))
        return self._sums(features, labels, logits, per_example)

    def _replica_eval(self, features, labels):
        logits = self.model(features, training=False)
        return self._sums(features, labels, logits, self.model.per_example_loss(labels, logits))

    def _sums(self, features, labels, logits, per_example):
        """[5]: loss sum, correct, examples, real tokens, padded tokens (summed over replicas)."""
        predicted = tf.argmax(self.model.probabilities(logits), axis=-1, output_type=tf.int32)
        correct = tf.reduce_sum(tf.cast(tf.equal(predicted, labels), tf.float32))
        count = tf.cast(tf.size(labels), tf.float32)
        real = tf.reduce_sum(tf.cast(features["padding_mask"], tf.float32))
        padded = tf.cast(tf.size(features["padding_mask"]), tf.float32)
        return tf.stack([tf.reduce_sum(per_example), correct, count, real, padded])

    def _train_step(self, batch):
        sums = self.strategy.run(self._replica_train, args=batch)
        return self.strategy.reduce(tf.distribute.ReduceOp.SUM, sums, axis=None)

    def _eval_step(self, batch):
        sums = self.strategy.run(self._replica_eval, args=batch)
        return self.strategy.reduce(tf.distribute.ReduceOp.SUM, sums, axis=None)

    def _reset_rng(self, epoch: int) -> None:
        for i, state in enumerate(self.rng_states):
            state.assign(tf.constant([self.cfg.seed * 1000 + i, epoch << 24], tf.int64))

    def run_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over the training split; returns its loss and accuracy."""
        self._reset_rng(epoch)
        ds = self._distribute(self._dataset(self.splits.train, self._train_order(epoch)))
        steps = math.ceil(len(self.splits.train) / self.cfg.train.batch_size)
        totals = tf.zeros([5])
        bar = tqdm(
            ds,
            total=steps,
            desc=f"epoch {epoch + 1}/{self.cfg.train.epochs}",
            disable=not self.progress,
            leave=False,
            unit="step",
        )
        for batch in bar:
            totals += self.train_step(batch)
            loss, correct, n = totals.numpy()[:3]
            bar.set_postfix(loss=f"{loss / n:.4f}", acc=f"{correct / n:.4f}")
        loss, correct, n, real, padded = totals.numpy()
        return {
            "loss": float(loss / n),
            "accuracy": float(correct / n),
            "real_tokens": int(real),
            "padded_tokens": int(padded),
        }

    def evaluate_split(self, examples) -> dict[str, float]:
        totals = tf.zeros([5])
        for batch in self._distribute(self._dataset(examples, None)):
            totals += self.eval_step(batch)
        loss, correct, n = totals.numpy()[:3]
        return {"loss": float(loss / n), "accuracy": float(correct / n)}

    def fit(self, history: list[dict[str, float]]) -> list[dict[str, float]]:
        """Epochs from the checkpointed one to the last; returns the full history."""
        for epoch in range(int(self.epoch.numpy()), self.cfg.train.epochs):
            start = time.perf_counter()
            train_m = self.run_epoch(epoch)
            seconds = time.perf_counter() - start
            val_m = self.evaluate_split(self.splits.val)
            row = {
                "epoch": epoch + 1,
                "train_loss": train_m["loss"],
                "train_accuracy": train_m["accuracy"],
                "val_loss": val_m["loss"],
                "val_accuracy": val_m["accuracy"],
                "learning_rate": current_lr(self.optimizer),
                "seconds": seconds,
                "examples_per_second": len(self.splits.train) / seconds,
                "real_tokens_per_second": train_m["real_tokens"] / seconds,
                "padded_tokens_per_second": train_m["padded_tokens"] / seconds,
            }
            self._end_epoch(row, history)
        return history

    def _end_epoch(self, row: dict[str, float], history: list[dict[str, float]]) -> None:
        improved = row["val_accuracy"] > float(self.best.numpy())
        if improved:  # replace best weights only on a strict improvement
            with atomic_path(self.run_dir / rundir.BEST_WEIGHTS, suffix=".weights.h5") as tmp:
                self.model.save_weights(str(tmp))
            self.best.assign(row["val_accuracy"])
        row["best"] = improved
        self._summaries(row)
        history.append(row)
        write_json(self.run_dir / rundir.HISTORY, history)
        self.epoch.assign(row["epoch"])
        self.manager.save(checkpoint_number=row["epoch"])  # the commit point for --resume
        logger.info(
            "epoch %d/%d: train loss %.4f acc %.4f | validation loss %.4f acc %.4f%s | %.1f ex/s",
            row["epoch"],
            self.cfg.train.epochs,
            row["train_loss"],
            row["train_accuracy"],
            row["val_loss"],
            row["val_accuracy"],
            " (best)" if improved else "",
            row["examples_per_second"],
        )

    def kept_run(self) -> run_lib.TrainedRun:
        """This model with the kept epoch's weights, as a run (no reload from disk)."""
        self.model.load_weights(str(self.run_dir / rundir.BEST_WEIGHTS))
        meta = rundir.read_meta(self.run_dir)
        return run_lib.TrainedRun(self.run_dir, meta, self.preprocessor, self.model)

    def _summaries(self, row: dict[str, float]) -> None:
        step = row["epoch"]
        for part, prefix in (("train", "train_"), ("validation", "val_")):
            with self.writers[part].as_default(step=step):
                tf.summary.scalar("loss", row[f"{prefix}loss"])
                tf.summary.scalar("accuracy", row[f"{prefix}accuracy"])
                tf.summary.scalar("learning_rate", row["learning_rate"])
        mode = self.cfg.train.tb_histograms
        if mode == "none":
            return
        variables = (
            self.model.head_variables() if mode == "head" else self.model.trainable_variables
        )
        with self.writers["train"].as_default(step=step):
            for var in variables:
                m, v = moments(self.optimizer, var)
                if m is not None:
                    # Tags without the (auto-numbered) model name: stable across runs.
                    name = var.path.removeprefix(f"{self.model.name}/")
                    tf.summary.histogram(f"adam_m/{name}", m.value)
                    tf.summary.histogram(f"adam_v/{name}", v.value)
        for writer in self.writers.values():
            writer.flush()


# ------------------------------------------------------------------ entry point


def build(config: RunConfig, splits: data_lib.Splits, strategy, spec: encoders.EncoderSpec):
    """Encoder, preprocessor, classifier and optimizer, created under the strategy."""
    steps_per_epoch = math.ceil(len(splits.train) / config.train.batch_size)
    with strategy.scope():
        backbone, tokenizer = encoders.load(spec)
        preprocessor, model = build_classifier(
            backbone, tokenizer, config.model, len(splits.label_names)
        )
        optimizer = make_optimizer(
            config.train,
            steps_per_epoch * config.train.epochs,
            loss_scaling=config.train.precision == "fp16",
        )
        optimizer.build(model.trainable_variables)
    return backbone, tokenizer, preprocessor, model, optimizer


def train(
    config: RunConfig, *, resume: bool = False, overwrite: bool = False, progress: bool = True
) -> TrainResult:
    """Fine-tune per `config`; returns the run directory, history and metrics.

    Args:
        config: the run's settings (`--out` is `config.out`).
        resume: continue an interrupted run in `config.out` from its last epoch.
        overwrite: delete an existing run in `config.out` first.
        progress: show a progress bar.

    Example:
    >>> from bertclf import DataConfig, RunConfig, TrainConfig
    >>> cfg = RunConfig(data=DataConfig("examples/demo_data"), out="runs/demo",
    ...                 train=TrainConfig(epochs=2))
    >>> result = train(cfg)  # doctest: +SKIP
    >>> result.best_val_accuracy  # doctest: +SKIP
    1.0
    """
    config = resolve_config(config)
    # Keras' dtype policy is global: set it for this run only, and give the caller's back.
    with hardware.precision_policy(config.train.precision):
        return _train(config, resume, overwrite, progress)


def _train(config: RunConfig, resume: bool, overwrite: bool, progress: bool) -> TrainResult:
    out = Path(config.out)
    rundir.check_run_dir(out, resume=resume, overwrite=overwrite)  # refuse before any work
    if resume:
        check_resume(config, out)
        check_checkpoint(out)
    spec = encoders.resolve(config.model.model)  # a bad --model fails before any output
    encoders.check_seq_len(config.model.model, config.model.seq_len)
    splits = data_lib.load_splits(config.data, config.seed)
    for line in data_lib.describe(splits):
        logger.info("%s", line)
    keras.utils.set_random_seed(config.seed)
    strategy = hardware.make_strategy(config.train.strategy)
    backbone, tokenizer, preprocessor, model, optimizer = build(config, splits, strategy, spec)
    run_dir = rundir.prepare_run_dir(out, resume=resume, overwrite=overwrite)
    if not resume:
        rundir.write_run_files(
            run_dir,
            config,
            splits.label_names,
            spec.to_dict(),
            backbone,
            tokenizer,
            samples=splits.val.texts,
        )
    trainer = Trainer(config, splits, strategy, model, preprocessor, optimizer, run_dir, progress)
    history = _restore(trainer, run_dir) if resume else []
    history = trainer.fit(history)
    # The kept weights, into the model in memory: the report scores the splits in hand.
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
        float(trainer.best.numpy()),
        test_metrics,
        replicas=strategy.num_replicas_in_sync,
        traces=traces,
    )


def check_checkpoint(run_dir: Path) -> None:
    """Read every tensor of the last checkpoint, so a damaged one fails before any work."""
    latest = tf.train.latest_checkpoint(str(run_dir / rundir.CHECKPOINTS))
    if latest is None:
        return
    try:
        reader = tf.train.load_checkpoint(latest)
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except Exception as e:  # noqa: BLE001 - truncated files raise OpError, IndexError, ...
        raise RunError(
            f"{latest}: the checkpoint cannot be restored ({type(e).__name__}); it is damaged: "
            "train again with --overwrite"
        ) from None


def _restore(trainer: Trainer, run_dir: Path) -> list[dict[str, float]]:
    """Load the last finished epoch; history rows after it (if any) are dropped."""
    latest = trainer.manager.latest_checkpoint
    if latest is None:
        logger.info("--resume: no finished epoch yet; starting from epoch 1")
        return []
    try:
        trainer.checkpoint.restore(latest).assert_existing_objects_matched()
    except (tf.errors.OpError, AssertionError, ValueError) as e:  # other settings
        raise RunError(
            f"{latest}: the checkpoint cannot be restored ({type(e).__name__}); it is damaged "
            "or from other settings: train again with --overwrite"
        ) from None
    done = int(trainer.epoch.numpy())
    history_file = run_dir / rundir.HISTORY
    history = read_json(history_file)[:done] if history_file.is_file() else []
    logger.info(
        "--resume: continuing after epoch %d (best validation accuracy %.4f)",
        done,
        float(trainer.best.numpy()),
    )
    return history
