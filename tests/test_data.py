"""Synthetic dataset splits: label noise, partial labels, masks in mixed batches."""

import numpy as np
import pytest
import torch

from facemtl.config import load_config
from facemtl.data import build_datasets
from facemtl.engine.trainer import build_method
from facemtl.methods import TrainContext

SMALL = ["data.num_train=200", "data.num_val=40", "data.num_test=40", "data.image_size=32"]


def _splits(*overrides):
    return build_datasets(load_config(None, SMALL + list(overrides)).data)


def test_batch_format():
    train = _splits()["train"]
    batch = train.__getitems__([0, 5, 7])
    assert batch["image"].shape == (3, 3, 32, 32) and batch["image"].dtype == torch.float32
    assert 0.0 <= batch["image"].min() and batch["image"].max() <= 1.0
    assert batch["index"].tolist() == [0, 5, 7]
    spaces = train.label_spaces
    assert batch["labels"]["expr"].shape == (3,) and batch["labels"]["expr"].dtype == torch.int64
    assert batch["labels"]["au"].shape == (3, len(spaces.au_names))
    assert batch["labels"]["va"].shape == (3, 2)
    assert batch["labels"]["lmk"].shape == (3, 5, 2)
    assert batch["labels"]["attr"].shape == (3, 4)
    assert batch["mask"]["au"].shape == (3, len(spaces.au_names)) and batch["mask"]["expr"].dtype == torch.bool


def test_label_noise_flips_exact_fraction_of_train_only():
    splits = _splits("data.label_noise=0.3")
    train = splits["train"]
    flipped = train.info["expr_flipped"]
    assert int(flipped.sum()) == 60
    clean, noisy = train.info["expr_clean"], train.labels["expr"]
    assert torch.all(noisy[flipped] != clean[flipped]) and torch.all(noisy[~flipped] == clean[~flipped])
    assert int(splits["val"].info["expr_flipped"].sum()) == 0 and int(splits["test"].info["expr_flipped"].sum()) == 0
    # Flips land on every other class, not a fixed permutation.
    assert len(set(zip(clean[flipped].tolist(), noisy[flipped].tolist()))) > 10


def test_label_fraction_masks_train_only():
    splits = _splits("data.label_fraction.au=0.25", "data.label_fraction.va=0.0")
    counts = splits["train"].label_counts()
    assert counts == {"expr": 200, "au": 50, "va": 0, "lmk": 200, "attr": 200}
    assert splits["val"].label_counts()["va"] == 40


def test_same_seed_same_data_other_seed_other_data():
    a, b, c = _splits()["train"], _splits()["train"], _splits("data.seed=1")["train"]
    assert torch.equal(a.images, b.images) and torch.equal(a.labels["au"], b.labels["au"])
    assert not torch.equal(a.images, c.images)
    splits = _splits()
    assert not torch.equal(splits["train"].images[:40], splits["val"].images)


def test_imbalance_skews_class_frequencies():
    train = _splits("data.imbalance=10", "data.num_train=1000")["train"]
    counts = np.bincount(train.labels["expr"].numpy(), minlength=7)
    assert counts[0] > 4 * counts[-1]


@pytest.mark.parametrize("missing", ["expr", "au", "va", "lmk", "attr"])
def test_batch_without_any_label_for_a_task_trains_without_nan(missing):
    torch.manual_seed(0)
    config = load_config(None, SMALL + ["model.backbone=test_tiny", f"data.label_fraction.{missing}=0.0", "method.va_loss=mse+ccc"])
    train = build_datasets(config.data, splits=("train",))["train"]
    method = build_method(config, train.label_spaces, TrainContext(len(train), 1, 1))
    batch = train.__getitems__(list(range(16)))
    result = method.training_step(batch)
    assert result["logs"][f"loss_{missing}"] == 0.0
    assert torch.isfinite(result["loss"])
    result["loss"].backward()
    head = method.net.heads[missing]
    grads = [p.grad for p in head.parameters()]
    assert all(g is not None and torch.isfinite(g).all() and g.abs().sum() == 0 for g in grads)
    assert all(torch.isfinite(p.grad).all() for p in method.parameters() if p.grad is not None)


def test_mixed_batch_uses_each_samples_own_labels():
    """Half the batch has expression labels; the loss must equal CE over that half only."""
    torch.manual_seed(0)
    config = load_config(None, SMALL + ["model.backbone=test_tiny", "model.tasks=expr,au"])
    train = build_datasets(config.data, splits=("train",))["train"]
    method = build_method(config, train.label_spaces, TrainContext(len(train), 1, 1)).eval()
    batch = train.__getitems__(list(range(8)))
    batch["mask"]["expr"][4:] = False
    batch["labels"]["expr"][4:] = -1
    logits = method.net(batch["image"])["expr"]
    expected = torch.nn.functional.cross_entropy(logits[:4], batch["labels"]["expr"][:4])
    got = method.task_losses({"expr": logits, "au": torch.zeros(8, len(train.label_spaces.au_names))}, batch)["expr"]
    assert torch.allclose(got, expected)


def test_grey_and_augment_apply_to_any_dataset():
    splits = _splits("data.grey=true", "data.augment=landmarks", "data.aug_flip=1.0", "data.aug_rotate=0", "data.aug_scale=0", "data.aug_shift=0")
    train, val = splits["train"], splits["val"]
    batch = train.__getitems__([0, 1])
    image = batch["image"]
    assert torch.equal(image[:, 0], image[:, 1]) and torch.equal(image[:, 1], image[:, 2])  # grey
    raw = train.base.__getitems__([0, 1])
    # Every face flipped: the image-left eye label is now the mirrored image-right eye.
    assert torch.allclose(batch["labels"]["lmk"][:, 0, 0], 1 - raw["labels"]["lmk"][:, 1, 0], atol=1e-4)
    assert torch.equal(val.__getitems__([0])["labels"]["lmk"], val.base.__getitems__([0])["labels"]["lmk"])  # val: no augmentation


def test_ambiguous_noise_flips_weak_expressions_more_often():
    uniform = _splits("data.label_noise=0.3", "data.num_train=1000")["train"]
    ambiguous = _splits("data.label_noise=0.3", "data.num_train=1000", "data.noise_mode=ambiguous")["train"]

    def neutral_share_of_flips(train):
        flipped = train.info["expr_flipped"]
        return float((train.info["expr_clean"][flipped] == 0).float().mean())

    assert int(ambiguous.info["expr_flipped"].sum()) == int(uniform.info["expr_flipped"].sum()) == 300
    # Neutral faces (intensity 0) are the most ambiguous: they are flipped far more often.
    assert neutral_share_of_flips(ambiguous) > 1.5 * neutral_share_of_flips(uniform)
    # info.expr_intensity says how weak each face's expression is (0: neutral); ambiguous flips pick weak ones
    intensity, neutral = ambiguous.info["expr_intensity"], ambiguous.info["expr_clean"] == 0
    assert bool((intensity[neutral] == 0).all()) and bool((intensity[~neutral] > 0).all())
    flipped = ambiguous.info["expr_flipped"]
    assert float(intensity[flipped].mean()) < 0.8 * float(intensity[~flipped].mean())
