"""MAL: the unit tests of methods.md §1(f), the meta set, and exact resume inside the trainer."""

import copy
import csv

import pytest
import torch

from facemtl.config import load_config
from facemtl.data import build_datasets
from facemtl.engine import Trainer, load_checkpoint
from facemtl.engine.trainer import build_method, build_optimizer
from facemtl.errors import FacemtlError
from facemtl.losses import masked_bce, masked_cross_entropy
from facemtl.losses.meta import (
    au_entry_losses,
    expr_sample_losses,
    mean_sample_weight,
    virtual_sgd_step,
    weighted_task_loss,
)
from facemtl.methods import TrainContext
from facemtl.methods.mal import MALMethod, last_stage_prefix

TINY_MAL = [
    "data.num_train=96", "data.num_val=16", "data.num_test=16", "data.image_size=32", "data.label_noise=0.3",
    "model.backbone=test_tiny", "model.tasks=[au,expr]", "method.name=mal",
    "method.meta_size=16", "method.meta_batch_size=8",
]


def _mal(*overrides, name="mal"):
    base = TINY_MAL if name == "mal" else [o for o in TINY_MAL if not o.startswith("method.meta")]
    config = load_config(None, [*base, f"method.name={name}", *overrides])
    train = build_datasets(config.data, splits=("train",))["train"]
    torch.manual_seed(0)
    method = build_method(config, train.label_spaces, TrainContext(len(train), 1, 3))
    method.on_fit_start({"train": train})
    return config, train, method


def _float64(batch):
    """The batch's images and AU labels in float64 (for a float64 copy of the method)."""
    return {**batch, "image": batch["image"].double(), "labels": {**batch["labels"], "au": batch["labels"]["au"].double()}}


def _snapshot(method, optimizer):
    state = {k: v.clone() for k, v in method.net.state_dict().items()}
    optim = copy.deepcopy(optimizer.state_dict())
    return state, optim


# -- config and losses ------------------------------------------------------------------
def test_config_is_checked():
    with pytest.raises(FacemtlError, match="method.normalize='mean' is not valid"):
        load_config(None, ["method.name=mal", "method.normalize=mean"])
    with pytest.raises(FacemtlError, match="unknown key method.meta_size"):
        load_config(None, ["method.meta_size=10"])  # plain has no meta set
    with pytest.raises(FacemtlError, match="method mal needs the au task"):
        _mal("model.tasks=[expr]")
    with pytest.raises(FacemtlError, match="method.meta_input='feat\\+feat' is not valid; join distinct parts"):
        load_config(None, ["method.name=mal", "method.meta_input=feat+feat"])
    with pytest.raises(FacemtlError, match="method.weight_from_epoch=-1 must be >= 0"):
        load_config(None, ["method.name=mal", "method.weight_from_epoch=-1"])
    with pytest.raises(FacemtlError, match="method.meta_input='feat\\+label' is not valid"):
        load_config(None, ["method.name=mal", "method.meta_input=feat+label"])


def test_meta_net_reads_the_parts_of_meta_input():
    """feat+loss: the feature, then each face's AU (mean over its labelled AUs) and expression losses."""
    _, train, method = _mal("method.meta_input=feat+loss", "data.label_fraction.expr=0.5")
    batch = method.drop_meta_faces(train.__getitems__(list(range(32))))
    base = method.forward_base(batch)
    width = method.net.num_features
    assert base.meta_inputs.shape == (len(batch["index"]), width + 2)
    assert torch.equal(base.meta_inputs[:, :width], base.outputs["feat"].detach())
    au_mask = batch["mask"]["au"].float()
    au_mean = (base.entries["au"] * au_mask).sum(1) / au_mask.sum(1).clamp_min(1)
    assert torch.allclose(base.meta_inputs[:, width], au_mean.detach())
    assert torch.allclose(base.meta_inputs[:, width + 1], base.entries["expr"].detach())
    labelled = batch["mask"]["expr"].bool()
    assert bool(labelled.any()) and bool((~labelled).any())
    assert torch.equal(base.meta_inputs[~labelled, width + 1], torch.zeros(int((~labelled).sum())))
    assert method.sample_weights(base.meta_inputs)["expr"].shape == (len(batch["index"]),)
    method.config.meta_standardize = True  # each column over the batch: mean 0, std 1
    standardized = method.forward_base(batch).meta_inputs
    assert torch.allclose(standardized, (base.meta_inputs - base.meta_inputs.mean(0)) / base.meta_inputs.std(0).clamp_min(1e-6),
                          atol=1e-4)
    assert torch.allclose(standardized[:, width + 1].std(), torch.tensor(1.0), atol=1e-5)


