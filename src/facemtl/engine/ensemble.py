"""Ensembles of trained models (Deng et al.'s students) and the ``facemtl distill`` recipe.

An ensemble is a JSON file (``ensemble.json``) listing member checkpoints (paths relative to
the file) and the per-AU thresholds tuned on the *validation* split::

    {"format": "facemtl-ensemble-1", "members": ["student0/checkpoints/best.safetensors", ...],
     "au_thresholds": {"break_even": [...], "f1": [...]}, "au_threshold_mode": "break_even",
     "va_mode": "mean"}

Predictions (as the official ``val.py``):

- AU: the mean of the members' sigmoids, decided at per-AU thresholds: the precision-recall
  break-even point (official) or the F1-optimal point. Each is tuned on the ensemble's own
  averaged validation scores (the official code meant to, but its loop keeps only the last
  model's thresholds).
- EXPR: argmax of the mean softmax.
- VA: ``mean`` of the members' expected values, or ``mode``: each member's argmax bin, the
  most common bin over members (ties: the lower bin), mapped to its bin value (official).

``facemtl eval --checkpoint DIR/ensemble.json`` evaluates one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facemtl import metrics
from facemtl.config import config_from_dict, load_config
from facemtl.data import build_datasets
from facemtl.device import resolve_device
from facemtl.engine.evaluate import collect_predictions, evaluate, format_metrics
from facemtl.engine.trainer import Trainer
from facemtl.errors import FacemtlError
from facemtl.io.checkpoint import load_checkpoint
from facemtl.methods.distill import load_net
from facemtl.models import MultiTaskNet
from facemtl.tasks import spec

FORMAT = "facemtl-ensemble-1"
VA_MODES = ("mean", "mode")
THRESHOLD_MODES = ("break_even", "f1")


class Ensemble(torch.nn.Module):
    """Members with the same tasks and label spaces, predicting together.

    Args:
        nets: the member networks.
        va_mode: ``mean`` (averaged expectation) or ``mode`` (official mode of argmax bins).
    """

    def __init__(self, nets: list[MultiTaskNet], va_mode: str = "mean") -> None:
        super().__init__()
        if not nets:
            raise FacemtlError("an ensemble needs at least one member")
        if va_mode not in VA_MODES:
            raise FacemtlError(f"va_mode={va_mode!r} is not valid; choose from: {', '.join(VA_MODES)}")
        first = nets[0]
        for net in nets[1:]:
            if net.tasks != first.tasks or net.label_spaces != first.label_spaces:
                raise FacemtlError("ensemble members must share their tasks and label spaces")
        if va_mode == "mode" and "va" in first.tasks and not all(hasattr(n.heads["va"], "expectation") for n in nets):
            raise FacemtlError("va_mode=mode needs binned VA heads (model.va_bins) in every member")
        self.nets = torch.nn.ModuleList(nets)
        self.va_mode = va_mode
        self.tasks = first.tasks
        self.label_spaces = first.label_spaces

    @classmethod
    def from_paths(cls, paths: list[str | Path], va_mode: str = "mean", device: torch.device | None = None) -> Ensemble:
        return cls([load_net(str(p), device) for p in paths], va_mode)

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Outputs in the network's format, each task's spec combining the members (``au`` as
        logits of the mean probability, ``expr`` as log of the mean softmax, ``va`` ``[B, 2]``,
        the others the mean); ``va_mode="mode"``: the members' most frequent VA bin."""
        outs = [net(images) for net in self.nets]
        result = {name: spec(name).ensemble([o[name] for o in outs]) for name in self.tasks}
        if self.va_mode == "mode" and "va" in result:
            result["va"] = self._va_mode(outs)
        return result

    def _va_mode(self, outs: list[dict[str, Any]]) -> torch.Tensor:
        bins = torch.stack([o["va_logits"].argmax(-1) for o in outs])  # [M, B, 2]
        return self.nets[0].heads["va"].values[bins.mode(dim=0).values]

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.predict(images)


def tune_au_thresholds(ensemble: Ensemble, dataset: Any, device: torch.device) -> dict[str, list[float]]:
    """Per-AU thresholds of the ensemble's mean probabilities on ``dataset`` (validation), both modes."""
    arrays = collect_predictions(ensemble.predict, dataset, ("au",), device)["au"]
    return {mode: metrics.tune_thresholds(arrays["label"], arrays["pred"], arrays["mask"], mode).tolist() for mode in THRESHOLD_MODES}


