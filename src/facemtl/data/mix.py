"""Several datasets as one (``data.name=mix``), each face keeping its own labels and masks.

A recipe lists its sources; each entry is a ``data`` section of its own (``name``, ``root``,
``fold``, ...) that inherits every key it does not set from the enclosing ``data`` section,
plus an optional ``weight``::

    data:
      name: mix
      image_size: 112
      class_balance: 1.0          # within each source, expression classes drawn ~ 1 / count
      sources:
        - {name: bp4d, root: /data/BP4D, fold: 1, weight: 1}
        - {name: rafdb, root: /data/RAF-DB, weight: 1}

Label spaces are the union of the sources' (AUs by FACS number, attributes by name); a face
is masked for every AU or attribute its source does not label. ``image_size``,
``num_expr_classes`` and ``num_landmarks`` are shared, so set them at the ``data`` level.

Sampling (training split only; validation and test are plain concatenations):

- no ``weight`` anywhere and ``class_balance: 0``: every face once per epoch;
- ``weight``: the share of each epoch's N samples (N = all training faces) drawn from that
  source; set it on every source or on none;
- ``class_balance`` b (per source or inherited): faces of expression class c are drawn with
  weight ``count(c) ** -b`` (0 = natural frequencies, 1 = balanced classes; faces without an
  expression label count as one more class); sampling is then with replacement.

The draw is seeded by ``data.seed``; :meth:`MixedDataset.set_epoch` redraws it for an epoch,
and :meth:`MixedDataset.composition` (also printed when the training split is built) gives
the samples per source of the current epoch. ``batch["index"]`` is always the face's
position in the concatenation, so per-sample method state stays keyed by face.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch.utils.data import Dataset

from facemtl.config import DataConfig, config_from_dict
from facemtl.data.dataset import Batch, FaceDataset
from facemtl.data.record_dataset import LazyImages
from facemtl.errors import FacemtlError
from facemtl.labels import LabelSpaces
from facemtl.registry import DATASETS

SHARED_KEYS = ("image_size", "num_expr_classes", "num_landmarks")


def union_spaces(spaces: list[LabelSpaces]) -> LabelSpaces:
    """The label spaces covering every source: AU union ordered by FACS number, attribute union."""
    first = spaces[0]
    for other in spaces[1:]:
        if other.expr_classes != first.expr_classes or other.num_landmarks != first.num_landmarks:
            raise FacemtlError("mixed sources disagree on expression classes or landmark count; set them at data level")
    aus = sorted({a for s in spaces for a in s.au_names}, key=lambda a: int(a[2:]) if a[2:].isdigit() else 1 << 30)
    attributes: dict[str, tuple[str, ...]] = {}
    for s in spaces:
        for name, classes in s.attributes.items():
            if attributes.setdefault(name, classes) != classes:
                raise FacemtlError(f"attribute {name!r} has different classes in two sources: {attributes[name]} vs {classes}")
    return LabelSpaces(first.expr_classes, tuple(aus), first.num_landmarks, attributes)


def _remap(part: FaceDataset, spaces: LabelSpaces) -> tuple[dict, dict]:
    """A source's labels and masks in the union spaces (unlabelled AU / attribute columns masked)."""
    n = len(part)
    shapes = {"expr": (n,), "va": (n, 2), "lmk": (n, spaces.num_landmarks, 2)}
    labels = {t: part.labels[t].clone() if t in part.labels else torch.zeros(shape, dtype=torch.int64 if t == "expr"
              else torch.float32) for t, shape in shapes.items()}
    mask = {t: part.mask[t].clone() if t in part.mask else torch.zeros(n, dtype=torch.bool) for t in shapes}
    for task, names, own in (("au", spaces.au_names, part.label_spaces.au_names),
                             ("attr", list(spaces.attributes), list(part.label_spaces.attributes))):
        dtype = torch.float32 if task == "au" else torch.int64
        labels[task] = torch.zeros((n, len(names)), dtype=dtype)
        mask[task] = torch.zeros((n, len(names)), dtype=torch.bool)
        columns = [names.index(name) for name in own]
        if columns and task in part.labels:
            labels[task][:, columns] = part.labels[task].to(dtype)
            mask[task][:, columns] = part.mask[task]
    return labels, mask


