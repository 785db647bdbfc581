"""ExpW (Expression in-the-Wild), as released (``data.name=expw``).

Layout under ``data.root``::

    label/label.lst      # or label.lst
    image/origin/*.jpg   # or origin/*.jpg

``label.lst`` fields (space-separated): ``image_name face_id top left right bottom
confidence label``; one line per face, several faces per image. Labels 0 angry, 1 disgust,
2 fear, 3 happy, 4 sad, 5 surprise, 6 neutral map to AffectNet order by
:data:`~facemtl.data.formats.fer2013.FER_TO_AFFECTNET` (same label order as FER2013).
Faces are cropped from their box (``data.crop_margin`` default 0). ExpW has no official
splits: seeded ``data.test_fraction`` and then ``data.val_fraction`` shares are carved out,
whole images at a time (faces of one photo never straddle splits).
"""

from __future__ import annotations

from facemtl.config import DataConfig
from facemtl.data.formats._common import dataset_root, find_dir, find_file, read_lines
from facemtl.data.formats.fer2013 import FER_TO_AFFECTNET
from facemtl.data.record_dataset import build_splits
from facemtl.data.records import SPLITS, RecordTable, dataset_label_spaces, problem
from facemtl.registry import DATASETS


def _parse(parts: list[str]) -> tuple[str, list[float], int]:
    """``(image name, box x y w h, label)`` of one label.lst line; ValueError when malformed."""
    if len(parts) != 8:
        raise ValueError(f"expected 8 fields (name face_id top left right bottom confidence label), got {len(parts)}")
    top, left, right, bottom = (float(v) for v in parts[2:6])
    if right <= left or bottom <= top:
        raise ValueError(f"empty face box top={top} left={left} right={right} bottom={bottom}")
    label = int(parts[7])
    if not 0 <= label <= 6:
        raise ValueError(f"label {label} is outside 0-6")
    return parts[0], [left, top, right - left, bottom - top], label


@DATASETS.register("expw")
def expw(config: DataConfig, splits: tuple[str, ...] = SPLITS) -> dict:
    """ExpW: expression only (7 classes), faces cropped from their boxes."""
    root = dataset_root(config, "ExpW", "label/label.lst and image/origin/")
    label_file = find_file(root, ["label/label.lst", "label.lst"], "ExpW label.lst")
    image_dir = find_dir(root, ["image/origin", "origin", "image"]).relative_to(root)
    table = RecordTable(dataset_label_spaces(config), root, margin=0.0)
    lines, paths, boxes, expr = [], [], [], []
    for number, line in enumerate(read_lines(label_file), start=1):
        if not line.strip():
            continue
        try:
            name, box, label = _parse(line.split())
        except ValueError as err:
            problem(f"{label_file}:{number}", str(err))
            continue
        lines.append(number)
        paths.append(str(image_dir / name))
        boxes.append(box)
        expr.append(FER_TO_AFFECTNET[label])
    table.extend(label_file, lines, paths, "train", expr=expr, boxes=boxes)  # groups default to the image path
    return build_splits(table.build(), config, splits, carve_test=True)
