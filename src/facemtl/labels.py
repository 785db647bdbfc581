"""Task keys and label spaces shared by data, models, losses, metrics and checkpoints.

facemtl knows five tasks, always referred to by these keys:

- ``expr``: facial expression, one of 7 or 8 classes (AffectNet order).
- ``au``: facial action units, multi-label, named by FACS number (``AU1``, ``AU12``...).
- ``va``: valence and arousal, two reals in [-1, 1].
- ``lmk``: K facial landmarks (5-point MTFL scheme or 68-point iBUG scheme),
  stored as (x, y) normalised by the image width and height, so in [0, 1] inside the image.
- ``attr``: named categorical face attributes (gender, smile, glasses, pose...).

A :class:`LabelSpaces` value says what each task's labels mean. It travels with every
dataset and every checkpoint, so predictions can always be named.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from facemtl.errors import FacemtlError

if TYPE_CHECKING:  # numpy is imported where the function runs: this module stays import-light
    import numpy as np

TASKS: tuple[str, ...] = ("expr", "au", "va", "lmk", "attr")

#: AffectNet's class order; the 7-class space drops ``contempt``.
EXPR_CLASSES_8: tuple[str, ...] = (
    "neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger", "contempt",
)
EXPR_CLASSES_7: tuple[str, ...] = EXPR_CLASSES_8[:7]

VA_NAMES: tuple[str, ...] = ("valence", "arousal")

#: 5-point scheme (MTFL): image-left eye first.
LANDMARKS_5: tuple[str, ...] = ("left_eye", "right_eye", "nose", "left_mouth", "right_mouth")

#: Mirror permutation of the 5-point scheme: eyes swap, nose stays, mouth corners swap.
MIRROR_5: tuple[int, ...] = (1, 0, 2, 4, 3)
#: Mirror permutation of the iBUG 68-point scheme (jaw, brows, nose, eyes, mouth).
MIRROR_68: tuple[int, ...] = (
    *range(16, -1, -1), *range(26, 16, -1), 27, 28, 29, 30, 35, 34, 33, 32, 31,
    45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40,
    54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55, 64, 63, 62, 61, 60, 67, 66, 65,
)

#: Attributes with MTFL semantics; class 0 is the first name.
DEFAULT_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "gender": ("male", "female"),
    "smile": ("no", "yes"),
    "glasses": ("no", "yes"),
    "pose": ("left_profile", "left", "frontal", "right", "right_profile"),
}


def mirror_permutation(num_points: int) -> tuple[int, ...]:
    """Index permutation that relabels landmarks after a horizontal flip (5 or 68 points):
    point ``i`` of the mirrored face is point ``perm[i]`` of the face."""
    if num_points == 5:
        return MIRROR_5
    if num_points == 68:
        return MIRROR_68
    raise FacemtlError(f"no mirror permutation for {num_points} landmarks; horizontal flips support 5 or 68 points")


def au_name(au_id: int) -> str:
    """FACS number to label name, e.g. ``12 -> "AU12"``."""
    return f"AU{int(au_id)}"


@dataclass(frozen=True)
class LabelSpaces:
    """What the labels of each task mean.

    Attributes:
        expr_classes: expression class names, index = class id.
        au_names: action unit names (``AU1``...), index = column of the AU label.
        num_landmarks: K, the number of (x, y) landmark points (5 or 68).
        attributes: attribute name -> class names (index = class id).
    """

    expr_classes: tuple[str, ...] = EXPR_CLASSES_7
    au_names: tuple[str, ...] = ()
    num_landmarks: int = 5
    attributes: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_ATTRIBUTES))

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> LabelSpaces:
        raw = json.loads(text)
        return cls(
            expr_classes=tuple(raw["expr_classes"]),
            au_names=tuple(raw["au_names"]),
            num_landmarks=int(raw["num_landmarks"]),
            attributes={k: tuple(v) for k, v in raw["attributes"].items()},
        )


def five_point_landmarks(points: np.ndarray) -> np.ndarray:
    """The 5-point scheme (eye centres, nose tip, mouth corners) from 5 or 68 points.

    Args:
        points: ``[..., 5, 2]`` or ``[..., 68, 2]`` in iBUG-68 order.

    Returns:
        ``[..., 5, 2]`` in :data:`LANDMARKS_5` order.
    """
    import numpy as np

    if points.shape[-2] == 5:
        return points
    if points.shape[-2] != 68:
        raise ValueError(f"expected 5 or 68 landmarks, got {points.shape[-2]}")
    left_eye = points[..., 36:42, :].mean(axis=-2)
    right_eye = points[..., 42:48, :].mean(axis=-2)
    return np.stack([left_eye, right_eye, points[..., 30, :], points[..., 48, :], points[..., 54, :]], axis=-2)
