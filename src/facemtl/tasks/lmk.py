"""``lmk``: K facial landmarks (5-point MTFL or 68-point iBUG), (x, y) normalised by the crop size."""

from __future__ import annotations

from typing import Any

import numpy as np

from facemtl.labels import LabelSpaces, mirror_permutation
from facemtl.metrics import landmark_metrics
from facemtl.registry import TASK_SPECS
from facemtl.tasks.base import TaskSpec, ToImage


class LandmarkSpec(TaskSpec):
    """Labels: ``[N, K, 2]`` with one flag per sample; metrics: NME (inter-ocular), failure rate, AUC;
    selection score ``1 - NME``. Its head reads the feature map (positions need spatial layout).
    CSV, in original-image pixels: ``x_i``, ``y_i`` for the 68 iBUG points (OpenFace's names and
    meaning), ``lmk5_x_i``, ``lmk5_y_i`` for the 5-point scheme."""

    name = "lmk"
    title = "Landmarks"
    column_order = 0
    headline = ("nme", "failure_rate", "auc")

    def output_size(self, spaces: LabelSpaces) -> int:
        return 2 * spaces.num_landmarks

    def label_shape(self, spaces: LabelSpaces) -> tuple[tuple[int, ...], tuple[int, ...]]:
        return (spaces.num_landmarks, 2), ()

    def build_head(self, in_features: int, spaces: LabelSpaces, spatial: bool, options: dict[str, Any]) -> Any:
        from facemtl.models.heads import LandmarkHead  # torch: absent from ONNX-only inference installs

        return LandmarkHead(self.name, in_features, spaces.num_landmarks, spatial)

    def loss(self, outputs: dict[str, Any], labels: Any, mask: Any, options: Any) -> Any:
        from facemtl.losses import masked_regression  # torch: absent from ONNX-only inference installs

        return masked_regression(outputs[self.name], labels, mask, options.lmk_loss)

    def metrics(self, pred: np.ndarray, label: np.ndarray, mask: np.ndarray, spaces: LabelSpaces,
                **options: Any) -> dict[str, Any]:
        return landmark_metrics(pred[mask], label[mask])

    def primary_score(self, result: dict[str, Any]) -> float:
        return 1.0 - result["nme"]

    def unmirror(self, value: np.ndarray, spaces: LabelSpaces) -> np.ndarray:
        """Reflect (``x -> 1 - x`` in crop coordinates) and relabel left <-> right."""
        points = value[:, list(mirror_permutation(spaces.num_landmarks))].copy()
        points[..., 0] = 1.0 - points[..., 0]
        return points

    def columns(self, spaces: LabelSpaces) -> list[str]:
        x, y = _prefixes(spaces.num_landmarks)
        return [f"{x}{i}" for i in range(spaces.num_landmarks)] + [f"{y}{i}" for i in range(spaces.num_landmarks)]

    def row(self, value: np.ndarray, spaces: LabelSpaces, to_image: ToImage) -> dict[str, Any]:
        points = to_image(value)
        x, y = _prefixes(spaces.num_landmarks)
        return {**{f"{x}{i}": float(v) for i, v in enumerate(points[:, 0])},
                **{f"{y}{i}": float(v) for i, v in enumerate(points[:, 1])}}


def _prefixes(num_points: int) -> tuple[str, str]:
    """OpenFace's ``x_i``/``y_i`` mean the 68 iBUG points: only a 68-point model writes them;
    other schemes carry their size (``lmk5_x_0`` ... for the 5-point one)."""
    return ("x_", "y_") if num_points == 68 else (f"lmk{num_points}_x_", f"lmk{num_points}_y_")


TASK_SPECS.register(LandmarkSpec.name)(LandmarkSpec())
