"""Run a model over a dataset and compute each enabled task's metrics."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from facemtl import distributed
from facemtl.data.dataset import FaceDataset, already_batched, move_batch
from facemtl.labels import LabelSpaces
from facemtl.registry import TASK_SPECS, ordered_tasks
from facemtl.tasks import spec

Predictor = Callable[[torch.Tensor], dict[str, Any]]


def collect_predictions(
    predict: Predictor,
    dataset: FaceDataset,
    tasks: tuple[str, ...],
    device: torch.device,
    batch_size: int = 256,
    indices: list[int] | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """Predictions, labels and masks per task, as numpy arrays over the dataset (or ``indices`` of it).

    Returns:
        ``{task: {"pred": ..., "label": ..., "mask": ...}}`` where ``pred`` is class ids for
        ``expr``/``attr``, probabilities for ``au``, values for ``va`` and ``lmk``.
    """
    order = list(range(len(dataset))) if indices is None else list(indices)
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    loader = DataLoader(dataset, batch_sampler=batches, collate_fn=already_batched)
    parts: dict[str, dict[str, list[np.ndarray]]] = {t: {"pred": [], "label": [], "mask": []} for t in tasks}
    for batch in loader:
        outputs = predict(move_batch(batch["image"], device))
        for name, labels in batch["labels"].items():
            if name not in parts:  # labelled in the data, not predicted by this model
                continue
            parts[name]["pred"].append(spec(name).decode(outputs[name]))
            parts[name]["label"].append(labels.numpy())
            parts[name]["mask"].append(batch["mask"][name].numpy())
    return {t: {k: np.concatenate(v) for k, v in p.items()} for t, p in parts.items() if p["pred"]}


def task_metrics(
    task: str, pred: np.ndarray, label: np.ndarray, mask: np.ndarray, spaces: LabelSpaces,
    au_thresholds: float | np.ndarray = 0.5,
) -> dict[str, Any] | None:
    """Metrics of one task over labelled samples (its spec's); None when nothing is labelled.

    ``au_thresholds``: one decision threshold or one per AU (tuned on validation, e.g. an ensemble's).
    """
    if not mask.any():
        return None
    return spec(task).metrics(pred, label, mask, spaces, au_thresholds=au_thresholds)


def evaluate(
    predict: Predictor, dataset: FaceDataset, tasks: tuple[str, ...], device: torch.device, batch_size: int = 256,
    au_thresholds: float | np.ndarray = 0.5,
) -> dict[str, Any]:
    """``{task: metrics}`` for every enabled task with labels in ``dataset`` (AU decided at ``au_thresholds``)."""
    collected = collect_predictions(predict, dataset, tasks, device, batch_size)
    return metrics_of(collected, dataset.label_spaces, au_thresholds)


def metrics_of(
    collected: dict[str, dict[str, np.ndarray]], spaces: LabelSpaces, au_thresholds: float | np.ndarray = 0.5
) -> dict[str, Any]:
    """``{task: metrics}`` from :func:`collect_predictions`' arrays (tasks without labels left out)."""
    results = {}
    for task, arrays in collected.items():
        result = task_metrics(task, arrays["pred"], arrays["label"], arrays["mask"], spaces, au_thresholds)
        if result is not None:
            results[task] = result
    return results


def evaluate_sharded(
    predict: Callable[[torch.Tensor], dict[str, Any]], dataset: Any, tasks: tuple[str, ...], device: torch.device,
    batch_size: int,
) -> dict[str, Any]:
    """:func:`facemtl.engine.evaluate.evaluate`, each process predicting a contiguous part of ``dataset``.

    Predictions are gathered (in dataset order) before any metric is computed, so every
    process returns the metrics of the whole split, as a single process would.
    """
    world = distributed.world_size()
    if world == 1:
        return evaluate(predict, dataset, tasks, device, batch_size)
    n, r = len(dataset), distributed.rank()
    part = collect_predictions(predict, dataset, tasks, device, batch_size, list(range(n * r // world, n * (r + 1) // world)))
    parts: list[Any] = [None] * world
    torch.distributed.all_gather_object(parts, part)  # between this run's own processes
    collected = {
        name: {key: np.concatenate([p[name][key] for p in parts if name in p]) for key in ("pred", "label", "mask")}
        for name in tasks if any(name in p for p in parts)
    }
    return metrics_of(collected, dataset.label_spaces)


def primary_scores(results: dict[str, Any]) -> dict[str, float]:
    """One higher-is-better number per task with results (each spec's), for model selection and summaries.

    expr: macro-F1; au: mean F1; va: mean CCC; lmk: 1 - NME; attr: mean accuracy.
    """
    return {name: spec(name).primary_score(result) for name, result in results.items() if result}


def selection_score(results: dict[str, Any], tasks: Sequence[str] = ()) -> float:
    """Mean of :func:`primary_scores` (of ``tasks`` only, when given): the validation number the best
    checkpoint maximises."""
    scores = {name: score for name, score in primary_scores(results).items() if not tasks or name in tasks}
    return float(np.mean(list(scores.values()))) if scores else float("-inf")


def format_metrics(results: dict[str, dict[str, Any]]) -> str:
    """A plain-text table ``task | metric | <split> ...`` of the headline metrics per split (each spec's rows)."""
    splits = [s for s in ("val", "test") if s in results]
    names = ordered_tasks([name for s in splits for name in results[s] if name in TASK_SPECS])
    rows: list[tuple[str, str, list[str]]] = []
    for name in names:
        per_split = [dict(spec(name).table_rows(results[s][name])) if name in results[s] else {} for s in splits]
        for metric in dict.fromkeys(m for table in per_split for m in table):
            rows.append((name, metric, [_fmt(table.get(metric)) for table in per_split]))
    header = ("task", "metric", *splits)
    widths = [max(len(header[0]), 4), max([len(header[1])] + [len(r[1]) for r in rows])] + [8] * len(splits)
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines.append("  ".join("-" * w for w in widths))
    for name, metric, values in rows:
        lines.append("  ".join([name.ljust(widths[0]), metric.ljust(widths[1])] + [v.rjust(8) for v in values]))
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.4f}"
