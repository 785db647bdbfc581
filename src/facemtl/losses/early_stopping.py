"""TCDCN's task-wise early-stopping criterion (Zhang et al., ECCV 2014), as pure functions.

An auxiliary task ``a`` is switched off after epoch ``t`` when::

            k * med_S E_tr(j)                 E_val(t) - min_{j<=t} E_val(j)
    ---------------------------------  *  ----------------------------------  >  epsilon
    sum_S E_tr(j)  -  k * med_S E_tr(j)       lambda_a * min_{j<=t} E_val(j)

          (training has stalled)                (validation has risen)

with ``S`` the *training strip*: the last ``k`` epochs ``t-k+1 .. t``.

- The first factor grows as the training loss stops falling within the strip: a loss
  that still drops fast has a few large early values pulling the sum well above ``k``
  times the median; a flat loss makes the denominator vanish. That vanishing
  denominator (also reached by an exactly linear strip, whose mean is its median, or
  exceeded by a strip whose last values fall sharply) is guarded: it is clamped to
  ``guard * k * median``, capping the factor at ``1 / guard``.
- The second factor is the relative rise of the validation loss above its best value
  so far, divided by the task's importance ``lambda_a``: important tasks need a larger
  rise. It is 0 whenever the current validation loss is the best so far, so a task
  whose validation loss keeps improving is never stopped.

The strip convention (``k`` values, so that a flat strip zeroes the denominator) is our
reading of the paper's ``j = t - k .. t``; the official code is not readable (encrypted
MATLAB p-code), so ``k`` and ``epsilon`` are configuration, not paper values.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def training_stall(strip: Sequence[float], guard: float = 1e-6) -> float:
    """First factor: ``k * med / (sum - k * med)`` over the strip, denominator guarded.

    Args:
        strip: the last ``k`` training losses, oldest first (``k >= 2``).
        guard: the denominator is at least ``guard * k * med``; the factor at most ``1 / guard``.

    Returns:
        A finite value >= 0 (0 when the median training loss is 0).
    """
    values = np.asarray(strip, dtype=np.float64)
    if values.ndim != 1 or len(values) < 2:
        raise ValueError(f"the training strip needs at least 2 losses, got {values.shape}")
    k, median = len(values), float(np.median(values))
    if median <= 0:
        return 0.0
    denominator = max(float(values.sum()) - k * median, guard * k * median)
    return k * median / denominator


def validation_rise(val_loss: float, val_best: float, importance: float, tiny: float = 1e-12) -> float:
    """Second factor: ``(E_val(t) - min E_val) / (lambda * min E_val)``, >= 0.

    Args:
        val_loss: the validation loss at epoch t.
        val_best: the smallest validation loss of epochs ``<= t`` (so ``val_best <= val_loss``).
        importance: the task's weight ``lambda_a`` (> 0).
        tiny: floor of the denominator (a best loss of 0).
    """
    if importance <= 0:
        raise ValueError(f"importance must be > 0, got {importance}")
    return max(val_loss - val_best, 0.0) / max(importance * val_best, tiny)


def stop_index(
    train_strip: Sequence[float], val_loss: float, val_best: float, importance: float, guard: float = 1e-6
) -> float:
    """The criterion's left-hand side for one auxiliary task at epoch t (stop when > epsilon).

    Args:
        train_strip: training losses of the last ``k`` epochs, oldest first.
        val_loss: validation loss at t.
        val_best: minimum validation loss over epochs ``<= t``.
        importance: ``lambda_a`` (> 0).
        guard: see :func:`training_stall`.

    Returns:
        A finite value >= 0; exactly 0 when ``val_loss`` is the best so far.
    """
    rise = validation_rise(val_loss, val_best, importance)
    return 0.0 if rise == 0.0 else training_stall(train_strip, guard) * rise


def stop_index_from_history(
    train_losses: Sequence[float], val_losses: Sequence[float], k: int, importance: float, guard: float = 1e-6
) -> float:
    """:func:`stop_index` at the last epoch of full per-epoch histories (0 before ``k`` epochs).

    Args:
        train_losses: ``E_tr(0..t)``.
        val_losses: ``E_val(0..t)``, same length.
        k: strip length (>= 2).
        importance: ``lambda_a``.
        guard: see :func:`training_stall`.
    """
    if len(train_losses) != len(val_losses):
        raise ValueError(f"{len(train_losses)} training but {len(val_losses)} validation losses")
    if k < 2:
        raise ValueError(f"strip length k must be at least 2, got {k}")
    if len(train_losses) < k:
        return 0.0
    return stop_index(list(train_losses)[-k:], float(val_losses[-1]), float(min(val_losses)), importance, guard)
