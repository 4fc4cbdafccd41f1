"""Read labelled texts from a class-per-folder tree, a CSV or a JSONL file.

Folder datasets follow `keras.utils.text_dataset_from_directory`: labels are the
sorted sub-folder names, `.txt` files are found recursively, the file list is
shuffled with `numpy.random.RandomState(seed)` and the last
`int(val_split * n)` files form the validation split. The split is therefore
exactly Keras' for the same seed and fraction (tests/test_data.py proves it).
Bytes that are not UTF-8 are decoded with U+FFFD and counted; empty files are
skipped after the split (so the split never moves) and counted.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertclf.config import DataConfig
from bertclf.errors import DataError
from bertclf.splitting import resolve_split, split_indices

logger = logging.getLogger(__name__)

TEXT_SUFFIXES = (".txt",)


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


@dataclass
class Examples:
    """Texts with integer labels into `label_names`, and where each came from."""

    texts: list[str]
    labels: list[int]
    label_names: list[str]
    sources: list[str]
    report: ReadReport = field(default_factory=ReadReport)

    def __len__(self) -> int:
        return len(self.texts)

    def class_counts(self) -> dict[str, int]:
        counts = Counter(self.labels)
        return {name: counts.get(i, 0) for i, name in enumerate(self.label_names)}


@dataclass
class Splits:
    """The train/validation split, the optional test set and the label order."""

    train: Examples
    val: Examples
    test: Examples | None
    label_names: list[str]
    split: str = "keras"  # how train and validation were separated (keras, stratified)


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


# ---------------------------------------------------------------------------- folders


def index_folder(directory: Path) -> tuple[list[str], list[int], list[str]]:
    """List `.txt` files under each class sub-folder, in Keras' (unshuffled) order."""
    if not directory.is_dir():
        raise DataError(f"{directory}: no such folder; pass a folder with one sub-folder per class")
    class_names = sorted(
        d for d in os.listdir(directory) if (directory / d).is_dir() and not d.startswith(".")
    )
    if len(class_names) < 2:
        raise DataError(
            f"{directory}: found {len(class_names)} class sub-folder(s) {class_names}; "
            "a classifier needs at least two, one sub-folder per class"
        )
    paths: list[str] = []
    labels: list[int] = []
    for index, name in enumerate(class_names):
        found = 0
        for root, _, files in sorted(os.walk(directory / name), key=lambda x: x[0]):
            for fname in sorted(files):
                if fname.lower().endswith(TEXT_SUFFIXES):
                    paths.append(os.path.join(root, fname))
                    labels.append(index)
                    found += 1
        if not found:
            raise DataError(
                f"{directory / name}: class folder has no .txt files; add some or remove it"
            )
    return paths, labels, class_names


def read_files(paths: list[str], labels: list[int], names: list[str]) -> Examples:
    """Read and decode files; empty files are skipped and counted."""
    report = ReadReport()
    texts, kept_labels, sources = [], [], []
    for path, label in zip(paths, labels, strict=True):
        text = decode(Path(path).read_bytes(), path, report)
        if text is not None:
            texts.append(text)
            kept_labels.append(label)
            sources.append(path)
    return Examples(texts, kept_labels, names, sources, report)


# ---------------------------------------------------------------------------- tables


def _label_order(raw_labels: list[str]) -> list[str]:
    """Sorted label names; numerically when every label is an integer (2 < 10)."""
    unique = set(raw_labels)
    try:
        return sorted(unique, key=int)
    except ValueError:
        return sorted(unique)


def read_table(
    path: Path, text_field: str, label_field: str
) -> tuple[list[str], list[str], list[str], ReadReport]:
    """Read (texts, raw labels, sources) from a CSV or JSONL file."""
    kind = table_kind(path)
    reader = _read_csv if kind == "csv" else _read_jsonl
    rows = reader(path, text_field, label_field)
    report = ReadReport()
    texts, labels, sources = [], [], []
    for source, raw_text, raw_label in rows:
        text = decode(raw_text.encode("utf-8", errors="surrogateescape"), source, report)
        if text is None:
            continue
        texts.append(text)
        labels.append(check_label(source, "" if raw_label is None else str(raw_label), label_field))
        sources.append(source)
    if not texts:
        raise DataError(f"{path}: no non-empty texts in field {text_field!r}")
    return texts, labels, sources, report


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


def _read_csv(path: Path, text_field: str, label_field: str):
    with _open_text(path) as f:
        reader = csv.DictReader(f)
        _check_header(
            path,
            reader.fieldnames or [],
            {text_field: "--text-field", label_field: "--label-field"},
        )
        for line, row in enumerate(reader, start=2):
            yield f"{path}:{line}", row[text_field] or "", row[label_field]


def _read_jsonl(path: Path, text_field: str, label_field: str):
    fields = {text_field: "--text-field", label_field: "--label-field"}
    with _open_text(path) as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            row = _json_row(path, line_no, line)
            _check_keys(f"{path}:{line_no}", row, fields)
            yield f"{path}:{line_no}", str(row[text_field] or ""), row[label_field]


