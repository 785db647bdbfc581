"""Task heads: plain layers from the pooled feature to each task's outputs, no losses."""

from __future__ import annotations

import torch
from torch import nn

from facemtl.labels import LabelSpaces
from facemtl.va_bins import va_bin_values


class AttributeHead(nn.Module):
    """One linear classifier per named attribute; outputs ``{name: logits [B, C_name]}``."""

    def __init__(self, in_features: int, attributes: dict[str, tuple[str, ...]]) -> None:
        super().__init__()
        self.classifiers = nn.ModuleDict({name: nn.Linear(in_features, len(c)) for name, c in attributes.items()})

    def forward(self, feat: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: layer(feat) for name, layer in self.classifiers.items()}


class VABinHead(nn.Module):
    """Valence and arousal as ``bins``-way classifications (Deng et al.): logits ``[B, 2, bins]``.

    :meth:`expectation` turns logits into the continuous ``[B, 2]`` prediction
    ``sum_b softmax_b * values_b`` (``values``: see :func:`facemtl.va_bins.va_bin_values`).
    """

    def __init__(self, in_features: int, bins: int = 20, values: str = "code") -> None:
        super().__init__()
        self.bins = bins
        self.linear = nn.Linear(in_features, 2 * bins)
        self.register_buffer("values", va_bin_values(bins, values), persistent=False)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        return self.linear(feat).view(-1, 2, self.bins)

    def expectation(self, logits: torch.Tensor) -> torch.Tensor:
        """``[B, 2, bins]`` logits -> ``[B, 2]`` expected values in [-1, 1]."""
        return torch.softmax(logits, dim=-1) @ self.values.to(logits.dtype)


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


def build_head(
    task: str, in_features: int, spaces: LabelSpaces, spatial: bool = True, va_bins: int = 0, va_bin_values: str = "code"
) -> nn.Module:
    """Head for one task: expr logits [B, C], au logits [B, A], va [B, 2] (or [B, 2, va_bins] bin
    logits when ``va_bins`` > 0), lmk [B, K, 2], attr dict."""
    if task == "attr":
        return AttributeHead(in_features, spaces.attributes)
    if task == "lmk":
        return LandmarkHead(in_features, spaces.num_landmarks, spatial)
    if task == "va" and va_bins:
        return VABinHead(in_features, va_bins, va_bin_values)
    if task == "va":  # valence and arousal live in [-1, 1]
        return nn.Sequential(nn.Linear(in_features, 2), nn.Tanh())
    return nn.Linear(in_features, spaces.output_size(task))
