"""The HTML run report: ``facemtl report RUN_DIR`` writes ``RUN_DIR/report/report.html``.

The page is plain HTML (no script, no network resource) with PNG plots beside it, one
section per task the run has:

- from the run folder alone: metrics table, loss and validation curves (``log.csv``), the
  expression confusion matrix and per-class F1, per-AU F1 and attribute accuracies
  (``metrics.json``);
- from predictions of the best checkpoint on the report split (``test``, else ``val``),
  which need the run's dataset: the landmark cumulative error curve, the valence/arousal
  scatter and a grid of faces with predictions. When the data cannot be loaded these are
  skipped and the page says why.

Predictions come from the network alone (as ``facemtl predict`` and the shipped model
use it), not from the training method around it, so a method that needs more to be built
(a distillation teacher) still gets its report.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facemtl.config import config_from_dict
from facemtl.data import build_datasets
from facemtl.device import resolve_device
from facemtl.engine.evaluate import collect_predictions
from facemtl.errors import FacemtlError
from facemtl.metrics import nme_per_sample
from facemtl.report import plots
from facemtl.report.grid import save_prediction_grid
from facemtl.report.run import RunData, default_out, load_run
from facemtl.tasks import spec
from facemtl.tasks.network import load_network

DEFAULT_MAX_FACES = 2000


@dataclass
class SplitPredictions:
    """The best checkpoint's predictions on (an even sample of) one split."""

    split: str
    arrays: dict[str, dict[str, np.ndarray]]  # collect_predictions' {task: {pred, label, mask}}
    dataset: Any
    predict: Callable[[torch.Tensor], dict[str, Any]]
    tasks: tuple[str, ...]
    device: torch.device
    num_faces: int
    total_faces: int


def predict_split(
    run: RunData, split: str, max_faces: int = DEFAULT_MAX_FACES, device: str = "cpu", overrides: Sequence[str] = (),
) -> SplitPredictions:
    """Rebuild ``split`` from the checkpoint's config and predict ``max_faces`` evenly spaced faces.

    ``overrides`` (``KEY=VALUE``) change that config first, e.g. ``data.root=`` of a moved dataset.

    Raises:
        FacemtlError: when the checkpoint or the dataset cannot be loaded, or they disagree.
    """

    torch_device = resolve_device(device)
    net, checkpoint = load_network(run.run_dir, torch_device)
    config = config_from_dict(checkpoint.config, list(overrides))
    try:
        dataset = build_datasets(config.data, splits=(split,))[split]
    except (OSError, ValueError) as err:
        raise FacemtlError(f"dataset {config.data.name!r} could not be loaded ({err})") from None
    if dataset.label_spaces != checkpoint.label_spaces:
        raise FacemtlError(f"dataset {config.data.name!r} now has other label spaces than the checkpoint")
    def predict(images: torch.Tensor) -> dict[str, Any]:
        with torch.no_grad():
            return net(images)

    count = min(max_faces, len(dataset))
    # Evenly spaced rather than the first faces: files are often sorted by class or subject.
    indices = np.unique(np.linspace(0, len(dataset) - 1, count).round().astype(int)).tolist() if count else []
    tasks = tuple(checkpoint.tasks)
    arrays = collect_predictions(predict, dataset, tasks, torch_device, config.train.eval_batch_size, indices)
    return SplitPredictions(split, arrays, dataset, predict, tasks, torch_device, len(indices), len(dataset))


@dataclass
class _Page:
    run: RunData
    out: Path
    preds: SplitPredictions | None
    missing: str  # why preds is None


def write_report(
    run_dir: str | Path, out_dir: str | Path | None = None, max_faces: int = DEFAULT_MAX_FACES,
    predictions: bool = True, device: str = "cpu", overrides: Sequence[str] = (),
) -> Path:
    """Write ``report.html`` and its PNGs for a finished run; returns the HTML path.

    Args:
        run_dir: the run folder (``facemtl train --out``), or a checkpoint file or ``facemtl_base``
            (evaluated here on its val and test splits).
        out_dir: where to write; default ``run_dir/report`` (a checkpoint's: ``<name>-report/``
            in the current folder).
        max_faces: at most this many faces of the report split are predicted again.
        predictions: False skips the plots that need the dataset (curves and tables remain).
        device: where the checkpoint runs (``cpu``, ``cuda``, ``auto``).
        overrides: ``KEY=VALUE`` changes of the run's config before its data is rebuilt.

    Raises:
        FacemtlError: if ``run_dir`` is not a finished run (see :func:`load_run`) or an
            override is invalid.
    """
    run = load_run(run_dir, overrides)
    if overrides and run.config:

        config_from_dict(run.config, list(overrides))  # a mistyped key is an error, not a skipped plot
    out = Path(out_dir) if out_dir else default_out(run)
    out.mkdir(parents=True, exist_ok=True)
    preds, missing = None, "--no-predictions was given"
    if predictions:
        try:
            preds = predict_split(run, run.split, max_faces, device, overrides)
        except FacemtlError as err:
            missing = f"the {run.split} split could not be predicted: {err}"
    page = _Page(run, out, preds, missing)
    sections = [_summary(page), _metrics_table(page), _curves(page)]
    sections += [_TASK_SECTIONS[task](page) for task in run.tasks]
    sections += [_grid(page), _notes(page)]
    path = out / "report.html"
    path.write_text(_document(run, [s for s in sections if s]))
    return path


