"""MAL — Meta Auxiliary Learning for facial action unit detection (Yong Li, Shiguang Shan,
IEEE Transactions on Affective Computing; arXiv 2105.06620).

AU detection (main task, multi-label BCE) is trained together with facial expression
recognition (auxiliary task, CE). A meta-net g(feature; psi) gives every AU sample and
every expression sample a non-negative weight; psi is learned so that one SGD step on the
weighted loss lowers the *unweighted* AU loss on a small held-out AU "meta" set. One
iteration (methods.md §1(a)):

1. meta-train: weights w(psi) from the current features; a differentiable virtual step
   theta*(psi) = theta - alpha * grad L_train(theta; psi) (``torch.func.functional_call``
   on the unchanged network, no rewritten layers);
2. meta-test: L_val(theta*(psi)), the plain AU loss of a meta batch; one step on psi;
3. base learning: weights recomputed with the new psi, detached; the real optimiser step.

There is no official code; the paper leaves these open, so they are options (defaults in
:class:`MALConfig`): weight normalisation (``normalize``), the meta-net's input and width,
which parameters take the virtual step (``virtual_step: all | heads`` = heads + last
backbone stage), the inner lr (default: the optimiser's current lr) and the meta optimiser
(Adam, as Meta-Weight-Net).

Engineering choices, and why:

- The base batch is forwarded once, on the real parameters with *copies* of the BatchNorm
  buffers; the virtual step and the real step both use that graph, and the copies' updated
  running statistics are written back after the real step. So BN statistics move once per
  iteration, and the meta passes never touch theta, its optimiser or its BN buffers.
- The meta-net reads detached features (and losses, labels: ``meta_input``): weights depend on
  psi only, as in Meta-Weight-Net's code.
- The meta-net has one output per weighted task (``au``, ``expr``): a face may carry both
  labels (synthetic benchmark). With ``weight_au: false`` it is the paper's d -> 100 -> 1.
- The meta set (K faces with AU labels) is carved from the *training* split with a seeded
  draw and removed from every base batch (``meta_holdout: false`` keeps them there too); K is
  logged. psi and its optimiser's state are buffers and parameters of this module, so
  checkpoints and resume cover them.
- ``virtual_step: heads`` moves nothing under the backbone's last stage, so on backbones that
  split there (built-in VGG-style ones) the ``difference`` pass starts from the base pass's
  last-stage input instead of running the whole network again.
- ``meta_input`` parts ``dynamics``, ``margin`` and ``alignment`` read a face's history rather than one
  visit (:class:`FaceHistory`: its label confidence, its label margin, and its alignment with the meta
  gradient, over its visits), because one visit's loss or alignment is too noisy to tell a corrupted auxiliary label
  from a hard clean one; the histories are buffers, so resume keeps them.
- With ``hypergradient: difference`` each face's alignment with the meta gradient is logged
  (``align_*``): it is what the meta-net is taught, so it shows whether a weight *can* learn a
  distinction (e.g. corrupted vs clean auxiliary labels) before asking why it did not.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from facemtl.config import MethodConfig
from facemtl.data.dataset import move_batch
from facemtl.errors import FacemtlError
from facemtl.losses.meta import (
    NORMALIZATIONS,
    au_entry_losses,
    expr_sample_losses,
    mean_sample_weight,
    virtual_sgd_step,
    weighted_task_loss,
)
from facemtl.methods.base import Batch, EpochStats, Method, StepForward, TrainContext
from facemtl.methods.buffered_optimizer import BufferedOptimizer
from facemtl.models import MultiTaskNet
from facemtl.registry import METHODS

_CHOICES = {
    "normalize": NORMALIZATIONS,
    "virtual_step": ("all", "heads"),
    "meta_optimizer": ("adam", "sgd"),
    "hypergradient": ("autograd", "difference"),
}

#: parts of ``method.meta_input``
META_INPUTS = ("feat", "loss", "label", "au", "dynamics", "margin", "alignment")
#: tasks whose per-face histories ``meta_input`` parts dynamics, margin and alignment keep, in column order
HISTORY_TASKS = ("au", "expr")


@dataclass
class MALConfig(MethodConfig):
    """MAL options; every value the paper does not give is a documented default."""

    name: str = "mal"
    meta_size: int = 256  # K: AU-labelled training faces drawn as the meta set
    # true: the meta faces only serve the meta-test (an unbiased meta set, never fitted by theta);
    # false: they also stay in the base stream, so no AU face is lost to the meta set (the paper
    # takes it from the training fold and does not say whether it is also trained on)
    meta_holdout: bool = True
    meta_batch_size: int = 32  # meta-test batch drawn from the meta set each iteration
    meta_lr: float = 1e-3  # beta, lr of the meta-net's optimiser
    meta_optimizer: str = "adam"  # adam (Meta-Weight-Net) | sgd
    meta_weight_decay: float = 0.0
    meta_hidden: int = 100  # meta-net width: d -> hidden -> outputs, sigmoid
    # '+'-joined parts: feat (paper: g(f(x))), loss (Meta-Weight-Net: the per-sample AU and expression
    # losses), label (one-hot expression label: lets the meta-net judge a label against the face),
    # au (the predicted AU probabilities: with label, whether the expression label fits the face's AUs),
    # dynamics (each face's training dynamics: mean and std over its visits so far of the probability
    # the model gives its own AU labels and its expression label, as in dataset cartography), margin (each
    # face's mean margin of its labels over its visits so far: the area under the margin, Pleiss et al. 2020), alignment
    # (each face's mean alignment with the meta gradient over its past visits; hypergradient: difference)
    meta_input: str = "feat"
    # standardise each input column over the base batch (mean 0, std 1): features and losses have
    # drifting, unequal scales, and the meta-net's sigmoid saturates on large inputs (its gradient then vanishes)
    meta_standardize: bool = False
    # compare each face's expression history (parts dynamics, margin, alignment) with the faces that carry
    # the same expression label: standardise it over the visited training faces with that label. Why: some
    # clean classes are hard for every face (a neutral face looks like every subtle expression), so their
    # histories look like corrupted labels' on an absolute scale, but not against their own class (on the
    # synthetic benchmark it levels the clean classes' weights, with no gain in AU F1: docs/benchmarks.md)
    history_by_label: bool = False
    weight_au: bool = True  # also weight AU samples; false fixes their weights at 1
    # epochs whose real steps keep every weight at 1 (the fixed task weights) while the meta-net already learns
    # and the per-face histories fill; the learned weights apply from then on. Why: a face lowered before the
    # model has learned it keeps a low confidence history because it is lowered, so a history-based weight
    # applied from the start confirms itself (docs/benchmarks.md: a hard selection on the confidence history
    # loses 0.4 point of AU F1 after one epoch and gains 0.7 after four; MAL with dynamics+alignment goes from
    # 0.35 below the best fixed weight to 0.37 above it over 10 seeds with weight_from_epoch 4 of 8, meta lr 1e-3)
    weight_from_epoch: int = 0
    # batch: sum(w l)/n | sum: sum(w l)/sum(w) | none: sum(w l) | relative: batch / mean weight over both tasks
    normalize: str = "batch"
    virtual_step: str = "all"  # parameters taking the virtual step: all | heads (+ last backbone stage)
    inner_lr: float = 0.0  # alpha; 0 = the real optimiser's current lr (first group)
    # autograd: backprop through the virtual step (second order); difference: the same one-step
    # hypergradient from the meta gradient at theta* and one extra forward (see difference_surrogate)
    hypergradient: str = "autograd"
    difference_step: float = 1e-3  # difference: norm h of the parameter shift theta + h * g*/|g*|
    meta_seed: int = 0  # seeds the meta-set draw and the meta batches

    def check(self) -> None:
        for key, choices in _CHOICES.items():
            if getattr(self, key) not in choices:
                raise FacemtlError(f"method.{key}={getattr(self, key)!r} is not valid; choose from: {', '.join(choices)}")
        parts = self.meta_input.split("+")
        if not parts or len(set(parts)) != len(parts) or not set(parts) <= set(META_INPUTS):
            raise FacemtlError(f"method.meta_input={self.meta_input!r} is not valid; join distinct parts of "
                               f"{', '.join(META_INPUTS)} with '+' (e.g. feat+loss)")
        if "alignment" in parts and self.hypergradient != "difference":
            raise FacemtlError("method.meta_input part alignment needs method.hypergradient=difference "
                               "(the per-face alignments come from its forward difference)")
        if self.history_by_label and not set(parts) & {"dynamics", "margin", "alignment"}:
            raise FacemtlError(f"method.history_by_label=true needs a meta_input part dynamics, margin or alignment "
                               f"(the histories it compares within each label); got {self.meta_input!r}")
        if self.weight_from_epoch < 0:
            raise FacemtlError(f"method.weight_from_epoch={self.weight_from_epoch} must be >= 0")
        for key in ("meta_size", "meta_batch_size", "meta_hidden"):
            if getattr(self, key) < 1:
                raise FacemtlError(f"method.{key}={getattr(self, key)} must be at least 1")
        if self.difference_step <= 0:
            raise FacemtlError(f"method.difference_step={self.difference_step} must be > 0")
        if self.meta_lr < 0 or self.inner_lr < 0:
            raise FacemtlError("method.meta_lr and method.inner_lr must be >= 0")


class MetaWeightNet(nn.Module):
    """g(x; psi): an MLP ``d -> hidden -> outputs`` with a sigmoid, one weight per task column.

    Args:
        in_features: input width d.
        hidden: hidden width.
        outputs: weighted tasks.
    """

    def __init__(self, in_features: int, hidden: int, outputs: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, outputs), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, d] -> [B, outputs]`` weights in (0, 1)."""
        return self.mlp(x)


