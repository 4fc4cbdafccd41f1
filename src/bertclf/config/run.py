"""`RunConfig`: everything needed to reproduce a run, saved as the run's config.json.

A run is fully described by a `RunConfig`; its resolved form (every `auto` replaced by
what ran, `bertclf.training`) is saved as `config.json` in every run directory, so
that a run can be reproduced, resumed, evaluated and exported without the original
command line.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from bertclf.config.data import DataConfig
from bertclf.config.fields import check, option
from bertclf.config.model import ModelConfig
from bertclf.config.train import TrainConfig


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
        multilabel = self.data.multilabel
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
                (not self.data.multilabel, "--task", self.data.task),
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
