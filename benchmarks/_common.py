"""Shared pieces of the effect benchmarks: one training run in a worker, parallel jobs, mean ± std."""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import tempfile
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

from facemtl.config import load_config
from facemtl.engine import Trainer
from facemtl.methods import Method


def train_run(
    overrides: list[str],
    inspect: Callable[[Trainer, dict, list[dict]], dict] | None = None,
    method_class: type[Method] | None = None,
    datasets: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Train one config in a temporary folder (one thread); return test metrics, log rows and ``inspect``'s extras.

    ``inspect(trainer, metrics, rows)`` runs before the folder is deleted, with the best
    checkpoint's weights loaded, to measure whatever the benchmark needs. ``method_class``: a
    benchmark-local :class:`~facemtl.methods.Method` subclass trained instead of the registered
    ``method.name`` (whose config section it takes); ``datasets``: splits built once and reused
    (``{"train", "val", "test"}``), None builds them from the config.
    """
    torch.set_num_threads(1)  # workers run side by side: one core each
    with tempfile.TemporaryDirectory() as folder:
        config = load_config(None, overrides + ["train.progress=false"])
        trainer = Trainer(config, Path(folder) / "run", datasets=datasets, method_class=method_class)
        metrics = trainer.fit()
        rows = list(csv.DictReader((Path(folder) / "run" / "log.csv").open()))
        extra = inspect(trainer, metrics, rows) if inspect else {}
    return {"test": metrics["test"], "rows": rows, **extra}


def run_parallel(function: Callable[[dict], dict], jobs: list[dict], workers: int) -> list[dict]:
    """``[function(job) for job in jobs]``, ``workers`` processes at a time."""
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(function, jobs))


def mean_std(values: list[float], scale: float = 1.0) -> str:
    """``"mean ± std"`` over seeds (std 0 for one value), or "-" for none."""
    if not values:
        return "-"
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{scale * statistics.mean(values):.2f} ± {scale * spread:.2f}"


def add_difficulty_argument(parser: argparse.ArgumentParser) -> None:
    """``--difficulty``: the synthetic benchmark's nuisance level (``data.difficulty``)."""
    parser.add_argument("--difficulty", type=float, default=1.0,
                        help="synthetic nuisances (clutter, blur, pose, occluders); lower = faces a small net can fit")


def add_merge_argument(parser: argparse.ArgumentParser) -> None:
    """``--merge A.json B.json ...``: tabulate runs written by separate processes (one per seed or core)."""
    parser.add_argument("--merge", nargs="+", metavar="JSON", help="print (and --json) the table of these runs' results; trains nothing")


def merged_results(paths: list[str], key: str) -> list[dict[str, Any]]:
    """The per-run records under ``key`` of every ``--json`` file in ``paths``, in order."""
    return [record for path in paths for record in json.loads(Path(path).read_text())[key]]