class FaceHistory(nn.Module):
    """Per training face and column, the visits, sum and sum of squares of a value recorded at each
    of the face's visits (a buffer: checkpoints and resume keep it).

    Every process records every process's faces, so the histories stay identical under DDP (a
    face's visits may fall to different processes from one epoch to the next).

    Args:
        num_faces: training faces (``batch["index"]`` runs over ``range(num_faces)``); 0 when unused.
        columns: values recorded per visit.
    """

    def __init__(self, num_faces: int, columns: int) -> None:
        super().__init__()
        self.register_buffer("sums", torch.zeros(num_faces, columns, 3))

    @torch.no_grad()
    def record(self, index: torch.Tensor, values: torch.Tensor, visited: torch.Tensor) -> None:
        """Add one visit of ``values [B, columns]`` where ``visited [B, columns]`` (0/1) is set."""
        from facemtl.distributed import gather_cat  # facemtl.engine imports the methods

        columns = values.shape[1]
        index = gather_cat(index.to(self.sums.device))
        both = gather_cat(torch.cat([values, visited], 1).detach().to(self.sums.device, self.sums.dtype))
        values, visited = both[:, :columns], both[:, columns:]
        values = torch.where(visited.bool(), values, 0.0)  # an unvisited column's value may be anything (nan included)
        self.sums.index_add_(0, index, torch.stack([visited, values, values ** 2], dim=2))

    def mean_std(self, index: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``([B, columns], [B, columns])``: the mean and std over each face's visits (0 without visits),
        for the faces of ``index`` (``None``: every face, ``[num_faces, columns]``)."""
        history = self.sums if index is None else self.sums[index.to(self.sums.device)]
        visits = history[..., 0].clamp_min(1)
        mean = history[..., 1] / visits
        std = (history[..., 2] / visits - mean ** 2).clamp_min(0).sqrt()
        device = self.sums.device if index is None else index.device
        return mean.to(device), std.to(device)

    def visited(self) -> torch.Tensor:
        """``[num_faces, columns]`` bool: whether each face has a recorded visit in each column."""
        return self.sums[..., 0] > 0


@dataclass
class BaseForward:
    """The base batch's forward pass on the real parameters (graph kept for both steps)."""

    outputs: dict[str, Any]
    buffers: dict[str, torch.Tensor]  # BN buffers after the pass (copies; written back after the real step)
    entries: dict[str, torch.Tensor]  # per-entry losses of the weighted tasks (graph kept): see MALMethod.entry_losses
    meta_inputs: torch.Tensor  # detached input of the meta-net, [B, d']
    rng_state: tuple[torch.Tensor, list[torch.Tensor]]  # CPU and CUDA generators before the pass: replays its dropout
    below: torch.Tensor | None = None  # the last stage's input (detached), kept when passes may start there


def last_stage_prefix(net: MultiTaskNet) -> str:
    """Name of the backbone's last stage (``backbone.layer4``, ``backbone.stages.3``, ...).

    timm models name their stages in ``feature_info``; otherwise descend into the last
    child holding parameters until a module has several such children.
    """
    info = getattr(net.backbone, "feature_info", None)
    if isinstance(info, list) and info and "module" in info[-1]:
        return f"backbone.{info[-1]['module']}"
    module, name = net.backbone, "backbone"
    while True:
        children = [(n, c) for n, c in module.named_children() if any(True for _ in c.parameters())]
        if not children:
            return name
        child_name, module = children[-1]
        name = f"{name}.{child_name}"
        if len(children) > 1:
            return name


def face_view(dataset: Any) -> Any:
    """The training set indexed by face (``batch["index"]``), ignoring a mix's per-epoch draw."""
    if hasattr(dataset, "base") and hasattr(dataset, "augment"):  # TransformedDataset
        view = copy.copy(dataset)
        view.base = face_view(dataset.base)
        return view
    if getattr(dataset, "order", None) is not None:  # MixedDataset with resampling
        view = copy.copy(dataset)
        view.order = None
        return view
    return dataset


@METHODS.register("mal")
class MALMethod(Method):
    """Meta auxiliary learning: AU detection with meta-weighted AU and expression samples."""

    config_class = MALConfig
    required_tasks = ("au", "expr")
    config: MALConfig

    def __init__(self, net: MultiTaskNet, config: MALConfig, context: TrainContext) -> None:
        super().__init__(net, config, context)
        self.weighted = ("au", "expr") if config.weight_au else ("expr",)
        self.meta_parts = config.meta_input.split("+")
        sizes = {"feat": net.num_features, "loss": 2, "label": net.label_spaces.output_size("expr"),
                 "au": net.label_spaces.output_size("au"), "dynamics": 2 * len(HISTORY_TASKS), "margin": len(HISTORY_TASKS),
                 "alignment": len(HISTORY_TASKS)}
        width = sum(sizes[part] for part in self.meta_parts)
        self.meta_net = MetaWeightNet(width, config.meta_hidden, len(self.weighted))
        self.meta_optim = BufferedOptimizer(list(self.meta_net.parameters()), config.meta_optimizer, config.meta_lr,
                                            config.meta_weight_decay)
        self.register_buffer("meta_index", torch.full((config.meta_size,), -1, dtype=torch.long))
        self.register_buffer("meta_steps", torch.zeros((), dtype=torch.long))
        # per training face and task (au, expr): the probability of its labels, their margin, and its
        # alignment with the meta gradient, over its visits (meta_input parts dynamics, margin, alignment)
        faces = {part: context.num_train if part in self.meta_parts else 0 for part in ("dynamics", "margin", "alignment")}
        self.label_confidence = FaceHistory(faces["dynamics"], len(HISTORY_TASKS))
        self.label_margin = FaceHistory(faces["margin"], len(HISTORY_TASKS))
        self.alignment_history = FaceHistory(faces["alignment"], len(HISTORY_TASKS))
        # each training face's expression label (-1: none), filled by set_training_data (history_by_label)
        by_label = config.history_by_label and any(faces.values())
        self.register_buffer("face_expr_label", torch.full((context.num_train if by_label else 0,), -1, dtype=torch.long))
        self.stats = EpochStats(("weight_au", "weight_expr", "weight_expr_clean", "weight_expr_flipped", "loss_meta",
                                 "align_au", "align_expr", "align_expr_clean", "align_expr_flipped"))
        self.meta_data: Any = None
        prefix = last_stage_prefix(net) + "."
        self.virtual_names = [n for n, p in net.named_parameters() if p.requires_grad and (
            config.virtual_step == "all" or n.startswith(("heads.", prefix)))]
        # heads mode moves nothing under the last stage: the difference pass can start there
        self.reuse_below = config.virtual_step == "heads" and net.splits_at_last_stage

    # -- data ---------------------------------------------------------------------------
    def on_fit_start(self, datasets: Mapping[str, Any]) -> None:
        """Draws the meta set from ``datasets["train"]`` (:meth:`set_training_data`)."""
        self.set_training_data(datasets["train"])

    def set_training_data(self, dataset: Any) -> None:
        """Draw the meta set: ``meta_size`` AU-labelled training faces (seeded); kept out of base batches
        unless ``meta_holdout`` is false."""
        k = self.config.meta_size
        self.meta_index.copy_(draw_meta_set(dataset.mask["au"], k, self.config.meta_seed).to(self.meta_index.device))
        labelled = int(labelled_samples(dataset.mask["au"]).sum())
        self.meta_data = face_view(dataset)
        if len(self.face_expr_label):
            expr = torch.where(dataset.mask["expr"].bool(), dataset.labels["expr"].long(), -1)
            self.face_expr_label.copy_(expr.to(self.face_expr_label.device))
        where = "held out of" if self.config.meta_holdout else "also kept in"
        print(f"MAL meta set: K={k} AU-labelled training faces {where} the base stream "
              f"(of {labelled} AU-labelled, {len(dataset.mask['au'])} in all)", flush=True)

    def drop_meta_faces(self, batch: Batch) -> Batch:
        """The batch without its meta-set faces (they only serve the meta-test); unchanged when
        ``meta_holdout`` is false."""
        return drop_faces(batch, self.meta_index) if self.config.meta_holdout else batch

    def next_meta_batch(self, device: torch.device) -> Batch:
        """A meta batch drawn by a generator seeded by (meta_seed, iteration): resume-exact."""
        if self.meta_data is None or int(self.meta_index[0]) < 0:
            raise FacemtlError("method mal: no meta set; the trainer calls on_fit_start(datasets) first")
        generator = torch.Generator().manual_seed(_seed(self.config.meta_seed, int(self.meta_steps)))
        k = len(self.meta_index)
        picks = torch.randperm(k, generator=generator)[: min(self.config.meta_batch_size, k)]
        indices = self.meta_index.cpu()[picks].sort().values.tolist()
        return move_batch(self.meta_data.__getitems__(indices), device)

    # -- the pieces of one iteration -------------------------------------------------------
    def param_groups(self, train: Any) -> list[dict[str, Any]]:
        """Only the network: psi has its own optimiser (:class:`BufferedOptimizer`)."""
        return [{"params": [p for p in self.net.parameters() if p.requires_grad]}]

    def _call(self, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor], images: torch.Tensor,
              below: torch.Tensor | None = None) -> dict:
        return functional_call(self.net, {**params, **buffers}, (images,), {"below": below})

    def _buffer_copies(self) -> dict[str, torch.Tensor]:
        return {n: b.clone() for n, b in self.net.named_buffers()}

    def forward_base(self, batch: Batch) -> BaseForward:
        """Forward the base batch on the real parameters and copies of the BN buffers."""
        buffers = self._buffer_copies()
        rng_state = (torch.get_rng_state(), torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [])
        captured: dict[str, torch.Tensor] = {}

        def keep_below(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            captured["below"] = args[0].detach()  # returns None: a pre-hook's return value would replace the input

        hook = self.net.last_stage.register_forward_pre_hook(keep_below) if self.reuse_below else None
        try:
            outputs = self._call(dict(self.net.named_parameters()), buffers, batch["image"])
        finally:
            if hook is not None:
                hook.remove()
        entries = self.entry_losses(outputs, batch)
        if "dynamics" in self.meta_parts:
            self.update_confidence_history(entries, batch)
        if "margin" in self.meta_parts:
            self.update_margin_history(outputs, batch)
        meta_inputs = self.meta_inputs(outputs, entries, batch)
        return BaseForward(outputs, buffers, entries, meta_inputs, rng_state, captured.get("below"))

    def meta_inputs(self, outputs: dict[str, Any], entries: dict[str, torch.Tensor], batch: Batch) -> torch.Tensor:
        """The meta-net's input ``[B, d']``, detached: the parts of ``method.meta_input`` side by side."""
        parts = []
        for part in self.meta_parts:
            if part == "feat":
                parts.append(outputs["feat"])
            elif part == "loss":
                parts += [per_face_au_mean(entries["au"], batch["mask"]["au"])[:, None], entries["expr"][:, None]]
            elif part == "au":
                parts.append(torch.sigmoid(outputs["au"]).to(outputs["feat"].dtype))
            elif part == "dynamics":
                parts.append(self.training_dynamics(batch["index"]).to(outputs["feat"].dtype))
            elif part == "margin":
                parts.append(self.history_input(self.label_margin, batch["index"]).to(outputs["feat"].dtype))
            elif part == "alignment":
                parts.append(self.history_input(self.alignment_history, batch["index"]).to(outputs["feat"].dtype))
            else:  # label: one-hot expression label, zeros where the face has none
                classes = outputs["expr"].shape[1]
                labelled = batch["mask"]["expr"].bool()
                one_hot = nn.functional.one_hot(batch["labels"]["expr"].long().clamp(0, classes - 1), classes)
                parts.append((one_hot * labelled[:, None]).to(outputs["feat"].dtype))
        inputs = torch.cat(parts, dim=1).detach()
        if self.config.meta_standardize and len(inputs) > 1:
            inputs = (inputs - inputs.mean(0)) / inputs.std(0).clamp_min(1e-6)
        return inputs

    def update_confidence_history(self, entries: dict[str, torch.Tensor], batch: Batch) -> None:
        """Add this visit's label confidences to each face's history: per task, the probability the
        model gives the face's label, ``exp(-loss)`` (AU: the mean over its labelled AUs)."""
        confidence = {task: torch.exp(-loss.detach()) for task, loss in entries.items()}
        self.label_confidence.record(batch["index"], *self._per_face(confidence, batch))

    def update_margin_history(self, outputs: dict[str, Any], batch: Batch) -> None:
        """Add this visit's label margins to each face's history (:func:`label_margins`; AU: the mean over
        its labelled AUs).

        Why: a corrupted label and a hard clean one both get a low probability, but on a corrupted face
        the model, taught by the other faces, confidently predicts *another* class (a large negative
        margin), while on a hard face it hesitates (a margin near 0). The mean margin over the visits (the
        area under the margin) ranks mislabelled samples apart from hard ones (Pleiss et al., NeurIPS 2020).
        On the synthetic benchmark it separates corrupted auxiliary labels no better than ``dynamics``
        (AUC 0.93 both; docs/benchmarks.md).
        """
        self.label_margin.record(batch["index"], *self._per_face(label_margins(outputs, batch), batch))

    def _per_face(self, values: dict[str, torch.Tensor], batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """``([B, T], [B, T])`` for the tasks of :data:`HISTORY_TASKS`: each face's value (AU: the mean over
        its labelled AUs) and whether it has that task's label."""
        masks = {task: batch["mask"][task].reshape(len(batch["index"]), -1).float() for task in HISTORY_TASKS}
        face_values = [per_face_au_mean(values[task].reshape(len(masks[task]), -1) * masks[task], masks[task])
                       for task in HISTORY_TASKS]
        return torch.stack(face_values, 1), torch.stack([masks[task].amax(1) for task in HISTORY_TASKS], 1)

    def update_alignment_history(self, derivative: dict[str, torch.Tensor], batch: Batch) -> None:
        """Add this visit's alignment with the meta gradient, <grad l_i, g*>, to each face's history,
        standardised over the batch's faces with that task's label.

        Why: one visit's alignment is what the meta-net is taught, but it is noisy (on the synthetic
        benchmark clean and corrupted auxiliary faces differ by 0.1-0.2 std per visit); averaged over a face's visits it estimates
        whether training on that face helps the main task. Standardising makes visits from early and
        late training (where |g*| differs by orders of magnitude) comparable.
        """
        values, labelled = self._per_face(derivative, batch)
        for column in range(values.shape[1]):
            rows = labelled[:, column].bool()
            if int(rows.sum()) > 1:
                chosen = values[rows, column]
                values[rows, column] = (chosen - chosen.mean()) / chosen.std().clamp_min(1e-12)
            else:  # a lone face has no batch to be standardised against
                labelled[:, column] = 0
        self.alignment_history.record(batch["index"], values, labelled)

    def training_dynamics(self, index: torch.Tensor) -> torch.Tensor:
        """``[B, 4]``: per face, the mean and std of its label confidence over its visits so far, for
        the AU labels and the expression label (zeros for a task the face has no label of).

        Why: a face whose label the model keeps giving a low probability is likely mislabelled,
        while a hard face with a correct label is learned over the visits (its confidence rises and
        varies), which one visit's loss cannot show (dataset cartography, Swayamdipta et al., EMNLP
        2020). On the synthetic benchmark it separates corrupted auxiliary labels well (AUC 0.93) but,
        alone, also lowers hard clean faces; beside ``alignment`` it does not (docs/benchmarks.md).
        """
        return self.history_input(self.label_confidence, index, with_std=True)

    def history_input(self, history: FaceHistory, index: torch.Tensor, with_std: bool = False) -> torch.Tensor:
        """``[B, T]`` (``[B, 2T]`` with the std beside each mean): the faces' mean (and std) of ``history``
        over their visits per task of :data:`HISTORY_TASKS`; with ``history_by_label`` the expression
        columns are standardised within the face's expression label (:func:`standardize_within_label`)."""
        if not self.config.history_by_label:
            mean, std = history.mean_std(index)
            return torch.stack([mean, std], dim=2).flatten(1) if with_std else mean
        mean, std = history.mean_std()
        expr, counted = HISTORY_TASKS.index("expr"), history.visited()[:, HISTORY_TASKS.index("expr")]
        columns = [mean, std] if with_std else [mean]
        for column in columns:
            column[:, expr] = standardize_within_label(column[:, expr], self.face_expr_label, counted)
        rows = index.to(mean.device)
        return torch.stack([column[rows] for column in columns], dim=2).flatten(1).to(index.device)

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

    def weighted_losses(self, entries: dict[str, torch.Tensor], mask: dict[str, torch.Tensor],
                        weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``{au, expr}`` weighted, normalised task losses; linear in ``entries`` for fixed weights."""
        norm = self.config.normalize
        per_task = "batch" if norm == "relative" else norm
        losses = {task: weighted_task_loss(entries[task], mask[task], weights[task], per_task) for task in ("au", "expr")}
        if norm == "relative":  # a uniform scale of all weights cancels: only relative weights are learned
            labelled = {task: labelled_samples(mask[task]) for task in ("au", "expr")}
            scale = mean_sample_weight(weights, labelled).clamp_min(1e-12)
            losses = {task: loss / scale for task, loss in losses.items()}
        return losses

    def train_loss(self, outputs: dict[str, Any], batch: Batch, weights: dict[str, torch.Tensor],
                   entries: dict[str, torch.Tensor] | None = None) -> tuple[torch.Tensor, dict]:
        """L_train = sum_t task_weight_t * loss_t, AU and expression losses per-sample weighted
        (``entries``: their per-entry losses when already computed, e.g. ``BaseForward.entries``)."""
        losses = self.task_losses(outputs, batch, tuple(t for t in self.net.tasks if t not in ("au", "expr")))
        losses.update(self.weighted_losses(entries or self.entry_losses(outputs, batch), batch["mask"], weights))
        return self._total(losses), losses

    def _total(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        return sum(self.config.task_weights.get(task, 1.0) * loss for task, loss in losses.items())

    def meta_objective(self, base: BaseForward, batch: Batch, meta_batch: Batch, inner_lr: float) -> torch.Tensor:
        """L_val(theta*(psi)): the unweighted AU loss of a meta batch after the virtual step (a function of psi)."""
        weights = self.sample_weights(base.meta_inputs)
        loss, _ = self.train_loss(base.outputs, batch, weights, base.entries)
        params = dict(self.net.named_parameters())
        fast = virtual_sgd_step({n: params[n] for n in self.virtual_names}, loss, inner_lr)
        return self._meta_loss(params, fast, meta_batch)

    def _meta_loss(self, params: dict[str, torch.Tensor], fast: dict[str, torch.Tensor], meta_batch: Batch) -> torch.Tensor:
        """The plain AU loss of the meta batch on ``fast`` (theta*), the other parameters detached."""
        frozen = {n: p.detach() for n, p in params.items() if n not in fast}  # heads mode: no graph below the last stage
        meta_out = self._call({**frozen, **fast}, self._buffer_copies(), meta_batch["image"])
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
        losses l for fixed weights (:meth:`weighted_losses`), the chain rule gives
        dL_val(theta*)/dw = -alpha * d/dw L_train(D; w), where D = <g*, grad l> are the
        derivatives of every per-entry loss along g* = grad L_val(theta*). D comes from a
        forward difference (l(theta + s g*) - l(theta)) / s, s = h / |g*| (a shift of norm h):
        one forward without a graph that replays the base pass's dropout masks and batch statistics, l(theta) being the base
        pass's own losses (a second forward only when that pass ran in reduced precision). So
        psi's gradient is that of the returned scalar -alpha * L_train(D; w(psi)): the same
        hypergradient as ``autograd`` up to O(h) (about 1 % in float32 at h = 1e-3, measured),
        for a first-order backward and one forward instead of a create-graph backward and a
        second-order one.

        Returns:
            ``(L_val(theta*) detached, surrogate)``.
        """
        weights = self.sample_weights(base.meta_inputs)
        loss, _ = self.train_loss(base.outputs, batch, {task: w.detach() for task, w in weights.items()}, base.entries)
        params = dict(self.net.named_parameters())
        grads = torch.autograd.grad(loss, [params[n] for n in self.virtual_names], retain_graph=True, allow_unused=True)
        fast = {n: (params[n] - inner_lr * g).detach().requires_grad_() for n, g in zip(self.virtual_names, grads) if g is not None}
        meta_loss = self._meta_loss(params, fast, meta_batch)
        direction = dict(zip(fast, torch.autograd.grad(meta_loss, list(fast.values()), allow_unused=True)))
        direction = {n: g for n, g in direction.items() if g is not None}
        norm = torch.sqrt(sum((g.double() ** 2).sum() for g in direction.values())) if direction else torch.zeros(())
        if float(norm) == 0:  # no meta signal: psi's gradient is zero
            return meta_loss.detach(), sum(0.0 * w.sum() for w in weights.values())
        step = self.config.difference_step / float(norm)
        moved = self._entry_losses_at(params, direction, step, batch, base)
        if base.outputs["au"].dtype == next(iter(params.values())).dtype:
            start = {task: loss.detach() for task, loss in base.entries.items()}
        else:  # the base pass ran under autocast: its losses are too coarse for a difference, redo it exactly
            start = self._entry_losses_at(params, direction, 0.0, batch, base)
        derivative = {task: (moved[task] - start[task]) / step for task in moved}
        self._record_alignment(derivative, batch)
        if "alignment" in self.meta_parts:
            self.update_alignment_history(derivative, batch)
        return meta_loss.detach(), -inner_lr * self._total(self.weighted_losses(derivative, batch["mask"], weights))

    @torch.no_grad()
    def _entry_losses_at(self, params: dict[str, torch.Tensor], direction: dict[str, torch.Tensor], step: float,
                         batch: Batch, base: BaseForward) -> dict[str, torch.Tensor]:
        """Per-entry losses at theta + step * direction, with the base pass's dropout masks (full precision);
        from the base pass's last-stage input when nothing under it moves (``reuse_below``)."""
        moved = {n: p.detach() + step * direction[n] if n in direction else p.detach() for n, p in params.items()}
        below = None if base.below is None else base.below.to(next(iter(moved.values())).dtype)
        cpu_state, cuda_states = base.rng_state
        device_type = batch["image"].device.type
        with torch.random.fork_rng(devices=range(len(cuda_states))), torch.autocast(device_type, enabled=False):
            torch.set_rng_state(cpu_state)
            if cuda_states:
                torch.cuda.set_rng_state_all(cuda_states)
            return self.entry_losses(self._call(moved, self._buffer_copies(), batch["image"], below), batch)

    def meta_step(self, base: BaseForward, batch: Batch, meta_batch: Batch, inner_lr: float) -> dict[str, float]:
        """Meta-train (virtual step) and meta-test (one step on psi); theta, BN buffers untouched."""
        meta_loss, grads = self.meta_gradients(base, batch, meta_batch, inner_lr)
        psi = list(self.meta_net.parameters())
        # The meta-gradient bypasses DDP's hooks: average it by hand so every rank keeps one psi.
        from facemtl.distributed import all_reduce_mean  # facemtl.engine imports the methods

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
        self._record(weights, batch)
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
    def _record(self, weights: dict[str, torch.Tensor], batch: Batch) -> None:
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


def labelled_samples(mask: torch.Tensor) -> torch.Tensor:
    """``[B]`` bool: samples with at least one label in a task's mask (``[B]`` or ``[B, A]``)."""
    return mask.reshape(len(mask), -1).bool().any(dim=1)


def per_face_au_mean(entries: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``[B]``: the mean of ``entries [B, A]`` over each face's labelled AUs (0 for a face with none)."""
    return entries.sum(1) / mask.sum(1).clamp_min(1)


def label_margins(outputs: dict[str, Any], batch: Batch) -> dict[str, torch.Tensor]:
    """Detached margins of the labels, 0 where there is no label: ``au [B, A]``, the logit signed by the
    label (positive when the AU label is predicted), and ``expr [B]``, the label's logit minus the
    largest other logit."""
    labels, mask = batch["labels"], batch["mask"]
    au_logits, expr_logits = outputs["au"].detach(), outputs["expr"].detach()
    au_sign = torch.where(mask["au"].bool(), 2 * labels["au"].to(au_logits.dtype) - 1, 0.0)
    label = labels["expr"].long().clamp(0, expr_logits.shape[1] - 1)[:, None]
    others = expr_logits.scatter(1, label, float("-inf"))
    expr_margin = expr_logits.gather(1, label)[:, 0] - others.amax(1)
    return {"au": au_sign * au_logits, "expr": torch.where(mask["expr"].bool(), expr_margin, 0.0)}


def standardize_within_label(values: torch.Tensor, labels: torch.Tensor, counted: torch.Tensor) -> torch.Tensor:
    """``values [N]`` standardised within each label class: each value minus the mean over the ``counted``
    faces with the same label, over their std (0, the class mean, for a face without a label, ``labels < 0``,
    or not counted: an unvisited face has no history to judge).

    Args:
        values: one value per face.
        labels: each face's class, -1 for none.
        counted: ``[N]`` bool, the faces whose values enter their class's mean and std.
    """
    has_label = labels >= 0
    classes = int(labels.max()) + 1 if bool(has_label.any()) else 1
    label = labels.clamp_min(0)
    keep = (counted & has_label).to(values.dtype)
    count = torch.zeros(classes, dtype=values.dtype, device=values.device).index_add_(0, label, keep)
    mean = torch.zeros_like(count).index_add_(0, label, keep * values) / count.clamp_min(1)
    # two passes: a class's spread may be tiny beside its mean, where E[x^2] - E[x]^2 cancels in float32
    squares = torch.zeros_like(count).index_add_(0, label, keep * (values - mean[label]) ** 2)
    std = (squares / count.clamp_min(1)).sqrt().clamp_min(1e-6)
    return torch.where(has_label & counted, (values - mean[label]) / std[label], 0.0)


def draw_meta_set(au_mask: torch.Tensor, size: int, seed: int) -> torch.Tensor:
    """The meta set: ``size`` face indices drawn (seeded) among the faces with an AU label, sorted."""
    labelled = torch.nonzero(labelled_samples(au_mask)).flatten()
    if len(labelled) <= size:
        raise FacemtlError(f"method.meta_size={size} needs more AU-labelled training faces than that; "
                           f"the training set has {len(labelled)}")
    generator = torch.Generator().manual_seed(_seed(seed, -1))
    return labelled[torch.randperm(len(labelled), generator=generator)[:size]].sort().values


def drop_faces(batch: Batch, faces: torch.Tensor) -> Batch:
    """The batch without the faces whose ``index`` is in ``faces``."""
    keep = ~torch.isin(batch["index"], faces.to(batch["index"].device))
    return batch if bool(keep.all()) else _select(batch, keep)


def _seed(seed: int, stream: int) -> int:
    """A seed of its own for (meta_seed, stream): never the trainer's (seed, epoch) permutation seed."""
    return int(np.random.SeedSequence([seed, 0x3A1, stream + 1]).generate_state(1)[0])


def _select(batch: Batch, keep: torch.Tensor) -> Batch:
    """Rows ``keep`` of every per-sample tensor of a batch."""
    out: Batch = {}
    for key, value in batch.items():
        if isinstance(value, dict):
            out[key] = {k: v[keep] for k, v in value.items()}
        else:
            out[key] = value[keep]
    return out
