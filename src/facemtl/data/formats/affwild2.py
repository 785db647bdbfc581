"""Aff-Wild2 (ABAW), as released: per-video set files and the multi-task file variant.

``data.name=affwild2`` — one annotation file per video and task set::

    annotations/AU_Set/Training_Set/<video>.txt        # ABAW3+: AU_Detection_Challenge/Train_Set/
    annotations/EXPR_Set/Validation_Set/<video>.txt    # EXPR_Classification_Challenge/...
    annotations/VA_Set/...                             # VA_Estimation_Challenge/...
    cropped_aligned/<video>/00001.jpg

The first line is a header; line k+1 belongs to frame k (from 1), image
``cropped_aligned/<video>/{k:05d}.jpg``. AU lines: comma-separated 0/1 per AU named in the
header (8 AUs in ABAW 2020, 12 later), -1 = invalid (masked per entry). EXPR lines: one
class, 0 Neutral, 1 Anger, 2 Disgust, 3 Fear, 4 Happiness, 5 Sadness, 6 Surprise (mapped to
AffectNet order by :data:`AFFWILD_TO_AFFECTNET`), 7 Other (ABAW3+; masked: no facemtl
class) and -1 invalid (masked). VA lines: ``valence,arousal`` in [-1, 1], -5 invalid (masked).
The sets are merged per frame: a frame in the AU and EXPR sets carries both labels.
``data.affwild2.sets`` restricts the sets (e.g. ``EXPR`` or ``AU,VA``). Frames without a cropped
image (no face detected) are dropped, as in the official tooling.

``data.name=affwild2_mtl`` — the multi-task challenge files (ABAW3+, s-Aff-Wild2)::

    {train_set,validation_set}.txt   # or training_set_annotations.txt, ...; header line, then
                                     # <video>/<frame>.jpg,valence,arousal,expression,AU1,...,AU26
    cropped_aligned/<video>/<frame>.jpg

Splits: Training -> train. Test labels are not public, so the official Validation set is the
**test** split and validation is a seeded ``data.val_fraction`` of the training *videos*
(one person's ``_left`` / ``_right`` videos stay together) — unless a ``Test_Set`` folder
with labels exists, in which case Validation -> val and Test -> test.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from facemtl.config import DataConfig, dataset_options
from facemtl.data.formats._common import AUOptions, au_ids, au_number, dataset_root, find_dir, read_lines
from facemtl.data.record_dataset import build_splits, check_options
from facemtl.data.records import SPLITS, RecordTable, dataset_label_spaces, note, problem
from facemtl.errors import FacemtlError
from facemtl.labels import au_name
from facemtl.registry import DATASETS

#: Aff-Wild2 class 0..6 -> AffectNet-order class; 7 (Other) has none.
AFFWILD_TO_AFFECTNET: tuple[int, ...] = (0, 6, 5, 4, 1, 2, 3)
AUS_2020: tuple[int, ...] = (1, 2, 4, 6, 12, 15, 20, 25)
AUS_2022: tuple[int, ...] = (1, 2, 4, 6, 7, 10, 12, 15, 23, 24, 25, 26)
SET_FOLDERS: dict[str, tuple[str, ...]] = {
    "AU": ("AU_Set", "AU_Detection_Challenge"),
    "EXPR": ("EXPR_Set", "EXPR_Classification_Challenge", "EXPR_Recognition_Challenge"),
    "VA": ("VA_Set", "VA_Estimation_Challenge"),
}
SPLIT_FOLDERS: dict[str, tuple[str, ...]] = {
    "train": ("Training_Set", "Train_Set"), "val": ("Validation_Set",), "test": ("Test_Set",),
}
INVALID = {"AU": -1.0, "EXPR": -1.0, "VA": -5.0}


@dataclass
class AffWild2Options(AUOptions):
    """``data.affwild2.*``: ``au_ids`` and the sets to read."""

    sets: list[str] = field(default_factory=list)  # AU, EXPR, VA (e.g. "AU,EXPR"); empty = all three
    moved: ClassVar[dict[str, str]] = {**AUOptions.moved, "subset": "sets"}

    def check(self, data: DataConfig) -> None:
        super().check(data)
        unknown = [s for s in self.sets if s.strip().upper() not in SET_FOLDERS]
        if unknown:
            raise FacemtlError(f"data.affwild2.sets: {unknown[0]!r} is not a set; choose from: {', '.join(SET_FOLDERS)}")


def video_group(video: str) -> str:
    """Group id of a video: the two people of one ``_left`` / ``_right`` video belong together."""
    return re.sub(r"_(left|right)$", "", video)


def parse_labels(kind: str, cells: list[str], width: int) -> list[float]:
    """One annotation line of set ``kind`` as floats with NaN for invalid entries."""
    if len(cells) != width:
        raise ValueError(f"expected {width} comma-separated values, got {len(cells)}")
    values = [float(c) for c in cells]
    if kind == "AU":
        if any(v not in (0.0, 1.0, -1.0) for v in values):
            raise ValueError(f"AU values must be 0, 1 or -1, got {cells}")
        return [np.nan if v == -1.0 else v for v in values]
    if kind == "EXPR":
        if values[0] != int(values[0]) or not -1 <= values[0] <= 7:
            raise ValueError(f"expression {cells[0]} is not an integer in -1..7")
        return [np.nan if values[0] in (-1.0, 7.0) else float(AFFWILD_TO_AFFECTNET[int(values[0])])]
    if INVALID["VA"] in values:
        return [np.nan, np.nan]
    if not all(-1.0 <= v <= 1.0 for v in values):
        raise ValueError(f"valence/arousal {cells} outside [-1, 1] (and not the invalid marker -5)")
    return values


def _set_files(ann: Path, kinds: list[str]) -> dict[str, dict[str, tuple[str, Path]]]:
    """video -> {set kind: (split, file)} for every annotation file present."""
    has_test = any((ann / s / t).is_dir() for k in kinds for s in SET_FOLDERS[k] for t in SPLIT_FOLDERS["test"])
    videos: dict[str, dict[str, tuple[str, Path]]] = {}
    for kind in kinds:
        for set_name in SET_FOLDERS[kind]:
            for split, names in SPLIT_FOLDERS.items():
                target = split if has_test or split == "train" else "test"  # no labelled test: Validation is test
                for folder in (ann / set_name / n for n in names):
                    for file in sorted(folder.glob("*.txt")) if folder.is_dir() else []:
                        videos.setdefault(file.stem, {})[kind] = (target, file)
    return videos


def _read_set(kind: str, file: Path, wanted: list[int] | None) -> tuple[np.ndarray, list[int]]:
    """Per-frame labels ``[n_frames, width]`` (row k-1 = frame k) of one set file, and the AU header."""
    text = read_lines(file)
    header = [au_number(h) for h in text[0].split(",")] if text else []
    columns = list(range(len(header)))
    if kind == "AU":
        header_aus = [a for a in header if a is not None] if None not in header else list(
            AUS_2020 if len(header) == 8 else AUS_2022)
        columns = [header_aus.index(a) if a in header_aus else -1 for a in wanted or header_aus]
        if -1 in columns:
            problem(f"{file}:1", f"AU header {text[0]!r} lacks AU(s) of data.affwild2.au_ids")
            return np.zeros((0, len(wanted or [])), np.float32), header_aus
    width = {"AU": len(header), "EXPR": 1, "VA": 2}[kind]
    out = np.full((max(len(text) - 1, 0), len(columns) if kind == "AU" else width), np.nan, np.float32)
    for number, line in enumerate(text[1:], start=2):
        try:
            values = parse_labels(kind, line.split(","), width)
        except ValueError as err:
            problem(f"{file}:{number}", str(err))
            continue
        out[number - 2] = [values[c] for c in columns] if kind == "AU" else values
    return out, header


def _video_rows(root: Path, video: str, sets: dict, wanted: list[int], dropped: Counter):
    """Merged per-frame labels of one video: yields ``(file, split, lines, paths, columns)`` chunks."""
    image_dir = find_dir(root, ["cropped_aligned"]) / video
    images = {p.name for p in image_dir.iterdir()} if image_dir.is_dir() else set()
    labels = {kind: _read_set(kind, file, wanted if kind == "AU" else None)[0] for kind, (_, file) in sets.items()}
    split = max((s for s, _ in sets.values()), key=SPLITS.index)  # conflicting partitions: the held-out one wins
    n = max(len(v) for v in labels.values())
    taken = np.zeros(n, bool)
    for kind, (_, file) in sets.items():  # each frame's origin: the first set file that annotates it
        rows = np.flatnonzero(~taken[: len(labels[kind])])
        frames = [int(r) + 1 for r in rows if f"{r + 1:05d}.jpg" in images]
        dropped[kind] += len(rows) - len(frames)
        taken[rows] = True
        if not frames:
            continue
        index = np.asarray(frames) - 1
        columns = {"au": np.full((len(frames), len(wanted)), np.nan), "expr": np.full(len(frames), -1),
                   "va": np.full((len(frames), 2), np.nan)}
        for other, values in labels.items():
            ok = index < len(values)
            key = other.lower()
            if other == "EXPR":
                column = values[index[ok], 0]
                columns["expr"][ok] = np.where(np.isnan(column), -1, column)
            else:
                columns[key][ok] = values[index[ok]]
        # Frames invalid in every set carry no label at all: dropped, as in the official tooling.
        keep = (columns["expr"] >= 0) | ~np.isnan(columns["va"]).any(axis=1) | ~np.isnan(columns["au"]).all(axis=1)
        dropped["invalid"] += int((~keep).sum())
        frames = [f for f, k in zip(frames, keep) if k]
        paths = [f"{image_dir.relative_to(root).as_posix()}/{f:05d}.jpg" for f in frames]
        yield file, split, [f + 1 for f in frames], paths, {k: v[keep] for k, v in columns.items()}


@DATASETS.register("affwild2")
@dataset_options(AffWild2Options)
def affwild2(config: DataConfig, splits: tuple[str, ...] = SPLITS) -> dict:
    """Aff-Wild2 per-video AU / EXPR / VA set files, merged per frame."""
    check_options(config)
    root = dataset_root(config, "Aff-Wild2", "annotations/{AU_Set,EXPR_Set,VA_Set}/ and cropped_aligned/")
    ann = find_dir(root, ["annotations", "Annotations", "Third ABAW Annotations"])
    kinds = [k.strip().upper() for k in AffWild2Options.of(config).sets] or list(SET_FOLDERS)
    videos = _set_files(ann, kinds)
    if not videos:
        raise FacemtlError(f"{ann}: no <set>/<split>/<video>.txt annotation files for sets {', '.join(kinds)}")
    au_files = [sets["AU"][1] for sets in videos.values() if "AU" in sets]
    default_aus = _read_set("AU", au_files[0], None)[1] if au_files else []
    wanted = au_ids(config, default_aus) if au_files else []
    table = RecordTable(dataset_label_spaces(config, [au_name(a) for a in wanted]), root)
    dropped: Counter = Counter()
    for video in sorted(videos):
        for file, split, lines, paths, cols in _video_rows(root, video, videos[video], wanted, dropped):
            table.extend(file, lines, paths, split, groups=[video_group(video)] * len(paths), **cols)
    for kind, count in sorted(dropped.items()):
        if count:
            why = "invalid in every set" if kind == "invalid" else f"{kind} frames without a cropped_aligned image"
            note(f"affwild2: dropped {count} frames ({why})")
    return build_splits(table.build(), config, splits)
