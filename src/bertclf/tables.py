"""Labelled tables (CSV, TSV, JSONL): rows, columns, decoding, and what reading ran into.

CSV is read with Python's csv module (quoted fields), TSV as TSV is defined (a tab
between fields, no quoting: a quote is part of the text), JSONL one object per line.
Bytes that are not UTF-8 are decoded with U+FFFD and counted; empty texts are skipped
and counted. `bertclf.data` builds datasets from these rows.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertclf.errors import DataError
from bertclf.inputs import JSONL, TABLES
from bertclf.labels import LabelFormat


@dataclass
class ReadReport:
    """What reading a dataset ran into."""

    files: int = 0
    non_utf8: list[str] = field(default_factory=list)
    empty: list[str] = field(default_factory=list)

    def merge(self, other: ReadReport) -> None:
        self.files += other.files
        self.non_utf8 += other.non_utf8
        self.empty += other.empty

    def summary(self) -> str:
        return (
            f"{self.files} documents read; {len(self.non_utf8)} not valid UTF-8 "
            f"(decoded with replacement characters); {len(self.empty)} empty (skipped)"
        )


def decode(raw: bytes, source: str, report: ReadReport) -> str | None:
    """Decode bytes as UTF-8 with replacement; None (counted) for an empty text."""
    report.files += 1
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("utf-8", errors="replace")
        report.non_utf8.append(source)
    if not text.strip():
        report.empty.append(source)
        return None
    return text


def read_table(
    path: Path, text_field: str, fmt: LabelFormat
) -> tuple[list[str], list[list[str]], list[str], ReadReport]:
    """Read (texts, label names per row, sources) from a CSV, TSV or JSONL file."""
    kind = table_kind(path)
    reader = _read_jsonl if kind == "jsonl" else _read_csv
    report = ReadReport()
    texts, labels, sources = [], [], []
    for source, raw_text, row in reader(path, text_field, fmt):
        text = decode(raw_text.encode("utf-8", errors="surrogateescape"), source, report)
        if text is None:
            continue
        texts.append(text)
        labels.append(fmt.parse(source, row))
        sources.append(source)
    if not texts:
        raise DataError(f"{path}: no non-empty texts in field {text_field!r}")
    return texts, labels, sources, report


def _fields(text_field: str, fmt: LabelFormat) -> dict[str, str]:
    return {text_field: "--text-field", **fmt.columns()}


def _check_header(path: Path, header: list[str], fields: dict[str, str]) -> None:
    for name, flag in fields.items():
        if name not in header:
            raise DataError(
                f"{path}: no column {name!r} (columns: {header}); set {flag} to one of them"
            )


def _check_keys(where: str, row: Any, fields: dict[str, str]) -> None:
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
    for name, flag in fields.items():
        if name not in row:
            raise DataError(
                f"{where}: no field {name!r} (fields: {sorted(row)}); set {flag} to one of them"
            )


def _json_row(path: Path, line_no: int, line: str) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as e:
        raise DataError(
            f"{path}:{line_no}: not valid JSON ({e.msg}); one object per line"
        ) from None


def _open_text(path: Path):
    """Text mode that reads an Excel byte-order mark as nothing, and bad bytes losslessly."""
    return open(path, encoding="utf-8-sig", errors="surrogateescape", newline="")


def _csv_reader(f, path: Path) -> csv.DictReader:
    return csv.DictReader(f, **TABLES[path.suffix.lower()])


def _read_csv(path: Path, text_field: str, fmt: LabelFormat):
    with _open_text(path) as f:
        reader = _csv_reader(f, path)
        _check_header(path, reader.fieldnames or [], _fields(text_field, fmt))
        for line, row in enumerate(reader, start=2):
            yield f"{path}:{line}", row[text_field] or "", row


def _read_jsonl(path: Path, text_field: str, fmt: LabelFormat):
    fields = _fields(text_field, fmt)
    with _open_text(path) as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            row = _json_row(path, line_no, line)
            _check_keys(f"{path}:{line_no}", row, fields)
            yield f"{path}:{line_no}", str(row[text_field] or ""), row


def table_kind(path: Path) -> str:
    """`csv`, `tsv` or `jsonl` for a labelled table, by extension; DataError otherwise."""
    if not path.is_file():
        raise DataError(
            f"{path}: no such file or folder; pass a class-per-folder tree, .csv, .tsv or .jsonl"
        )
    suffix = path.suffix.lower()
    if suffix in TABLES:
        return suffix[1:]
    if suffix in JSONL:
        return "jsonl"
    raise DataError(f"{path}: unknown file type {suffix!r}; use a folder, .csv, .tsv or .jsonl")


def check_table(path: Path, text_field: str, fmt: LabelFormat) -> None:
    """The text and label columns of a table: its header, or its first JSONL object."""
    fields = _fields(text_field, fmt)
    if table_kind(path) != "jsonl":
        with _open_text(path) as f:
            _check_header(path, _csv_reader(f, path).fieldnames or [], fields)
        return
    with _open_text(path) as f:
        for line_no, line in enumerate(f, start=1):
            if line.strip():
                _check_keys(f"{path}:{line_no}", _json_row(path, line_no, line), fields)
                return
    raise DataError(f"{path}: no JSON objects; one object per line")
