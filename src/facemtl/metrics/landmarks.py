"""Facial landmark metrics: normalised mean error (NME), failure rate, cumulative error curve.

Landmarks are [N, K, 2] arrays of (x, y) points, K = 5 (MTFL scheme: left eye, right eye, nose,
left mouth corner, right mouth corner) or K = 68 (iBUG / 300-W scheme, 0-based indices).

Per face, ``NME = (1/K) sum_k ||pred_k - gt_k||_2 / d`` with ``d`` a normaliser computed from
the **ground-truth** landmarks. Distances are Euclidean in whatever coordinates are passed in:
pass pixel coordinates (or coordinates scaled equally in x and y); coordinates normalised by
image width and height separately distort distances on non-square images.

Failure is defined **per face**: a face fails when its NME is strictly greater than the
threshold (0.10 by default). ECCV TCDCN also reports failure per landmark (fraction of
landmarks whose normalised error exceeds 0.1); that variant is not computed here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "NORMALIZERS",
    "cumulative_error_curve",
    "landmark_metrics",
    "landmark_normalizer",
    "nme_per_sample",
]

#: Valid values of ``kind`` for :func:`landmark_normalizer`.
NORMALIZERS: tuple[str, ...] = ("inter_ocular", "inter_pupil", "bbox", "diagonal")


def _as_landmarks(y: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(y, dtype=np.float64)
    if a.ndim != 3 or a.shape[2] != 2:
        raise ValueError(f"{name} must be [N, K, 2] (x, y) landmarks, got shape {a.shape}")
    if a.shape[0] == 0:
        raise ValueError("landmark metrics: no labelled samples")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} holds non-finite coordinates")
    return a


def landmark_normalizer(y_true: np.ndarray, kind: str = "inter_ocular") -> np.ndarray:
    """Per-face normalising distance computed from ground-truth landmarks.

    Kinds:

    - ``inter_ocular``: K = 5: distance between the two eye centres, points 0 and 1 (the MTFL /
      TCDCN protocol, where the 5-point "eyes" are eye centres); K = 68: distance between the
      outer eye corners, points 36 and 45 (300-W convention).
    - ``inter_pupil``: K = 5: same as ``inter_ocular`` (the eye points already are pupils);
      K = 68: distance between the centroids of the eye contours, points 36-41 and 42-47
      (TCDCN's 300-W protocol).
    - ``bbox``: ``sqrt(w * h)`` of the axis-aligned bounding box of the ground-truth landmarks
      (any K).
    - ``diagonal``: ``sqrt(w**2 + h**2)`` of that box (any K).

    Args:
        y_true: [N, K, 2] ground-truth landmarks.
        kind: one of :data:`NORMALIZERS`.

    Returns:
        [N] float64 normalising distances.

    Raises:
        ValueError: for an unknown kind, a K the kind does not support, or invalid input.
    """
    g = _as_landmarks(y_true, "y_true")
    k = g.shape[1]
    if kind not in NORMALIZERS:
        raise ValueError(f"unknown landmark normaliser {kind!r}; valid kinds: {', '.join(NORMALIZERS)}")
    if kind in ("inter_ocular", "inter_pupil"):
        if k == 5:
            left, right = g[:, 0], g[:, 1]
        elif k == 68:
            if kind == "inter_ocular":
                left, right = g[:, 36], g[:, 45]
            else:
                left, right = g[:, 36:42].mean(axis=1), g[:, 42:48].mean(axis=1)
        else:
            raise ValueError(
                f"normaliser {kind!r} supports K = 5 or 68 landmarks, got K = {k}; "
                f"use 'bbox' or 'diagonal' for other schemes"
            )
        return np.linalg.norm(left - right, axis=-1)
    extent = g.max(axis=1) - g.min(axis=1)  # [N, 2] = (w, h)
    w, h = extent[:, 0], extent[:, 1]
    if kind == "bbox":
        return np.sqrt(w * h)
    return np.sqrt(w * w + h * h)


def _distances(
    y_pred: np.ndarray, y_true: np.ndarray, normalizer: str | np.ndarray | float
) -> tuple[np.ndarray, np.ndarray]:
    """Validated ([N, K] point-to-point distances, [N] positive normalisers)."""
    p = _as_landmarks(y_pred, "y_pred")
    g = _as_landmarks(y_true, "y_true")
    if p.shape != g.shape:
        raise ValueError(f"y_pred shape {p.shape} differs from y_true shape {g.shape}")
    if isinstance(normalizer, str):
        d = landmark_normalizer(g, normalizer)
    else:
        d = np.asarray(normalizer, dtype=np.float64)
        if d.ndim == 0:
            d = np.full(g.shape[0], float(d))
        if d.shape != (g.shape[0],):
            raise ValueError(f"normalizer array must be [N] = [{g.shape[0]}], got shape {d.shape}")
    bad = ~(np.isfinite(d) & (d > 0))
    if bad.any():
        raise ValueError(
            f"landmark normaliser is zero or invalid for {int(bad.sum())} face(s), first at index {int(np.argmax(bad))}"
        )
    return np.linalg.norm(p - g, axis=-1), d


def nme_per_sample(
    y_pred: np.ndarray,
    y_true: np.ndarray,
    normalizer: str | np.ndarray = "inter_ocular",
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Normalised mean point-to-point error of each face.

    Args:
        y_pred: [N, K, 2] predicted landmarks.
        y_true: [N, K, 2] ground-truth landmarks.
        normalizer: a kind accepted by :func:`landmark_normalizer` (computed from ``y_true``), or
            an [N] array (or a scalar) of precomputed positive distances.
        mask: [N, K] bool, True for the points to score (e.g. visible ones); None = all points.
            Each face must keep at least one point.

    Returns:
        [N] float64: mean over scored points of ``||pred - gt||_2``, divided by the normaliser
        (mean first, then divide, so equal distances give an exactly representable ratio).

    Raises:
        ValueError: on invalid input, a zero normaliser, or a face with no scored point.
    """
    dist, d = _distances(y_pred, y_true, normalizer)
    if mask is None:
        return dist.mean(axis=1) / d
    m = np.asarray(mask)
    if m.shape != dist.shape or m.dtype != np.bool_:
        raise ValueError(f"mask must be a bool [N, K] = {list(dist.shape)} array, got {m.dtype} {m.shape}")
    counts = m.sum(axis=1)
    if np.any(counts == 0):
        raise ValueError(f"face {int(np.argmax(counts == 0))} has no scored landmark in mask")
    return np.where(m, dist, 0.0).sum(axis=1) / counts / d


def cumulative_error_curve(
    nme_values: np.ndarray, max_error: float = 0.1, steps: int = 101
) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative error distribution (CED) of per-face NMEs.

    Args:
        nme_values: [N] per-face NMEs.
        max_error: largest error on the curve's x axis.
        steps: number of x values, ``linspace(0, max_error, steps)``.

    Returns:
        ``(errors, fraction)``: two [steps] float64 arrays; ``fraction[i]`` is the fraction of faces
        with ``NME <= errors[i]``.

    Raises:
        ValueError: on empty input, ``max_error <= 0`` or ``steps < 2``.
    """
    e = np.asarray(nme_values, dtype=np.float64).reshape(-1)
    if e.size == 0:
        raise ValueError("cumulative error curve: no labelled samples")
    if not max_error > 0:
        raise ValueError(f"max_error must be > 0, got {max_error}")
    if steps < 2:
        raise ValueError(f"steps must be >= 2, got {steps}")
    grid = np.linspace(0.0, float(max_error), int(steps))
    sorted_e = np.sort(e)
    fraction = np.searchsorted(sorted_e, grid, side="right") / e.size
    return grid, fraction.astype(np.float64)


def landmark_metrics(
    y_pred: np.ndarray,
    y_true: np.ndarray,
    normalizer: str | np.ndarray = "inter_ocular",
    failure_threshold: float = 0.10,
) -> dict[str, Any]:
    """All landmark metrics, JSON-serialisable. Errors are fractions (0.05 = 5 %), not percent.

    Args:
        y_pred: [N, K, 2] predicted landmarks.
        y_true: [N, K, 2] ground-truth landmarks.
        normalizer: normaliser kind or [N] precomputed distances (see :func:`nme_per_sample`).
        failure_threshold: a face fails when its NME is strictly greater than this.

    Returns:
        Dict with keys

        - ``nme``: mean over faces of the per-face NME;
        - ``failure_rate``: fraction of faces with NME > ``failure_threshold``;
        - ``nme_per_point``: [K] list, mean over faces of each point's normalised error;
        - ``auc``: area under the CED curve from 0 to ``failure_threshold``, divided by
          ``failure_threshold`` so it lies in [0, 1]. Computed exactly as
          ``mean over faces of max(0, 1 - NME / failure_threshold)`` (the limit of the usual
          trapezoid on a fine grid of :func:`cumulative_error_curve`).

    Raises:
        ValueError: if there are no labelled samples, or on invalid input.
    """
    if not failure_threshold > 0:
        raise ValueError(f"failure_threshold must be > 0, got {failure_threshold}")
    dist, d = _distances(y_pred, y_true, normalizer)
    nme = dist.mean(axis=1) / d
    per_point = dist / d[:, None]
    auc = np.mean(np.clip(1.0 - nme / failure_threshold, 0.0, None))
    return {
        "nme": float(np.mean(nme)),
        "failure_rate": float(np.mean(nme > failure_threshold)),
        "nme_per_point": [float(v) for v in per_point.mean(axis=0)],
        "auc": float(auc),
    }
