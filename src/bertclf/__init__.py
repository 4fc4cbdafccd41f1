"""bertclf: fine-tune a BERT-family encoder on labelled texts, export it, serve it.

The Python API mirrors the CLI:

>>> from bertclf import RunConfig, DataConfig, train, load_run  # doctest: +SKIP
>>> result = train(RunConfig(data=DataConfig("examples/demo_data"), out="runs/demo"))
>>> load_run("runs/demo").predict(["My card was charged twice"])
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import importlib  # noqa: E402

from bertclf import tflog  # noqa: E402, F401  (notes the caller's logging before TensorFlow)
from bertclf.version import __version__  # noqa: E402

# Everything is loaded on first use: importing bertclf (the CLI's --help, the server,
# which never loads the training settings) imports neither TensorFlow nor more than it
# needs. Where each name lives is the code map in the README.
_WHERE = {
    "DataConfig": "bertclf.config.data",
    "ModelConfig": "bertclf.config.model",
    "RunConfig": "bertclf.config.run",
    "TrainConfig": "bertclf.config.train",
    "train": "bertclf.training.fine_tuning",
    "evaluate": "bertclf.evaluation.evaluator",
    "load_run": "bertclf.prediction.trained_run",
}

__all__ = [
    "DataConfig",
    "ModelConfig",
    "RunConfig",
    "TrainConfig",
    "__version__",
    "train",
    "evaluate",
    "load_run",
]


def __getattr__(name):
    if name in _WHERE:
        from bertclf.tflog import quiet

        with quiet():  # TensorFlow's start-up lines, when this import loads it
            return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(name)


def __dir__():
    return __all__
