"""Per-task losses that ignore missing labels.

Every function reduces over the *labelled* entries only (``mask`` True). When a batch has
no labelled entry for a task, the loss is an exact zero that stays in the autograd graph
(``pred.sum() * 0``), so the backward pass and DDP see the same parameters every step and
nothing becomes NaN.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _zero_like_graph(pred: torch.Tensor) -> torch.Tensor:
    return pred.sum() * 0.0


def masked_mean(values: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of ``values`` over entries where ``mask`` is True (optionally weighted).

    Args:
        values: per-entry losses, any shape.
        mask: bool, same shape as ``values``.
        weight: optional per-entry weights, same shape; the mean is ``sum(w*v) / count``
            (not divided by ``sum(w)``), the convention of SCN's weighted losses.
    """
    mask = mask.bool()
    if weight is not None:
        values = values * weight
    # No data-dependent branch (it would sync the GPU every step): with nothing labelled
    # the masked sum is 0 and the count is clamped to 1, an exact zero still in the graph.
    return torch.where(mask, values, torch.zeros_like(values)).sum() / mask.sum().clamp_min(1)


def masked_cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    sample_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy over labelled rows.

    Args:
        logits: ``[B, C]``.
        target: ``[B]`` class ids; anything (e.g. -1) where ``mask`` is False.
        mask: ``[B]`` bool.
        sample_weight: optional ``[B]`` per-sample weights.
    """
    safe_target = torch.where(mask.bool(), target, torch.zeros_like(target))
    per_sample = F.cross_entropy(logits, safe_target, reduction="none")
    return masked_mean(per_sample, mask, sample_weight)


def masked_bce(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy with logits over labelled entries of a multi-label target.

    Args:
        logits: ``[B, A]``.
        target: ``[B, A]`` in {0, 1} (soft targets in [0, 1] also work).
        mask: ``[B, A]`` bool: per-entry, so one sample may miss only some AUs (BP4D's 9).
    """
    safe_target = torch.where(mask.bool(), target, torch.zeros_like(target)).float()
    per_entry = F.binary_cross_entropy_with_logits(logits, safe_target, reduction="none")
    return masked_mean(per_entry, mask)


def masked_regression(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, kind: str = "mse") -> torch.Tensor:
    """Regression loss averaged over labelled samples (and over their coordinates).

    Args:
        pred: ``[B, ...]``.
        target: same shape as ``pred``.
        mask: ``[B]`` bool, one flag per sample.
        kind: ``mse``, ``l1`` or ``smooth_l1`` (beta 0.01, suited to coordinates in [0, 1]).
    """
    safe_target = torch.where(_expand(mask, pred), target, pred.detach())
    if kind == "mse":
        per_entry = F.mse_loss(pred, safe_target, reduction="none")
    elif kind == "l1":
        per_entry = F.l1_loss(pred, safe_target, reduction="none")
    elif kind == "smooth_l1":
        per_entry = F.smooth_l1_loss(pred, safe_target, reduction="none", beta=0.01)
    else:
        raise ValueError(f"unknown regression loss {kind!r}; valid: mse, l1, smooth_l1")
    per_sample = per_entry.flatten(1).mean(dim=1)
    return masked_mean(per_sample, mask)


def _expand(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return mask.bool().view(-1, *([1] * (like.dim() - 1))).expand_as(like)


def ccc_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``1 - CCC`` per output column, averaged over columns; labelled rows only.

    Args:
        pred: ``[B, D]`` (D = 2 for valence, arousal).
        target: ``[B, D]``.
        mask: ``[B]`` bool.

    Population statistics as in the metric; fewer than 2 labelled rows gives a zero loss
    (a CCC of one point is undefined).
    """
    mask = mask.bool()
    if int(mask.sum()) < 2:
        return _zero_like_graph(pred)
    x, y = pred[mask], target[mask].to(pred.dtype)
    x_mean, y_mean = x.mean(0), y.mean(0)
    covariance = ((x - x_mean) * (y - y_mean)).mean(0)
    denominator = x.var(0, unbiased=False) + y.var(0, unbiased=False) + (x_mean - y_mean) ** 2
    ccc = 2 * covariance / denominator.clamp_min(1e-8)
    return (1 - ccc).mean()


def attribute_cross_entropy(
    logits: dict[str, torch.Tensor], target: torch.Tensor, mask: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Cross-entropy per named attribute.

    Args:
        logits: ``{name: [B, C_name]}`` in the label space's attribute order.
        target: ``[B, M]`` class ids, column m = m-th attribute.
        mask: ``[B, M]`` bool.

    Returns:
        ``{name: loss}``; methods weight and sum them (TCDCN weights each attribute).
    """
    return {
        name: masked_cross_entropy(out, target[:, column], mask[:, column])
        for column, (name, out) in enumerate(logits.items())
    }
