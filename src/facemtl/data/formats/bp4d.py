"""BP4D-Spontaneous action-unit occurrence, as released (``data.name=bp4d``).

Layout under ``data.root``::

    AUCoding/AU_OCC/F001_T1.csv      # or AU_OCC/F001_T1.csv
    <frame images>                   # see data.bp4d.image_template below

Each ``<subject>_<task>.csv`` has a header row (first column the frame number, then one
column per AU number: ``1, 2, 4, ...``) and one row per coded frame; values are 1 (present),
0 (absent) or 9 (not coded), and **9 is masked per AU entry**. By default the 12 AUs of
the literature are labelled (1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24; ``data.bp4d.au_ids``
chooses others).

Protocol: 3-fold subject-exclusive cross-validation with the standard subject parts
(:data:`PARTS`, 41 subjects); ``data.bp4d.fold`` k tests on part 4-k and trains on the other
two (JAA-Net / ME-GraphAU convention). Validation is a seeded ``data.val_fraction`` of the
*training subjects* (whole subjects). Frames: BP4D ships its frames in varying
pre-processed layouts, so ``data.bp4d.image_template`` (placeholders ``{subject}``, ``{task}``,
``{frame}``) names them; empty = the first of :data:`TEMPLATES` that exists. Frames are
used whole: point the template at face crops.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facemtl.config import DataConfig, dataset_options
from facemtl.data.formats._common import (
    FoldOptions,
    au_ids,
    au_number,
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

STANDARD_AUS: tuple[int, ...] = (1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24)
PARTS: tuple[tuple[str, ...], ...] = (
    ("F001", "M007", "F018", "F008", "F002", "M004", "F010", "F009", "M012", "M001", "F016", "M014", "F023", "M008"),
    ("M011", "F003", "M010", "M002", "F005", "F022", "M018", "M017", "F013", "M016", "F020", "F011", "M013", "M005"),
    ("F007", "F015", "F006", "F019", "M006", "M009", "F012", "M003", "F004", "F021", "F017", "M015", "F014"),
)
TEMPLATES: tuple[str, ...] = (
    "{subject}/{task}/{frame:04d}.jpg", "Sequences/{subject}/{task}/{frame:04d}.jpg",
    "{subject}/{task}/{frame}.jpg", "img/{subject}/{task}/{frame}.jpg", "images/{subject}/{task}/{frame}.jpg",
)


def _read_occ(path: Path, wanted: list[int]) -> tuple[list[int], list[int], np.ndarray]:
    """``(lines, frames, au [n, A] with NaN for 9)`` of one AU_OCC file."""
    text = read_lines(path)
    header = [au_number(h) for h in (text[0].split(",") if text else [])]
    columns = [header.index(a) if a in header[1:] else -1 for a in wanted]
    if not text or -1 in columns:
        missing = [a for a, c in zip(wanted, columns) if c < 0]
        problem(f"{path}:1", f"header lacks AU column(s) {', '.join(map(str, missing))}")
        return [], [], np.zeros((0, len(wanted)), np.float32)
    lines, frames, rows = [], [], []
    for number, line in enumerate(text[1:], start=2):
        cells = line.split(",")
        if not line.strip():
            continue
        try:
            values = [float(cells[c]) for c in columns]
            if any(v not in (0.0, 1.0, 9.0) for v in values):
                raise ValueError(f"AU values must be 0, 1 or 9, got {[cells[c] for c in columns]}")
            frames.append(int(cells[0]))
        except (ValueError, IndexError) as err:
            problem(f"{path}:{number}", f"malformed AU_OCC row ({err})")
            continue
        lines.append(number)
        rows.append(values)
    au = np.asarray(rows, np.float32).reshape(-1, len(wanted))
    au[au == 9.0] = np.nan  # not coded: masked per AU entry
    return lines, frames, au


@DATASETS.register("bp4d")
@dataset_options(FoldOptions)
def bp4d(config: DataConfig, splits: tuple[str, ...] = SPLITS) -> dict:
    """BP4D: AU occurrence, 3-fold subject-exclusive (``data.bp4d.fold``)."""
    check_options(config)
    options = FoldOptions.of(config)
    root = dataset_root(config, "BP4D", "AUCoding/AU_OCC/<subject>_<task>.csv and the frame images")
    occ_dir = find_dir(root, ["AUCoding/AU_OCC", "AU_OCC", "AUCoding"])
    files = sorted(occ_dir.glob("*_*.csv"))
    if not files:
        raise FacemtlError(f"{occ_dir}: no <subject>_<task>.csv AU occurrence files")
    wanted = au_ids(config, STANDARD_AUS)
    table = RecordTable(dataset_label_spaces(config, [au_name(a) for a in wanted]), root)
    template, folds = options.image_template, {}
    for path in files:
        subject, task = path.stem.split("_", 1)
        lines, frames, au = _read_occ(path, wanted)
        if not lines:
            continue
        if not template:
            template = resolve_template(root, "", TEMPLATES, {"subject": subject, "task": task, "frame": frames[0]},
                                        "data.bp4d.image_template")
        paths = [template.format(subject=subject, task=task, frame=f) for f in frames]
        table.extend(path, lines, paths, fold_split(subject, PARTS, options.fold, folds), au=au, groups=[subject] * len(paths))
    return build_splits(table.build(), config, splits)