def test_dynamics_input_is_each_faces_label_confidence_history():
    """meta_input dynamics: per face and task (au, expr), mean and std over its visits of p(label)."""
    _, train, method = _mal("method.meta_input=dynamics", "data.label_fraction.expr=0.5", "data.label_fraction.au=0.5")
    method.eval()  # no dropout: a visit's confidence is exactly exp(-loss) of a plain forward
    batch = method.drop_meta_faces(train.__getitems__(list(range(32))))
    labelled = torch.stack([batch["mask"]["au"].any(1), batch["mask"]["expr"].bool()], 1)
    assert bool(labelled.all(1).any()) and bool((~labelled).any())

    def visit():
        """One base pass (it records the visit); returns the meta-net's input and this visit's confidences."""
        with torch.no_grad():
            entries = method.entry_losses(method.net(batch["image"]), batch)
        au_mask = batch["mask"]["au"].float()
        au = (torch.exp(-entries["au"]) * au_mask).sum(1) / au_mask.sum(1).clamp_min(1)
        return method.forward_base(batch).meta_inputs, torch.stack([au, torch.exp(-entries["expr"])], 1)

    confidences = []
    for _ in range(3):
        inputs, confidence = visit()
        confidences.append(confidence)
        with torch.no_grad():  # the next visit sees other predictions
            for param in method.net.heads.parameters():
                param.add_(0.3 * torch.randn_like(param))
    visits = torch.stack(confidences)
    expected = torch.stack([visits.mean(0), visits.std(0, unbiased=False)], 2).flatten(1) * labelled.repeat_interleave(2, 1)
    assert inputs.shape == (len(batch["index"]), 4)
    assert torch.allclose(inputs, expected, atol=1e-5)  # the current visit counts: recorded before the meta-net reads it
    assert torch.equal(method.label_confidence.sums[batch["index"], :, 0], 3.0 * labelled)  # no label, no visit
    assert float(expected[:, [1, 3]].max()) > 0.01  # the head changes moved the confidences


def test_weighted_loss_with_unit_weights_is_the_masked_mean():
    torch.manual_seed(0)
    logits, target = torch.randn(6, 5), torch.randint(0, 2, (6, 5)).float()
    mask = torch.rand(6, 5) > 0.3
    ones = torch.ones(6)
    assert torch.equal(weighted_task_loss(au_entry_losses(logits, target, mask), mask, ones), masked_bce(logits, target, mask))
    classes, labelled = torch.randint(0, 5, (6,)), torch.tensor([1, 1, 0, 1, 0, 1]).bool()
    expected = masked_cross_entropy(logits, classes, labelled)
    assert torch.allclose(weighted_task_loss(expr_sample_losses(logits, classes, labelled), labelled, ones), expected)
    # "sum" (L2RW) ignores a uniform rescaling of the weights; "batch" and "none" do not.
    values, w = expr_sample_losses(logits, classes, labelled), torch.rand(6)
    assert torch.allclose(weighted_task_loss(values, labelled, w, "sum"), weighted_task_loss(values, labelled, 3 * w, "sum"))
    assert torch.allclose(3 * weighted_task_loss(values, labelled, w, "batch"), weighted_task_loss(values, labelled, 3 * w, "batch"))
    assert torch.allclose(weighted_task_loss(values, labelled, w, "none"), (w * values)[labelled].sum())


