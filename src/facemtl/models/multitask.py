"""MultiTaskNet: one shared backbone, one head per enabled task, outputs keyed by task."""

from __future__ import annotations

import copy

import torch
from torch import nn

from facemtl.errors import FacemtlError
from facemtl.labels import LabelSpaces
from facemtl.models.backbone import TinyConvNet

#: ImageNet statistics; timm backbones expect them and they do no harm to the built-in ones.
IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)


class MultiTaskNet(nn.Module):
    """Shared backbone with per-task heads.

    Build one with :func:`facemtl.tasks.build_network` (by task names, each task's spec
    making its head) or give the parts directly.

    Args:
        backbone: the trunk (timm contract: ``forward_features``, ``forward_head``, ``num_features``).
        heads: task key -> head, in output order; a head maps ``(feat, feat_map)`` to
            ``{output name: tensor}`` (:mod:`facemtl.models.heads`).
        label_spaces: sizes and names of each task's outputs.
        drop_rate: dropout on the pooled feature before the heads.
        branch_tasks: tasks whose heads read their own copy of the backbone's last stage
            (initialised from the shared one, after pretrained weights are loaded), so that they
            share only the layers below it with the other tasks; empty = everything shared.
            Needs a built-in VGG-style backbone (``tiny``, ``small``, ``test_tiny``).
        backbone_name: the backbone's registered name, for messages.

    ``forward(images)`` takes RGB images ``[B, 3, H, W]`` scaled to [0, 1] (normalisation
    happens inside, so exported models take the same input) and returns every head's
    outputs (``expr [B, C]``, ``au [B, A]`` logits, ``va [B, 2]``, ``lmk [B, K, 2]``,
    ``attr {name: [B, C_name]}``, ...) plus ``feat`` (pooled feature ``[B, D]``) and
    ``feat_map`` (last feature map, ``[B, D, h, w]`` for CNNs), both from the shared path
    (not the ``branch_tasks`` branch).
    """

    def __init__(
        self,
        backbone: nn.Module,
        heads: dict[str, nn.Module],
        label_spaces: LabelSpaces,
        drop_rate: float = 0.0,
        branch_tasks: list[str] | tuple[str, ...] = (),
        backbone_name: str = "",
    ) -> None:
        super().__init__()
        self.tasks = tuple(heads)
        self.label_spaces = label_spaces
        self.backbone = backbone
        self.num_features = int(self.backbone.num_features)
        self.dropout = nn.Dropout(drop_rate)
        self.branch_tasks = _check_branch_tasks(branch_tasks, self.tasks, self.backbone, backbone_name)
        # A private copy of the last stage: those tasks stop pulling the shared one their way.
        self.branch_stage = copy.deepcopy(self.backbone.stages[-1]) if self.branch_tasks else None
        self.heads = nn.ModuleDict(heads)
        self.register_buffer("image_mean", torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("image_std", torch.tensor(IMAGE_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def splits_at_last_stage(self) -> bool:
        """Whether the forward can start at the last stage's input (built-in VGG-style backbones:
        their ``forward_features`` is exactly ``stages``; timm CNNs add a stem and norms)."""
        return isinstance(self.backbone, TinyConvNet)

    @property
    def last_stage(self) -> nn.Module:
        """The backbone's last stage, where :meth:`forward` can start (needs :attr:`splits_at_last_stage`)."""
        return self._stages()[-1]

    def forward_below_last_stage(self, images: torch.Tensor) -> torch.Tensor:
        """The input of the backbone's last stage (needs :attr:`splits_at_last_stage`)."""
        return self._stages()[:-1](self._normalize(images))

    def _stages(self) -> nn.Sequential:
        if not self.splits_at_last_stage:
            raise FacemtlError(f"{type(self.backbone).__name__} cannot be split at its last stage; "
                               "only the built-in VGG-style backbones (tiny, small, test_tiny) can")
        return self.backbone.stages

    def _normalize(self, images: torch.Tensor) -> torch.Tensor:
        return (images - self.image_mean) / self.image_std

    def forward(self, images: torch.Tensor, below: torch.Tensor | None = None
                ) -> dict[str, torch.Tensor | dict[str, torch.Tensor]]:
        """Outputs keyed by task (see the class docstring).

        ``below``: :meth:`forward_below_last_stage` of these images from an earlier pass; the
        layers under the last stage are then skipped (``images`` only gives the batch). MAL's
        heads-only passes use it: parameters that move there are all at or above the last stage.
        """
        if below is None and self.branch_stage is None:
            feat_map = self.backbone.forward_features(self._normalize(images))
            branch_map = feat_map
        else:
            below = self.forward_below_last_stage(images) if below is None else below
            feat_map = self.last_stage(below)
            branch_map = self.branch_stage(below) if self.branch_stage is not None else feat_map
        feat = self.backbone.forward_head(feat_map, pre_logits=True)
        dropped = self.dropout(feat)
        branch_dropped = self.dropout(self.backbone.forward_head(branch_map)) if self.branch_stage is not None else dropped
        outputs: dict[str, torch.Tensor | dict[str, torch.Tensor]] = {}
        branched = set(self.branch_tasks)
        for name, head in self.heads.items():
            on_branch = name in branched
            outputs.update(head(branch_dropped if on_branch else dropped, branch_map if on_branch else feat_map))
        outputs["feat"] = feat
        outputs["feat_map"] = feat_map
        return outputs


def _check_branch_tasks(
    branch_tasks: list[str] | tuple[str, ...], tasks: tuple[str, ...], backbone: nn.Module, name: str
) -> tuple[str, ...]:
    """``branch_tasks`` in task order, or a one-line error naming what is wrong."""
    unknown = [t for t in branch_tasks if t not in tasks]
    if unknown:
        raise FacemtlError(f"model.branch_tasks={list(branch_tasks)}: {unknown} not in model.tasks={list(tasks)}")
    # forward_features must be exactly `stages` for the split to be right: timm CNNs add a stem and norms
    if branch_tasks and not isinstance(backbone, TinyConvNet):
        raise FacemtlError(f"model.branch_tasks needs a built-in VGG-style backbone (tiny, small, test_tiny); {name!r} is not")
    return tuple(t for t in tasks if t in branch_tasks)


@torch.no_grad()
def has_spatial_features(backbone: nn.Module) -> bool:
    """Whether ``forward_features`` gives a ``[B, C, h, w]`` map (CNNs) rather than tokens (ViTs).

    Probed once with a blank image at the backbone's default input size. A map whose
    channels are not the pooled feature's (TCDCN: an 80-channel map under an FC-256
    feature) counts as non-spatial: its heads read the pooled feature, as its paper does.
    """
    size = getattr(backbone, "pretrained_cfg", {}).get("input_size", (3, 64, 64))
    was_training = backbone.training
    feat_map = backbone.eval().forward_features(torch.zeros(1, *size))
    backbone.train(was_training)
    return feat_map.dim() == 4 and feat_map.shape[1] == getattr(backbone, "num_features", feat_map.shape[1])
