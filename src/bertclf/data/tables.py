"""Tables of texts (CSV, TSV, JSONL, one text per line), labelled or not, with one decoding rule.

Formats, by extension:
- `.csv`: Python's csv module (a header row, quoted fields);
- `.tsv`: TSV as it is defined (a tab between fields, no quoting: a quote is text);
- `.jsonl` / `.ndjson`: one JSON object per line;
- anything else, for texts to classify only: one text per line (blank lines skipped; a
  row's id is its line number).

Decoding, the same for every reader here and for class folders (`bertclf.data.folders`):
the bytes are UTF-8, an Excel byte-order mark at the start is not text, and a byte that is
not UTF-8 becomes U+FFFD; a labelled read counts the rows that had one (`ReadReport`).
Labelled rows (`read_table`) skip and count empty texts; rows to classify (`read_rows`,
`parse_rows`) are streamed, in constant memory, with an id per row when the input has a
`--id-field` column.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertclf.data.labels import LabelFormat
from bertclf.errors import DataError

# CSV quotes fields; TSV does not (a text may start with '"'), one record per line.
TABLES = {".csv": {"delimiter": ","}, ".tsv": {"delimiter": "\t", "quoting": csv.QUOTE_NONE}}
JSONL = (".jsonl", ".ndjson")
ENCODING = "utf-8-sig"  # Excel's byte-order mark is not part of the first column's name
# Bad bytes are read losslessly (as surrogates) and replaced per text by `clean`, so a
# labelled read can count the rows that had them.
ERRORS = "surrogateescape"


# ------------------------------------------------------------------ decoding


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


def clean(text: str) -> tuple[str, bool]:
    """(the text with each byte that was not UTF-8 as U+FFFD, whether there was one).

    `text` comes from a file opened with `open_text` (or `text_stream`): such bytes are
    surrogates there.

    >>> clean(b"caf\\xe9".decode("utf-8", "surrogateescape"))
    ('caf\\ufffd', True)
    """
    try:
        text.encode("utf-8")
        return text, False
    except UnicodeEncodeError:
        return text.encode("utf-8", ERRORS).decode("utf-8", "replace"), True


def decode(raw: bytes, source: str, report: ReadReport) -> str | None:
    """A labelled text's bytes -> its text (rule above); None (counted) for an empty text."""
    report.files += 1
    text, bad = clean(raw.decode(ENCODING, ERRORS))
    if bad:
        report.non_utf8.append(source)
    if not text.strip():
        report.empty.append(source)
        return None
    return text


def open_text(path: Path):
    """A file opened for the readers here (text mode, the decoding rule above)."""
    return open(path, encoding=ENCODING, errors=ERRORS, newline="")


def text_stream(raw) -> io.TextIOWrapper:
    """A binary stream (Beam's file systems) as `open_text` would read it."""
    return io.TextIOWrapper(raw, encoding=ENCODING, errors=ERRORS, newline="")


# ------------------------------------------------------------------ formats and headers


def table_kind(path: Path) -> str:
    """`csv`, `tsv` or `jsonl` for a labelled table, by extension; DataError otherwise."""
    if not path.is_file():
        raise DataError(
            f"{path}: no such file or folder; pass a class-per-folder tree, .csv, .tsv or .jsonl"
        )
    kind = input_kind(path)
    if kind == "lines":
        raise DataError(
            f"{path}: unknown file type {path.suffix.lower()!r}; use a folder, .csv, .tsv or .jsonl"
        )
    return kind


def input_kind(path: Path) -> str:
    """`csv`, `tsv`, `jsonl`, or `lines` (one text per line), by extension."""
    suffix = path.suffix.lower()
    if suffix in TABLES:
        return suffix[1:]
    return "jsonl" if suffix in JSONL else "lines"


def _check_header(path: Path, header: list[str], fields: dict[str, str]) -> None:
    for name, flag in fields.items():
        if name not in header:
            raise DataError(
                f"{path}: no column {name!r} (columns: {header}); set {flag} to one of them"
            )


def _json_object(path: Path, line_no: int, line: str) -> dict[str, Any]:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        raise DataError(
            f"{path}:{line_no}: not valid JSON ({e.msg}); one object per line"
        ) from None
    if not isinstance(row, dict):
        raise DataError(f"{path}:{line_no}: expected a JSON object, got {type(row).__name__}")
    return row


def _check_keys(where: str, row: dict[str, Any], fields: dict[str, str], first: bool) -> None:
    """A JSONL row must hold every field: on the first row a missing one is most likely
    named otherwise (set the flag); on a later row, that row lacks it."""
    for name, flag in fields.items():
        if name not in row:
            if first:
                raise DataError(
                    f"{where}: no field {name!r} (fields: {sorted(row)}); set {flag} to one of them"
                )
            raise DataError(f"{where}: this row has no {name!r}; add it (or remove the row)")


