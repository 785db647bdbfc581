"""FERPlus: FER2013 faces relabelled by 10 annotators (``data.name=ferplus``).

Layout under ``data.root``::

    fer2013new.csv    # Usage, Image name, neutral, happiness, surprise, sadness, anger,
                      # disgust, fear, contempt, unknown, NF  (vote counts, 10 per face)
    fer2013.csv       # the original FER2013 file, row-aligned with fer2013new.csv (pixels)
      or FER2013Train/, FER2013Valid/, FER2013Test/ <Image name>.png  (FERPlus's generated images)

Rows with an empty ``Image name`` are not FERPlus faces and are skipped. Vote processing
follows the official FERPlus code: votes of 1 are outliers and removed first; then the
face's label depends on ``data.ferplus.mode``:

- ``majority`` (default, the official "majority" mode): the top emotion must hold more
  than half of the remaining votes, otherwise the face is dropped;
- ``plurality``: the top emotion, however small its share;
- ``soft``: the label is the top emotion, and ``info.expr_soft`` ``[N, C]`` carries the
  vote distribution over the C classes (for soft-label / cross-entropy training).

In every mode a face whose top vote is ``unknown`` or ``NF`` (not a face), or that has no
emotion vote left, is dropped; so is contempt when ``data.num_expr_classes=7``. The eight
FERPlus emotions map to AffectNet order by :data:`FERPLUS_TO_AFFECTNET`. Splits: Training ->
train, PublicTest -> val, PrivateTest -> test.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from facemtl.config import DataConfig, DatasetOptions, dataset_options
from facemtl.data.formats._common import csv_rows, dataset_root, find_file, to_int
from facemtl.data.formats.fer2013 import USAGE, fer_pixels
from facemtl.data.record_dataset import build_splits, check_options
from facemtl.data.records import SPLITS, RecordTable, dataset_label_spaces, note, problem
from facemtl.errors import FacemtlError
from facemtl.registry import DATASETS

VOTES: tuple[str, ...] = (
    "neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF",
)
#: FERPlus emotion column 0..7 -> AffectNet-order class.
FERPLUS_TO_AFFECTNET: tuple[int, ...] = (0, 1, 3, 2, 6, 5, 4, 7)
IMAGE_FOLDERS: dict[str, str] = {"train": "FER2013Train", "val": "FER2013Valid", "test": "FER2013Test"}
MODES: tuple[str, ...] = ("majority", "plurality", "soft")


@dataclass
class FerPlusOptions(DatasetOptions):
    """``data.ferplus.*``."""

    mode: str = "majority"  # votes -> label: majority | plurality | soft (see the module docstring)
    moved: ClassVar[dict[str, str]] = {"ferplus_mode": "mode"}

    def check(self, data: DataConfig) -> None:
        if self.mode not in MODES:
            raise FacemtlError(f"data.ferplus.mode={self.mode!r} is not valid; choose from: {', '.join(MODES)}")


def ferplus_label(votes: np.ndarray, mode: str, num_classes: int) -> tuple[int, np.ndarray | None, str]:
    """Label of one face from its 10 vote counts.

    Args:
        votes: ``[10]`` counts in :data:`VOTES` order.
        mode: ``majority`` | ``plurality`` | ``soft``.
        num_classes: 7 or 8 expression classes.

    Returns:
        ``(class, soft, reason)``: class in AffectNet order (-1 when dropped), the vote
        distribution ``[num_classes]`` in AffectNet order, and why a face was dropped.
    """
    counts = np.where(votes <= 1, 0.0, votes.astype(np.float64))  # FERPlus: a single vote is an outlier
    total = counts.sum()
    if total == 0 or counts[:8].sum() == 0:
        return -1, None, "no emotion vote"
    top = int(np.argmax(counts))
    if top >= 8:
        return -1, None, "unknown/NF majority"
    if mode == "majority" and counts[top] <= 0.5 * total:
        return -1, None, "no majority"
    soft = np.zeros(8)
    soft[list(FERPLUS_TO_AFFECTNET)] = counts[:8]
    label = FERPLUS_TO_AFFECTNET[top]
    if label >= num_classes:
        return -1, None, "contempt (7-class mode)"
    soft = soft[:num_classes]
    return label, (soft / soft.sum()).astype(np.float32), ""


def _fer_pixel_rows(path: Path) -> dict[int, str]:
    """Row position (0-based, data rows only) -> FER2013 pixel text."""
    return {i: row["pixels"] or "" for i, (_, row) in enumerate(csv_rows(path, ("emotion", "pixels", "Usage")))}


@DATASETS.register("ferplus")
@dataset_options(FerPlusOptions)
def ferplus(config: DataConfig, splits: tuple[str, ...] = SPLITS) -> dict:
    """FERPlus: expression only (8 classes with contempt), majority / plurality / soft labels."""
    check_options(config)
    mode = FerPlusOptions.of(config).mode
    root = dataset_root(config, "FERPlus", "fer2013new.csv plus fer2013.csv or the FER2013Train/Valid/Test image folders")
    votes_csv = find_file(root, ["fer2013new.csv", "FERPlus/fer2013new.csv"], "FERPlus fer2013new.csv")
    pixel_rows = _fer_pixel_rows(root / "fer2013.csv") if (root / "fer2013.csv").is_file() else None
    if pixel_rows is None and not any((root / d).is_dir() for d in IMAGE_FOLDERS.values()):
        raise FacemtlError(f"{root}: FERPlus needs fer2013.csv (pixels) or the FER2013Train/Valid/Test image folders")
    table = RecordTable(dataset_label_spaces(config), root)
    rows: dict[str, list] = {k: [] for k in ("lines", "paths", "split", "expr", "soft", "pixels")}
    dropped: Counter = Counter()
    for position, (number, row) in enumerate(csv_rows(votes_csv, ("Usage", "Image name") + VOTES)):
        name = (row["Image name"] or "").strip()
        if not name:
            continue  # not part of FERPlus
        try:
            usage = USAGE[(row["Usage"] or "").strip()]
            votes = np.array([to_int(row[v]) for v in VOTES])
            pixels = None if pixel_rows is None else fer_pixels(pixel_rows.get(position, ""))
        except (KeyError, ValueError, TypeError) as err:
            problem(f"{votes_csv}:{number}", f"malformed FERPlus row ({err})")
            continue
        label, soft, reason = ferplus_label(votes, mode, config.num_expr_classes)
        if label < 0:
            dropped[reason] += 1
            continue
        for key, value in zip(rows, (number, f"{IMAGE_FOLDERS[usage]}/{name}", usage, label, soft, pixels)):
            rows[key].append(value)
    extra = {"info_expr_soft": rows["soft"]} if mode == "soft" else {}
    if pixel_rows is not None:
        extra["pixels"] = np.stack(rows["pixels"]) if rows["pixels"] else np.zeros((0, 48, 48), np.uint8)
    table.extend(votes_csv, rows["lines"], rows["paths"], rows["split"], expr=rows["expr"], **extra)
    for reason, count in sorted(dropped.items()):
        note(f"ferplus ({mode}): dropped {count} faces ({reason})")
    return build_splits(table.build(), config, splits)
