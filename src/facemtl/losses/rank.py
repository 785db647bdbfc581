"""The Self-Cure Network's losses and relabelling rule (Wang et al., CVPR 2020), as pure functions.

See ``facemtl.methods.scn`` for how they combine, and methods.md §2 for the spec.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from facemtl.losses.masked import masked_mean


def weighted_logit_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, importance: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """SCN's logit-weighted cross-entropy: CE of ``importance_i * logits_i``.

    ``L = -1/N sum_i log softmax(a_i z_i)[y_i]``. With ``a = 1`` it is plain CE; as
    ``a -> 0`` every class becomes equally likely and the loss tends to ``log C``, so a
    low-importance sample contributes a small, flat gradient. Since ``a > 0`` the argmax
    of the scaled logits is that of the logits.

    Args:
        logits: ``[B, C]`` class logits (bias included, as the official code scales both).
        target: ``[B]`` class ids.
        importance: ``[B]`` weights in (0, 1).
        mask: optional ``[B]`` bool, rows with an expression label.
    """
    if mask is None:
        mask = torch.ones_like(target, dtype=torch.bool)
    safe_target = torch.where(mask, target, torch.zeros_like(target))
    per_sample = F.cross_entropy(importance.unsqueeze(1) * logits, safe_target, reduction="none")
    return masked_mean(per_sample, mask)


def split_by_importance(importance: torch.Tensor, beta: float) -> torch.Tensor:
    """Bool ``[B]``: True for the high-importance group, the top ``int(beta * B)`` weights.

    ``int`` truncation as in the official code: B = 64, beta = 0.7 gives 44 high / 20 low;
    B = 47 gives 32 / 15.
    """
    num_high = int(importance.numel() * beta)
    high = torch.zeros_like(importance, dtype=torch.bool)
    high[torch.argsort(importance.detach(), descending=True)[:num_high]] = True
    return high


def rank_regularization(importance: torch.Tensor, beta: float = 0.7, margin: float = 0.15) -> tuple[torch.Tensor, torch.Tensor]:
    """SCN's rank regularisation ``max(0, margin - (mean_high - mean_low))``.

    Args:
        importance: ``[B]`` weights.
        beta: fraction of the batch in the high group.
        margin: delta_1, the required gap between the group means.

    Returns:
        ``(loss, high)``: the scalar loss (an exact zero still in the graph when either group
        is empty, e.g. a batch of one) and the bool ``[B]`` high-group membership.
    """
    high = split_by_importance(importance, beta)
    if bool(high.all()) or not bool(high.any()):
        return importance.sum() * 0.0, high
    gap = importance[high].mean() - importance[~high].mean()
    return torch.clamp(margin - gap, min=0.0), high


def relabel(probs: torch.Tensor, target: torch.Tensor, margin: float) -> torch.Tensor:
    """SCN's relabelling rule: the argmax class where ``P_max - P_target > margin``, else the target.

    Args:
        probs: ``[B, C]`` class probabilities (SCN uses the softmax of the importance-scaled logits).
        target: ``[B]`` current labels.
        margin: delta_2.

    Returns:
        ``[B]`` labels after relabelling.
    """
    p_max, arg_max = probs.max(dim=1)
    p_target = probs.gather(1, target.unsqueeze(1)).squeeze(1)
    return torch.where(p_max - p_target > margin, arg_max, target)
