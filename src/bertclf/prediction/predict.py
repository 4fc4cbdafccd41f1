"""`bertclf predict`: texts from the command line or a file in, one result per text out.

Texts are read lazily (`bertclf.data.tables.read_rows`: .csv/.tsv/.jsonl by extension,
else one text per line) and scored in batches, so a file of any size takes constant
memory; a column named `--id-field`, when the input has one, is copied to every result.
Results go to stdout (a table, or JSON lines with `--json`), or to `--output` (`.csv`,
else JSON lines), written to a temporary file and renamed into place when complete. A
run directory and an export are loaded behind the same `Predictor` interface
(`load_predictor`).
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import json
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

from bertclf import servable
from bertclf.config.predict import PredictConfig
from bertclf.data.tables import Row, batches, read_rows
from bertclf.errors import DataError, RunError
from bertclf.fileio import atomic_path
from bertclf.model import rundir
from bertclf.prediction.predictor import EXTRA_OUTPUTS, Predictor
from bertclf.tflog import stderr_is_terminal

# ------------------------------------------------------------------ results


def result_record(row: Row, prediction: dict[str, Any], id_field: str) -> dict[str, Any]:
    """One result as JSON: the id (if the input has one), the text, label, probabilities."""
    head = {id_field: row.id} if row.id is not None else {}
    return {**head, "text": row.text, **prediction}


class ResultWriter:
    """Results as JSON lines or CSV (by the file's extension) on an open text stream."""

    def __init__(self, stream, path: Path | None, labels: list[str], id_field: str):
        self.stream, self.labels, self.id_field = stream, labels, id_field
        self.csv = path is not None and path.suffix.lower() == ".csv"
        self._writer = None

    def write(self, row: Row, prediction: dict[str, Any]) -> None:
        record = result_record(row, prediction, self.id_field)
        if not self.csv:
            self.stream.write(json.dumps(record, ensure_ascii=False) + "\n")
            return
        multilabel = "labels" in prediction  # a label set: one cell, names joined by ","
        if self._writer is None:
            columns = ([self.id_field] if row.id is not None else []) + ["text"]
            columns += ["labels"] if multilabel else ["label", "probability"]
            columns += [f"p_{name}" for name in self.labels]
            columns += [k for k in EXTRA_OUTPUTS if k in prediction]  # a calibrated model's
            self._writer = csv.DictWriter(self.stream, columns, extrasaction="ignore")
            self._writer.writeheader()
        probs = {f"p_{k}": v for k, v in prediction["probabilities"].items()}
        if multilabel:
            record["labels"] = ",".join(prediction["labels"])
        self._writer.writerow({**record, **probs})


def check_output(path: Path, overwrite: bool) -> None:
    """--output must be a writable file path; an existing file needs --overwrite."""
    if path.is_dir():
        raise DataError(f"{path}: is a folder; --output takes a file (.csv or .jsonl)")
    if path.exists() and not overwrite:
        raise DataError(f"{path}: already exists; pass --overwrite to replace it")
    if not path.parent.is_dir() or not os.access(path.parent, os.W_OK):
        raise DataError(f"{path.parent}: no such writable folder for --output")


def model_kind(path: str | Path) -> str:
    """`run` (a directory with config.json) or `export` (BASE/NAME[/VERSION]); else RunError."""
    path = Path(path)
    if not path.exists():
        raise RunError(
            f"{path}: no such run or export; pass the --out folder of 'bertclf train' or "
            "BASE/NAME[/VERSION] of 'bertclf export'"
        )
    if (path / rundir.CONFIG).is_file() and not servable.is_version_dir(path):
        return "run"
    if servable.find_version_dir(path) is None:
        raise RunError(
            f"{path}: neither a bertclf run (no config.json) nor an exported model "
            "(no saved_model.pb, no model.onnx); pass a run directory or BASE/NAME[/VERSION]"
        )
    return "export"


def load_predictor(path: str | Path) -> Predictor:
    """A run directory -> `TrainedRun`; BASE/NAME[/VERSION] -> `ExportedModel`, or
    `OnnxModel` where that version holds an ONNX model (no TensorFlow imported).

    All give the same output for the same texts.
    """
    if model_kind(path) == "run":
        from bertclf.prediction.trained_run import load_run

        return load_run(path)
    if servable.is_onnx_version(servable.find_version_dir(Path(path))):
        from bertclf.prediction.onnx_model import OnnxModel

        return OnnxModel(path)
    from bertclf.prediction.exported_model import ExportedModel

    return ExportedModel(path)


def predict_rows(
    predictor: Predictor, rows: Iterable[Row], batch_size: int, explain: bool = False
) -> Iterator[tuple[Row, dict[str, Any]]]:
    """(row, prediction) pairs, scoring `batch_size` rows at a time (constant memory).

    With `explain`, each prediction also holds its explanation (`Predictor.explain`:
    `explanation`, the baseline score(s) and, for a text cut short, `not_read`).
    """
    for batch in batches(rows, batch_size):
        texts = [row.text for row in batch]
        predictions = predictor.predict(texts, batch_size)
        if explain:
            for prediction, why in zip(predictions, predictor.explain(texts), strict=True):
                why.pop("label", None), why.pop("score", None)  # predict's keys say them
                prediction.update(why)
        yield from zip(batch, predictions, strict=True)


def _rows(config: PredictConfig, on_bytes) -> Iterable[Row]:
    rows: Iterable[Row] = (Row(t) for t in config.texts)
    if config.input:
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

    predictor = load_predictor(config.model)
    size = Path(config.input).stat().st_size if config.input else 0
    # A progress bar, by bytes read, for inputs over 1 MiB (and only on a terminal).
    disable = not (size > 2**20 and stderr_is_terminal())
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
        for row, prediction in predict_rows(predictor, rows, config.batch_size, config.explain):
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
        line = f"{','.join(prediction['labels']) or '-'}\t{probs}\t{snippet}"
    else:
        line = f"{prediction['label']}\t{prediction['probability']:.4f}\t{probs}\t{snippet}"
    return line + format_explanation(prediction)


TOP_WORDS = 5  # words the table shows of an explanation


def format_explanation(prediction: dict[str, Any]) -> str:
    """The words that pushed hardest toward each explained label, as indented lines
    ("" without an explanation): `  why billing: invoice +0.412, charged +0.218`."""
    explanation = prediction.get("explanation")
    if explanation is None:
        return ""
    if isinstance(explanation, list):
        explanation = {prediction["label"]: explanation}
    lines = []
    for label, pairs in explanation.items():
        top = sorted(pairs, key=lambda p: -p[1])[:TOP_WORDS]
        words = ", ".join(f"{w} {x:+.3f}" for w, x in top if x > 0) or "(no word raised it)"
        lines.append(f"\n  why {label}: {words}")
    if "not_read" in prediction:
        cut = ", ".join(f"{a}-{b}" for a, b in prediction["not_read"])
        lines.append(f"\n  (words {cut} were cut and not read)")
    return "".join(lines)
