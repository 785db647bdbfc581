"""DISFA action-unit intensities, as released (``data.name=disfa``).

Layout under ``data.root``::

    ActionUnit_Labels/SN001/SN001_au1.txt    # "frame,intensity" per line, intensity 0-5
    <frame images>                           # see data.disfa.image_template below

An AU is **present at intensity >= 2** (the usual occurrence protocol). By default the 8 AUs
of the literature are labelled (1, 2, 4, 6, 9, 12, 25, 26; ``data.disfa.au_ids`` picks any of the
12 annotated: 1, 2, 4, 5, 6, 9, 12, 15, 17, 20, 25, 26); an AU whose file is missing for a
subject, or a frame missing from one AU's file, is masked.

Protocol: the standard 3-fold subject-exclusive split (:data:`PARTS`, 27 subjects);
``data.disfa.fold`` k tests on part 4-k (JAA-Net / ME-GraphAU convention); validation is a
seeded ``data.val_fraction`` of the training subjects. Frames: DISFA is released as videos
(left camera ``LeftVideoSN001_comp.avi``); the extracted frames are named by
``data.disfa.image_template`` with ``{subject}``, ``{frame}`` (1-based, as in the label files) and
``{index}`` (0-based); empty = the first of :data:`TEMPLATES` that exists. Used whole.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facemtl.config import DataConfig, dataset_options
from facemtl.data.formats._common import (
    FoldOptions,
    au_ids,
    dataset_root,
    find_dir,
    fold_split,
    read_lines,
    resolve_template,
)
from facemtl.data.record_dataset import build_splits, check_options
from facemtl.data.records import SPLITS, RecordTable, dataset_label_spaces, problem
from facemtl.errors import FacemtlError
from facemtl.labels import au_name
from facemtl.registry import DATASETS

STANDARD_AUS: tuple[int, ...] = (1, 2, 4, 6, 9, 12, 25, 26)
ANNOTATED_AUS: tuple[int, ...] = (1, 2, 4, 5, 6, 9, 12, 15, 17, 20, 25, 26)
PRESENT_AT = 2
PARTS: tuple[tuple[str, ...], ...] = (
    ("SN002", "SN010", "SN001", "SN026", "SN027", "SN032", "SN030", "SN009", "SN016"),
    ("SN013", "SN018", "SN011", "SN028", "SN012", "SN006", "SN031", "SN021", "SN024"),
    ("SN003", "SN029", "SN023", "SN025", "SN008", "SN005", "SN007", "SN017", "SN004"),
)
TEMPLATES: tuple[str, ...] = (
    "img/{subject}/{index}.png", "{subject}/{index}.png", "{subject}/{frame:05d}.jpg",
    "Images_LeftCamera/{subject}/{frame:05d}.jpg", "{subject}/{frame}.jpg",
)


def _read_intensity(path: Path) -> dict[int, tuple[int, float]]:
    """Frame -> (line, 0/1 occurrence) of one ``SNxxx_au{N}.txt`` file."""
    out: dict[int, tuple[int, float]] = {}
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        try:
            frame, intensity = (int(float(v)) for v in line.split(","))
            if not 0 <= intensity <= 5:
                raise ValueError(f"intensity {intensity} outside 0-5")
        except ValueError as err:
            problem(f"{path}:{number}", f"expected 'frame,intensity' ({err})")
            continue
        out[frame] = (number, float(intensity >= PRESENT_AT))
    return out


def _subject_rows(folder: Path, wanted: list[int]) -> tuple[Path, list[int], list[int], np.ndarray]:
    """``(first label file, lines, frames, au [n, A])`` of one subject folder."""
    per_au = {a: _read_intensity(folder / f"{folder.name}_au{a}.txt") for a in wanted if (folder / f"{folder.name}_au{a}.txt").is_file()}
    frames = sorted(set().union(*per_au.values())) if per_au else []
    au = np.full((len(frames), len(wanted)), np.nan, np.float32)
    for j, a in enumerate(wanted):
        for i, frame in enumerate(frames):
            if frame in per_au.get(a, {}):
                au[i, j] = per_au[a][frame][1]
    first = next(iter(per_au), None)
    lines = [per_au[first][f][0] if f in per_au[first] else 0 for f in frames] if first is not None else []
    return folder / f"{folder.name}_au{first}.txt", lines, frames, au


@DATASETS.register("disfa")
@dataset_options(FoldOptions)
def disfa(config: DataConfig, splits: tuple[str, ...] = SPLITS) -> dict:
    """DISFA: AU occurrence (intensity >= 2), 3-fold subject-exclusive (``data.disfa.fold``)."""
    check_options(config)
    options = FoldOptions.of(config)
    root = dataset_root(config, "DISFA", "ActionUnit_Labels/SNxxx/SNxxx_au<N>.txt and the frame images")
    label_dir = find_dir(root, ["ActionUnit_Labels"])
    subjects = sorted(p for p in label_dir.iterdir() if p.is_dir() and p.name.upper().startswith("SN"))
    if not subjects:
        raise FacemtlError(f"{label_dir}: no SNxxx folders of AU label files")
    wanted = au_ids(config, STANDARD_AUS, ANNOTATED_AUS, "DISFA")
    table = RecordTable(dataset_label_spaces(config, [au_name(a) for a in wanted]), root)
    template, folds = options.image_template, {}
    for folder in subjects:
        file, lines, frames, au = _subject_rows(folder, wanted)
        if not frames:
            continue
        if not template:
            example = {"subject": folder.name, "frame": frames[0], "index": frames[0] - 1}
            template = resolve_template(root, "", TEMPLATES, example, "data.disfa.image_template")
        paths = [template.format(subject=folder.name, frame=f, index=f - 1) for f in frames]
        split = fold_split(folder.name, PARTS, options.fold, folds)
        table.extend(file, lines, paths, split, au=au, groups=[folder.name] * len(paths))
    return build_splits(table.build(), config, splits)