def check_source(path: str | os.PathLike, text_field: str, label_field: str) -> None:
    """Check what can be checked at once (no TensorFlow, no full read): raise DataError.

    A folder: its class sub-folders and their .txt files. A table: that it exists, its
    type, and the text and label columns (CSV header, or the first JSONL object).
    """
    path = Path(path)
    if path.is_dir():
        index_folder(path)
        return
    fields = {text_field: "--text-field", label_field: "--label-field"}
    if table_kind(path) == "csv":
        with _open_text(path) as f:
            _check_header(path, csv.DictReader(f).fieldnames or [], fields)
        return
    with _open_text(path) as f:
        for line_no, line in enumerate(f, start=1):
            if line.strip():
                _check_keys(f"{path}:{line_no}", _json_row(path, line_no, line), fields)
                return
    raise DataError(f"{path}: no JSON objects; one object per line")


def table_kind(path: Path) -> str:
    """`csv` or `jsonl` for a labelled table, by extension; DataError for anything else."""
    if not path.is_file():
        raise DataError(
            f"{path}: no such file or folder; pass a class-per-folder tree, .csv or .jsonl"
        )
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    raise DataError(f"{path}: unknown file type {suffix!r}; use a folder, .csv or .jsonl")


def check_label(source: str, label: str, label_field: str) -> str:
    """A label as stored (labels.txt, one per line): stripped, non-empty, one line."""
    label = label.strip()
    if label == "":
        raise DataError(f"{source}: empty {label_field!r}; every row needs a label")
    if any(c in label for c in "\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"):
        raise DataError(
            f"{source}: label {label!r} spans several lines; labels must be one line "
            "(fix the quoting of that row)"
        )
    return label


# ---------------------------------------------------------------------------- public


def read_labelled(
    path: str | os.PathLike,
    text_field: str = "text",
    label_field: str = "label",
    label_names: list[str] | None = None,
) -> Examples:
    """Read a whole dataset (no split), in sorted file order.

    Args:
        path: class-per-folder tree, .csv or .jsonl.
        text_field, label_field: columns for tables.
        label_names: when given (e.g. a trained run's labels), labels are mapped
            into this order and any label outside it is an error.

    Example:
    >>> ex = read_labelled("examples/demo_data")  # doctest: +SKIP
    >>> ex.label_names
    ['billing', 'bug', 'feature']
    """
    path = Path(path)
    if path.is_dir():
        paths, labels, names = index_folder(path)
        examples = read_files(paths, labels, names)
        raw = [names[i] for i in examples.labels]
        texts, sources, report = examples.texts, examples.sources, examples.report
    else:
        texts, raw, sources, report = read_table(path, text_field, label_field)
        names = _label_order(raw)
    if label_names is not None:
        unknown = sorted(set(raw) - set(label_names))
        if unknown:
            raise DataError(
                f"{path}: labels {unknown} do not occur in training (known: {label_names}); "
                "remove those examples or retrain with them"
            )
        names = list(label_names)
    index = {n: i for i, n in enumerate(names)}
    return Examples(texts, [index[r] for r in raw], names, sources, report)


def load_splits(config: DataConfig, seed: int) -> Splits:
    """Read the training data, split it (`--split`, see bertclf.splitting), read the test set."""
    train_path = Path(config.train)
    if train_path.is_dir():
        paths, labels, names = index_folder(train_path)
        method = resolve_split(config.split, labels, config.val_split)
        tr, va = split_indices(labels, config.val_split, seed, method, str(train_path))
        train = read_files([paths[i] for i in tr], [labels[i] for i in tr], names)
        val = read_files([paths[i] for i in va], [labels[i] for i in va], names)
    else:
        texts, raw, sources, report = read_table(train_path, config.text_field, config.label_field)
        names = _label_order(raw)
        if len(names) < 2:
            raise DataError(
                f"{train_path}: field {config.label_field!r} has {len(names)} distinct label(s) "
                f"{names}; a classifier needs at least two"
            )
        index = {n: i for i, n in enumerate(names)}
        labels = [index[r] for r in raw]
        method = resolve_split(config.split, labels, config.val_split)
        tr, va = split_indices(labels, config.val_split, seed, method, str(train_path))
        pick = lambda ids: Examples(  # noqa: E731
            [texts[i] for i in ids], [labels[i] for i in ids], names, [sources[i] for i in ids]
        )
        train, val = pick(tr), pick(va)
        train.report = report
    for part, what in ((train, "training"), (val, "validation")):
        if len(part) == 0:
            raise DataError(f"{train_path}: the {what} split has no usable texts; add data")
    test = None
    if config.test:
        test = read_labelled(config.test, config.text_field, config.label_field, label_names=names)
    return Splits(train, val, test, names, method)


def describe(splits: Splits) -> list[str]:
    """Lines logged when training starts: sizes, class balance, read problems."""
    report = ReadReport()
    report.merge(splits.train.report)
    report.merge(splits.val.report)
    lines = [
        f"labels (sorted): {splits.label_names}",
        f"train {len(splits.train)} / validation {len(splits.val)} ({splits.split} split)"
        + (f" / test {len(splits.test)}" if splits.test is not None else ""),
        f"train per class: {splits.train.class_counts()}",
        report.summary(),
    ]
    if report.non_utf8:
        lines.append(
            f"not UTF-8: {report.non_utf8[:5]}{' ...' if len(report.non_utf8) > 5 else ''}"
        )
    if report.empty:
        lines.append(f"empty: {report.empty[:5]}{' ...' if len(report.empty) > 5 else ''}")
    return lines
