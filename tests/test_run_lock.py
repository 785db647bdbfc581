"""Run-folder lock: a second writer is refused naming the first; a dead writer's lock is taken over."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from facemtl.engine.run_lock import LOCK_NAME, RunLock, check_free, hold
from facemtl.errors import FacemtlError

# The holder subprocess loads run_lock.py by path: importing facemtl.engine would cost seconds of torch.
_HOLDER = """
import importlib.util, sys, time
spec = importlib.util.spec_from_file_location("run_lock", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
lock = module.RunLock(sys.argv[2])
lock.acquire()
print("locked", flush=True)
time.sleep(120)
"""


def test_second_writer_is_refused_naming_the_first(tmp_path):
    with RunLock(tmp_path / "run"):
        holder = json.loads((tmp_path / "run" / LOCK_NAME).read_text())
        assert holder["pid"] == os.getpid() and holder["started"]
        with pytest.raises(FacemtlError, match=rf"run is being written by pid {os.getpid()} \(.*started .*\); "
                                               "wait for it or choose another --out") as err:
            RunLock(tmp_path / "run").acquire()
        assert "\n" not in str(err.value)
        with pytest.raises(FacemtlError, match="being written by"):
            check_free(tmp_path / "run")
    assert not (tmp_path / "run" / LOCK_NAME).exists()  # released: the file goes with it
    check_free(tmp_path / "run")
    with RunLock(tmp_path / "run"):
        pass


def test_released_on_exception_and_disabled_for_other_ranks(tmp_path):
    with pytest.raises(RuntimeError), hold(tmp_path):
        raise RuntimeError("training failed")
    assert not (tmp_path / LOCK_NAME).exists()
    with hold(tmp_path, enabled=False):
        assert not (tmp_path / LOCK_NAME).exists()


def test_lock_of_a_killed_writer_is_taken_over_with_a_notice(tmp_path, capfd):
    from facemtl.engine import run_lock

    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, run_lock.__file__, str(tmp_path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(FacemtlError, match=f"pid {holder.pid} "):
            check_free(tmp_path)
    finally:
        holder.send_signal(signal.SIGKILL)  # no cleanup runs: the lock file stays behind
        holder.wait()
    assert (tmp_path / LOCK_NAME).is_file()
    check_free(tmp_path)  # the kernel dropped the dead writer's flock
    with RunLock(tmp_path):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    err = capfd.readouterr().err
    assert f"taking over the lock of pid {holder.pid}" in err and err.count("\n") == 1


def test_garbled_lock_file_is_taken_over(tmp_path):
    (tmp_path / LOCK_NAME).write_text("{half")  # a writer killed while writing it
    with RunLock(tmp_path):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()


def test_trainer_refuses_a_live_folder_before_loading_data_and_resumes_after_a_crash(tmp_path, tiny_overrides, capfd):
    from facemtl.cli import main
    from facemtl.config import load_config
    from facemtl.engine import Trainer

    run = tmp_path / "run"
    config = load_config(None, [*tiny_overrides, "train.epochs=1"])
    with RunLock(run):
        sets = [arg for override in tiny_overrides for arg in ("--set", override)]
        assert main(["demo", "--out", str(run), *sets]) == 2  # before any data is built
        err = capfd.readouterr().err.strip()
        assert err.startswith(f"facemtl: error: {run} is being written by pid {os.getpid()}") and "\n" not in err
    Trainer(config, run).fit()
    assert not (run / LOCK_NAME).exists()
    # a writer killed -9 leaves its lock file; --resume takes it over
    (run / LOCK_NAME).write_text(json.dumps({"pid": 999_999_999, "command": "facemtl train", "started": "then"}))
    config = load_config(None, [*tiny_overrides, "train.epochs=2"])
    Trainer(config, run, resume=True).fit()
    assert "taking over the lock of pid 999999999 (facemtl train, started then)" in capfd.readouterr().err
    assert not (run / LOCK_NAME).exists() and Path(run / "metrics.json").is_file()
