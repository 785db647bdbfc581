"""Task heads: plain layers from the pooled feature to each task's outputs, no losses."""

from __future__ import annotations

import torch
from torch import nn

from facemtl.tasks import LabelSpaces


class AttributeHead(nn.Module):
    """One linear classifier per named attribute; outputs ``{name: logits [B, C_name]}``."""

    def __init__(self, in_features: int, attributes: dict[str, tuple[str, ...]]) -> None:
        super().__init__()
        self.classifiers = nn.ModuleDict({name: nn.Linear(in_features, len(c)) for name, c in attributes.items()})

    def forward(self, feat: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: layer(feat) for name, layer in self.classifiers.items()}


class LandmarkHead(nn.Module):
    """Regresses K (x, y) points in image-normalised coordinates: ``[B, K, 2]``.

    With ``spatial`` (CNN backbones) it reads the last feature map pooled to a
    ``grid x grid`` layout rather than the globally pooled feature, because global pooling
    throws away where things are; backbones whose features are tokens (ViTs) use the
    pooled feature. The output is offset by 0.5 so an untrained head predicts the centre.
    """

    def __init__(self, in_features: int, num_landmarks: int, spatial: bool = True, grid: int = 4) -> None:
        super().__init__()
        self.num_landmarks = num_landmarks
        self.grid = grid if spatial else 0
        self.linear = nn.Linear(in_features * grid * grid if spatial else in_features, 2 * num_landmarks)

    def forward(self, feat: torch.Tensor, feat_map: torch.Tensor) -> torch.Tensor:
        if self.grid:
            feat = nn.functional.adaptive_avg_pool2d(feat_map, self.grid).flatten(1)
        return self.linear(feat).view(-1, self.num_landmarks, 2) + 0.5


def build_head(task: str, in_features: int, spaces: LabelSpaces, spatial: bool = True) -> nn.Module:
    """Head for one task: expr logits [B, C], au logits [B, A], va [B, 2], lmk [B, K, 2], attr dict."""
    if task == "attr":
        return AttributeHead(in_features, spaces.attributes)
    if task == "lmk":
        return LandmarkHead(in_features, spaces.num_landmarks, spatial)
    if task == "va":  # valence and arousal live in [-1, 1]
        return nn.Sequential(nn.Linear(in_features, 2), nn.Tanh())
    return nn.Linear(in_features, spaces.output_size(task))
