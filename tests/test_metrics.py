"""The F1 computed from counts (the loop's confusion matrix, the threshold search) is
scikit-learn's."""

import numpy as np
import pytest
from sklearn.metrics import f1_score

from bertclf.evaluation.metrics import compute_metrics, f1_from_counts, macro_f1_from_confusion


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_macro_f1_from_a_confusion_matrix_is_scikit_learns(seed):
    rng = np.random.default_rng(seed)
    true = rng.integers(0, 4, 60)
    predicted = np.where(rng.random(60) < 0.6, true, rng.integers(0, 4, 60))
    predicted[predicted == 3] = 0  # class 3 is never predicted: its F1 is 0
    confusion = np.zeros((4, 4))
    np.add.at(confusion, (true, predicted), 1)
    expected = f1_score(true, predicted, labels=range(4), average="macro", zero_division=0)
    assert macro_f1_from_confusion(confusion) == pytest.approx(expected)
    probs = np.eye(4)[predicted]  # the report's path, through scikit-learn
    assert compute_metrics(true, probs, list("abcd"))["macro_f1"] == pytest.approx(expected)


def test_f1_from_counts_is_zero_where_nothing_was_true_or_predicted():
    np.testing.assert_allclose(f1_from_counts([2, 0, 0], [1, 0, 3], [1, 0, 0]), [2 / 3, 0, 0])
