"""One entry point for inference on either a run directory or an exported model."""

from __future__ import annotations

from pathlib import Path

from bertclf.errors import RunError


def load_predictor(path: str | Path):
    """A run directory (`config.json`) -> `TrainedRun`; anything else is an error.

    Both kinds expose `label_names`, `predict_proba(texts)` and `predict(texts)`.
    """
    path = Path(path)
    if (path / "config.json").is_file():
        from bertclf.run import load_run

        return load_run(path)
    raise RunError(f"{path}: not a bertclf run directory (no config.json)")
