"""Shared fixtures: tiny, seeded runs of the synthetic benchmark."""

import pytest

#: A run small enough for unit tests (a few seconds on 2 cores).
TINY = [
    "data.num_train=128", "data.num_val=64", "data.num_test=64", "data.image_size=32",
    "model.backbone=test_tiny", "train.epochs=2", "train.batch_size=32", "train.progress=false",
    "train.warmup_epochs=0", "train.eval_batch_size=64",
]


@pytest.fixture
def tiny_overrides() -> list[str]:
    return list(TINY)
