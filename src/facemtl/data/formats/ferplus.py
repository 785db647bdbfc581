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

import hashlib
from collections import Counter
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path
from typing import ClassVar, NamedTuple

import numpy as np

from facemtl.config import DataConfig, DatasetOptions, dataset_options
from facemtl.data.formats._common import csv_rows, dataset_root, find_file, to_int
from facemtl.data.formats.fer2013 import FER_TO_AFFECTNET, USAGE, fer_pixels, read_folders
from facemtl.data.record_dataset import build_splits, check_options
from facemtl.data.records import SPLITS, Records, RecordTable, dataset_label_spaces, note, problem
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


# -- FER2013's faces with both label sets (data.name=fer2013_ferplus) ---------------------
LABEL_SOURCES: tuple[str, ...] = ("fer2013", "ferplus")
DUPLICATES: tuple[str, ...] = ("keep", "first", "drop")
MAP_FILE = "fer2013_folder_map.csv"
MAP_COLUMNS: tuple[str, ...] = ("local_path", "usage", "image_name", "duplicate")


@dataclass
class Fer2013FerPlusOptions(DatasetOptions):
    """``data.fer2013_ferplus.*``."""

    ferplus: str = ""  # folder holding fer2013new.csv (and the folder map); "" = data.root
    map: str = ""  # folder layout: JPEG -> FERPlus image CSV; "" = fer2013_folder_map.csv beside fer2013new.csv
    train_labels: str = "fer2013"  # the labels a split carries: fer2013 (as released) | ferplus (vote label)
    val_labels: str = "ferplus"
    test_labels: str = "ferplus"
    mode: str = "majority"  # FERPlus votes -> label: majority | plurality (as data.ferplus.mode)
    duplicates: str = "keep"  # pictures FER2013 holds more than once: keep | first (one copy per split) | drop

    def check(self, data: DataConfig) -> None:
        for key in ("train_labels", "val_labels", "test_labels"):
            if getattr(self, key) not in LABEL_SOURCES:
                raise FacemtlError(f"data.fer2013_ferplus.{key}={getattr(self, key)!r} is not valid; "
                                   f"choose from: {', '.join(LABEL_SOURCES)}")
        if self.mode not in ("majority", "plurality"):
            raise FacemtlError(f"data.fer2013_ferplus.mode={self.mode!r} is not valid; choose from: majority, plurality")
        if self.duplicates not in DUPLICATES:
            raise FacemtlError(f"data.fer2013_ferplus.duplicates={self.duplicates!r} is not valid; "
                               f"choose from: {', '.join(DUPLICATES)}")


class _Face(NamedTuple):
    """One FER2013 face and its FERPlus votes, before the label rules."""

    file: str  # where it is listed (for errors)
    line: int
    path: str
    split: str
    fer: int  # FER2013 label, AffectNet order
    votes: np.ndarray | None  # [10] FERPlus counts in VOTES order; None = no FERPlus row
    group: str  # one picture: the FERPlus image (folder map) or the pixels' hash (CSV)
    flagged: bool  # a picture FER2013 holds more than once
    pixels: np.ndarray | None


def _csv_faces(fer_csv: Path, votes_csv: Path) -> list[_Face]:
    """Kaggle layout: row i of fer2013.csv is row i of fer2013new.csv (FERPlus's own alignment)."""
    faces: list[_Face] = []
    rows = zip_longest(csv_rows(fer_csv, ("emotion", "pixels", "Usage")),
                       csv_rows(votes_csv, ("Usage", "Image name") + VOTES), fillvalue=None)
    for fer_row, vote_row in rows:
        if fer_row is None or vote_row is None:
            longer, (line, _) = (votes_csv, vote_row) if fer_row is None else (fer_csv, fer_row)
            problem(f"{longer}:{line}", f"{fer_csv.name} and {votes_csv.name} have different numbers of rows; "
                    "FERPlus's rows align with FER2013's one to one")
            break
        (line, row), (vote_line, votes) = fer_row, vote_row
        try:
            code, usage = to_int(row["emotion"]), (row["Usage"] or "").strip()
            if not 0 <= code <= 6 or usage not in USAGE:
                raise ValueError(f"emotion {row['emotion']!r} / Usage {usage!r} is not a FER2013 row")
            if (votes["Usage"] or "").strip() != usage:
                raise ValueError(f"Usage {usage} here but {votes['Usage']} at {votes_csv.name}:{vote_line}")
            pixels = fer_pixels(row["pixels"] or "")
            name = (votes["Image name"] or "").strip()
            counts = np.array([to_int(votes[v]) for v in VOTES]) if name else None
        except (KeyError, ValueError, TypeError) as err:
            problem(f"{fer_csv}:{line}", str(err))
            continue
        digest = hashlib.md5(pixels.tobytes()).hexdigest()
        faces.append(_Face(str(fer_csv), line, f"{fer_csv.name}#{line}", USAGE[usage], FER_TO_AFFECTNET[code],
                           counts, f"{usage}/{digest}", False, pixels))
    sizes = Counter(face.group for face in faces)  # identical pictures within one split
    return [face._replace(flagged=sizes[face.group] > 1) for face in faces]


