"""In-memory face datasets with per-task labels and masks, and the batches they yield.

A batch is a dict:

- ``image``: float ``[B, 3, H, W]`` in [0, 1];
- ``index``: long ``[B]``, the sample's position in its dataset (methods key per-sample state by it);
- ``labels``: ``{task: tensor}`` — ``expr`` long ``[B]``, ``au`` float ``[B, A]``,
  ``va`` float ``[B, 2]``, ``lmk`` float ``[B, K, 2]``, ``attr`` long ``[B, M]``;
- ``mask``: ``{task: bool tensor}`` — ``expr``/``va``/``lmk`` ``[B]``, ``au`` ``[B, A]``,
  ``attr`` ``[B, M]``; False where the label is missing (its value is then meaningless);
- ``info``: ``{name: tensor [B]}`` extra per-sample facts a benchmark knows (e.g. which
  expression labels were flipped), possibly empty.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from facemtl.labels import LabelSpaces, five_point_landmarks

Batch = dict[str, Any]


class FaceDataset(Dataset):
    """Faces held in memory as uint8 arrays, with labels and masks for any subset of tasks.

    Args:
        images: uint8 ``[N, H, W, 3]`` RGB.
        labels: ``{task: array}`` with the shapes of the batch format (leading dim N).
        mask: ``{task: bool array}``; a task absent from ``labels`` is simply unlabelled.
        label_spaces: what the labels mean.
        info: optional ``{name: array [N]}`` passed through to batches.
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: dict[str, np.ndarray],
        mask: dict[str, np.ndarray],
        label_spaces: LabelSpaces,
        info: dict[str, np.ndarray] | None = None,
    ) -> None:
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"images must be uint8 [N, H, W, 3], got {images.dtype} {images.shape}")
        self.images = torch.from_numpy(np.ascontiguousarray(images))
        self.labels = {t: torch.from_numpy(np.ascontiguousarray(v)) for t, v in labels.items()}
        self.mask = {t: torch.from_numpy(np.ascontiguousarray(v)).bool() for t, v in mask.items()}
        self.info = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in (info or {}).items()}
        self.label_spaces = label_spaces
        for name, array in {**self.labels, **self.mask, **self.info}.items():
            if len(array) != len(self.images):
                raise ValueError(f"{name}: {len(array)} rows for {len(self.images)} images")

    def __len__(self) -> int:
        return len(self.images)

    def __getitems__(self, indices: list[int]) -> Batch:
        """A whole batch at once (DataLoader calls this instead of per-item fetching)."""
        index = torch.as_tensor(indices, dtype=torch.long)
        images = self.images[index].permute(0, 3, 1, 2).float().div_(255.0)
        return {
            "image": images,
            "index": index,
            "labels": {t: v[index] for t, v in self.labels.items()},
            "mask": {t: v[index] for t, v in self.mask.items()},
            "info": {k: v[index] for k, v in self.info.items()},
        }

    def __getitem__(self, i: int) -> Batch:
        return self.__getitems__([i])

    def landmark_template(self) -> list[list[float]] | None:
        """Mean 5-point landmarks of the labelled faces, ``[5][2]`` in image-normalised (x, y).

        Stored in checkpoints as the alignment template: the inference pipeline warps a
        detected face so its 5 points land here, i.e. onto the crops the model was trained on.
        """
        if "lmk" not in self.labels or not bool(self.mask["lmk"].any()):
            return None
        points = self.labels["lmk"][self.mask["lmk"]].numpy().mean(axis=0)
        return five_point_landmarks(points).round(5).tolist()

    def set_epoch(self, epoch: int) -> None:
        """Called by the trainer before each epoch; a dataset that redraws per epoch (a mix) overrides it."""

    def composition(self) -> dict[str, int]:
        """Samples per source in the current epoch (a mix); empty for a single-source dataset."""
        return {}

    def label_counts(self) -> dict[str, int]:
        """Number of samples with at least one label, per task."""
        return {t: int(m.reshape(len(m), -1).any(dim=1).sum()) for t, m in self.mask.items()}


def already_batched(batch: Batch) -> Batch:
    """``collate_fn`` for datasets whose ``__getitems__`` returns a whole batch."""
    return batch


def move_batch(batch: Batch, device: torch.device) -> Batch:
    """Copy every tensor of a (nested) batch to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: move_batch(v, device) for k, v in batch.items()}
    return batch
