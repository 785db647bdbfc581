"""Epoch batch plans for incompletely labelled data, and the balanced samplers of Deng et al.

A plan is the epoch's list of batches, each a list of dataset positions, seeded by
``(train.seed, epoch)`` so a resumed run redraws exactly the same epoch. Two modes
(``data.batching``):

- ``mixed``: batches of any faces; per-task masks pick the rows each loss sees
  (:func:`epoch_batches`, or a weighted draw when balancing).
- ``per_task`` (Deng, Chen, Shi, ABAW 2020): every step holds one sub-batch of
  ``train.batch_size`` faces per task, drawn from the faces labelled for that task and
  concatenated in task order; the epoch ends when the *shortest* task pool runs out. The
  network sees the concatenation in one forward pass, so BatchNorm statistics are over all
  sub-batches of the step (the official code forwards each sub-batch separately). A face
  labelled for several tasks may be drawn into several sub-batches; every draw brings
  all its labels.

Balancing (``data.balance``: ``none``, ``auto`` = au+expr+va, or e.g. ``au+expr``) draws a
task's pool with replacement, ``len(pool)`` draws per epoch, by:

- ``au``: ML-ROS (multi-label random oversampling), :func:`ml_ros_clones`;
- ``expr``: weight 1 / count of the face's class;
- ``va``: weight 1 / count of the face's cell in a 20 x 20 valence-arousal histogram.

In ``mixed`` mode, each face's weight is the mean over its balanced tasks of that task's
weight (normalised to mean 1 over the task's pool; faces without such a label weigh 1), and
``N`` faces are drawn with replacement.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from facemtl.config import DataConfig
from facemtl.va_bins import digitize_va

BALANCED_TASKS = ("au", "expr", "va")


def epoch_batches(num_samples: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The training batches of one epoch: a permutation seeded by (seed, epoch), last partial batch dropped.

    Dropping it keeps BatchNorm away from batches of one sample; if the dataset is smaller
    than one batch the whole dataset is one batch.
    """
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(num_samples, generator=generator).tolist()
    count = max(num_samples // batch_size, 1)
    return [order[i * batch_size : (i + 1) * batch_size] for i in range(count)]


def _row_masks(dataset: Any) -> dict[str, np.ndarray]:
    """Per-position ``[N]`` bool "has a label for task" (a resampled mix maps positions to faces)."""
    order = getattr(dataset, "order", None)
    out = {}
    for task, mask in dataset.mask.items():
        rows = mask.reshape(len(mask), -1).any(dim=1).numpy()
        out[task] = rows if order is None else rows[np.asarray(order)]
    return out


def _labels(dataset: Any, task: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-position labels and masks of one task as numpy arrays."""
    order = getattr(dataset, "order", None)
    labels, mask = dataset.labels[task].numpy(), dataset.mask[task].numpy()
    if order is not None:
        labels, mask = labels[np.asarray(order)], mask[np.asarray(order)]
    return labels, mask


def balanced_tasks(balance: str, tasks: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The tasks ``data.balance`` balances among the enabled ``tasks``."""
    if balance == "none":
        return ()
    chosen = BALANCED_TASKS if balance == "auto" else tuple(balance.split("+"))
    return tuple(t for t in BALANCED_TASKS if t in chosen and t in tasks)


# -- the three samplers --------------------------------------------------------------------
def ml_ros_clones(
    labels: np.ndarray, mask: np.ndarray | None = None, mean_ir: float = 2.0, max_clone: float = 0.5,
    group: int = 32, rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, bool]:
    """ML-ROS clone counts (Charte et al.; as in the official Deng et al. sampler).

    ``IRLbl_j = max_k(pos_k) / pos_j``; labels with ``IRLbl_j > mean_ir`` are minority labels.
    Positives of each minority label are cloned in groups of ``group`` (drawn at random with
    replacement) until its IRLbl is at most ``mean_ir``; a clone adds to every label the face
    has. Cloning stops once ``max_clone * N`` clones are made.

    Args:
        labels: ``[N, A]`` 0/1 labels.
        mask: ``[N, A]`` bool, True where labelled (None: all).
        mean_ir: the MeanIR threshold (2.0 preset in the official code).
        max_clone: cap on the clones as a fraction of N.
        group: clones per round and label.
        rng: random generator (seeded by the caller).

    Returns:
        ``(clones [N] int, capped)``: how often each face is cloned, and whether the cap stopped it.
    """
    rng = rng or np.random.default_rng(0)
    positive = (np.asarray(labels) > 0.5) & (np.ones_like(labels, bool) if mask is None else np.asarray(mask, bool))
    n = len(positive)
    pos = positive.sum(axis=0).astype(np.float64)
    present = pos > 0  # IRLbl of a label without positives is undefined: nothing to clone
    clones = np.zeros(n, dtype=np.int64)
    budget, cloned = int(max_clone * n), 0

    def minority() -> np.ndarray:
        irl = np.where(present, pos.max() / np.maximum(pos, 1), 0.0)
        return np.flatnonzero(present & (irl > mean_ir))

    while len(labels_left := minority()):
        for j in labels_left:
            if j not in minority():
                continue
            if cloned >= budget:
                return clones, True
            pick = rng.choice(np.flatnonzero(positive[:, j]), size=min(group, budget - cloned), replace=True)
            np.add.at(clones, pick, 1)
            pos += positive[pick].sum(axis=0)
            cloned += len(pick)
    return clones, False


def ml_ros_weights(clones: np.ndarray, official: bool = False) -> np.ndarray:
    """Sampling weights from clone counts: ``(1 + clones) / N`` (a clone is one more copy).

    ``official=True`` reproduces the official code's bug, ``max(clones, 1) / N``: a face
    cloned once weighs the same as one never cloned.
    """
    counts = np.maximum(clones, 1) if official else 1 + clones
    return counts / len(clones)


def class_weights(classes: np.ndarray) -> np.ndarray:
    """``1 / count(class)`` per face (EXPR's sampler)."""
    _, inverse, counts = np.unique(np.asarray(classes), return_inverse=True, return_counts=True)
    return 1.0 / counts[inverse.reshape(-1)]


def va_histogram_weights(va: np.ndarray, bins: int = 20) -> np.ndarray:
    """``1 / count`` of the face's cell in a ``bins x bins`` valence-arousal histogram over [-1, 1]^2."""

    cells = digitize_va(torch.as_tensor(np.asarray(va, np.float64)), bins).numpy()
    return class_weights(cells[:, 0] * bins + cells[:, 1])


def task_weights(dataset: Any, task: str, pool: np.ndarray, data: DataConfig, rng: np.random.Generator) -> np.ndarray:
    """Normalised sampling weights (sum 1) over ``pool`` for one balanced task."""
    labels, mask = _labels(dataset, task)
    if task == "au":
        clones, _ = ml_ros_clones(labels[pool], mask[pool], data.mlros_mean_ir, data.mlros_max_clone, rng=rng)
        weights = ml_ros_weights(clones, data.mlros_official_weights)
    elif task == "expr":
        weights = class_weights(labels[pool])
    else:
        weights = va_histogram_weights(labels[pool])
    return weights / weights.sum()


# -- epoch plans ----------------------------------------------------------------------------
def _epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    return np.random.default_rng([seed, epoch, 6])


def task_pools(dataset: Any, tasks: tuple[str, ...] | list[str]) -> dict[str, np.ndarray]:
    """Positions of the faces labelled for each enabled task (tasks without any are left out)."""
    rows = _row_masks(dataset)
    pools = {t: np.flatnonzero(rows[t]) for t in tasks if t in rows}
    return {t: p for t, p in pools.items() if len(p)}


def per_task_batches(
    dataset: Any, data: DataConfig, tasks: tuple[str, ...] | list[str], batch_size: int, seed: int, epoch: int
) -> list[list[int]]:
    """One sub-batch of ``batch_size`` per task per step, steps = the shortest pool's batch count."""
    rng = _epoch_rng(seed, epoch)
    pools = task_pools(dataset, tasks)
    balanced = balanced_tasks(data.balance, tasks)
    orders = {}
    for task, pool in pools.items():
        if task in balanced:
            orders[task] = rng.choice(pool, size=len(pool), replace=True, p=task_weights(dataset, task, pool, data, rng))
        else:
            orders[task] = rng.permutation(pool)
    if not orders:
        return []
    steps = min(max(len(order) // batch_size, 1) for order in orders.values())
    return [
        [int(i) for task in orders for i in orders[task][k * batch_size : (k + 1) * batch_size]] for k in range(steps)
    ]


def _mixed_balanced(dataset: Any, data: DataConfig, tasks: tuple[str, ...], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    rng = _epoch_rng(seed, epoch)
    n = len(dataset)
    total, count = np.zeros(n), np.zeros(n)
    for task, pool in task_pools(dataset, balanced_tasks(data.balance, tasks)).items():
        total[pool] += task_weights(dataset, task, pool, data, rng) * len(pool)
        count[pool] += 1
    weights = np.where(count > 0, total / np.maximum(count, 1), 1.0)
    order = rng.choice(n, size=n, replace=True, p=weights / weights.sum())
    steps = max(n // batch_size, 1)
    return [order[k * batch_size : (k + 1) * batch_size].tolist() for k in range(steps)]


def plan_epoch(
    dataset: Any, data: DataConfig, tasks: tuple[str, ...] | list[str], batch_size: int, seed: int, epoch: int
) -> list[list[int]]:
    """The training batches of one epoch under ``data.batching`` and ``data.balance``.

    Args:
        dataset: the training split (``mask`` per task, ``labels``; a resampled mix's
            ``order`` is respected).
        data: the data config (``batching``, ``balance``, ML-ROS keys).
        tasks: the model's enabled tasks.
        batch_size: batch size (``per_task``: per task sub-batch).
        seed, epoch: seed the plan, so resume redraws the same epoch.

    Returns:
        A list of batches, each a list of dataset positions.
    """
    if data.batching == "per_task":
        batches = per_task_batches(dataset, data, tasks, batch_size, seed, epoch)
        if batches:
            return batches
    if balanced_tasks(data.balance, tasks) and task_pools(dataset, balanced_tasks(data.balance, tasks)):
        return _mixed_balanced(dataset, data, tuple(tasks), batch_size, seed, epoch)

    return epoch_batches(len(dataset), batch_size, seed, epoch)
