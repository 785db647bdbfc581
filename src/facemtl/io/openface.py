"""OpenFace 2 CSV files, read with facemtl's column names, so the two tools compare column by column.

OpenFace 2 writes one CSV per input: ``FeatureExtraction`` (videos, image sequences) a header
``frame, face_id, timestamp, confidence, success, gaze_..., pose_..., x_0..x_67, y_0..y_67,
X_.., Y_.., Z_.., p_..., AUxx_r..., AUxx_c...`` and ``FaceLandmarkImg`` (one image) the same
with ``face, confidence`` in front; fields are separated by ``", "`` (later builds: ``","``).
Every OpenFace column is a number. facemtl's own CSV (docs/output.md) shares OpenFace's names
where the meaning is the same (``frame`` from 1, ``face_id``, ``timestamp``, ``confidence``,
``success``, the 68 ``x_i``/``y_i``, ``AUxx_c``), which is why one reader serves both.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pandas as pd

from facemtl.errors import FacemtlError

#: Every column OpenFace 2 writes (all numeric), whichever outputs were switched on.
OPENFACE_COLUMN = re.compile(
    r"frame|face|face_id|timestamp|confidence|success"
    r"|gaze_[01]_[xyz]|gaze_angle_[xy]|eye_lmk_[xyXYZ]_\d+|pose_[TR][xyz]"
    r"|[xyXYZ]_\d+|p_(?:scale|r[xyz]|t[xy]|\d+)|AU\d\d_[rcd]"
)
#: OpenFace columns that hold whole numbers (written as "1" or "1.0"): made int64 when they can be.
_INTEGER_COLUMN = re.compile(r"frame|face_id|success|AU\d\d_c")

EXPECTED = ("an OpenFace 2 CSV: a header 'frame, face_id, timestamp, confidence, success, ...' (FeatureExtraction) "
            "or 'face, confidence, ...' (FaceLandmarkImg), then one row of numbers per face")


def read_openface(path: str | Path) -> pd.DataFrame:
    """Read an OpenFace 2 CSV (``FeatureExtraction`` or ``FaceLandmarkImg`` output) into a DataFrame.

    Column names are stripped of OpenFace's spaces and keep OpenFace's names, which are
    facemtl's where the meaning is the same; OpenFace's columns are numeric (``frame``,
    ``face_id``, ``success`` and ``AUxx_c`` int64 when every value is whole). Also:

    - ``input``: the CSV file's path, first (OpenFace writes one CSV per input and does not
      name it); a file that already has an ``input`` column (facemtl's CSV) keeps its own;
    - ``FaceLandmarkImg``'s ``face`` is renamed ``face_id``, and its rows get ``frame = 1``
      and ``timestamp = 0.0``, as facemtl writes for an image.

    Other columns (a facemtl CSV's ``expr_label``, ``error``...) are kept as pandas reads them,
    so a facemtl CSV reads too: ``read_openface("faces.csv")[["frame", "face_id", "x_0"]]``.

    Raises:
        FacemtlError: one line naming the file and what was expected, for a missing or empty
            file, a header without OpenFace's first columns, a row whose field count differs
            from the header's, or a value in an OpenFace column that is not a number.
    """
    path = Path(path)
    text, header = _checked_text(path)
    try:
        table = pd.read_csv(io.StringIO(text), skipinitialspace=True, low_memory=False)
    except ValueError as err:  # pandas' ParserError is a ValueError
        raise FacemtlError(f"{path}: {str(err).strip().splitlines()[-1]}; expected {EXPECTED}") from None
    table.columns = header  # stripped of OpenFace's spaces
    columns: dict[str, pd.Series] = {}
    for column in header:
        values = _numeric(path, column, table[column]) if OPENFACE_COLUMN.fullmatch(column) else table[column]
        if column == "face" and "face_id" not in header:  # FaceLandmarkImg: one image, as facemtl writes it
            columns["frame"] = pd.Series(1, index=table.index, dtype="int64")
            columns["face_id"] = values
            columns["timestamp"] = pd.Series(0.0, index=table.index)
        else:
            columns[column] = values
    if "input" not in columns:
        columns = {"input": pd.Series(str(path), index=table.index), **columns}
    return pd.DataFrame(columns, index=table.index)


def _checked_text(path: Path) -> tuple[str, list[str]]:
    """The file's text and stripped header, or a one-line error saying what is wrong with them."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise FacemtlError(f"{path}: cannot read it ({reason}); expected {EXPECTED}") from None
    lines = csv.reader(text.splitlines())
    header = [name.strip() for name in next(lines, [])]
    if not header:
        raise FacemtlError(f"{path}: the file is empty; expected {EXPECTED}")
    if ("frame" not in header and "face" not in header) or "confidence" not in header:
        found = ", ".join(header[:5]) + (", ..." if len(header) > 5 else "")
        raise FacemtlError(f"{path}: header '{found}' is not OpenFace's; expected {EXPECTED}")
    twice = sorted({name for name in header if header.count(name) > 1})
    if twice:
        raise FacemtlError(f"{path}: {', '.join(twice)} named twice in the header; expected {EXPECTED}")
    for number, row in enumerate(lines, start=2):
        if row and len(row) != len(header):  # pandas would fill a short (truncated) row with NaN
            raise FacemtlError(f"{path}, line {number}: {len(row)} fields, the header has {len(header)}; "
                               f"expected {EXPECTED}")
    return text, header


def _numeric(path: Path, column: str, values: pd.Series) -> pd.Series:
    """An OpenFace column as numbers (int64 for whole-valued counters and presences), or a one-line error."""
    numbers = pd.to_numeric(values, errors="coerce")
    bad = numbers.isna() & values.notna()
    if bad.any():
        row = int(bad.to_numpy().argmax())
        raise FacemtlError(f"{path}, line {row + 2}: {column} = {values.iloc[row]!r} is not a number; "
                           f"expected {EXPECTED}")
    if _INTEGER_COLUMN.fullmatch(column) and numbers.notna().all() and (numbers % 1 == 0).all():
        numbers = numbers.astype("int64")
    return numbers
