"""Parsed annotation tables shared by every real-dataset format, and their split logic.

A format module (``facemtl.data.formats.<name>``) only *parses*: it fills a
:class:`RecordTable` with one row per face — image path (or pixels shipped inside the
annotation file), where the face was annotated (``file:line``), its split, optional face
box / source landmarks for cropping, and the labels it has, with sentinels where it has
none (expression ``-1``, AU / VA / landmarks ``NaN``, attribute ``-1``). Everything after
that is shared and lives here and in :mod:`facemtl.data.record_dataset`: carving a seeded,
group-exclusive validation (or test) split out of *train*, the training-only corruptions
(``data.label_noise``, ``data.label_fraction``), and turning records into batches.

Malformed input goes through :func:`problem`: it raises a :class:`FacemtlError` naming
``file:line`` — unless ``facemtl data check`` is collecting problems (:func:`collect_report`),
in which case the line is skipped and listed, so every problem is reported in one run.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from facemtl.config import DataConfig
from facemtl.errors import FacemtlError
from facemtl.labels import DEFAULT_ATTRIBUTES, EXPR_CLASSES_8, LabelSpaces

SPLITS: tuple[str, ...] = ("train", "val", "test")


# -- problems and notes ------------------------------------------------------------------
@dataclass
class DataReport:
    """What ``facemtl data check`` collects: malformed lines / unreadable images, and notes."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


_REPORT: ContextVar[DataReport | None] = ContextVar("facemtl_data_report", default=None)


@contextmanager
def collect_report() -> Iterator[DataReport]:
    """Within this block, malformed lines are skipped and collected instead of raised."""
    report = DataReport()
    token = _REPORT.set(report)
    try:
        yield report
    finally:
        _REPORT.reset(token)


def problem(where: str, message: str) -> None:
    """Report malformed input at ``where`` (``file:line`` or a path).

    Raises:
        FacemtlError: unless a :func:`collect_report` block is active (the caller then skips the item).
    """
    report = _REPORT.get()
    if report is None:
        raise FacemtlError(f"{where}: {message}")
    report.problems.append(f"{where}: {message}")


def note(message: str, warn: bool = False) -> None:
    """An informational fact (e.g. how many faces a label rule dropped), shown by ``data check``.

    ``warn=True`` also issues it as a warning, for facts a training run must not hide
    (e.g. faces framed differently from the rest).
    """
    report = _REPORT.get()
    if report is not None:
        report.notes.append(message)
    if warn:
        warnings.warn(message, stacklevel=3)


def collecting() -> bool:
    """True inside :func:`collect_report` (``facemtl data check``)."""
    return _REPORT.get() is not None


# -- label spaces ------------------------------------------------------------------------
def dataset_label_spaces(
    config: DataConfig, au_names: Sequence[str] = (), attributes: dict[str, tuple[str, ...]] | None = None
) -> LabelSpaces:
    """Label spaces of a real dataset: expression classes and K from the config, its own AUs.

    Every dataset keeps the configured expression classes and landmark count even when it
    labels neither (masks say so), so any two datasets of one recipe can be mixed and a
    checkpoint evaluated on another dataset.
    """
    return LabelSpaces(
        expr_classes=EXPR_CLASSES_8[: config.num_expr_classes],
        au_names=tuple(au_names),
        num_landmarks=config.num_landmarks,
        attributes=dict(DEFAULT_ATTRIBUTES if attributes is None else attributes),
    )