def table_rows(
    path: Path, lines: Iterable[str], fields: dict[str, str]
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, row) of a CSV, TSV or JSONL table's lines, each checked for `fields`
    (column -> the flag that names it). The header (CSV/TSV) is checked before any row."""
    kind = input_kind(path)
    if kind == "jsonl":
        first = True
        for line_no, line in enumerate(lines, start=1):
            if line.strip():
                row = _json_object(path, line_no, line)
                _check_keys(f"{path}:{line_no}", row, fields, first)
                first = False
                yield line_no, row
        return
    reader = csv.DictReader(lines, **TABLES[f".{kind}"])
    _check_header(path, reader.fieldnames or [], fields)
    for line_no, row in enumerate(reader, start=2):
        yield line_no, row


# ------------------------------------------------------------------ labelled tables


def _fields(text_field: str, fmt: LabelFormat) -> dict[str, str]:
    return {text_field: "--text-field", **fmt.columns()}


def read_table(
    path: Path, text_field: str, fmt: LabelFormat
) -> tuple[list[str], list[list[str]], list[str], ReadReport]:
    """(texts, label names per row, sources `FILE:LINE`, report) of a labelled table."""
    table_kind(path)
    report = ReadReport()
    texts, labels, sources = [], [], []
    with open_text(path) as f:
        for line_no, row in table_rows(path, f, _fields(text_field, fmt)):
            source = f"{path}:{line_no}"
            value = row[text_field]
            text = decode(
                ("" if value is None else str(value)).encode("utf-8", ERRORS), source, report
            )
            if text is None:
                continue
            texts.append(text)
            labels.append(fmt.parse(source, row))
            sources.append(source)
    if not texts:
        raise DataError(f"{path}: no non-empty texts in field {text_field!r}")
    return texts, labels, sources, report


def data_rows(path: Path, sources: list[str]) -> list[int]:
    """The 1-based data row of each `FILE:LINE` source of `read_table(path)`: the row under
    the header of a CSV/TSV (a quoted field may span lines), the non-blank line of a
    JSONL file. How `bertclf audit` and `train --exclude` name a table's texts."""
    lines = [int(s.rpartition(":")[2]) for s in sources]
    if input_kind(path) != "jsonl":
        return [n - 1 for n in lines]  # table_rows numbers CSV/TSV records from 2
    row_of, row = {}, 0
    with open_text(path) as f:
        for line_no, line in enumerate(f, start=1):
            if line.strip():
                row += 1
                row_of[line_no] = row
    return [row_of[n] for n in lines]


def check_table(path: Path, text_field: str, fmt: LabelFormat) -> None:
    """The text and label columns of a table: its header, or its first JSONL object."""
    table_kind(path)
    with open_text(path) as f:
        rows = table_rows(path, f, _fields(text_field, fmt))
        if next(rows, None) is None and input_kind(path) == "jsonl":
            raise DataError(f"{path}: no JSON objects; one object per line")


# ------------------------------------------------------------------ texts to classify


@dataclass(frozen=True)
class Row:
    """One text to classify and where it came from (its id, when the input has one)."""

    text: str
    id: Any = None


class _Lines:
    """A text file's lines, counting the bytes read (for a progress bar)."""

    def __init__(self, f, on_bytes=None):
        self.f, self.on_bytes = f, on_bytes or (lambda n: None)

    def __iter__(self) -> Iterator[str]:
        for line in self.f:
            self.on_bytes(len(line.encode("utf-8", ERRORS)))
            yield line


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
    with open_text(path) as f:
        for n, row in enumerate(parse_rows(path, _Lines(f, on_bytes), text_field, id_field)):
            if limit is not None and n >= limit:
                return
            yield row


def parse_rows(path: Path, lines: Iterable[str], text_field: str, id_field: str) -> Iterator[Row]:
    """Rows from an open file's lines (`open_text`, `text_stream`), by `path`'s extension."""
    if input_kind(path) == "lines":  # the id is the line number (blank lines count)
        for number, line in enumerate(lines, start=1):
            if line.strip():
                yield Row(clean(line.rstrip("\r\n"))[0], number)
        return
    for _, row in table_rows(path, lines, {text_field: "--text-field"}):
        value = row[text_field]
        text = clean("" if value is None else str(value))[0]
        ident = row.get(id_field) if id_field else None
        yield Row(text, clean(ident)[0] if isinstance(ident, str) else ident)


def batches(rows: Iterable[Row], size: int) -> Iterator[list[Row]]:
    """Consecutive lists of `size` rows (the last may be shorter)."""
    batch: list[Row] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
