"""Deng et al.: VA bins, distillation terms, the student method, ensembles, and the CLI end to end."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from facemtl.config import load_config
from facemtl.data import build_datasets
from facemtl.engine.ensemble import Ensemble, tune_au_thresholds
from facemtl.engine.trainer import build_method
from facemtl.errors import FacemtlError
from facemtl.io.checkpoint import save_checkpoint
from facemtl.losses.distill import au_distill, kl_distill
from facemtl.losses.va import va_expectation
from facemtl.methods import TrainContext
from facemtl.methods.distill import load_net
from facemtl.va_bins import digitize_va, va_bin_values

TASKS = "model.tasks=au,expr,va"


def test_digitize_edge_cases():
    y = torch.tensor([-1.0, -0.95, 0.0, 0.999, 1.0])
    assert digitize_va(y).tolist() == [0, 0, 10, 19, 19]


def test_expectation_of_uniform_and_one_hot():
    values = va_bin_values(20, "code", torch.float64)
    assert abs(float(va_expectation(torch.zeros(20, dtype=torch.float64), values))) < 1e-12
    one_hot = torch.full((20,), -1e4, dtype=torch.float64)
    one_hot[19] = 0.0
    assert float(va_expectation(one_hot, values)) == pytest.approx(1.0)
    centres = va_bin_values(20, "centres", torch.float64)
    assert centres[0] == pytest.approx(-0.95) and centres[19] == pytest.approx(0.95)
    assert float(va_expectation(one_hot, centres)) == pytest.approx(0.95)


def test_distillation_terms_at_identical_logits():
    torch.manual_seed(0)
    logits = torch.randn(5, 7)
    assert kl_distill(logits, logits).abs().max() < 1e-6
    assert kl_distill(torch.randn(5, 2, 20), torch.randn(5, 2, 20)).min() > 0
    va = torch.randn(5, 2, 20)
    assert kl_distill(va, va).abs().max() < 1e-6
    au = torch.randn(5, 8)
    p = torch.sigmoid(au)
    entropy = -(p * p.log() + (1 - p) * (1 - p).log()).mean(1)
    assert torch.allclose(au_distill(au, au), entropy, atol=1e-6)
    assert torch.allclose(kl_distill(va, va * 2, t_squared=True), kl_distill(va, va * 2) * 1.5**2)


@pytest.fixture(scope="module")
def teacher_path(tmp_path_factory):
    """A (random) plain-method teacher checkpoint with binned VA."""
    from conftest import TINY

    torch.manual_seed(0)
    config = load_config(None, TINY + [TASKS, "model.va_bins=20"])
    val = build_datasets(config.data, splits=("val",))["val"]
    method = build_method(config, val.label_spaces, TrainContext(64, 1, 1))
    path = tmp_path_factory.mktemp("teacher") / "teacher.safetensors"
    save_checkpoint(path, method.state_dict(), config_yaml=config.to_yaml(), label_spaces=val.label_spaces, tasks=method.net.tasks)
    return path


def _student(teacher_path, tiny_overrides, *extra):
    torch.manual_seed(1)
    config = load_config(None, tiny_overrides + [TASKS, "model.va_bins=20", "method.name=distill",
                                                 f"method.teacher={teacher_path}", "method.va_loss=ccc", *extra])
    val = build_datasets(config.data, splits=("val",))["val"]
    return build_method(config, val.label_spaces, TrainContext(64, 1, 1)), val


def test_binned_va_head_keeps_continuous_output(teacher_path, tiny_overrides):
    student, val = _student(teacher_path, tiny_overrides)
    out = student.net(val.__getitems__(list(range(6)))["image"])
    assert out["va"].shape == (6, 2) and out["va_logits"].shape == (6, 2, 20)
    assert out["va"].abs().max() <= 1.0


def test_lambda_teacher_extremes(teacher_path, tiny_overrides):
    student, val = _student(teacher_path, tiny_overrides, "method.lambda_teacher=0.0")
    batch = val.__getitems__(list(range(16)))  # validation: every face labelled for every task
    student.train()
    plain = student.combine(student.task_losses(student.net(batch["image"]), batch))["loss"].detach()
    assert float(student.training_step(batch)["loss"].detach()) == pytest.approx(float(plain), rel=1e-5)
    student.config.lambda_teacher = 1.0
    changed = {**batch, "labels": {**batch["labels"], "expr": (batch["labels"]["expr"] + 1) % 7,
                                   "au": 1 - batch["labels"]["au"], "va": -batch["labels"]["va"]}}
    assert float(student.training_step(batch)["loss"].detach()) == pytest.approx(float(student.training_step(changed)["loss"].detach()), rel=1e-5)


def test_teacher_is_frozen_and_not_saved(teacher_path, tiny_overrides):
    student, val = _student(teacher_path, tiny_overrides)
    optimizer = torch.optim.SGD([p for p in student.parameters()], lr=0.1)
    student.train_step(val.__getitems__(list(range(16))), optimizer)
    teacher = student.teacher
    assert not teacher.training and all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    assert all(k.startswith("net.") for k in student.state_dict())
    assert len(student.state_dict()) == len(load_net(str(teacher_path)).state_dict())


def test_teacher_label_spaces_are_compared_on_distilled_tasks_only(teacher_path, tiny_overrides):
    student, _ = _student(teacher_path, tiny_overrides)
    teacher = load_net(str(teacher_path))
    # A teacher from a dataset without attributes still teaches expression, AU and VA...
    teacher.label_spaces = dataclasses.replace(teacher.label_spaces, attributes={})
    student._check_teacher(teacher)
    # ...but one whose expression classes are in another order would teach the wrong classes.
    classes = teacher.label_spaces.expr_classes
    teacher.label_spaces = dataclasses.replace(teacher.label_spaces, expr_classes=(classes[1], classes[0], *classes[2:]))
    with pytest.raises(FacemtlError, match="its expr labels"):
        student._check_teacher(teacher)


def test_missing_teacher_is_a_one_line_error(tiny_overrides):
    with pytest.raises(FacemtlError, match="method.teacher"):
        _student("", tiny_overrides)


def test_ensemble_averages_and_tunes_thresholds(teacher_path, tiny_overrides):
    net = load_net(str(teacher_path))
    _, val = _student(teacher_path, tiny_overrides)
    images = val.__getitems__(list(range(8)))["image"]
    with torch.no_grad():
        single = net(images)
    twice = Ensemble([net, load_net(str(teacher_path))]).predict(images)
    assert torch.allclose(torch.sigmoid(twice["au"]), torch.sigmoid(single["au"]), atol=1e-5)
    assert torch.equal(twice["expr"].argmax(1), single["expr"].argmax(1))
    assert torch.allclose(twice["va"], single["va"], atol=1e-6)
    mode = Ensemble([net], va_mode="mode").predict(images)["va"]
    values = net.heads["va"].values
    assert torch.equal(mode, values[single["va_logits"].argmax(-1)])
    thresholds = tune_au_thresholds(Ensemble([net]), val, torch.device("cpu"))
    assert set(thresholds) == {"break_even", "f1"} and len(thresholds["f1"]) == len(val.label_spaces.au_names)


def test_cli_teacher_students_ensemble_eval(tmp_path, capsys):
    """The whole recipe from the command line on a tiny three-source split (one task each)."""
    from test_sampling import _only

    from facemtl.cli import main

    sources = [f"{{name: synthetic, seed: {i + 1}, label_fraction: {_only(t)}}}" for i, t in enumerate(("au", "expr", "va"))]
    tiny = ["data.num_train=48", "data.num_val=24", "data.num_test=24", "data.image_size=32", "model.backbone=test_tiny",
            "train.epochs=1", "train.batch_size=8", "train.progress=false", "train.eval_batch_size=64",
            f"data.mix.sources=[{', '.join(sources)}]"]
    args = [item for o in tiny for item in ("--set", o)]
    teacher = tmp_path / "teacher"
    assert main(["train", "configs/distill_synthetic_teacher.yaml", "--out", str(teacher), *args]) == 0
    out = tmp_path / "students"
    assert main(["distill", "configs/distill_synthetic_student.yaml", "--teacher", str(teacher),
                 "--students", "2", "--out", str(out), *args]) == 0
    spec = json.loads((out / "ensemble.json").read_text())
    assert len(spec["members"]) == 2 and len(spec["au_thresholds"]["break_even"]) > 0
    seeds = [load_config(out / f"student{i}" / "config.yaml").train.seed for i in range(2)]
    assert seeds[0] != seeds[1]
    capsys.readouterr()
    result = tmp_path / "ensemble_eval.json"
    assert main(["eval", "--checkpoint", str(out / "ensemble.json"), "--out", str(result)]) == 0
    assert "abaw_score" in capsys.readouterr().out
    evaluated = json.loads(result.read_text())
    assert evaluated["test"] == json.loads((out / "metrics.json").read_text())["test"]
    assert set(evaluated["test"]) == {"au", "expr", "va"} and np.isfinite(evaluated["test"]["va"]["ccc_mean"])
