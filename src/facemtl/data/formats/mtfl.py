"""MTFL — the Multi-Task Facial Landmark set of TCDCN (``data.name=mtfl``).

Layout under ``data.root``, exactly as released (CUHK MMLab, v1.0)::

    training.txt   10,000 faces: lfw_5590\\*.jpg, net_7876\\*.jpg
    testing.txt     2,995 faces: AFLW\\*.jpg
    lfw_5590/  net_7876/  AFLW/

One face per line, 15 whitespace-separated fields::

    path x1 x2 x3 x4 x5 y1 y2 y3 y4 y5 gender smile glasses pose

- Paths use Windows backslashes (read as ``/``); lines after the first start with a space
  and end with CR LF; a final blank line is ignored.
- All five x come first, then the five y, in pixels of the original image. Points:
  left eye centre, right eye centre, nose tip, left mouth corner, right mouth corner
  (image-left first): facemtl's 5-point scheme.
- Attribute codes are 1-based; they map to :data:`facemtl.labels.DEFAULT_ATTRIBUTES`:
  gender 1 male / 2 female -> ``male`` (0) / ``female`` (1); smile 1 yes / 2 no ->
  ``yes`` (1) / ``no`` (0); glasses 1 yes / 2 no -> ``yes`` (1) / ``no`` (0); pose
  1 left profile .. 5 right profile -> 0 .. 4.

Splits: ``training.txt`` is train, with a seeded ``data.val_fraction`` carved out for
validation and early stopping (whole LFW identities at a time); ``testing.txt`` is test and
is never used for validation.

Faces: MTFL has no face boxes, so by default the crop is the square around the five
landmarks' bounding box plus ``data.crop_margin`` of its longer side on each side (default
:data:`DEFAULT_MARGIN`). Because that crop comes from the ground-truth points, the faces are
framed more consistently than a detector would frame them, and the framing itself tells
where the points are. ``data.mtfl.boxes`` names a CSV of detected boxes instead (``facemtl
predict`` output, or ``path,x,y,w,h``), as TCDCN cropped its faces: each face takes the
detection containing its landmarks' centre (the nearest if several), crops it with
:data:`BOX_MARGIN`, and a face with no such detection keeps the landmark framing (counted
in a warning). Batches carry each face's crop as ``info["crop"]`` = ``(x0, y0, side)`` in source
pixels; :func:`crop_to_image` maps predicted landmarks back to original-image pixels.
``data.grey`` and ``data.augment`` (:mod:`facemtl.data.augment`) apply, as to every dataset.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from facemtl.config import DataConfig, DatasetOptions, dataset_options
from facemtl.data.formats._common import dataset_root, read_face_boxes, read_lines, to_int
from facemtl.data.images import face_rects
from facemtl.data.record_dataset import build_splits, check_options
from facemtl.data.records import SPLITS, RecordTable, dataset_label_spaces, note, problem
from facemtl.errors import FacemtlError
from facemtl.labels import DEFAULT_ATTRIBUTES
from facemtl.registry import DATASETS

#: Crop margin (fraction of the landmark box's longer side, each side): frames the whole face.
DEFAULT_MARGIN = 0.4
#: Crop margin around a detector box (``data.mtfl.boxes``): none, YuNet's box is already ~1.4x the
#: side of the default landmark crop (median over MTFL's 13k faces).
BOX_MARGIN = 0.0
FILES: dict[str, str] = {"train": "training.txt", "test": "testing.txt"}
#: Released 1-based code -> facemtl class name, per attribute (in the file's column order).
CODES: dict[str, dict[int, str]] = {
    "gender": {1: "male", 2: "female"},
    "smile": {1: "yes", 2: "no"},
    "glasses": {1: "yes", 2: "no"},
    "pose": {1: "left_profile", 2: "left", 3: "frontal", 4: "right", 5: "right_profile"},
}


@dataclass(frozen=True)
class MTFLFace:
    """One parsed line: ``path`` with ``/``, ``points`` ``[5, 2]`` (x, y) pixels, ``attributes`` name -> class id."""

    path: str
    points: np.ndarray
    attributes: dict[str, int]


def parse_line(text: str) -> MTFLFace | None:
    """Parse one annotation line (None for a blank line).

    Raises:
        ValueError: saying which field is wrong.
    """
    fields = text.split()
    if not fields:
        return None
    if len(fields) != 15:
        raise ValueError(f"expected 15 fields (path, x1..x5, y1..y5, gender, smile, glasses, pose), got {len(fields)}")
    try:
        coords = np.array([float(v) for v in fields[1:11]], dtype=np.float64)
    except ValueError:
        raise ValueError(f"coordinates must be numbers, got {' '.join(fields[1:11])!r}") from None
    if not np.isfinite(coords).all():
        raise ValueError("coordinates must be finite")
    attributes = {}
    for (name, codes), raw in zip(CODES.items(), fields[11:]):
        try:
            code = to_int(raw)
        except ValueError:
            code = None
        if code not in codes:
            raise ValueError(f"{name} code {raw!r} is not one of {', '.join(map(str, codes))}")
        attributes[name] = DEFAULT_ATTRIBUTES[name].index(codes[code])
    points = np.stack([coords[:5], coords[5:]], axis=1)  # all x first, then all y
    return MTFLFace(fields[0].replace("\\", "/"), points, attributes)


def identity(path: str) -> str:
    """Group id for carving validation: the person of an LFW image, else the image path.

    ``lfw_5590/Aaron_Eckhart_0001.jpg`` -> ``lfw:Aaron_Eckhart``, so no LFW person is on both sides.
    """
    folder, _, name = path.rpartition("/")
    match = re.fullmatch(r"(.+)_\d{4}\.\w+", name)
    return f"lfw:{match.group(1)}" if folder.lower().startswith("lfw") and match else path


def read_file(path: Path, root: Path) -> tuple[list[int], list[MTFLFace]]:
    """Line numbers and faces of one annotation file; malformed lines and missing images are reported.

    Each problem names ``file:line`` (:func:`~facemtl.data.records.problem`): it raises, or,
    under ``facemtl data check``, is collected and the face skipped.
    """
    lines, faces = [], []
    for number, text in enumerate(read_lines(path), start=1):
        try:
            face = parse_line(text)
        except ValueError as err:
            problem(f"{path}:{number}", str(err))
            continue
        if face is None:
            continue
        if not os.path.isfile(root / face.path):
            problem(f"{path}:{number}", f"image {face.path} not found under {root}")
            continue
        lines.append(number)
        faces.append(face)
    return lines, faces


def crop_to_image(points: np.ndarray, crops: np.ndarray) -> np.ndarray:
    """Landmarks in crop coordinates back to original-image pixels.

    Args:
        points: ``[N, K, 2]`` (x, y) in [0, 1] of each face's crop (labels or predictions).
        crops: ``[N, 3]`` ``(x0, y0, side)`` in source pixels (``batch["info"]["crop"]``).

    Returns:
        ``[N, K, 2]`` float64 pixels of the original image: ``(x0, y0) + point * side``.
    """
    crops = np.asarray(crops, dtype=np.float64)
    return crops[:, None, :2] + np.asarray(points, dtype=np.float64) * crops[:, None, 2:3]


def detector_boxes(faces: list[MTFLFace], root: Path, found: dict[str, list], margin: float) -> tuple[np.ndarray, int]:
    """Each face's detected box ``[N, 4]`` (x, y, w, h) and how many faces had none.

    A face takes the detection that contains its landmarks' centre, the nearest centre if
    several do. A face without one gets the box that, cropped with ``margin``, gives the
    landmark crop of :data:`DEFAULT_MARGIN`, so it is framed as without ``data.mtfl.boxes``.
    """
    points = np.stack([f.points for f in faces]).astype(np.float64) if faces else np.zeros((0, 5, 2))
    fallback = face_rects(None, points, DEFAULT_MARGIN, len(faces)).astype(np.float64)  # (x0, y0, side)
    side = fallback[:, 2] / (1.0 + 2.0 * margin)
    boxes = np.stack([fallback[:, 0] + (fallback[:, 2] - side) / 2, fallback[:, 1] + (fallback[:, 2] - side) / 2,
                      side, side], axis=1)
    missing = 0
    for i, face in enumerate(faces):
        centre = points[i].mean(axis=0)
        candidates = np.asarray(found.get(str((root / face.path).resolve()), []), np.float64).reshape(-1, 4)
        inside = ((candidates[:, :2] <= centre) & (centre <= candidates[:, :2] + candidates[:, 2:])).all(axis=1)
        if not inside.any():
            missing += 1
            continue
        candidates = candidates[inside]
        boxes[i] = candidates[np.argmin(np.linalg.norm(candidates[:, :2] + candidates[:, 2:] / 2 - centre, axis=1))]
    return boxes.astype(np.float32), missing


@dataclass
class MTFLOptions(DatasetOptions):
    """``data.mtfl.*``."""

    boxes: str = ""  # face-box CSV (`facemtl predict` output or path,x,y,w,h): crop from detector boxes
    moved: ClassVar[dict[str, str]] = {"boxes": "boxes"}


@DATASETS.register("mtfl")
@dataset_options(MTFLOptions)
def mtfl(config: DataConfig, splits: tuple[str, ...] = SPLITS) -> dict:
    """MTFL: 5 landmarks and gender / smile / glasses / pose for every face."""
    check_options(config)
    boxes_csv = MTFLOptions.of(config).boxes
    root = dataset_root(config, "MTFL", "training.txt, testing.txt, lfw_5590/, net_7876/, AFLW/")
    if config.num_landmarks != 5:
        raise FacemtlError(
            f"data.num_landmarks={config.num_landmarks}: MTFL labels 5 landmarks; set data.num_landmarks=5")
    default_margin = BOX_MARGIN if boxes_csv else DEFAULT_MARGIN
    margin = default_margin if config.crop_margin < 0 else config.crop_margin
    found = read_face_boxes(boxes_csv, root) if boxes_csv else None
    table = RecordTable(dataset_label_spaces(config), root, num_points=5, margin=default_margin)
    names = list(DEFAULT_ATTRIBUTES)
    for split, name in FILES.items():
        path = root / name
        if not path.is_file():
            raise FacemtlError(
                f"{root}: no {name} (expected the MTFL release: training.txt, testing.txt and image folders)")
        lines, faces = read_file(path, root)
        points = np.stack([f.points for f in faces]).astype(np.float32) if faces else np.zeros((0, 5, 2), np.float32)
        boxes = None
        if found is not None:
            boxes, missing = detector_boxes(faces, root, found, margin)
            if missing:
                note(f"{path}: {missing} of {len(faces)} faces have no detected box around their landmarks; "
                     "they are framed from their landmarks", warn=True)
        table.extend(
            path, lines, [f.path for f in faces], split,
            attr=[[f.attributes[a] for a in names] for f in faces], points=points, boxes=boxes,
            groups=[identity(f.path) for f in faces],
            info_crop=face_rects(boxes, points, margin, len(faces)),  # the same rectangles the crops use
        )
    return build_splits(table.build(), config, splits)
