"""The command line as a user runs it: train, eval, list, and one-line errors."""

import json

import pytest

from facemtl.cli import main


def _set(overrides):
    return [arg for o in overrides for arg in ("--set", o)]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    from conftest import TINY

    run = tmp_path_factory.mktemp("cli") / "run"
    assert main(["demo", "--out", str(run)] + _set(TINY)) == 0
    return run


def test_demo_writes_metrics_in_documented_shape(trained_run, capsys):
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert set(metrics) >= {"val", "test"}
    assert set(metrics["test"]) == {"expr", "au", "va", "lmk", "attr"}
    assert (trained_run / "config.yaml").is_file() and (trained_run / "checkpoints/best.safetensors").is_file()


def test_eval_reproduces_the_runs_test_metrics(trained_run, tmp_path, capsys):
    out = tmp_path / "eval.json"
    assert main(["eval", "--checkpoint", str(trained_run), "--out", str(out)]) == 0
    table = capsys.readouterr().out
    assert "macro_f1" in table and "ccc_mean" in table
    evaluated = json.loads(out.read_text())
    stored = json.loads((trained_run / "metrics.json").read_text())
    assert evaluated["test"] == stored["test"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["eval", "--checkpoint", "{run}", "--set", "model.tasks=expr,au"], "trained for tasks"),
        (["eval", "--checkpoint", "{run}/nothing"], "does not exist"),
        (["eval", "--checkpoint", "{run}", "--set", "train.lrr=1"], "unknown key train.lrr"),
        (["train", "{run}/missing.yaml", "--out", "{run}/x"], "config file .*missing.yaml does not exist"),
        (["train", "{run}/config.yaml", "--out", "{run}"], "already holds a run; add --resume"),
        (["train", "{run}/config.yaml", "--out", ""], "output folder is empty"),
        (["demo", "--out", "{run}/y", "--set", "model.backbone=nonet"], "unknown backbone 'nonet'"),
        (["demo", "--out", "{run}/y", "--set", "data.name=affectnut"], "unknown dataset 'affectnut'; valid datasets: .*affectnet.*synthetic"),
    ],
)
def test_user_errors_are_one_line(trained_run, capsys, argv, message):
    import re

    argv = [a.replace("{run}", str(trained_run)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("facemtl: error: ") and "\n" not in err and "Traceback" not in err
    assert re.search(message, err), err


def test_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "tiny" in out and "plain" in out and "synthetic" in out
