"""SCN: the hand-computed cases of methods.md §2(f), and the method inside the trainer."""

import math

import pytest
import torch
import torch.nn.functional as F

from facemtl.config import load_config
from facemtl.data import build_datasets
from facemtl.engine import Trainer, load_checkpoint
from facemtl.engine.trainer import build_method
from facemtl.errors import FacemtlError
from facemtl.losses import rank_regularization, relabel, split_by_importance, weighted_logit_cross_entropy
from facemtl.methods import TrainContext

ALPHA = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05]


def test_rank_regularization_numeric_example():
    alpha = torch.tensor(ALPHA, requires_grad=True)
    loss, high = rank_regularization(alpha, beta=0.7, margin=0.15)
    assert high.tolist() == [True] * 7 + [False] * 3
    assert float(loss.detach()) == 0.0  # gap 0.6 - 0.116667 = 0.4833 > 0.15

    loss, _ = rank_regularization(alpha, beta=0.7, margin=0.6)
    assert float(loss.detach()) == pytest.approx(0.116667, abs=1e-6)
    loss.backward()
    assert alpha.grad[:7].tolist() == pytest.approx([-1 / 7] * 7)
    assert alpha.grad[7:].tolist() == pytest.approx([1 / 3] * 3)


@pytest.mark.parametrize("batch, high, low", [(64, 44, 20), (47, 32, 15)])
def test_group_sizes(batch, high, low):
    groups = split_by_importance(torch.rand(batch), 0.7)
    assert int(groups.sum()) == high and int((~groups).sum()) == low


def test_batch_of_one_is_handled():
    alpha = torch.tensor([0.4], requires_grad=True)
    loss, high = rank_regularization(alpha, 0.7, 0.15)
    assert float(loss.detach()) == 0.0 and not bool(high.any())
    loss.backward()
    assert torch.isfinite(alpha.grad).all()


def test_weighted_ce_limits():
    torch.manual_seed(0)
    logits, target = torch.randn(5, 7), torch.randint(0, 7, (5,))
    assert torch.allclose(weighted_logit_cross_entropy(logits, target, torch.ones(5)), F.cross_entropy(logits, target))
    tiny = weighted_logit_cross_entropy(logits, target, torch.full((5,), 1e-6))
    assert float(tiny) == pytest.approx(math.log(7), abs=1e-4)
    alpha = torch.rand(5) + 0.01
    assert torch.equal((alpha[:, None] * logits).argmax(1), logits.argmax(1))


def test_relabel_rule():
    probs = torch.tensor([[0.1, 0.7, 0.2], [0.45, 0.35, 0.2]])
    assert relabel(probs, torch.tensor([0, 1]), margin=0.2).tolist() == [1, 1]


def _scn(*overrides):
    config = load_config(None, [
        "data.num_train=64", "data.num_val=16", "data.num_test=16", "data.image_size=32",
        "model.backbone=test_tiny", "method.name=scn", *overrides,
    ])
    train = build_datasets(config.data, splits=("train",))["train"]
    torch.manual_seed(0)
    return config, train, build_method(config, train.label_spaces, TrainContext(len(train), 2, 1))


def test_scn_config_keys_are_checked():
    with pytest.raises(FacemtlError, match="unknown key method.beta; valid keys in method: name, task_weights"):
        load_config(None, ["method.beta=0.5"])  # plain has no beta
    with pytest.raises(FacemtlError, match="relabel_scope='some' is not valid"):
        load_config(None, ["method.name=scn", "method.relabel_scope=some"])
    assert load_config(None, ["method.name=scn", "method.beta=0.6"]).method.beta == 0.6


def test_paper_mode_never_relabels_high_group_and_code_mode_may():
    for scope in ("low", "any"):
        _, train, method = _scn(f"method.relabel_scope={scope}", "method.relabel_epoch=1", "method.margin_2=0.0")
        batch = train.__getitems__(list(range(32)))
        # Make the expression head confidently disagree with every label.
        with torch.no_grad():
            method.net.heads["expr"].weight.zero_()
            method.net.heads["expr"].bias.copy_(torch.arange(7.0) * 5)
            batch["labels"]["expr"][:] = 0
            batch["mask"]["expr"][:] = True
        method.training_step(batch)
        importance = method.importance(method.net(batch["image"])["feat"]).squeeze(1)
        high = split_by_importance(importance, 0.7)
        changed = method.relabels[:32] >= 0
        if scope == "low":
            assert not bool((changed & high).any()) and int(changed.sum()) == int((~high).sum())
        else:
            assert int(changed.sum()) == 32


