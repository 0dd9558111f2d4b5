"""Classification metrics in plain numpy: ROC curves and AUC, binary accuracy/precision/
recall/F1, and for K classes accuracy, macro-F1, per-class recall, one-vs-rest ROC-AUC and
the confusion matrix: the figures every trainer and evaluator reports."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from streams.errors import InputError


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    """(classes, classes) counts; row = true class, column = predicted class."""
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (labels.astype(np.int64), predicted.astype(np.int64)), 1)
    return matrix


def roc_curve(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC points of binary ``scores`` (higher = more positive) against 0/1 ``labels``.

    labels, scores (N,) -> (fpr, tpr, thresholds), each (K + 1,) for K distinct scores: point k
    counts as positive every sample with score >= thresholds[k]; the first point is (0, 0) at
    threshold +inf, the last (1, 1). Tied scores move along one diagonal segment. Raises
    InputError unless both classes occur."""
    y = np.asarray(labels).reshape(-1).astype(np.int64)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y.shape != s.shape:
        raise InputError(f"labels {y.shape} and scores {s.shape} differ in shape")
    if not np.all(np.isfinite(s)):
        raise InputError("scores must be finite")
    positives, negatives = int((y == 1).sum()), int((y != 1).sum())
    if positives == 0 or negatives == 0:
        raise InputError(f"a ROC curve needs both classes, got {positives} positive and "
                         f"{negatives} negative samples")
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last_of_group = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tp = np.cumsum(y == 1)[last_of_group]
    fp = np.cumsum(y != 1)[last_of_group]
    fpr = np.r_[0.0, fp / negatives]
    tpr = np.r_[0.0, tp / positives]
    return fpr, tpr, np.r_[np.inf, s[last_of_group]]


def auc(x: np.ndarray, y: np.ndarray) -> float:
    """Area under the piecewise-linear curve through (x, y) (trapezoids; x non-decreasing)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2))


def roc_auc(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float:
    """Area under the ROC curve; NaN when only one class occurs (no curve exists)."""
    y = np.asarray(labels).reshape(-1)
    if not ((y == 1).any() and (y != 1).any()):
        return float("nan")
    fpr, tpr, _ = roc_curve(labels, scores)
    return auc(fpr, tpr)


def binary_metrics(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray,
                   threshold: float = 0.5) -> dict[str, float]:
    """Accuracy, and precision, recall, F1 of the positive class (1) with predictions
    ``scores >= threshold``, plus ROC-AUC (NaN without both classes). Precision is 0 when
    nothing is predicted positive, recall 0 when nothing is positive."""
    y = np.asarray(labels).reshape(-1).astype(np.int64) == 1
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    pred = s >= threshold
    tp = int((pred & y).sum())
    precision = tp / int(pred.sum()) if pred.any() else 0.0
    recall = tp / int(y.sum()) if y.any() else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"accuracy": float((pred == y).mean()) if len(y) else float("nan"),
            "precision": precision, "recall": recall, "f1": f1, "auc": roc_auc(y, s)}


def classification_report(labels: np.ndarray, probabilities: np.ndarray,
                          class_names: Sequence[str]) -> dict[str, Any]:
    """labels (N,) class indices, probabilities (N, K) -> accuracy, macro-F1, per-class
    precision/recall/F1 and one-vs-rest ROC-AUC, macro AUC, confusion matrix (rows true)."""
    k = len(class_names)
    predicted = probabilities.argmax(axis=1)
    matrix = confusion_matrix(labels, predicted, k)
    true_counts, predicted_counts = matrix.sum(axis=1), matrix.sum(axis=0)
    hits = np.diag(matrix).astype(np.float64)
    recall = np.divide(hits, true_counts, out=np.zeros(k), where=true_counts > 0)
    precision = np.divide(hits, predicted_counts, out=np.zeros(k), where=predicted_counts > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(k),
                   where=(precision + recall) > 0)
    aucs = [roc_auc(labels == c, probabilities[:, c]) for c in range(k)]
    known = [a for a in aucs if not np.isnan(a)]
    return {
        "n": len(labels),
        "accuracy": float(hits.sum() / max(len(labels), 1)),
        "macro_f1": float(f1.mean()),
        "macro_roc_auc": float(np.mean(known)) if known else None,
        "per_class": {name: {"support": int(true_counts[c]), "precision": float(precision[c]),
                             "recall": float(recall[c]), "f1": float(f1[c]),
                             "roc_auc": None if np.isnan(aucs[c]) else aucs[c]}
                      for c, name in enumerate(class_names)},
        "confusion_matrix": matrix.tolist(),
    }
