"""Read texts to classify: one per line, or JSONL objects with a text field."""

from __future__ import annotations

import json
from pathlib import Path

from bertclf.errors import DataError


def read_texts(path: Path, text_field: str = "text") -> list[str]:
    """Texts from `path`: JSONL (`.jsonl`/`.ndjson`, or every line a JSON object) or lines.

    Blank lines are skipped.
    """
    if not path.is_file():
        raise DataError(f"{path}: no such file; --input takes one text per line, or JSONL")
    lines = [
        ln for ln in path.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()
    ]
    if path.suffix.lower() in (".jsonl", ".ndjson") or (
        lines and all(_is_object(ln) for ln in lines)
    ):
        texts = []
        for no, line in enumerate(lines, start=1):
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}: line {no} is not valid JSON ({e.msg})") from None
            if not isinstance(row, dict) or text_field not in row:
                raise DataError(f"{path}: line {no} has no {text_field!r} field; set --text-field")
            texts.append(str(row[text_field]))
        return texts
    return lines


def _is_object(line: str) -> bool:
    line = line.strip()
    if not (line.startswith("{") and line.endswith("}")):
        return False
    try:
        return isinstance(json.loads(line), dict)
    except json.JSONDecodeError:
        return False
