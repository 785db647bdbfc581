"""dlib imglab XML landmark files (``data.name=dlib_xml``), e.g. dlib's 68-point examples.

``data.root`` is a folder of ``*.xml`` files (or one ``.xml`` file)::

    <image file='2007_007763.jpg' width='500' height='375'>
      <box top='90' left='194' width='37' height='37'>     <!-- ignore='1': skipped -->
        <part name='00' x='201' y='107'/> ... <part name='67' .../>
      </box>
    </image>

One face per ``<box>``; parts are ordered by their numeric ``name`` (68 iBUG points, or 5);
a box without parts is a face with no landmark label. Image paths are relative to the XML
file. Files whose name contains ``test`` are the test split, the others train; validation is
a seeded ``data.val_fraction`` of train, whole images at a time. Faces are cropped from their
box (``data.crop_margin`` default 0.2: dlib boxes are tight around the inner face).
"""

from __future__ import annotations

import os
from pathlib import Path
from xml.parsers import expat

import numpy as np

from facemtl.config import DataConfig
from facemtl.data.formats._common import dataset_root
from facemtl.data.record_dataset import build_splits
from facemtl.data.records import SPLITS, RecordTable, dataset_label_spaces, problem
from facemtl.errors import FacemtlError
from facemtl.registry import DATASETS


def read_imglab(path: Path) -> list[dict]:
    """Faces of one imglab XML: ``{"image", "line", "box" [x, y, w, h], "points" [(x, y)...]}``.

    Malformed boxes or parts are reported (:func:`~facemtl.data.records.problem`) with their line.
    """
    faces: list[dict] = []
    state: dict = {"image": None, "face": None}
    parser = expat.ParserCreate()

    def start(tag: str, attrs: dict[str, str]) -> None:
        where = f"{path}:{parser.CurrentLineNumber}"
        try:
            if tag == "image":
                state["image"] = attrs["file"]
            elif tag == "box" and state["image"] is not None:
                box = [float(attrs[k]) for k in ("left", "top", "width", "height")]
                skip = attrs.get("ignore", "0") == "1"
                state["face"] = None if skip else {"image": state["image"], "line": parser.CurrentLineNumber,
                                                    "box": box, "points": {}}
            elif tag == "part" and state["face"] is not None:
                state["face"]["points"][int(attrs["name"])] = (float(attrs["x"]), float(attrs["y"]))
        except (KeyError, ValueError) as err:
            problem(where, f"malformed <{tag}> ({err})")
            state["face"] = None if tag in ("box", "part") else state["face"]

    def end(tag: str) -> None:
        if tag == "box" and state["face"] is not None:
            face = state["face"]
            face["points"] = [face["points"][k] for k in sorted(face["points"])]
            faces.append(face)
            state["face"] = None
        elif tag == "image":
            state["image"] = None

    parser.StartElementHandler, parser.EndElementHandler = start, end
    try:
        parser.Parse(path.read_bytes(), True)
    except expat.ExpatError as err:
        problem(f"{path}:{err.lineno}", f"malformed XML ({expat.ErrorString(err.code)})")
    return faces


@DATASETS.register("dlib_xml")
def dlib_xml(config: DataConfig, splits: tuple[str, ...] = SPLITS) -> dict:
    """dlib imglab XML: face boxes and 68 (or 5) landmarks."""
    root = dataset_root(config, "dlib imglab", "*.xml landmark files next to their images")
    files = [root] if root.is_file() else sorted(root.glob("*.xml"))
    if not files:
        raise FacemtlError(f"{root}: no .xml files")
    folder = root.parent if root.is_file() else root
    parsed = {path: read_imglab(path) for path in files}
    counts = {len(f["points"]) for faces in parsed.values() for f in faces if f["points"]}
    num_points = max(counts) if counts else 0
    table = RecordTable(dataset_label_spaces(config), folder, num_points=num_points, margin=0.2)
    for path, faces in parsed.items():
        kept = []
        for face in faces:
            if face["points"] and len(face["points"]) != num_points:
                problem(f"{path}:{face['line']}", f"{len(face['points'])} parts, expected {num_points}")
                continue
            kept.append(face)
        points = np.full((len(kept), max(num_points, 1), 2), np.nan, np.float32)
        for i, face in enumerate(kept):
            if face["points"]:
                points[i] = face["points"]
        paths = [os.path.relpath(path.parent / f["image"], folder) for f in kept]
        split = "test" if "test" in path.stem.lower() else "train"
        table.extend(path, [f["line"] for f in kept], paths, split, boxes=[f["box"] for f in kept],
                     **({"points": points} if num_points else {}))
    return build_splits(table.build(), config, splits)
