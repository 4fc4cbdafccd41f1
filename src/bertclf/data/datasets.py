"""Labelled datasets: a class-per-folder tree (`folders`) or a table (`tables`), split once.

`read_labelled` reads a whole dataset; `load_splits` reads a run's training data, splits
off its validation texts (`bertclf.data.splitting`: Keras' split, or a stratified one)
or reads `--val`, and reads `--test`. Folder datasets follow
`keras.utils.text_dataset_from_directory`: `.txt` files found recursively, the file list
shuffled with `numpy.random.RandomState(seed)`, the last `int(val_split * n)` files the
validation split, exactly Keras' split for the same seed and fraction
(tests/test_data.py proves it). Labels are numbered in `labels.label_order` for every
format. Empty files are skipped after the split (so the split never moves) and counted.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bertclf.config.data import DataConfig
from bertclf.data.folders import index_folder, read_files
from bertclf.data.labels import LabelFormat, label_order, warn_numeric
from bertclf.data.splitting import resolve_split, split_indices
from bertclf.data.tables import ReadReport, check_table, data_rows, read_table
from bertclf.errors import DataError

logger = logging.getLogger(__name__)


@dataclass
class Examples:
    """Texts with labels into `label_names`, and where each came from.

    `labels`: one class id per text, or (`multilabel`) one 0/1 row per text in
    `label_names` order.
    """

    texts: list[str]
    labels: list
    label_names: list[str]
    sources: list[str]
    report: ReadReport = field(default_factory=ReadReport)
    multilabel: bool = False

    def __len__(self) -> int:
        return len(self.texts)

    def named_labels(self) -> list:
        """Each text's label name (single), or its frozenset of names (multilabel)."""
        names = self.label_names
        if self.multilabel:
            return [
                frozenset(n for n, on in zip(names, row, strict=True) if on) for row in self.labels
            ]
        return [names[i] for i in self.labels]

    def class_counts(self) -> dict[str, int]:
        """Texts per label (multilabel: texts that carry it)."""
        if self.multilabel:
            return {
                name: sum(row[i] for row in self.labels) for i, name in enumerate(self.label_names)
            }
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
    excluded: list[str] = field(default_factory=list)  # sources `--exclude` dropped


def _format(labels: str | LabelFormat) -> LabelFormat:
    return labels if isinstance(labels, LabelFormat) else LabelFormat(labels)


def check_source(path: str | os.PathLike, text_field: str, labels: str | LabelFormat) -> None:
    """Check what can be checked at once (no TensorFlow, no full read): raise DataError.

    A folder: its class sub-folders and their .txt files. A table: that it exists, its
    type, and the text and label columns (CSV/TSV header, or the first JSONL object).
    `labels`: the label column, or a `LabelFormat`.
    """
    path, fmt = Path(path), _format(labels)
    if path.is_dir():
        if fmt.multilabel:
            raise DataError(
                f"{path}: class folders hold one label per text; multi-label data needs a "
                ".csv, .tsv or .jsonl file"
            )
        index_folder(path)
        return
    check_table(path, text_field, fmt)


# ---------------------------------------------------------------------------- public


def _names(raw: list[list[str]], fmt: LabelFormat) -> list[str]:
    """The label order: the format's fixed set (fields, names file) or what occurs, sorted."""
    known = fmt.known_names()
    seen = {n for row in raw for n in row}
    return label_order(known if known is not None else seen)


def _encode(raw: list[list[str]], names: list[str], multilabel: bool) -> list:
    """Label names -> class ids (single) or 0/1 rows in `names` order (multilabel)."""
    index = {n: i for i, n in enumerate(names)}
    if not multilabel:
        return [index[r[0]] for r in raw]
    rows = []
    for r in raw:
        row = [0] * len(names)
        for n in r:
            row[index[n]] = 1
        rows.append(row)
    return rows


def _check_known(path: Path, raw: list[list[str]], names: list[str]) -> None:
    unknown = sorted({n for row in raw for n in row} - set(names))
    if unknown:
        raise DataError(
            f"{path}: labels {unknown[:10]} do not occur in training (known: {names[:20]}); "
            "remove those examples or retrain with them"
        )


