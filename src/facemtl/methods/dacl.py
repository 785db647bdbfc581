"""DACL — Deep Attentive Center Loss (Farzaneh & Qi, "Facial Expression Recognition in the
Wild via Deep Attentive Center Loss", WACV 2021).

A CE-Unit (three FC layers with BN; ReLU, ReLU, tanh) encodes the flattened last feature
map; a multi-head binary classifier turns its output into one attention weight a_ij in
(0, 1) per dimension of the pooled embedding x_i; the sparse centre loss
``1/(2B) sum a_ij (x_ij - c_{y_i j})^2`` pulls the attended dimensions of each embedding
towards its class centre. Total loss: ``CE + lambda * L_SC`` (other tasks' losses as in
the plain method). The attention does not touch the logits.

Centres are not trained by the main optimiser. By default they follow the official code
(amirhfarzaneh/dacl): the hand-written update ``g_k = -sum a (x - c_k) / (1 + n_k)``,
stepped with plain SGD at lr ``alpha`` (0.5), not scaled by lambda; ``center_update:
autograd`` steps them with the true gradient of the total loss instead.

Departures from the official code, and why:

- The feature map is adaptively pooled to ``pool_size`` (7) before the CE-Unit, so any
  input size and backbone width works (the official CE-Unit needs exactly 512x7x7).
- The centre step is a manual ``c -= alpha * g`` after the model's optimiser step, which
  is what the official separate ``SGD(centers, lr=alpha)`` without momentum or decay does.
- The attention net has its own SGD (``attention_optimizer: sgd``, the default: lr 0.01 on the
  main schedule, momentum 0.9, decay 5e-4 — the official optimiser) whatever optimiser trains
  the rest. Its only gradient, lambda (x - c)^2 / 2B, is never negative; under SGD it is tiny
  and the attention moves slowly, but Adam normalises it to full-size steps and the attention
  collapses to 0 within an epoch, switching the centre loss off (docs/benchmarks.md).
  ``attention_optimizer: main`` trains it with the main optimiser instead.
- Samples without an expression label are left out of the centre loss and update.
- Under DDP the centre step is computed from the whole global batch (gathered from every
  process), identically in every process, as a single process would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from facemtl.config import MethodConfig, TrainConfig
from facemtl.errors import FacemtlError
from facemtl.losses import center_update_direction, sparse_center_loss
from facemtl.methods.base import Batch, EpochStats, Method, StepForward, TrainContext
from facemtl.methods.buffered_optimizer import BufferedOptimizer
from facemtl.models import MultiTaskNet
from facemtl.registry import METHODS


@dataclass
class DACLConfig(MethodConfig):
    """DACL options; defaults are the official code's."""

    name: str = "dacl"
    lamb: float = 0.01  # lambda: weight of the sparse centre loss
    alpha: float = 0.5  # learning rate of the centres (constant, not scheduled)
    ce_unit_widths: list[int] = field(default_factory=lambda: [3584, 512, 64])
    pool_size: int = 7  # the feature map is pooled to pool_size x pool_size before the CE-Unit
    center_update: str = "official"  # official (hand-written, Wen et al.) | autograd
    attention: bool = True  # false: a = 1, the ordinary centre loss (the paper's "centre loss" baseline)
    attention_optimizer: str = "sgd"  # sgd: its own SGD (official settings below) | main: the trainer's optimiser
    attention_lr: float = 0.01  # scaled by the main schedule's factor at every step
    attention_momentum: float = 0.9
    attention_weight_decay: float = 5e-4

    def check(self) -> None:
        if self.attention_optimizer not in ("sgd", "main"):
            raise FacemtlError(f"method.attention_optimizer={self.attention_optimizer!r} is not valid; choose from: sgd, main")
        if self.center_update not in ("official", "autograd"):
            raise FacemtlError(f"method.center_update={self.center_update!r} is not valid; choose from: official, autograd")
        if len(self.ce_unit_widths) != 3:
            raise FacemtlError(f"method.ce_unit_widths={self.ce_unit_widths}; expected three widths, e.g. [3584, 512, 64]")


class AttentionNet(nn.Module):
    """CE-Unit + multi-head binary classification: feature map ``[B, C, h, w]`` -> attention ``[B, D]``."""

    def __init__(self, channels: int, embed_dim: int, widths: list[int], pool_size: int) -> None:
        super().__init__()
        self.pool_size = pool_size
        layers: list[nn.Module] = []
        width_in = channels * pool_size * pool_size
        for i, width in enumerate(widths):
            last = i == len(widths) - 1
            layers += [nn.Linear(width_in, width), nn.BatchNorm1d(width), nn.Tanh() if last else nn.ReLU(inplace=True)]
            width_in = width
        self.ce_unit = nn.Sequential(*layers)
        # One (exclude, include) pair per embedding dimension, as a single FC reshaped.
        self.heads = nn.Linear(width_in, 2 * embed_dim)
        self.embed_dim = embed_dim

    def forward(self, feat_map: torch.Tensor) -> torch.Tensor:
        cells = nn.functional.adaptive_avg_pool2d(feat_map, self.pool_size).flatten(1)
        pairs = self.heads(self.ce_unit(cells)).view(-1, self.embed_dim, 2)
        return torch.softmax(pairs, dim=2)[:, :, 1]