def test_relative_normalisation_learns_only_relative_weights():
    """``relative``: a uniform scale of every weight (both tasks) cancels; equal weights give the plain loss."""
    _, train, method = _mal("method.normalize=relative")
    batch = train.__getitems__(list(range(32)))
    with torch.no_grad():
        outputs = method.net(batch["image"])
        w = {"au": torch.rand(32) + 0.1, "expr": torch.rand(32) + 0.1}
        loss, _ = method.train_loss(outputs, batch, w)
        scaled, _ = method.train_loss(outputs, batch, {task: 7 * v for task, v in w.items()})
        assert torch.allclose(loss, scaled)
        uniform, _ = method.train_loss(outputs, batch, {task: torch.full((32,), 0.3) for task in w})
        plain = masked_bce(outputs["au"], batch["labels"]["au"], batch["mask"]["au"]) + \
            masked_cross_entropy(outputs["expr"], batch["labels"]["expr"], batch["mask"]["expr"])
        assert torch.allclose(uniform, plain, rtol=1e-5)
        # ...but moving weight from expression to AU samples changes it
        shifted, _ = method.train_loss(outputs, batch, {"au": w["au"] * 2, "expr": w["expr"]})
        assert not torch.allclose(loss, shifted)
    labelled = {"au": torch.tensor([True, False, True]), "expr": torch.tensor([False, True, True])}
    mean = mean_sample_weight({"au": torch.tensor([1.0, 9.0, 3.0]), "expr": torch.tensor([9.0, 2.0, 6.0])}, labelled)
    assert float(mean) == pytest.approx((1 + 3 + 2 + 6) / 4)


# -- methods.md §1(f) -------------------------------------------------------------------
@pytest.mark.parametrize("virtual_step", ["all", "heads"])
def test_meta_step_is_side_effect_free(virtual_step):
    config, train, method = _mal(f"method.virtual_step={virtual_step}", "train.optimizer=sgd")
    optimizer = build_optimizer(method, config.train)
    method.train()
    method.train_step(train.__getitems__(list(range(32))), optimizer)  # momentum buffers exist now
    net_before, optim_before = _snapshot(method, optimizer)
    psi_before = [p.clone() for p in method.meta_net.parameters()]
    grads_before = [None if p.grad is None else p.grad.clone() for p in method.net.parameters()]
    batch = method.drop_meta_faces(train.__getitems__(list(range(32, 64))))
    base = method.forward_base(batch)
    method.meta_step(base, batch, method.next_meta_batch(torch.device("cpu")), inner_lr=0.1)
    for key, value in method.net.state_dict().items():  # parameters and BN buffers, bit for bit
        assert torch.equal(value, net_before[key]), key
    optim_after = optimizer.state_dict()
    assert optim_after["param_groups"] == optim_before["param_groups"]
    for pid, entries in optim_before["state"].items():
        for key, value in entries.items():
            assert torch.equal(optim_after["state"][pid][key], value), (pid, key)
    for p, g in zip(method.net.parameters(), grads_before):  # the real step's .grad is not touched either
        assert (p.grad is None and g is None) or torch.equal(p.grad, g)
    assert any(not torch.equal(a, b) for a, b in zip(method.meta_net.parameters(), psi_before))  # psi did move


