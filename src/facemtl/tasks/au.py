"""``au``: facial action units, multi-label, named by FACS number; sigmoid over logits ``[B, A]``."""

from __future__ import annotations

from typing import Any

import numpy as np

from facemtl.labels import LabelSpaces
from facemtl.metrics import au_metrics
from facemtl.registry import TASK_SPECS
from facemtl.tasks.base import TaskSpec

#: A predicted AU counts as present (``AUxx_c = 1``) when its probability reaches this.
AU_THRESHOLD = 0.5


def au_column(name: str) -> str:
    """``"AU1"`` -> ``"AU01"`` (OpenFace zero-pads AU numbers to two digits)."""
    number = name[2:] if name.upper().startswith("AU") else name
    return f"AU{int(number):02d}" if number.isdigit() else f"AU{number}"


class ActionUnitSpec(TaskSpec):
    """Labels: 0/1 per AU ``[N, A]`` with a per-entry mask (a sample may miss only some AUs);
    metrics: F1 per AU and mean (selection), accuracy, ABAW score."""

    name = "au"
    title = "Action units"
    column_order = 1
    headline = ("f1_mean", "accuracy", "abaw_score")
    distillable = True

    def output_size(self, spaces: LabelSpaces) -> int:
        return len(spaces.au_names)

    def label_shape(self, spaces: LabelSpaces) -> tuple[tuple[int, ...], tuple[int, ...]]:
        return (len(spaces.au_names),), (len(spaces.au_names),)

    def loss(self, outputs: dict[str, Any], labels: Any, mask: Any, options: Any) -> Any:
        from facemtl.losses import masked_bce  # torch: absent from ONNX-only inference installs

        return masked_bce(outputs[self.name], labels, mask)

    def label_names(self, spaces: LabelSpaces) -> tuple[str, ...]:
        return spaces.au_names

    def soft_target_loss(self, student: dict[str, Any], teacher: dict[str, Any], temperature: float,
                         t_squared: bool) -> Any:
        """BCE to the teacher's probabilities (no temperature, as the official code)."""
        from facemtl.losses.distill import au_distill  # torch: absent from ONNX-only inference installs

        return au_distill(student[self.name], teacher[self.name])

    def decode(self, output: Any) -> np.ndarray:
        return output.sigmoid().float().cpu().numpy()

    def metrics(self, pred: np.ndarray, label: np.ndarray, mask: np.ndarray, spaces: LabelSpaces,
                au_thresholds: float | np.ndarray = 0.5, **options: Any) -> dict[str, Any]:
        return au_metrics(label, pred, spaces.au_names, mask=mask, thresholds=au_thresholds)

    def primary_score(self, result: dict[str, Any]) -> float:
        return result["f1_mean"]

    def postprocess(self, raw: dict[str, np.ndarray], spaces: LabelSpaces) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-raw[self.name]))

    def ensemble(self, outputs: Any) -> Any:
        """Logit of the members' mean probability."""
        import torch  # torch: absent from ONNX-only inference installs

        probability = torch.stack([torch.sigmoid(o) for o in outputs]).mean(0)
        return torch.logit(probability.clamp(1e-7, 1 - 1e-7))

    def columns(self, spaces: LabelSpaces) -> list[str]:
        names = [au_column(n) for n in spaces.au_names]
        return [f"{n}_c" for n in names] + [f"{n}_p" for n in names]

    def row(self, value: np.ndarray, spaces: LabelSpaces, to_image: Any) -> dict[str, Any]:
        row: dict[str, Any] = {}
        for name, p in zip(spaces.au_names, value):
            row[f"{au_column(name)}_c"] = int(p >= AU_THRESHOLD)
            row[f"{au_column(name)}_p"] = float(p)
        return row


TASK_SPECS.register(ActionUnitSpec.name)(ActionUnitSpec())
