"""Batch-time face transforms: grey-scale, and keypoint-aware geometric augmentation.

``data.augment=landmarks`` rotates, zooms, shifts and horizontally flips each *training*
face together with its landmarks with torchvision's ``transforms.v2`` functional kernels
for images and ``KeyPoints`` (``affine_image`` / ``affine_keypoints``,
``horizontal_flip_image`` / ``horizontal_flip_keypoints``; no hand-written geometry),
called directly because per-face dispatch would cost more than the 40 px warp. A flip
also swaps left and right
landmarks (5 points: ``[1, 0, 2, 4, 3]``; 68 points: the iBUG mirror permutation) and
mirrors the ``pose`` attribute (left profile <-> right profile, left <-> right).

Every draw comes from ``numpy.random.default_rng([data.seed, 17, epoch, index])``, never from
a global RNG, so a face gets the same augmentation whichever batch, worker or resumed run
fetches it: resume stays exact.

Coordinates: landmark labels are (x, y) in [0, 1] of the crop, with pixel ``i`` covering
``[i / S, (i + 1) / S]``. torchvision's keypoint kernels take pixel-index coordinates
(pixel ``i`` *centred* at ``i``); we convert with ``x * S - 0.5``. Its horizontal flip uses
that convention (``x -> W - 1 - x``) but its keypoint affine defaults to the centre
``(W / 2, H / 2)`` while its image affine turns about ``((W - 1) / 2, (H - 1) / 2)``, so we
pass the latter centre to the keypoints explicitly (tests check points track pixels).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from facemtl.config import DataConfig
from facemtl.data.dataset import Batch, FaceDataset
from facemtl.data.record_dataset import LazyImages
from facemtl.errors import FacemtlError
from facemtl.labels import mirror_permutation

#: BT.601 luminance weights (what OpenCV's RGB -> grey uses).
LUMA = (0.299, 0.587, 0.114)


def mirror_pose(pose: torch.Tensor, num_bins: int = 5) -> torch.Tensor:
    """Pose class after a horizontal flip: bin ``c`` -> ``num_bins - 1 - c`` (0-based; 1<->5, 2<->4 in MTFL codes)."""
    return num_bins - 1 - pose


def to_grey(images: torch.Tensor) -> torch.Tensor:
    """``[B, 3, H, W]`` RGB in [0, 1] -> BT.601 luminance repeated to 3 channels (same shape)."""
    weights = torch.tensor(LUMA, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True).expand_as(images).contiguous()


@dataclass(frozen=True)
class AugmentParams:
    """One face's draw: flip first, then rotate (degrees, counter-clockwise), zoom and shift (fractions of the side)."""

    flip: bool
    angle: float
    scale: float
    shift: tuple[float, float]


def sample_params(config: DataConfig, epoch: int, index: int) -> AugmentParams:
    """The augmentation of face ``index`` in ``epoch``: a pure function of ``data.seed``, epoch and index."""
    rng = np.random.default_rng([config.seed, 17, epoch, index])
    flip, angle, scale, dx, dy = rng.random(5)
    return AugmentParams(
        flip=bool(flip < config.aug_flip),
        angle=float((2 * angle - 1) * config.aug_rotate),
        scale=float(1 + (2 * scale - 1) * config.aug_scale),
        shift=(float((2 * dx - 1) * config.aug_shift), float((2 * dy - 1) * config.aug_shift)),
    )