@METHODS.register("dacl")
class DACLMethod(Method):
    """Deep Attentive Center Loss on the ``expr`` task of a multi-task network."""

    config_class = DACLConfig
    required_tasks = ("expr",)
    config: DACLConfig

    def __init__(self, net: MultiTaskNet, config: DACLConfig, context: TrainContext) -> None:
        super().__init__(net, config, context)
        dim = net.num_features
        self.attention = AttentionNet(dim, dim, config.ce_unit_widths, config.pool_size) if config.attention else None
        centers = torch.empty(dim, len(net.label_spaces.expr_classes))
        nn.init.kaiming_normal_(centers)  # on the transposed tensor, as the official code
        self.centers = nn.Parameter(centers.t().contiguous())
        self.attention_optim: BufferedOptimizer | None = None
        if self.attention is not None and config.attention_optimizer == "sgd":
            self.attention_optim = BufferedOptimizer(
                list(self.attention.parameters()), "sgd", config.attention_lr,
                weight_decay=config.attention_weight_decay, momentum=config.attention_momentum,
            )
        self.schedule_factor = 1.0  # the main optimiser's current lr / its base lr
        self.stats = EpochStats(("attention", "attention_above_half", "intra_class_distance"))

    def param_groups(self, train: TrainConfig) -> list[dict[str, Any]]:
        """Everything but the centres and (``attention_optimizer: sgd``) the attention net: they have their own steps."""
        own = {id(self.centers)} | {id(p) for p in self.attention_optim_params()}
        return [{"params": [p for p in self.parameters() if id(p) not in own and p.requires_grad]}]

    def attention_optim_params(self) -> list[nn.Parameter]:
        return list(self.attention.parameters()) if self.attention_optim is not None else []

    def train_step(
        self, batch: Batch, optimizer: torch.optim.Optimizer, grad_clip: float = 0.0, forward: StepForward | None = None
    ) -> dict[str, float]:
        """The base step; first notes the schedule's factor for the attention's own lr."""
        group = optimizer.param_groups[0]
        self.schedule_factor = group["lr"] / group["base_lr"] if group.get("base_lr") else 1.0
        return super().train_step(batch, optimizer, grad_clip, forward)

    def training_step(self, batch: Batch) -> dict[str, Any]:
        from facemtl.distributed import gather_cat  # local: facemtl.engine imports the methods

        outputs = self.net(batch["image"])
        attention = self.attention(outputs["feat_map"]) if self.config.attention else torch.ones_like(outputs["feat"])
        result = self.combine(self.task_losses(outputs, batch))
        mask = batch["mask"]["expr"].bool()
        feat, weights, target = outputs["feat"][mask], attention[mask], batch["labels"]["expr"][mask]
        official = self.config.center_update == "official"
        centers = self.centers.detach() if official else self.centers
        center_loss = sparse_center_loss(feat, weights, centers, target)
        result["loss"] = result["loss"] + self.config.lamb * center_loss
        result["logs"]["loss_center"] = float(center_loss.detach())
        with torch.no_grad():
            # The whole global batch (every DDP process's samples; identity in one process).
            feat, weights, target, attention = (
                gather_cat(t) for t in (feat.detach(), weights.detach(), target, attention.detach())
            )
            if official:
                result["center_direction"] = center_update_direction(feat, weights, self.centers, target)
            self.stats.add("attention", attention)
            self.stats.add("attention_above_half", (attention > 0.5).float())
            self.stats.add("intra_class_distance", (feat - self.centers[target]).norm(dim=1))
        return result

    def after_optimizer_step(self, result: dict[str, Any], batch: Batch) -> None:
        """The attention net's own SGD step, then the centres' step at lr ``alpha``, after the model's."""
        if self.attention_optim is not None:
            params = self.attention_optim_params()
            self.attention_optim.step(params, tuple(p.grad for p in params), lr=self.config.attention_lr * self.schedule_factor)
            for p in params:
                p.grad = None
        with torch.no_grad():
            direction = result.get("center_direction", self.centers.grad)
            if direction is not None:
                self.centers -= self.config.alpha * direction
        self.centers.grad = None

    def on_epoch_end(self, epoch: int) -> dict[str, float]:
        """Mean and spread of the attention, share of weights above 0.5, intra-class and inter-centre distances."""
        logs = self.stats.summary(std=("attention",))  # attention_std: spread over samples and dimensions
        with torch.no_grad():
            logs["inter_center_distance"] = float(torch.pdist(self.centers).mean())
        return logs
