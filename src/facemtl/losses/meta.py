"""Pieces of sample-reweighting meta-learning (L2RW / Meta-Weight-Net / MAL): per-sample
losses, weighted reductions and the differentiable virtual SGD step.

Pure functions: the method (:mod:`facemtl.methods.mal`) owns the meta-net and the state.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: how one task's weighted loss is normalised (methods.md §1(a): the paper leaves it open)
TASK_NORMALIZATIONS = ("none", "batch", "sum")
#: the method's choices: ``relative`` is ``batch`` per task, divided by :func:`mean_sample_weight` over the tasks
NORMALIZATIONS = (*TASK_NORMALIZATIONS, "relative")


def au_entry_losses(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy per AU entry, ``[B, A]``; 0 where ``mask`` is False.

    Args:
        logits: ``[B, A]``.
        target: ``[B, A]`` in {0, 1}.
        mask: ``[B, A]`` bool.
    """
    mask = mask.bool()
    safe = torch.where(mask, target, torch.zeros_like(target)).to(logits.dtype)
    per_entry = F.binary_cross_entropy_with_logits(logits, safe, reduction="none")
    return torch.where(mask, per_entry, torch.zeros_like(per_entry))


def expr_sample_losses(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Cross-entropy per sample, ``[B]``; 0 where ``mask`` is False.

    Args:
        logits: ``[B, C]``.
        target: ``[B]`` class ids (anything where unlabelled).
        mask: ``[B]`` bool.
    """
    mask = mask.bool()
    per_sample = F.cross_entropy(logits, torch.where(mask, target, torch.zeros_like(target)), reduction="none")
    return torch.where(mask, per_sample, torch.zeros_like(per_sample))


def weighted_task_loss(values: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor, normalize: str = "batch") -> torch.Tensor:
    """Per-sample-weighted loss of one task over its labelled entries.

    Args:
        values: per-entry losses ``[B, ...]`` (``[B, A]`` for AUs, ``[B]`` for expressions).
        mask: bool, same shape as ``values``.
        weight: ``[B]`` per-sample weights, broadcast over a sample's entries.
        normalize: ``batch``: ``sum(w v) / #labelled`` (Meta-Weight-Net; with w = 1 exactly
            the plain masked mean); ``sum``: ``sum(w v) / sum(w)`` (L2RW; a uniform change of
            the weights then changes nothing); ``none``: ``sum(w v)``, the paper's
            equation literally (scales with batch size and AU count).

    Returns:
        A scalar; an exact 0 still in the graph when nothing is labelled.
    """
    mask = mask.bool()
    w = weight.reshape(-1, *([1] * (values.dim() - 1))).expand_as(values)
    weighted = torch.where(mask, values * w, torch.zeros_like(values)).sum()
    if normalize == "batch":
        return weighted / mask.sum().clamp_min(1)
    if normalize == "sum":
        return weighted / torch.where(mask, w, torch.zeros_like(w)).sum().clamp_min(1e-12)
    if normalize == "none":
        return weighted
    raise ValueError(f"unknown normalisation {normalize!r}; valid: {', '.join(TASK_NORMALIZATIONS)}")


def reweighted_task_losses(entries: dict[str, torch.Tensor], mask: dict[str, torch.Tensor],
                           weights: dict[str, torch.Tensor], normalize: str = "batch") -> dict[str, torch.Tensor]:
    """Each task's per-sample-weighted, normalised loss (:func:`weighted_task_loss`); linear in
    ``entries`` for fixed weights.

    Args:
        entries: task -> per-entry losses (``[B, A]``, ``[B]``).
        mask: task -> bool mask of the same shape.
        weights: task -> ``[B]`` per-sample weights (every task of ``entries``).
        normalize: one of :data:`NORMALIZATIONS`; ``relative`` is ``batch`` divided by
            :func:`mean_sample_weight` over the tasks, so a uniform scale of every weight cancels and
            only relative weights are learned.
    """
    per_task = "batch" if normalize == "relative" else normalize
    losses = {task: weighted_task_loss(values, mask[task], weights[task], per_task) for task, values in entries.items()}
    if normalize == "relative":
        labelled = {task: mask[task].reshape(len(mask[task]), -1).bool().any(dim=1) for task in entries}
        scale = mean_sample_weight({task: weights[task] for task in entries}, labelled).clamp_min(1e-12)
        losses = {task: loss / scale for task, loss in losses.items()}
    return losses


def mean_sample_weight(weights: dict[str, torch.Tensor], labelled: dict[str, torch.Tensor]) -> torch.Tensor:
    """The mean weight of every labelled sample of every weighted task: ``relative``'s divisor.

    Dividing the ``batch``-normalised task losses by it makes a uniform change of all weights a
    no-op: the meta-net can move weight between tasks and between samples, but not make the
    step larger. Without this, a one-step look-ahead favours larger weights whenever the
    training gradient agrees with the meta gradient at all (the short-horizon bias of
    one-step meta-optimisation), and every weight drifts to its maximum.

    Args:
        weights: task -> ``[B]`` per-sample weights.
        labelled: task -> ``[B]`` bool, samples with a label for the task.
    """
    total = sum((w * labelled[task].to(w.dtype)).sum() for task, w in weights.items())
    count = sum(labelled[task].sum() for task in weights)
    return total / count.clamp_min(1)


def virtual_sgd_step(params: dict[str, torch.Tensor], loss: torch.Tensor, lr: float) -> dict[str, torch.Tensor]:
    """One differentiable SGD step ``theta* = theta - lr * grad(loss)``, the real ``params`` untouched.

    The gradient is taken with ``create_graph=True``, so ``theta*`` stays a function of
    whatever ``loss`` depends on besides ``params`` (the meta-net's weights): a loss of
    ``theta*`` can be differentiated back to them (second order through this step). The
    graph of ``loss`` is retained for a later real backward pass.

    Args:
        params: name -> tensor requiring grad (``nn.Parameter`` or not).
        loss: scalar depending on (some of) ``params``.
        lr: the step size alpha.

    Returns:
        name -> ``theta*`` tensor (the input tensor itself where ``loss`` does not depend on it).
    """
    names = list(params)
    grads = torch.autograd.grad(loss, [params[n] for n in names], create_graph=True, retain_graph=True, allow_unused=True)
    return {n: params[n] if g is None else params[n] - lr * g for n, g in zip(names, grads)}
