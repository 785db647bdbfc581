"""``attr``: named categorical face attributes (gender, smile, glasses, pose...), one classifier each."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from facemtl.labels import LabelSpaces
from facemtl.metrics import attribute_metrics
from facemtl.registry import TASK_SPECS
from facemtl.tasks.base import TaskSpec, softmax


class AttributeSpec(TaskSpec):
    """Labels: class id per attribute ``[N, M]`` with a per-entry mask; outputs ``{name: logits}``;
    metrics: accuracy per attribute (selection: their mean). Raw outputs are named ``attr_<name>``."""

    name = "attr"
    title = "Attributes"
    label_dtype = "int64"
    column_order = 4

    def output_size(self, spaces: LabelSpaces) -> int:
        return sum(len(c) for c in spaces.attributes.values())

    def label_shape(self, spaces: LabelSpaces) -> tuple[tuple[int, ...], tuple[int, ...]]:
        return (len(spaces.attributes),), (len(spaces.attributes),)

    def build_head(self, in_features: int, spaces: LabelSpaces, spatial: bool, options: dict[str, Any]) -> Any:
        from facemtl.models.heads import AttributeHead  # torch: absent from ONNX-only inference installs

        return AttributeHead(self.name, in_features, spaces.attributes)

    def loss(self, outputs: dict[str, Any], labels: Any, mask: Any, options: Any) -> Any:
        from facemtl.losses import attribute_cross_entropy  # torch: absent from ONNX-only inference installs

        return sum(attribute_cross_entropy(outputs[self.name], labels, mask).values())

    def label_names(self, spaces: LabelSpaces) -> tuple[str, ...]:
        return tuple(spaces.attributes)

    def decode(self, output: Any) -> np.ndarray:
        import torch  # torch: absent from ONNX-only inference installs

        return torch.stack([logits.argmax(dim=1) for logits in output.values()], dim=1).cpu().numpy()

    def metrics(self, pred: np.ndarray, label: np.ndarray, mask: np.ndarray, spaces: LabelSpaces,
                **options: Any) -> dict[str, Any]:
        return attribute_metrics(label, pred, list(spaces.attributes), mask=mask)

    def primary_score(self, result: dict[str, Any]) -> float:
        return float(np.mean([v["accuracy"] for v in result.values()]))

    def table_rows(self, result: dict[str, Any]) -> list[tuple[str, Any]]:
        return [(f"{name} accuracy", value.get("accuracy")) for name, value in result.items()]

    def output_names(self, spaces: LabelSpaces) -> list[str]:
        return [f"attr_{name}" for name in spaces.attributes]

    def flatten(self, output: Any, spaces: LabelSpaces) -> dict[str, Any]:
        return {f"attr_{name}": output[name] for name in spaces.attributes}

    def postprocess(self, raw: dict[str, np.ndarray], spaces: LabelSpaces) -> dict[str, np.ndarray]:
        return {name: softmax(raw[f"attr_{name}"]) for name in spaces.attributes}

    def unmirror(self, value: dict[str, np.ndarray], spaces: LabelSpaces) -> dict[str, np.ndarray]:
        """The ``pose`` classes, ordered left profile ... right profile, are reversed (as training's flip)."""
        return {**value, "pose": value["pose"][:, ::-1]} if "pose" in value else value

    def average(self, values: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        return {name: np.mean(np.stack([v[name] for v in values]), axis=0) for name in values[0]}

    def ensemble(self, outputs: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Per attribute, the members' mean probabilities (argmax-compatible with logits)."""
        import torch  # torch: absent from ONNX-only inference installs

        return {name: torch.stack([o[name].softmax(1) for o in outputs]).mean(0) for name in outputs[0]}

    def columns(self, spaces: LabelSpaces) -> list[str]:
        columns: list[str] = []
        for name, classes in spaces.attributes.items():
            columns += [f"attr_{name}"] + [f"attr_{name}_{c}" for c in classes]
        return columns

    def row(self, value: dict[str, np.ndarray], spaces: LabelSpaces, to_image: Any) -> dict[str, Any]:
        row: dict[str, Any] = {}
        for name, probs in value.items():
            classes = spaces.attributes[name]
            row[f"attr_{name}"] = classes[int(np.argmax(probs))]
            row.update({f"attr_{name}_{c}": float(p) for c, p in zip(classes, probs)})
        return row


TASK_SPECS.register(AttributeSpec.name)(AttributeSpec())
