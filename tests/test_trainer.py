"""The trainer: run folder, best-on-validation selection, exact resume after a kill."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import interrupt_then_resume

from facemtl.config import load_config
from facemtl.data.sampling import epoch_batches
from facemtl.engine import Trainer, load_checkpoint, selection_score
from facemtl.engine.trainer import lr_factor
from facemtl.errors import FacemtlError


def _weights(path):
    return load_checkpoint(path).model_state


def _assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_run_folder_and_metrics(tmp_path, tiny_overrides):
    config = load_config(None, tiny_overrides)
    results = Trainer(config, tmp_path / "run").fit()
    run = tmp_path / "run"
    for name in ("config.yaml", "label_spaces.json", "log.csv", "metrics.json", "checkpoints/best.safetensors", "checkpoints/last.safetensors"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(results))
    test = metrics["test"]
    assert {"accuracy", "macro_f1", "confusion_matrix"} <= set(test["expr"])
    assert set(test["au"]["f1"]) >= {"AU1", "AU12"} and "f1_mean" in test["au"]
    assert {"ccc_valence", "ccc_arousal", "ccc_mean"} <= set(test["va"])
    assert {"nme", "failure_rate"} <= set(test["lmk"])
    assert set(test["attr"]) == {"gender", "smile", "glasses", "pose"}
    rows = list(csv.DictReader((run / "log.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    # The best checkpoint is the epoch with the best *validation* score.
    best = max(rows, key=lambda r: float(r["val_score"]))
    assert metrics["best_epoch"] == int(best["epoch"])
    best = load_checkpoint(run / "checkpoints/best.safetensors")
    assert best.optimizer_state is None
    template = best.preprocess["template_5pt"]
    assert best.preprocess["image_size"] == 32 and len(template) == 5
    assert template[0][0] < template[1][0] and template[3][0] < template[4][0]  # image-left eye / mouth corner first
    assert template[0][1] < template[2][1] < template[3][1]  # eyes above nose above mouth


def test_select_tasks_scores_only_those_tasks():
    """train.select_tasks: the best checkpoint follows the chosen tasks' validation scores alone."""
    val = {"expr": {"macro_f1": 0.9}, "au": {"f1_mean": 0.3}, "lmk": {"nme": 0.1}}
    assert selection_score(val) == pytest.approx((0.9 + 0.3 + 0.9) / 3)
    assert selection_score(val, ["au"]) == pytest.approx(0.3)
    assert selection_score(val, ["au", "lmk"]) == pytest.approx(0.6)


def test_trainer_picks_the_best_checkpoint_on_select_tasks(tmp_path, tiny_overrides):
    config = load_config(None, tiny_overrides + ["model.tasks=[au,expr]", "train.select_tasks=[au]"])
    metrics = Trainer(config, tmp_path / "run").fit()
    rows = list(csv.DictReader((tmp_path / "run" / "log.csv").open()))
    assert all(float(r["val_score"]) == pytest.approx(float(r["val_au"])) for r in rows)
    assert any(float(r["val_score"]) != pytest.approx((float(r["val_au"]) + float(r["val_expr"])) / 2) for r in rows)
    assert metrics["best_epoch"] == int(max(rows, key=lambda r: float(r["val_au"]))["epoch"])


def test_existing_run_needs_resume(tmp_path, tiny_overrides):
    config = load_config(None, tiny_overrides + ["train.epochs=1"])
    Trainer(config, tmp_path / "run").fit()
    with pytest.raises(FacemtlError, match="already holds a run; add --resume"):
        Trainer(config, tmp_path / "run")
    with pytest.raises(FacemtlError, match="no .*last.safetensors to resume from"):
        Trainer(config, tmp_path / "other", resume=True)
    with pytest.raises(FacemtlError, match="output folder is empty"):
        Trainer(config, "")


@pytest.mark.parametrize("method", [
    ["method.name=plain"],
    ["method.name=scn", "method.relabel_epoch=1", "data.label_noise=0.3"],  # relabels and stats are state
    ["method.name=dacl", "method.ce_unit_widths=[16,8,4]"],  # centres (own update) and attention net
])
def test_resume_after_interrupt_is_exact(tmp_path, tiny_overrides, monkeypatch, method):
    overrides = tiny_overrides + ["train.checkpoint_every=1", "model.drop_rate=0.3"] + method
    config = load_config(None, overrides)
    Trainer(config, tmp_path / "straight").fit()

    interrupt_then_resume(config, tmp_path / "killed", monkeypatch, at_call=6)  # mid second epoch (4 steps each)

    _assert_same_weights(_weights(tmp_path / "straight/checkpoints/last.safetensors"), _weights(tmp_path / "killed/checkpoints/last.safetensors"))
    straight = list(csv.DictReader((tmp_path / "straight/log.csv").open()))
    resumed = list(csv.DictReader((tmp_path / "killed/log.csv").open()))
    for a, b in zip(straight, resumed, strict=True):
        a.pop("seconds"), b.pop("seconds")
        assert a == b


def test_resume_after_sigkill(tmp_path, tiny_overrides):
    """A real ``kill -9`` of ``facemtl train`` mid-run loses nothing."""
    # Same thread count in both processes: float reductions are ordered by it.
    overrides = tiny_overrides + ["train.checkpoint_every=1", "train.epochs=3", "train.threads=1"]
    straight = tmp_path / "straight"
    Trainer(load_config(None, overrides), straight).fit()

    killed = tmp_path / "killed"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("method:\n  name: plain\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "facemtl", "train", str(recipe), "--out", str(killed)] + [a for o in overrides for a in ("--set", o)],
        env=dict(os.environ, PYTHONUNBUFFERED="1"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    last = killed / "checkpoints/last.safetensors"
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        if last.is_file() and load_checkpoint(last).trainer_state.get("step", 0) >= 6:
            break
        time.sleep(0.05)
    assert process.poll() is None, process.stderr.read().decode()
    process.send_signal(signal.SIGKILL)
    process.wait()
    Trainer(load_config(None, overrides), killed, resume=True).fit()
    _assert_same_weights(_weights(straight / "checkpoints/last.safetensors"), _weights(last))
    # Same final metrics (best checkpoint, val and test) as the run never killed.
    assert json.loads((killed / "metrics.json").read_text()) == json.loads((straight / "metrics.json").read_text())


def test_epoch_batches_deterministic_and_complete():
    first = epoch_batches(100, 32, seed=1, epoch=0)
    assert first == epoch_batches(100, 32, seed=1, epoch=0)
    assert first != epoch_batches(100, 32, seed=1, epoch=1)
    assert [len(b) for b in first] == [32, 32, 32]  # partial batch dropped
    assert len({i for b in first for i in b}) == 96
    assert epoch_batches(10, 32, seed=0, epoch=0)[0].__len__() == 10  # tiny dataset: one batch


def test_lr_schedule():
    config = load_config(None, ["train.epochs=10", "train.warmup_epochs=1", "train.scheduler=cosine"]).train
    assert lr_factor(0, 10, config) == pytest.approx(0.1)
    assert lr_factor(10, 10, config) == pytest.approx(1.0)
    assert lr_factor(99, 10, config) < 0.01
    step = load_config(None, ["train.scheduler=step", "train.step_epochs=2", "train.gamma=0.5", "train.warmup_epochs=0"]).train
    assert [lr_factor(s, 10, step) for s in (0, 19, 20, 45)] == [1.0, 1.0, 0.5, 0.25]
