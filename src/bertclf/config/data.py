"""`DataConfig`: where a run's labelled texts come from and how their labels read."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from bertclf.config.fields import check, option, parse_names

SPLITS = ("auto", "keras", "stratified")


TASKS = ("single", "multilabel")


TEXT_FIELD = "text"


LABEL_FIELD = "label"


@dataclass(frozen=True)
class DataConfig:
    """Where the examples come from.

    Args:
        train: a folder with one sub-folder per class, or a .csv / .jsonl file.
        test: optional held-out folder or file, scored with the best weights.
        text_field: column (CSV) or key (JSONL) holding the text.
        label_field: column (CSV) or key (JSONL) holding the label.
        val_split: fraction of `train` held out for validation, as
            `keras.utils.text_dataset_from_directory(validation_split=...)`.
        split: `keras`, `stratified`, or `auto` (see `bertclf.data.splitting`).
        val: a separate validation folder or file (then `train` is not split).
        task: `single` (one class per text) or `multilabel` (a set of labels per
            text, possibly empty; see `bertclf.data.labels` for the input forms).
        label_sep: multilabel: split the label field on this string (CSV/TSV/JSONL).
        label_fields: multilabel: one 0/1 column (key) per label instead of a label field.
        label_names: multilabel: a file of label names, one per line; the label field
            then holds ids into it (0 = the first line), as GoEmotions' TSV files.
        exclude: a file naming training texts to drop (`bertclf audit`'s sources: a
            folder's files relative to it, a table's 1-based data rows).
    """

    train: str = option(
        dataclasses.MISSING,
        "folder with one sub-folder per class, or .csv/.jsonl (optional with --resume)",
    )
    test: str | None = option(
        None,
        "held-out folder or file, scored with the kept weights after training",
        flags=("--test", "--test-dir"),
        type=str,
    )
    text_field: str = option(TEXT_FIELD, "CSV/JSONL column (key) holding the text")
    label_field: str = option(LABEL_FIELD, "CSV/JSONL column (key) holding the label")
    val_split: float = option(0.2, "fraction of DATA held out for validation")
    split: str = option(
        "auto",
        "validation split: keras (random, as Keras splits folders), stratified (each class "
        "its share), auto (stratified when a class would get fewer than 20)",
        choices=SPLITS,
    )
    val: str | None = option(
        None, "separate validation folder or file (DATA is then not split)", type=str
    )
    task: str = option(
        "single",
        "single: one class per text; multilabel: a set of labels per text (sigmoid per label)",
        choices=TASKS,
    )
    label_sep: str | None = option(
        None, "multilabel: split the label field on this string, e.g. ','", type=str
    )
    label_fields: tuple[str, ...] = option(
        (),
        "multilabel: comma-separated 0/1 columns, one per label, instead of --label-field",
        type=lambda v: parse_names(v, "--label-fields"),
        show="none",
    )
    label_names: str | None = option(
        None,
        "multilabel: file of label names, one per line; labels are then ids into it (0 = first)",
        type=str,
    )

    exclude: str | None = option(
        None,
        "file of training texts to drop before the split: a 'source' column (bertclf audit's "
        "label_issues.csv, cut to the rows you checked) or one source per line",
        type=str,
    )

    @property
    def multilabel(self) -> bool:
        """Whether each text carries a set of labels: the one place bertclf decides it
        (a run's config.json records `task`; everything else asks this)."""
        return self.task == "multilabel"

    def __post_init__(self) -> None:
        check(bool(self.train), "--data", self.train, "give a folder, .csv or .jsonl file")
        check(self.task in TASKS, "--task", self.task, f"choose one of {TASKS}")
        fields = self.label_fields
        fields = parse_names(fields, "--label-fields") if isinstance(fields, str) else fields
        object.__setattr__(self, "label_fields", tuple(fields))
        multilabel = self.multilabel
        for flag, value in (
            ("--label-sep", self.label_sep),
            ("--label-fields", self.label_fields),
            ("--label-names", self.label_names),
        ):
            check(multilabel or not value, flag, value, "it needs --task multilabel")
        check(self.label_sep != "", "--label-sep", self.label_sep, "give a separator such as ','")
        check(
            not (self.label_sep and self.label_fields),
            "--label-sep",
            self.label_sep,
            "drop it: with --label-fields every label has its own 0/1 column",
        )
        check(
            not (self.label_fields and self.label_names),
            "--label-names",
            self.label_names,
            "drop it: with --label-fields the columns name the labels",
        )
        check(
            not (multilabel and self.split == "stratified"),
            "--split",
            self.split,
            "multilabel data splits at random: use --split keras or auto",
        )

        check(0.0 < self.val_split < 1.0, "--val-split", self.val_split, "use a value in (0, 1)")
        check(self.split in SPLITS, "--split", self.split, f"choose one of {SPLITS}")
        check(bool(self.text_field), "--text-field", self.text_field, "name the text column")
        check(bool(self.label_field), "--label-field", self.label_field, "name the label column")
