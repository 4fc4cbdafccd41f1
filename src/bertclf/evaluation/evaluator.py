"""`bertclf evaluate RUN DATA`: read DATA as the run read its data, and score the run."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bertclf.data.datasets import Examples, read_labelled
from bertclf.data.labels import LabelFormat
from bertclf.errors import DataError
from bertclf.evaluation.metrics import compute_metrics

if TYPE_CHECKING:
    from bertclf.prediction.trained_run import TrainedRun


def evaluate_examples(run: TrainedRun, examples: Examples) -> dict[str, Any]:
    """Metrics of `run`'s best weights on `examples` (labels in the run's order)."""
    if examples.multilabel != run.multilabel:
        kind = "multi-label" if run.multilabel else "single-label"
        raise DataError(
            f"{run.path} is a {kind} run, but the data was read as "
            f"{'multi-label' if examples.multilabel else 'single-label'}; score it on "
            f"{kind} data"
        )
    probs = run.predict_proba(examples.texts)
    return compute_metrics(np.asarray(examples.labels), probs, run.label_names, run.thresholds)


def evaluate(
    run_dir: str | Path,
    data: str | Path,
    text_field: str | None = None,
    label_field: str | None = None,
) -> dict[str, Any]:
    """`bertclf evaluate RUN DATA`: read DATA as the run read its data, score the run.

    DATA is read in the run's form (`run_label_format`): its text and label fields
    (unless `text_field` or `label_field` name others) and, for a multi-label run, the
    same label lists, separator, 0/1 columns or names file as in training.

    Example:
    >>> m = evaluate("runs/demo", "examples/demo_data")  # doctest: +SKIP
    >>> sorted(m)[:3]
    ['accuracy', 'confusion_matrix', 'examples']
    """
    from bertclf.prediction.trained_run import load_run  # TensorFlow: only when a run is scored

    fmt = run_label_format(run_dir, label_field)
    run = load_run(run_dir)
    text_field = text_field or run.config.data.text_field
    examples = read_labelled(data, text_field, fmt, label_names=run.label_names)
    return evaluate_examples(run, examples)


def run_label_format(run_dir: str | Path, label_field: str | None = None) -> LabelFormat:
    """How a run's labelled data is read (its config.json), `label_field` overriding."""
    from bertclf.config.run import RunConfig
    from bertclf.model.rundir import read_meta

    config = RunConfig.from_dict(read_meta(Path(run_dir))["config"])
    return LabelFormat.from_config(config.data, label_field)