def transform_face(
    image: torch.Tensor, points: torch.Tensor, params: AugmentParams, mirror: tuple[int, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply ``params`` to one face and its landmarks.

    Args:
        image: float ``[C, H, W]``.
        points: ``[K, 2]`` (x, y) in [0, 1] of the image (see the module docstring).
        params: the draw.
        mirror: landmark permutation applied when ``params.flip``.

    Returns:
        ``(image [C, H, W], points [K, 2])``; areas moved in from outside are black (zero),
        as the crop's own padding.
    """
    height, width = image.shape[-2:]
    scale = torch.tensor([width, height], dtype=torch.float32)
    # The kernels behind TF.affine / TF.horizontal_flip for Image and KeyPoints tensors.
    keypoints = points.float() * scale - 0.5
    if params.flip:
        image = TF.horizontal_flip_image(image)
        keypoints = TF.horizontal_flip_keypoints(keypoints, canvas_size=(height, width))
    if (params.angle, params.scale, params.shift) != (0.0, 1.0, (0.0, 0.0)):  # an identity warp would still blur
        affine = {
            "angle": params.angle, "translate": [params.shift[0] * width, params.shift[1] * height],
            "scale": params.scale, "shear": [0.0, 0.0],
        }
        # fill=None: zero padding inside grid_sample, like the crop's own padding.
        image = TF.affine_image(image, **affine, interpolation=InterpolationMode.BILINEAR, fill=None)
        keypoints, _ = TF.affine_keypoints(keypoints, canvas_size=(height, width), **affine,
                                           center=[(width - 1) / 2, (height - 1) / 2])
    out = (keypoints + 0.5) / scale
    if params.flip:
        out = out[list(mirror)]
    return image, out.to(points.dtype)


class LandmarkAugment:
    """Keypoint-aware augmentation of a whole batch (images, ``lmk`` labels, ``pose`` attribute).

    Args:
        config: ``aug_*`` ranges and ``seed``.
        attributes: the dataset's attributes (name -> classes), to find the ``pose`` column.
        num_landmarks: K (5 or 68), for the mirror permutation.
    """

    def __init__(self, config: DataConfig, attributes: dict[str, tuple[str, ...]], num_landmarks: int) -> None:
        check_augment_options(config)
        self.config = config
        self.mirror = mirror_permutation(num_landmarks)
        self.pose_column = list(attributes).index("pose") if "pose" in attributes else None
        self.pose_bins = len(attributes.get("pose", ()))

    def __call__(self, batch: Batch, epoch: int) -> Batch:
        """A new batch with every face transformed (the input batch is not modified)."""
        images = batch["image"].clone()
        labels = {task: value.clone() for task, value in batch["labels"].items()}
        points = labels.get("lmk")
        for row, index in enumerate(batch["index"].tolist()):
            params = sample_params(self.config, epoch, index)
            face_points = points[row] if points is not None else torch.zeros(1, 2)
            images[row], moved = transform_face(images[row], face_points, params, self.mirror)
            if points is not None:
                points[row] = moved
            if params.flip and self.pose_column is not None and "attr" in labels:
                pose = labels["attr"][row, self.pose_column]
                labels["attr"][row, self.pose_column] = mirror_pose(pose, self.pose_bins)
        return {**batch, "image": images, "labels": labels}


def check_augment_options(config: DataConfig) -> None:
    """Range checks of the ``data.aug_*`` keys."""
    ranges = {"aug_rotate": (0.0, 180.0), "aug_scale": (0.0, 0.9), "aug_shift": (0.0, 0.5), "aug_flip": (0.0, 1.0)}
    for key, (low, high) in ranges.items():
        value = getattr(config, key)
        if not low <= value <= high:
            raise FacemtlError(f"data.{key}={value} is out of range; expected {low} <= {key} <= {high}")


class TransformedDataset(FaceDataset):
    """A dataset whose batches are grey-scaled and/or augmented on the fly.

    Labels, masks, info and label spaces are the base dataset's; ``images`` (the
    un-augmented faces, e.g. for the prediction grid) are grey when ``grey`` is set.
    Attributes the base has and this class does not (``records``, ``rects`` of a lazy
    dataset) are looked up on the base.

    Args:
        base: the split's dataset.
        grey: convert faces to grey-scale.
        augment: the training augmentation, or None.
    """

    def __init__(self, base: FaceDataset, grey: bool, augment: LandmarkAugment | None = None) -> None:
        Dataset.__init__(self)  # not FaceDataset.__init__: images come from the base
        self.base, self.grey, self.augment, self.epoch = base, grey, augment, 0
        self.labels, self.mask, self.info, self.label_spaces = base.labels, base.mask, base.info, base.label_spaces
        self.images = LazyImages(self._uint8_images, len(base), base.images.shape[1]) if grey else base.images

    def __getattr__(self, name: str):
        if name == "base":  # not set yet (unpickling): avoid recursion
            raise AttributeError(name)
        return getattr(self.base, name)

    def __len__(self) -> int:
        return len(self.base)

    def set_epoch(self, epoch: int) -> None:
        """Called by the trainer before each epoch: the augmentation draws depend on it."""
        self.epoch = epoch
        if hasattr(self.base, "set_epoch"):
            self.base.set_epoch(epoch)

    def _uint8_images(self, indices: list[int]) -> torch.Tensor:
        images = to_grey(self.base.__getitems__(indices)["image"])  # k / 255 floats: * 255 and rounding restores uint8
        return images.permute(0, 2, 3, 1).mul(255.0).round_().to(torch.uint8)

    def __getitems__(self, indices: list[int]) -> Batch:
        batch = self.base.__getitems__(indices)
        if self.augment is not None:
            batch = self.augment(batch, self.epoch)
        if self.grey:
            batch["image"] = to_grey(batch["image"])
        return batch


def wrap_splits(datasets: dict[str, FaceDataset], config: DataConfig) -> dict[str, FaceDataset]:
    """Apply ``data.grey`` to every split and ``data.augment`` to ``train`` (unchanged when both are off)."""
    out = dict(datasets)
    for split, dataset in datasets.items():
        augment = None
        if split == "train" and config.augment == "landmarks":
            augment = LandmarkAugment(config, dataset.label_spaces.attributes, config.num_landmarks)
        if config.grey or augment is not None:
            out[split] = TransformedDataset(dataset, config.grey, augment)
    return out
