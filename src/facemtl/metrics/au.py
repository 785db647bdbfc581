"""Facial action unit (multi-label) metrics and per-AU threshold tuning.

Conventions:

- Labels are [N, A] arrays of 0/1 (one column per AU). An optional boolean ``mask`` [N, A]
  marks the labelled entries; entries where ``mask`` is False are ignored everywhere (their
  label value is never read, so it may be -1, NaN or anything else).
- A probability ``p`` is predicted positive when ``p >= threshold``. This is the convention of a
  precision-recall curve, so a threshold returned by :func:`tune_thresholds` reproduces exactly
  the operating point it was chosen at. (The official Deng et al. code applies ``p > threshold``
  to its tuned thresholds, which drops the sample sitting on the threshold.)
- Per-AU F1 follows scikit-learn's ``zero_division=0`` convention: an AU with no positive labels
  and no positive predictions has F1 = 0.0.

The ABAW 2020 AU score (Deng et al. ``AU_metric``) is
``0.5 * mean over AUs of F1 + 0.5 * accuracy over all labelled AU x frame entries``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

__all__ = ["au_metrics", "f1_per_au", "tune_thresholds"]


def _prepare(
    y_true: np.ndarray, other: np.ndarray, mask: np.ndarray | None, other_name: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Check shapes and return (labels as bool with masked entries False, other, mask as bool)."""
    t = np.asarray(y_true)
    o = np.asarray(other)
    if t.ndim != 2:
        raise ValueError(f"y_true must be [N, A], got shape {t.shape}")
    if o.shape != t.shape:
        raise ValueError(f"{other_name} shape {o.shape} differs from y_true shape {t.shape}")
    if mask is None:
        m = np.ones(t.shape, dtype=bool)
    else:
        m = np.asarray(mask)
        if m.shape != t.shape:
            raise ValueError(f"mask shape {m.shape} differs from y_true shape {t.shape}")
        if m.dtype != np.bool_:
            raise ValueError(f"mask must be boolean, got dtype {m.dtype}")
    labelled = t[m]
    if labelled.size and not np.all((labelled == 0) | (labelled == 1)):
        raise ValueError("labelled AU entries must be 0 or 1 (mark unlabelled entries with mask)")
    t_bool = np.zeros(t.shape, dtype=bool)
    t_bool[m] = labelled == 1
    return t_bool, o, m


def _binary_pred(y_pred: np.ndarray, m: np.ndarray) -> np.ndarray:
    values = y_pred[m]
    if values.size and not np.all((values == 0) | (values == 1)):
        raise ValueError("y_pred must hold 0/1 predictions (use au_metrics for probabilities)")
    p = np.zeros(y_pred.shape, dtype=bool)
    p[m] = values == 1
    return p