# -- records -----------------------------------------------------------------------------
@dataclass
class Records:
    """One row per face. Missing labels are sentinels: expr/attr ``-1``, au/va/points ``NaN``.

    Attributes:
        spaces: what the labels mean.
        root: folder the image paths are relative to.
        paths: bytes ``[N]`` (UTF-8) image paths; compact so DataLoader workers share them.
        files: annotation files; ``origin[:, 0]`` indexes them.
        origin: int32 ``[N, 2]`` (file index, 1-based line) where each face was annotated.
        split: int8 ``[N]``, index into :data:`SPLITS`.
        expr: int64 ``[N]`` class in ``spaces.expr_classes``.
        au: float32 ``[N, A]`` 0/1 occurrence per ``spaces.au_names``.
        va: float32 ``[N, 2]`` valence, arousal in [-1, 1].
        attr: int64 ``[N, M]`` class per attribute of ``spaces.attributes``.
        points: float32 ``[N, P, 2]`` landmarks in source pixels (labels and crop), or None.
        boxes: float32 ``[N, 4]`` face box (x, y, w, h) in source pixels, NaN rows = none, or None.
        pixels: uint8 ``[N, H, W(, 3)]`` images stored in the annotation file (FER2013 CSV), or None.
        groups: int64 ``[N]`` subject / video / image id; carved splits never cut a group.
        info: extra per-face arrays passed to batches (e.g. FERPlus ``expr_soft``).
        margin: the format's default crop margin (``data.crop_margin`` < 0 uses it).
    """

    spaces: LabelSpaces
    root: str
    paths: np.ndarray
    files: list[str]
    origin: np.ndarray
    split: np.ndarray
    expr: np.ndarray
    au: np.ndarray
    va: np.ndarray
    attr: np.ndarray
    points: np.ndarray | None
    boxes: np.ndarray | None
    pixels: np.ndarray | None
    groups: np.ndarray
    info: dict[str, np.ndarray]
    margin: float

    def __len__(self) -> int:
        return len(self.paths)

    def where(self, i: int) -> str:
        """``file:line`` where face ``i`` was annotated (just the file or folder when there are no lines)."""
        file_index, line = self.origin[i]
        return f"{self.files[file_index]}:{line}" if line > 0 else self.files[file_index]

    def path(self, i: int) -> str:
        """Absolute image path of face ``i``."""
        return os.path.join(self.root, self.paths[i].decode("utf-8"))

    def select(self, index: np.ndarray) -> Records:
        """The faces at ``index`` (bool mask or positions), in that order."""

        def take(array: np.ndarray | None) -> np.ndarray | None:
            return None if array is None else array[index]

        return replace(
            self, paths=self.paths[index], origin=self.origin[index], split=self.split[index],
            expr=self.expr[index], au=self.au[index], va=self.va[index], attr=self.attr[index],
            points=take(self.points), boxes=take(self.boxes), pixels=take(self.pixels),
            groups=self.groups[index], info={k: v[index] for k, v in self.info.items()},
        )

    def in_split(self, split: str) -> Records:
        return self.select(self.split == SPLITS.index(split))


