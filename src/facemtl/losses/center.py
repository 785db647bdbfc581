"""DACL's sparse centre loss and its hand-written centre update (Farzaneh & Qi, WACV 2021).

See ``facemtl.methods.dacl`` for how they combine, and methods.md §3 for the spec.
"""

from __future__ import annotations

import torch


def sparse_center_loss(feat: torch.Tensor, attention: torch.Tensor, centers: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``L_SC = 1/(2B) sum_i sum_j a_ij (x_ij - c_{y_i, j})^2``.

    With ``a = 1`` this is the ordinary centre loss ``1/(2B) sum_i ||x_i - c_{y_i}||^2``.
    Its gradient w.r.t. the attention is ``(x - c)^2 / (2B) >= 0``, so on its own it pushes
    every weight down (only the small lambda keeps that mild).

    Args:
        feat: ``[B, D]`` embeddings x.
        attention: ``[B, D]`` weights a in (0, 1).
        centers: ``[K, D]`` class centres; detach them to keep autograd off the centres.
        target: ``[B]`` class ids.
    """
    if feat.shape[0] == 0:
        return feat.sum() * 0.0
    diff = feat - centers[target]
    return (attention * diff.pow(2)).sum() / (2 * feat.shape[0])


def center_update_direction(feat: torch.Tensor, attention: torch.Tensor, centers: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The official code's centre "gradient" ``g_k = -sum_{i: y_i = k} a_i * (x_i - c_k) / (1 + n_k)``.

    Not the true gradient of ``lambda * L_SC``: it is neither scaled by lambda nor divided by
    B, and it is damped by ``1 + n_k`` (Wen et al.'s centre-loss update). Classes absent from
    the batch get zero. The official optimiser then steps ``c <- c - alpha * g`` (alpha 0.5).

    Args:
        feat: ``[B, D]``; attention: ``[B, D]``; centers: ``[K, D]``; target: ``[B]``.

    Returns:
        ``[K, D]`` update direction.
    """
    pulled = attention * (feat - centers[target])
    total = torch.zeros_like(centers).index_add_(0, target, pulled)
    counts = torch.bincount(target, minlength=centers.shape[0]).to(centers.dtype)
    return -total / (1 + counts).unsqueeze(1)
