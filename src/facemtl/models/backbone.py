"""Backbones: any timm model by name, plus small built-in ones for tests and CPU demos.

Every backbone follows timm's contract, so the rest of facemtl never cares which it got:
``forward_features(x) -> feature map [B, C, h, w]``, ``forward_head(fmap, pre_logits=True)
-> pooled feature [B, C]`` and ``num_features == C``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from facemtl.errors import FacemtlError
from facemtl.io.checkpoint import BASE_NAME, FORMAT, load_checkpoint, refuse_pickle
from facemtl.registry import BACKBONES
from facemtl.weights import base_model


def _conv_bn_relu(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class TinyConvNet(nn.Module):
    """A small VGG-style CNN: ``len(widths)`` stages of two 3x3 convs, each halving the size.

    Args:
        widths: channels per stage; the feature map has ``widths[-1]`` channels and
            ``1 / 2**len(widths)`` of the input resolution.
    """

    def __init__(self, widths: tuple[int, ...] = (32, 64, 128, 192)) -> None:
        super().__init__()
        stages, c_in = [], 3
        for width in widths:
            stages.append(nn.Sequential(_conv_bn_relu(c_in, width, 2), _conv_bn_relu(width, width, 1)))
            c_in = width
        self.stages = nn.Sequential(*stages)
        self.num_features = c_in

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(x)

    def forward_head(self, fmap: torch.Tensor, pre_logits: bool = True) -> torch.Tensor:
        return fmap.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@BACKBONES.register("tiny")
def tiny() -> nn.Module:
    """~0.8M parameters: the CPU demo's backbone (about 2 minutes for the demo on 2 cores)."""
    return TinyConvNet((32, 64, 128, 192))


@BACKBONES.register("small")
def small() -> nn.Module:
    """~2.7M parameters: the shipped 48 px grey model's backbone (a CPU-trainable VGG-style net)."""
    return TinyConvNet((48, 96, 192, 384))


@BACKBONES.register("test_tiny")
def test_tiny() -> nn.Module:
    """A few thousand parameters, for unit tests."""
    return TinyConvNet((8, 16))


def create_backbone(name: str, pretrained: str = "") -> nn.Module:
    """Build a backbone by facemtl name or any ``timm`` model name, randomly initialised.

    Args:
        name: a built-in name (``facemtl list``) or a timm model name (``timm.list_models()``).
        pretrained: optional local ``.safetensors`` file with the backbone's weights, or a
            facemtl checkpoint / run folder (its backbone is taken), or ``facemtl_base`` (the
            shipped model's backbone); loaded strictly (a file that does not match raises, it
            is never silently ignored).
    """
    if name in BACKBONES:
        model = BACKBONES.get(name)()
    else:
        import timm  # seconds to import: only timm backbones need it, not the built-in ones (the shipped model's)

        if not timm.is_model(name):
            builtins = ", ".join(BACKBONES.names())
            raise FacemtlError(
                f"unknown backbone {name!r}; valid: built-in {builtins}, or any timm model name (see timm.list_models())"
            )
        model = timm.create_model(name, pretrained=False, num_classes=0)
    if pretrained:
        load_backbone_weights(model, pretrained, name)
    return model


#: Where a facemtl checkpoint keeps the backbone: method state ``net`` -> MultiTaskNet ``backbone``.
_CHECKPOINT_BACKBONE = "net.backbone."


def _backbone_state(path: str | Path) -> tuple[dict[str, torch.Tensor], str | None]:
    """The weights named by ``model.pretrained`` and, for a facemtl checkpoint, its backbone's name.

    A pickle (``torch.save``'s ``.pt``) is refused, with the line that converts it.
    """
    path = base_model() if str(path) == BASE_NAME else Path(path)
    if path.is_file():
        refuse_pickle(path, "model.pretrained=")  # before the suffix test: a .pt gets its conversion, not "expected a .safetensors"
    if not (path.is_dir() or (path.suffix == ".safetensors" and path.is_file())):
        raise FacemtlError(f"model.pretrained={path}: expected a .safetensors file, a facemtl run folder or facemtl_base")
    if path.is_file():
        with safe_open(str(path), framework="pt") as handle:
            if (handle.metadata() or {}).get("format") != FORMAT:
                return load_file(str(path)), None
    checkpoint = load_checkpoint(path)
    prefix = _CHECKPOINT_BACKBONE
    state = {k[len(prefix):]: v for k, v in checkpoint.model_state.items() if k.startswith(prefix)}
    if not state:
        raise FacemtlError(f"model.pretrained={path}: the checkpoint holds no {prefix}* weights")
    return state, checkpoint.config.get("model", {}).get("backbone")


def load_backbone_weights(model: nn.Module, path: str | Path, name: str | None = None) -> None:
    """Load backbone weights into ``model`` (backbone ``name``; see :func:`create_backbone`),
    ignoring only classifier keys."""
    state, trained = _backbone_state(path)
    if name is not None and trained is not None and trained != name:
        raise FacemtlError(f"model.pretrained={path}: that checkpoint's backbone is {trained!r}, "
                           f"model.backbone is {name!r}; set model.backbone={trained}")
    # timm checkpoints carry their ImageNet classifier; our backbones have none (num_classes=0).
    classifier = getattr(model, "pretrained_cfg", {}).get("classifier")
    if classifier:
        state = {k: v for k, v in state.items() if not k.startswith(f"{classifier}.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise FacemtlError(
            f"{path}: weights do not match the backbone ({len(missing)} missing keys e.g. {missing[:3]}, "
            f"{len(unexpected)} unexpected e.g. {unexpected[:3]})"
        )
