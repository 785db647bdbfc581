"""Batch plans for incomplete labels and Deng et al.'s balanced samplers (methods.md §4(c), §4(f))."""

import numpy as np
import pytest

from facemtl.config import load_config
from facemtl.data import build_datasets
from facemtl.data.sampling import (
    class_weights,
    epoch_batches,
    ml_ros_clones,
    ml_ros_weights,
    plan_epoch,
    task_pools,
    va_histogram_weights,
)


def _only(task):
    return "{" + ", ".join(f"{t}: {1.0 if t == task else 0.0}" for t in ("au", "expr", "va", "lmk", "attr")) + "}"


def split_config(sizes=(40, 64, 96), extra=()):
    """Three synthetic 'datasets', each labelling one task (AU, EXPR, VA), of different sizes."""
    sources = [f"{{name: synthetic, seed: {i + 1}, num_train: {n}, label_fraction: {_only(t)}}}"
               for i, (n, t) in enumerate(zip(sizes, ("au", "expr", "va")))]
    return load_config(None, [
        "data.name=mix", f"data.mix.sources=[{', '.join(sources)}]", "data.image_size=32", "data.num_val=8",
        "data.num_test=8", "data.imbalance=8", "model.tasks=au,expr,va", "model.backbone=test_tiny", *extra,
    ])


@pytest.fixture(scope="module")
def train_set():
    return build_datasets(split_config().data, splits=("train",))["train"]


def test_each_source_labels_exactly_one_task(train_set):
    pools = task_pools(train_set, ("au", "expr", "va"))
    assert [len(p) for p in pools.values()] == [40, 64, 96]
    assert not set(pools["au"]) & set(pools["expr"]) and not set(pools["expr"]) & set(pools["va"])


def test_per_task_plan_one_sub_batch_per_task_and_shortest_loader(train_set):
    data = split_config(extra=["data.batching=per_task"]).data
    plan = plan_epoch(train_set, data, ("au", "expr", "va"), 8, seed=0, epoch=0)
    assert len(plan) == min(40, 64, 96) // 8  # the shortest task loader ends the epoch
    mask = {t: m.reshape(len(m), -1).any(1).numpy() for t, m in train_set.mask.items()}
    for step in plan:
        assert len(step) == 24
        for k, task in enumerate(("au", "expr", "va")):
            assert mask[task][step[8 * k : 8 * (k + 1)]].all()  # sub-batch k holds faces labelled for task k
        assert len(set(step)) == 24  # without balancing, no face twice in a step


def test_plans_are_seeded_by_seed_and_epoch(train_set):
    for batching, balance in (("per_task", "none"), ("per_task", "auto"), ("mixed", "auto")):
        data = split_config(extra=[f"data.batching={batching}", f"data.balance={balance}"]).data
        first = plan_epoch(train_set, data, ("au", "expr", "va"), 8, seed=3, epoch=1)
        assert first == plan_epoch(train_set, data, ("au", "expr", "va"), 8, seed=3, epoch=1)
        assert first != plan_epoch(train_set, data, ("au", "expr", "va"), 8, seed=3, epoch=2)


def test_mixed_unbalanced_plan_is_the_trainers_permutation(train_set):
    data = split_config().data
    assert plan_epoch(train_set, data, ("au", "expr", "va"), 16, 5, 2) == epoch_batches(len(train_set), 16, 5, 2)


def test_balanced_per_task_pools_draw_with_replacement(train_set):
    data = split_config(extra=["data.batching=per_task", "data.balance=expr"]).data
    plan = plan_epoch(train_set, data, ("au", "expr", "va"), 64, seed=0, epoch=0)  # 64 > the AU pool: one step
    expr = plan[0][40 : 40 + 64]  # whole AU pool (40) first, then the EXPR draw
    assert len(expr) == 64 and len(set(expr)) < 64  # N draws with replacement repeat faces


def test_ml_ros_reaches_mean_ir_unless_capped():
    rng = np.random.default_rng(0)
    # rare AUs mostly apart from the frequent ones, so cloning them does not lift the maximum much
    rare = rng.random((2000, 1)) < 0.25
    probs = np.where(rare, [0.05, 0.05, 0.4, 0.3, 0.2, 0.05], [0.6, 0.4, 0.02, 0.01, 0.01, 0.3])
    labels = (rng.random((2000, 6)) < probs).astype(float)
    clones, capped = ml_ros_clones(labels, mean_ir=2.0, max_clone=0.5, rng=np.random.default_rng(1))
    effective = ((1 + clones)[:, None] * labels).sum(0)
    assert not capped and (effective.max() / effective).max() <= 2.0
    assert clones.sum() <= 0.5 * len(labels)
    # a tight cap stops cloning before every label is balanced
    clones, capped = ml_ros_clones(labels, mean_ir=2.0, max_clone=0.05, rng=np.random.default_rng(1))
    effective = ((1 + clones)[:, None] * labels).sum(0)
    assert capped and clones.sum() == int(0.05 * len(labels)) and (effective.max() / effective).max() > 2.0


def test_ml_ros_weights_and_the_official_bug():
    clones = np.array([0, 1, 3])
    assert ml_ros_weights(clones).tolist() == pytest.approx([1 / 3, 2 / 3, 4 / 3])
    official = ml_ros_weights(clones, official=True)
    assert official[0] == official[1]  # cloned once weighs the same as never cloned (the bug)


def test_class_and_va_histogram_weights_balance_the_draw():
    classes = np.array([0] * 90 + [1] * 9 + [2])
    weights = class_weights(classes)
    assert weights.tolist() == pytest.approx([1 / 90] * 90 + [1 / 9] * 9 + [1.0])
    draws = np.random.default_rng(0).choice(classes, size=30000, p=weights / weights.sum())
    assert np.bincount(draws) / len(draws) == pytest.approx([1 / 3] * 3, abs=0.02)
    va = np.array([[0.01, 0.01], [0.02, 0.03], [0.5, -0.5], [1.0, 1.0]])
    assert va_histogram_weights(va).tolist() == pytest.approx([0.5, 0.5, 1.0, 1.0])


def test_per_task_balanced_training_resumes_exactly(tmp_path, monkeypatch):
    """A run killed mid-epoch and resumed ends with the same weights (plans are seeded by (seed, epoch))."""
    import torch
    from conftest import interrupt_then_resume

    from facemtl.engine import Trainer, load_checkpoint

    config = split_config(sizes=(24, 32, 40), extra=[
        "data.batching=per_task", "data.balance=auto", "train.batch_size=8", "train.epochs=2",
        "train.checkpoint_every=1", "train.progress=false", "train.threads=1", "train.warmup_epochs=0",
    ])
    Trainer(config, tmp_path / "straight").fit()
    interrupt_then_resume(config, tmp_path / "killed", monkeypatch, at_call=4)  # mid second epoch (3 steps each)
    a = load_checkpoint(tmp_path / "straight/checkpoints/last.safetensors").model_state
    b = load_checkpoint(tmp_path / "killed/checkpoints/last.safetensors").model_state
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
