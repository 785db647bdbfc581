"""Run a model over a dataset and compute each enabled task's metrics."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from facemtl import distributed, metrics
from facemtl.data.dataset import FaceDataset, already_batched, move_batch
from facemtl.labels import LabelSpaces

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
        for task in tasks:
            if task not in batch["labels"]:
                continue
            parts[task]["pred"].append(_decode(task, outputs[task]))
            parts[task]["label"].append(batch["labels"][task].numpy())
            parts[task]["mask"].append(batch["mask"][task].numpy())
    return {t: {k: np.concatenate(v) for k, v in p.items()} for t, p in parts.items() if p["pred"]}


def _decode(task: str, output: Any) -> np.ndarray:
    if task == "expr":
        return output.argmax(dim=1).cpu().numpy()
    if task == "au":
        return torch.sigmoid(output).float().cpu().numpy()
    if task == "attr":
        return torch.stack([logits.argmax(dim=1) for logits in output.values()], dim=1).cpu().numpy()
    return output.float().cpu().numpy()


def task_metrics(
    task: str, pred: np.ndarray, label: np.ndarray, mask: np.ndarray, spaces: LabelSpaces,
    au_thresholds: float | np.ndarray = 0.5,
) -> dict[str, Any] | None:
    """Metrics of one task over labelled samples; None when nothing is labelled.

    ``au_thresholds``: one decision threshold or one per AU (tuned on validation, e.g. an ensemble's).
    """
    if not mask.any():
        return None
    if task == "expr":
        return metrics.expression_metrics(label[mask], pred[mask], spaces.expr_classes)
    if task == "au":
        return metrics.au_metrics(label, pred, spaces.au_names, mask=mask, thresholds=au_thresholds)
    if task == "va":
        result = metrics.va_metrics(label[mask], pred[mask])
        return {**result, "abaw_score": result["ccc_mean"]}  # ABAW 2020 ranks VA by the mean CCC
    if task == "lmk":
        return metrics.landmark_metrics(pred[mask], label[mask])
    if task == "attr":
        return metrics.attribute_metrics(label, pred, list(spaces.attributes), mask=mask)
    raise ValueError(f"unknown task {task!r}")


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
        task: {key: np.concatenate([p[task][key] for p in parts if task in p]) for key in ("pred", "label", "mask")}
        for task in tasks if any(task in p for p in parts)
    }
    return metrics_of(collected, dataset.label_spaces)


def primary_scores(results: dict[str, Any]) -> dict[str, float]:
    """One higher-is-better number per task, used for model selection and summaries.

    expr: macro-F1; au: mean F1; va: mean CCC; lmk: 1 - NME; attr: mean accuracy.
    """
    scores = {}
    if "expr" in results:
        scores["expr"] = results["expr"]["macro_f1"]
    if "au" in results:
        scores["au"] = results["au"]["f1_mean"]
    if "va" in results:
        scores["va"] = results["va"]["ccc_mean"]
    if "lmk" in results:
        scores["lmk"] = 1.0 - results["lmk"]["nme"]
    if results.get("attr"):
        scores["attr"] = float(np.mean([v["accuracy"] for v in results["attr"].values()]))
    return scores


def selection_score(results: dict[str, Any], tasks: Sequence[str] = ()) -> float:
    """Mean of :func:`primary_scores` (of ``tasks`` only, when given): the validation number the best
    checkpoint maximises."""
    scores = {task: score for task, score in primary_scores(results).items() if not tasks or task in tasks}
    return float(np.mean(list(scores.values()))) if scores else float("-inf")


_TABLE_ROWS: dict[str, tuple[str, ...]] = {
    "expr": ("accuracy", "mean_class_accuracy", "macro_f1", "abaw_score"),
    "au": ("f1_mean", "accuracy", "abaw_score"),
    "va": ("ccc_valence", "ccc_arousal", "ccc_mean", "rmse_valence", "rmse_arousal"),
    "lmk": ("nme", "failure_rate"),
}


def format_metrics(results: dict[str, dict[str, Any]]) -> str:
    """A plain-text table ``task | metric | <split> ...`` of the headline metrics per split."""
    splits = [s for s in ("val", "test") if s in results]
    rows: list[tuple[str, str, list[str]]] = []
    tasks = [t for t in ("expr", "au", "va", "lmk", "attr") if any(t in results[s] for s in splits)]
    for task in tasks:
        if task == "attr":
            names = sorted({n for s in splits for n in results[s].get("attr", {})})
            for name in names:
                values = [results[s].get("attr", {}).get(name, {}).get("accuracy") for s in splits]
                rows.append((task, f"{name} accuracy", [_fmt(v) for v in values]))
            continue
        for metric in _TABLE_ROWS[task]:
            rows.append((task, metric, [_fmt(results[s].get(task, {}).get(metric)) for s in splits]))
    header = ("task", "metric", *splits)
    widths = [max(len(header[0]), 4), max([len(header[1])] + [len(r[1]) for r in rows])] + [8] * len(splits)
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines.append("  ".join("-" * w for w in widths))
    for task, metric, values in rows:
        lines.append("  ".join([task.ljust(widths[0]), metric.ljust(widths[1])] + [v.rjust(8) for v in values]))
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.4f}"