def _f1_counts(t: np.ndarray, p: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-AU F1 ([A]) and number of labelled entries ([A]) from bool arrays."""
    tp = np.sum(t & p & m, axis=0).astype(np.float64)
    fp = np.sum(~t & p & m, axis=0).astype(np.float64)
    fn = np.sum(t & ~p & m, axis=0).astype(np.float64)
    denom = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return f1, m.sum(axis=0)


def f1_per_au(y_true: np.ndarray, y_pred: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """F1 score of each AU column.

    Args:
        y_true: [N, A] 0/1 labels (any value where ``mask`` is False).
        y_pred: [N, A] 0/1 predictions.
        mask: [N, A] bool, True where the label exists; None means all labelled.

    Returns:
        [A] float64 F1 per AU, computed over that AU's labelled entries only. 0.0 when the AU has
        no positive labels and no positive predictions among them (``zero_division=0``), and
        also when it has no labelled entries at all.
    """
    t, o, m = _prepare(y_true, y_pred, mask, "y_pred")
    p = _binary_pred(o, m)
    f1, _ = _f1_counts(t, p, m)
    return f1


def _thresholds_array(thresholds: float | np.ndarray, num_aus: int) -> np.ndarray:
    thr = np.asarray(thresholds, dtype=np.float64)
    if thr.ndim == 0:
        thr = np.full(num_aus, float(thr))
    if thr.shape != (num_aus,):
        raise ValueError(f"thresholds must be a float or a [{num_aus}] array, got shape {thr.shape}")
    if not np.all(np.isfinite(thr)):
        raise ValueError("thresholds must be finite")
    return thr


def au_metrics(
    y_true: np.ndarray,
    y_prob: np.ndarray,
    au_names: Sequence[str],
    mask: np.ndarray | None = None,
    thresholds: float | np.ndarray = 0.5,
) -> dict[str, Any]:
    """All AU metrics, JSON-serialisable.

    Args:
        y_true: [N, A] 0/1 labels (any value where ``mask`` is False).
        y_prob: [N, A] predicted probabilities (or any scores comparable to ``thresholds``).
        au_names: A AU names, index = column.
        mask: [N, A] bool, True where the label exists; None means all labelled.
        thresholds: one threshold for all AUs or an [A] array; positive iff ``prob >= threshold``.

    Returns:
        Dict with keys

        - ``f1``: {AU name: F1}; AUs with no labelled entry are **omitted**;
        - ``f1_mean``: mean of the F1 values in ``f1``;
        - ``accuracy``: fraction of correct 0/1 decisions over all labelled AU x frame entries
          (the flattened matrix, as ABAW);
        - ``abaw_score``: ``0.5 * f1_mean + 0.5 * accuracy``;
        - ``thresholds``: the [A] thresholds used, as a list.

    Raises:
        ValueError: if no entry is labelled, or on invalid input.
    """
    names = list(au_names)
    t, prob, m = _prepare(y_true, y_prob, mask, "y_prob")
    if len(names) != t.shape[1]:
        raise ValueError(f"got {len(names)} AU names for {t.shape[1]} AU columns")
    if not m.any():
        raise ValueError("AU metrics: no labelled samples")
    prob = prob.astype(np.float64)
    if not np.all(np.isfinite(prob[m])):
        raise ValueError("y_prob holds non-finite values at labelled entries")
    thr = _thresholds_array(thresholds, t.shape[1])
    p = np.zeros(t.shape, dtype=bool)
    p[m] = (prob >= thr[None, :])[m]
    f1, counts = _f1_counts(t, p, m)
    has_labels = counts > 0
    f1_dict = {name: float(v) for name, v, ok in zip(names, f1, has_labels, strict=True) if ok}
    f1_mean = float(np.mean(f1[has_labels]))
    acc = float(np.mean(t[m] == p[m]))
    return {
        "f1_mean": f1_mean,
        "f1": f1_dict,
        "accuracy": acc,
        "abaw_score": float(0.5 * f1_mean + 0.5 * acc),
        "thresholds": [float(v) for v in thr],
    }


def _operating_points(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate thresholds (distinct scores, ascending) with TP and predicted-positive counts.

    At threshold ``thresholds[i]`` the rule ``score >= thresholds[i]`` yields ``tp[i]`` true
    positives out of ``npred[i]`` predicted positives.
    """
    order = np.argsort(-scores, kind="stable")
    s = scores[order]
    y = labels[order].astype(np.int64)
    # last index of every run of equal scores (in descending order)
    last = np.r_[np.nonzero(np.diff(s))[0], s.size - 1]
    tp = np.cumsum(y)[last]
    npred = last + 1
    # reverse to ascending thresholds
    return s[last][::-1], tp[::-1], npred[::-1]


def _best_threshold(labels: np.ndarray, prob: np.ndarray, mode: str) -> float:
    """One AU's threshold among its operating points (see :func:`tune_thresholds`)."""
    num_pos = float(labels.sum())
    cand, tp, npred = _operating_points(labels, prob)
    tp, npred = tp.astype(np.float64), npred.astype(np.float64)
    if mode == "f1":
        return float(cand[int(np.argmax(2 * tp / (npred + num_pos)))])  # 2TP / (2TP + FP + FN)
    # |TP/npred - TP/num_pos| = TP |num_pos - npred| / (npred num_pos): exact zero at break-even
    return float(cand[int(np.argmin(tp * np.abs(num_pos - npred) / (npred * num_pos)))])


def tune_thresholds(
    y_true: np.ndarray,
    y_prob: np.ndarray,
    mask: np.ndarray | None = None,
    mode: Literal["f1", "break_even"] = "f1",
    default: float = 0.5,
) -> np.ndarray:
    """Per-AU decision thresholds chosen on validation data.

    The candidates for an AU are the distinct probabilities of its labelled entries (the
    thresholds of a precision-recall curve); at candidate ``t`` an entry is positive iff
    ``prob >= t``.

    - ``mode="f1"``: the candidate with the highest F1.
    - ``mode="break_even"``: the candidate where ``|precision - recall|`` is smallest, the
      precision-recall break-even point. This is what the official Deng et al. ``val.py`` does
      (``thresholds[argmin |precision - recall|]`` on ``sklearn.metrics.precision_recall_curve``),
      **not** the F1-optimal point.

    Ties go to the smallest candidate threshold (the first ``argmin``/``argmax`` over ascending
    thresholds, as the official code on scikit-learn's ascending thresholds).

    Args:
        y_true: [N, A] 0/1 labels (any value where ``mask`` is False).
        y_prob: [N, A] predicted probabilities.
        mask: [N, A] bool, True where the label exists; None means all labelled.
        mode: ``"f1"`` or ``"break_even"``.
        default: threshold returned for an AU with no labelled entry or no positive label, where
            precision/recall are undefined.

    Returns:
        [A] float64 thresholds.

    Raises:
        ValueError: if no entry is labelled, or on an unknown mode / invalid input.
    """
    if mode not in ("f1", "break_even"):
        raise ValueError(f"unknown threshold mode {mode!r}; valid modes: 'f1', 'break_even'")
    t, prob, m = _prepare(y_true, y_prob, mask, "y_prob")
    if not m.any():
        raise ValueError("AU threshold tuning: no labelled samples")
    prob = prob.astype(np.float64)
    if not np.all(np.isfinite(prob[m])):
        raise ValueError("y_prob holds non-finite values at labelled entries")
    out = np.full(t.shape[1], float(default), dtype=np.float64)
    for j in range(t.shape[1]):
        labels = t[m[:, j], j]
        if labels.any():  # precision and recall are undefined without a positive label
            out[j] = _best_threshold(labels, prob[m[:, j], j], mode)
    return out
