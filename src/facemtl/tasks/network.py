"""The network a set of tasks defines: a backbone plus each task's head, built or loaded."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from facemtl.errors import FacemtlError
from facemtl.io.checkpoint import Checkpoint, load_checkpoint
from facemtl.labels import LabelSpaces
from facemtl.models.backbone import create_backbone
from facemtl.models.multitask import MultiTaskNet, has_spatial_features
from facemtl.registry import TASK_SPECS, check_tasks, ordered_tasks


def build_network(
    backbone: str,
    tasks: Sequence[str],
    label_spaces: LabelSpaces,
    pretrained: str = "",
    drop_rate: float = 0.0,
    branch_tasks: Sequence[str] = (),
    **head_options: Any,
) -> MultiTaskNet:
    """A :class:`MultiTaskNet` with one head per task, each made by the task's spec.

    Args:
        backbone: a built-in or timm backbone name.
        tasks: task keys (any order; outputs follow :func:`ordered_tasks`).
        label_spaces: sizes and names of each task's outputs.
        pretrained: optional backbone weights (see ``model.pretrained``).
        drop_rate: dropout on the pooled feature before the heads.
        branch_tasks: tasks with their own copy of the last backbone stage (``model.branch_tasks``).
        head_options: ``model`` config keys the specs read, e.g. ``va_bins=20, va_bin_values="code"``.
    """
    check_tasks(tasks)
    trunk = create_backbone(backbone, pretrained)
    spatial = has_spatial_features(trunk)
    width = int(trunk.num_features)
    heads = {t: TASK_SPECS.get(t).build_head(width, label_spaces, spatial, head_options) for t in ordered_tasks(tasks)}
    return MultiTaskNet(trunk, heads, label_spaces, drop_rate, branch_tasks, backbone_name=backbone)


def load_network(path: str | Path, device: torch.device | str = "cpu") -> tuple[MultiTaskNet, Checkpoint]:
    """The :class:`~facemtl.models.MultiTaskNet` of a checkpoint (file or run folder) and the checkpoint.

    Weights are loaded strictly and the network is returned in eval mode on ``device``;
    ``pretrained`` is never read: every weight comes from the checkpoint.

    Raises:
        FacemtlError: when the weights do not match the network the checkpoint's config describes.
    """
    checkpoint = load_checkpoint(path)
    model = checkpoint.config.get("model", {})
    # binned VA (model.va_bins) changes the va head; older checkpoints have no such key
    binned = {key: model[key] for key in ("va_bins", "va_bin_values") if key in model} if model.get("va_bins") else {}
    net = build_network(
        model.get("backbone", "tiny"), checkpoint.tasks, checkpoint.label_spaces, branch_tasks=model.get("branch_tasks", ()),
        **binned,
    )
    # trainer checkpoints hold the method's state: "net." + network keys, plus what the method owns
    state = {k[4:]: v for k, v in checkpoint.model_state.items() if k.startswith("net.")} or checkpoint.model_state
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise FacemtlError(f"{checkpoint.path}: weights do not match its own config ({str(err).splitlines()[0]})") from None
    return net.to(device).eval(), checkpoint
