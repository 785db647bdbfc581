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


def interrupt_then_resume(config, run_dir, monkeypatch, at_call: int) -> None:
    """Train ``config`` into ``run_dir``, interrupted at the ``at_call``-th step, then resume it to the end."""
    from facemtl.engine import Trainer
    from facemtl.methods.base import Method

    original, calls = Method.train_step, {"n": 0}

    def dies(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == at_call:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Method, "train_step", dies)
    with pytest.raises(KeyboardInterrupt):
        Trainer(config, run_dir).fit()
    monkeypatch.setattr(Method, "train_step", original)
    Trainer(config, run_dir, resume=True).fit()
