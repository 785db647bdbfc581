"""``va``: valence and arousal, two values in [-1, 1]; regressed (tanh) or binned (Deng et al.)."""

from __future__ import annotations

from typing import Any

import numpy as np

from facemtl.labels import VA_NAMES, LabelSpaces
from facemtl.metrics import va_metrics
from facemtl.registry import TASK_SPECS
from facemtl.tasks.base import TaskSpec


class ValenceArousalSpec(TaskSpec):
    """Labels: ``[N, 2]`` with one flag per sample; metrics: CCC per dimension and mean (selection), RMSE.

    Head options (``model`` keys): ``va_bins`` > 0 makes VA a ``va_bins``-way classification
    per dimension whose expectation over ``va_bin_values`` is ``va``, its logits ``va_logits``.
    Loss options (``method.va_loss``): ``mse``, ``ccc`` or ``mse+ccc``.
    """

    name = "va"
    title = "Valence and arousal"
    column_order = 3
    headline = ("ccc_valence", "ccc_arousal", "ccc_mean", "rmse_valence", "rmse_arousal")
    distillable = True

    def output_size(self, spaces: LabelSpaces) -> int:
        return 2

    def build_head(self, in_features: int, spaces: LabelSpaces, spatial: bool, options: dict[str, Any]) -> Any:
        from facemtl.models.heads import BoundedHead, VABinHead  # torch: absent from ONNX-only inference installs

        if options.get("va_bins"):
            return VABinHead(self.name, in_features, options["va_bins"], options.get("va_bin_values", "code"))
        return BoundedHead(self.name, in_features, 2)

    def loss(self, outputs: dict[str, Any], labels: Any, mask: Any, options: Any) -> Any:
        from facemtl.losses import ccc_loss, masked_regression  # torch: absent from ONNX-only inference installs
        from facemtl.losses.va import va_bin_loss

        kind, pred = options.va_loss, outputs[self.name]
        loss = pred.sum() * 0.0
        logits = outputs.get(f"{self.name}_logits")
        if logits is not None:  # binned: CE per dimension, + (1 - CCC) when va_loss has ccc
            loss = va_bin_loss(logits, labels, mask, 1.0 if "ccc" in kind else 0.0, pred)
        elif "ccc" in kind:
            loss = loss + ccc_loss(pred, labels, mask)
        if "mse" in kind:
            loss = loss + masked_regression(pred, labels, mask, "mse")
        return loss

    def label_names(self, spaces: LabelSpaces) -> tuple[str, ...]:
        return VA_NAMES

    def soft_target_loss(self, student: dict[str, Any], teacher: dict[str, Any], temperature: float,
                         t_squared: bool) -> Any:
        """KL between the bin distributions when both are binned alike, else squared error of the values."""
        from facemtl.losses.distill import kl_distill, regression_distill  # torch: absent from ONNX-only installs

        key = f"{self.name}_logits"
        if key in student and key in teacher and student[key].shape == teacher[key].shape:
            return kl_distill(student[key], teacher[key], temperature, t_squared)
        return regression_distill(student[self.name], teacher[self.name])

    def metrics(self, pred: np.ndarray, label: np.ndarray, mask: np.ndarray, spaces: LabelSpaces,
                **options: Any) -> dict[str, Any]:
        result = va_metrics(label[mask], pred[mask])
        return {**result, "abaw_score": result["ccc_mean"]}  # ABAW 2020 ranks VA by the mean CCC

    def primary_score(self, result: dict[str, Any]) -> float:
        return result["ccc_mean"]

    def columns(self, spaces: LabelSpaces) -> list[str]:
        return ["valence", "arousal"]

    def row(self, value: np.ndarray, spaces: LabelSpaces, to_image: Any) -> dict[str, Any]:
        return {"valence": float(value[0]), "arousal": float(value[1])}


TASK_SPECS.register(ValenceArousalSpec.name)(ValenceArousalSpec())
