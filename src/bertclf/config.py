"""Typed, frozen configuration: every setting of every command, declared once.

A run is fully described by a `RunConfig`; its resolved form is saved as
`config.json` in every run directory so that a run can be reproduced, resumed,
evaluated and exported without the original command line. `ExportConfig`,
`PredictConfig` and `ServeConfig` do the same for the other commands. Each
dataclass checks its own values in `__post_init__` and raises `ConfigError`
naming the option (`bertclf.fields`). Each field's default and help text (its `option(...)`
metadata) are what `bertclf ... --help` shows: `bertclf.cliargs` generates the
flags from these fields, so no default is written twice. Nothing here imports
TensorFlow.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from bertclf.fields import check, option, parse_names
from bertclf.model_config import ModelConfig, parse_clean  # noqa: F401  (re-exported)
from bertclf.train_config import TrainConfig

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
        split: `keras`, `stratified`, or `auto` (see `bertclf.splitting`).
        val: a separate validation folder or file (then `train` is not split).
        task: `single` (one class per text) or `multilabel` (a set of labels per
            text, possibly empty; see `bertclf.labels` for the input forms).
        label_sep: multilabel: split the label field on this string (CSV/TSV/JSONL).
        label_fields: multilabel: one 0/1 column (key) per label instead of a label field.
        label_names: multilabel: a file of label names, one per line; the label field
            then holds ids into it (0 = the first line), as GoEmotions' TSV files.
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

    def __post_init__(self) -> None:
        check(bool(self.train), "--data", self.train, "give a folder, .csv or .jsonl file")
        check(self.task in TASKS, "--task", self.task, f"choose one of {TASKS}")
        fields = self.label_fields
        fields = parse_names(fields, "--label-fields") if isinstance(fields, str) else fields
        object.__setattr__(self, "label_fields", tuple(fields))
        multilabel = self.task == "multilabel"
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


@dataclass(frozen=True)
class RunConfig:
    """Everything needed to reproduce a run.

    Args:
        data: dataset settings.
        out: the run directory.
        model: encoder and head settings.
        train: optimisation settings.
        seed: seeds the split, the initialisation, shuffling and dropout.
    """

    data: DataConfig
    out: str = option(dataclasses.MISSING, "run directory to create (or to --resume)")
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = option(42, "seeds the split, initialisation, shuffling and dropout")

    def __post_init__(self) -> None:
        check(bool(self.out), "--out", self.out, "name a run directory")
        check(self.seed >= 0, "--seed", self.seed, "use a non-negative integer")
        multilabel = self.data.task == "multilabel"
        check(
            not (multilabel and self.model.head == "sigmoid"),
            "--head",
            self.model.head,
            "drop it: --task multilabel always has one sigmoid per label",
        )
        check(
            multilabel or self.train.thresholds == "tune",
            "--thresholds",
            self.train.thresholds,
            "it applies to --task multilabel only; drop it",
        )
        self._check_contrastive()

    def contrastive_unsupported(self) -> str | None:
        """The setting that rules out the contrastive stage ("--task multilabel"), or None."""
        conflicts = self._contrastive_conflicts()
        return " ".join(map(str, conflicts[0])) if conflicts else None

    def _contrastive_conflicts(self) -> list[tuple[str, Any]]:
        return [
            (flag, value)
            for ok, flag, value in (
                (self.data.task == "single", "--task", self.data.task),
                (self.train.strategy == "default", "--strategy", self.train.strategy),
                (self.model.long == "truncate", "--long", self.model.long),
            )
            if not ok
        ]

    def _check_contrastive(self) -> None:
        conflicts = self._contrastive_conflicts()
        if self.train.contrastive and conflicts:
            check(
                False,
                *conflicts[0],
                "--contrastive runs on one device, single-label, without --long chunk: "
                "drop one of the two",
            )

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["model"]["clean"] = list(self.model.clean)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        model = dict(d.get("model", {}))
        model["clean"] = tuple(model.get("clean", ()))
        seed = {"seed": d["seed"]} if "seed" in d else {}
        return cls(
            data=DataConfig(**d["data"]),
            out=d["out"],
            model=ModelConfig(**model),
            train=TrainConfig(**d.get("train", {})),
            **seed,
        )
