"""Valence / arousal (continuous regression) metrics.

The ABAW metric is Lin's concordance correlation coefficient per dimension, computed with
**population** (``ddof=0``) statistics as in the official ``CCC_score`` (``np.std``). The challenge
ranks by the mean of the valence and arousal CCC (the Deng et al. code prints their sum).
"""

from __future__ import annotations

import numpy as np

__all__ = ["ccc", "rmse", "va_metrics"]


def _as_pair(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(y, dtype=np.float64)
    if a.ndim != 1 or b.ndim != 1:
        raise ValueError(f"expected 1-D vectors, got shapes {a.shape} and {b.shape}")
    if a.shape != b.shape:
        raise ValueError(f"vectors differ in length: {a.shape[0]} vs {b.shape[0]}")
    if a.size == 0:
        raise ValueError("VA metrics: no labelled samples")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("VA values must be finite (filter invalid labels such as -5 first)")
    return a, b


def ccc(x: np.ndarray, y: np.ndarray) -> float:
    """Lin's concordance correlation coefficient with population (``ddof=0``) statistics.

    ``CCC = 2 cov(x, y) / (var(x) + var(y) + (mean(x) - mean(y))**2)``, all moments with
    ``ddof=0``. This equals the ``2 rho sigma_x sigma_y / (...)`` form, but computing the
    covariance directly avoids the 0/0 of ``rho`` for constant inputs. The formula is symmetric
    in ``x`` and ``y``.

    Constant inputs: if exactly one vector is constant the covariance is 0 and the result is 0.0;
    if both are constant and equal (denominator 0) the vectors agree perfectly and the result is
    **1.0**; if both are constant but different the result is 0.0.

    Args:
        x: [N] values (e.g. predictions).
        y: [N] values (e.g. targets).

    Returns:
        CCC in [-1, 1].

    Raises:
        ValueError: on empty, non-finite or mismatched input.
    """
    a, b = _as_pair(x, y)
    ma, mb = a.mean(), b.mean()
    da, db = a - ma, b - mb
    var_a = float(np.mean(da * da))
    var_b = float(np.mean(db * db))
    cov = float(np.mean(da * db))
    denom = var_a + var_b + float(ma - mb) ** 2
    if denom == 0.0:
        return 1.0
    return float(np.clip(2.0 * cov / denom, -1.0, 1.0))


def rmse(x: np.ndarray, y: np.ndarray) -> float:
    """Root-mean-square error ``sqrt(mean((x - y)**2))``.

    Args:
        x: [N] values.
        y: [N] values.

    Returns:
        RMSE >= 0.
    """
    a, b = _as_pair(x, y)
    return float(np.sqrt(np.mean((a - b) ** 2)))


def va_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """All valence/arousal metrics, JSON-serialisable.

    Args:
        y_true: [N, 2] targets, column 0 valence, column 1 arousal.
        y_pred: [N, 2] predictions in the same layout.

    Returns:
        Dict with keys ``ccc_valence``, ``ccc_arousal``, ``ccc_mean`` (their mean, the ABAW
        ranking value), ``rmse_valence``, ``rmse_arousal``.

    Raises:
        ValueError: if there are no labelled samples, or on invalid input.
    """
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    if t.ndim != 2 or t.shape[1] != 2:
        raise ValueError(f"y_true must be [N, 2] (valence, arousal), got shape {t.shape}")
    if p.shape != t.shape:
        raise ValueError(f"y_pred shape {p.shape} differs from y_true shape {t.shape}")
    if t.shape[0] == 0:
        raise ValueError("VA metrics: no labelled samples")
    ccc_v = ccc(p[:, 0], t[:, 0])
    ccc_a = ccc(p[:, 1], t[:, 1])
    return {
        "ccc_valence": ccc_v,
        "ccc_arousal": ccc_a,
        "ccc_mean": float((ccc_v + ccc_a) / 2.0),
        "rmse_valence": rmse(p[:, 0], t[:, 0]),
        "rmse_arousal": rmse(p[:, 1], t[:, 1]),
    }
