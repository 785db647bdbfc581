"""``expr``: facial expression, one of 7 or 8 classes (AffectNet order); softmax over logits ``[B, C]``."""

from __future__ import annotations

from typing import Any

import numpy as np

from facemtl.labels import LabelSpaces
from facemtl.metrics import expression_metrics
from facemtl.registry import TASK_SPECS
from facemtl.tasks.base import TaskSpec, softmax


class ExpressionSpec(TaskSpec):
    """Labels: class id ``[N]`` (long); metrics: accuracy, macro-F1 (selection), confusion matrix, ABAW score."""

    name = "expr"
    title = "Expression"
    label_dtype = "int64"
    column_order = 2
    headline = ("accuracy", "mean_class_accuracy", "macro_f1", "abaw_score")
    distillable = True

    def output_size(self, spaces: LabelSpaces) -> int:
        return len(spaces.expr_classes)

    def label_shape(self, spaces: LabelSpaces) -> tuple[tuple[int, ...], tuple[int, ...]]:
        return (), ()

    def loss(self, outputs: dict[str, Any], labels: Any, mask: Any, options: Any) -> Any:
        from facemtl.losses import masked_cross_entropy  # torch: absent from ONNX-only inference installs

        return masked_cross_entropy(outputs[self.name], labels, mask)

    def label_names(self, spaces: LabelSpaces) -> tuple[str, ...]:
        return spaces.expr_classes

    def soft_target_loss(self, student: dict[str, Any], teacher: dict[str, Any], temperature: float,
                         t_squared: bool) -> Any:
        """``KL(softmax(teacher / T) || softmax(student / T))``."""
        from facemtl.losses.distill import kl_distill  # torch: absent from ONNX-only inference installs

        return kl_distill(student[self.name], teacher[self.name], temperature, t_squared)

    def decode(self, output: Any) -> np.ndarray:
        return output.argmax(dim=1).cpu().numpy()

    def metrics(self, pred: np.ndarray, label: np.ndarray, mask: np.ndarray, spaces: LabelSpaces,
                **options: Any) -> dict[str, Any]:
        return expression_metrics(label[mask], pred[mask], spaces.expr_classes)

    def primary_score(self, result: dict[str, Any]) -> float:
        return result["macro_f1"]

    def postprocess(self, raw: dict[str, np.ndarray], spaces: LabelSpaces) -> np.ndarray:
        return softmax(raw[self.name])

    def ensemble(self, outputs: Any) -> Any:
        """Log of the members' mean probabilities (a valid logit for softmax and argmax)."""
        import torch  # torch: absent from ONNX-only inference installs

        return torch.stack([torch.softmax(o, 1) for o in outputs]).mean(0).clamp_min(1e-12).log()

    def columns(self, spaces: LabelSpaces) -> list[str]:
        return [f"expr_{c}" for c in spaces.expr_classes] + ["expr_label"]

    def row(self, value: np.ndarray, spaces: LabelSpaces, to_image: Any) -> dict[str, Any]:
        row: dict[str, Any] = {f"expr_{c}": float(p) for c, p in zip(spaces.expr_classes, value)}
        row["expr_label"] = spaces.expr_classes[int(np.argmax(value))]
        return row


TASK_SPECS.register(ExpressionSpec.name)(ExpressionSpec())