def read_labelled(
    path: str | os.PathLike,
    text_field: str = "text",
    labels: str | LabelFormat = "label",
    label_names: list[str] | None = None,
) -> Examples:
    """Read a whole dataset (no split), in sorted file order.

    Args:
        path: class-per-folder tree, .csv, .tsv or .jsonl.
        text_field: the text column (key) of a table.
        labels: the label column, or a `LabelFormat` (multi-label forms).
        label_names: when given (e.g. a trained run's labels), labels are mapped
            into this order and any label outside it is an error.

    Example:
    >>> ex = read_labelled("examples/demo_data")  # doctest: +SKIP
    >>> ex.label_names
    ['billing', 'bug', 'feature']
    """
    path, fmt = Path(path), _format(labels)
    if path.is_dir():
        check_source(path, text_field, fmt)  # multi-label from folders: an error
        paths, classes = index_folder(path)
        texts, kept, report = read_files(paths)
        raw = [[classes[i]] for i in kept]
        sources = [paths[i] for i in kept]
    else:
        texts, raw, sources, report = read_table(path, text_field, fmt)
    names = _names(raw, fmt) if not path.is_dir() else label_order(set(classes))
    if label_names is not None:
        _check_known(path, raw, label_names)
        names = list(label_names)
    encoded = _encode(raw, names, fmt.multilabel)
    return Examples(texts, encoded, names, sources, report, fmt.multilabel)


def user_sources(path: str | os.PathLike, sources: list[str]) -> list[str]:
    """How a user names each text of the dataset at `path`: a folder's file path relative
    to it (`sport/123.txt`), a table's 1-based data row (`12`). `bertclf audit` writes
    these, and `train --exclude` reads them."""
    path = Path(path)
    if path.is_dir():
        return [Path(os.path.relpath(s, path)).as_posix() for s in sources]
    return [str(n) for n in data_rows(path, sources)]


def read_excluded(exclude: str) -> list[str]:
    """The sources listed in an `--exclude` file: a `source` column (label_issues.csv, cut
    to the rows a person checked) or one source per line."""
    import csv

    path = Path(exclude)
    if not path.is_file():
        raise DataError(f"--exclude {exclude}: no such file; pass a file of sources to drop")
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    if lines and "source" in next(csv.reader([lines[0]])):
        listed = [row["source"] for row in csv.DictReader(lines)]
    else:
        listed = lines
    return [s.strip() for s in listed if s.strip()]


def _kept(config: DataConfig, sources: list[str]) -> tuple[list[int], list[str]]:
    """(positions of the training texts `--exclude` keeps, the sources it drops).

    Every listed source must name a training text: a typo would otherwise keep a text
    the user meant to drop, silently."""
    if not config.exclude:
        return list(range(len(sources))), []
    listed = read_excluded(config.exclude)
    names = user_sources(config.train, sources)
    known = set(names)
    unknown = [s for s in dict.fromkeys(listed) if s not in known]
    if unknown:
        raise DataError(
            f"--exclude {config.exclude}: {len(unknown)} source(s) name no text of "
            f"{config.train} (first: {unknown[0]!r}); list a folder's files relative to it "
            "(class/file.txt) or a table's data row numbers, as bertclf audit writes them"
        )
    drop = set(listed)
    keep = [i for i, n in enumerate(names) if n not in drop]
    return keep, [n for n in names if n in drop]


def _drop_excluded(config: DataConfig, examples: Examples) -> tuple[Examples, list[str]]:
    keep, dropped = _kept(config, examples.sources)
    if not dropped:
        return examples, []
    kept = _subset(examples, keep)
    kept.report = examples.report
    return kept, dropped


def _subset(examples: Examples, ids: list[int]) -> Examples:
    e = examples
    return Examples(
        [e.texts[i] for i in ids],
        [e.labels[i] for i in ids],
        e.label_names,
        [e.sources[i] for i in ids],
        multilabel=e.multilabel,
    )


