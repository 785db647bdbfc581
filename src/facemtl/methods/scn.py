"""SCN — Self-Cure Network (Wang, Peng, Yang, Meng, Qiao: "Suppressing Uncertainties for
Large-Scale Facial Expression Recognition", CVPR 2020).

An importance branch (FC + sigmoid on the pooled feature) gives each sample a weight
a_i in (0, 1); the expression loss is cross-entropy on the a-scaled logits; a rank
regulariser keeps the mean weight of the top ``beta`` of the batch ``margin_1`` above the
rest; once relabelling has started, a low-importance sample whose most likely class beats
its label by ``margin_2`` is relabelled. Other tasks' heads train as in the plain method.

Schedule-aware defaults (docs/benchmarks.md, "SCN defaults"): the paper starts relabelling
at epoch 10 of 40 and weights the logits from the first step. Here both start at a fraction
of the run — the network trains on plain cross-entropy for the first ``weight_start`` (0.5)
of the epochs while the importance branch learns beside it on detached features, then the
importance weights the logits; relabelling starts after ``relabel_start`` (0.75) — and the
importance branch's gradient stays out of the backbone (``detach_importance_input: true``).
In short runs the paper's schedule never relabels (epoch 10 of 8) and its weighting, applied
while the network still underfits, cost 3-5 points of expression accuracy against plain
cross-entropy. The paper's settings by name: ``relabel_epoch: 10, weight_start: 0,
detach_importance_input: false`` (the ``scn_rafdb`` / ``scn_ferplus`` / ``scn_affectnet``
recipes).

Where this departs from the official code (kaiwang960112/Self-Cure-Network), and why:

- Relabelling is restricted to the low-importance group by default, as in the paper; the
  official code relabels any sample (``relabel_scope: any`` reproduces it).
- Relabels live in a buffer keyed by dataset index (part of the checkpoint), instead of
  being written into the dataset's label list, so they survive resume.
- The rank regulariser and the relabel rule only see samples that have an expression
  label (multi-task batches may mix unlabelled ones).
- ``margin_1`` defaults to 0.07, the README's value for batch 64 (the paper's 0.15 was
  tuned for batch 1024).
- The schedule-aware defaults above; the paper's schedule is three option values away.
- Under DDP the rank regulariser and the relabel rule see the whole global batch
  (gathered from every process), so groups, relabels and statistics are those of a
  single-process run and identical in every process.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from facemtl.config import MethodConfig
from facemtl.errors import FacemtlError
from facemtl.losses import rank_regularization, relabel
from facemtl.methods.base import Batch, EpochStats, Method, TrainContext
from facemtl.models import MultiTaskNet
from facemtl.registry import METHODS


@dataclass
class SCNConfig(MethodConfig):
    """SCN options; defaults follow the official code at batch 64, but for the schedule (module docstring)."""

    name: str = "scn"
    beta: float = 0.7  # fraction of the batch in the high-importance group
    margin_1: float = 0.07  # delta_1: required gap between high and low mean importance
    margin_2: float = 0.2  # delta_2: relabel when P_max - P_label exceeds it
    relabel_epoch: int = 0  # first (1-based) epoch that relabels; 0 = after relabel_start of the run (paper: 10)
    relabel_start: float = 0.75  # relabel_epoch 0: relabelling starts once this fraction of the epochs is done
    # before this fraction of the run the network trains on plain CE and the importance branch learns
    # beside it (on detached features and logits); from then on the importance weights the logits (paper: 0)
    weight_start: float = 0.5
    relabel_scope: str = "low"  # low (paper) | any (official code)
    rr_weight: float = 1.0  # official loss is CE + RR
    # true: the importance branch's gradient stays in its FC; false (official): it also trains the backbone
    detach_importance_input: bool = True

    def check(self) -> None:
        if self.relabel_scope not in ("low", "any"):
            raise FacemtlError(f"method.relabel_scope={self.relabel_scope!r} is not valid; choose from: low, any")
        if not 0.0 < self.beta < 1.0:
            raise FacemtlError(f"method.beta={self.beta} is out of range; expected 0 < beta < 1")
        if not 0.0 <= self.weight_start <= 1.0:
            raise FacemtlError(f"method.weight_start={self.weight_start} is out of range; expected 0 <= weight_start <= 1")
        if not 0.0 <= self.relabel_start <= 1.0:
            raise FacemtlError(f"method.relabel_start={self.relabel_start} is out of range; expected 0 <= relabel_start <= 1")
        if self.relabel_epoch < 0:
            raise FacemtlError(f"method.relabel_epoch={self.relabel_epoch}; expected 0 (use relabel_start) or a 1-based epoch")

    def first_relabel_epoch(self, epochs: int) -> int:
        """The first (1-based) epoch that relabels in a run of ``epochs`` epochs."""
        return self.relabel_epoch if self.relabel_epoch > 0 else math.floor(self.relabel_start * epochs + 1e-9) + 1


@METHODS.register("scn")
class SCNMethod(Method):
    """Self-Cure Network on the ``expr`` task of a multi-task network."""

    config_class = SCNConfig
    required_tasks = ("expr",)
    config: SCNConfig

    def __init__(self, net: MultiTaskNet, config: SCNConfig, context: TrainContext) -> None:
        super().__init__(net, config, context)
        self.importance = nn.Sequential(nn.Linear(net.num_features, 1), nn.Sigmoid())
        self.relabel_from = config.first_relabel_epoch(context.epochs)
        self.weight_from = math.floor(config.weight_start * context.epochs + 1e-9) + 1
        self.register_buffer("relabels", torch.full((context.num_train,), -1, dtype=torch.long))
        self.register_buffer("epochs_done", torch.zeros((), dtype=torch.long))
        self.stats = EpochStats(("importance_clean", "importance_flipped", "rr_loss", "relabels", "relabels_restored"))

    def current_labels(self, batch: Batch) -> torch.Tensor:
        """Expression labels with this run's relabels applied (the dataset is never changed)."""
        stored = self.relabels[batch["index"]]
        return torch.where(stored >= 0, stored, batch["labels"]["expr"])

    def training_step(self, batch: Batch) -> dict[str, Any]:
        from facemtl.distributed import gather_cat  # local: facemtl.engine imports the methods

        outputs = self.net(batch["image"])
        weighting = int(self.epochs_done) + 1 >= self.weight_from
        detach = self.config.detach_importance_input or not weighting
        importance = self.importance(outputs["feat"].detach() if detach else outputs["feat"]).squeeze(1)
        scaled = importance.unsqueeze(1) * (outputs["expr"] if weighting else outputs["expr"].detach())
        labels = self.current_labels(batch)
        relabeled_batch = {**batch, "labels": {**batch["labels"], "expr": labels}}
        losses = self.task_losses({**outputs, "expr": scaled}, relabeled_batch)  # expr CE here is the WCE
        # The high/low split ranks the whole global batch: gathered from every process (DDP),
        # differentiably, so the RR gradient is the single-process one (identity in one process).
        mask = gather_cat(batch["mask"]["expr"].bool())
        all_importance = gather_cat(importance, grad=True)
        rr_loss, high = rank_regularization(all_importance[mask], self.config.beta, self.config.margin_1)
        result = self.combine(losses)
        # CE of the unscaled logits: before weight_start the network's expression loss (the WCE above then
        # trains the importance branch alone); logged throughout, so every epoch's log row has it
        plain = self.task_losses(outputs, relabeled_batch, ("expr",))["expr"]
        if not weighting:
            result["loss"] = result["loss"] + self.config.task_weights.get("expr", 1.0) * plain
        result["logs"]["loss_expr_plain"] = float(plain.detach())
        result["loss"] = result["loss"] + self.config.rr_weight * rr_loss
        result["logs"]["loss_rr"] = float(rr_loss.detach())
        with torch.no_grad():
            info = {k: gather_cat(v) for k, v in batch["info"].items() if k in ("expr_flipped", "expr_clean")}
            self._record(all_importance[mask], rr_loss, {k: v[mask] for k, v in info.items()})
            if int(self.epochs_done) + 1 >= self.relabel_from:
                # Every process applies the same relabels (of every process's samples) to its buffer.
                scaled, labels, index = (gather_cat(t) for t in (scaled.detach(), labels, batch["index"]))
                self._relabel(scaled[mask], labels[mask], high, index[mask], info, mask)
        return result

    def _relabel(
        self, scaled: torch.Tensor, labels: torch.Tensor, high: torch.Tensor, index: torch.Tensor,
        info: dict[str, torch.Tensor], mask: torch.Tensor,
    ) -> None:
        # Softmax of the importance-scaled logits, as the official code and the paper figure.
        new = relabel(torch.softmax(scaled, dim=1), labels, self.config.margin_2)
        if self.config.relabel_scope == "low":
            new = torch.where(high, labels, new)
        changed = new != labels
        self.relabels[index[changed]] = new[changed]
        self.stats.add("relabels", changed.sum())
        if "expr_clean" in info:  # a benchmark that knows the true labels: did relabelling restore them?
            self.stats.add("relabels_restored", (new[changed] == info["expr_clean"][mask][changed]).sum())

    def _record(self, importance: torch.Tensor, rr_loss: torch.Tensor, info: dict[str, torch.Tensor]) -> None:
        flipped = info.get("expr_flipped", torch.zeros_like(importance, dtype=torch.bool)).bool()
        self.stats.add("importance_clean", importance[~flipped])
        self.stats.add("importance_flipped", importance[flipped])
        self.stats.add("rr_loss", rr_loss)

    def on_epoch_end(self, epoch: int) -> dict[str, float]:
        """Importance statistics (clean vs flipped samples), RR loss and relabels of the epoch."""
        relabels, restored = self.stats.total("relabels"), self.stats.total("relabels_restored")
        summary = self.stats.summary(std=("importance_clean", "importance_flipped"))
        logs = {"rr_loss": summary.get("rr_loss", 0.0), "relabels": relabels}
        for group in ("clean", "flipped"):
            if f"importance_{group}" in summary:
                logs[f"importance_{group}_mean"] = summary[f"importance_{group}"]
                logs[f"importance_{group}_std"] = summary[f"importance_{group}_std"]
        if "relabels_restored" in summary:
            logs["relabels_restored"] = restored
        logs["relabels_total"] = float((self.relabels >= 0).sum())
        self.epochs_done += 1
        return logs

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> dict[str, Any]:
        """The network's outputs with SCN's importance-scaled expression logits (same argmax)."""
        outputs = self.net(images)
        importance = self.importance(outputs["feat"])
        outputs["expr"] = importance * outputs["expr"]
        outputs["importance"] = importance.squeeze(1)
        return outputs
