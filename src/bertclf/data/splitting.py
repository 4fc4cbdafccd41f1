"""The train/validation split: Keras' random split, or a stratified one, and the rule between.

`keras`: the file list is shuffled as `keras.utils.text_dataset_from_directory` does
(`numpy.random.RandomState(seed)`) and the last `int(val_split * n)` examples are the
validation split, so a folder splits exactly as Keras splits it (tests/test_data.py).
`stratified`: each class gives the same share, `round(val_split * n_class)` (at least
one) of its examples, chosen with the same seeded shuffle. `auto` (the default) is
`keras` unless the smallest class would expect fewer than `MIN_VAL_PER_CLASS`
validation examples: with so few, the random split's share of that class swings by
about its square root (±4 of 16), which moves its validation recall, and with it
macro-F1 and the kept epoch, by chance.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from bertclf.errors import DataError

MIN_VAL_PER_CLASS = 20


def shuffle_like_keras(items: list, labels: list[int], seed: int) -> tuple[list, list[int]]:
    """Shuffle as `keras.utils.dataset_utils.index_directory` does (two equal RNGs)."""
    items, labels = list(items), list(labels)
    np.random.RandomState(seed).shuffle(items)
    np.random.RandomState(seed).shuffle(labels)
    return items, labels


def split_point(n: int, val_split: float, what: str) -> int:
    """Index where validation starts: the last `int(val_split * n)` examples."""
    num_val = int(val_split * n)
    if num_val < 1 or num_val >= n:
        raise DataError(
            f"{what}: {n} examples with --val-split {val_split} leave "
            f"{num_val} for validation and {n - num_val} for training; add data or change it"
        )
    return n - num_val


def resolve_split(choice: str, labels: list[int], val_split: float) -> str:
    """`auto` -> `stratified` when the smallest class expects < MIN_VAL_PER_CLASS, else `keras`."""
    if choice != "auto":
        return choice
    smallest = min(Counter(labels).values())
    return "stratified" if val_split * smallest < MIN_VAL_PER_CLASS else "keras"


def split_indices(
    labels: list[int], val_split: float, seed: int, method: str, what: str
) -> tuple[list[int], list[int]]:
    """(train, validation) positions into `labels`, after the seeded Keras shuffle.

    Both methods start from the same shuffled order; `keras` cuts its tail, `stratified`
    takes each class's first `round(val_split * n_class)` positions in that order.
    """
    order, shuffled = shuffle_like_keras(list(range(len(labels))), labels, seed)
    if method == "keras":
        cut = split_point(len(order), val_split, what)
        return order[:cut], order[cut:]
    val: list[int] = []
    for label, count in sorted(Counter(shuffled).items()):
        take = min(max(1, round(val_split * count)), count - 1) if count > 1 else 0
        val += [i for i, y in zip(order, shuffled, strict=True) if y == label][:take]
    if not val or len(val) == len(order):
        raise DataError(
            f"{what}: a stratified split of {len(order)} examples with --val-split {val_split} "
            "leaves no validation or no training data; add data or use --split keras"
        )
    chosen = set(val)
    return [i for i in order if i not in chosen], [i for i in order if i in chosen]