def _folder_faces(root: Path, votes_csv: Path, map_csv: Path, config: DataConfig) -> tuple[list[_Face], Counter]:
    """Folder layout: each JPEG joined to its FERPlus image through the folder map (pixel matching)."""
    votes: dict[str, np.ndarray] = {}
    for line, row in csv_rows(votes_csv, ("Usage", "Image name") + VOTES):
        name = (row["Image name"] or "").strip()
        if name:
            try:
                votes[name] = np.array([to_int(row[v]) for v in VOTES])
            except (KeyError, ValueError, TypeError) as err:
                problem(f"{votes_csv}:{line}", f"malformed FERPlus row ({err})")
    links: dict[str, tuple[int, str, bool]] = {}
    for line, row in csv_rows(map_csv, MAP_COLUMNS):
        name = (row["image_name"] or "").strip()
        if name and name not in votes:
            problem(f"{map_csv}:{line}", f"image {name} is not in {votes_csv.name}")
            continue
        links[(row["local_path"] or "").strip().replace("\\", "/")] = (line, name, (row["duplicate"] or "0").strip() == "1")
    table = RecordTable(dataset_label_spaces(config), root)
    read_folders(table, root, config.num_expr_classes)
    fer = table.build()
    faces, unmapped = [], Counter()
    for i in range(len(fer)):
        path, split = fer.paths[i].decode("utf-8"), SPLITS[fer.split[i]]
        if path not in links:
            unmapped[split] += 1
            continue
        line, name, flagged = links[path]
        faces.append(_Face(str(map_csv), line, path, split, int(fer.expr[i]), votes.get(name), name or path,
                           flagged, None))
    return faces, unmapped


def _keep_duplicates(faces: list[_Face], rule: str) -> list[bool]:
    """Which faces ``data.fer2013_ferplus.duplicates`` keeps: all, the first copy of a picture per split, or no copy."""
    seen: set[tuple[str, str]] = set()
    keep = []
    for face in faces:
        first = (face.split, face.group) not in seen
        seen.add((face.split, face.group))
        keep.append(not face.flagged or rule == "keep" or (rule == "first" and first))
    return keep


def join_fer2013_ferplus(config: DataConfig) -> tuple[Records, dict[str, Counter]]:
    """FER2013's faces with FER2013's label and FERPlus's votes joined face by face.

    Two layouts under ``data.root``: Kaggle's ``fer2013.csv``, row-aligned with FERPlus's
    ``fer2013new.csv``; or the folder-per-class export, joined through
    ``fer2013_folder_map.csv`` (``local_path, usage, image_name, ..., duplicate``: each JPEG's
    FERPlus image, found by pixel matching; exact duplicate pictures flagged). Faces without a
    FERPlus image, or whose votes give no label under ``mode`` (unknown / NF majority, no
    majority, contempt with 7 classes), are dropped; so are duplicate copies as
    ``duplicates`` says.

    Returns:
        ``(records, dropped)``: each split's ``expr`` is FER2013's or FERPlus's label
        (``<split>_labels``); ``info`` carries both (``expr_fer2013``, ``expr_ferplus``), the
        raw vote counts of the expression classes ``expr_votes`` ``[N, C]`` (AffectNet order),
        ``expr_disagree`` (the two labels differ), ``expr_duplicate``, and for the methods and
        benchmarks that know clean labels ``expr_clean`` = FERPlus's label and
        ``expr_flipped`` = the split's label differs from it. ``dropped``: split -> reason -> count.
    """
    options = Fer2013FerPlusOptions.of(config)
    root = dataset_root(config, "FER2013", "fer2013.csv, or train/<class>/ and test/<class>/ image folders")
    faces, dropped = _joined_faces(config, options, root)
    columns = _kept_faces(faces, options, config.num_expr_classes, dropped)
    labels = {split: getattr(options, f"{split}_labels") for split in SPLITS}
    return _joined_records(columns, labels, config, root), dropped


