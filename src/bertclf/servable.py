"""The TensorFlow Serving disk contract, in one place: names, versions, signatures, metadata.

    BASE/NAME/VERSION/saved_model.pb, variables/, assets/labels.txt,
                      assets.extra/bertclf.json, assets.extra/tf_serving_warmup_requests

TF Serving serves every numeric VERSION directory under BASE/NAME (the highest by
default) and ignores anything else there, such as a hidden export still in progress.
Export, the loaders, the fresh-process check and `bertclf serve` all read this module;
it imports nothing heavy (a `tf.train.Example` is built with TensorFlow's protobufs,
imported only when one is asked for).
"""

from __future__ import annotations

import re
from pathlib import Path

NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
# ASCII digits only (str.isdigit() also accepts '²' and '١', which int() rejects or
# reads as 1), at most 18 of them so that the number fits TF Serving's int64.
VERSION_RE = re.compile(r"^[0-9]{1,18}$")

SAVED_MODEL = "saved_model.pb"
LABELS_ASSET = Path("assets") / "labels.txt"
METADATA = Path("assets.extra") / "bertclf.json"
# TF Serving replays this file's requests when it loads a version (bertclf.warmup).
WARMUP_REQUESTS = Path("assets.extra") / "tf_serving_warmup_requests"

DEFAULT_SIGNATURE = "serving_default"
CLASSIFY_SIGNATURE = "classify"
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
TEXT_INPUT = "text"  # serving_default's input, and the tf.Example feature classify reads
EXAMPLES_INPUT = "inputs"  # classify's input: serialized tf.Examples


def valid_name(name: str) -> bool:
    return bool(NAME_RE.match(name)) and not name.startswith(".")


def parse_version(name: str) -> int | None:
    """A version directory's number, or None for any other name (as TF Serving)."""
    return int(name) if VERSION_RE.match(name) else None


def versions(model_dir: Path) -> list[int]:
    """Numeric version directories under BASE/NAME, complete or not, sorted."""
    if not model_dir.is_dir():
        return []
    found = (parse_version(p.name) for p in model_dir.iterdir() if p.is_dir())
    return sorted(v for v in found if v is not None)


def published(model_dir: Path) -> list[tuple[int, Path]]:
    """(version, path) of the version directories that hold a SavedModel, sorted."""
    return [
        (v, model_dir / str(v))
        for v in versions(model_dir)
        if (model_dir / str(v) / SAVED_MODEL).is_file()
    ]


def is_version_dir(path: Path) -> bool:
    return (path / SAVED_MODEL).is_file()


def find_version_dir(path: Path) -> Path | None:
    """BASE/NAME/VERSION itself, or the highest version under BASE/NAME."""
    if is_version_dir(path):
        return path
    found = published(path)
    return found[-1][1] if found else None


def read_labels(version_dir: Path) -> list[str]:
    """The label names of an export, in output order (assets/labels.txt)."""
    text = (version_dir / LABELS_ASSET).read_text(encoding="utf-8")
    return [line for line in text.split("\n") if line]


def text_example(text: bytes) -> bytes:
    """A serialized tf.Example with one bytes feature `text`, as `classify` reads."""
    from tensorflow.core.example import example_pb2, feature_pb2

    feature = feature_pb2.Feature(bytes_list=feature_pb2.BytesList(value=[text]))
    example = example_pb2.Example(features=feature_pb2.Features(feature={TEXT_INPUT: feature}))
    return example.SerializeToString()
