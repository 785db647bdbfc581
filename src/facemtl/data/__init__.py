"""Datasets, batches with per-task masks, and the registry of dataset builders."""

import facemtl.data.formats  # noqa: F401  (registers the real dataset formats and "mix")
import facemtl.data.synthetic_dataset  # noqa: F401  (registers "synthetic")
from facemtl.data.augment import wrap_splits
from facemtl.data.dataset import FaceDataset, already_batched, move_batch
from facemtl.registry import DATASETS

__all__ = ["DATASETS", "FaceDataset", "already_batched", "build_datasets", "move_batch"]


def build_datasets(config, splits=("train", "val", "test")) -> dict[str, FaceDataset]:
    """Build the named dataset's splits from a :class:`~facemtl.config.DataConfig`.

    ``data.grey`` then applies to every split and ``data.augment`` to ``train``, whatever the
    dataset (``facemtl data check`` calls the builders directly: transforms change no label).
    """
    return wrap_splits(DATASETS.get(config.name)(config, splits), config)
