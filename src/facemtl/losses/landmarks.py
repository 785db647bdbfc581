"""Landmark regression losses (pure functions; masked like :mod:`facemtl.losses.masked`)."""

from __future__ import annotations

import torch

from facemtl.losses.masked import masked_mean


def landmark_l2_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """TCDCN's landmark objective ``1/2 ||y - f(x)||^2``, averaged over labelled faces.

    The squared norm runs over all ``2K`` coordinates of a face (summed, not averaged,
    as in the paper's objective); faces without a landmark label count for nothing, and
    a batch without any gives an exact zero that stays in the graph.

    Args:
        pred: ``[B, K, 2]`` predicted (x, y), normalised to the crop.
        target: ``[B, K, 2]`` labels in the same units (anything where ``mask`` is False).
        mask: ``[B]`` bool, True for faces with a landmark label.

    Returns:
        Scalar tensor.
    """
    labelled = mask.bool().view(-1, *([1] * (pred.dim() - 1)))
    safe_target = torch.where(labelled, target, pred.detach())  # unlabelled rows: zero error, finite
    per_face = 0.5 * (pred - safe_target).pow(2).flatten(1).sum(dim=1)
    return masked_mean(per_face, mask)
