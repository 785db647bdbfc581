"""Networks: backbones (built-in and timm), task heads and the shared MultiTaskNet."""

from facemtl.models import tcdcn_net  # noqa: F401  (registers the tcdcn backbones)
from facemtl.models.backbone import create_backbone
from facemtl.models.multitask import MultiTaskNet

__all__ = ["MultiTaskNet", "create_backbone"]
