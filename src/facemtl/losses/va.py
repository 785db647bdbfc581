"""Valence/arousal as 20-bin classification plus CCC (Deng, Chen, Shi; ABAW 2020).

Targets in [-1, 1] are digitised with edges ``linspace(-1, 1, bins + 1)`` (1.0 clamped into
the last bin); the continuous prediction is the expectation of the bin softmax over bin
values. The official code's values are ``linspace(-1, 1, bins)`` ("code", the default),
which are *not* the bin centres; ``"centres"`` uses the true centres ``-1 + (b + 0.5) * 2 / bins``.
"""

from __future__ import annotations

import torch

from facemtl.losses.masked import ccc_loss, masked_cross_entropy
from facemtl.va_bins import digitize_va


def va_expectation(logits: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``sum_b softmax(logits)_b * values_b`` over the last dim: ``[..., bins] -> [...]``."""
    return torch.softmax(logits, dim=-1) @ values.to(logits.dtype)


def va_bin_loss(
    logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, ccc_weight: float, prediction: torch.Tensor
) -> torch.Tensor:
    """Per-dimension ``CE(bins) + ccc_weight * (1 - CCC(prediction, target))``, summed over V and A.

    Args:
        logits: ``[B, 2, bins]`` valence and arousal bin logits.
        target: ``[B, 2]`` values in [-1, 1].
        mask: ``[B]`` bool, True where the VA label exists.
        ccc_weight: lambda_ccc (1 in the official code; 0 = cross-entropy only).
        prediction: ``[B, 2]`` the continuous prediction, :func:`va_expectation` of ``logits``
            over the head's bin values (the binned head outputs it as ``va``).
    """
    bins = logits.shape[-1]
    index = digitize_va(target, bins).to(logits.device)
    loss = logits.sum() * 0.0
    for dim in range(logits.shape[1]):
        loss = loss + masked_cross_entropy(logits[:, dim], index[:, dim], mask)
    if ccc_weight:
        # ccc_loss averages its columns; x 2 makes it the official sum over V and A.
        loss = loss + ccc_weight * 2 * ccc_loss(prediction, target, mask)
    return loss
