"""FER2013, as released on Kaggle or as the common folder-per-class export (``data.name=fer2013``).

Either layout under ``data.root`` (the CSV wins when both exist):

- ``fer2013.csv`` with columns ``emotion, pixels, Usage``: 48x48 grey pixels as 2,304
  space-separated numbers; Usage ``Training`` / ``PublicTest`` / ``PrivateTest``;
- ``train/<class>/Training_<id>.jpg`` and ``test/<class>/{PublicTest,PrivateTest}_<id>.jpg``
  with class folders angry, disgust, fear, happy, neutral, sad, surprise.

Labels 0 Angry, 1 Disgust, 2 Fear, 3 Happy, 4 Sad, 5 Surprise, 6 Neutral are mapped to
facemtl's AffectNet order by :data:`FER_TO_AFFECTNET` (folder names by :data:`FOLDER_CLASSES`).
Splits follow the challenge protocol: Training -> train, PublicTest -> val (model selection),
PrivateTest -> test (report once). Folder files without those prefixes follow their folder
(``train`` / ``val`` / ``test``). The 48x48 faces are used whole (no crop).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from facemtl.config import DataConfig
from facemtl.data.formats._common import csv_rows, dataset_root, to_int
from facemtl.data.record_dataset import build_splits
from facemtl.data.records import SPLITS, RecordTable, dataset_label_spaces, problem
from facemtl.errors import FacemtlError
from facemtl.registry import DATASETS

#: FER2013 label 0..6 -> AffectNet-order class (angry, disgust, fear, happy, sad, surprise, neutral).
FER_TO_AFFECTNET: tuple[int, ...] = (6, 5, 4, 1, 2, 3, 0)
#: Folder name -> AffectNet-order class (FER2013 exports and common synonyms).
FOLDER_CLASSES: dict[str, int] = {
    "neutral": 0, "happy": 1, "happiness": 1, "sad": 2, "sadness": 2, "surprise": 3, "surprised": 3,
    "fear": 4, "disgust": 5, "anger": 6, "angry": 6, "contempt": 7,
}
USAGE: dict[str, str] = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
FOLDERS: dict[str, str] = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def fer_pixels(text: str, side: int = 48) -> np.ndarray:
    """One FER2013 ``pixels`` cell as uint8 ``[48, 48]``; ValueError when malformed."""
    with warnings.catch_warnings():  # a partial parse (stray text) warns: make it the ValueError it is
        warnings.simplefilter("error")
        # fromstring's text mode is 5x faster than split(): FER2013 has 35,887 rows of 2,304 numbers.
        try:
            values = np.fromstring(text, dtype=np.int64, sep=" ") if text.strip() else np.zeros(0, np.int64)
        except (ValueError, DeprecationWarning):
            raise ValueError("pixels holds something other than space-separated integers") from None
    if values.size != side * side:
        raise ValueError(f"pixels has {values.size} values, expected {side * side}")
    if values.min() < 0 or values.max() > 255:
        raise ValueError("pixel values outside 0-255")
    return values.astype(np.uint8).reshape(side, side)


def _read_csv(table: RecordTable, path: Path) -> None:
    lines, split, expr, pixels = [], [], [], []
    for number, row in csv_rows(path, ("emotion", "pixels", "Usage")):
        try:
            code = to_int(row["emotion"])
            if not 0 <= code <= 6:
                raise ValueError(f"emotion {code} is outside 0-6")
            usage = (row["Usage"] or "").strip()
            if usage not in USAGE:
                raise ValueError(f"Usage {usage!r} is not one of {', '.join(USAGE)}")
            pixels.append(fer_pixels(row["pixels"] or ""))
        except (ValueError, TypeError) as err:
            problem(f"{path}:{number}", str(err))
            continue
        lines.append(number)
        split.append(USAGE[usage])
        expr.append(FER_TO_AFFECTNET[code])
    table.extend(path, lines, [f"{path.name}#{n}" for n in lines], split, expr=expr,
                 pixels=np.stack(pixels) if pixels else np.zeros((0, 48, 48), np.uint8))


def read_folders(table: RecordTable, root: Path, num_classes: int) -> None:
    """Add the folder-per-class export's faces under ``root`` to ``table`` (label from the class folder)."""
    found = False
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and p.name.lower() in FOLDERS):
        for class_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
            label = FOLDER_CLASSES.get(class_dir.name.lower())
            if label is None or label >= num_classes:
                problem(str(class_dir), f"unknown class folder {class_dir.name!r}; expected one of "
                        f"{', '.join(sorted(k for k, v in FOLDER_CLASSES.items() if v < num_classes))}")
                continue
            # os.scandir and string joins: pathlib costs seconds on FER2013's 35,887 files.
            files = sorted(e.name for e in os.scandir(class_dir) if e.name.lower().endswith(IMAGE_SUFFIXES))
            split = [USAGE.get(name.split("_", 1)[0], FOLDERS[folder.name.lower()]) for name in files]
            prefix = class_dir.relative_to(root).as_posix()
            paths = [f"{prefix}/{name}" for name in files]
            table.extend(class_dir, [0] * len(files), paths, split, expr=[label] * len(files))
            found = found or bool(files)
    if not found:
        raise FacemtlError(f"{root}: neither fer2013.csv nor train/<class>/*.jpg found")


@DATASETS.register("fer2013")
def fer2013(config: DataConfig, splits: tuple[str, ...] = SPLITS) -> dict:
    """FER2013: expression only (7 classes), from ``fer2013.csv`` or class folders."""
    root = dataset_root(config, "FER2013", "fer2013.csv, or train/<class>/ and test/<class>/ image folders")
    table = RecordTable(dataset_label_spaces(config), root)
    if (root / "fer2013.csv").is_file():
        _read_csv(table, root / "fer2013.csv")
    else:
        read_folders(table, root, config.num_expr_classes)
    return build_splits(table.build(), config, splits)
