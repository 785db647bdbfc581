"""Your own data as one CSV file (``data.name=csv``); the README "Datasets" section documents it.

``data.root`` is the CSV file, or a folder holding ``labels.csv``. Image paths are relative
to the CSV's folder (or absolute). One face per row; a header names the columns, all
optional except ``path``, and an empty cell is a missing label:

- ``path``: the image file;
- ``split``: ``train`` / ``val`` / ``test`` (absent: seeded test and validation shares are
  carved out of the rows, ``data.test_fraction`` and ``data.val_fraction``);
- ``group``: subject / video id, so carved splits never split a subject;
- ``box_x, box_y, box_w, box_h``: face box in pixels (crop; without one the image is used whole);
- ``expr``: class name (``neutral, happiness, sadness, surprise, fear, disgust, anger,
  contempt``) or index in that (AffectNet) order;
- ``AU<n>`` (e.g. ``AU1, AU12``): 1 present / 0 absent; -1 or 9 = not coded;
- ``valence, arousal``: in [-1, 1];
- ``landmarks``: ``x;y;x;y;...`` in pixels, 5 (eyes, nose, mouth corners) or 68 (iBUG) points;
- ``attr_<name>`` (e.g. ``attr_gender``): class index or name. gender, smile, glasses and pose
  use facemtl's class names (see ``facemtl.labels.DEFAULT_ATTRIBUTES``); other attributes take
  their sorted distinct values as class names.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from facemtl.config import DataConfig, dataset_options
from facemtl.data.formats._common import AUOptions, au_ids, au_number, csv_rows, dataset_root, to_float, to_int
from facemtl.data.record_dataset import build_splits, check_options
from facemtl.data.records import SPLITS, RecordTable, dataset_label_spaces, problem
from facemtl.errors import FacemtlError
from facemtl.labels import DEFAULT_ATTRIBUTES, au_name
from facemtl.registry import DATASETS

BOX = ("box_x", "box_y", "box_w", "box_h")


def _class(text: str, names: tuple[str, ...], what: str) -> int:
    value = text.strip().lower()
    if value in names:
        return names.index(value)
    try:
        index = to_int(value)
    except ValueError:
        index = -1
    if not 0 <= index < len(names):
        raise ValueError(f"{what} {text!r} is neither a class name ({', '.join(names)}) nor an index below {len(names)}")
    return index


def _attributes(rows: list[dict[str, str]], header: list[str]) -> dict[str, tuple[str, ...]]:
    """Attribute name -> class names for every ``attr_<name>`` column."""
    out = {}
    for column in (h for h in header if h.startswith("attr_")):
        name = column[5:]
        values = sorted({(r[column] or "").strip() for r in rows} - {""})
        out[name] = DEFAULT_ATTRIBUTES.get(name, tuple(values))
    return out


def _parse_row(row: dict[str, str], aus: dict[int, str], spaces, num_points: int) -> dict:
    """The label columns of one row, with sentinels for empty cells; ValueError when malformed."""
    def cell(key: str) -> str:
        return (row.get(key) or "").strip()

    out: dict = {"expr": -1 if not cell("expr") else _class(cell("expr"), spaces.expr_classes, "expr")}
    au = [to_float(cell(c)) if cell(c) else np.nan for c in aus.values()]
    if any(v not in (0.0, 1.0, -1.0, 9.0) for v in au if not np.isnan(v)):
        raise ValueError(f"AU values must be 0, 1, -1 or 9, got {au}")
    out["au"] = [np.nan if v in (-1.0, 9.0) else v for v in au]
    va = [to_float(cell(c)) if cell(c) else np.nan for c in ("valence", "arousal")]
    if any(abs(v) > 1 for v in va if not np.isnan(v)):
        raise ValueError(f"valence/arousal {va} outside [-1, 1]")
    out["va"] = va
    out["attr"] = [_class(cell(f"attr_{n}"), tuple(c.lower() for c in classes), f"attr_{n}") if cell(f"attr_{n}") else -1
                   for n, classes in spaces.attributes.items()]
    out["boxes"] = [to_float(cell(c)) for c in BOX] if all(cell(c) for c in BOX) else [np.nan] * 4
    points = [to_float(v) for v in cell("landmarks").split(";")] if cell("landmarks") else [np.nan] * (2 * num_points)
    if len(points) != 2 * num_points:
        raise ValueError(f"landmarks has {len(points)} numbers, expected {2 * num_points} (x;y per point)")
    out["points"] = np.asarray(points, np.float32).reshape(-1, 2)
    return out


def _num_points(rows: list[dict[str, str]]) -> int:
    """Landmarks per face: the most common of 5 / 68 in the column (rows with others are malformed)."""
    counts = Counter(len(text.split(";")) // 2 for r in rows if (text := (r.get("landmarks") or "").strip()))
    valid = [(n, k) for k, n in counts.items() if k in (5, 68)]
    if counts and not valid:
        raise FacemtlError(f"the landmarks column must hold 5 or 68 x;y points, found {sorted(counts)}")
    return max(valid)[1] if valid else 0


@DATASETS.register("csv")
@dataset_options(AUOptions)
def generic_csv(config: DataConfig, splits: tuple[str, ...] = SPLITS) -> dict:
    """Any subset of the five tasks from one CSV file (see the module docstring)."""
    check_options(config)
    root = dataset_root(config, "CSV dataset", "a CSV file (or a folder with labels.csv) and the images")
    path = root if root.is_file() else root / "labels.csv"
    if not path.is_file():
        raise FacemtlError(f"{root}: no labels.csv (data.root may also be the CSV file itself)")
    numbered = list(csv_rows(path, ("path",)))
    header = list(numbered[0][1]) if numbered else []
    rows = [r for _, r in numbered]
    columns = {au_number(h): h for h in header if h.lower().startswith("au") and au_number(h) is not None}
    wanted = au_ids(config, sorted(columns), sorted(columns), str(path))
    aus = {a: columns[a] for a in wanted}
    spaces = dataset_label_spaces(config, [au_name(a) for a in wanted], _attributes(rows, header))
    num_points = _num_points(rows)
    table = RecordTable(spaces, path.parent, num_points=num_points)
    has_split = "split" in header
    kept: dict[str, list] = {k: [] for k in ("lines", "paths", "split", "groups", "expr", "au", "va", "attr", "boxes", "points")}
    for number, row in numbered:
        try:
            labels = _parse_row(row, aus, spaces, num_points)
            split = (row["split"] or "").strip().lower() if has_split else "train"
            if split not in SPLITS:
                raise ValueError(f"split {split!r} is not one of {', '.join(SPLITS)}")
        except (ValueError, TypeError) as err:
            problem(f"{path}:{number}", str(err))
            continue
        image = (row["path"] or "").strip()
        for key, value in (("lines", number), ("paths", image), ("split", split),
                           ("groups", (row.get("group") or "").strip() or image), *labels.items()):
            kept[key].append(value)
    lines, paths, split, groups = (kept.pop(k) for k in ("lines", "paths", "split", "groups"))
    if not num_points:
        kept.pop("points")
    table.extend(path, lines, paths, split, groups=groups, **kept)
    return build_splits(table.build(), config, splits, carve_test=not has_split)
