"""Masked losses: missing labels are ignored, an unlabelled task gives an exact, NaN-free zero."""

import math

import pytest
import torch
import torch.nn.functional as F

from facemtl.losses import attribute_cross_entropy, ccc_loss, masked_bce, masked_cross_entropy, masked_regression


def test_cross_entropy_ignores_masked_rows():
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [5.0, -5.0]])
    target = torch.tensor([0, 1, 1])
    mask = torch.tensor([True, True, False])
    # Row 3 would add a huge loss if the mask were ignored.
    expected = F.cross_entropy(logits[:2], target[:2])
    assert torch.allclose(masked_cross_entropy(logits, target, mask), expected)


def test_cross_entropy_accepts_invalid_targets_when_masked():
    logits = torch.randn(3, 4)
    target = torch.tensor([1, -1, 99])
    mask = torch.tensor([True, False, False])
    assert torch.allclose(masked_cross_entropy(logits, target, mask), F.cross_entropy(logits[:1], target[:1]))


def test_weighted_cross_entropy_divides_by_count():
    logits = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    target = torch.tensor([0, 0])
    weight = torch.tensor([0.5, 2.0])
    per = F.cross_entropy(logits, target, reduction="none")
    got = masked_cross_entropy(logits, target, torch.tensor([True, True]), weight)
    assert math.isclose(float(got), float((0.5 * per[0] + 2.0 * per[1]) / 2), rel_tol=1e-6)


@pytest.mark.parametrize("task", ["expr", "au", "va", "lmk", "ccc", "attr"])
def test_no_labelled_sample_gives_zero_loss_and_finite_grads(task):
    pred = torch.randn(4, 3, requires_grad=True)
    nobody = torch.zeros(4, dtype=torch.bool)
    if task == "expr":
        loss = masked_cross_entropy(pred, torch.full((4,), -1), nobody)
    elif task == "au":
        loss = masked_bce(pred, torch.full((4, 3), float("nan")), torch.zeros(4, 3, dtype=torch.bool))
    elif task == "va":
        loss = masked_regression(pred, torch.full((4, 3), float("nan")), nobody, "mse")
    elif task == "lmk":
        loss = masked_regression(pred, torch.full((4, 3), float("nan")), nobody, "l1")
    elif task == "ccc":
        loss = ccc_loss(pred, torch.zeros(4, 3), nobody)
    else:
        losses = attribute_cross_entropy({"glasses": pred}, torch.zeros(4, 1, dtype=torch.long), torch.zeros(4, 1, dtype=torch.bool))
        loss = losses["glasses"]
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all() and pred.grad.abs().sum() == 0


def test_bce_mask_is_per_entry():
    logits = torch.tensor([[3.0, -3.0], [0.0, 0.0]])
    target = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    mask = torch.tensor([[True, False], [True, True]])
    entries = F.binary_cross_entropy_with_logits(logits, target, reduction="none")[mask]
    assert torch.allclose(masked_bce(logits, target, mask), entries.mean())


def test_regression_with_nan_in_missing_rows_stays_finite():
    pred = torch.zeros(3, 5, 2, requires_grad=True)
    target = torch.ones(3, 5, 2)
    target[1] = float("nan")
    mask = torch.tensor([True, False, True])
    loss = masked_regression(pred, target, mask, "l1")
    assert math.isclose(float(loss.detach()), 1.0)
    loss.backward()
    assert torch.isfinite(pred.grad).all() and pred.grad[1].abs().sum() == 0


def test_ccc_loss_matches_definition():
    x = torch.tensor([[0.1, 0.5], [0.4, -0.2], [-0.3, 0.0], [0.8, 0.3]])
    y = torch.tensor([[0.0, 0.4], [0.5, -0.1], [-0.2, 0.2], [0.6, 0.1]])
    mask = torch.ones(4, dtype=torch.bool)

    def ccc(a, b):
        cov = ((a - a.mean()) * (b - b.mean())).mean()
        return 2 * cov / (a.var(unbiased=False) + b.var(unbiased=False) + (a.mean() - b.mean()) ** 2)

    expected = 1 - (ccc(x[:, 0], y[:, 0]) + ccc(x[:, 1], y[:, 1])) / 2
    assert torch.allclose(ccc_loss(x, y, mask), expected)
    assert float(ccc_loss(y, y, mask)) == pytest.approx(0.0, abs=1e-6)