def _joined_faces(config: DataConfig, options: Fer2013FerPlusOptions, root: Path) -> tuple[list, dict[str, Counter]]:
    """Every FER2013 face with its FERPlus votes (None without a FERPlus image), and the faces the
    folder map does not know, counted per split."""
    plus = Path(options.ferplus).expanduser() if options.ferplus else root
    votes_csv = find_file(plus, ["fer2013new.csv", "FERPlus/fer2013new.csv"], "FERPlus fer2013new.csv")
    dropped: dict[str, Counter] = {split: Counter() for split in SPLITS}
    if (root / "fer2013.csv").is_file():
        return _csv_faces(root / "fer2013.csv", votes_csv), dropped
    map_csv = Path(options.map).expanduser() if options.map else votes_csv.parent / MAP_FILE
    if not map_csv.is_file():
        raise FacemtlError(f"{map_csv}: no such file; the folder layout needs the JPEG -> FERPlus image map "
                           f"(set data.fer2013_ferplus.map), or use fer2013.csv, which aligns row by row")
    faces, unmapped = _folder_faces(root, votes_csv, map_csv, config)
    for split, count in unmapped.items():
        dropped[split]["not in the folder map"] += count
    return faces, dropped


def _kept_faces(faces: list, options: Fer2013FerPlusOptions, classes: int, dropped: dict[str, Counter]) -> dict[str, list]:
    """Column lists of the faces kept (duplicates as ``options.duplicates`` says, a FERPlus label
    under ``options.mode``); the others are counted in ``dropped`` by reason."""
    columns: dict[str, list] = {k: [] for k in ("file", "line", "path", "split", "fer", "plus", "votes", "group",
                                                "flagged", "pixels")}
    for face, kept in zip(faces, _keep_duplicates(faces, options.duplicates)):
        if not kept:
            dropped[face.split]["duplicate copy"] += 1
            continue
        if face.votes is None:
            dropped[face.split]["no FERPlus image"] += 1
            continue
        plus_label, _, reason = ferplus_label(face.votes, options.mode, classes)
        if plus_label < 0:
            dropped[face.split][reason] += 1
            continue
        counts = np.zeros(8, np.float32)
        counts[list(FERPLUS_TO_AFFECTNET)] = face.votes[:8]
        for key, value in zip(columns, (face.file, face.line, face.path, face.split, face.fer, plus_label,
                                        counts[:classes], face.group, face.flagged, face.pixels)):
            columns[key].append(value)
    return columns


def _joined_records(columns: dict[str, list], labels: dict[str, str], config: DataConfig, root: Path) -> Records:
    """The kept faces as records: each split's label FER2013's or FERPlus's, both in ``info``."""
    classes = config.num_expr_classes
    table = RecordTable(dataset_label_spaces(config), root)
    fer, plus_labels = np.array(columns["fer"], np.int64), np.array(columns["plus"], np.int64)
    use_plus = np.array([labels[s] == "ferplus" for s in columns["split"]], bool)
    expr = np.where(use_plus, plus_labels, fer)
    extra = {"pixels": np.stack(columns["pixels"])} if columns["pixels"] and columns["pixels"][0] is not None else {}
    for file in dict.fromkeys(columns["file"]):  # one chunk per annotation file, in order
        rows = np.array([f == file for f in columns["file"]], bool)
        table.extend(
            file, np.array(columns["line"])[rows], [p for p, r in zip(columns["path"], rows) if r],
            [s for s, r in zip(columns["split"], rows) if r], expr=expr[rows],
            groups=[g for g, r in zip(columns["group"], rows) if r],
            info_expr_fer2013=fer[rows], info_expr_ferplus=plus_labels[rows],
            info_expr_votes=np.array(columns["votes"], np.float32).reshape(-1, classes)[rows],
            info_expr_disagree=(fer != plus_labels)[rows], info_expr_duplicate=np.array(columns["flagged"], bool)[rows],
            info_expr_clean=plus_labels[rows], info_expr_flipped=(expr != plus_labels)[rows],
            **{k: v[rows] for k, v in extra.items()},
        )
    return table.build()


@DATASETS.register("fer2013_ferplus")
@dataset_options(Fer2013FerPlusOptions)
def fer2013_ferplus(config: DataConfig, splits: tuple[str, ...] = SPLITS) -> dict:
    """FER2013's faces, labelled by FER2013 or by FERPlus's votes per split (both carried in ``info``)."""
    check_options(config)
    records, dropped = join_fer2013_ferplus(config)
    for split, reasons in dropped.items():
        for reason, count in sorted(reasons.items()):
            note(f"fer2013_ferplus: {split}: dropped {count} faces ({reason})")
    return build_splits(records, config, splits)
