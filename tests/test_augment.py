"""Keypoint-aware augmentation: flips swap sides and mirror pose, points follow the pixels, draws are seeded."""

import numpy as np
import pytest
import torch

from facemtl.config import DataConfig
from facemtl.data.augment import (
    AugmentParams,
    LandmarkAugment,
    TransformedDataset,
    mirror_pose,
    sample_params,
    to_grey,
    transform_face,
)
from facemtl.data.dataset import FaceDataset
from facemtl.labels import DEFAULT_ATTRIBUTES, MIRROR_5, MIRROR_68, LabelSpaces

S = 40
FLIP = AugmentParams(flip=True, angle=0.0, scale=1.0, shift=(0.0, 0.0))


def dots(points: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """``[K, S, S]``: one Gaussian dot per landmark (points in [0, 1] of the crop)."""
    ys, xs = torch.meshgrid(torch.arange(S).float(), torch.arange(S).float(), indexing="ij")
    centres = points * S - 0.5  # pixel-index coordinates of the dot centres
    return torch.stack([torch.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma**2)) for x, y in centres])


def centroids(channels: torch.Tensor) -> torch.Tensor:
    """``[K, 2]`` intensity centroids, back in [0, 1] crop coordinates."""
    ys, xs = torch.meshgrid(torch.arange(S).float(), torch.arange(S).float(), indexing="ij")
    total = channels.sum(dim=(1, 2))
    x, y = (channels * xs).sum(dim=(1, 2)) / total, (channels * ys).sum(dim=(1, 2)) / total
    return torch.stack([x, y], 1).add(0.5) / S


FACE = torch.tensor([[0.35, 0.4], [0.65, 0.42], [0.5, 0.55], [0.38, 0.7], [0.62, 0.71]])


def test_flip_twice_is_identity_and_swaps_sides():
    image = torch.rand(3, S, S)
    once_image, once = transform_face(image, FACE, FLIP, MIRROR_5)
    twice_image, twice = transform_face(once_image, once, FLIP, MIRROR_5)
    assert torch.equal(twice_image, image) and torch.allclose(twice, FACE, atol=1e-6)
    assert torch.allclose(once[0], torch.tensor([1 - 0.65, 0.42]))  # the new left eye is the old right eye, mirrored
    assert torch.allclose(once[3], torch.tensor([1 - 0.62, 0.71]))


def test_flipped_landmarks_land_on_the_mirrored_pixels():
    moved_image, moved = transform_face(dots(FACE), FACE, FLIP, MIRROR_5)
    # Channel k held landmark k's dot; after the flip landmark j is channel MIRROR_5[j]'s dot.
    assert torch.allclose(centroids(moved_image)[list(MIRROR_5)], moved, atol=1e-3)


@pytest.mark.parametrize("params", [
    AugmentParams(False, 25.0, 1.0, (0.0, 0.0)),
    AugmentParams(False, 0.0, 1.15, (0.05, -0.04)),
    AugmentParams(True, -15.0, 0.9, (-0.03, 0.02)),
])
def test_points_follow_the_pixels_under_affine(params):
    moved_image, moved = transform_face(dots(FACE), FACE, params, MIRROR_5)
    order = list(MIRROR_5) if params.flip else list(range(5))
    assert torch.allclose(centroids(moved_image)[order], moved, atol=2e-3)  # < 0.1 px at 40 px


def test_pose_is_mirrored_and_batch_augmentation_is_seeded():
    assert mirror_pose(torch.tensor([0, 1, 2, 3, 4])).tolist() == [4, 3, 2, 1, 0]  # MTFL codes 1<->5, 2<->4
    config = DataConfig(augment="landmarks", aug_flip=1.0, seed=3)
    augment = LandmarkAugment(config, DEFAULT_ATTRIBUTES, 5)
    batch = {"image": torch.rand(2, 3, S, S), "index": torch.tensor([7, 9]),
             "labels": {"lmk": FACE.expand(2, 5, 2).clone(), "attr": torch.tensor([[0, 1, 0, 0], [1, 0, 1, 3]])},
             "mask": {}, "info": {}}
    out = augment(batch, epoch=2)
    assert out["labels"]["attr"][:, 3].tolist() == [4, 1]  # pose mirrored
    assert out["labels"]["attr"][:, :3].tolist() == [[0, 1, 0], [1, 0, 1]]  # gender, smile, glasses unchanged
    assert batch["labels"]["attr"][:, 3].tolist() == [0, 3]  # the input batch is untouched
    again = augment({**batch, "index": torch.tensor([9, 7]), "image": batch["image"].flip(0),
                     "labels": {k: v.flip(0) for k, v in batch["labels"].items()}}, epoch=2)
    assert torch.equal(again["image"][0], out["image"][1])  # a face's draw depends on its index, not its batch slot
    assert torch.equal(again["labels"]["lmk"][1], out["labels"]["lmk"][0])
    assert sample_params(config, 2, 7) == sample_params(config, 2, 7) != sample_params(config, 3, 7)


def test_mirror_68_is_an_involution_pairing_left_and_right():
    perm = np.array(MIRROR_68)
    assert sorted(perm.tolist()) == list(range(68)) and (perm[perm] == np.arange(68)).all()
    assert perm[36] == 45 and perm[39] == 42 and perm[48] == 54 and perm[0] == 16 and perm[30] == 30


def test_transformed_dataset_grey_and_train_only_augmentation():
    images = (np.random.default_rng(0).random((4, S, S, 3)) * 255).astype(np.uint8)
    labels = {"lmk": FACE.expand(4, 5, 2).numpy().copy(), "attr": np.zeros((4, 4), np.int64)}
    mask = {"lmk": np.ones(4, bool), "attr": np.ones((4, 4), bool)}
    base = FaceDataset(images, labels, mask, LabelSpaces())
    config = DataConfig(augment="landmarks", grey=True)
    data = TransformedDataset(base, grey=True, augment=LandmarkAugment(config, DEFAULT_ATTRIBUTES, 5))
    data.set_epoch(1)
    first, second = data.__getitems__([0, 1]), data.__getitems__([0, 1])
    assert torch.equal(first["image"], second["image"]) and torch.equal(first["image"][:, 0], first["image"][:, 2])
    assert not torch.equal(first["labels"]["lmk"], base.__getitems__([0, 1])["labels"]["lmk"])
    grey = to_grey(base.__getitems__([2])["image"])
    assert torch.equal(data.images[2].permute(2, 0, 1).float().div(255), grey.mul(255).round().div(255)[0])
