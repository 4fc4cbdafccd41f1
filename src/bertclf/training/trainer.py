"""The training loop: a custom `tf.GradientTape` loop under a `tf.distribute` strategy.

Read it top to bottom: `Trainer.fit()` runs the epochs; each calls two
`tf.function`-compiled steps (traced once). After every epoch it validates (loss,
accuracy, macro-F1 from a confusion matrix), keeps the weights when the selection key
improves (`bertclf.config.policy`), writes TensorBoard summaries and history.json, and
checkpoints model + optimizer (and, with `--checkpoint-every N`, every N steps) so that
`--resume` continues exactly where the last checkpoint left off: the same batches, the
same dropout masks. `bertclf.training.train()` sets it up.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from pathlib import Path

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from bertclf.config import policy
from bertclf.config.run import RunConfig
from bertclf.data import datasets as data_lib
from bertclf.errors import RunError
from bertclf.evaluation import thresholds as thresholds_lib
from bertclf.evaluation.metrics import macro_f1_from_confusion, multilabel_metrics
from bertclf.fileio import atomic_path, ensure_room, file_sha256, read_json, write_json
from bertclf.model import rundir
from bertclf.model.preprocessing import TextPreprocessor
from bertclf.prediction import trained_run as run_lib
from bertclf.tflog import stderr_is_terminal
from bertclf.training.optimization import WeightAverage, current_lr, moments
from bertclf.training.pipeline import EpochDataset, grouped_order, shuffled_order

logger = logging.getLogger(__name__)


def steps_bar(total: int, progress: bool, initial: int = 0):
    """One bar over every optimizer step of a run (the contrastive stage's included), so
    its ETA is the whole run's, as Hugging Face's Trainer and setfit show; drawn only
    where the user's stderr is a terminal (`bertclf.tflog.stderr_is_terminal`)."""
    return tqdm(
        total=total,
        initial=initial,
        disable=not (progress and stderr_is_terminal()),
        unit="step",
        dynamic_ncols=True,
    )


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
        class_weights: list[float] | None = None,
        baseline_macro_f1: float | None = None,
        train_data: EpochDataset | None = None,
    ):
        self.cfg, self.splits, self.strategy = config, splits, strategy
        self.class_weights = None if class_weights is None else tf.constant(class_weights)
        self.baseline_macro_f1 = baseline_macro_f1
        self.model, self.preprocessor, self.optimizer = model, preprocessor, optimizer
        self.run_dir, self.progress = run_dir, progress
        # The run's progress bar: set by `train()` when the contrastive stage shares it,
        # else made by `fit()`.
        self.bar = None
        self.bucketing = config.train.bucketing == "on"
        self.multilabel = config.data.multilabel
        self.val_thresholds = None  # multilabel: decided at each validation
        jit = config.train.jit == "on"
        self.steps_per_epoch = math.ceil(len(splits.train) / config.train.batch_size)
        self._track_state(model, optimizer, strategy, run_dir)
        # The splits' datasets by id(examples); `train_data`: the training split's, when the
        # caller has already built it (the contrastive stage reads its packed texts).
        self._datasets: dict[int, EpochDataset] = (
            {id(splits.train): train_data} if train_data is not None else {}
        )
        # Tokenizes the training texts (once); their lengths group similar texts.
        self.train_lengths = self._epoch_dataset(splits.train).lengths
        # Every batch has the same spec ([None] batch, [None] width), so each step
        # is traced once, not per batch or per width (XLA compiles once per width).
        spec = self._distribute(self._dataset(self.splits.val, None)).element_spec
        self.train_step = tf.function(self._train_step, input_signature=[spec], jit_compile=jit)
        # What runs one step: the step itself, or (multiworker) the preemption handler
        # around it, which checkpoints every worker at the same step on a SIGTERM.
        self.run_step = self.train_step
        self.preemption = None  # that handler, when there is one
        self.eval_step = tf.function(self._eval_step, input_signature=[spec], jit_compile=jit)
        self.summaries = EpochSummaries(run_dir / rundir.LOGS, config.train.tb_histograms)

    def _track_state(self, model, optimizer, strategy, run_dir: Path) -> None:
        """The loop's own state, the moving average and the checkpoint that holds them."""
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        # The kept epoch's selection key (policy.selection_key; bigger is better) and number.
        self.best = tf.Variable([-math.inf] * 2, dtype=tf.float64, trainable=False, name="best")
        self.kept = tf.Variable(0, dtype=tf.int64, trainable=False, name="kept_epoch")
        # Mid-epoch state: steps done in the current epoch and their summed metrics [5].
        self.step_in_epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.epoch_sums = tf.Variable(tf.zeros([5]), trainable=False, name="epoch_sums")
        # Dropout's random state. Reset from (seed, epoch) at each epoch start, so a
        # replayed epoch draws the same masks as the interrupted one did; checkpointed
        # (Keras does not track it) for a resume mid-epoch.
        self.rng_states = [v for v in model.variables if v.path.endswith("seed_generator_state")]
        # --ema: a moving average of every trainable variable, updated after each step.
        self.average = (
            WeightAverage(model, optimizer, strategy, self.cfg.train.ema)
            if self.cfg.train.ema
            else None
        )
        extra = {"averages": self.average.variables} if self.average else {}
        self.checkpoint = tf.train.Checkpoint(
            **extra,
            rng=self.rng_states,
            model=model,
            optimizer=optimizer,
            epoch=self.epoch,
            best=self.best,
            kept=self.kept,
            step_in_epoch=self.step_in_epoch,
            epoch_sums=self.epoch_sums,
        )
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, str(run_dir / rundir.CHECKPOINTS), max_to_keep=1
        )

    def _train_order(self, epoch: int):
        seed = self.cfg.seed + epoch
        if self.bucketing:
            return grouped_order(self.train_lengths, self.cfg.train.batch_size, seed)
        return shuffled_order(len(self.splits.train), seed)

    def _epoch_dataset(self, examples) -> EpochDataset:
        # One EpochDataset per split, built (and tokenized) once: each epoch only sets the order.
        key = id(examples)
        if key not in self._datasets:
            self._datasets[key] = EpochDataset.for_run(examples, self.preprocessor, self.cfg.train)
        return self._datasets[key]

    def _dataset(self, examples, order):
        return self._epoch_dataset(examples)(order)

    def _distribute(self, ds):
        return self.strategy.experimental_distribute_dataset(ds)

    # The per-replica bodies. features: dict of [b, w]; labels: [b] int32.
    def _replica_train(self, features, labels):
        with tf.GradientTape() as tape:
            logits = self.model(features, training=True)  # [b, L] (or [b, 1] sigmoid)
            # [b]; with --class-weight each example's loss times its class' weight (the
            # objective, and the train loss reported; validation loss stays unweighted).
            per_example = self.model.per_example_loss(labels, logits, self.class_weights)
            # Mean over the *global* batch, whose size is summed across replicas (a short
            # last batch splits unevenly): the optimizer sums the replicas' gradients.
            global_count = tf.distribute.get_replica_context().all_reduce(
                tf.distribute.ReduceOp.SUM, tf.cast(tf.shape(labels)[0], tf.float32)
            )
            loss = tf.reduce_sum(per_example) / global_count
            scaled = self.optimizer.scale_loss(loss)  # identity unless fp16 loss scaling
        variables = self.model.trainable_variables
        grads = tape.gradient(scaled, variables)
        self.optimizer.apply_gradients(zip(grads, variables, strict=True))
        return self._sums(features, labels, logits, per_example)

    def _replica_eval(self, features, labels):
        """Sums [5] (unweighted loss) and the confusion matrix [L, L] (rows: true).

        Multi-label: the probabilities [b, L] instead, since the thresholds (and with
        them every F1) are decided on the whole validation split.
        """
        logits = self.model(features, training=False)
        sums = self._sums(features, labels, logits, self.model.per_example_loss(labels, logits))
        if self.multilabel:
            return sums, self.model.probabilities(logits)
        predicted = tf.argmax(self.model.probabilities(logits), axis=-1, output_type=tf.int32)
        num_labels = len(self.splits.label_names)
        confusion = tf.math.confusion_matrix(labels, predicted, num_labels, dtype=tf.float32)
        return sums, confusion

    def _sums(self, features, labels, logits, per_example):
        """[5]: loss sum, correct, examples, real tokens, padded tokens (summed over replicas).

        Multi-label "correct": the whole label set right at 0.5 (subset accuracy; the
        tuned thresholds come after the epoch).
        """
        probs = self.model.probabilities(logits)
        if self.multilabel:
            right = tf.equal(tf.cast(probs >= 0.5, tf.int32), labels)  # [b, L]
            correct = tf.reduce_sum(tf.cast(tf.reduce_all(right, axis=-1), tf.float32))
        else:
            predicted = tf.argmax(probs, axis=-1, output_type=tf.int32)
            correct = tf.reduce_sum(tf.cast(tf.equal(predicted, labels), tf.float32))
        count = tf.cast(tf.shape(labels)[0], tf.float32)
        real = tf.reduce_sum(tf.cast(features["padding_mask"], tf.float32))
        padded = tf.cast(tf.size(features["padding_mask"]), tf.float32)
        return tf.stack([tf.reduce_sum(per_example), correct, count, real, padded])

    def _train_step(self, batch):
        sums = self.strategy.run(self._replica_train, args=batch)
        if self.average:  # in cross-replica context: one update, mirrored to every replica
            self.average.update()
        return self.strategy.reduce(tf.distribute.ReduceOp.SUM, sums, axis=None)

    def _eval_step(self, batch):
        sums, extra = self.strategy.run(self._replica_eval, args=batch)
        sums = self.strategy.reduce(tf.distribute.ReduceOp.SUM, sums, axis=None)
        if self.multilabel:  # the replicas' probability rows, in batch order
            return sums, self.strategy.gather(extra, axis=0)
        return sums, self.strategy.reduce(tf.distribute.ReduceOp.SUM, extra, axis=None)

    def _reset_rng(self, epoch: int) -> None:
        for i, state in enumerate(self.rng_states):
            state.assign(tf.constant([self.cfg.seed * 1000 + i, epoch << 24], tf.int64))

    def run_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over the training split (its rest, when resumed mid-epoch)."""
        done = int(self.step_in_epoch.numpy())  # > 0: a mid-epoch checkpoint was restored
        if done == 0:
            self._reset_rng(epoch)  # else the checkpoint holds the state after `done` steps
            self.epoch_sums.assign(tf.zeros([5]))
        # The epoch's batches in their seeded order; a resumed epoch skips those done.
        ds = self._dataset(self.splits.train, self._train_order(epoch)).skip(done)
        totals, before = self.epoch_sums.read_value(), self.epoch_sums.numpy()
        every = self.cfg.train.checkpoint_every
        bar = self.bar or steps_bar(self.steps_per_epoch, False)
        bar.set_description(f"epoch {epoch + 1}/{self.cfg.train.epochs}")
        for batch in self._distribute(ds):
            totals += self.run_step(batch)
            self.epoch_sums.assign(totals)
            step = int(self.step_in_epoch.assign_add(1).numpy())
            # Not at the epoch's last step: the epoch-end checkpoint follows validation.
            due = every and (epoch * self.steps_per_epoch + step) % every == 0
            if due and step < self.steps_per_epoch:
                self.save()
            loss, correct, n = totals.numpy()[:3]
            bar.update(1)
            bar.set_postfix(loss=f"{loss / n:.4f}", acc=f"{correct / n:.4f}")
        loss, correct, n, real, padded = totals.numpy()
        return {
            "loss": float(loss / n),
            "accuracy": float(correct / n),
            "examples": int(n - before[2]),  # trained by this process (all, unless resumed)
            "real_tokens": int(real - before[3]),
            "padded_tokens": int(padded - before[4]),
        }

    def save(self) -> None:
        """Checkpoint now, numbered by optimizer steps: epoch * steps_per_epoch + step.

        The state at a number never changes, so a number already saved is not written
        again (a preemption right after an epoch-end checkpoint).
        """
        number = int(self.epoch.numpy()) * self.steps_per_epoch + int(self.step_in_epoch.numpy())
        latest = self.manager.latest_checkpoint
        if latest is not None and latest.endswith(f"-{number}"):
            return
        self.manager.save(checkpoint_number=number)

    def evaluate_split(self, examples) -> dict[str, float]:
        if self.multilabel:
            return self._evaluate_multilabel(examples)
        num_labels = len(self.splits.label_names)
        totals, confusion = tf.zeros([5]), tf.zeros([num_labels, num_labels])
        for batch in self._distribute(self._dataset(examples, None)):
            sums, matrix = self.eval_step(batch)
            totals, confusion = totals + sums, confusion + matrix
        loss, correct, n = totals.numpy()[:3]
        return {
            "loss": float(loss / n),
            "accuracy": float(correct / n),
            "macro_f1": macro_f1_from_confusion(confusion.numpy()),
        }

    def _evaluate_multilabel(self, examples) -> dict[str, float]:
        """Loss; subset accuracy and macro-F1 at thresholds decided on these probabilities."""
        totals, parts = tf.zeros([5]), []
        for batch in self._distribute(self._dataset(examples, None)):  # in example order
            sums, probs = self.eval_step(batch)
            totals += sums
            parts.append(probs.numpy())
        probs, labels = np.concatenate(parts), np.asarray(examples.labels)
        self.val_thresholds = thresholds_lib.decide(self.cfg.train.thresholds, labels, probs)
        m = multilabel_metrics(labels, probs, self.splits.label_names, self.val_thresholds)
        loss, _, n = totals.numpy()[:3]
        return {"loss": float(loss / n), "accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}

    def fit(self, history: list[dict[str, float]]) -> list[dict[str, float]]:
        """Epochs from the checkpointed one to the last (or an early stop); the full history."""
        stopper = policy.Stopper(self.cfg.train.patience)
        for row in history:  # a resumed run: count the epochs since the kept one
            stopper.update(bool(row.get("kept")))
        if self.bar is None:  # one bar over the run's steps (a resumed run: from its own)
            done = int(self.epoch.numpy()) * self.steps_per_epoch + int(self.step_in_epoch.numpy())
            self.bar = steps_bar(self.cfg.train.epochs * self.steps_per_epoch, self.progress, done)
        try:
            return self._fit(history, stopper)
        finally:
            self.bar.close()

    def _fit(self, history: list[dict[str, float]], stopper) -> list[dict[str, float]]:
        for epoch in range(int(self.epoch.numpy()), self.cfg.train.epochs):
            start = time.perf_counter()
            train_m = self.run_epoch(epoch)
            seconds = time.perf_counter() - start
            with self.average.swapped_in() if self.average else contextlib.nullcontext():
                row = self._validate(epoch, train_m, seconds)
                self._keep(row)
            self._end_epoch(row, history)
            if stopper.update(row["kept"]):
                logger.info(
                    "early stopping: %d epochs without a better validation %s (--patience %d)",
                    stopper.since_kept,
                    self.cfg.train.select,
                    self.cfg.train.patience,
                )
                break
        return history

    def _validate(self, epoch: int, train_m: dict, seconds: float) -> dict[str, float]:
        """The epoch's history row: training figures and the validation split's metrics."""
        val_m = self.evaluate_split(self.splits.val)
        return {
            "epoch": epoch + 1,
            "train_loss": train_m["loss"],
            "train_accuracy": train_m["accuracy"],
            "val_loss": val_m["loss"],
            "val_accuracy": val_m["accuracy"],
            "val_macro_f1": val_m["macro_f1"],
            "baseline_val_macro_f1": self.baseline_macro_f1,
            "learning_rate": current_lr(self.optimizer),
            "seconds": seconds,
            "examples_per_second": train_m["examples"] / seconds,
            "real_tokens_per_second": train_m["real_tokens"] / seconds,
            "padded_tokens_per_second": train_m["padded_tokens"] / seconds,
        }

    def _write_thresholds(self, epoch: int, weights_sha256: str) -> None:
        """The kept epoch's thresholds, naming the weights they were tuned for (checked
        on loading: `rundir.check_trained`)."""
        write_json(
            self.run_dir / rundir.THRESHOLDS,
            {
                "labels": self.splits.label_names,
                "thresholds": [float(t) for t in self.val_thresholds],
                "rule": self.cfg.train.thresholds,
                "epoch": epoch,
                "weights_sha256": weights_sha256,
            },
        )

    def _keep(self, row: dict[str, float]) -> None:
        """Save the model's weights as the kept ones when the selection key improves."""
        key = policy.selection_key(row, self.cfg.train.select)
        key = (*key, 0.0)[:2]  # the variable holds two numbers
        kept = bool(key > tuple(float(v) for v in self.best.numpy()))
        if kept:  # the kept weights change only when the selection key is strictly better
            with atomic_path(self.run_dir / rundir.BEST_WEIGHTS, suffix=".weights.h5") as tmp:
                ensure_room(tmp, sum(v.numpy().nbytes for v in self.model.weights) + 2**20)
                self.model.save_weights(str(tmp))
                if self.multilabel:  # published first, naming the weights they go with
                    self._write_thresholds(row["epoch"], file_sha256(tmp))
            self.best.assign(key)
            self.kept.assign(row["epoch"])
        row["kept"] = kept

    def _end_epoch(self, row: dict[str, float], history: list[dict[str, float]]) -> None:
        self.summaries.write(row, int(self.kept.numpy()), self.model, self.optimizer)
        history.append(row)
        write_json(self.run_dir / rundir.HISTORY, history)
        self.epoch.assign(row["epoch"])
        self.step_in_epoch.assign(0)
        self.save()  # the commit point for --resume
        logger.info(
            "epoch %d/%d: train loss %.4f acc %.4f | validation loss %.4f acc %.4f "
            "macro-F1 %.4f%s | %.1f ex/s",
            row["epoch"],
            self.cfg.train.epochs,
            row["train_loss"],
            row["train_accuracy"],
            row["val_loss"],
            row["val_accuracy"],
            row["val_macro_f1"],
            " (kept)" if row["kept"] else "",
            row["examples_per_second"],
        )

    def kept_run(self) -> run_lib.TrainedRun:
        """This model with the kept epoch's weights, as a run (no reload from disk)."""
        self.model.load_weights(str(self.run_dir / rundir.BEST_WEIGHTS))
        meta = rundir.read_meta(self.run_dir)
        return run_lib.TrainedRun(self.run_dir, meta, self.preprocessor, self.model)


