"""Distributed training: 2 CPU processes (torchrun, gloo) reproduce a 1-process run; speed options train.

The runs use timm's ``test_convnext`` backbone: it has no batch statistics (LayerNorm), so
a 2-process step computes the single-process gradient up to the order of float sums, and
the tolerances can be tight (1e-4; measured differences are ~1e-6). With BatchNorm each
process would normalise its half batch by its own statistics (``train.sync_bn`` fixes
that on CUDA only) and runs differ by ~1e-2: a tolerance that loose could not tell a
broken gradient average from a working one. Each synthetic face carries every label, so
the mean of the two processes' masked losses is the global batch's mean.
"""

import csv
import gc
import json
import math
import os
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist

from facemtl.cli import main
from facemtl.config import load_config
from facemtl.distributed import gather_cat, mean_logs, shard_batches, world_size, wrap_training_step
from facemtl.engine import Trainer, load_checkpoint
from facemtl.errors import FacemtlError
from facemtl.methods.base import Method

# SCN with relabelling from epoch 1 on noisy labels: the gathered rank regulariser and
# relabel decisions are exercised, not only the plain gradient average.
DDP_RUN = [
    "data.num_train=128", "data.num_val=32", "data.num_test=32", "data.image_size=32", "data.label_noise=0.3",
    "model.backbone=test_convnext", "method.name=scn", "method.relabel_epoch=1", "method.margin_1=0.5", "method.margin_2=0.05",
    "train.epochs=2", "train.batch_size=32", "train.warmup_epochs=0", "train.eval_batch_size=32",
    "train.progress=false", "train.threads=1", "train.checkpoint_every=1",
]
TOL = 1e-4


def _torchrun(out, overrides, resume=False):
    """``python -m torch.distributed.run --standalone --nproc_per_node=2 -m facemtl train ...``."""
    recipe = out.parent / "recipe.yaml"
    recipe.write_text("{}\n")  # everything comes from the overrides (or, resuming, from the checkpoint)
    sets = [part for o in overrides for part in ("--set", o)]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "facemtl", "train", str(recipe), "--out", str(out), *(["--resume"] if resume else []), *sets]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done


def _assert_same_run(one, two):
    """Same per-epoch logs, metrics and final weights (SCN's relabels exactly) within TOL."""
    rows_one = list(csv.DictReader((one / "log.csv").open()))
    rows_two = list(csv.DictReader((two / "log.csv").open()))
    assert len(rows_one) == len(rows_two) == 2
    for a, b in zip(rows_one, rows_two):
        assert a.keys() == b.keys()
        for key in a.keys() - {"seconds"}:
            assert float(a[key]) == pytest.approx(float(b[key]), rel=TOL, abs=TOL), key
    _assert_close(json.loads((one / "metrics.json").read_text()), json.loads((two / "metrics.json").read_text()), "")
    w_one = load_checkpoint(one / "checkpoints/last.safetensors").model_state
    w_two = load_checkpoint(two / "checkpoints/last.safetensors").model_state
    assert w_one.keys() == w_two.keys()
    for key in w_one:
        assert torch.allclose(w_one[key].double(), w_two[key].double(), atol=TOL), key
    assert torch.equal(w_one["relabels"], w_two["relabels"])
    assert int((w_one["relabels"] >= 0).sum()) > 0  # relabelling happened: the check above is not vacuous
    assert float(rows_one[0]["train_loss_rr"]) > 0  # so did the gathered rank regulariser's gradient