def _split_table(config: DataConfig, fmt: LabelFormat, seed: int) -> tuple:
    """(train, validation, method) from one table: a seeded split (see bertclf.data.splitting)."""
    path = Path(config.train)
    whole, excluded = _drop_excluded(config, read_labelled(path, config.text_field, fmt))
    if len(whole.label_names) < 2:
        raise DataError(
            f"{path}: field {fmt.field!r} has {len(whole.label_names)} distinct label(s) "
            f"{whole.label_names}; a classifier needs at least two"
        )
    if fmt.multilabel:  # no class to stratify by: the random (Keras) split
        method = "keras"
        tr, va = split_indices(list(range(len(whole))), config.val_split, seed, method, str(path))
    else:
        method = resolve_split(config.split, whole.labels, config.val_split)
        tr, va = split_indices(whole.labels, config.val_split, seed, method, str(path))
    train, val = _subset(whole, tr), _subset(whole, va)
    train.report = whole.report
    return train, val, method, excluded


def _split_folder(config: DataConfig, seed: int) -> tuple:
    path = Path(config.train)
    paths, classes = index_folder(path)
    names = label_order(set(classes))
    keep, excluded = _kept(config, paths)  # dropped before the split, which then moves
    paths, classes = [paths[i] for i in keep], [classes[i] for i in keep]
    index = {name: i for i, name in enumerate(names)}
    labels = [index[c] for c in classes]
    method = resolve_split(config.split, labels, config.val_split)
    parts = split_indices(labels, config.val_split, seed, method, str(path))
    train, val = (
        _read_part([paths[i] for i in part], [labels[i] for i in part], names) for part in parts
    )
    return train, val, method, excluded


def _read_part(paths: list[str], labels: list[int], names: list[str]) -> Examples:
    """One split's files, read (empty files are skipped after the split: it never moves)."""
    texts, kept, report = read_files(paths)
    return Examples(texts, [labels[i] for i in kept], names, [paths[i] for i in kept], report)


def load_splits(config: DataConfig, seed: int) -> Splits:
    """Read the training data, split it (`--split`) or read `--val`, read the test set."""
    fmt = LabelFormat.from_config(config)
    train_path = Path(config.train)
    if config.val:
        train, excluded = _drop_excluded(config, read_labelled(train_path, config.text_field, fmt))
        val = read_labelled(config.val, config.text_field, fmt, label_names=train.label_names)
        method = "given"
    elif train_path.is_dir():
        check_source(train_path, config.text_field, fmt)
        train, val, method, excluded = _split_folder(config, seed)
    else:
        train, val, method, excluded = _split_table(config, fmt, seed)
    if not fmt.multilabel:
        warn_numeric(str(train_path), train.label_names)
    for part, what in ((train, "training"), (val, "validation")):
        if len(part) == 0:
            raise DataError(f"{train_path}: the {what} split has no usable texts; add data")
    test = None
    if config.test:
        test = read_labelled(config.test, config.text_field, fmt, label_names=train.label_names)
    return Splits(train, val, test, train.label_names, method, excluded)


def describe(splits: Splits) -> list[str]:
    """Lines logged when training starts: sizes, class balance, read problems."""
    report = ReadReport()
    report.merge(splits.train.report)
    report.merge(splits.val.report)
    lines = [
        f"labels (sorted): {splits.label_names}",
        f"train {len(splits.train)} / validation {len(splits.val)} ({splits.split} split)"
        + (f" / test {len(splits.test)}" if splits.test is not None else ""),
        f"train per {'label' if splits.train.multilabel else 'class'}: "
        f"{splits.train.class_counts()}",
        report.summary(),
    ]
    if splits.excluded:
        lines.append(
            f"--exclude: {len(splits.excluded)} training text(s) dropped "
            f"({', '.join(splits.excluded[:5])}{' ...' if len(splits.excluded) > 5 else ''})"
        )
    if splits.train.multilabel:
        sizes = [sum(row) for row in splits.train.labels]
        lines.append(
            f"labels per training text: mean {sum(sizes) / len(sizes):.2f}, "
            f"none {sizes.count(0)}, several {sum(1 for n in sizes if n > 1)}"
        )
    if report.non_utf8:
        lines.append(
            f"not UTF-8: {report.non_utf8[:5]}{' ...' if len(report.non_utf8) > 5 else ''}"
        )
    if report.empty:
        lines.append(f"empty: {report.empty[:5]}{' ...' if len(report.empty) > 5 else ''}")
    return lines
