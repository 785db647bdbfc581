"""Several datasets as one (``data.name=mix``), each face keeping its own labels and masks.

A recipe lists its sources under ``data.mix``; each entry is a ``data`` section of its own
(``name``, ``root``, its format's options under ``<name>``, ...) that inherits every shared key
it does not set from the enclosing ``data`` section, plus an optional ``weight`` and
``class_balance``::

    data:
      name: mix
      image_size: 112
      mix:
        class_balance: 1.0          # within each source, expression classes drawn ~ 1 / count
        sources:
          - {name: bp4d, root: /data/BP4D, bp4d: {fold: 1}, weight: 1}
          - {name: rafdb, root: /data/RAF-DB, weight: 1}

Label spaces are the union of the sources' (AUs by FACS number, attributes by name); a face
is masked for every AU or attribute its source does not label. ``image_size``,
``num_expr_classes`` and ``num_landmarks`` are shared, so set them at the ``data`` level.

Sampling (training split only; validation and test are plain concatenations):

- no ``weight`` anywhere and ``class_balance: 0``: every face once per epoch;
- ``weight``: the share of each epoch's N samples (N = all training faces) drawn from that
  source; set it on every source or on none;
- ``class_balance`` b (per source, else ``data.mix.class_balance``): faces of expression class c are drawn with
  weight ``count(c) ** -b`` (0 = natural frequencies, 1 = balanced classes; faces without an
  expression label count as one more class); sampling is then with replacement.

The draw is seeded by ``data.seed``; :meth:`MixedDataset.set_epoch` redraws it for an epoch,
and :meth:`MixedDataset.composition` (also printed when the training split is built) gives
the samples per source of the current epoch. ``batch["index"]`` is always the face's
position in the concatenation, so per-sample method state stays keyed by face.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import numpy as np
import torch
from torch.utils.data import Dataset

from facemtl.config import DataConfig, DatasetOptions, config_from_dict, dataset_options, migrate_data
from facemtl.data.dataset import Batch, FaceDataset
from facemtl.data.record_dataset import LazyImages
from facemtl.errors import FacemtlError
from facemtl.labels import LabelSpaces
from facemtl.registry import DATASETS, TASK_SPECS, ordered_tasks
from facemtl.tasks import spec

SHARED_KEYS = ("image_size", "num_expr_classes", "num_landmarks")
#: Keys of a source entry that are about sampling it, not about the dataset.
ENTRY_KEYS = ("weight", "class_balance")


@dataclass
class MixOptions(DatasetOptions):
    """``data.mix.*``: the sources and the class balance of the training draw."""

    sources: list[dict[str, Any]] = field(default_factory=list)  # one data section (+ weight, class_balance) each
    class_balance: float = 0.0  # train: expression classes drawn with weight count ** -class_balance
    moved: ClassVar[dict[str, str]] = {"sources": "sources", "class_balance": "class_balance"}

    def check(self, data: DataConfig) -> None:
        if self.class_balance < 0:
            raise FacemtlError(f"data.mix.class_balance={self.class_balance}; expected >= 0")
        source_configs(data)  # each source against its own format's options
        source_balances(data)

    @classmethod
    def migrate(cls, values: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
        """Old sources inherited the mix's flat keys (``fold``, ...): each takes them into its own section."""
        inherited = {k: v for k, v in old.items() if k not in cls.moved}
        sources = []
        for entry in values.get("sources") or []:
            if not isinstance(entry, dict):
                return values  # not a list of sections: left for the check to report
            own = {k: entry[k] for k in ENTRY_KEYS if k in entry}
            sources.append({**migrate_data({**inherited, **{k: v for k, v in entry.items() if k not in own}}), **own})
        return {**values, "sources": sources} if "sources" in values else values


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
    """A source's labels and masks in the union spaces: every task present (unlabelled where the
    source lacks it), and per-column labels (AUs, attributes) placed by name, the columns the
    source does not label masked."""
    n = len(part)
    labels: dict[str, torch.Tensor] = {}
    mask: dict[str, torch.Tensor] = {}
    for name in ordered_tasks(TASK_SPECS.names()):
        task = spec(name)
        labels[name], mask[name] = (torch.from_numpy(array) for array in task.empty_labels(n, spaces))
        if name not in part.labels:
            continue
        if mask[name].dim() == 2:  # one column per named label (AUs, attributes): the source's own
            columns = [task.label_names(spaces).index(label) for label in task.label_names(part.label_spaces)]
            if columns:
                labels[name][:, columns] = part.labels[name].to(labels[name].dtype)
                mask[name][:, columns] = part.mask[name]
        else:
            labels[name], mask[name] = part.labels[name].clone(), part.mask[name].clone()
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
    """Each source's full :class:`DataConfig` (inheriting the mix's shared keys) and the weights.

    Each entry is parsed as a recipe's ``data`` section (flat keys of earlier versions are
    errors); :meth:`MixOptions.migrate` has already moved those of a stored config.
    """
    options = MixOptions.of(config)
    if not options.sources:
        raise FacemtlError("data.name=mix needs data.mix.sources: a list of {name: ..., root: ...} entries")
    base = {f.name: getattr(config, f.name) for f in fields(config) if f.name != "options"}
    out, weights = [], []
    for i, entry in enumerate(options.sources):
        where = f"data.mix.sources[{i}]"
        if not isinstance(entry, dict):
            raise FacemtlError(f"{where}: expected a mapping {{name: ..., root: ...}}, got {entry!r}")
        weights.append(entry.get("weight"))
        entry = {k: v for k, v in entry.items() if k not in ENTRY_KEYS}
        name = entry.get("name")
        if name in (None, "mix") or "mix" in entry:
            raise FacemtlError(f"{where}: needs a dataset name (not mix, no nested sources)")
        for key in SHARED_KEYS:
            if key in entry and entry[key] != base[key]:
                raise FacemtlError(f"{where}.{key}: shared by all sources; set data.{key} instead")
        try:
            out.append(config_from_dict({"data": {**base, **entry}}, migrate=False).data)
        except FacemtlError as err:
            raise FacemtlError(f"{where} ({name}): {err}") from None
    given = [w is not None for w in weights]
    if any(given) and not all(given):
        raise FacemtlError("data.mix.sources: set weight on every source or on none")
    if any(given) and (any(not isinstance(w, (int, float)) or w < 0 for w in weights) or sum(weights) <= 0):
        raise FacemtlError(f"data.mix.sources weights must be non-negative numbers with a positive sum, got {weights}")
    return out, [float(w) for w in weights] if all(given) else None


