"""AffectNet (manually annotated part), as released (``data.name=affectnet``).

Layout under ``data.root`` (either place for the lists)::

    training.csv, validation.csv        # or Manually_Annotated_file_lists/{training,validation}.csv
    Manually_Annotated_Images/<subDirectory_filePath>

CSV columns: ``subDirectory_filePath, face_x, face_y, face_width, face_height,
facial_landmarks ("x;y;x;y;..." 68 points), expression, valence, arousal``.

Label mapping:

- expression codes 0 Neutral, 1 Happy, 2 Sad, 3 Surprise, 4 Fear, 5 Disgust, 6 Anger,
  7 Contempt are facemtl's class ids as they are (facemtl uses AffectNet's order);
  ``data.num_expr_classes=7`` drops contempt faces (the DACL protocol), 8 keeps them (SCN);
- codes 8 None, 9 Uncertain, 10 No-face are dropped (counted in ``facemtl data check``);
- valence / arousal in [-1, 1] are labels; -2 marks them invalid and they are masked;
- the 68 landmarks are labels (``data.num_landmarks=5`` derives the 5-point scheme).

Faces are cropped from the face box (``data.crop_margin`` default 0: the box itself). Splits:
``training.csv`` -> train, the official ``validation.csv`` (about 4,000 faces) -> **test**, as
in SCN and DACL; validation is a seeded ``data.val_fraction`` of training. AffectNet is large:
``data.load=auto`` decodes it lazily per batch (use ``train.num_workers`` to parallelise).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from facemtl.config import DataConfig
from facemtl.data.formats._common import csv_rows, dataset_root, find_dir, find_file, to_float, to_int
from facemtl.data.record_dataset import build_splits
from facemtl.data.records import SPLITS, RecordTable, dataset_label_spaces, note, problem
from facemtl.registry import DATASETS

COLUMNS = (
    "subDirectory_filePath", "face_x", "face_y", "face_width", "face_height",
    "facial_landmarks", "expression", "valence", "arousal",
)
DROPPED_CODES = {7: "contempt (7-class mode)", 8: "none", 9: "uncertain", 10: "no-face"}
INVALID_VA = -2.0


def _parse_row(row: dict[str, str], num_classes: int) -> tuple[int, list[float], list[float], list[float]] | None:
    """``(expr, box, va, points)`` of one CSV row; None when its expression code is dropped."""
    code = to_int(row["expression"])
    if not 0 <= code <= 10:
        raise ValueError(f"expression code {code} is outside 0-10")
    if code in DROPPED_CODES and (code != 7 or num_classes == 7):
        return None
    box = [to_float(row[k]) for k in ("face_x", "face_y", "face_width", "face_height")]
    if box[2] <= 0 or box[3] <= 0:
        raise ValueError(f"face box {box} has no area")
    va = [to_float(row["valence"]), to_float(row["arousal"])]
    if INVALID_VA in va:
        va = [np.nan, np.nan]
    elif not all(-1.0 <= v <= 1.0 for v in va):
        raise ValueError(f"valence/arousal {va} outside [-1, 1] (and not the invalid marker -2)")
    text = (row["facial_landmarks"] or "").strip()
    points = [to_float(v) for v in text.split(";")] if text else [np.nan] * 136
    if len(points) != 136:
        raise ValueError(f"facial_landmarks has {len(points)} numbers, expected 136 (68 x;y pairs)")
    return code, box, va, points


def _read_list(table: RecordTable, path: Path, split: str, image_dir: Path, num_classes: int, dropped: Counter) -> None:
    lines, paths, expr, boxes, va, points = [], [], [], [], [], []
    for number, row in csv_rows(path, COLUMNS):
        try:
            parsed = _parse_row(row, num_classes)
        except (ValueError, TypeError) as err:
            problem(f"{path}:{number}", str(err))
            continue
        if parsed is None:
            dropped[to_int(row["expression"])] += 1
            continue
        lines.append(number)
        paths.append(str(image_dir / row["subDirectory_filePath"].strip()))
        for column, value in zip((expr, boxes, va, points), parsed):
            column.append(value)
    if lines:
        table.extend(path, lines, paths, split, expr=expr, boxes=boxes, va=va,
                     points=np.asarray(points, np.float32).reshape(-1, 68, 2))


@DATASETS.register("affectnet")
def affectnet(config: DataConfig, splits: tuple[str, ...] = SPLITS) -> dict:
    """AffectNet: expression (7 or 8 classes), valence/arousal and 68 landmarks."""
    root = dataset_root(config, "AffectNet", "training.csv, validation.csv and Manually_Annotated_Images/")
    lists = ("", "Manually_Annotated_file_lists/")
    train_csv = find_file(root, [f"{d}training.csv" for d in lists], "AffectNet training.csv")
    test_csv = find_file(root, [f"{d}validation.csv" for d in lists], "AffectNet validation.csv")
    image_dir = find_dir(root, ["Manually_Annotated_Images", "Manually_Annotated/Manually_Annotated_Images"]).relative_to(root)
    table = RecordTable(dataset_label_spaces(config), root, num_points=68, margin=0.0)
    dropped: Counter = Counter()
    for path, split in ((train_csv, "train"), (test_csv, "test")):
        _read_list(table, path, split, image_dir, config.num_expr_classes, dropped)
    for code, count in sorted(dropped.items()):
        note(f"affectnet: dropped {count} faces with expression {code} ({DROPPED_CODES[code]})")
    return build_splits(table.build(), config, splits)
