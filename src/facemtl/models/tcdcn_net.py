"""The TCDCN network (Zhang, Luo, Loy, Tang, ECCV 2014, Fig. 2) as built-in backbones.

==========================  ============
layer                       output
==========================  ============
input: grey 40x40           1 x 40 x 40
conv 5x5, 20 maps           20 x 36 x 36
max-pool 2x2                20 x 18 x 18
conv 5x5, 48 maps           48 x 14 x 14
max-pool 2x2                48 x 7 x 7
conv 3x3, 64 maps           64 x 5 x 5
max-pool 2x2 (ceil)         64 x 3 x 3
conv 2x2, 80 maps           80 x 2 x 2   <- ``forward_features``
FC, shared feature          256          <- ``forward_head``; ``num_features = 256``
==========================  ============

The heads (landmarks 10, gender 2, smile 2, glasses 2, pose 5) are facemtl's usual heads
on the 256-d feature. Registered names: ``tcdcn`` (|tanh|, the absolute-value rectified
tanh of Sun et al. 2013 that TCDCN builds on), ``tcdcn_tanh`` and ``tcdcn_relu``; the
paper's activation is not verifiable from the official release (encrypted p-code), so it
is a choice.

Input: :class:`~facemtl.models.MultiTaskNet` feeds ImageNet-normalised RGB ``[B, 3, H, W]``;
this backbone turns it into one grey channel, the BT.601 luminance up to an offset
(weights ``LUMA * IMAGE_STD`` undo the per-channel scaling), and standardises each image
to zero mean and unit variance (the per-image normalisation of common TCDCN ports). So a
colour face at inference and its ``data.grey=true`` training crop give the same input.
Other input sizes work: the last map is average-pooled to 2x2 before the FC layer (an
identity at 40x40).
"""

from __future__ import annotations

import torch
from torch import nn

from facemtl.models.multitask import IMAGE_STD
from facemtl.registry import BACKBONES

#: BT.601 luminance weights, as ``facemtl.data.augment.to_grey`` (data.grey) uses.
LUMA = (0.299, 0.587, 0.114)


class AbsTanh(nn.Module):
    """``|tanh(x)|``: tanh with absolute-value rectification."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x).abs()


ACTIVATIONS: dict[str, type[nn.Module]] = {"abstanh": AbsTanh, "tanh": nn.Tanh, "relu": nn.ReLU}


class TCDCNNet(nn.Module):
    """The TCDCN convolutional trunk and its shared FC-256 layer.

    Args:
        activation: ``abstanh``, ``tanh`` or ``relu`` after every conv and the FC layer.
    """

    def __init__(self, activation: str = "abstanh") -> None:
        super().__init__()
        act = ACTIVATIONS[activation]
        self.features = nn.Sequential(
            nn.Conv2d(1, 20, 5), act(), nn.MaxPool2d(2),
            nn.Conv2d(20, 48, 5), act(), nn.MaxPool2d(2),
            nn.Conv2d(48, 64, 3), act(), nn.MaxPool2d(2, ceil_mode=True),
            nn.Conv2d(64, 80, 2), act(),
        )
        self.fc = nn.Sequential(nn.Linear(80 * 2 * 2, 256), act())
        self.num_features = 256
        # Luminance from ImageNet-normalised channels: sum_c LUMA_c * std_c * (x_c - mean_c) / std_c = Y - const.
        weights = torch.tensor([w * s for w, s in zip(LUMA, IMAGE_STD)]).view(1, 3, 1, 1)
        self.register_buffer("grey_weights", weights, persistent=False)
        # Read by MultiTaskNet's one-off probe; the heads use the FC feature (map channels != num_features).
        self.pretrained_cfg = {"input_size": (3, 40, 40)}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` (normalised RGB, or ``[B, 1, H, W]`` grey) -> feature map ``[B, 80, 2, 2]`` at 40x40."""
        grey = (x * self.grey_weights).sum(dim=1, keepdim=True) if x.shape[1] == 3 else x
        mean = grey.mean(dim=(2, 3), keepdim=True)
        std = grey.std(dim=(2, 3), keepdim=True)
        return self.features((grey - mean) / (std + 1e-5))

    def forward_head(self, fmap: torch.Tensor, pre_logits: bool = True) -> torch.Tensor:
        """Feature map ``[B, 80, h, w]`` -> shared feature ``[B, 256]``."""
        return self.fc(nn.functional.adaptive_avg_pool2d(fmap, 2).flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@BACKBONES.register("tcdcn")
def tcdcn() -> nn.Module:
    """TCDCN (ECCV 2014) at 40x40 grey, |tanh| activations; ~0.1M parameters."""
    return TCDCNNet("abstanh")


@BACKBONES.register("tcdcn_tanh")
def tcdcn_tanh() -> nn.Module:
    """TCDCN with plain tanh activations."""
    return TCDCNNet("tanh")


@BACKBONES.register("tcdcn_relu")
def tcdcn_relu() -> nn.Module:
    """TCDCN with ReLU activations."""
    return TCDCNNet("relu")
