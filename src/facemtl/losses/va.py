"""Valence/arousal as 20-bin classification plus CCC (Deng, Chen, Shi; ABAW 2020).

Targets in [-1, 1] are digitised with edges ``linspace(-1, 1, bins + 1)`` (1.0 clamped into
the last bin); the continuous prediction is the expectation of the bin softmax over bin
values. The official code's values are ``linspace(-1, 1, bins)`` ("code", the default),
which are *not* the bin centres; ``"centres"`` uses the true centres ``-1 + (b + 0.5) * 2 / bins``.
"""

from __future__ import annotations

import torch

from facemtl.errors import FacemtlError
from facemtl.losses.masked import ccc_loss, masked_cross_entropy

BIN_VALUES = ("code", "centres")


def va_bin_values(bins: int, kind: str = "code", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The value of each bin, ``[bins]``: ``"code"`` (official ``linspace(-1, 1, bins)``) or ``"centres"``."""
    if kind == "code":
        return torch.linspace(-1.0, 1.0, bins, dtype=dtype)
    if kind == "centres":
        return -1.0 + (torch.arange(bins, dtype=dtype) + 0.5) * (2.0 / bins)
    raise FacemtlError(f"model.va_bin_values={kind!r} is not valid; choose from: {', '.join(BIN_VALUES)}")


def digitize_va(values: torch.Tensor, bins: int = 20) -> torch.Tensor:
    """Bin index of each value (any shape): edges ``linspace(-1, 1, bins + 1)``, 1.0 into the last bin.

    Bin b covers ``[-1 + 2b/bins, -1 + 2(b+1)/bins)``; values outside [-1, 1] are clamped.
    """
    edges = torch.linspace(-1.0, 1.0, bins + 1, dtype=torch.float64)
    index = torch.bucketize(values.detach().double(), edges, right=True) - 1
    return index.clamp_(0, bins - 1)


def va_expectation(logits: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``sum_b softmax(logits)_b * values_b`` over the last dim: ``[..., bins] -> [...]``."""
    return torch.softmax(logits, dim=-1) @ values.to(logits.dtype)


def va_bin_loss(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, ccc_weight: float, values: torch.Tensor) -> torch.Tensor:
    """Per-dimension ``CE(bins) + ccc_weight * (1 - CCC(expectation, target))``, summed over V and A.

    Args:
        logits: ``[B, 2, bins]`` valence and arousal bin logits.
        target: ``[B, 2]`` values in [-1, 1].
        mask: ``[B]`` bool, True where the VA label exists.
        ccc_weight: lambda_ccc (1 in the official code; 0 = cross-entropy only).
        values: ``[bins]`` bin values for the expectation.
    """
    bins = logits.shape[-1]
    index = digitize_va(target, bins).to(logits.device)
    loss = logits.sum() * 0.0
    for dim in range(logits.shape[1]):
        loss = loss + masked_cross_entropy(logits[:, dim], index[:, dim], mask)
    if ccc_weight:
        # ccc_loss averages its columns; x 2 makes it the official sum over V and A.
        loss = loss + ccc_weight * 2 * ccc_loss(va_expectation(logits, values), target, mask)
    return loss
