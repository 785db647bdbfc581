"""A grid of faces annotated with every task's prediction (and the truth, when known)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from facemtl.data.dataset import FaceDataset
from facemtl.engine.evaluate import collect_predictions


def _caption(task_preds: dict[str, Any], task_labels: dict[str, Any], i: int, spaces: Any) -> list[str]:
    lines = []
    if "expr" in task_preds:
        pred, true = spaces.expr_classes[task_preds["expr"][i]], spaces.expr_classes[task_labels["expr"][i]]
        lines.append(f"{pred}" + ("" if pred == true else f" (true {true})"))
    if "au" in task_preds:
        active = [spaces.au_names[j] for j in np.flatnonzero(task_preds["au"][i] >= 0.5)]
        lines.append(" ".join(n[2:] for n in active[:6]) or "no AU")
    if "va" in task_preds:
        v, a = task_preds["va"][i]
        lines.append(f"V {v:+.2f} A {a:+.2f}")
    if "attr" in task_preds:
        words = []
        for (name, classes), c in zip(spaces.attributes.items(), task_preds["attr"][i]):
            if tuple(classes) == ("no", "yes"):  # a yes/no attribute reads as its name when present
                words += [name] if c == 1 else []
            else:
                words.append(classes[c].replace("_", " "))
        lines.append(" ".join(words))
    return lines


def save_prediction_grid(
    predict: Any, dataset: FaceDataset, tasks: tuple[str, ...], path: str | Path,
    device: torch.device, num: int = 16, columns: int = 8,
) -> Path:
    """Predict the first ``num`` faces of ``dataset`` and save an annotated PNG grid.

    Landmarks: predicted in red, ground truth in green. Caption: expression (with the true
    class when wrong), active AUs by number, valence/arousal, attributes.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = min(num, len(dataset))
    collected = collect_predictions(predict, dataset, tasks, device, indices=list(range(count)))
    preds = {t: v["pred"] for t, v in collected.items()}
    labels = {t: v["label"] for t, v in collected.items()}
    rows = (count + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(columns * 1.9, rows * 2.5), squeeze=False)
    size = dataset.images.shape[1]
    for i, axis in enumerate(axes.flat):
        axis.axis("off")
        if i >= count:
            continue
        axis.imshow(dataset.images[i].numpy())
        if "lmk" in preds:
            axis.scatter(labels["lmk"][i][:, 0] * size, labels["lmk"][i][:, 1] * size, s=6, c="lime")
            axis.scatter(preds["lmk"][i][:, 0] * size, preds["lmk"][i][:, 1] * size, s=6, c="red")
        axis.set_title("\n".join(_caption(preds, labels, i, dataset.label_spaces)), fontsize=6.5)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
