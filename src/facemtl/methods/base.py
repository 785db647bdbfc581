"""The Method seam: how a paper's training strategy plugs into the one trainer.

A :class:`Method` is an ``nn.Module`` that owns the :class:`~facemtl.models.MultiTaskNet`
plus whatever the paper adds. Everything it owns lives in its ``state_dict`` so
checkpoints and resume cover it. The trainer calls, and only calls, in this order:

- :meth:`Method.on_fit_start` once, with the run's datasets (MAL draws its meta set from
  ``train``, TCDCN's task-wise early stopping reads ``val``);
- :meth:`Method.param_groups` once, to build the optimiser;
- :meth:`Method.train_step` once per batch (default: ``training_step`` + backward + step +
  :meth:`Method.after_optimizer_step`; override only for manual optimisation such as a
  bilevel step). It receives ``forward``: ``training_step`` as the trainer runs it (under
  DDP when there are several processes, under bf16 autocast with ``train.amp``); a method
  calls that instead of ``self.training_step`` so those wrappers apply without the trainer
  touching the method's attributes;
- :meth:`Method.on_epoch_end` after each epoch (schedules, task switches);
- :meth:`Method.predict` for evaluation.

``Method.forward(batch)`` is ``training_step(batch)``: what DDP wraps.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from facemtl.config import MethodConfig, TrainConfig
from facemtl.errors import FacemtlError
from facemtl.models import MultiTaskNet
from facemtl.tasks import spec

Batch = dict[str, Any]
Outputs = dict[str, Any]
#: ``training_step`` as the trainer runs it: ``batch -> {"loss": tensor, "logs": {...}}``
StepForward = Callable[[Batch], dict[str, Any]]


@dataclass(frozen=True)
class TrainContext:
    """Facts about the run a method may need when it is built."""

    num_train: int  # samples in the training set (per-sample state such as SCN's relabels)
    epochs: int
    steps_per_epoch: int


class EpochStats(nn.Module):
    """Running sums of named quantities over an epoch, kept in the state dict (resume keeps them).

    Args:
        names: the quantities; each has a sum, a sum of squares and a count.
    """

    def __init__(self, names: tuple[str, ...]) -> None:
        super().__init__()
        self.names = names
        self.register_buffer("sums", torch.zeros(3, len(names), dtype=torch.float64))

    @torch.no_grad()
    def add(self, name: str, values: torch.Tensor) -> None:
        """Add every element of ``values`` (any shape; may be empty)."""
        column = self.names.index(name)
        values = values.detach().double().flatten()
        self.sums[0, column] += values.sum()
        self.sums[1, column] += values.pow(2).sum()
        self.sums[2, column] += values.numel()

    def summary(self, std: tuple[str, ...] = ()) -> dict[str, float]:
        """``{name: mean}`` (plus ``name_std`` for ``std``) of the quantities seen; then reset."""
        out: dict[str, float] = {}
        for column, name in enumerate(self.names):
            total, squares, count = self.sums[:, column].tolist()
            if count == 0:
                continue
            mean = total / count
            out[name] = mean
            if name in std:
                out[f"{name}_std"] = max(squares / count - mean**2, 0.0) ** 0.5
        self.sums.zero_()
        return out

    def total(self, name: str) -> float:
        return float(self.sums[0, self.names.index(name)])


class Method(nn.Module):
    """Base class: multi-task training with a weighted sum of masked per-task losses.

    Args:
        net: the shared multi-task network.
        config: this method's config (a :class:`MethodConfig` subclass).
        context: run facts (dataset size, epochs).
    """

    config_class: ClassVar[type[MethodConfig]] = MethodConfig
    #: tasks the method cannot work without (its paper's main task)
    required_tasks: ClassVar[tuple[str, ...]] = ()

    def __init__(self, net: MultiTaskNet, config: MethodConfig, context: TrainContext) -> None:
        super().__init__()
        missing = [name for name in self.required_tasks if name not in net.tasks]
        if missing:
            raise FacemtlError(f"method {config.name} needs the {missing[0]} task; add {missing[0]} to model.tasks")
        self.net = net
        self.config = config
        self.context = context

    # -- what the trainer calls -------------------------------------------------------
    def on_fit_start(self, datasets: Mapping[str, Any]) -> None:
        """Called once before training with the run's splits (``train``, ``val``, maybe ``test``).

        Override to keep what the method needs from them; never train or select on ``test``.
        """

    def forward(self, batch: Batch) -> dict[str, Any]:
        """:meth:`training_step`: the module's forward, so DDP can wrap the whole method."""
        return self.training_step(batch)

    def param_groups(self, train: TrainConfig) -> list[dict[str, Any]]:
        """Parameter groups for the optimiser; override to give extra parameters their own lr."""
        return [{"params": [p for p in self.parameters() if p.requires_grad]}]

    def training_step(self, batch: Batch) -> dict[str, Any]:
        """Forward and loss for one batch: ``{"loss": scalar tensor, "logs": {name: float}}``."""
        outputs = self.net(batch["image"])
        losses = self.task_losses(outputs, batch)
        return self.combine(losses)

    def train_step(
        self, batch: Batch, optimizer: torch.optim.Optimizer, grad_clip: float = 0.0, forward: StepForward | None = None
    ) -> dict[str, float]:
        """One optimisation step; returns scalar logs.

        Args:
            batch: the batch, on the training device.
            optimizer: built from :meth:`param_groups`.
            grad_clip: max gradient norm (0: off).
            forward: ``training_step`` as the trainer wraps it (DDP, autocast); None = ``self.training_step``.
        """
        result = (forward or self.training_step)(batch)
        optimizer.zero_grad(set_to_none=True)
        result["loss"].backward()
        if grad_clip > 0:
            nn.utils.clip_grad_norm_(self.parameters(), grad_clip)
        optimizer.step()
        self.after_optimizer_step(result, batch)
        return {"loss": float(result["loss"].detach()), **result["logs"]}

    def after_optimizer_step(self, result: dict[str, Any], batch: Batch) -> None:
        """Hook for state updated outside the optimiser (DACL's centres); gets ``training_step``'s result."""

    def on_epoch_end(self, epoch: int) -> dict[str, float]:
        """Called after each training epoch (0-based); returns scalar logs."""
        return {}

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> Outputs:
        """Outputs used for evaluation and inference (a distillation ensemble may override)."""
        return self.net(images)

    # -- shared pieces for subclasses -------------------------------------------------
    def task_losses(self, outputs: Outputs, batch: Batch, tasks: tuple[str, ...] | None = None) -> dict[str, torch.Tensor]:
        """Unweighted masked loss per enabled task, or per task of ``tasks``: each task's spec's loss."""
        labels, mask = batch["labels"], batch["mask"]
        return {
            name: spec(name).loss(outputs, labels[name], mask[name], self.config)
            for name in (self.net.tasks if tasks is None else tasks)
        }

    def combine(self, losses: dict[str, torch.Tensor]) -> dict[str, Any]:
        """Weighted sum with ``config.task_weights``; logs every task's unweighted loss."""
        total = sum(self.config.task_weights.get(task, 1.0) * loss for task, loss in losses.items())
        logs = {f"loss_{task}": float(loss.detach()) for task, loss in losses.items()}
        return {"loss": total, "logs": logs}
