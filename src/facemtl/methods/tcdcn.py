"""TCDCN — Tasks-Constrained Deep Convolutional Network (Zhang, Luo, Loy, Tang: "Facial
Landmark Detection by Deep Multi-task Learning", ECCV 2014; TPAMI 2016 as "Learning Deep
Representation for Face Alignment with Auxiliary Attributes", arXiv 1408.3967).

Landmark regression is the main task; gender, smile, glasses and head pose are auxiliary
classifiers on the same shared feature:

    min  sum_i 1/2 ||y_i - f(x_i)||^2  -  sum_a lambda_a sum_i log p(y_i^a | x_i)  (+ weight decay)

and *task-wise early stopping* switches an auxiliary task off (its loss leaves the
objective for good) once its training loss stalls while its validation loss rises; see
:mod:`facemtl.losses.early_stopping`. Switch-offs are printed, logged per epoch
(``aux_<name>_active``) and kept in buffers, so checkpoints and resume keep them.
The paper's network is the ``tcdcn`` backbone (:mod:`facemtl.models.tcdcn_net`).

Where this departs from the paper, and why (the official code is encrypted p-code, so
every detail below the paper's text is ours):

- Landmarks are regressed in crop-normalised coordinates ([0, 1]); the loss is the
  paper's 1/2 squared norm in those units (``method.lmk_loss`` is not used).
- Epoch-level statistics: E_tr is the mean of the epoch's batch losses (the weights
  change during the epoch), E_val a full pass over the validation split at epoch end.
- The criterion is evaluated every ``stop_every`` epochs once ``strip`` epochs exist;
  the paper's k and epsilon were not published with values, so they are configuration.
- A stopped task's head is kept (frozen: no loss, so no gradient and no weight decay)
  and still predicts at evaluation; the paper removes it.
- The TPAMI version's dynamic task coefficients are not implemented; lambda_a is fixed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from facemtl.config import MethodConfig
from facemtl.data.dataset import FaceDataset, move_batch
from facemtl.errors import FacemtlError
from facemtl.labels import DEFAULT_ATTRIBUTES
from facemtl.losses.early_stopping import stop_index
from facemtl.losses.landmarks import landmark_l2_loss
from facemtl.losses.masked import attribute_cross_entropy
from facemtl.methods.base import Batch, Method, TrainContext
from facemtl.models import MultiTaskNet
from facemtl.registry import METHODS


@dataclass
class TCDCNConfig(MethodConfig):
    """TCDCN options. ``task_weights.lmk`` weighs the landmark loss; attributes use ``attr_weights``."""

    name: str = "tcdcn"
    attr_weights: dict[str, float] = field(default_factory=lambda: {a: 1.0 for a in DEFAULT_ATTRIBUTES})  # lambda_a
    early_stopping: bool = True  # task-wise early stopping of the auxiliary attributes
    strip: int = 5  # k: training-strip length in epochs
    threshold: float = 1.0  # epsilon: stop a task when its index exceeds it
    stop_every: int = 1  # evaluate the criterion every N epochs
    val_batch_size: int = 256  # batch size of the per-epoch validation-loss pass

    def check(self) -> None:
        if self.strip < 2:
            raise FacemtlError(f"method.strip={self.strip}; expected at least 2")
        if self.stop_every < 1:
            raise FacemtlError(f"method.stop_every={self.stop_every}; expected at least 1")
        if self.threshold <= 0:
            raise FacemtlError(f"method.threshold={self.threshold}; expected > 0")
        for name, weight in self.attr_weights.items():
            if weight < 0:
                raise FacemtlError(f"method.attr_weights.{name}={weight}; expected >= 0")
        if self.task_weights.get("attr", 1.0) != 1.0:
            raise FacemtlError(
                "method tcdcn weighs each attribute by method.attr_weights.<name>; leave task_weights.attr at 1")


@METHODS.register("tcdcn")
class TCDCNMethod(Method):
    """Landmarks + weighted auxiliary attributes with task-wise early stopping."""

    config_class = TCDCNConfig
    required_tasks = ("lmk",)
    config: TCDCNConfig

    def __init__(self, net: MultiTaskNet, config: TCDCNConfig, context: TrainContext) -> None:
        super().__init__(net, config, context)
        self.attributes = list(net.label_spaces.attributes) if "attr" in net.tasks else []
        unknown = sorted(set(config.attr_weights) - set(net.label_spaces.attributes))
        if unknown:
            raise FacemtlError(f"method.attr_weights: unknown attribute(s) {', '.join(unknown)}; "
                               f"valid: {', '.join(net.label_spaces.attributes)}")
        m = len(self.attributes)
        weights = [config.attr_weights.get(a, 1.0) for a in self.attributes]
        self.importance = weights  # configuration, not state: a resumed run reads it from its config
        # lambda_a = 0: never trained. Buffers: checkpoints and resume keep the switch-offs.
        self.register_buffer("active", torch.tensor([w > 0 for w in weights], dtype=torch.bool))
        self.register_buffer("stopped_epoch", torch.full((m,), -1, dtype=torch.long))  # 1-based epoch of the switch-off
        self.register_buffer("train_strip", torch.full((m, config.strip), float("nan"), dtype=torch.float64))
        self.register_buffer("val_best", torch.full((m,), float("inf"), dtype=torch.float64))
        self.register_buffer("epoch_sums", torch.zeros((m, 2), dtype=torch.float64))  # (sum of loss * n, n) this epoch
        self.register_buffer("epochs_done", torch.zeros((), dtype=torch.long))
        self._val: FaceDataset | None = None

    # -- the trainer's hooks -----------------------------------------------------------
    def on_fit_start(self, datasets: Mapping[str, Any]) -> None:
        """Keeps ``datasets["val"]``: the split whose per-task losses drive the early stopping."""
        self._val = datasets.get("val")

    def training_step(self, batch: Batch) -> dict[str, Any]:
        outputs = self.net(batch["image"])
        labels, mask = batch["labels"], batch["mask"]
        lmk = landmark_l2_loss(outputs["lmk"], labels["lmk"], mask["lmk"])
        total = self.config.task_weights.get("lmk", 1.0) * lmk
        logs = {"loss_lmk": float(lmk.detach())}
        if self.attributes:
            losses = attribute_cross_entropy(outputs["attr"], labels["attr"], mask["attr"])
            active = self.active.tolist()  # a stopped task adds nothing: no gradient reaches its head
            for j, name in enumerate(self.attributes):
                if active[j]:
                    total = total + self.importance[j] * losses[name]
                logs[f"loss_{name}"] = float(losses[name].detach())
            with torch.no_grad():
                counts = mask["attr"].sum(dim=0).double()
                values = torch.stack([losses[name].detach() for name in self.attributes]).double()
                self.epoch_sums += torch.stack([values * counts, counts], dim=1)
        return {"loss": total, "logs": logs}

    def on_epoch_end(self, epoch: int) -> dict[str, float]:
        """Record E_tr and E_val of each auxiliary task; switch off those meeting the criterion."""
        logs: dict[str, float] = {}
        if self.attributes:
            train_losses = (self.epoch_sums[:, 0] / self.epoch_sums[:, 1].clamp_min(1)).tolist()
            val_losses = self.validation_losses()
            self.train_strip.copy_(torch.roll(self.train_strip, -1, dims=1))
            self.train_strip[:, -1] = torch.tensor(train_losses, dtype=torch.float64)
            self.val_best.copy_(torch.minimum(self.val_best, torch.tensor(val_losses, dtype=torch.float64)))
            evaluate = (int(self.epochs_done) + 1) >= self.config.strip and (epoch + 1) % self.config.stop_every == 0
            for j, name in enumerate(self.attributes):
                logs[f"aux_{name}_train"], logs[f"aux_{name}_val"] = train_losses[j], val_losses[j]
                if self.config.early_stopping and evaluate and bool(self.active[j]):
                    index = stop_index(self.train_strip[j].tolist(), val_losses[j], float(self.val_best[j]),
                                       self.importance[j])
                    logs[f"aux_{name}_index"] = index
                    if index > self.config.threshold:
                        self._switch_off(j, epoch, index)
                logs[f"aux_{name}_active"] = float(self.active[j])
            self.epoch_sums.zero_()
        self.epochs_done += 1
        return logs

    def _switch_off(self, j: int, epoch: int, index: float) -> None:
        self.active[j] = False
        self.stopped_epoch[j] = epoch + 1
        print(f"tcdcn: auxiliary task {self.attributes[j]!r} stopped after epoch {epoch + 1} "
              f"(index {index:.3g} > threshold {self.config.threshold:g})", flush=True)

    @torch.no_grad()
    def validation_losses(self) -> list[float]:
        """Mean cross-entropy of each auxiliary attribute over the labelled validation faces.

        Runs in eval mode without touching any random state, so resume stays exact.

        Raises:
            FacemtlError: when no validation split was attached (:meth:`on_fit_start`).
        """
        if self._val is None or len(self._val) == 0:
            raise FacemtlError("method tcdcn needs a non-empty validation split for its per-task losses")
        was_training = self.training
        self.eval()
        device = self.epoch_sums.device
        sums = torch.zeros((len(self.attributes), 2), dtype=torch.float64, device=device)
        step = self.config.val_batch_size
        for start in range(0, len(self._val), step):
            batch = move_batch(self._val.__getitems__(list(range(start, min(start + step, len(self._val))))), device)
            outputs = self.net(batch["image"])
            for j, name in enumerate(self.attributes):
                labelled = batch["mask"]["attr"][:, j]
                if bool(labelled.any()):
                    target = batch["labels"]["attr"][labelled, j]
                    ce = F.cross_entropy(outputs["attr"][name][labelled], target, reduction="sum")
                    sums[j] += torch.stack([ce.double(), labelled.sum().double()])
        self.train(was_training)
        return (sums[:, 0] / sums[:, 1].clamp_min(1)).tolist()

    def stopped(self) -> dict[str, int]:
        """``{attribute: 1-based epoch after which it was switched off}`` for the stopped ones."""
        return {name: int(self.stopped_epoch[j]) for j, name in enumerate(self.attributes) if self.stopped_epoch[j] > 0}
