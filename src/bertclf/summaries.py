"""TensorBoard: one event file per split under RUN/logs/, written at each epoch's end.

`train/` holds the training loss, accuracy, learning rate and (`--tb-histograms`)
histograms of Adam's moments; `validation/` the validation loss, accuracy, macro-F1, the
kept epoch so far and the linear baseline's macro-F1 on the same split.
"""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf

from bertclf.optimization import moments


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
