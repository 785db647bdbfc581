"""PNG plots of a finished run, one function per picture.

Each function takes plain numbers (rows of ``log.csv``, entries of ``metrics.json`` or
per-face arrays), writes one PNG and returns its path. Figures are built with
:class:`matplotlib.figure.Figure` directly, never through ``pyplot``: that needs no
display, leaves matplotlib's global backend alone and leaks no open figures.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from facemtl.metrics import ccc, cumulative_error_curve

#: Colours of the splits in every plot (validation, test).
SPLIT_COLOURS = {"val": "#4c72b0", "test": "#dd8452"}
DPI = 100
MAX_WIDTH = 11.0  # inches: the page is 1100 px wide and shows figures at DPI pixels per inch


def _save(figure: Figure, path: str | Path) -> Path:
    path = Path(path)
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)
    return path


def plot_training_curves(rows: Sequence[Mapping[str, float]], path: str | Path, best_epoch: int | None = None) -> Path:
    """Training losses (left) and validation scores (right) per epoch.

    Args:
        rows: ``log.csv`` rows as numbers; ``train_loss*`` columns are losses, ``val_*`` columns
            higher-is-better validation scores (``val_score`` is their mean).
        path: PNG to write.
        best_epoch: the epoch of the best checkpoint, marked by a dotted line.
    """
    epochs = [row["epoch"] for row in rows]
    figure = Figure(figsize=(10, 3.8))
    losses, scores = figure.subplots(1, 2)
    loss_keys = _columns(rows, "train_loss")
    for key in loss_keys:
        style = {"lw": 2.2, "color": "black"} if key == "train_loss" else {"lw": 1.2, "ls": "--"}
        label = key.removeprefix("train_loss").removeprefix("_") or "total"
        losses.plot(epochs, [row.get(key, np.nan) for row in rows], marker="o", ms=3, label=label, **style)
    for key in _columns(rows, "val_"):
        style = {"lw": 2.2, "color": "black"} if key == "val_score" else {"lw": 1.2}
        scores.plot(epochs, [row.get(key, np.nan) for row in rows], marker="o", ms=3, label=key[4:], **style)
    if _all_positive(rows, loss_keys):
        losses.set_yscale("log")  # task losses differ by orders of magnitude (landmarks vs expression)
    losses.set(title="Training loss (mean over the epoch)", xlabel="epoch", ylabel="loss")
    scores.set(title="Validation score (higher is better)", xlabel="epoch", ylabel="score")
    for axis in (losses, scores):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        if best_epoch is not None:
            axis.axvline(best_epoch, color="grey", ls=":", lw=1, label=f"best epoch {best_epoch}")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7, loc="best")
    return _save(figure, path)


def _columns(rows: Sequence[Mapping[str, float]], prefix: str) -> list[str]:
    seen: list[str] = []
    for row in rows:
        seen += [k for k in row if k.startswith(prefix) and k not in seen and np.isfinite(row[k])]
    return seen


def _all_positive(rows: Sequence[Mapping[str, float]], keys: list[str]) -> bool:
    values = [row[k] for row in rows for k in keys if k in row and np.isfinite(row[k])]
    return bool(values) and min(values) > 0


def plot_confusion_matrix(matrix: Sequence[Sequence[int]], class_names: Sequence[str], path: str | Path, title: str) -> Path:
    """Expression confusion matrix: colour = share of the true class (row), text = count and share.

    Args:
        matrix: [C][C] counts, rows = true class, columns = predicted class.
        class_names: C names.
        path: PNG to write.
        title: figure title (say which split).
    """
    counts = np.asarray(matrix, dtype=np.int64)
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros(counts.shape, dtype=np.float64), where=rows > 0)
    size = max(4.5, 0.75 * len(class_names) + 2.0)
    figure = Figure(figsize=(size + 1.0, size))
    axis = figure.subplots()
    image = axis.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04, label="share of the true class")
    ticks = np.arange(len(class_names))
    axis.set_xticks(ticks, list(class_names), rotation=45, ha="right")
    axis.set_yticks(ticks, list(class_names))
    fontsize = 8 if len(class_names) <= 8 else 6
    for i, j in np.ndindex(counts.shape):
        colour = "white" if share[i, j] > 0.55 else "black"
        axis.text(j, i, f"{counts[i, j]}\n{share[i, j]:.0%}", ha="center", va="center", fontsize=fontsize, color=colour)
    axis.set(title=title, xlabel="predicted class", ylabel="true class")
    return _save(figure, path)


def plot_split_bars(
    values: Mapping[str, Mapping[str, float]], path: str | Path, title: str, ylabel: str, reference: float | None = None
) -> Path:
    """Grouped bars, one group per item (AU, attribute), one bar per split, value printed on top.

    Args:
        values: ``{split: {item: value in [0, 1]}}``; items missing from a split are left out.
        path: PNG to write.
        title: figure title.
        ylabel: y-axis label.
        reference: optional horizontal reference line (e.g. chance level).
    """
    items: list[str] = []
    for per_item in values.values():
        items += [name for name in per_item if name not in items]
    splits = list(values)
    width = 0.8 / max(len(splits), 1)
    figure = Figure(figsize=(min(MAX_WIDTH, max(5.0, 0.4 * len(items) * max(len(splits), 1) + 1.5)), 3.8))
    axis = figure.subplots()
    x = np.arange(len(items))
    for k, split in enumerate(splits):
        heights = [values[split].get(name, np.nan) for name in items]
        mean = np.nanmean(heights) if heights else np.nan
        bars = axis.bar(x + (k - (len(splits) - 1) / 2) * width, heights, width,
                        color=SPLIT_COLOURS.get(split), label=f"{split} (mean {mean:.3f})")
        if len(items) * len(splits) <= 40:  # beyond that the numbers overlap
            axis.bar_label(bars, fmt="%.2f", fontsize=6, padding=1)
    if reference is not None:
        axis.axhline(reference, color="grey", ls=":", lw=1)
    axis.set_xticks(x, items, rotation=45 if len(items) > 8 else 0, ha="right" if len(items) > 8 else "center")
    # Head room above 1.0 keeps the legend clear of the bars and their numbers.
    axis.set(title=title, ylabel=ylabel, ylim=(0.0, 1.25), yticks=np.linspace(0.0, 1.0, 6))
    axis.grid(axis="y", alpha=0.3)
    axis.legend(fontsize=8, loc="upper center", ncol=max(len(splits), 1), frameon=False)
    return _save(figure, path)


def plot_ced(nme: np.ndarray, path: str | Path, title: str, failure_threshold: float = 0.10) -> Path:
    """Cumulative error distribution of per-face NMEs, with the failure threshold marked.

    The x axis reaches at least ``failure_threshold`` and far enough to show 95 % of faces
    (at most NME 1.0), so an untrained model's curve is visible rather than flat at zero.

    Args:
        nme: [N] per-face normalised mean errors (fractions, not percent).
        path: PNG to write.
        title: figure title (say which split and how many faces).
        failure_threshold: a face with NME above it counts as a failure.
    """
    nme = np.asarray(nme, dtype=np.float64)
    reach = min(max(failure_threshold, 1.05 * float(np.quantile(nme, 0.95))), 1.0)
    errors, fraction = cumulative_error_curve(nme, max_error=reach, steps=201)
    figure = Figure(figsize=(5.5, 4.0))
    axis = figure.subplots()
    failures = float(np.mean(nme > failure_threshold))
    axis.plot(errors, fraction, lw=2, color=SPLIT_COLOURS["test"],
              label=f"NME {nme.mean():.4f}, failure rate {failures:.1%}")
    axis.axvline(failure_threshold, color="grey", ls=":", lw=1, label=f"failure threshold {failure_threshold:g}")
    axis.set(title=title, xlabel="normalised mean error (inter-ocular)", ylabel="fraction of faces",
             xlim=(0.0, reach), ylim=(0.0, 1.02))
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="lower right")
    return _save(figure, path)


def plot_va_scatter(true: np.ndarray, pred: np.ndarray, path: str | Path, title: str) -> Path:
    """Predicted against true valence and arousal, one panel each, with the identity line.

    Args:
        true: [N, 2] labels (valence, arousal) in [-1, 1].
        pred: [N, 2] predictions.
        path: PNG to write.
        title: figure title (say which split).
    """

    figure = Figure(figsize=(9, 4.2))
    figure.suptitle(title)
    for column, (axis, name) in enumerate(zip(figure.subplots(1, 2), ("valence", "arousal"))):
        t, p = true[:, column], pred[:, column]
        axis.scatter(t, p, s=6, alpha=0.4, color=SPLIT_COLOURS["test"], edgecolors="none")
        axis.plot([-1, 1], [-1, 1], color="grey", ls=":", lw=1)
        axis.set(title=f"{name}: CCC {ccc(p, t):.3f}", xlabel=f"true {name}", ylabel=f"predicted {name}",
                 xlim=(-1.05, 1.05), ylim=(-1.05, 1.05), aspect="equal")
        axis.grid(alpha=0.3)
    return _save(figure, path)