def test_hypergradient_matches_finite_differences_linear():
    """Tiny linear model, 2-parameter meta-net, one inner SGD step; float64 central differences."""
    torch.manual_seed(0)
    x, y, s = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    xv, yv = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    theta = torch.randn(3, dtype=torch.float64, requires_grad=True)
    alpha = 0.3

    def objective(psi):
        weights = psi[0] + psi[1] * s  # the 2-parameter "meta-net", bilinear in (psi, feature)
        loss = weighted_task_loss(0.5 * (x @ theta - y) ** 2, torch.ones(5, dtype=torch.bool), weights)
        fast = virtual_sgd_step({"theta": theta}, loss, alpha)["theta"]
        return 0.5 * ((xv @ fast - yv) ** 2).mean()

    psi = torch.tensor([0.7, -0.2], dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(objective(psi), psi)
    h = 1e-6
    numeric = torch.stack([(objective(psi.detach() + h * e) - objective(psi.detach() - h * e)).detach() / (2 * h) for e in torch.eye(2, dtype=torch.float64)])
    assert torch.allclose(grad, numeric, atol=1e-4 * max(1.0, float(numeric.abs().max())), rtol=0)
    assert float(grad.abs().max()) > 1e-3  # a real signal, not two zeros


@pytest.mark.parametrize("normalize", ["batch", "relative"])
def test_hypergradient_matches_finite_differences_in_the_method(normalize):
    """The method's own meta objective in float64 (BN, conv, both heads): autograd vs central differences."""
    _, train, method = _mal("method.inner_lr=0.5", "method.meta_input=feat+loss", f"method.normalize={normalize}")
    method.double().train()
    batch = _float64(method.drop_meta_faces(train.__getitems__(list(range(24)))))
    meta = _float64(method.next_meta_batch(torch.device("cpu")))
    base = method.forward_base(batch)
    objective = lambda: method.meta_objective(base, batch, meta, 0.5)
    psi = list(method.meta_net.parameters())
    grads = torch.autograd.grad(objective(), psi)
    generator = torch.Generator().manual_seed(0)
    checked = 0
    for p, g in zip(psi, grads):
        for flat in torch.randperm(p.numel(), generator=generator)[:3].tolist():
            values = []
            for shift in (1e-6, -2e-6, 1e-6):  # +h, -h, back to psi
                with torch.no_grad():
                    p.view(-1)[flat] += shift
                values.append(float(objective().detach()))
            plus, minus = values[:2]
            numeric = (plus - minus) / 2e-6
            assert g.view(-1)[flat].item() == pytest.approx(numeric, rel=1e-4, abs=1e-9)
            checked += abs(numeric) > 1e-7
    assert checked >= 4  # most checked entries carry a non-trivial gradient


@pytest.mark.parametrize("normalize,virtual_step", [("batch", "all"), ("relative", "heads")])
def test_difference_hypergradient_equals_autograd(normalize, virtual_step):
    """``hypergradient: difference`` gives autograd's hypergradient (float64, dropout replayed, BN in training mode)."""
    overrides = ("method.inner_lr=0.5", "method.meta_input=feat+loss", f"method.normalize={normalize}",
                 f"method.virtual_step={virtual_step}", "method.difference_step=1e-7", "model.drop_rate=0.3")
    _, train, method = _mal(*overrides)
    method.double().train()
    batch = _float64(method.drop_meta_faces(train.__getitems__(list(range(24)))))
    meta = _float64(method.next_meta_batch(torch.device("cpu")))
    base = method.forward_base(batch)
    assert (base.below is not None) == (virtual_step == "heads")  # heads: the difference pass starts at the last stage
    hypergradients = {}
    for mode in ("autograd", "difference"):
        method.config.hypergradient = mode
        torch.manual_seed(1)  # the same dropout masks in both meta passes
        hypergradients[mode] = method.meta_gradients(base, batch, meta, 0.5)
    (loss_a, grads_a), (loss_d, grads_d) = hypergradients["autograd"], hypergradients["difference"]
    assert float(loss_a) == pytest.approx(float(loss_d), rel=1e-12)
    flat_a, flat_d = torch.cat([g.flatten() for g in grads_a]), torch.cat([g.flatten() for g in grads_d])
    assert float(flat_a.abs().max()) > 1e-4  # a real signal
    assert torch.allclose(flat_d, flat_a, rtol=1e-5, atol=1e-6 * float(flat_a.abs().max()))
    # without the replayed dropout masks the two would differ: the check above can fail
    method.config.hypergradient = "difference"
    base.rng_state = (torch.random.manual_seed(99).get_state(), [])
    torch.manual_seed(1)
    _, grads_other = method.meta_gradients(base, batch, meta, 0.5)
    assert not torch.allclose(torch.cat([g.flatten() for g in grads_other]), flat_a, rtol=1e-3, atol=0)


def test_difference_logs_each_samples_alignment_with_the_meta_gradient():
    """align_expr_clean / _flipped are the means of <grad l_i(theta), g*> over clean / corrupted expression faces;
    meta_input alignment reads each face's past alignments, standardised over the batch."""
    _, train, method = _mal("method.inner_lr=0.5", "method.hypergradient=difference", "method.difference_step=1e-7",
                            "method.meta_input=loss+alignment")
    method.double().train()
    batch = _float64(method.drop_meta_faces(train.__getitems__(list(range(32)))))
    meta = _float64(method.next_meta_batch(torch.device("cpu")))
    method.stats.summary()  # reset
    base = method.forward_base(batch)
    method.meta_gradients(base, batch, meta, 0.5)
    logged = method.stats.summary()
    # g* by autograd: the meta loss's gradient at theta* = theta - alpha grad L_train(theta; w)
    params = dict(method.net.named_parameters())
    weights = {t: w.detach() for t, w in method.sample_weights(base.meta_inputs).items()}
    loss, _ = method.train_loss(base.outputs, batch, weights, base.entries)
    grads = torch.autograd.grad(loss, list(params.values()), retain_graph=True, allow_unused=True)
    fast = {n: (p - 0.5 * g).detach().requires_grad_() for (n, p), g in zip(params.items(), grads) if g is not None}
    g_star = dict(zip(fast, torch.autograd.grad(method.meta_loss(params, fast, meta), list(fast.values()), allow_unused=True)))
    flipped, labelled = batch["info"]["expr_flipped"].bool(), batch["mask"]["expr"].bool()
    assert bool((labelled & flipped).any()) and bool((labelled & ~flipped).any())
    alignment = []
    for i in range(len(flipped)):
        if labelled[i]:
            g_i = torch.autograd.grad(base.entries["expr"][i], list(params.values()), retain_graph=True, allow_unused=True)
            alignment.append(sum(float((a * g_star[n]).sum()) for n, a in zip(params, g_i)
                                 if a is not None and g_star.get(n) is not None))
    alignment = torch.tensor(alignment, dtype=torch.float64)
    corrupted = flipped[labelled]
    assert float(alignment.abs().max()) > 1e-6
    assert logged["align_expr_clean"] == pytest.approx(float(alignment[~corrupted].mean()), rel=1e-4)
    assert logged["align_expr_flipped"] == pytest.approx(float(alignment[corrupted].mean()), rel=1e-4)
    assert torch.equal(base.meta_inputs[:, 2:], torch.zeros(len(flipped), 2, dtype=torch.float64))  # no past visit yet
    standardized = (alignment - alignment.mean()) / alignment.std()
    assert torch.allclose(method.alignment_history.sums[batch["index"][labelled], 1, 1], standardized, atol=1e-4)
    assert torch.equal(method.alignment_history.sums[batch["index"], 1, 0], labelled.double())
    assert torch.allclose(method.forward_base(batch).meta_inputs[labelled, 3], standardized, atol=1e-4)  # the next visit reads it
    with pytest.raises(FacemtlError, match="alignment needs method.hypergradient=difference"):
        load_config(None, ["method.name=mal", "method.meta_input=alignment"])


def test_difference_hypergradient_under_autocast_uses_a_full_precision_reference():
    _, train, method = _mal("method.inner_lr=0.5", "method.hypergradient=difference")
    method.train()
    batch = method.drop_meta_faces(train.__getitems__(list(range(24))))
    meta = method.next_meta_batch(torch.device("cpu"))
    torch.manual_seed(1)
    _, exact = method.meta_gradients(method.forward_base(batch), batch, meta, 0.5)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # bf16 base losses would swamp the difference
        torch.manual_seed(1)
        _, mixed = method.meta_gradients(method.forward_base(batch), batch, meta, 0.5)
    exact, mixed = torch.cat([g.flatten() for g in exact]), torch.cat([g.flatten() for g in mixed])
    assert float(torch.nn.functional.cosine_similarity(exact, mixed, dim=0)) > 0.99  # far lower with the bf16 reference


@pytest.mark.parametrize("virtual_step,hypergradient", [("all", "autograd"), ("heads", "difference")])
def test_reduces_to_plain_multitask_when_psi_is_frozen_at_one(virtual_step, hypergradient):
    _, train, mal = _mal("method.meta_lr=0", f"method.virtual_step={virtual_step}",
                         f"method.hypergradient={hypergradient}")
    config, _, plain = _mal(name="plain")
    plain.net.load_state_dict(mal.net.state_dict())
    with torch.no_grad():  # meta-net outputs exactly 1 (sigmoid(40) rounds to 1 in float32)
        mal.meta_net.mlp[2].weight.zero_()
        mal.meta_net.mlp[2].bias.fill_(40.0)
    opt_mal, opt_plain = build_optimizer(mal, config.train), build_optimizer(plain, config.train)
    mal.train(), plain.train()
    for start in (0, 32):
        batch = train.__getitems__(list(range(start, start + 32)))
        logs = mal.train_step(batch, opt_mal)
        plain_logs = plain.train_step(mal.drop_meta_faces(batch), opt_plain)  # meta faces never enter base batches
        assert logs["loss"] == pytest.approx(plain_logs["loss"], rel=1e-6)
        assert logs["weight_expr"] == 1.0
    for key, value in plain.net.state_dict().items():
        assert torch.allclose(mal.net.state_dict()[key].float(), value.float(), atol=1e-6), key


def test_weights_apply_only_from_weight_from_epoch():
    """weight_from_epoch=1: the first epoch's real steps are plain multi-task steps while psi learns; the
    learned weights apply from the second epoch (the context has 3 steps per epoch)."""
    _, train, mal = _mal("method.weight_from_epoch=1", "method.meta_lr=0.01")
    config, _, plain = _mal(name="plain")
    plain.net.load_state_dict(mal.net.state_dict())
    psi = copy.deepcopy(mal.meta_net.state_dict())
    opt_mal, opt_plain = build_optimizer(mal, config.train), build_optimizer(plain, config.train)
    mal.train(), plain.train()
    for start in (0, 32, 64, 0):
        batch = train.__getitems__(list(range(start, start + 32)))
        logs = mal.train_step(batch, opt_mal)
        plain_logs = plain.train_step(mal.drop_meta_faces(batch), opt_plain)
        if int(mal.meta_steps) <= 3:
            assert logs["loss"] == pytest.approx(plain_logs["loss"], rel=1e-6)
            assert logs["weight_expr"] < 0.9  # the logs report the meta-net's weights, not the applied ones
    assert logs["loss"] < 0.9 * plain_logs["loss"]  # epoch 2: the weights (about 0.5, normalize: batch) apply
    assert any(not torch.equal(value, mal.meta_net.state_dict()[key]) for key, value in psi.items())


def test_sign_aligned_sample_gains_weight_anti_aligned_loses_it():
    """Two auxiliary samples, one whose gradient is the meta gradient and one its opposite."""
    u = torch.tensor([1.0, -2.0, 0.5])
    theta = torch.zeros(3, requires_grad=True)
    psi = torch.zeros(2, requires_grad=True)  # one weight logit per sample

    weights = torch.sigmoid(psi)
    per_sample = torch.stack([theta @ u, -(theta @ u)])  # gradients +u (aligned) and -u (anti-aligned)
    loss = weighted_task_loss(per_sample, torch.ones(2, dtype=torch.bool), weights)
    fast = virtual_sgd_step({"theta": theta}, loss, lr=0.1)["theta"]
    meta_loss = fast @ u  # validation gradient +u
    (grad,) = torch.autograd.grad(meta_loss, psi)
    new = torch.sigmoid(psi.detach() - 1.0 * grad)
    assert new[0] > weights[0] and new[1] < weights[1]


# -- meta set, options, trainer ------------------------------------------------------------
def test_meta_set_is_training_faces_never_in_base_batches():
    _, train, method = _mal()
    meta = set(method.meta_index.tolist())
    assert len(meta) == 16 and min(meta) >= 0 and max(meta) < len(train)
    batch = method.drop_meta_faces(train.__getitems__(list(range(len(train)))))
    assert len(batch["index"]) == len(train) - 16 and not meta & set(batch["index"].tolist())
    assert set(method.next_meta_batch(torch.device("cpu"))["index"].tolist()) <= meta
    with pytest.raises(FacemtlError, match="method.meta_size=500 needs more AU-labelled training faces"):
        _mal("method.meta_size=500")
    _, train, shared = _mal("method.meta_holdout=false")  # the same meta set, also trained on
    assert torch.equal(shared.meta_index, method.meta_index)
    assert len(shared.drop_meta_faces(train.__getitems__(list(range(len(train)))))["index"]) == len(train)


def test_heads_mode_steps_heads_and_last_stage_only():
    _, _, method = _mal("method.virtual_step=heads")
    assert last_stage_prefix(method.net) == "backbone.stages.1"
    assert method.virtual_names and all(n.startswith(("heads.", "backbone.stages.1.")) for n in method.virtual_names)
    assert not any(n.startswith("backbone.stages.0.") for n in method.virtual_names)


def _run_weights(path):
    return load_checkpoint(path).model_state


def test_resume_after_interrupt_is_exact(tmp_path, tiny_overrides, monkeypatch):
    overrides = tiny_overrides + TINY_MAL[5:] + ["train.checkpoint_every=1", "model.drop_rate=0.3", "data.label_noise=0.3",
                                                 "method.meta_input=feat+dynamics"]
    config = load_config(None, overrides)
    Trainer(config, tmp_path / "straight").fit()

    original, calls = MALMethod.train_step, {"n": 0}

    def dies(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 6:  # mid second epoch
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(MALMethod, "train_step", dies)
    with pytest.raises(KeyboardInterrupt):
        Trainer(config, tmp_path / "killed").fit()
    monkeypatch.setattr(MALMethod, "train_step", original)
    Trainer(config, tmp_path / "killed", resume=True).fit()

    straight, killed = _run_weights(tmp_path / "straight/checkpoints/last.safetensors"), _run_weights(tmp_path / "killed/checkpoints/last.safetensors")
    assert straight.keys() == killed.keys()
    assert {"meta_net.mlp.0.weight", "meta_optim.exp_avg_0", "meta_optim.steps", "meta_index", "label_confidence.sums"} <= set(straight)
    assert float(straight["label_confidence.sums"][..., 0].max()) == 2.0  # every face's two visits (2 epochs)
    assert int(straight["meta_optim.steps"]) == 8
    for key in straight:
        assert torch.equal(straight[key], killed[key]), key
    rows = [list(csv.DictReader((tmp_path / run / "log.csv").open())) for run in ("straight", "killed")]
    for a, b in zip(*rows, strict=True):
        a.pop("seconds"), b.pop("seconds")
        assert a == b
    assert rows[0][-1]["meta_size"] == "16.0" and float(rows[0][-1]["weight_expr_flipped"]) > 0


def test_checkpoints_from_before_the_removed_options_still_load():
    """States saved before `margin` and `history_by_label` left hold their (empty) buffers: they load;
    a non-empty one (the run used a removed option) is still refused."""
    _, _, method = _mal()
    state = method.state_dict()
    old = {**state, "label_margin.sums": torch.zeros(3, 0, 2, dtype=torch.float64), "face_expr_label": torch.zeros(0)}
    method.load_state_dict(old)
    with pytest.raises(RuntimeError, match="face_expr_label"):
        method.load_state_dict({**state, "face_expr_label": torch.zeros(96)})
