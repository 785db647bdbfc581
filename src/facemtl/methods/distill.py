"""Multi-task distillation from incomplete labels (Deng, Chen, Shi: "FAU, Facial Expressions,
Valence and Arousal: A Multi-task Solution", ABAW 2020 / FG 2020, arXiv 2002.03557).

Stage 1, the teacher, is the plain method on partially labelled data (per-task weights such
as ``method.task_weights.au=8``). Stage 2, this method, trains a student from scratch (or
the configured pretrained backbone) with a frozen teacher that gives soft labels for every
task on every face. Per task tau, over the faces of the batch:

- faces with a tau label: ``lambda_teacher * D_tau + (1 - lambda_teacher) * L_tau`` (ground truth);
- faces without: ``D_tau`` alone;

weighted by the share of faces in each group, which equals the official "sum over task
sub-batches / number of tasks" when ``data.batching=per_task``. D is BCE to
``sigmoid(teacher)`` for AU, ``KL(softmax(t/T) || softmax(s/T))`` at T = 1.5 for EXPR and
for VA's bin distributions (:mod:`facemtl.losses.distill`). ``facemtl distill`` trains
several students with different seeds and writes their ensemble.

Where this departs from the official code (wtomin/Multitask-Emotion-Recognition-with-
Incomplete-Labels), and why:

- ``method.task_weights`` still apply to the per-task student losses (default 1, as the
  official student stage, which drops the teacher's weights).
- A teacher without VA bins (or a student without them) distils VA by squared error on the
  continuous values: KL needs distributions on both sides.
- The teacher is held outside the module tree: it never enters ``state_dict`` (student
  checkpoints stay student-sized and loadable without it), the optimiser or DDP, and
  ``train()`` never switches it out of eval mode. It is loaded at the first training step,
  so evaluating a student never needs the teacher file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from facemtl.config import MethodConfig
from facemtl.errors import FacemtlError
from facemtl.methods.base import Batch, Method, TrainContext
from facemtl.models import MultiTaskNet
from facemtl.registry import METHODS
from facemtl.tasks import spec
from facemtl.tasks.network import load_network


@dataclass
class DistillConfig(MethodConfig):
    """Student options; defaults follow the official code."""

    name: str = "distill"
    teacher: str = ""  # teacher checkpoint: run folder or .safetensors (a plain-method run)
    lambda_teacher: float = 0.4  # weight of the distillation term where ground truth exists
    temperature: float = 1.5  # T of the EXPR / VA KL terms
    t_squared: bool = False  # multiply the KL terms by T^2 (off in the official code)

    def check(self) -> None:
        if not 0.0 <= self.lambda_teacher <= 1.0:
            raise FacemtlError(f"method.lambda_teacher={self.lambda_teacher} is out of range; expected 0 <= lambda_teacher <= 1")
        if self.temperature <= 0:
            raise FacemtlError(f"method.temperature={self.temperature}; expected a positive temperature")


def load_net(path: str, device: torch.device | None = None) -> MultiTaskNet:
    """A checkpoint's network, frozen (eval mode, no gradients): a teacher or an ensemble member."""
    net, _ = load_network(path, device or torch.device("cpu"))
    return net.requires_grad_(False)


@METHODS.register("distill")
class DistillMethod(Method):
    """Student trained on ground truth mixed with a frozen teacher's soft labels."""

    config_class = DistillConfig
    config: DistillConfig

    def __init__(self, net: MultiTaskNet, config: DistillConfig, context: TrainContext) -> None:
        super().__init__(net, config, context)
        if not config.teacher:
            raise FacemtlError("method.teacher is empty; set it to the teacher's run folder or checkpoint")
        self._teacher: list[MultiTaskNet] = []  # a list: nn.Module would otherwise register it

    @property
    def teacher(self) -> MultiTaskNet:
        """The frozen teacher, loaded on first use and moved to the student's device."""
        device = next(self.net.parameters()).device
        if not self._teacher:
            teacher = load_net(self.config.teacher, device)
            self._check_teacher(teacher)
            self._teacher.append(teacher)
        return self._teacher[0].to(device)

    def _check_teacher(self, teacher: MultiTaskNet) -> None:
        """The teacher must speak the student's labels on every distilled task.

        Only the distilled tasks are compared: a teacher trained on one dataset (say FER2013
        expression alone) may teach a student that also learns landmarks from another.
        """
        where = f"method.teacher={self.config.teacher}"
        distilled = [name for name in self.net.tasks if spec(name).distillable]
        missing = [name for name in distilled if name not in teacher.tasks]
        if missing:
            raise FacemtlError(f"{where}: the teacher has no head for {missing}")
        for name in distilled:
            ours, theirs = (spec(name).label_names(net.label_spaces) for net in (self.net, teacher))
            if ours != theirs:
                raise FacemtlError(f"{where}: its {name} labels {list(theirs)} differ from the student's {list(ours)}")

    def training_step(self, batch: Batch) -> dict[str, Any]:
        outputs = self.net(batch["image"])
        with torch.no_grad():
            teacher = self.teacher(batch["image"])
        ground_truth = self.task_losses(outputs, batch)
        losses: dict[str, torch.Tensor] = {}
        logs: dict[str, float] = {}
        for name, gt_loss in ground_truth.items():
            task = spec(name)
            if not task.distillable:
                losses[name] = gt_loss
                continue
            per_sample = task.soft_target_loss(outputs, teacher, self.config.temperature, self.config.t_squared)
            labelled = batch["mask"][name].reshape(len(per_sample), -1).any(dim=1)
            losses[name] = self.mix(per_sample, gt_loss, labelled)
            logs[f"distill_{name}"] = float(per_sample.mean().detach())
        result = self.combine(losses)
        result["logs"].update(logs)
        return result

    def mix(self, distill: torch.Tensor, gt_loss: torch.Tensor, labelled: torch.Tensor) -> torch.Tensor:
        """``share_labelled * (lam * D_lab + (1 - lam) * L) + share_unlabelled * D_unlab``.

        Args:
            distill: ``[B]`` per-sample distillation terms.
            gt_loss: the task's ground-truth loss over its labelled faces (a scalar).
            labelled: ``[B]`` bool, faces with a label for the task.
        """
        lam = self.config.lambda_teacher
        share = labelled.float().mean()
        lab = labelled.float()
        d_lab = (distill * lab).sum() / lab.sum().clamp_min(1)
        d_unl = (distill * (1 - lab)).sum() / (1 - lab).sum().clamp_min(1)
        return share * (lam * d_lab + (1 - lam) * gt_loss) + (1 - share) * d_unl
