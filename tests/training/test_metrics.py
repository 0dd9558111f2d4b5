"""Classification metrics against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from training.metrics import classification_report, confusion_matrix, roc_auc, roc_curve


def test_confusion_matrix_rows_are_the_truth() -> None:
    m = confusion_matrix(np.array([0, 0, 1, 2, 2]), np.array([0, 1, 1, 2, 0]), 3)
    assert m.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 1]]


def test_roc_by_hand_with_a_tie() -> None:
    positive = np.array([1, 0, 1, 0])
    scores = np.array([0.9, 0.8, 0.8, 0.1])
    fpr, tpr, _ = roc_curve(positive, scores)
    assert fpr.tolist() == [0.0, 0.0, 0.5, 1.0]
    assert tpr.tolist() == [0.0, 0.5, 1.0, 1.0]
    # pairs (pos, neg): (0.9 > 0.8) 1, (0.9 > 0.1) 1, (0.8 = 0.8) 0.5, (0.8 > 0.1) 1 -> 3.5/4
    assert roc_auc(positive, scores) == pytest.approx(0.875)
    assert np.isnan(roc_auc(np.array([1, 1]), np.array([0.2, 0.3])))


def test_report_by_hand() -> None:
    labels = np.array([0, 0, 1, 1, 2, 2])
    probabilities = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1],
                              [0.1, 0.6, 0.3], [0.1, 0.2, 0.7], [0.5, 0.1, 0.4]])
    report = classification_report(labels, probabilities, ["alert", "low", "drowsy"])
    assert report["accuracy"] == pytest.approx(4 / 6)
    alert = report["per_class"]["alert"]
    # alert: predicted for samples 0 and 5 (one right), 2 true -> P 0.5, R 0.5, F1 0.5
    assert (alert["precision"], alert["recall"], alert["f1"]) == (0.5, 0.5, 0.5)
    low = report["per_class"]["low"]  # predicted 1, 2, 3: P 2/3, R 1, F1 0.8
    assert low["precision"] == pytest.approx(2 / 3) and low["f1"] == pytest.approx(0.8)
    drowsy = report["per_class"]["drowsy"]  # predicted 4 only: P 1, R 0.5, F1 2/3
    assert drowsy["f1"] == pytest.approx(2 / 3)
    assert report["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert report["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    # drowsy vs rest: scores of drowsy 0.7, 0.4 against 0.1, 0.1, 0.1, 0.3 -> AUC 1
    assert drowsy["roc_auc"] == 1.0
