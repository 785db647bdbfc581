"""Aff-Wild2 multi-task challenge files (``data.name=affwild2_mtl``); see :mod:`.affwild2`.

One file per partition under ``data.root`` (or its ``annotations`` / ``MTL_Challenge``
folder): ``train_set.txt`` / ``training_set_annotations.txt`` and ``validation_set.txt`` /
``validation_set_annotations.txt``. Header line, then one frame per line::

    <video>/<frame>.jpg,valence,arousal,expression,AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26

with -5 (VA), -1 (expression; 7 Other is masked too) and -1 (AU) marking missing labels.
Images are ``cropped_aligned/<video>/<frame>.jpg``; a listed frame whose image is missing
is an error (``facemtl data check`` lists them all). Train -> train, Validation -> test,
validation = a seeded share of the training videos (see :mod:`.affwild2`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facemtl.config import DataConfig, dataset_options
from facemtl.data.formats._common import AUOptions, au_ids, au_number, dataset_root, find_dir, read_lines
from facemtl.data.formats.affwild2 import AUS_2022, parse_labels, video_group
from facemtl.data.record_dataset import build_splits, check_options
from facemtl.data.records import SPLITS, RecordTable, dataset_label_spaces, problem
from facemtl.errors import FacemtlError
from facemtl.labels import au_name
from facemtl.registry import DATASETS

FILES: dict[str, tuple[str, ...]] = {
    "train": ("train_set.txt", "training_set_annotations.txt", "training_set.txt"),
    "test": ("validation_set.txt", "validation_set_annotations.txt"),
}


def _header_aus(header: str) -> list[int]:
    names = [au_number(h) for h in header.split(",")[4:]]
    return [a for a in names if a is not None] if names and None not in names else list(AUS_2022)


def _read(table: RecordTable, path: Path, split: str, image_dir: str, all_aus: list[int], wanted: list[int]) -> None:
    columns = [all_aus.index(a) for a in wanted]
    rows: dict[str, list] = {k: [] for k in ("lines", "paths", "va", "expr", "au")}
    for number, line in enumerate(read_lines(path)[1:], start=2):
        cells = line.split(",")
        if not line.strip():
            continue
        try:
            if len(cells) != 4 + len(all_aus):
                raise ValueError(f"expected {4 + len(all_aus)} comma-separated values, got {len(cells)}")
            va = parse_labels("VA", cells[1:3], 2)
            expr = parse_labels("EXPR", cells[3:4], 1)[0]
            au = parse_labels("AU", cells[4:], len(all_aus))
        except ValueError as err:
            problem(f"{path}:{number}", str(err))
            continue
        for key, value in zip(rows, (number, f"{image_dir}/{cells[0].strip()}", va, -1 if np.isnan(expr) else int(expr),
                                     [au[c] for c in columns])):
            rows[key].append(value)
    groups = [video_group(p.rsplit("/", 2)[-2]) for p in rows["paths"]]
    table.extend(path, rows["lines"], rows["paths"], split, va=rows["va"], expr=rows["expr"], groups=groups,
                 au=np.asarray(rows["au"], np.float32).reshape(-1, len(wanted)))


@DATASETS.register("affwild2_mtl")
@dataset_options(AUOptions)
def affwild2_mtl(config: DataConfig, splits: tuple[str, ...] = SPLITS) -> dict:
    """Aff-Wild2 multi-task files: VA, expression and 12 AUs per frame."""
    check_options(config)
    root = dataset_root(config, "Aff-Wild2 (MTL)", "train_set.txt, validation_set.txt and cropped_aligned/")
    ann = find_dir(root, ["annotations/MTL_Challenge", "MTL_Challenge", "annotations"])
    found = {s: next((ann / n for n in names if (ann / n).is_file()), None) for s, names in FILES.items()}
    if found["train"] is None:
        raise FacemtlError(f"{ann}: no multi-task training file; expected one of {', '.join(FILES['train'])}")
    all_aus = _header_aus(read_lines(found["train"])[0] if read_lines(found["train"]) else "")
    wanted = au_ids(config, all_aus, all_aus, "the multi-task file")
    image_dir = find_dir(root, ["cropped_aligned"]).relative_to(root).as_posix()
    table = RecordTable(dataset_label_spaces(config, [au_name(a) for a in wanted]), root)
    for split, path in found.items():
        if path is not None:
            _read(table, path, split, image_dir, all_aus, wanted)
    return build_splits(table.build(), config, splits)
