"""Settings of every command, declared once as frozen dataclasses (no TensorFlow).

Job: what a run, an export, a prediction or a scoring job is asked to do, each value
checked in `__post_init__` (a `ConfigError` naming the option and the fix), and the
training policy (`policy`) that resolves `auto` settings from the data. The CLI
generates its flags from these fields (`bertclf.cli.parser`), so a default or a help
text is written once. `bertclf serve` has its own `ServeConfig` in `bertclf.serving`.

May import: `bertclf.errors` only. Everything else imports this package.

The classes are loaded on first use, so `import bertclf.config.fields` (as the server
does) does not load the training settings.
"""

import importlib

_WHERE = {
    "DataConfig": "data",
    "ModelConfig": "model",
    "TrainConfig": "train",
    "RunConfig": "run",
    "ExportConfig": "export",
    "PredictConfig": "predict",
    "ScoreConfig": "score",
    "AuditConfig": "audit",
}
__all__ = list(_WHERE)


def __getattr__(name):
    if name in _WHERE:
        return getattr(importlib.import_module(f"bertclf.config.{_WHERE[name]}"), name)
    raise AttributeError(name)
