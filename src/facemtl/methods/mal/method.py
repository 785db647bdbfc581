"""MALMethod: one MAL iteration (meta-train, meta-test, base learning) behind the Method seam."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from facemtl.data.dataset import move_batch
from facemtl.distributed import all_reduce_mean
from facemtl.errors import FacemtlError
from facemtl.losses.meta import au_entry_losses, expr_sample_losses, reweighted_task_losses, virtual_sgd_step
from facemtl.methods.base import Batch, EpochStats, Method, StepForward, TrainContext
from facemtl.methods.buffered_optimizer import BufferedOptimizer
from facemtl.methods.mal.config import MALConfig
from facemtl.methods.mal.history import (
    HISTORY_TASKS,
    FaceHistory,
    batch_standardized,
    label_confidence,
    labelled_samples,
    per_face_au_mean,
)
from facemtl.methods.mal.meta_set import draw_meta_set, drop_faces, face_view, meta_batch_indices
from facemtl.methods.mal.network import (
    BaseForward,
    MetaWeightNet,
    buffer_copies,
    functional_forward,
    keeping_last_stage_input,
    last_stage_prefix,
    replayed_rng,
    rng_state,
)
from facemtl.models import MultiTaskNet
from facemtl.registry import METHODS


@METHODS.register("mal")
class MALMethod(Method):
    """Meta auxiliary learning: AU detection with meta-weighted AU and expression samples."""

    config_class = MALConfig
    required_tasks = ("au", "expr")
    config: MALConfig
    #: quantities averaged over each epoch and logged (``_clean`` / ``_flipped``: when the batches know which
    #: auxiliary labels are corrupted, as the synthetic benchmark's ``info.expr_flipped``)
    logged = ("weight_au", "weight_expr", "weight_expr_clean", "weight_expr_flipped", "loss_meta",
              "align_au", "align_expr", "align_expr_clean", "align_expr_flipped")

    def __init__(self, net: MultiTaskNet, config: MALConfig, context: TrainContext) -> None:
        super().__init__(net, config, context)
        self.weighted = ("au", "expr") if config.weight_au else ("expr",)
        self.meta_parts = config.meta_input.split("+")
        tasks = len(HISTORY_TASKS)
        sizes = {"feat": net.num_features, "loss": 2, "dynamics": 2 * tasks, "alignment": tasks}
        self.meta_net = MetaWeightNet(sum(sizes[part] for part in self.meta_parts), config.meta_hidden,
                                      len(self.weighted))
        self.meta_optim = BufferedOptimizer(list(self.meta_net.parameters()), config.meta_optimizer, config.meta_lr,
                                            config.meta_weight_decay)
        self.register_buffer("meta_index", torch.full((config.meta_size,), -1, dtype=torch.long))
        self.register_buffer("meta_steps", torch.zeros((), dtype=torch.long))
        # per training face and task (au, expr), over its visits: the probability of its labels (dynamics)
        # and its alignment with the meta gradient (alignment); empty when unused
        faces = {part: context.num_train if part in self.meta_parts else 0 for part in ("dynamics", "alignment")}
        self.label_confidence = FaceHistory(faces["dynamics"], tasks)
        self.alignment_history = FaceHistory(faces["alignment"], tasks)
        self.stats = EpochStats(self.logged)
        self.meta_data: Any = None
        prefix = last_stage_prefix(net) + "."
        self.virtual_names = [n for n, p in net.named_parameters() if p.requires_grad and (
            config.virtual_step == "all" or n.startswith(("heads.", prefix)))]
        # heads mode moves nothing under the last stage: the difference pass can start there
        self.reuse_below = config.virtual_step == "heads" and net.splits_at_last_stage
        self.register_load_state_dict_pre_hook(_drop_removed_buffers)

    # -- data ---------------------------------------------------------------------------
    def on_fit_start(self, datasets: Mapping[str, Any]) -> None:
        """Draw the meta set from ``datasets["train"]``: ``meta_size`` AU-labelled training faces (seeded),
        kept out of base batches unless ``meta_holdout`` is false."""
        dataset, k = datasets["train"], self.config.meta_size
        self.meta_index.copy_(draw_meta_set(dataset.mask["au"], k, self.config.meta_seed).to(self.meta_index.device))
        self.meta_data = face_view(dataset)
        labelled = int(labelled_samples(dataset.mask["au"]).sum())
        where = "held out of" if self.config.meta_holdout else "also kept in"
        print(f"MAL meta set: K={k} AU-labelled training faces {where} the base stream "
              f"(of {labelled} AU-labelled, {len(dataset.mask['au'])} in all)", flush=True)

    def drop_meta_faces(self, batch: Batch) -> Batch:
        """The batch without its meta-set faces; unchanged when ``meta_holdout`` is false."""
        return drop_faces(batch, self.meta_index) if self.config.meta_holdout else batch

    def next_meta_batch(self, device: torch.device) -> Batch:
        """A meta batch drawn by a generator seeded by (meta_seed, iteration): resume-exact."""
        if self.meta_data is None or int(self.meta_index[0]) < 0:
            raise FacemtlError("method mal: no meta set; the trainer calls on_fit_start(datasets) first")
        indices = meta_batch_indices(self.meta_index, self.config.meta_batch_size, self.config.meta_seed,
                                     int(self.meta_steps))
        return move_batch(self.meta_data.__getitems__(indices), device)

    def param_groups(self, train: Any) -> list[dict[str, Any]]:
        """Only the network: psi has its own optimiser (:class:`BufferedOptimizer`)."""
        return [{"params": [p for p in self.net.parameters() if p.requires_grad]}]

    # -- the base pass, the meta-net's input and the losses ---------------------------------
    def forward_base(self, batch: Batch) -> BaseForward:
        """Forward the base batch on the real parameters and copies of the BN buffers; records the visit
        in the confidence history (``dynamics``)."""
        buffers, state, captured = buffer_copies(self.net), rng_state(), {}
        with keeping_last_stage_input(self.net, self.reuse_below, captured):
            outputs = functional_forward(self.net, dict(self.net.named_parameters()), buffers, batch["image"])
        entries = self.entry_losses(outputs, batch)
        if "dynamics" in self.meta_parts:
            self.label_confidence.record(batch["index"], *label_confidence(entries, batch["mask"]))
        meta_inputs = self.meta_inputs(outputs, entries, batch)
        return BaseForward(outputs, buffers, entries, meta_inputs, state, captured.get("below"))

    def meta_inputs(self, outputs: dict[str, Any], entries: dict[str, torch.Tensor], batch: Batch) -> torch.Tensor:
        """The meta-net's input ``[B, d']``, detached: the parts of ``method.meta_input`` side by side."""
        dtype, parts = outputs["feat"].dtype, []
        for part in self.meta_parts:
            if part == "feat":
                parts.append(outputs["feat"])
            elif part == "loss":
                parts += [per_face_au_mean(entries["au"], batch["mask"]["au"])[:, None], entries["expr"][:, None]]
            elif part == "dynamics":  # per task, the mean and std of the face's label confidence so far
                mean, std = self.label_confidence.mean_std(batch["index"])
                parts.append(torch.stack([mean, std], dim=2).flatten(1).to(dtype))
            else:  # alignment: per task, the face's mean alignment over its past visits
                parts.append(self.alignment_history.mean_std(batch["index"])[0].to(dtype))
        inputs = torch.cat(parts, dim=1).detach()
        if self.config.meta_standardize and len(inputs) > 1:
            inputs = (inputs - inputs.mean(0)) / inputs.std(0).clamp_min(1e-6)
        return inputs

    def sample_weights(self, meta_inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{task: [B]}`` weights from the meta-net (AU weights are ones when not weighted)."""
        w = self.meta_net(meta_inputs)
        weights = {task: w[:, column] for column, task in enumerate(self.weighted)}
        weights.setdefault("au", torch.ones_like(w[:, 0]))
        return weights

    def entry_losses(self, outputs: dict[str, Any], batch: Batch) -> dict[str, torch.Tensor]:
        """Unweighted per-entry losses of the weighted tasks: ``au [B, A]``, ``expr [B]`` (0 where unlabelled)."""
        labels, mask = batch["labels"], batch["mask"]
        return {"au": au_entry_losses(outputs["au"], labels["au"], mask["au"]),
                "expr": expr_sample_losses(outputs["expr"], labels["expr"], mask["expr"])}

    def train_loss(self, outputs: dict[str, Any], batch: Batch, weights: dict[str, torch.Tensor],
                   entries: dict[str, torch.Tensor] | None = None) -> tuple[torch.Tensor, dict]:
        """L_train = sum_t task_weight_t * loss_t, AU and expression losses per-sample weighted
        (``entries``: their per-entry losses when already computed, e.g. ``BaseForward.entries``)."""
        losses = self.task_losses(outputs, batch, tuple(t for t in self.net.tasks if t not in ("au", "expr")))
        entries = entries or self.entry_losses(outputs, batch)
        losses.update(reweighted_task_losses(entries, batch["mask"], weights, self.config.normalize))
        return self._total(losses), losses

    def _total(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        return sum(self.config.task_weights.get(task, 1.0) * loss for task, loss in losses.items())

    # -- meta-train and meta-test ---------------------------------------------------------
    def meta_objective(self, base: BaseForward, batch: Batch, meta_batch: Batch, inner_lr: float) -> torch.Tensor:
        """L_val(theta*(psi)): the unweighted AU loss of a meta batch after the virtual step (a function of psi)."""
        loss, _ = self.train_loss(base.outputs, batch, self.sample_weights(base.meta_inputs), base.entries)
        params = dict(self.net.named_parameters())
        fast = virtual_sgd_step({n: params[n] for n in self.virtual_names}, loss, inner_lr)
        return self.meta_loss(params, fast, meta_batch)

    def meta_loss(self, params: dict[str, torch.Tensor], fast: dict[str, torch.Tensor], meta_batch: Batch) -> torch.Tensor:
        """The plain AU loss of the meta batch on ``fast`` (theta*), the other parameters detached."""
        frozen = {n: p.detach() for n, p in params.items() if n not in fast}  # heads mode: no graph below the last stage
        meta_out = functional_forward(self.net, {**frozen, **fast}, buffer_copies(self.net), meta_batch["image"])
        mask = meta_batch["mask"]["au"]
        # = masked_bce, in the logits' dtype (masked_bce computes in float32; the float64 gradient check needs float64)
        return au_entry_losses(meta_out["au"], meta_batch["labels"]["au"], mask).sum() / mask.sum().clamp_min(1)

    def meta_gradients(self, base: BaseForward, batch: Batch, meta_batch: Batch, inner_lr: float) -> tuple[torch.Tensor, tuple]:
        """``(L_val(theta*), dL_val/dpsi)``, by ``method.hypergradient``."""
        psi = list(self.meta_net.parameters())
        if self.config.hypergradient == "difference":
            meta_loss, surrogate = self.difference_surrogate(base, batch, meta_batch, inner_lr)
            return meta_loss, torch.autograd.grad(surrogate, psi, allow_unused=True)
        meta_loss = self.meta_objective(base, batch, meta_batch, inner_lr)
        return meta_loss.detach(), torch.autograd.grad(meta_loss, psi, allow_unused=True)

    def difference_surrogate(self, base: BaseForward, batch: Batch, meta_batch: Batch, inner_lr: float
                             ) -> tuple[torch.Tensor, torch.Tensor]:
        """The one-step hypergradient without a backward pass through the virtual step.

        With theta* = theta - alpha * grad L_train(theta; w) and L_train linear in the per-entry
        losses l for fixed weights, the chain rule gives dL_val(theta*)/dw = -alpha * d/dw L_train(D; w),
        where D = <g*, grad l> are the derivatives of every per-entry loss along g* = grad L_val(theta*).
        D comes from a forward difference (l(theta + s g*) - l(theta)) / s, s = h / |g*| (a shift of norm
        h): one forward without a graph that replays the base pass's dropout masks and batch statistics,
        l(theta) being the base pass's own losses (a second forward only when that pass ran in reduced
        precision). So psi's gradient is that of the returned scalar -alpha * L_train(D; w(psi)): the
        same hypergradient as ``autograd`` up to O(h), for a first-order backward and one forward instead
        of a create-graph backward and a second-order one.

        Returns:
            ``(L_val(theta*) detached, surrogate)``.
        """
        weights = self.sample_weights(base.meta_inputs)
        loss, _ = self.train_loss(base.outputs, batch, {task: w.detach() for task, w in weights.items()}, base.entries)
        params = dict(self.net.named_parameters())
        grads = torch.autograd.grad(loss, [params[n] for n in self.virtual_names], retain_graph=True, allow_unused=True)
        fast = {n: (params[n] - inner_lr * g).detach().requires_grad_() for n, g in zip(self.virtual_names, grads) if g is not None}
        meta_loss = self.meta_loss(params, fast, meta_batch)
        direction = dict(zip(fast, torch.autograd.grad(meta_loss, list(fast.values()), allow_unused=True)))
        direction = {n: g for n, g in direction.items() if g is not None}
        norm = torch.sqrt(sum((g.double() ** 2).sum() for g in direction.values())) if direction else torch.zeros(())
        if float(norm) == 0:  # no meta signal: psi's gradient is zero
            return meta_loss.detach(), sum(0.0 * w.sum() for w in weights.values())
        step = self.config.difference_step / float(norm)
        moved = self.entry_losses_at(params, direction, step, batch, base)
        if base.outputs["au"].dtype == next(iter(params.values())).dtype:
            start = {task: loss.detach() for task, loss in base.entries.items()}
        else:  # the base pass ran under autocast: its losses are too coarse for a difference, redo it exactly
            start = self.entry_losses_at(params, direction, 0.0, batch, base)
        derivative = {task: (moved[task] - start[task]) / step for task in moved}
        self._record_alignment(derivative, batch)
        if "alignment" in self.meta_parts:
            self.alignment_history.record(batch["index"], *batch_standardized(derivative, batch["mask"]))
        reweighted = reweighted_task_losses(derivative, batch["mask"], weights, self.config.normalize)
        return meta_loss.detach(), -inner_lr * self._total(reweighted)

    @torch.no_grad()
    def entry_losses_at(self, params: dict[str, torch.Tensor], direction: dict[str, torch.Tensor], step: float,
                        batch: Batch, base: BaseForward) -> dict[str, torch.Tensor]:
        """Per-entry losses at theta + step * direction, with the base pass's dropout masks (full precision);
        from the base pass's last-stage input when nothing under it moves (``reuse_below``)."""
        moved = {n: p.detach() + step * direction[n] if n in direction else p.detach() for n, p in params.items()}
        below = None if base.below is None else base.below.to(next(iter(moved.values())).dtype)
        with replayed_rng(base.rng_state), torch.autocast(batch["image"].device.type, enabled=False):
            outputs = functional_forward(self.net, moved, buffer_copies(self.net), batch["image"], below)
            return self.entry_losses(outputs, batch)

    # -- one iteration --------------------------------------------------------------------
    def meta_step(self, base: BaseForward, batch: Batch, meta_batch: Batch, inner_lr: float) -> dict[str, float]:
        """Meta-train (virtual step) and meta-test (one step on psi); theta, BN buffers untouched."""
        meta_loss, grads = self.meta_gradients(base, batch, meta_batch, inner_lr)
        psi = list(self.meta_net.parameters())
        # The meta-gradient bypasses DDP's hooks: average it by hand so every rank keeps one psi.
        grads = tuple(all_reduce_mean(torch.zeros_like(p) if g is None else g.clone()) for p, g in zip(psi, grads))
        self.meta_optim.step(psi, grads)
        self.stats.add("loss_meta", meta_loss)
        return {"loss_meta": float(meta_loss)}

    def base_step(self, base: BaseForward, batch: Batch, optimizer: torch.optim.Optimizer, grad_clip: float) -> dict[str, float]:
        """The real step with weights from the updated psi (detached; all 1 before ``weight_from_epoch``, while
        the logs still report the meta-net's weights); commits the BN statistics."""
        with torch.no_grad():
            weights = self.sample_weights(base.meta_inputs)
        warming_up = self.in_first_epochs(self.config.weight_from_epoch)
        applied = {task: torch.ones_like(w) for task, w in weights.items()} if warming_up else weights
        loss, losses = self.train_loss(base.outputs, batch, applied, base.entries)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip > 0:
            nn.utils.clip_grad_norm_(self.net.parameters(), grad_clip)
        optimizer.step()
        with torch.no_grad():
            for name, buffer in self.net.named_buffers():
                buffer.copy_(base.buffers[name])
        self._record_weights(weights, batch)
        logs = {f"loss_{task}": float(value.detach()) for task, value in losses.items()}
        for task in self.weighted:
            labelled = labelled_samples(batch["mask"][task])
            logs[f"weight_{task}"] = float(weights[task][labelled].mean()) if bool(labelled.any()) else 0.0
        return {"loss": float(loss.detach()), **logs}

    def in_first_epochs(self, epochs: int) -> bool:
        """Whether training is still in its first ``epochs`` epochs (counted in MAL iterations: resume-exact)."""
        return int(self.meta_steps) < epochs * self.context.steps_per_epoch

    def train_step(
        self, batch: Batch, optimizer: torch.optim.Optimizer, grad_clip: float = 0.0, forward: StepForward | None = None
    ) -> dict[str, float]:
        """One MAL iteration: meta-train, meta-test, base learning (its functional passes run in fp32
        outside ``forward``; the trainer averages their gradients across processes)."""
        batch = self.drop_meta_faces(batch)
        if len(batch["index"]) == 0:  # a tiny training set whose batch was all meta faces: nothing to learn from
            return {"loss": 0.0}
        meta_batch = self.next_meta_batch(batch["image"].device)
        inner_lr = self.config.inner_lr or float(optimizer.param_groups[0]["lr"])
        base = self.forward_base(batch)
        meta_logs = self.meta_step(base, batch, meta_batch, inner_lr)
        logs = self.base_step(base, batch, optimizer, grad_clip)
        self.meta_steps += 1
        return {**logs, **meta_logs}

    # -- logging ------------------------------------------------------------------------
    @torch.no_grad()
    def _record_weights(self, weights: dict[str, torch.Tensor], batch: Batch) -> None:
        if "au" in self.weighted:
            self.stats.add("weight_au", weights["au"][labelled_samples(batch["mask"]["au"])])
        self._add_expr_split("weight_expr", weights["expr"], batch)

    @torch.no_grad()
    def _record_alignment(self, derivative: dict[str, torch.Tensor], batch: Batch) -> None:
        """Log each sample's alignment with the meta batch, <grad l_i, g*> (``difference`` only): the
        one-step hypergradient of its weight is -alpha times it (normalised), so a weight can only
        learn what these means tell apart (e.g. corrupted vs clean auxiliary faces)."""
        au = labelled_samples(batch["mask"]["au"])
        self.stats.add("align_au", per_face_au_mean(derivative["au"], batch["mask"]["au"])[au])
        self._add_expr_split("align_expr", derivative["expr"], batch)

    def _add_expr_split(self, name: str, values: torch.Tensor, batch: Batch) -> None:
        """Add ``values [B]`` of the expression-labelled faces as ``name``, and as ``name_clean`` /
        ``name_flipped`` when the batch knows which auxiliary labels are corrupted (a benchmark)."""
        labelled = batch["mask"]["expr"].bool()
        self.stats.add(name, values[labelled])
        if "expr_flipped" in batch["info"]:
            flipped = batch["info"]["expr_flipped"].bool()
            self.stats.add(f"{name}_clean", values[labelled & ~flipped])
            self.stats.add(f"{name}_flipped", values[labelled & flipped])

    def on_epoch_end(self, epoch: int) -> dict[str, float]:
        """Mean learned weights of the epoch (AU, expression; clean vs corrupted), meta loss, K."""
        summary = self.stats.summary(std=("weight_expr", "align_expr_clean", "align_expr_flipped"))
        return {"meta_size": float(len(self.meta_index)), **summary}


#: Buffers of options removed from MAL (the ``margin`` input, ``history_by_label``); empty unless used.
REMOVED_BUFFERS = ("label_margin.sums", "face_expr_label")


def _drop_removed_buffers(module: nn.Module, state_dict: dict[str, torch.Tensor], prefix: str, *_: Any) -> None:
    """Let checkpoints written before those options left load: their empty buffers are dropped
    (a non-empty one means the run used a removed option, and loading then fails on it)."""
    for name in REMOVED_BUFFERS:
        if prefix + name in state_dict and state_dict[prefix + name].numel() == 0:
            del state_dict[prefix + name]

