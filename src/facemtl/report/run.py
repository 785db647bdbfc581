"""What a report is made of: a finished run folder (metrics, config, training log) or an evaluated checkpoint."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facemtl.engine.checkpoint_eval import evaluate_checkpoint
from facemtl.errors import FacemtlError
from facemtl.io.checkpoint import BASE_NAME
from facemtl.registry import TASK_SPECS, ordered_tasks

REPORT_DIR = "report"


@dataclass
class RunData:
    """What a finished run folder holds, read once."""

    run_dir: Path
    metrics: dict[str, Any]
    config: dict[str, Any]
    log: list[dict[str, float]]

    @property
    def splits(self) -> list[str]:
        return [s for s in ("val", "test") if isinstance(self.metrics.get(s), dict)]

    @property
    def split(self) -> str:
        """The split the per-split plots show: test when the run has one."""
        return "test" if "test" in self.splits else "val"

    @property
    def tasks(self) -> list[str]:
        return list(ordered_tasks([t for s in self.splits for t in self.metrics[s] if t in TASK_SPECS]))


def load_run(run_dir: str | Path, overrides: Sequence[str] = ()) -> RunData:
    """Read ``metrics.json``, ``config.yaml`` and ``log.csv`` of a run folder; a checkpoint file or
    ``facemtl_base`` is evaluated instead (:func:`~facemtl.engine.checkpoint_eval.evaluate_checkpoint`,
    ``overrides`` applied), and has no training curves.

    Raises:
        FacemtlError: if the folder or its ``metrics.json`` is missing or unreadable, or a
            checkpoint's data cannot be read.
    """
    import yaml

    if str(run_dir) == BASE_NAME or Path(run_dir).is_file():
        metrics, checkpoint = evaluate_checkpoint(str(run_dir), overrides)
        return RunData(checkpoint.path, metrics, checkpoint.config, [])
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FacemtlError(f"run folder {run_dir} does not exist")
    path = run_dir / "metrics.json"
    if not path.is_file():
        raise FacemtlError(f"{run_dir}: no metrics.json; a report needs a finished run (facemtl train ... --out {run_dir})")
    try:
        metrics = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise FacemtlError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(metrics, dict) or not any(isinstance(metrics.get(s), dict) for s in ("val", "test")):
        raise FacemtlError(f"{path}: expected a 'val' and/or 'test' entry of metrics per task")
    config_path = run_dir / "config.yaml"
    config = yaml.safe_load(config_path.read_text()) if config_path.is_file() else {}
    return RunData(run_dir, metrics, config or {}, _read_log(run_dir / "log.csv"))


def default_out(run: RunData) -> Path:
    """Where a report goes by default: ``RUN_DIR/report``, or ``<name>-report/`` here for a checkpoint."""
    if run.run_dir.is_file():  # a checkpoint, maybe inside the installed package: write beside the user
        return Path(f"{run.run_dir.stem}-{REPORT_DIR}")
    return run.run_dir / REPORT_DIR


def _read_log(path: Path) -> list[dict[str, float]]:
    if not path.is_file():
        return []
    rows = []
    with path.open(newline="") as handle:
        for raw in csv.DictReader(handle):
            row = {}
            for key, value in raw.items():
                try:
                    row[key] = float(value)
                except (TypeError, ValueError):  # empty cells of columns an epoch did not log
                    continue
            if "epoch" in row:
                rows.append(row)
    return rows
