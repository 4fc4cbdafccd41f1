"""One entry point for inference on either a run directory or an exported model."""

from __future__ import annotations

from pathlib import Path


def load_predictor(path: str | Path):
    """A run directory (config.json) -> `TrainedRun`; BASE/NAME[/VERSION] -> `ExportedModel`.

    Both expose `label_names`, `predict_proba(texts)` and `predict(texts)`, and give
    the same output for the same texts.
    """
    path = Path(path)
    if (path / "config.json").is_file() and not (path / "saved_model.pb").is_file():
        from bertclf.run import load_run

        return load_run(path)
    from bertclf.errors import RunError
    from bertclf.exported import ExportedModel, find_version_dir

    if find_version_dir(path) is None:
        raise RunError(
            f"{path}: neither a bertclf run (no config.json) nor an exported model "
            "(no saved_model.pb); pass a run directory or BASE/NAME[/VERSION]"
        )
    return ExportedModel(path)
