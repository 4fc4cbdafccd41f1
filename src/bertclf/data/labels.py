"""What a row's label holds: one class (`--task single`) or a set of labels (`multilabel`).

Every input form reads to a list of label names per row; `Examples` then stores one
class id per text (single) or one 0/1 row per text (multilabel). Multi-label forms:

- JSONL with a list of names: `{"text": "...", "label": ["bug", "urgent"]}` (`[]`: none);
- a label field split on `--label-sep`: CSV `"bug,urgent"` (an empty cell: no label);
- one 0/1 column (key) per label: `--label-fields bug,urgent,docs`;
- ids into a names file: `--label-names emotions.txt` with `"2,27"` (GoEmotions' TSV).

A list where one class is expected is an error that names `--task multilabel`: read as
a class it would silently become a made-up class such as "['bug', 'urgent']". Numbers
with many distinct values look like a regression target: they are classes here, and
a warning says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bertclf.config.data import DataConfig
from bertclf.errors import DataError

logger = logging.getLogger(__name__)

NUMERIC_CLASSES_WARN = 10  # more distinct numeric labels than this: probably a regression
TRUE_VALUES = (1, "1", True, "true", "True")
FALSE_VALUES = (0, "0", False, "false", "False", "")
BAD_LABEL_CHARS = "\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


@dataclass(frozen=True)
class LabelFormat:
    """How to read a row's labels.

    Args:
        field: the label column (key).
        multilabel: a set of labels per row.
        sep: multilabel: split a string label on this.
        fields: multilabel: one 0/1 column per label (instead of `field`).
        id_names: multilabel: labels are ids into these names (`--label-names`).
        names_file: where `id_names` came from (for messages).

    Example:
    >>> fmt = LabelFormat("tags", multilabel=True, sep=",")
    >>> fmt.parse("f.csv:2", {"tags": "bug, urgent"})
    ['bug', 'urgent']
    """

    field: str = "label"
    multilabel: bool = False
    sep: str | None = None
    fields: tuple[str, ...] = ()
    id_names: tuple[str, ...] | None = None
    names_file: str | None = None

    @classmethod
    def from_config(cls, config: DataConfig, field: str | None = None) -> LabelFormat:
        """The format a `DataConfig` describes (reads `--label-names`); `field` overrides."""
        return cls(
            field=field or config.label_field,
            multilabel=config.multilabel,
            sep=config.label_sep,
            fields=config.label_fields,
            id_names=read_names_file(config.label_names) if config.label_names else None,
            names_file=config.label_names,
        )

    def columns(self) -> dict[str, str]:
        """The columns (keys) every row needs, each with the flag that names it."""
        if self.fields:
            return {f: "--label-fields" for f in self.fields}
        return {self.field: "--label-field"}

    def known_names(self) -> list[str] | None:
        """The complete label set when the format fixes it (fields, names file), else None."""
        if self.fields:
            return list(self.fields)
        return list(self.id_names) if self.id_names is not None else None

    def parse(self, source: str, row: dict[str, Any]) -> list[str]:
        """The label names of one row (`source`: file:line, for messages)."""
        if self.fields:
            return [f for f in self.fields if _flag(source, f, row.get(f))]
        value = row.get(self.field)
        if isinstance(value, list):
            if not self.multilabel:
                raise DataError(
                    f"{source}: label {_short(value)} is a list, but single-label data has one "
                    "label per text; train with --task multilabel for label sets"
                )
            names = [_check_name(source, str(v)) for v in value]
        elif self.multilabel:
            names = self._split(source, value)
        else:
            return [check_label(source, "" if value is None else str(value), self.field)]
        if self.id_names is not None:
            names = [self._by_id(source, n) for n in names]
        return list(dict.fromkeys(names))  # a label listed twice counts once

    def _split(self, source: str, value: Any) -> list[str]:
        if self.sep is None:
            raise DataError(
                f"{source}: {self.field!r} is {_short(value)}, not a list; multi-label rows "
                'need a list such as ["bug", "urgent"], or pass --label-sep (e.g. ",") '
                "or --label-fields"
            )
        text = "" if value is None else str(value)
        if not text.strip():
            return []  # a text with no label: allowed in multi-label data
        return [_check_name(source, part) for part in text.split(self.sep)]

    def _by_id(self, source: str, name: str) -> str:
        names = self.id_names or ()
        try:
            index = int(name)
        except ValueError:
            index = -1
        if not 0 <= index < len(names):
            raise DataError(
                f"{source}: label id {name!r} is not in {self.names_file} (ids 0.."
                f"{len(names) - 1}); fix the row or the names file"
            )
        return names[index]


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _flag(source: str, field: str, value: Any) -> bool:
    if isinstance(value, str):
        value = value.strip()
    if value in TRUE_VALUES:
        return True
    if value in FALSE_VALUES or value is None:
        return False
    raise DataError(f"{source}: {field!r} is {_short(value)}; --label-fields columns hold 0 or 1")


def _check_name(source: str, name: str) -> str:
    name = name.strip()
    if not name:
        raise DataError(
            f"{source}: an empty label name in the label list; remove it (or the extra separator)"
        )
    return check_label(source, name, "label")


def check_label(source: str, label: str, label_field: str) -> str:
    """A label as stored (labels.txt, one per line): stripped, non-empty, one line."""
    label = label.strip()
    if label == "":
        raise DataError(f"{source}: empty {label_field!r}; every row needs a label")
    if any(c in label for c in BAD_LABEL_CHARS):
        raise DataError(
            f"{source}: label {label!r} spans several lines; labels must be one line "
            "(fix the quoting of that row)"
        )
    return label


def read_names_file(path: str) -> tuple[str, ...]:
    """`--label-names`: one name per line, in id order; DataError for a bad file."""
    file = Path(path)
    if not file.is_file():
        raise DataError(f"--label-names {path}: no such file; one label name per line")
    names = tuple(line.strip() for line in file.read_text(encoding="utf-8-sig").splitlines())
    while names and not names[-1]:
        names = names[:-1]
    for no, name in enumerate(names, start=1):
        if not name:
            raise DataError(f"{path}:{no}: an empty label name; one name per line")
        check_label(f"{path}:{no}", name, "label")
    if len(set(names)) != len(names) or len(names) < 2:
        raise DataError(
            f"{path}: needs at least two distinct label names, one per line "
            f"(found {len(names)}, {len(set(names))} distinct)"
        )
    return names


def label_order(names: set[str] | list[str]) -> list[str]:
    """The order of a dataset's labels, and so of a model's outputs (labels.txt).

    Sorted by name, numerically when every label is an integer (2 < 10), for every form
    of data: class folders, tables, and the fixed sets of `--label-fields` and
    `--label-names`. (Class folders are still listed, and so split, in Keras' order of
    their names as strings; only the label ids follow this rule.)

    >>> label_order({"10", "9", "2"}), label_order({"bug", "Billing"})
    (['2', '9', '10'], ['Billing', 'bug'])
    """
    unique = set(names)
    try:
        return sorted(unique, key=int)
    except ValueError:
        return sorted(unique)


def warn_numeric(source: str, names: list[str]) -> None:
    """Warn when class labels look like a regression target (many distinct numbers)."""
    try:
        values = [float(n) for n in names]
    except ValueError:
        return
    fractional = any(v != int(v) for v in values)
    if len(values) > NUMERIC_CLASSES_WARN or fractional:
        logger.warning(
            "%s: the %d distinct labels are all numbers (%s ...); each one is treated as a "
            "class, not as a value to regress: bertclf classifies",
            source,
            len(values),
            ", ".join(names[:5]),
        )
