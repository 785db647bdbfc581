"""The meta-net and the functional passes of one MAL iteration (``torch.func.functional_call`` on the
unchanged network: no rewritten layers)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from facemtl.models import MultiTaskNet


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


RngState = tuple[torch.Tensor, list[torch.Tensor]]


@dataclass
class BaseForward:
    """The base batch's forward pass on the real parameters (graph kept for both steps)."""

    outputs: dict[str, Any]
    buffers: dict[str, torch.Tensor]  # BN buffers after the pass (copies; written back after the real step)
    entries: dict[str, torch.Tensor]  # per-entry losses of the weighted tasks (graph kept): MALMethod.entry_losses
    meta_inputs: torch.Tensor  # detached input of the meta-net, [B, d']
    rng_state: RngState  # CPU and CUDA generators before the pass: replays its dropout
    below: torch.Tensor | None = None  # the last stage's input (detached), kept when passes may start there


def functional_forward(net: MultiTaskNet, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor],
                       images: torch.Tensor, below: torch.Tensor | None = None) -> dict[str, Any]:
    """``net(images)`` with ``params`` and ``buffers`` in place of its own (from ``below``, the last
    stage's input, when given)."""
    return functional_call(net, {**params, **buffers}, (images,), {"below": below})


def buffer_copies(net: nn.Module) -> dict[str, torch.Tensor]:
    """Copies of the network's buffers (BN statistics), so a pass leaves the real ones untouched."""
    return {n: b.clone() for n, b in net.named_buffers()}


def rng_state() -> RngState:
    """The CPU and (initialised) CUDA generators' states: a later pass can replay this one's dropout."""
    return torch.get_rng_state(), torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else []


@contextmanager
def replayed_rng(state: RngState) -> Iterator[None]:
    """Run with the generators set to ``state`` (the same dropout masks as the pass that saved it);
    the outside generators are restored afterwards."""
    cpu_state, cuda_states = state
    with torch.random.fork_rng(devices=range(len(cuda_states))):
        torch.set_rng_state(cpu_state)
        if cuda_states:
            torch.cuda.set_rng_state_all(cuda_states)
        yield


@contextmanager
def keeping_last_stage_input(net: MultiTaskNet, keep: bool, captured: dict[str, torch.Tensor]) -> Iterator[None]:
    """With ``keep``, store the input of the backbone's last stage (detached) as ``captured["below"]``
    during the passes inside."""

    def hook(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        captured["below"] = args[0].detach()  # returns None: a pre-hook's return value would replace the input

    handle = net.last_stage.register_forward_pre_hook(hook) if keep else None
    try:
        yield
    finally:
        if handle is not None:
            handle.remove()


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
