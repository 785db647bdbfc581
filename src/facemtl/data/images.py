"""Image decoding and face cropping shared by every real-dataset format.

Conventions:

- decoded images are RGB uint8 ``[H, W, 3]``: grey images are repeated to 3 channels,
  RGBA drops alpha, 16-bit images keep their 8 most significant bits;
- a face crop is a square ``(x0, y0, side)`` in source pixels, rounded to integers so the
  image crop and the landmark labels use exactly the same rectangle; parts outside the
  image are zero-padded (faces at the border keep their position in the crop);
- landmark labels are ``(point - (x0, y0)) / side``, i.e. (x, y) in [0, 1] inside the crop.
"""

from __future__ import annotations

import numpy as np

from facemtl.errors import FacemtlError

#: Row of :func:`face_rects` meaning "no face box: use the whole image".
WHOLE_IMAGE = -1


def to_rgb(image: np.ndarray, bgr: bool = True) -> np.ndarray:
    """Any decoded array (grey, grey+alpha, BGR, BGRA; 8 or 16 bit) as RGB uint8 ``[H, W, 3]``.

    Args:
        image: ``[H, W]`` or ``[H, W, C]`` with C in 1..4.
        bgr: colour channels are in OpenCV's BGR order (False for arrays from annotation files).
    """
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ValueError(f"unsupported image dtype {image.dtype}")
    if image.ndim == 2:
        image = image[:, :, None]
    channels = image.shape[2]
    if channels in (1, 2):  # grey (+ alpha): repeat the grey channel
        return np.ascontiguousarray(np.repeat(image[:, :, :1], 3, axis=2))
    rgb = image[:, :, 2::-1] if bgr else image[:, :, :3]
    return np.ascontiguousarray(rgb)


def read_image(path: str) -> np.ndarray:
    """Decode an image file to RGB uint8 ``[H, W, 3]``.

    Raises:
        FacemtlError: naming the file when it is missing, empty or not a decodable image.
    """
    try:
        # np.fromfile + imdecode instead of imread: imread silently fails on non-ASCII paths on Windows.
        data = np.fromfile(path, dtype=np.uint8)
    except (FileNotFoundError, IsADirectoryError):
        raise FacemtlError(f"{path}: image file not found") from None
    except OSError as err:
        raise FacemtlError(f"{path}: cannot read image ({err.strerror or err})") from None
    import cv2  # here, not at module level: `import facemtl.data` stays free of OpenCV

    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise FacemtlError(f"{path}: not a decodable image (empty, truncated or unsupported format)")
    return to_rgb(image)


def face_rects(boxes: np.ndarray | None, points: np.ndarray | None, margin: float, n: int) -> np.ndarray:
    """Square crop of each face, from its box or else from its landmarks' bounding box.

    Args:
        boxes: float ``[N, 4]`` (x, y, w, h) in source pixels, NaN rows = no box; or None.
        points: float ``[N, P, 2]`` source-pixel landmarks, rows with NaN = none; or None.
        margin: fraction of the box's longer side added on each side.
        n: number of faces.

    Returns:
        int64 ``[N, 3]`` ``(x0, y0, side)``; rows of :data:`WHOLE_IMAGE` where a face has
        neither box nor landmarks (the whole image is resized).
    """
    source = np.full((n, 4), np.nan)
    if points is not None and len(points):
        valid = ~np.isnan(points).any(axis=(1, 2))
        low, high = points[valid].min(axis=1), points[valid].max(axis=1)
        source[valid] = np.concatenate([low, high - low], axis=1)
    if boxes is not None and len(boxes):
        has_box = ~np.isnan(boxes).any(axis=1)
        source[has_box] = boxes[has_box]  # a given face box wins over the landmark box
    rects = np.full((n, 3), WHOLE_IMAGE, dtype=np.int64)
    ok = ~np.isnan(source).any(axis=1)
    x, y, w, h = source[ok].T
    side = np.maximum(w, h) * (1.0 + 2.0 * margin)
    rects[ok, 0] = np.floor(x + w / 2 - side / 2 + 0.5)
    rects[ok, 1] = np.floor(y + h / 2 - side / 2 + 0.5)
    rects[ok, 2] = np.maximum(np.round(side), 1)
    return rects


def landmark_labels(points: np.ndarray, rects: np.ndarray) -> np.ndarray:
    """Source-pixel landmarks ``[N, P, 2]`` as crop coordinates in [0, 1] (NaN where no crop)."""
    out = np.full(points.shape, np.nan, dtype=np.float32)
    ok = rects[:, 2] > 0
    origin = rects[ok, None, :2].astype(np.float64)
    out[ok] = (points[ok] - origin) / rects[ok, None, 2:3]
    return out


def crop_resize(image: np.ndarray, rect: np.ndarray, size: int) -> np.ndarray:
    """Cut the square ``rect = (x0, y0, side)`` out of ``image`` (zero-padded) and resize it.

    Args:
        image: RGB uint8 ``[H, W, 3]``.
        rect: one row of :func:`face_rects`; :data:`WHOLE_IMAGE` resizes the whole image.
        size: output side in pixels.

    Returns:
        RGB uint8 ``[size, size, 3]``.
    """
    x0, y0, side = (int(v) for v in rect)
    if side > 0:
        height, width = image.shape[:2]
        left, top = max(x0, 0), max(y0, 0)
        right, bottom = min(x0 + side, width), min(y0 + side, height)
        crop = np.zeros((side, side, 3), dtype=np.uint8)
        if right > left and bottom > top:
            crop[top - y0 : bottom - y0, left - x0 : right - x0] = image[top:bottom, left:right]
        image = crop
    if image.shape[0] == size and image.shape[1] == size:
        return np.ascontiguousarray(image)
    import cv2

    # INTER_AREA when shrinking avoids aliasing; linear when enlarging (FER2013's 48 px faces).
    shrink = image.shape[0] > size or image.shape[1] > size
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