# -- page pieces -----------------------------------------------------------------------
_STYLE = """
body { font-family: sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { border-bottom: 2px solid #4c72b0; padding-bottom: .3em; }
h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: .8em 0; font-size: .92em; }
th, td { border: 1px solid #ccc; padding: .25em .7em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #eef2f8; }
figure { margin: 1em 0; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption, .note { color: #555; font-size: .9em; }
.note { background: #fff8e1; border-left: 4px solid #f0b400; padding: .4em .8em; }
nav a { margin-right: 1em; }
"""


def _document(run: RunData, sections: list[tuple[str, str, str]]) -> str:
    name = html.escape(run.run_dir.resolve().name)
    nav = " ".join(f'<a href="#{key}">{html.escape(title)}</a>' for key, title, _ in sections)
    body = "\n".join(f'<section id="{key}">\n<h2>{html.escape(title)}</h2>\n{content}\n</section>'
                     for key, title, content in sections)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>facemtl run report: {name}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
            f"<h1>Run report: {name}</h1>\n<nav>{nav}</nav>\n{body}\n</body>\n</html>\n")


def _table(header: list[str] | None, rows: list[list[Any]]) -> str:
    lines = [f"<tr>{''.join(f'<th>{html.escape(str(h))}</th>' for h in header)}</tr>"] if header else []
    for row in rows:
        cells = "".join(f'<td class="num">{v:.4f}</td>' if isinstance(v, float) else f"<td>{html.escape(str(v))}</td>"
                        for v in row)
        lines.append(f"<tr>{cells}</tr>")
    return "<table>\n" + "\n".join(lines) + "\n</table>"


def _figure(path: Path, caption: str) -> str:
    text = html.escape(caption)
    return f'<figure><img src="{html.escape(path.name)}" alt="{text}"><figcaption>{text}</figcaption></figure>'


