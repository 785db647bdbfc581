"""DACL: the hand-computed cases of methods.md §3(f), and the method inside the trainer."""

import csv

import pytest
import torch

from facemtl.config import load_config
from facemtl.data import build_datasets
from facemtl.engine import Trainer
from facemtl.engine.trainer import build_method, build_optimizer
from facemtl.errors import FacemtlError
from facemtl.losses import center_update_direction, sparse_center_loss
from facemtl.methods import TrainContext


def test_reduces_to_center_loss_when_attention_is_one():
    torch.manual_seed(0)
    x, c, y = torch.randn(6, 4), torch.randn(3, 4), torch.tensor([0, 1, 2, 0, 1, 1])
    expected = ((x - c[y]) ** 2).sum() / (2 * 6)
    assert torch.allclose(sparse_center_loss(x, torch.ones(6, 4), c, y), expected)


def test_gradients_match_the_official_formulas():
    torch.manual_seed(0)
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    a = torch.rand(5, 3, dtype=torch.float64, requires_grad=True)
    c, y = torch.randn(2, 3, dtype=torch.float64), torch.tensor([0, 1, 1, 0, 1])
    sparse_center_loss(x, a, c, y).backward()
    diff = x.detach() - c[y]
    assert torch.allclose(a.grad, diff**2 / (2 * 5))
    assert (a.grad >= 0).all()
    assert torch.allclose(x.grad, a.detach() * diff / 5)


def test_center_update_numeric_example():
    x, a = torch.tensor([[2.0, 0.0]]), torch.tensor([[1.0, 0.5]])
    centers, y = torch.tensor([[0.0, 0.0], [3.0, 3.0]]), torch.tensor([0])
    g = center_update_direction(x, a, centers, y)
    assert g.tolist() == [[-1.0, 0.0], [0.0, 0.0]]  # class 1 absent: unchanged
    assert (centers - 0.5 * g).tolist() == [[0.5, 0.0], [3.0, 3.0]]


def _dacl(*overrides):
    config = load_config(None, [
        "data.num_train=64", "data.num_val=16", "data.num_test=16", "data.image_size=32",
        "model.backbone=test_tiny", "method.name=dacl", "method.ce_unit_widths=[32,16,8]", *overrides,
    ])
    train = build_datasets(config.data, splits=("train",))["train"]
    torch.manual_seed(0)
    method = build_method(config, train.label_spaces, TrainContext(len(train), 1, 1))
    return config, train, method


def test_attention_shape_and_range():
    _, train, method = _dacl()
    outputs = method.net(train.__getitems__(list(range(8)))["image"])
    attention = method.attention(outputs["feat_map"])
    assert attention.shape == (8, method.net.num_features)
    assert (attention > 0).all() and (attention < 1).all()


def _one_step(*overrides):
    config, train, method = _dacl(*overrides)
    before = method.centers.detach().clone()
    batch = train.__getitems__(list(range(16)))
    method.train_step(batch, build_optimizer(method, config.train))
    return before, method.centers.detach().clone(), batch


def test_official_center_update_ignores_lambda_and_absent_classes():
    before, small, batch = _one_step("method.lamb=0.01")
    _, large, _ = _one_step("method.lamb=1.0")
    assert torch.equal(small, large)
    present = set(batch["labels"]["expr"].tolist())
    for k in range(before.shape[0]):
        assert torch.equal(small[k], before[k]) != (k in present), k


def test_autograd_center_update_follows_true_gradient():
    before, after, _ = _one_step("method.center_update=autograd", "method.lamb=1.0", "method.alpha=0.5")
    _, after_small_lambda, _ = _one_step("method.center_update=autograd", "method.lamb=0.01", "method.alpha=0.5")
    assert not torch.equal(before, after)
    # The true gradient of lambda * L_SC scales with lambda.
    ratio = (after - before).norm() / (after_small_lambda - before).norm()
    assert float(ratio) == pytest.approx(100.0, rel=1e-3)


def test_centers_and_attention_have_their_own_steps():
    config, _, method = _dacl()
    ids = {id(p) for group in build_optimizer(method, config.train).param_groups for p in group["params"]}
    assert id(method.centers) not in ids and id(method.attention.heads.weight) not in ids
    assert id(method.net.heads["expr"].weight) in ids
    # Their state is the method's, so checkpoints and resume carry it (exact resume: test_trainer.py).
    assert {"centers", "attention_optim.exp_avg_0", "attention_optim.steps"} <= set(method.state_dict())
    config, _, method = _dacl("method.attention_optimizer=main")
    ids = {id(p) for group in build_optimizer(method, config.train).param_groups for p in group["params"]}
    assert id(method.centers) not in ids and id(method.attention.heads.weight) in ids


def test_attention_takes_the_official_sgd_step_under_adam():
    """Own SGD (lr x schedule factor, momentum, decay) on the attention; the rest under AdamW."""
    config, train, method = _dacl("train.optimizer=adamw", "method.lamb=1.0", "method.attention_lr=0.05")
    optimizer = build_optimizer(method, config.train)
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * 0.5  # as the trainer's schedule does
    reference = torch.optim.SGD(
        [torch.nn.Parameter(p.detach().clone()) for p in method.attention.parameters()],
        lr=0.05 * 0.5, momentum=0.9, weight_decay=5e-4,
    )
    for start in (0, 16):
        batch = train.__getitems__(list(range(start, start + 16)))
        # The reference gets the same gradient: autograd on a copy of the loss before the step.
        grads = torch.autograd.grad(method.training_step(batch)["loss"], list(method.attention.parameters()))
        for p, g in zip(reference.param_groups[0]["params"], grads):
            p.grad = g
        reference.step()
        method.train_step(batch, optimizer)
        for mine, theirs in zip(method.attention.parameters(), reference.param_groups[0]["params"]):
            assert torch.allclose(mine, theirs, atol=1e-6)
            assert mine.grad is None  # cleared: gradients do not pile up across steps


def test_bad_options():
    with pytest.raises(FacemtlError, match="center_update='true' is not valid"):
        load_config(None, ["method.name=dacl", "method.center_update=true"])
    with pytest.raises(FacemtlError, match="needs the expr task"):
        _dacl("model.tasks=au")


def test_dacl_trains_in_trainer_and_logs(tmp_path, tiny_overrides):
    config = load_config(None, tiny_overrides + ["method.name=dacl", "method.ce_unit_widths=[32,16,8]"])
    Trainer(config, tmp_path / "run").fit()
    rows = list(csv.DictReader((tmp_path / "run/log.csv").open()))
    for key in ("attention", "attention_std", "attention_above_half", "intra_class_distance", "inter_center_distance", "train_loss_center"):
        assert key in rows[0], key