def _class_weights(expr: torch.Tensor, labelled: torch.Tensor, balance: float) -> np.ndarray:
    """Per-face sampling weights ``count(class) ** -balance`` (unlabelled faces: one extra class)."""
    classes = np.where(labelled.numpy(), expr.numpy(), -1)
    _, inverse, counts = np.unique(classes, return_inverse=True, return_counts=True)
    weights = counts[inverse].astype(np.float64) ** -balance
    return weights / weights.sum()


class MixedDataset(FaceDataset):
    """The concatenation of several datasets in a union label space, optionally resampled.

    Args:
        parts: the sources' datasets of one split (same image size).
        names: one name per source (composition logs).
        spaces: the union label spaces.
        weights: epoch share per source, or None (natural sizes).
        balances: per-source ``class_balance`` exponents.
        seed: seeds the draw.
        resample: draw an epoch composition (training split); False = each face once, in order.
    """

    def __init__(self, parts: list[FaceDataset], names: list[str], spaces: LabelSpaces, weights: list[float] | None,
                 balances: list[float], seed: int, resample: bool) -> None:
        Dataset.__init__(self)  # labels are rebuilt in the union space; images come from the parts
        self.parts, self.names, self.label_spaces = parts, names, spaces
        self.sizes = [len(p) for p in parts]
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)
        remapped = [_remap(p, spaces) for p in parts]
        self.labels = {t: torch.cat([r[0][t] for r in remapped]) for t in remapped[0][0]}
        self.mask = {t: torch.cat([r[1][t] for r in remapped]) for t in remapped[0][1]}
        self.info = self._merge_info()
        self.weights, self.balances, self.seed = weights, balances, seed
        needed = resample and (weights is not None or any(b != 0 for b in balances))
        self.order: np.ndarray | None = None
        if needed:
            self.set_epoch(0)
        size = next((p.images.shape[1] for p in parts if len(p)), 0)
        self.images = LazyImages(self._uint8_images, len(self), size)  # FaceDataset.images, decoded on access

    def _uint8_images(self, indices: list[int]) -> torch.Tensor:
        images = self.__getitems__(indices)["image"]  # k / 255 floats: * 255 and rounding restores k exactly
        return images.permute(0, 2, 3, 1).mul(255.0).round_().to(torch.uint8)

    def _merge_info(self) -> dict[str, torch.Tensor]:
        keys: dict[str, torch.Tensor] = {}
        for part in self.parts:
            for key, value in part.info.items():
                keys.setdefault(key, value)
        info = {k: torch.cat([p.info[k] if k in p.info else torch.zeros((len(p),) + v.shape[1:], dtype=v.dtype)
                              for p in self.parts]) for k, v in keys.items()}
        info["source"] = torch.cat([torch.full((n,), i, dtype=torch.long) for i, n in enumerate(self.sizes)])
        return info

    def set_epoch(self, epoch: int) -> None:
        """Draw the samples of ``epoch`` (seeded by ``(seed, epoch)``); the length stays N."""
        rng = np.random.default_rng([self.seed, 11, epoch])
        total = int(self.offsets[-1])
        shares = np.asarray(self.weights if self.weights is not None else self.sizes, np.float64)
        exact = total * shares / shares.sum()
        counts = np.floor(exact).astype(np.int64)
        counts[np.argsort(counts - exact)[: total - counts.sum()]] += 1  # largest remainders
        picks = []
        for i, (count, part) in enumerate(zip(counts, self.parts)):
            if count == 0 or not len(part):
                continue
            if self.balances[i] == 0 and count <= len(part):
                local = rng.choice(len(part), size=count, replace=False)
            else:
                rows = slice(self.offsets[i], self.offsets[i + 1])
                p = _class_weights(self.labels["expr"][rows], self.mask["expr"][rows], self.balances[i])
                local = rng.choice(len(part), size=count, replace=True, p=p)
            picks.append(self.offsets[i] + np.sort(local))
        self.order = np.concatenate(picks) if picks else np.zeros(0, np.int64)

    def composition(self) -> dict[str, int]:
        """Samples per source in the current epoch."""
        if self.order is None:
            return dict(zip(self.names, self.sizes))
        source = np.searchsorted(self.offsets, self.order, side="right") - 1
        return {name: int((source == i).sum()) for i, name in enumerate(self.names)}

    def __len__(self) -> int:
        return int(self.offsets[-1]) if self.order is None else len(self.order)

    def __getitems__(self, indices: list[int]) -> Batch:
        real = np.asarray(indices, np.int64) if self.order is None else self.order[np.asarray(indices, np.int64)]
        source = np.searchsorted(self.offsets, real, side="right") - 1
        images: torch.Tensor | None = None
        for s in np.unique(source):
            rows = np.flatnonzero(source == s)
            part = self.parts[s].__getitems__((real[rows] - self.offsets[s]).tolist())["image"]
            if images is None:
                images = torch.empty((len(real),) + tuple(part.shape[1:]), dtype=part.dtype)
            images[torch.from_numpy(rows)] = part
        index = torch.from_numpy(real)
        return {
            "image": images if images is not None else torch.zeros((0, 3, 1, 1)),
            "index": index,
            "labels": {t: v[index] for t, v in self.labels.items()},
            "mask": {t: v[index] for t, v in self.mask.items()},
            "info": {k: v[index] for k, v in self.info.items()},
        }