class EpochSummaries:
    """The run's TensorBoard writers.

    Args:
        logs: the run's logs folder (`RUN/logs`).
        histograms: `head`, `all` or `none`: whose Adam moments get histograms.
    """

    def __init__(self, logs: Path, histograms: str):
        self.histograms = histograms
        self.writers = {
            part: tf.summary.create_file_writer(str(logs / part))
            for part in ("train", "validation")
        }

    def write(self, row: dict, kept_epoch: int, model, optimizer) -> None:
        """One epoch's row of history.json, at step = its epoch number."""
        step = row["epoch"]
        for part, prefix in (("train", "train_"), ("validation", "val_")):
            with self.writers[part].as_default(step=step):
                tf.summary.scalar("loss", row[f"{prefix}loss"])
                tf.summary.scalar("accuracy", row[f"{prefix}accuracy"])
                tf.summary.scalar("learning_rate", row["learning_rate"])
        with self.writers["validation"].as_default(step=step):
            tf.summary.scalar("macro_f1", row["val_macro_f1"])
            tf.summary.scalar("kept_epoch", kept_epoch)  # the kept epoch so far
            if row["baseline_val_macro_f1"] is not None:
                tf.summary.scalar("baseline_macro_f1", row["baseline_val_macro_f1"])
        if self.histograms != "none":
            self._moments(step, model, optimizer)
        for writer in self.writers.values():
            writer.flush()

    def _moments(self, step: int, model, optimizer) -> None:
        variables = (
            model.head_variables() if self.histograms == "head" else model.trainable_variables
        )
        with self.writers["train"].as_default(step=step):
            for var in variables:
                m, v = moments(optimizer, var)
                if m is not None:
                    # Tags without the (auto-numbered) model name: stable across runs.
                    name = var.path.removeprefix(f"{model.name}/")
                    tf.summary.histogram(f"adam_m/{name}", m.value)
                    tf.summary.histogram(f"adam_v/{name}", v.value)