def test_detached_importance_input_keeps_the_importance_gradient_out_of_the_backbone():
    for detach in (False, True):
        _, train, method = _scn("model.tasks=expr", "method.weight_start=0", f"method.detach_importance_input={detach}")
        batch = train.__getitems__(list(range(16)))
        with torch.no_grad():  # logits independent of the feature: the backbone's only gradient is via the importance
            method.net.heads["expr"].weight.zero_()
            method.net.heads["expr"].bias.copy_(torch.arange(7.0))
        method.training_step(batch)["loss"].backward()
        backbone = [p.grad for p in method.net.backbone.parameters()]
        reached = any(g is not None and bool(g.abs().sum() > 0) for g in backbone)
        assert reached is not detach
        assert method.importance[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("overrides, epochs, first", [
    ([], 8, 7),  # default: relabelling after three quarters of the run
    (["method.relabel_start=0.25"], 40, 11),  # the paper's 10 of 40, counted from the run's length
    (["method.relabel_start=0"], 8, 1),
    (["method.relabel_epoch=10"], 8, 10),  # the paper's fixed epoch: never within 8 epochs
    (["method.relabel_epoch=10", "method.relabel_start=0.1"], 40, 10),  # a fixed epoch wins
])
def test_relabelling_starts_at_a_fraction_of_the_run_or_a_fixed_epoch(overrides, epochs, first):
    config = load_config(None, ["method.name=scn", *overrides])
    assert config.method.first_relabel_epoch(epochs) == first
    with pytest.raises(FacemtlError, match="relabel_start=1.5 is out of range"):
        load_config(None, ["method.name=scn", "method.relabel_start=1.5"])


def test_before_weight_start_the_network_trains_on_plain_ce_and_the_importance_beside_it():
    _, train, method = _scn("model.tasks=expr", "method.weight_start=0.5")  # 2 epochs: weighting from epoch 2
    assert method.weight_from == 2
    batch = train.__getitems__(list(range(16)))
    method.training_step(batch)["loss"].backward()
    head = method.net.heads["expr"].weight.grad.clone()
    assert method.importance[0].weight.grad.abs().sum() > 0  # the importance branch learns meanwhile
    method.zero_grad()
    F.cross_entropy(method.net(batch["image"])["expr"], batch["labels"]["expr"]).backward()
    assert torch.allclose(head, method.net.heads["expr"].weight.grad, atol=1e-6)  # exactly plain CE's gradient
    method.zero_grad()
    method.epochs_done += 1  # epoch 2: the importance now scales the logits
    method.training_step(batch)["loss"].backward()
    assert not torch.allclose(head, method.net.heads["expr"].weight.grad, atol=1e-4)


def test_relabels_are_method_state_not_dataset_edits(tmp_path):
    _, train, method = _scn("method.relabel_epoch=1", "method.margin_2=0.0")
    batch = train.__getitems__([3, 4])
    with torch.no_grad():
        method.relabels[3] = (int(batch["labels"]["expr"][0]) + 1) % 7
    assert method.current_labels(batch)[0] != batch["labels"]["expr"][0]
    assert method.current_labels(batch)[1] == batch["labels"]["expr"][1]
    assert train.labels["expr"][3] == batch["labels"]["expr"][0]  # the dataset itself is untouched
    state = method.state_dict()
    assert "relabels" in state and int(state["relabels"][3]) >= 0


def test_scn_trains_in_trainer_and_logs(tmp_path, tiny_overrides):
    config = load_config(None, tiny_overrides + [
        "method.name=scn", "method.relabel_start=0.5", "data.label_noise=0.3", "train.epochs=2",
    ])
    Trainer(config, tmp_path / "run").fit()
    import csv

    rows = list(csv.DictReader((tmp_path / "run/log.csv").open()))
    for key in ("importance_clean_mean", "importance_flipped_mean", "importance_clean_std", "rr_loss", "relabels", "relabels_total"):
        assert key in rows[0], key
    assert float(rows[0]["relabels"]) == 0  # relabelling starts after half the run: epoch 2
    last = load_checkpoint(tmp_path / "run/checkpoints/last.safetensors")
    assert int(last.model_state["epochs_done"]) == 2
    assert int((last.model_state["relabels"] >= 0).sum()) == float(rows[1]["relabels_total"])