def _assert_close(a, b, where):
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_close(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_close(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), where
    else:
        assert a == pytest.approx(b, rel=TOL, abs=TOL), where


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """The 1-process reference run (in this process)."""
    out = tmp_path_factory.mktemp("single") / "run"
    Trainer(load_config(None, DDP_RUN), out).fit()
    return out


def test_two_processes_match_one_process(single, tmp_path):
    done = _torchrun(tmp_path / "two", DDP_RUN)
    assert done.stdout.count("run folder:") == 1  # only rank 0 reports
    names = {str(p.relative_to(tmp_path / "two")) for p in (tmp_path / "two").rglob("*")}
    assert names == {"config.yaml", "label_spaces.json", "log.csv", "metrics.json", "predictions.png", "checkpoints",
                     "checkpoints/best.safetensors", "checkpoints/last.safetensors"}  # one writer: no leftovers
    _assert_same_run(single, tmp_path / "two")


def test_resume_with_two_processes(single, tmp_path, monkeypatch):
    """A 1-process run killed mid-epoch, resumed by 2 processes, ends as the uninterrupted run."""
    original, calls = Method.train_step, {"n": 0}

    def dies(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 6:  # mid second epoch (4 steps each)
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Method, "train_step", dies)
    with pytest.raises(KeyboardInterrupt):
        Trainer(load_config(None, DDP_RUN), tmp_path / "run").fit()
    assert load_checkpoint(tmp_path / "run/checkpoints/last.safetensors").trainer_state["step"] == 5
    _torchrun(tmp_path / "run", [], resume=True)  # the run's own config comes from its checkpoint
    _assert_same_run(single, tmp_path / "run")


def test_mal_training_dynamics_cover_every_processs_faces(tmp_path):
    """MAL's per-face label-confidence histories gather both processes' faces: after one epoch on 2
    processes, the checkpoint (rank 0's) has one visit of every face, not only of rank 0's half."""
    mal = [o for o in DDP_RUN if not o.startswith(("method.", "train.epochs"))] + [
        "method.name=mal", "method.meta_input=dynamics", "method.meta_size=16", "method.meta_batch_size=8",
        "method.meta_holdout=false", "model.tasks=[au,expr]", "train.epochs=1"]
    _torchrun(tmp_path / "mal", mal)
    visits = load_checkpoint(tmp_path / "mal/checkpoints/last.safetensors").model_state["label_confidence.sums"][..., 0]
    assert visits.shape == (128, 2)
    assert torch.equal(visits, torch.ones_like(visits))


def test_shard_batches_split_each_global_batch():
    batches = [[5, 1, 7, 3, 9], [2, 8, 0, 6, 4]]
    parts = [shard_batches(batches, rank_, 2) for rank_ in (0, 1)]
    assert parts[0] == [[5, 7, 9], [2, 0, 4]] and parts[1] == [[1, 3], [8, 6]]  # strided: every task's sub-batch is shared
    for step, batch in enumerate(batches):
        assert sorted(parts[0][step] + parts[1][step]) == sorted(batch)
    assert shard_batches(batches, 0, 1) == batches
    with pytest.raises(FacemtlError, match="batch of 1 samples cannot be split over 2 processes"):
        shard_batches([[3]], 0, 2)


def test_single_process_helpers_are_identities():
    assert world_size() == 1
    x = torch.randn(4, 3, requires_grad=True)
    assert gather_cat(x, grad=True) is x
    assert mean_logs({"loss": 1.5}) == {"loss": 1.5}


def test_close_releases_ddp_before_leaving_the_group(tmp_path, tiny_overrides):
    """DDP and the method reference each other; left to the last garbage collection, the gloo group
    outlived destroy_process_group and a finished run could abort at exit."""
    import weakref

    trainer = Trainer(load_config(None, tiny_overrides), tmp_path / "run")
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    gc.disable()  # freed by reference counting, not by a collection that may never come before exit
    try:
        trainer.ddp_step = trainer.forward = wrap_training_step(trainer.method, trainer.device)
        ddp = weakref.ref(trainer.ddp_step.ddp)
        trainer.close()
        assert ddp() is None
        assert not dist.is_initialized()
        assert not {"training_step", "forward"} & set(vars(trainer.method))  # the method was never rebound
    finally:
        gc.enable()
        if dist.is_initialized():
            dist.destroy_process_group()


def test_nproc_relaunches_through_torchrun(monkeypatch):
    seen = {}

    def call(command):
        seen["command"] = command
        return 3

    monkeypatch.setattr(subprocess, "call", call)
    code = main(["train", "recipe.yaml", "--out", "runs/x", "--nproc", "2", "--resume", "--set", "train.epochs=1"])
    assert code == 3  # the launcher's exit status is ours
    assert seen["command"] == [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "facemtl", "train", "recipe.yaml", "--out", "runs/x", "--resume", "--set", "train.epochs=1",
    ]
    assert main(["train", "recipe.yaml", "--out", "runs/x", "--nproc", "0"]) == 2
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["train", "recipe.yaml", "--out", "runs/x", "--nproc", "2"]) == 2  # already under torchrun


@pytest.mark.parametrize("option", ["train.amp=bf16", "train.channels_last=true", "train.compile=true"])
def test_speed_option_trains_on_cpu(tmp_path, tiny_overrides, monkeypatch, option):
    overrides = tiny_overrides + ["train.epochs=1", "data.num_train=64", "train.threads=1"]
    compiled = []
    original_compile = torch.nn.Module.compile

    def eager_compile(module, *args, **kwargs):  # dynamo's tracing without inductor's minutes of C++ builds
        compiled.append(type(module).__name__)
        return original_compile(module, *args, **{**kwargs, "backend": "eager"})

    monkeypatch.setattr(torch.nn.Module, "compile", eager_compile)
    trainer = Trainer(load_config(None, overrides + [option]), tmp_path / "run")
    before = {k: v.clone() for k, v in trainer.method.state_dict().items()}
    trainer.fit()
    rows = list(csv.DictReader((tmp_path / "run/log.csv").open()))
    assert math.isfinite(float(rows[0]["train_loss"]))
    after = load_checkpoint(tmp_path / "run/checkpoints/last.safetensors").model_state
    assert after.keys() == before.keys()  # checkpoints load into a model built without the option
    assert any(not torch.equal(before[k], after[k]) for k in before if before[k].is_floating_point())
    assert compiled == (["MultiTaskNet"] if option == "train.compile=true" else [])
