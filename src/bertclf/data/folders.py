"""Class-per-folder trees, read as `keras.utils.text_dataset_from_directory` reads them.

One sub-folder per class, `.txt` files found recursively in sorted order. The file
list (and so the Keras-compatible split, `bertclf.data.splitting`) follows Keras' class
order, the sub-folder names sorted as strings; the label ids then follow
`labels.label_order`, like every other format's.
"""

from __future__ import annotations

import os
from pathlib import Path

from bertclf.data.labels import BAD_LABEL_CHARS
from bertclf.data.tables import ReadReport, decode
from bertclf.errors import DataError

TEXT_SUFFIXES = (".txt",)


def index_folder(directory: Path) -> tuple[list[str], list[str]]:
    """(`.txt` files, the class name of each) under `directory`'s class sub-folders, in
    Keras' unshuffled order: sub-folders sorted by name, files found recursively, sorted."""
    if not directory.is_dir():
        raise DataError(f"{directory}: no such folder; pass a folder with one sub-folder per class")
    class_names = sorted(
        d for d in os.listdir(directory) if (directory / d).is_dir() and not d.startswith(".")
    )
    if len(class_names) < 2:
        raise DataError(
            f"{directory}: found {len(class_names)} class sub-folder(s) {class_names}; "
            "a classifier needs at least two, one sub-folder per class"
        )
    paths: list[str] = []
    classes: list[str] = []
    for name in class_names:
        if any(c in name for c in BAD_LABEL_CHARS):  # labels.txt holds one label a line
            raise DataError(
                f"{directory}: class folder {name!r} has a line break in its name, and a "
                "label must be one line; rename the folder"
            )
        found = 0
        for root, _, files in sorted(os.walk(directory / name), key=lambda x: x[0]):
            for fname in sorted(files):
                if fname.lower().endswith(TEXT_SUFFIXES):
                    paths.append(os.path.join(root, fname))
                    classes.append(name)
                    found += 1
        if not found:
            raise DataError(
                f"{directory / name}: class folder has no .txt files; add some or remove it"
            )
    return paths, classes


def read_files(paths: list[str]) -> tuple[list[str], list[int], ReadReport]:
    """(texts, positions into `paths` of the files kept, report): empty files are skipped
    and counted, bytes decoded by `bertclf.data.tables.decode`."""
    report = ReadReport()
    texts, kept = [], []
    for i, path in enumerate(paths):
        text = decode(Path(path).read_bytes(), path, report)
        if text is not None:
            texts.append(text)
            kept.append(i)
    return texts, kept, report
