"""Out-of-fold probabilities by k-fold fine-tuning: `bertclf audit --engine finetune`.

Confident learning needs, for every training text, the probabilities of a model that
never saw it (`bertclf.audit.label_issues`). The audit's cheap engines fit a linear model
on fixed features; this one fine-tunes the encoder itself, k times: fold f's model is
what `bertclf train DATA --exclude FOLD_F` makes (the run's defaults on `--model`, its
own validation split taken from DATA less the fold, calibrated), and it scores fold f's
texts. The folds are the cheap engines' folds (`label_issues.split_folds`), so engines
differ only in the model.

Why through `train()` and `--exclude` rather than a loop of its own: each fold model is
then exactly the model a user would train on the cleaned data, with every choice the
defaults make for the data's size (epochs, contrastive stage, class weights) and no
second training path to keep equal to the first. The cost is k trainings: about k
times `bertclf train` on DATA (measured in BENCHMARKS.md, "Finding wrong labels").
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bertclf.audit import label_issues as li
from bertclf.config.data import DataConfig
from bertclf.config.model import ModelConfig
from bertclf.config.run import RunConfig
from bertclf.data.datasets import Examples
from bertclf.model import encoders
from bertclf.prediction.trained_run import load_run
from bertclf.training.fine_tuning import train

logger = logging.getLogger(__name__)

ENGINE = "finetune"


def fine_tuned_out_of_fold(
    data: DataConfig,
    examples: Examples,
    sources: Sequence[str],
    model: str = "minilm-l6",
    seed: int = 0,
    progress: bool = False,
) -> li.OutOfFold:
    """Probabilities [n, labels] for every text of `examples` from a fine-tuned model
    that did not see it.

    Args:
        data: how DATA is read (`data.train`: the folder or table `examples` came from);
            its `val`, `test` and `exclude` are not used: each fold model splits its own
            validation texts from DATA less the fold.
        examples: the training texts and labels, as `read_labelled` read them.
        sources: each text's source as `--exclude` reads it (`user_sources`).
        model: the encoder to fine-tune.
        seed: the folds (the cheap engines' folds) and each fold run's seed.
        progress: show each fold's training progress bar.

    Example:
    >>> data = DataConfig("examples/demo_data")
    >>> oof = fine_tuned_out_of_fold(data, train, sources)  # doctest: +SKIP
    >>> oof.probs.shape  # doctest: +SKIP
    (96, 3)
    """
    labels = np.asarray(examples.labels)
    names = examples.label_names
    folds = li.fold_count(labels, examples.multilabel, names)
    probs = np.zeros((len(examples), len(names)), dtype=np.float64)
    with tempfile.TemporaryDirectory(prefix="bertclf-audit-folds-") as work, _fold_lines_only():
        for f, (_, held) in enumerate(li.split_folds(labels, examples.multilabel, seed, folds)):
            start = time.perf_counter()
            exclude = Path(work) / f"fold-{f + 1}.txt"
            exclude.write_text("".join(f"{sources[i]}\n" for i in held), encoding="utf-8")
            fold_data = dataclasses.replace(data, val=None, test=None, exclude=str(exclude))
            config = RunConfig(
                data=fold_data,
                out=str(Path(work) / f"fold-{f + 1}"),
                model=_model_config(model),
                seed=seed,
            )
            result = train(config, progress=progress, verbose=False, report=False)
            run = load_run(result.run_dir)
            held_texts = [examples.texts[i] for i in held]
            scores = run.predict_proba(held_texts)  # [held, fold run's labels], calibrated
            shutil.rmtree(result.run_dir)  # a scratch run: one fold's weights on disk at a time
            # By name: a fold run orders its labels by its own data (the same names when
            # every label is in it, which stratified folds see to).
            column = {name: k for k, name in enumerate(run.label_names)}
            for j, name in enumerate(names):
                if name in column:
                    probs[held, j] = scores[:, column[name]]
            logger.info(
                "fold %d/%d: fine-tuned on %d texts, scored %d (%.0f s)",
                f + 1,
                folds,
                len(examples) - len(held),
                len(held),
                time.perf_counter() - start,
            )
    return li.OutOfFold(probs, ENGINE, folds, None)


# What the fold trainings log: each fold's epochs and its comparison with the baseline
# would bury the audit's own lines (k of everything), and TensorFlow warns that a
# function is traced again when each fold brings a new model, which is expected here.
_QUIETED = ("bertclf", "tensorflow")


@contextlib.contextmanager
def _fold_lines_only():
    """Errors only from the fold trainings, this module's fold lines as they were."""
    saved = {name: logging.getLogger(name).level for name in (*_QUIETED, __name__)}
    here = logger.getEffectiveLevel()
    try:
        for name in _QUIETED:
            logging.getLogger(name).setLevel(logging.ERROR)
        logger.setLevel(here)
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def _model_config(model: str) -> ModelConfig:
    """The defaults, with --seq-len cut to what a local encoder reads when that is less
    (as the `encoder` engine does)."""
    spec = encoders.resolve(model)
    limit = encoders.max_sequence_length(Path(spec.source)) if spec.kind != "hub" else None
    default = ModelConfig(model=model)
    if limit is None or limit >= default.seq_len:
        return default
    return dataclasses.replace(default, seq_len=limit)