def _note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def _summary(page: _Page) -> tuple[str, str, str]:
    config, run = page.run.config, page.run

    def get(section: str, key: str) -> Any:
        return config.get(section, {}).get(key, "?")

    rows = [
        ["run folder", str(run.run_dir)],
        ["dataset", get("data", "name")], ["backbone", get("model", "backbone")],
        ["method", get("method", "name")], ["tasks", ", ".join(run.tasks)],
        ["epochs", f"{len(run.log)} of {get('train', 'epochs')}" if run.log else get("train", "epochs")],
        ["best epoch (on validation)", run.metrics.get("best_epoch", "?")],
    ]
    if run.log and "seconds" in run.log[-1]:
        seconds = run.log[-1]["seconds"]
        rows.append(["training time", f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.1f} s"])
    return "summary", "Run", _table(None, rows)


def _metrics_table(page: _Page) -> tuple[str, str, str]:
    run = page.run
    rows: list[list[Any]] = []
    for name in run.tasks:
        per_split = [dict(spec(name).table_rows(run.metrics[s].get(name, {}))) for s in run.splits]
        for metric in dict.fromkeys(m for table in per_split for m in table):
            rows.append([name, metric] + [_number(table.get(metric)) for table in per_split])
    note = "Metrics of the best checkpoint, chosen on validation. NME and RMSE: lower is better; the rest: higher."
    return "metrics", "Metrics", _table(["task", "metric", *run.splits], rows) + f'\n<p class="note">{note}</p>'


def _number(value: Any) -> Any:
    return float(value) if isinstance(value, (int, float)) else "-"


def _curves(page: _Page) -> tuple[str, str, str]:
    if not page.run.log:
        return "curves", "Training curves", _note("No log.csv in the run folder: no curves.")
    path = plots.plot_training_curves(page.run.log, page.out / "curves.png", page.run.metrics.get("best_epoch"))
    return "curves", "Training curves", _figure(path, "Mean training loss per task and validation score per epoch.")


def _per_split(page: _Page, task: str, key: str) -> dict[str, dict[str, float]]:
    run = page.run
    return {s: run.metrics[s][task][key] for s in run.splits if isinstance(run.metrics[s].get(task, {}).get(key), dict)}


def _expr(page: _Page) -> tuple[str, str, str]:
    run, parts = page.run, []
    split = next(s for s in (run.split, "val") if "expr" in run.metrics.get(s, {}))
    results = run.metrics[split]["expr"]
    names = list(results.get("f1", {}))
    if "confusion_matrix" in results and len(names) == len(results["confusion_matrix"]):
        total = int(np.sum(results["confusion_matrix"]))
        path = plots.plot_confusion_matrix(results["confusion_matrix"], names, page.out / "expr_confusion.png",
                                           f"Expression confusion matrix ({split}, {total} faces)")
        parts.append(_figure(path, f"Rows: true class; columns: predicted class ({split} split)."))
    f1 = _per_split(page, "expr", "f1")
    if f1:
        path = plots.plot_split_bars(f1, page.out / "expr_f1.png", "F1 per expression class", "F1")
        parts.append(_figure(path, "F1 of each expression class (mean = macro-F1)."))
    return "expr", spec("expr").title, "\n".join(parts) or _note("metrics.json has no per-class expression results.")


def _au(page: _Page) -> tuple[str, str, str]:
    f1 = _per_split(page, "au", "f1")
    if not f1:
        return "au", spec("au").title, _note("metrics.json has no per-AU F1.")
    path = plots.plot_split_bars(f1, page.out / "au_f1.png", "F1 per action unit", "F1")
    return "au", spec("au").title, _figure(path, "F1 of each action unit at the 0.5 probability threshold.")


def _attr(page: _Page) -> tuple[str, str, str]:
    run = page.run
    accuracy = {s: {n: v["accuracy"] for n, v in run.metrics[s]["attr"].items()} for s in run.splits if run.metrics[s].get("attr")}
    path = plots.plot_split_bars(accuracy, page.out / "attr_accuracy.png", "Accuracy per attribute", "accuracy")
    return "attr", spec("attr").title, _figure(path, "Accuracy of each attribute classifier.")


def _sample_text(preds: SplitPredictions) -> str:
    if preds.num_faces == preds.total_faces:
        return f"all {preds.total_faces} {preds.split} faces"
    return f"{preds.num_faces} evenly spaced of {preds.total_faces} {preds.split} faces"


def _task_arrays(page: _Page, task: str) -> tuple[dict[str, np.ndarray] | None, str]:
    if page.preds is None:
        return None, f"Plot skipped: {page.missing}."
    arrays = page.preds.arrays.get(task)
    if arrays is None or not arrays["mask"].any():
        return None, f"Plot skipped: no labelled {task} faces among {_sample_text(page.preds)}."
    return arrays, ""


def _lmk(page: _Page) -> tuple[str, str, str]:

    arrays, why = _task_arrays(page, "lmk")
    if arrays is None:
        return "lmk", spec("lmk").title, _note(why)
    mask = arrays["mask"]
    nme = nme_per_sample(arrays["pred"][mask], arrays["label"][mask])
    path = plots.plot_ced(nme, page.out / "lmk_ced.png", f"Cumulative error distribution ({len(nme)} {page.preds.split} faces)")
    return "lmk", spec("lmk").title, _figure(path, f"Fraction of faces whose NME is at most x; {_sample_text(page.preds)}.")


def _va(page: _Page) -> tuple[str, str, str]:
    arrays, why = _task_arrays(page, "va")
    if arrays is None:
        return "va", spec("va").title, _note(why)
    mask = arrays["mask"]
    path = plots.plot_va_scatter(arrays["label"][mask], arrays["pred"][mask], page.out / "va_scatter.png",
                                 f"Valence and arousal ({int(mask.sum())} {page.preds.split} faces)")
    return "va", spec("va").title, _figure(path, f"Predicted against true values; {_sample_text(page.preds)}.")


def _grid(page: _Page) -> tuple[str, str, str]:

    title = "Predictions on test faces" if page.run.split == "test" else "Predictions on validation faces"
    if page.preds is None:
        return "grid", title, _note(f"Grid skipped: {page.missing}.")
    p = page.preds
    path = save_prediction_grid(p.predict, p.dataset, p.tasks, page.out / "predictions.png", p.device)
    parts = {"expr": "predicted expression (true class when wrong)", "au": "active AUs",
             "va": "valence/arousal", "attr": "attributes"}
    words = [parts[t] for t in p.tasks if t in parts]
    caption = "First faces of the split." + (f" Above each: {', '.join(words)}." if words else "")
    if "lmk" in p.tasks:
        caption += " Landmarks: predicted red, true green."
    return "grid", title, _figure(path, caption)


def _notes(page: _Page) -> tuple[str, str, str] | None:
    notes = []
    if page.preds is not None and page.preds.num_faces < page.preds.total_faces:
        notes.append(f"Per-face plots use {_sample_text(page.preds)} (--max-faces); the metrics table uses all of them.")
    if not notes:
        return None
    return "notes", "Notes", "<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>"


_TASK_SECTIONS: dict[str, Callable[[_Page], tuple[str, str, str]]] = {
    "expr": _expr, "au": _au, "va": _va, "lmk": _lmk, "attr": _attr,
}
