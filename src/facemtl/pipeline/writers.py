"""Where rows and pictures go: a streaming CSV writer and the ``--annotate`` drawer."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, TextIO

import cv2
import numpy as np

from facemtl.pipeline.sources import Frame


def _format(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return "" if math.isnan(value) else f"{float(value):.6g}"  # 6 digits: 1/100 px on a 4K frame
    return str(value)


class CsvWriter:
    """Writes rows as they come and flushes after each batch, so a crash or Ctrl-C keeps them.

    Args:
        target: a file path (created, parent folders too) or an open text stream (stdout).
        columns: the header, see :func:`facemtl.pipeline.schema.columns`.
    """

    def __init__(self, target: str | Path | TextIO, columns: list[str]) -> None:
        if isinstance(target, (str, Path)):
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            self._handle: TextIO = open(target, "w", newline="", encoding="utf-8")  # noqa: SIM115  closed by close()
            self._owned = True
        else:
            self._handle, self._owned = target, False
        self.columns = columns
        self.rows = 0
        self._csv = csv.writer(self._handle)
        self._csv.writerow(columns)
        self._handle.flush()

    def write(self, rows: list[dict[str, Any]]) -> None:
        """Append rows (missing keys become empty cells) and flush."""
        self._csv.writerows([_format(row.get(c)) for c in self.columns] for row in rows)
        self._handle.flush()
        self.rows += len(rows)

    def close(self) -> None:
        if self._owned:
            self._handle.close()


def _points(row: dict[str, Any], prefix: str) -> list[tuple[float, float]]:
    points, i = [], 0
    while f"{prefix}x_{i}" in row:
        x, y = row[f"{prefix}x_{i}"], row[f"{prefix}y_{i}"]
        if x is not None and not math.isnan(x):
            points.append((x, y))
        i += 1
    return points


def draw(image: np.ndarray, rows: list[dict[str, Any]]) -> np.ndarray:
    """BGR copy of an RGB image with each face's box, landmarks and top expression drawn."""
    canvas = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    unit = max(1, round(max(image.shape[:2]) / 500))  # line width that stays visible on big photos
    for row in rows:
        if not row.get("success"):
            continue
        x, y, w, h = (round(row[k]) for k in ("face_x", "face_y", "face_w", "face_h"))
        cv2.rectangle(canvas, (x, y), (x + w, y + h), (0, 255, 0), unit)
        # predicted landmarks (68 iBUG points, else the 5-point scheme), else the detector's
        for px, py in _points(row, "") or _points(row, "lmk5_") or _points(row, "det_"):
            cv2.circle(canvas, (round(px), round(py)), 2 * unit, (0, 0, 255), -1)
        label = f"#{row['face_id']}"
        if row.get("expr_label"):
            label += f" {row['expr_label']} {row['expr_' + row['expr_label']]:.2f}"
        cv2.putText(canvas, label, (x, max(12 * unit, y - 4 * unit)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.45 * unit, (0, 255, 0), unit, cv2.LINE_AA)
    return canvas


class Annotator:
    """Writes ``--annotate`` output: one picture per image, one ``.mp4`` per video.

    Args:
        folder: output folder (created).
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._videos: dict[str, cv2.VideoWriter] = {}
        self._used: set[str] = set()

    def _name(self, source: str, suffix: str) -> Path:
        stem = Path(source).stem.strip("<>").replace(" ", "_") or "image"
        name, n = f"{stem}{suffix}", 1
        while name in self._used:  # same file name in two folders: keep both pictures
            n += 1
            name = f"{stem}-{n}{suffix}"
        self._used.add(name)
        return self.folder / name

    def add(self, frame: Frame, rows: list[dict[str, Any]], every: int = 1) -> None:
        """Draw ``rows`` on ``frame`` and save it (images) or append it to its video."""
        if frame.image is None:
            return
        canvas = draw(frame.image, rows)
        if not frame.video:
            cv2.imwrite(str(self._name(frame.input, ".jpg")), canvas)
            return
        writer = self._videos.get(frame.input)
        if writer is None:
            self.close()  # frames arrive input by input: the previous video is complete
            fps = (frame.fps or 25.0) / every
            size = (canvas.shape[1], canvas.shape[0])
            writer = cv2.VideoWriter(str(self._name(frame.input, ".mp4")), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
            self._videos[frame.input] = writer
        writer.write(canvas)

    def close(self) -> None:
        """Finish every video file."""
        for writer in self._videos.values():
            writer.release()
        self._videos.clear()
