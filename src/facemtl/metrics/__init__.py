"""Evaluation metrics for every facemtl task (numpy only).

Inputs are numpy arrays, outputs plain Python floats / ints / lists / dicts (JSON-serialisable).
The task-level functions raise ``ValueError("... no labelled samples")`` on empty input; callers
skip that task.

- ``expr``: :func:`expression_metrics` (accuracy, macro F1, ABAW score...).
- ``au``: :func:`au_metrics`, :func:`tune_thresholds` (F1-optimal or break-even).
- ``va``: :func:`va_metrics`, :func:`ccc`.
- ``lmk``: :func:`landmark_metrics`, :func:`nme_per_sample`.
- ``attr``: :func:`attribute_metrics`.
"""

from facemtl.metrics.attributes import attribute_metrics
from facemtl.metrics.au import au_metrics, f1_per_au, tune_thresholds
from facemtl.metrics.expression import expression_metrics
from facemtl.metrics.landmarks import cumulative_error_curve, landmark_metrics, landmark_normalizer, nme_per_sample
from facemtl.metrics.va import ccc, rmse, va_metrics

__all__ = [
    "attribute_metrics",
    "au_metrics",
    "ccc",
    "cumulative_error_curve",
    "expression_metrics",
    "f1_per_au",
    "landmark_metrics",
    "landmark_normalizer",
    "nme_per_sample",
    "rmse",
    "tune_thresholds",
    "va_metrics",
]
