"""Categorical face attribute metrics (gender, smile, glasses, pose...)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["attribute_metrics"]


def attribute_metrics(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    names: Sequence[str],
    mask: np.ndarray | None = None,
) -> dict[str, dict[str, float | int]]:
    """Accuracy of each attribute over its labelled samples.

    Args:
        y_true: [N, M] int true class index of each of the M attributes (any value where
            ``mask`` is False).
        y_pred: [N, M] int predicted class indices.
        names: M attribute names, index = column.
        mask: [N, M] bool, True where the label exists; None means all labelled.

    Returns:
        ``{name: {"accuracy": float, "num": int}}`` with ``num`` the number of labelled samples
        of that attribute. Attributes with no labelled sample are omitted.

    Raises:
        ValueError: if no attribute has a labelled sample, or on invalid input.
    """
    t = np.asarray(y_true)
    p = np.asarray(y_pred)
    names = list(names)
    if t.ndim != 2:
        raise ValueError(f"y_true must be [N, M], got shape {t.shape}")
    if p.shape != t.shape:
        raise ValueError(f"y_pred shape {p.shape} differs from y_true shape {t.shape}")
    if len(names) != t.shape[1]:
        raise ValueError(f"got {len(names)} attribute names for {t.shape[1]} attribute columns")
    if mask is None:
        m = np.ones(t.shape, dtype=bool)
    else:
        m = np.asarray(mask)
        if m.shape != t.shape or m.dtype != np.bool_:
            raise ValueError(f"mask must be a bool array of shape {t.shape}, got {m.dtype} {m.shape}")
    out: dict[str, dict[str, float | int]] = {}
    for j, name in enumerate(names):
        rows = m[:, j]
        num = int(rows.sum())
        if num == 0:
            continue
        correct = t[rows, j] == p[rows, j]
        out[name] = {"accuracy": float(np.mean(correct)), "num": num}
    if not out:
        raise ValueError("attribute metrics: no labelled samples")
    return out
