"""Texts to classify, read lazily, and their predictions, written as they come.

`bertclf predict --input FILE` reads by extension: `.csv` and `.tsv` (a header row;
the text in `--text-field`), `.jsonl`/`.ndjson` (one object per line), anything else
one text per line (blank lines skipped). Rows are read and scored in batches, so a
file of any size takes constant memory; a column named `--id-field`, when the input
has one, is copied to every result. Results go to stdout, or to `--output` (`.csv`,
else JSON lines), written to a temporary file and renamed into place when complete.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bertclf.errors import DataError

# CSV quotes fields; TSV does not (a text may start with '"'), one record per line.
TABLES = {".csv": {"delimiter": ","}, ".tsv": {"delimiter": "\t", "quoting": csv.QUOTE_NONE}}
JSONL = (".jsonl", ".ndjson")


@dataclass(frozen=True)
class Row:
    """One text to classify and where it came from."""

    text: str
    id: Any = None


def input_kind(path: Path) -> str:
    suffix = path.suffix.lower()
    return "table" if suffix in TABLES else "jsonl" if suffix in JSONL else "lines"


class _Lines:
    """A text file's lines, counting the bytes read (for a progress bar)."""

    def __init__(self, f, on_bytes=None):
        self.f, self.on_bytes = f, on_bytes or (lambda n: None)

    def __iter__(self) -> Iterator[str]:
        for line in self.f:
            self.on_bytes(len(line.encode("utf-8", "surrogateescape")))
            yield line


def _open(path: Path):
    # utf-8-sig: Excel's byte-order mark is not part of the first column's name.
    return open(path, encoding="utf-8-sig", errors="replace", newline="")


def check_input(path: Path, text_field: str) -> None:
    """Fail at once (DataError) on a missing file or a missing text column."""
    if not path.is_file():
        raise DataError(
            f"{path}: no such file; --input takes .csv/.tsv/.jsonl, or one text per line"
        )
    for _ in read_rows(path, text_field, "", limit=1):
        break


def read_rows(
    path: Path, text_field: str, id_field: str, on_bytes=None, limit: int | None = None
) -> Iterator[Row]:
    """Rows of `path`, one at a time (see the module docstring for the formats)."""
    with _open(path) as f:
        for n, row in enumerate(parse_rows(path, _Lines(f, on_bytes), text_field, id_field)):
            if limit is not None and n >= limit:
                return
            yield row


def parse_rows(path: Path, lines: Iterable[str], text_field: str, id_field: str) -> Iterator[Row]:
    """Rows from an open file's lines, by `path`'s extension (also for `bertclf score`)."""
    kind = input_kind(path)
    if kind == "table":
        return _table_rows(path, lines, text_field, id_field)
    if kind == "jsonl":
        return _jsonl_rows(path, lines, text_field, id_field)
    return (Row(line.rstrip("\r\n")) for line in lines if line.strip())


def _table_rows(path: Path, lines: Iterable[str], text_field: str, id_field: str):
    reader = csv.DictReader(lines, **TABLES[path.suffix.lower()])
    header = reader.fieldnames or []
    if text_field not in header:
        raise DataError(f"{path}: no column {text_field!r} (columns: {header}); set --text-field")
    has_id = bool(id_field) and id_field in header
    for row in reader:
        yield Row(row[text_field] or "", row[id_field] if has_id else None)


def _jsonl_rows(path: Path, lines: Iterable[str], text_field: str, id_field: str):
    for no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{no}: not valid JSON ({e.msg}); one object per line") from None
        if not isinstance(obj, dict) or text_field not in obj:
            raise DataError(f"{path}:{no}: no {text_field!r} field; set --text-field")
        yield Row(str(obj[text_field] or ""), obj.get(id_field) if id_field else None)


def batches(rows: Iterable[Row], size: int) -> Iterator[list[Row]]:
    batch: list[Row] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


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