def latest_checkpoint(run_dir: Path) -> str | None:
    return tf.train.latest_checkpoint(str(run_dir / rundir.CHECKPOINTS))


def check_checkpoint(run_dir: Path) -> None:
    """Read every tensor of the last checkpoint, so a damaged one fails before any work."""
    latest = latest_checkpoint(run_dir)
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


def restore(trainer: Trainer, run_dir: Path) -> list[dict[str, float]]:
    """Load the last checkpoint of `run_dir`; history rows after its epoch are dropped."""
    latest = latest_checkpoint(run_dir)
    if latest is None:
        logger.info("--resume: no checkpoint yet; starting from epoch 1")
        return []
    try:
        trainer.checkpoint.restore(latest).assert_existing_objects_matched()
    except (tf.errors.OpError, AssertionError, ValueError) as e:  # other settings
        raise RunError(
            f"{latest}: the checkpoint cannot be restored ({type(e).__name__}); it is damaged "
            "or from other settings: train again with --overwrite"
        ) from None
    done, step = int(trainer.epoch.numpy()), int(trainer.step_in_epoch.numpy())
    history_file = run_dir / rundir.HISTORY
    history = read_json(history_file)[:done] if history_file.is_file() else []
    where = f"epoch {done + 1} at step {step + 1}" if step else f"after epoch {done}"
    logger.info(
        "--resume: continuing %s of %d (kept so far: epoch %d)",
        where,
        trainer.steps_per_epoch if step else trainer.cfg.train.epochs,
        int(trainer.kept.numpy()),
    )
    return history
