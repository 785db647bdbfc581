"""Valence/arousal bins (Deng, Chen, Shi; ABAW 2020): where a value falls and what a bin stands for.

Shared by the binned VA head (:mod:`facemtl.models.heads`), its loss (:mod:`facemtl.losses.va`)
and VA-balanced sampling (:mod:`facemtl.data.sampling`), so it sits below all three.
"""

from __future__ import annotations

import torch

from facemtl.errors import FacemtlError

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
