"""Face alignment: warp each detected face onto the crop the model was trained on.

With 5 detected points, a similarity transform (rotation, uniform scale, translation;
least squares, Umeyama 1991) maps them onto the checkpoint's ``template_5pt`` scaled to
``image_size``: the faces then look like the training crops. A checkpoint without a
template (or a detector without points) falls back to a square crop around the box with a
margin, which keeps roll and framing as detected: expect worse predictions.

Every transform is a ``[2, 3]`` matrix from original image pixels to crop pixels; its
inverse (:func:`invert`) maps predicted landmarks back to the original image.
"""

from __future__ import annotations

import cv2
import numpy as np


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform taking points ``src`` onto ``dst``.

    Args:
        src: ``[N, 2]`` points (N >= 2).
        dst: ``[N, 2]`` target points.

    Returns:
        ``[2, 3]`` float64 matrix ``M`` with ``dst ~ M[:, :2] @ src + M[:, 2]``.
    """
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = dst_c.T @ src_c / len(src)
    u, s, vt = np.linalg.svd(cov)
    d = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])  # no reflections
    rotation = u @ d @ vt
    variance = (src_c**2).sum() / len(src)
    scale = (s * np.diag(d)).sum() / variance if variance > 0 else 1.0
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - matrix[:, :2] @ src_mean
    return matrix


def box_transform(box: tuple[float, float, float, float], size: int, margin: float = 0.2) -> np.ndarray:
    """Transform cropping a square around ``box`` (side = longer box side x (1 + margin)) to ``size``."""
    x, y, w, h = box
    side = max(w, h, 1.0) * (1.0 + margin)
    scale = size / side
    # A box spans pixel edges (pixel i covers [i, i + 1]) while OpenCV puts pixel centres at
    # integer coordinates: both centres move by half a pixel, so a whole-image box of the
    # crop's size maps onto itself exactly (no half-pixel blur for --no-detect crops).
    cx, cy = x + w / 2 - 0.5, y + h / 2 - 0.5
    centre = (size - 1) / 2
    return np.array([[scale, 0.0, centre - scale * cx], [0.0, scale, centre - scale * cy]])


def face_transform(points: np.ndarray | None, box: tuple[float, float, float, float], size: int,
                   template: np.ndarray | None, margin: float = 0.2) -> np.ndarray:
    """Original pixels -> crop pixels for one face.

    Args:
        points: detected ``[5, 2]`` points, or ``None``.
        box: detected ``(x, y, w, h)``.
        size: crop side (the checkpoint's ``image_size``).
        template: ``[5, 2]`` image-normalised template, or ``None``.
        margin: box-crop margin, used when points or template are missing.
    """
    if points is not None and template is not None:
        return similarity_transform(points, to_crop_pixels(np.asarray(template, np.float64), size))
    return box_transform(box, size, margin)


def to_crop_pixels(normalised: np.ndarray, size: int) -> np.ndarray:
    """Image-normalised (x, y) -> OpenCV pixel coordinates of a ``size`` crop.

    facemtl's landmarks put pixel ``i``'s centre at ``(i + 0.5) / size``; OpenCV puts it
    at ``i``; the half pixel matters once a 64 px crop is scaled back to a photo.
    """
    return np.asarray(normalised, np.float64) * size - 0.5


def invert(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a ``[2, 3]`` affine transform."""
    return cv2.invertAffineTransform(np.asarray(matrix, np.float64))


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a ``[2, 3]`` transform to ``[..., 2]`` points."""
    points = np.asarray(points, np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def warp_face(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Crop ``[size, size, 3]`` uint8 with ``matrix`` from an RGB ``[H, W, 3]`` image.

    A face shrunk by more than 2x would alias under bilinear warping (the model was trained
    on smooth renders), so the source region is first reduced by an integer factor with
    area averaging (OpenCV's fast path; ~3x cheaper than a fractional factor), leaving a
    residual scale in [0.5, 1) for the bilinear warp. Pixels outside the image repeat the
    border rather than turning black.
    """
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    if scale < 0.5:
        k = int(np.ceil(0.5 / scale))
        corners = apply(invert(matrix), np.array([[0, 0], [size, 0], [0, size], [size, size]], np.float64))
        # pad by k so trimming the region to a multiple of k never cuts what the crop samples
        x0, y0 = np.floor(np.clip(corners.min(0) - k, 0, None)).astype(int)
        x1, y1 = np.ceil(np.minimum(corners.max(0) + k, [image.shape[1], image.shape[0]])).astype(int)
        x1, y1 = x0 + (x1 - x0) // k * k, y0 + (y1 - y0) // k * k
        if x1 > x0 and y1 > y0:
            small = cv2.resize(image[y0:y1, x0:x1], ((x1 - x0) // k, (y1 - y0) // k), interpolation=cv2.INTER_AREA)
            # small pixel centres -> original pixels (a block of k pixels has its centre at k/2 - 0.5)
            to_original = np.array([[k, 0, x0 + 0.5 * k - 0.5], [0, k, y0 + 0.5 * k - 0.5]], np.float64)
            matrix = np.column_stack([matrix[:, :2] @ to_original[:, :2], apply(matrix, to_original[:, 2])])
            image = small
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