class RecordTable:
    """Accumulates parsed faces column-wise, one :meth:`extend` per annotation chunk.

    Args:
        spaces: label spaces of the dataset.
        root: folder image paths are relative to.
        num_points: P, landmarks per face in the source annotation (0: none).
        margin: the format's default crop margin.
    """

    def __init__(self, spaces: LabelSpaces, root: str | Path, num_points: int = 0, margin: float = 0.0) -> None:
        self.spaces, self.root, self.num_points, self.margin = spaces, str(root), num_points, margin
        self.files: list[str] = []
        self.chunks: list[dict[str, np.ndarray]] = []

    def extend(
        self, file: str | Path, lines: Sequence[int], paths: Sequence[str], split: str | Sequence[str], **columns: object
    ) -> None:
        """Add ``n = len(paths)`` faces annotated in ``file`` at ``lines``.

        Keyword columns (each of length n, sentinels for missing values): ``expr``, ``au``
        ``[n, A]``, ``va`` ``[n, 2]``, ``attr`` ``[n, M]``, ``points`` ``[n, P, 2]``,
        ``boxes`` ``[n, 4]``, ``pixels``, ``groups`` (str or int ids; default: the path) and
        ``info_<name>`` for extra per-face arrays.
        """
        n = len(paths)
        if n == 0:
            return
        if str(file) not in self.files:
            self.files.append(str(file))
        splits = np.full(n, SPLITS.index(split), np.int8) if isinstance(split, str) else np.array(
            [SPLITS.index(s) for s in split], np.int8)
        chunk = {
            "paths": np.array([p.encode("utf-8") for p in paths], dtype=bytes),
            "origin": np.stack([np.full(n, self.files.index(str(file))), np.asarray(lines)], axis=1).astype(np.int32),
            "split": splits,
        }
        for name, value in columns.items():
            if value is not None:
                chunk[name] = np.asarray(value)
                if len(chunk[name]) != n:
                    raise ValueError(f"column {name}: {len(chunk[name])} rows for {n} paths")
        self.chunks.append(chunk)

    def _column(self, name: str, fill: float, shape: tuple[int, ...], dtype: type) -> np.ndarray:
        parts = [
            c[name].astype(dtype).reshape((len(c["paths"]),) + shape) if name in c
            else np.full((len(c["paths"]),) + shape, fill, dtype) for c in self.chunks
        ]
        return np.concatenate(parts) if parts else np.full((0,) + shape, fill, dtype)

    def build(self) -> Records:
        """All accumulated faces as :class:`Records`."""
        names = {k for c in self.chunks for k in c}
        if "pixels" in names and not all("pixels" in c for c in self.chunks):
            raise ValueError("either every chunk carries pixels or none does")

        def concat(key: str, empty: np.ndarray) -> np.ndarray:
            return np.concatenate([c[key] for c in self.chunks]) if self.chunks else empty

        # Group ids as UTF-8 bytes (paths are bytes already), numbered so splits compare ints.
        groups = [np.array([str(g).encode("utf-8") for g in c["groups"]], dtype=bytes) if "groups" in c else c["paths"]
                  for c in self.chunks]
        group_ids = np.unique(np.concatenate(groups), return_inverse=True)[1] if groups else np.zeros(0, np.int64)
        num_au, num_attr = len(self.spaces.au_names), len(self.spaces.attributes)
        return Records(
            spaces=self.spaces, root=self.root, files=list(self.files),
            paths=concat("paths", np.zeros(0, dtype=bytes)),
            origin=concat("origin", np.zeros((0, 2), np.int32)),
            split=concat("split", np.zeros(0, np.int8)),
            expr=self._column("expr", -1, (), np.int64),
            au=self._column("au", np.nan, (num_au,), np.float32),
            va=self._column("va", np.nan, (2,), np.float32),
            attr=self._column("attr", -1, (num_attr,), np.int64),
            points=self._column("points", np.nan, (self.num_points, 2), np.float32) if self.num_points else None,
            boxes=self._column("boxes", np.nan, (4,), np.float32) if "boxes" in names else None,
            pixels=concat("pixels", np.zeros((0, 1, 1), np.uint8)) if "pixels" in names else None,
            groups=np.asarray(group_ids, dtype=np.int64).reshape(-1),
            info={k[5:]: concat(k, np.zeros(0)) for k in sorted(names) if k.startswith("info_")},
            margin=self.margin,
        )


# -- splits ------------------------------------------------------------------------------
def carve(records: Records, source: str, target: str, fraction: float, seed: Sequence[int]) -> Records:
    """Move a seeded share of ``source``'s faces to ``target``, whole groups at a time.

    Groups (subjects, videos, images) are shuffled and taken until ``fraction`` of the
    source faces are reached, so no subject ends up on both sides; at least one group
    always stays in ``source``.
    """
    index = np.flatnonzero(records.split == SPLITS.index(source))
    wanted = round(fraction * len(index))
    if wanted == 0:
        return records
    groups, counts = np.unique(records.groups[index], return_counts=True)
    order = np.random.default_rng(list(seed)).permutation(len(groups))
    before = np.cumsum(counts[order]) - counts[order]  # faces taken before each group
    chosen = order[before < wanted][: max(len(groups) - 1, 0)]
    moved = index[np.isin(records.groups[index], groups[chosen])]
    split = records.split.copy()
    split[moved] = SPLITS.index(target)
    return replace(records, split=split)


def split_records(records: Records, config: DataConfig, carve_test: bool = False) -> Records:
    """Carve the splits a dataset does not define out of *train* (test first, then val)."""
    if carve_test and not (records.split == SPLITS.index("test")).any():
        records = carve(records, "train", "test", config.test_fraction, [config.seed, 1])
    if not (records.split == SPLITS.index("val")).any():
        records = carve(records, "train", "val", config.val_fraction, [config.seed, 2])
    return records