def source_balances(config: DataConfig) -> list[float]:
    """Each source's ``class_balance``: its own, else ``data.mix.class_balance``."""
    options = MixOptions.of(config)
    balances = [entry.get("class_balance", options.class_balance) for entry in options.sources]
    for i, b in enumerate(balances):
        if not isinstance(b, (int, float)) or isinstance(b, bool) or b < 0:
            raise FacemtlError(f"data.mix.sources[{i}].class_balance={b!r}; expected a number >= 0")
    return [float(b) for b in balances]


@DATASETS.register("mix")
@dataset_options(MixOptions)
def mix(config: DataConfig, splits: tuple[str, ...] = ("train", "val", "test")) -> dict[str, MixedDataset]:
    """Several registered datasets as one, in the union of their label spaces (see the module docstring)."""
    configs, weights = source_configs(config)
    balances = source_balances(config)
    built = [DATASETS.get(c.name)(c, splits) for c in configs]
    names = [c.name if [d.name for d in configs].count(c.name) == 1 else f"{c.name}#{i}" for i, c in enumerate(configs)]
    spaces = union_spaces([next(iter(b.values())).label_spaces for b in built])
    out = {}
    for split in splits:
        out[split] = MixedDataset([b[split] for b in built], names, spaces, weights,
                                  balances, config.seed, resample=split == "train")
    if "train" in out:
        counts = out["train"].composition()
        total = max(sum(counts.values()), 1)
        print("mix train epoch: " + ", ".join(f"{k} {v} ({100 * v / total:.1f}%)" for k, v in counts.items()), flush=True)
    return out

