"""The per-face CSV schema of ``facemtl predict``, in one place (docs/output.md, column by column).

One row per detected face per processed frame (an image is one frame). A processed frame
with no face, and an input that could not be read, still get one row with ``success = 0``
so the output accounts for every input. A column whose name OpenFace 2 uses means what
OpenFace's means (``frame`` from 1, ``face_id``, ``timestamp``, ``confidence``, ``success``;
``x_i``, ``y_i`` only ever the 68 iBUG points in image pixels; ``AUxx_c`` presence 0/1);
everything else carries facemtl's own prefix. A column exists only when the model predicts
it: the task specs (:mod:`facemtl.tasks`) own their columns. Bump :data:`SCHEMA_VERSION`
whenever a column changes name or meaning.

This module imports neither OpenCV nor pandas (nor torch), so tools can read the schema cheaply.
"""

from __future__ import annotations

from facemtl.labels import LabelSpaces
from facemtl.tasks import spec

SCHEMA_VERSION = "2"

#: Always present, in this order. ``frame`` is the 1-based index in the decoded video
#: (before ``--every``), as OpenFace's; 1 for images. ``timestamp`` is in seconds since the video stream's
#: start (0.0 for images). ``face_id`` is stable across the frames of one video (IoU
#: tracking), -1 on ``success = 0`` rows. ``confidence`` is the detector's score (1.0 with
#: no detection). ``face_*`` is the detected box in original image pixels. ``det_x_i``,
#: ``det_y_i`` are the detector's 5 points (eyes, nose tip, mouth corners, image-left
#: first) in original pixels. ``error`` says why an input produced no face rows.
BASE_COLUMNS: tuple[str, ...] = (
    "input", "frame", "face_id", "timestamp", "confidence", "success",
    "face_x", "face_y", "face_w", "face_h",
    *(f"det_x_{i}" for i in range(5)), *(f"det_y_{i}" for i in range(5)),
)
TAIL_COLUMNS: tuple[str, ...] = ("error",)

def task_columns(tasks: list[str] | tuple[str, ...], spaces: LabelSpaces) -> list[str]:
    """Prediction columns for a checkpoint's tasks: each task's spec's columns, in a fixed order.

    Built-in tasks give ``x_0..x_{K-1}, y_0..y_{K-1}`` (landmarks, original pixels), ``AUxx_c``
    (0/1) then ``AUxx_p`` (probability), ``expr_<class>`` probabilities and ``expr_label``,
    ``valence``, ``arousal``, and per attribute ``attr_<name>`` (predicted class name) plus
    ``attr_<name>_<class>`` probabilities; each group only if its task is present.
    """
    specs = sorted((spec(task) for task in tasks), key=lambda s: (s.column_order, s.name))
    return [column for s in specs for column in s.columns(spaces)]


def columns(tasks: list[str] | tuple[str, ...], spaces: LabelSpaces) -> list[str]:
    """All CSV columns, in order, for a checkpoint with ``tasks`` and ``spaces``."""
    return [*BASE_COLUMNS, *task_columns(tasks, spaces), *TAIL_COLUMNS]
