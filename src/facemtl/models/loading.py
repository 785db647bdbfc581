"""A trained network from a checkpoint file: weights strictly loaded, eval mode."""

from __future__ import annotations

from pathlib import Path

import torch

from facemtl.errors import FacemtlError
from facemtl.io.checkpoint import Checkpoint, load_checkpoint
from facemtl.models.multitask import MultiTaskNet


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
    net = MultiTaskNet(
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
