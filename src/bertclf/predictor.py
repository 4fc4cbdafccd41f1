"""One inference interface for a trained run and for an exported model.

`Predictor` holds what both share (batching, `predict_proba`, `predict`); a run
(`bertclf.run.TrainedRun`) and an export (`bertclf.exported.ExportedModel`) each
supply only `label_names` and `_scores`, their scoring of one batch. This module
imports neither TensorFlow nor keras-hub: inference on an export never loads the
training side.
"""

from __future__ import annotations

import contextlib
import itertools
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from bertclf import servable
from bertclf.command_config import PredictConfig
from bertclf.errors import RunError
from bertclf.inputs import Row, batches


class Predictor:
    """Label texts in batches. Subclasses set `label_names` and implement `_scores`.

    A multi-label model also sets `thresholds` ([num_labels]); its predictions are
    label sets.
    """

    label_names: list[str]
    thresholds: np.ndarray | None = None

    def _scores(self, texts: list[str]) -> np.ndarray:
        """One batch: [b] texts -> [b, num_labels] probabilities in label order."""
        raise NotImplementedError

    def predict_proba(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """[n] texts -> [n, num_labels] probabilities in label order."""
        out = [self._scores(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, len(self.label_names)), np.float32)

    def predict(self, texts: list[str], batch_size: int = 32) -> list[dict[str, Any]]:
        """Label, its probability and every label's probability, for each text.

        Multi-label: `labels`, the names whose probability reaches their threshold
        (possibly none), and every label's probability.
        """
        probs = self.predict_proba(texts, batch_size)
        return probabilities_to_predictions(probs, self.label_names, self.thresholds)


def probabilities_to_predictions(
    probs: np.ndarray, labels: list[str], thresholds: np.ndarray | None = None
) -> list[dict[str, Any]]:
    if thresholds is not None:
        from bertclf.thresholds import apply

        return [
            {
                "labels": [name for name, on in zip(labels, row, strict=True) if on],
                "probabilities": {name: float(v) for name, v in zip(labels, p, strict=True)},
            }
            for p, row in zip(probs, apply(probs, thresholds), strict=True)
        ]
    rows = []
    for p in probs:
        top = int(np.argmax(p))
        rows.append(
            {
                "label": labels[top],
                "probability": float(p[top]),
                "probabilities": {name: float(v) for name, v in zip(labels, p, strict=True)},
            }
        )
    return rows


def model_kind(path: str | Path) -> str:
    """`run` (a directory with config.json) or `export` (BASE/NAME[/VERSION]); else RunError."""
    path = Path(path)
    if (path / "config.json").is_file() and not servable.is_version_dir(path):
        return "run"
    if servable.find_version_dir(path) is None:
        raise RunError(
            f"{path}: neither a bertclf run (no config.json) nor an exported model "
            "(no saved_model.pb); pass a run directory or BASE/NAME[/VERSION]"
        )
    return "export"


def load_predictor(path: str | Path) -> Predictor:
    """A run directory -> `TrainedRun`; BASE/NAME[/VERSION] -> `ExportedModel`.

    Both give the same output for the same texts.
    """
    if model_kind(path) == "run":
        from bertclf.run import load_run

        return load_run(path)
    from bertclf.exported import ExportedModel

    return ExportedModel(path)


def predict_rows(
    predictor: Predictor, rows: Iterable[Row], batch_size: int
) -> Iterator[tuple[Row, dict[str, Any]]]:
    """(row, prediction) pairs, scoring `batch_size` rows at a time (constant memory)."""
    for batch in batches(rows, batch_size):
        predictions = predictor.predict([row.text for row in batch], batch_size)
        yield from zip(batch, predictions, strict=True)


def _rows(config: PredictConfig, on_bytes) -> Iterable[Row]:
    rows: Iterable[Row] = (Row(t) for t in config.texts)
    if config.input:
        from bertclf.inputs import read_rows

        file_rows = read_rows(Path(config.input), config.text_field, config.id_field, on_bytes)
        rows = itertools.chain(rows, file_rows)
    return rows


def predict_input(config: PredictConfig, out: TextIO | None = None) -> int:
    """`bertclf predict`: classify the command line's texts, then --input's, streaming.

    Results go to `config.output` (written to a temporary file, renamed when complete)
    or to `out` (default: stdout): JSON lines (`--json`, `--output x.jsonl`), CSV
    (`--output x.csv`) or a table. Returns the number of texts classified.
    """
    from tqdm.auto import tqdm

    from bertclf.fileio import atomic_path
    from bertclf.inputs import ResultWriter

    predictor = load_predictor(config.model)
    size = Path(config.input).stat().st_size if config.input else 0
    # A progress bar, by bytes read, for inputs over 1 MiB (and only on a terminal).
    disable = None if size > 2**20 else True
    count = 0
    with contextlib.ExitStack() as stack:
        bar = stack.enter_context(tqdm(total=size, unit="B", unit_scale=True, disable=disable))
        output = Path(config.output) if config.output else None
        if output is not None:
            tmp = stack.enter_context(atomic_path(output))
            out = stack.enter_context(open(tmp, "w", encoding="utf-8", newline=""))
        out = out or sys.stdout
        writer = ResultWriter(out, output, predictor.label_names, config.id_field)
        rows = _rows(config, bar.update)
        for row, prediction in predict_rows(predictor, rows, config.batch_size):
            if output is None and not config.json:
                out.write(format_row(row, prediction) + "\n")
            else:
                writer.write(row, prediction)
            count += 1
    return count


def format_row(row: Row, prediction: dict[str, Any]) -> str:
    """label, probability, every label's probability, the start of the text (tab-separated).

    Multi-label: the label set (comma-separated, `-` for none) instead of label and probability.
    """
    probs = "  ".join(f"{k}={v:.4f}" for k, v in prediction["probabilities"].items())
    snippet = " ".join(row.text.split())[:60]
    if "labels" in prediction:
        return f"{','.join(prediction['labels']) or '-'}\t{probs}\t{snippet}"
    return f"{prediction['label']}\t{prediction['probability']:.4f}\t{probs}\t{snippet}"
