"""Records -> batches in the batch format of :mod:`facemtl.data.dataset`.

Two ways, identical batches:

- :class:`RecordDataset` decodes, crops and resizes per batch (``data.load=lazy``; large
  datasets such as AffectNet; DataLoader workers parallelise it via ``train.num_workers``);
- :func:`to_dataset` with ``data.load=memory`` decodes every face once into an in-memory
  :class:`~facemtl.data.dataset.FaceDataset` (small datasets; ``auto`` picks it when a split
  fits :data:`MEMORY_BUDGET`). Both go through :meth:`RecordDataset.image`, and labels are
  computed once from the records, so the two batch dicts are equal element for element.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch.utils.data import Dataset

from facemtl.config import DataConfig
from facemtl.data.dataset import Batch, FaceDataset
from facemtl.data.images import crop_resize, face_rects, landmark_labels, read_image, to_rgb
from facemtl.data.records import SPLITS, Records, split_records
from facemtl.errors import FacemtlError
from facemtl.geometry import apply, similarity_transform, to_crop_pixels, warp_face
from facemtl.labels import five_point_landmarks

#: ``data.load=auto`` keeps a split in RAM when its decoded faces take at most this many bytes.
MEMORY_BUDGET = 1 << 30
_CHOICES = {"load": ("auto", "memory", "lazy")}


def check_options(config: DataConfig) -> None:
    """Range and choice checks of the real-dataset keys of :class:`DataConfig`, and the format's own.

    ``load_config`` has run the format's ``data.<name>`` check already; this repeats it (cheap)
    for a :class:`DataConfig` built in code and handed to a builder directly.
    """
    for key, choices in _CHOICES.items():
        if getattr(config, key) not in choices:
            raise FacemtlError(f"data.{key}={getattr(config, key)!r} is not valid; choose from: {', '.join(choices)}")
    for key in ("val_fraction", "test_fraction"):
        if not 0.0 <= getattr(config, key) < 1.0:
            raise FacemtlError(f"data.{key}={getattr(config, key)} is out of range; expected 0 <= {key} < 1")
    if config.options is not None:
        config.options.check(config)


def record_labels(records: Records, crop_points: np.ndarray | None, num_landmarks: int) -> tuple[dict, dict]:
    """Batch-format label and mask arrays of every task (unlabelled tasks fully masked).

    ``crop_points`` are the records' landmarks in crop coordinates ([0, 1]; NaN = none).
    """
    n = len(records)
    labels = {
        "expr": np.where(records.expr >= 0, records.expr, 0).astype(np.int64),
        "au": np.nan_to_num(records.au, nan=0.0).astype(np.float32),
        "va": np.nan_to_num(records.va, nan=0.0).astype(np.float32),
        "attr": np.where(records.attr >= 0, records.attr, 0).astype(np.int64),
    }
    mask = {
        "expr": records.expr >= 0, "au": ~np.isnan(records.au), "va": ~np.isnan(records.va).any(axis=1),
        "attr": records.attr >= 0,
    }
    lmk = np.full((n, num_landmarks, 2), np.nan, np.float32)
    if crop_points is not None:
        points = crop_points
        if points.shape[1] == 68 and num_landmarks == 5:
            points = five_point_landmarks(points)  # NaN rows stay NaN
        elif points.shape[1] != num_landmarks:
            raise FacemtlError(
                f"{records.files[0] if records.files else 'dataset'}: labels {points.shape[1]} landmarks, "
                f"which cannot give data.num_landmarks={num_landmarks}; set data.num_landmarks={points.shape[1]}"
            )
        lmk = points.astype(np.float32)
    mask["lmk"] = ~np.isnan(lmk).any(axis=(1, 2))
    labels["lmk"] = np.nan_to_num(lmk, nan=0.0)
    return labels, mask


def corrupt_train(labels: dict, mask: dict, info: dict, config: DataConfig, num_classes: int) -> None:
    """Apply ``data.label_noise`` / ``data.label_fraction`` to a training split, in place.

    Same semantics as the synthetic benchmark: that exact fraction of the *labelled*
    expressions is flipped to a uniformly drawn other class (``info.expr_flipped``), and
    each task keeps its labels on that fraction of the faces (the crop never changes).
    """
    rng = np.random.default_rng([config.seed, 7])
    n = len(labels["expr"])
    if config.label_noise > 0:
        labelled = np.flatnonzero(mask["expr"])
        chosen = rng.choice(labelled, size=round(config.label_noise * len(labelled)), replace=False)
        labels["expr"][chosen] = (labels["expr"][chosen] + rng.integers(1, num_classes, size=len(chosen))) % num_classes
        info["expr_flipped"] = labels["expr"] != info["expr_clean"]
    for task, fraction in config.label_fraction.items():
        if fraction < 1.0 and task in mask:
            keep = np.zeros(n, dtype=bool)
            keep[rng.choice(n, size=round(fraction * n), replace=False)] = True
            mask[task] &= keep.reshape((n,) + (1,) * (mask[task].ndim - 1))


class LazyImages:
    """Read-only stand-in for :attr:`FaceDataset.images` (uint8 ``[N, S, S, 3]``) that decodes on access.

    Code written against in-memory datasets (``dataset.images[i]``, ``.shape``; e.g. the
    prediction grid) keeps working on lazy and mixed datasets.

    Args:
        fetch: positions -> uint8 ``[B, S, S, 3]`` tensor.
        length: N.
        size: S.
    """

    def __init__(self, fetch: Callable[[list[int]], torch.Tensor], length: int, size: int) -> None:
        self.fetch, self.length, self.size = fetch, length, size

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (self.length, self.size, self.size, 3)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, key: int | slice | list[int] | torch.Tensor) -> torch.Tensor:
        if isinstance(key, slice):
            return self.fetch(list(range(self.length))[key])
        if isinstance(key, (list, torch.Tensor, np.ndarray)):
            return self.fetch([int(i) for i in key])
        return self.fetch([int(key)])[0]


class RecordDataset(FaceDataset):
    """Faces decoded from their image files per batch; same API and batches as :class:`FaceDataset`.

    Args:
        records: the split's faces.
        config: ``image_size``, ``crop_margin`` and ``num_landmarks`` are used.
        train: apply the training-only corruptions (``label_noise``, ``label_fraction``).
    """

    def __init__(self, records: Records, config: DataConfig, train: bool = False) -> None:
        Dataset.__init__(self)  # not FaceDataset.__init__: it takes already decoded images
        self.records = records
        self.image_size = config.image_size
        margin = records.margin if config.crop_margin < 0 else config.crop_margin
        self.rects = face_rects(records.boxes, records.points, margin, len(records))
        crop_points = None if records.points is None else landmark_labels(records.points, self.rects)
        self.warps = self._align(config.align_template, crop_points)
        labels, mask = record_labels(records, crop_points, config.num_landmarks)
        info = {"expr_clean": labels["expr"].copy(), "expr_flipped": np.zeros(len(records), bool), **records.info}
        if train:
            corrupt_train(labels, mask, info, config, len(records.spaces.expr_classes))
        self.labels = {t: torch.from_numpy(np.ascontiguousarray(v)) for t, v in labels.items()}
        self.mask = {t: torch.from_numpy(np.ascontiguousarray(v)).bool() for t, v in mask.items()}
        self.info = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in info.items()}
        self.label_spaces = records.spaces
        self.images = LazyImages(self._uint8_images, len(records), config.image_size)

    def __len__(self) -> int:
        return len(self.records)

    def _align(self, template: list[list[float]], crop_points: np.ndarray | None) -> np.ndarray | None:
        """Per-face ``[2, 3]`` warps onto ``template`` (NaN rows: no landmarks, square crop).

        Rewrites ``crop_points`` in place for the aligned faces.
        """
        if not template or self.records.points is None or crop_points is None:
            return None
        target = np.asarray(template, np.float64)
        if target.shape != (5, 2):
            raise FacemtlError(f"data.align_template: expected 5 (x, y) points, got shape {list(target.shape)}")
        size = self.image_size
        sources = five_point_landmarks(self.records.points.astype(np.float64))
        warps = np.full((len(sources), 2, 3), np.nan)
        for i, points in enumerate(sources):
            if np.isnan(points).any():
                continue
            warps[i] = similarity_transform(points, to_crop_pixels(target, size))
            crop_points[i] = (apply(warps[i], self.records.points[i]) + 0.5) / size
        return warps

    def _uint8_images(self, indices: list[int]) -> torch.Tensor:
        size = self.image_size
        pixels = [self.image(i) for i in indices]
        return torch.from_numpy(np.stack(pixels) if pixels else np.zeros((0, size, size, 3), np.uint8))

    def image(self, i: int) -> np.ndarray:
        """Face ``i`` decoded, cropped and resized: RGB uint8 ``[S, S, 3]``.

        Raises:
            FacemtlError: naming the image file and the annotation line that lists it.
        """
        records = self.records
        if records.pixels is not None:
            full = to_rgb(records.pixels[i], bgr=False)
        else:
            try:
                full = read_image(records.path(i))
            except FacemtlError as err:
                raise FacemtlError(f"{err} (listed at {records.where(i)})") from None
        if self.warps is not None and not np.isnan(self.warps[i]).any():
            return warp_face(full, self.warps[i], self.image_size)
        return crop_resize(full, self.rects[i], self.image_size)

    def __getitems__(self, indices: list[int]) -> Batch:
        index = torch.as_tensor(indices, dtype=torch.long)
        return {
            "image": self._uint8_images([int(i) for i in indices]).permute(0, 3, 1, 2).float().div_(255.0),
            "index": index,
            "labels": {t: v[index] for t, v in self.labels.items()},
            "mask": {t: v[index] for t, v in self.mask.items()},
            "info": {k: v[index] for k, v in self.info.items()},
        }


def decode_all(dataset: RecordDataset) -> np.ndarray:
    """Every face of ``dataset`` as uint8 ``[N, S, S, 3]``, decoded by a few threads (OpenCV releases the GIL).

    Raises:
        FacemtlError: naming the first unreadable image and how many others there are.
    """
    size, n = dataset.image_size, len(dataset)
    out = np.zeros((n, size, size, 3), np.uint8)
    failures: list[str] = []

    def work(start: int) -> None:
        for i in range(start, min(start + 512, n)):
            try:
                out[i] = dataset.image(i)
            except FacemtlError as err:
                failures.append(str(err))

    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        list(pool.map(work, range(0, n, 512)))
    if failures:
        more = f"; and {len(failures) - 1} more unreadable images (facemtl data check lists them all)" if len(failures) > 1 else ""
        raise FacemtlError(min(failures) + more)
    return out


def to_dataset(records: Records, config: DataConfig, train: bool = False) -> FaceDataset:
    """A lazy :class:`RecordDataset` or, per ``data.load``, an in-memory :class:`FaceDataset`."""
    lazy = RecordDataset(records, config, train)
    mode = config.load
    if mode == "auto":
        mode = "memory" if len(records) * 3 * config.image_size**2 <= MEMORY_BUDGET else "lazy"
    if mode == "lazy" or len(records) == 0:
        return lazy
    images = decode_all(lazy)
    return FaceDataset(
        images,
        {t: v.numpy() for t, v in lazy.labels.items()},
        {t: v.numpy() for t, v in lazy.mask.items()},
        lazy.label_spaces,
        {k: v.numpy() for k, v in lazy.info.items()},
    )


def build_splits(
    records: Records, config: DataConfig, splits: tuple[str, ...], carve_test: bool = False
) -> dict[str, FaceDataset]:
    """The requested splits of a parsed dataset (the common tail of every format's builder).

    Splits the dataset does not define are carved out of *train* (:func:`split_records`);
    the training split gets the training-only corruptions.
    """
    check_options(config)
    records = split_records(records, config, carve_test)
    if "train" in splits and not (records.split == SPLITS.index("train")).any():
        raise FacemtlError(f"data.name={config.name}: no training faces found under data.root={config.root}")
    return {split: to_dataset(records.in_split(split), config, train=split == "train") for split in splits}
