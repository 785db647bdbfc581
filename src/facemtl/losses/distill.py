"""Per-sample distillation terms from a teacher's outputs (Deng, Chen, Shi; ABAW 2020).

Each function returns one value per sample, ``[B]``, so a method can average them over
whichever rows it likes (labelled or not):

- multi-label (AU): binary cross-entropy between student logits and ``sigmoid(teacher)``;
  no temperature. Its minimum is the teacher's binary entropy, not 0.
- categorical (EXPR) and binned regression (VA): ``KL(softmax(t / T) || softmax(s / T))``;
  VA sums the valence and arousal distributions. The official code has no ``T**2`` factor
  (soft-target gradients shrink by 1/T^2); ``t_squared=True`` adds it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def au_distill(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """``[B, A]`` logits each -> ``[B]`` BCE to the teacher's probabilities, averaged over AUs."""
    targets = torch.sigmoid(teacher.detach())
    return F.binary_cross_entropy_with_logits(student, targets, reduction="none").mean(dim=1)


def kl_distill(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.5, t_squared: bool = False) -> torch.Tensor:
    """``KL(softmax(teacher / T) || softmax(student / T))`` over the last dim, summed over any middle dims.

    Args:
        student: ``[B, C]`` or ``[B, D, C]`` logits (VA: ``[B, 2, bins]``).
        teacher: the same shape.
        temperature: T (1.5 in the official code).
        t_squared: multiply by T^2 (Hinton's gradient-scale correction; off in the official code).

    Returns:
        ``[B]``; the batch mean is torch's ``batchmean`` reduction.
    """
    log_p_student = F.log_softmax(student / temperature, dim=-1)
    log_p_teacher = F.log_softmax(teacher.detach() / temperature, dim=-1)
    kl = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(dim=-1)
    kl = kl.reshape(kl.shape[0], -1).sum(dim=1)
    return kl * temperature**2 if t_squared else kl


def regression_distill(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """``[B, D]`` values -> ``[B]`` squared error to the teacher, summed over D (VA without bins)."""
    return (student - teacher.detach()).pow(2).reshape(student.shape[0], -1).sum(dim=1)
