"""bertclf: fine-tune a BERT-family encoder on labelled texts, export it, serve it.

The Python API mirrors the CLI:

>>> from bertclf import RunConfig, DataConfig, train, load_run  # doctest: +SKIP
>>> result = train(RunConfig(data=DataConfig("examples/demo_data"), out="runs/demo"))
>>> load_run("runs/demo").predict(["My card was charged twice"])
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bertclf.config import DataConfig, ModelConfig, RunConfig, TrainConfig  # noqa: E402
from bertclf.version import __version__  # noqa: E402

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
    # Lazy: importing bertclf (e.g. for the CLI's --help) must not import TensorFlow.
    if name == "train":
        from bertclf.training import train

        return train
    if name == "evaluate":
        from bertclf.evaluation import evaluate

        return evaluate
    if name == "load_run":
        from bertclf.run import load_run

        return load_run
    raise AttributeError(name)
