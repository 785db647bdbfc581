"""Adding a task is one spec: a toy task registered here alone trains, evaluates and predicts end to end.

The toy task regresses a face crop's mean brightness. Nothing in the library knows it:
the test registers its spec, hands the trainer its own datasets, and reads the toy
metrics from ``metrics.json``, the metrics table and the CSV column the spec declares.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from facemtl.config import load_config
from facemtl.data import FaceDataset
from facemtl.engine import Trainer
from facemtl.engine.evaluate import format_metrics
from facemtl.labels import LabelSpaces
from facemtl.registry import TASK_SPECS
from facemtl.tasks import TaskSpec, spec


class BrightnessSpec(TaskSpec):
    """``toy``: the crop's mean brightness in [0, 1], one value per face."""

    name = "toy"
    title = "Brightness"
    headline = ("mae",)

    def output_size(self, spaces: LabelSpaces) -> int:
        return 1

    def loss(self, outputs: dict[str, Any], labels: torch.Tensor, mask: torch.Tensor, options: Any) -> torch.Tensor:
        from facemtl.losses import masked_regression

        return masked_regression(outputs[self.name], labels, mask, "mse")

    def metrics(self, pred: np.ndarray, label: np.ndarray, mask: np.ndarray, spaces: LabelSpaces,
                **options: Any) -> dict[str, Any]:
        return {"mae": float(np.abs(pred[mask] - label[mask]).mean())}

    def primary_score(self, result: dict[str, Any]) -> float:
        return -result["mae"]

    def columns(self, spaces: LabelSpaces) -> list[str]:
        return ["toy_brightness"]

    def row(self, value: np.ndarray, spaces: LabelSpaces, to_image: Any) -> dict[str, Any]:
        return {"toy_brightness": float(value[0])}


@pytest.fixture
def toy_task():
    TASK_SPECS.register("toy")(BrightnessSpec())
    yield
    TASK_SPECS.unregister("toy")


def brightness_faces(count: int, seed: int) -> FaceDataset:
    """Noise images at random brightness levels, labelled with their mean brightness."""
    rng = np.random.default_rng(seed)
    level = rng.uniform(0.1, 0.9, size=(count, 1, 1, 1))
    images = np.clip(level + rng.normal(0, 0.1, size=(count, 32, 32, 3)), 0, 1)
    images = (images * 255).astype(np.uint8)
    target = images.reshape(count, -1).mean(axis=1, keepdims=True).astype(np.float32) / 255
    return FaceDataset(images, {"toy": target}, {"toy": np.ones(count, bool)}, LabelSpaces())


def test_unknown_task_lists_the_registered_ones():
    with pytest.raises(Exception, match="unknown task 'toy'.*valid tasks: .*expr"):
        load_config(None, ["model.tasks=toy"])


def test_toy_task_trains_evaluates_and_predicts(toy_task, tmp_path):
    datasets = {"train": brightness_faces(256, 0), "val": brightness_faces(64, 1), "test": brightness_faces(64, 2)}
    config = load_config(None, [
        "model.tasks=toy", "model.backbone=test_tiny", "data.image_size=32", "train.epochs=6", "train.batch_size=32",
        "train.lr=0.003", "train.progress=false", "train.seed=0",
    ])
    metrics = Trainer(config, tmp_path / "run", datasets=datasets).fit()

    label = datasets["test"].labels["toy"].numpy()
    constant_mae = float(np.abs(label - label.mean()).mean())  # the best prediction that ignores the image
    assert metrics["test"]["toy"]["mae"] < 0.5 * constant_mae
    assert "toy" in format_metrics(metrics) and "mae" in format_metrics(metrics)

    from facemtl import FaceAnalyzer

    faces = [datasets["test"].images[i].numpy() for i in range(4)]
    frame = FaceAnalyzer(tmp_path / "run", detector="none").predict(faces)
    assert list(frame.columns).count("toy_brightness") == 1
    predicted = frame["toy_brightness"].to_numpy()
    assert np.abs(predicted - label[:4, 0]).mean() < constant_mae


def test_spec_of_a_builtin_task_names_its_columns():
    spaces = LabelSpaces(au_names=("AU1", "AU12"))
    assert spec("au").columns(spaces) == ["AU01_c", "AU12_c", "AU01_p", "AU12_p"]
    assert spec("lmk").output_size(spaces) == 10
