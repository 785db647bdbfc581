"""Task heads: plain layers from the backbone's features to a task's outputs, no losses.

Every head is called as ``head(feat, feat_map)`` (pooled feature ``[B, D]``, last feature
map ``[B, D, h, w]``) and returns its outputs keyed by output name, the task's own key
first; most heads read only ``feat``. Which head a task gets is its spec's choice
(:meth:`facemtl.tasks.base.TaskSpec.build_head`); heads know nothing of losses or labels.
"""

from __future__ import annotations

import torch
from torch import nn

from facemtl.va_bins import va_bin_values


class LinearHead(nn.Linear):
    """One linear layer: ``{task: logits or values [B, out_features]}`` (state-dict keys ``weight``, ``bias``)."""

    def __init__(self, task: str, in_features: int, out_features: int) -> None:
        super().__init__(in_features, out_features)
        self.task = task

    def forward(self, feat: torch.Tensor, feat_map: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        return {self.task: super().forward(feat)}


class BoundedHead(nn.Sequential):
    """Linear then tanh: values in [-1, 1] (valence, arousal); state-dict keys ``0.weight``, ``0.bias``."""

    def __init__(self, task: str, in_features: int, out_features: int) -> None:
        super().__init__(nn.Linear(in_features, out_features), nn.Tanh())
        self.task = task

    def forward(self, feat: torch.Tensor, feat_map: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        return {self.task: super().forward(feat)}


class AttributeHead(nn.Module):
    """One linear classifier per named attribute: ``{task: {name: logits [B, C_name]}}``."""

    def __init__(self, task: str, in_features: int, attributes: dict[str, tuple[str, ...]]) -> None:
        super().__init__()
        self.task = task
        self.classifiers = nn.ModuleDict({name: nn.Linear(in_features, len(c)) for name, c in attributes.items()})

    def forward(self, feat: torch.Tensor, feat_map: torch.Tensor | None = None) -> dict[str, dict[str, torch.Tensor]]:
        return {self.task: {name: layer(feat) for name, layer in self.classifiers.items()}}


class VABinHead(nn.Module):
    """Valence and arousal as ``bins``-way classifications (Deng et al.).

    Outputs ``{task: [B, 2]}``, the expectation ``sum_b softmax_b * values_b`` (``values``: see
    :func:`facemtl.va_bins.va_bin_values`), and ``{task}_logits``: the ``[B, 2, bins]`` logits.
    """

    def __init__(self, task: str, in_features: int, bins: int = 20, values: str = "code") -> None:
        super().__init__()
        self.task = task
        self.bins = bins
        self.linear = nn.Linear(in_features, 2 * bins)
        self.register_buffer("values", va_bin_values(bins, values), persistent=False)

    def forward(self, feat: torch.Tensor, feat_map: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        logits = self.linear(feat).view(-1, 2, self.bins)
        return {self.task: self.expectation(logits), f"{self.task}_logits": logits}

    def expectation(self, logits: torch.Tensor) -> torch.Tensor:
        """``[B, 2, bins]`` logits -> ``[B, 2]`` expected values in [-1, 1]."""
        return torch.softmax(logits, dim=-1) @ self.values.to(logits.dtype)


class LandmarkHead(nn.Module):
    """Regresses K (x, y) points in image-normalised coordinates: ``{task: [B, K, 2]}``.

    With ``spatial`` (CNN backbones) it reads the last feature map pooled to a
    ``grid x grid`` layout rather than the globally pooled feature, because global pooling
    throws away where things are; backbones whose features are tokens (ViTs) use the
    pooled feature. The output is offset by 0.5 so an untrained head predicts the centre.
    """

    def __init__(self, task: str, in_features: int, num_landmarks: int, spatial: bool = True, grid: int = 4) -> None:
        super().__init__()
        self.task = task
        self.num_landmarks = num_landmarks
        self.grid = grid if spatial else 0
        self.linear = nn.Linear(in_features * grid * grid if spatial else in_features, 2 * num_landmarks)

    def forward(self, feat: torch.Tensor, feat_map: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        if self.grid:
            feat = nn.functional.adaptive_avg_pool2d(feat_map, self.grid).flatten(1)
        return {self.task: self.linear(feat).view(-1, self.num_landmarks, 2) + 0.5}