def source_configs(config: DataConfig) -> tuple[list[DataConfig], list[float] | None]:
    """Each source's full :class:`DataConfig` (inheriting the mix's keys) and the weights."""
    if not config.sources:
        raise FacemtlError("data.name=mix needs data.sources: a list of {name: ..., root: ...} entries")
    base = {k: v for k, v in dataclasses.asdict(config).items() if k != "sources"}
    out, weights = [], []
    for i, entry in enumerate(config.sources):
        entry = dict(entry)
        weights.append(entry.pop("weight", None))
        name = entry.get("name")
        if name in (None, "mix") or "sources" in entry:
            raise FacemtlError(f"data.sources[{i}]: needs a dataset name (not mix, no nested sources)")
        for key in SHARED_KEYS:
            if key in entry and entry[key] != base[key]:
                raise FacemtlError(f"data.sources[{i}].{key}: shared by all sources; set data.{key} instead")
        try:
            out.append(config_from_dict({"data": {**base, **entry}}).data)
        except FacemtlError as err:
            raise FacemtlError(f"data.sources[{i}] ({name}): {err}") from None
    given = [w is not None for w in weights]
    if any(given) and not all(given):
        raise FacemtlError("data.sources: set weight on every source or on none")
    if any(given) and (any(not isinstance(w, (int, float)) or w < 0 for w in weights) or sum(weights) <= 0):
        raise FacemtlError(f"data.sources weights must be non-negative numbers with a positive sum, got {weights}")
    return out, [float(w) for w in weights] if all(given) else None


@DATASETS.register("mix")
def mix(config: DataConfig, splits: tuple[str, ...] = ("train", "val", "test")) -> dict[str, MixedDataset]:
    """Several registered datasets as one, in the union of their label spaces (see the module docstring)."""
    configs, weights = source_configs(config)
    built = [DATASETS.get(c.name)(c, splits) for c in configs]
    names = [c.name if [d.name for d in configs].count(c.name) == 1 else f"{c.name}#{i}" for i, c in enumerate(configs)]
    spaces = union_spaces([next(iter(b.values())).label_spaces for b in built])
    out = {}
    for split in splits:
        out[split] = MixedDataset([b[split] for b in built], names, spaces, weights,
                                  [c.class_balance for c in configs], config.seed, resample=split == "train")
    if "train" in out:
        counts = out["train"].composition()
        total = max(sum(counts.values()), 1)
        print("mix train epoch: " + ", ".join(f"{k} {v} ({100 * v / total:.1f}%)" for k, v in counts.items()), flush=True)
    return out

