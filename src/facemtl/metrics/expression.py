"""Facial expression (single-label classification) metrics.

All functions take integer class indices (not logits or one-hot vectors) and return plain
Python values. Per-class F1 follows scikit-learn's ``zero_division=0`` convention: a class
with no true and no predicted samples has F1 = 0.0.

The ABAW expression score (ABAW 2020, Deng et al. ``EXPR_metric``) is
``0.67 * macro_f1 + 0.33 * accuracy``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "accuracy",
    "confusion_matrix",
    "expression_metrics",
    "f1_per_class",
    "macro_f1",
    "mean_class_accuracy",
]

ABAW_F1_WEIGHT = 0.67
ABAW_ACC_WEIGHT = 0.33


def _as_labels(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert a pair of class-index vectors to int64 [N] arrays."""
    t = np.asarray(y_true)
    p = np.asarray(y_pred)
    if t.ndim != 1 or p.ndim != 1:
        raise ValueError(f"expected 1-D class-index vectors, got shapes {t.shape} and {p.shape}")
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length: {t.shape[0]} vs {p.shape[0]}")
    if t.size == 0:
        raise ValueError("expression metrics: no labelled samples")
    for name, a in (("y_true", t), ("y_pred", p)):
        is_int = np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.bool_)
        if not is_int and not (np.all(np.isfinite(a)) and np.all(a == np.round(a))):
            raise ValueError(f"{name} must hold integer class indices")
    t = t.astype(np.int64)
    p = p.astype(np.int64)
    if num_classes is not None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        for name, a in (("y_true", t), ("y_pred", p)):
            if a.min() < 0 or a.max() >= num_classes:
                raise ValueError(
                    f"{name} holds class indices outside [0, {num_classes - 1}] "
                    f"(min {int(a.min())}, max {int(a.max())}); filter unlabelled samples first"
                )
    return t, p


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Confusion matrix of counts.

    Args:
        y_true: [N] int, true class indices in ``[0, num_classes)``.
        y_pred: [N] int, predicted class indices in ``[0, num_classes)``.
        num_classes: C.

    Returns:
        [C, C] int64 array; entry ``[i, j]`` counts samples of true class ``i`` predicted as ``j``
        (rows = true, columns = predicted).

    Raises:
        ValueError: on empty input, mismatched shapes or out-of-range indices.
    """
    t, p = _as_labels(y_true, y_pred, num_classes)
    cm = np.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return cm.reshape(num_classes, num_classes).astype(np.int64)


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Fraction of samples whose predicted class equals the true class.

    Args:
        y_true: [N] int class indices.
        y_pred: [N] int class indices.

    Returns:
        Accuracy in [0, 1].
    """
    t, p = _as_labels(y_true, y_pred)
    return float(np.mean(t == p))


def mean_class_accuracy(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float:
    """Mean of per-class recall over the classes present in ``y_true``.

    Classes with no true samples are left out of the mean (their recall is undefined).

    Args:
        y_true: [N] int class indices.
        y_pred: [N] int class indices.
        num_classes: C.

    Returns:
        Mean class accuracy (balanced accuracy) in [0, 1].
    """
    cm = confusion_matrix(y_true, y_pred, num_classes)
    support = cm.sum(axis=1)
    present = support > 0
    recall = np.diag(cm)[present] / support[present]
    return float(np.mean(recall))


def f1_per_class(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """One-vs-rest F1 of each class.

    ``F1_c = 2 TP_c / (2 TP_c + FP_c + FN_c)``; 0.0 when the denominator is 0 (class neither
    present nor predicted), as scikit-learn's ``zero_division=0``.

    Args:
        y_true: [N] int class indices.
        y_pred: [N] int class indices.
        num_classes: C.

    Returns:
        [C] float64 array of F1 values.
    """
    cm = confusion_matrix(y_true, y_pred, num_classes).astype(np.float64)
    tp = np.diag(cm)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    denom = 2 * tp + fp + fn
    return np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float:
    """Unweighted mean of the per-class F1 over **all** ``num_classes`` classes.

    A class absent from both ``y_true`` and ``y_pred`` counts with F1 = 0. This differs from
    ``sklearn.metrics.f1_score(average="macro")`` without ``labels=`` (used by the official ABAW
    code), which averages only over classes that occur in ``y_true`` or ``y_pred``; the two agree
    whenever every class occurs, as on the Aff-Wild2 validation set.

    Args:
        y_true: [N] int class indices.
        y_pred: [N] int class indices.
        num_classes: C.

    Returns:
        Macro F1 in [0, 1].
    """
    return float(np.mean(f1_per_class(y_true, y_pred, num_classes)))


def expression_metrics(y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """All expression metrics, JSON-serialisable.

    Args:
        y_true: [N] int true class indices in ``[0, len(class_names))``.
        y_pred: [N] int predicted class indices.
        class_names: C class names, index = class id.

    Returns:
        Dict with keys ``accuracy``, ``mean_class_accuracy``, ``macro_f1`` (over all C classes,
        see :func:`macro_f1`), ``f1`` ({class name: F1}), ``confusion_matrix`` ([C][C] list of
        int, rows = true) and ``abaw_score`` (``0.67 * macro_f1 + 0.33 * accuracy``).

    Raises:
        ValueError: if there are no labelled samples, or on invalid input.
    """
    names = list(class_names)
    num_classes = len(names)
    if num_classes == 0:
        raise ValueError("class_names is empty")
    t, p = _as_labels(y_true, y_pred, num_classes)
    cm = confusion_matrix(t, p, num_classes)
    f1 = f1_per_class(t, p, num_classes)
    acc = accuracy(t, p)
    mf1 = float(np.mean(f1))
    return {
        "accuracy": acc,
        "mean_class_accuracy": mean_class_accuracy(t, p, num_classes),
        "macro_f1": mf1,
        "f1": {name: float(v) for name, v in zip(names, f1, strict=True)},
        "confusion_matrix": cm.tolist(),
        "abaw_score": float(ABAW_F1_WEIGHT * mf1 + ABAW_ACC_WEIGHT * acc),
    }