def write_ensemble(path: str | Path, members: list[Path], thresholds: dict[str, list[float]], **extra: Any) -> Path:
    """Write ``ensemble.json`` with member paths relative to its folder."""
    path = Path(path)
    rel = [str(Path(m).resolve().relative_to(path.parent.resolve())) for m in members]
    spec = {"format": FORMAT, "members": rel, "au_thresholds": thresholds, "au_threshold_mode": "break_even", "va_mode": "mean"}
    spec.update(extra)
    path.write_text(json.dumps(spec, indent=2))
    return path


def load_ensemble(path: str | Path, device: torch.device | None = None) -> tuple[Ensemble, dict[str, Any]]:
    """The :class:`Ensemble` of an ``ensemble.json`` (or a folder holding one) and its spec."""
    path = Path(path)
    if path.is_dir():
        path = path / "ensemble.json"
    try:
        spec = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise FacemtlError(f"{path}: not a readable ensemble JSON file ({err})") from None
    if spec.get("format") != FORMAT or not spec.get("members"):
        raise FacemtlError(f"{path}: not a facemtl ensemble (expected format {FORMAT} with members)")
    members = [path.parent / m for m in spec["members"]]
    return Ensemble.from_paths(members, spec.get("va_mode", "mean"), device), {**spec, "member_paths": members}


def evaluate_ensemble(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """Val and test metrics of an ensemble on its first member's dataset (AU at the tuned thresholds)."""

    ensemble, spec = load_ensemble(path)
    config = config_from_dict(load_checkpoint(spec["member_paths"][0]).config, list(overrides))
    device = resolve_device(config.train.device)
    ensemble.to(device).eval()
    datasets = build_datasets(config.data, splits=("val", "test"))
    mode = spec.get("au_threshold_mode", "break_even")
    if mode not in THRESHOLD_MODES:
        raise FacemtlError(f"{path}: au_threshold_mode={mode!r}; choose from: {', '.join(THRESHOLD_MODES)}")
    thresholds = np.asarray(spec["au_thresholds"][mode]) if "au" in ensemble.tasks else 0.5
    results: dict[str, Any] = {
        split: evaluate(ensemble.predict, ds, ensemble.tasks, device, config.train.eval_batch_size, thresholds)
        for split, ds in datasets.items() if len(ds)
    }
    results["ensemble"] = {"members": len(ensemble.nets), "au_threshold_mode": mode, "va_mode": ensemble.va_mode}
    return results


def run_distill(
    config_path: str | None, teacher: str, students: int, out: str | Path, overrides: list[str] | tuple[str, ...] = (),
    va_mode: str = "mean",
) -> dict[str, Any]:
    """Train ``students`` students (seeds ``train.seed + i``) from ``teacher`` into ``out/student<i>``,
    tune the ensemble's AU thresholds on validation, write ``out/ensemble.json`` and ``out/metrics.json``.

    A student whose folder already holds ``metrics.json`` is kept; one with a last checkpoint resumes.
    """

    if students < 1:
        raise FacemtlError(f"--students={students}; expected at least 1")
    if va_mode not in VA_MODES:
        raise FacemtlError(f"--va-mode={va_mode!r} is not valid; choose from: {', '.join(VA_MODES)}")
    out = Path(out)
    members = []
    for i in range(students):
        config = load_config(config_path, [*overrides, "method.name=distill", f"method.teacher={teacher}"])
        config.train.seed += i
        folder = out / f"student{i}"
        if not (folder / "metrics.json").is_file():
            print(f"student {i + 1}/{students} (seed {config.train.seed}) -> {folder}", flush=True)
            Trainer(config, folder, resume=(folder / "checkpoints" / "last.safetensors").is_file()).fit()
        members.append(folder / "checkpoints" / "best.safetensors")
    device = resolve_device(config.train.device)
    ensemble = Ensemble.from_paths(members, va_mode, device)
    thresholds: dict[str, list[float]] = {}
    if "au" in ensemble.tasks:
        val = build_datasets(config.data, splits=("val",))["val"]
        thresholds = tune_au_thresholds(ensemble, val, device)
    path = write_ensemble(out / "ensemble.json", members, thresholds, va_mode=va_mode, teacher=str(teacher))
    results = evaluate_ensemble(path)
    (out / "metrics.json").write_text(json.dumps(results, indent=2))
    print(format_metrics(results))
    print(f"ensemble: {path}  (facemtl eval --checkpoint {path})")
    return results
