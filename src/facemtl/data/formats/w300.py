"""300-W 68-point landmarks from ``.pts`` files (``data.name=300w``).

Layout: the 300-W release folders anywhere under ``data.root``, each image next to its
``.pts`` file (``afw/``, ``helen/{trainset,testset}/``, ``lfpw/{trainset,testset}/``,
``ibug/``, optionally the competition set ``300W/{01_Indoor,02_Outdoor}/``). A ``.pts`` file
holds 68 "x y" lines in image pixels, with or without the ``version: 1`` /
``n_points: 68`` / ``{`` ... ``}`` wrapper; coordinates are used as given.

Standard splits: train = AFW + HELEN trainset + LFPW trainset (3,148 faces); test = the
``data.300w.subset``: ``common`` (LFPW + HELEN testsets, 554), ``challenging`` (iBUG, 135), or
empty = full (689); ``private`` = the 600-face competition set (01_Indoor, 02_Outdoor).
Test faces outside the chosen subset are not used. Validation: a seeded
``data.val_fraction`` of train. Faces are cropped around the landmarks' bounding box
(``data.crop_margin`` default 0.2 on each side), so the labels are the 68 points in the crop.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from facemtl.config import DataConfig, DatasetOptions, dataset_options
from facemtl.data.formats._common import dataset_root, read_lines
from facemtl.data.record_dataset import build_splits, check_options
from facemtl.data.records import SPLITS, RecordTable, dataset_label_spaces, problem
from facemtl.errors import FacemtlError
from facemtl.registry import DATASETS

IMAGE_SUFFIXES = (".jpg", ".png", ".jpeg", ".bmp")
SUBSETS: dict[str, tuple[str, ...]] = {
    "": ("common", "challenging"), "full": ("common", "challenging"), "common": ("common",),
    "challenging": ("challenging",), "private": ("private",),
}


@dataclass
class W300Options(DatasetOptions):
    """``data.300w.*``."""

    subset: str = ""  # the test faces: common | challenging | full (= empty) | private
    moved: ClassVar[dict[str, str]] = {"subset": "subset"}

    def check(self, data: DataConfig) -> None:
        if self.subset not in SUBSETS:
            raise FacemtlError(f"data.300w.subset={self.subset!r}; choose from: common, challenging, full, private")


def read_pts(path: Path) -> np.ndarray:
    """Points ``[P, 2]`` of a ``.pts`` file (with or without its header); ValueError naming the line."""
    points, declared = [], None
    for number, line in enumerate(read_lines(path), start=1):
        text = line.strip()
        if not text or text in ("{", "}") or text.startswith("version"):
            continue
        if text.startswith("n_points"):
            declared = int(text.split(":", 1)[1])
            continue
        try:
            x, y = (float(v) for v in text.split())
        except ValueError:
            raise ValueError(f"line {number}: expected 'x y', got {text!r}") from None
        points.append((x, y))
    if declared is not None and declared != len(points):
        raise ValueError(f"n_points says {declared} but {len(points)} points follow")
    return np.asarray(points, np.float32).reshape(-1, 2)


def subset_of(path: Path) -> str:
    """``train``, ``common``, ``challenging`` or ``private`` from a 300-W file's folders."""
    parts = [p.lower() for p in path.parts]
    if "ibug" in parts:
        return "challenging"
    if "testset" in parts:
        return "common"
    if "01_indoor" in parts or "02_outdoor" in parts:
        return "private"
    return "train"


@DATASETS.register("300w")
@dataset_options(W300Options)
def w300(config: DataConfig, splits: tuple[str, ...] = SPLITS) -> dict:
    """300-W: 68 landmarks (``data.num_landmarks=68``, or 5 derived from them)."""
    check_options(config)
    options = W300Options.of(config)
    root = dataset_root(config, "300-W", "afw/, helen/, lfpw/, ibug/ with <image> + <image>.pts pairs")
    files = sorted(root.rglob("*.pts"))
    if not files:
        raise FacemtlError(f"{root}: no .pts landmark files found")
    table = RecordTable(dataset_label_spaces(config), root, num_points=68, margin=0.2)
    for path in files:
        subset = subset_of(path.relative_to(root))
        if subset != "train" and subset not in SUBSETS[options.subset]:
            continue
        try:
            points = read_pts(path)
        except ValueError as err:
            problem(str(path), str(err))
            continue
        if len(points) != 68:
            problem(str(path), f"{len(points)} points, expected 68")
            continue
        image = next((path.with_suffix(s) for s in IMAGE_SUFFIXES if path.with_suffix(s).is_file()), None)
        if image is None:
            problem(str(path), f"no image next to it ({', '.join(IMAGE_SUFFIXES)})")
            continue
        split = "train" if subset == "train" else "test"
        table.extend(path, [0], [str(image.relative_to(root))], split, points=points[None])
    return build_splits(table.build(), config, splits)
