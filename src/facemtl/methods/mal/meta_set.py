"""MAL's meta set: K AU-labelled *training* faces (never val/test), drawn with a seed of its own."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch

from facemtl.errors import FacemtlError
from facemtl.methods.base import Batch
from facemtl.methods.mal.history import labelled_samples


def draw_meta_set(au_mask: torch.Tensor, size: int, seed: int) -> torch.Tensor:
    """The meta set: ``size`` face indices drawn (seeded) among the faces with an AU label, sorted."""
    labelled = torch.nonzero(labelled_samples(au_mask)).flatten()
    if len(labelled) <= size:
        raise FacemtlError(f"method.meta_size={size} needs more AU-labelled training faces than that; "
                           f"the training set has {len(labelled)}")
    generator = torch.Generator().manual_seed(stream_seed(seed, -1))
    return labelled[torch.randperm(len(labelled), generator=generator)[:size]].sort().values


def meta_batch_indices(meta_index: torch.Tensor, batch_size: int, seed: int, iteration: int) -> list[int]:
    """The faces of one meta batch, drawn by a generator seeded by (``seed``, ``iteration``): resume-exact."""
    generator = torch.Generator().manual_seed(stream_seed(seed, iteration))
    picks = torch.randperm(len(meta_index), generator=generator)[: min(batch_size, len(meta_index))]
    return meta_index.cpu()[picks].sort().values.tolist()


def drop_faces(batch: Batch, faces: torch.Tensor) -> Batch:
    """The batch without the faces whose ``index`` is in ``faces``."""
    keep = ~torch.isin(batch["index"], faces.to(batch["index"].device))
    return batch if bool(keep.all()) else _select(batch, keep)


def face_view(dataset: Any) -> Any:
    """The training set indexed by face (``batch["index"]``), ignoring a mix's per-epoch draw."""
    if hasattr(dataset, "base") and hasattr(dataset, "augment"):  # TransformedDataset
        view = copy.copy(dataset)
        view.base = face_view(dataset.base)
        return view
    if getattr(dataset, "order", None) is not None:  # MixedDataset with resampling
        view = copy.copy(dataset)
        view.order = None
        return view
    return dataset


def stream_seed(seed: int, stream: int) -> int:
    """A seed of its own for (meta_seed, stream): never the trainer's (seed, epoch) permutation seed."""
    return int(np.random.SeedSequence([seed, 0x3A1, stream + 1]).generate_state(1)[0])


def _select(batch: Batch, keep: torch.Tensor) -> Batch:
    """Rows ``keep`` of every per-sample tensor of a batch."""
    out: Batch = {}
    for key, value in batch.items():
        if isinstance(value, dict):
            out[key] = {k: v[keep] for k, v in value.items()}
        else:
            out[key] = value[keep]
    return out
