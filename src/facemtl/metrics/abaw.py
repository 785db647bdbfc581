"""ABAW 2020 challenge scores (Kollias et al.; the official ``EXPR_metric``, ``AU_metric``, ``VA_metric``).

- EXPR: ``0.67 * macro-F1 + 0.33 * accuracy``. Macro-F1 here averages over the classes that
  occur in labels or predictions, as ``sklearn.metrics.f1_score(average="macro")`` in the
  official code (``expression_metrics`` averages over all C classes; the two agree when every
  class occurs).
- AU: ``0.5 * mean per-AU F1 + 0.5 * accuracy`` over the flattened AU x frame matrix.
- VA: CCC per dimension; the challenge ranks by the mean (the official code prints the sum).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from facemtl.metrics.va import ccc

EXPR_F1_WEIGHT, EXPR_ACC_WEIGHT = 0.67, 0.33


def _f1(tp: float, fp: float, fn: float) -> float:
    denom = 2 * tp + fp + fn
    return 2 * tp / denom if denom else 0.0


def expr_score(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """``{"f1", "accuracy", "score"}`` of class ids ``[N]``; F1 macro-averaged over occurring classes."""
    t, p = np.asarray(y_true).reshape(-1), np.asarray(y_pred).reshape(-1)
    if t.shape != p.shape or t.size == 0:
        raise ValueError(f"expr_score: need equal, non-empty label and prediction arrays, got {t.shape} and {p.shape}")
    classes = np.union1d(t, p)
    f1 = float(np.mean([_f1(np.sum((t == c) & (p == c)), np.sum((t != c) & (p == c)), np.sum((t == c) & (p != c))) for c in classes]))
    acc = float(np.mean(t == p))
    return {"f1": f1, "accuracy": acc, "score": EXPR_F1_WEIGHT * f1 + EXPR_ACC_WEIGHT * acc}


def au_score(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """``{"f1", "accuracy", "score"}`` of 0/1 matrices ``[N, A]``: mean per-AU F1, flattened accuracy."""
    t, p = np.asarray(y_true).astype(bool), np.asarray(y_pred).astype(bool)
    if t.ndim != 2 or t.shape != p.shape or t.size == 0:
        raise ValueError(f"au_score: need equal, non-empty [N, A] arrays, got {t.shape} and {p.shape}")
    f1 = float(np.mean([_f1(np.sum(t[:, j] & p[:, j]), np.sum(~t[:, j] & p[:, j]), np.sum(t[:, j] & ~p[:, j])) for j in range(t.shape[1])]))
    acc = float(np.mean(t == p))
    return {"f1": f1, "accuracy": acc, "score": 0.5 * f1 + 0.5 * acc}


def va_score(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """``{"ccc_valence", "ccc_arousal", "score"}`` of ``[N, 2]`` arrays; score = the mean CCC."""
    t, p = np.asarray(y_true, np.float64), np.asarray(y_pred, np.float64)
    v, a = ccc(p[:, 0], t[:, 0]), ccc(p[:, 1], t[:, 1])
    return {"ccc_valence": v, "ccc_arousal": a, "score": (v + a) / 2}


def abaw_summary(results: dict[str, Any]) -> dict[str, float]:
    """ABAW score per task found in an :func:`facemtl.engine.evaluate.evaluate` result, and their sum."""
    out: dict[str, float] = {}
    if "expr" in results:
        out["expr"] = float(results["expr"]["abaw_score"])
    if "au" in results:
        out["au"] = float(results["au"]["abaw_score"])
    if "va" in results:
        out["va"] = float(results["va"]["ccc_mean"])
    if out:
        out["total"] = float(sum(out.values()))
    return out
