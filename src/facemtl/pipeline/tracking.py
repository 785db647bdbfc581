"""Following a face between detections: where it is now, from the landmarks the model predicted.

With ``--detect-every K`` the detector runs on every K-th frame of a video; on the frames
between, each face analysed in the previous frame is followed: the model's landmarks for it
(mapped back to image pixels) become this frame's alignment points, and its box moves and
scales with them. The face keeps its ``face_id`` (the IoU tracker sees the moved box). A face
whose followed points leave the image is dropped until the next detection finds it again.
"""

from __future__ import annotations

import numpy as np

from facemtl.geometry import apply, invert, to_crop_pixels
from facemtl.labels import five_point_landmarks
from facemtl.pipeline.detect import Detection


def followed_detection(
    previous: Detection, matrix: np.ndarray, landmarks: np.ndarray | None, crop_size: int, width: int, height: int
) -> Detection | None:
    """The detection of a face in this frame, from its analysis in the previous one.

    Args:
        previous: the face's detection in the previous frame (original pixels).
        matrix: the previous frame's alignment (original pixels -> crop pixels).
        landmarks: the model's landmarks for that crop, ``[K, 2]`` crop-normalised (5 or 68
            points), or None for a model without landmarks: the face is then kept where it was.
        crop_size: the crop's side in pixels.
        width, height: this frame's size.

    Returns:
        The moved detection, or None when the followed points leave the frame.
    """
    if landmarks is None or previous.points is None:
        return previous
    points = five_point_landmarks(apply(invert(matrix), to_crop_pixels(np.asarray(landmarks, np.float64), crop_size)))
    if not np.isfinite(points).all() or not _inside(points, width, height):
        return None
    old_eyes = np.linalg.norm(previous.points[1] - previous.points[0])
    new_eyes = np.linalg.norm(points[1] - points[0])
    scale = new_eyes / old_eyes if old_eyes > 0 and new_eyes > 0 else 1.0
    shift = points.mean(axis=0) - previous.points.mean(axis=0)
    x, y, w, h = previous.box
    centre = np.array([x + w / 2, y + h / 2]) + shift
    w, h = w * scale, h * scale
    box = (float(centre[0] - w / 2), float(centre[1] - h / 2), float(w), float(h))
    return Detection(box=box, points=points.astype(np.float32), score=previous.score)


def _inside(points: np.ndarray, width: int, height: int) -> bool:
    """All points within the frame (a face walking out is lost, not extrapolated)."""
    return bool((points[:, 0] >= 0).all() and (points[:, 0] < width).all()
                and (points[:, 1] >= 0).all() and (points[:, 1] < height).all())
