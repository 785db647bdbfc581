"""Face detectors: an RGB frame in, faces with a box and 5 points out.

Detectors are a small pluggable stage: :data:`DETECTORS` maps a name to a class whose
``detect(image)`` returns a list of :class:`Detection`. Built in:

- ``yunet``: OpenCV's YuNet (``cv2.FaceDetectorYN``), boxes plus 5 detected points. Its
  ~230 KB ONNX file is found by :func:`yunet_model_path` (explicit path, ``FACEMTL_YUNET``,
  the per-user cache, or one download from the OpenCV model zoo, SHA-256 checked).
- ``haar``: OpenCV's bundled frontal-face Haar cascade; needs no file at all. It has no
  landmarks, so the 5 points are *estimated* from the box with fixed proportions: cruder
  alignment, frontal faces only, more misses and false positives.
- ``auto`` (default): YuNet when its model file can be had, else Haar with a warning.
- ``none``: the whole image is one face (already-cropped inputs, ``--no-detect``).
"""

from __future__ import annotations

import functools
import hashlib
import os
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from facemtl.errors import FacemtlError

YUNET_FILE = "face_detection_yunet_2023mar.onnx"
YUNET_URL = f"https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/{YUNET_FILE}"
YUNET_SHA256 = "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4"

#: Mean YuNet points relative to the Haar box (x, y as fractions of w, h), measured on 73
#: faces of the development photos; the measured spread is ~0.05 of the box per coordinate.
HAAR_POINTS = np.array([[0.32, 0.39], [0.68, 0.39], [0.50, 0.60], [0.35, 0.77], [0.65, 0.77]], np.float32)

#: Detection images thinner than this hold no findable face; YuNet returns garbage on them.
MIN_SIDE = 8


@dataclass(frozen=True)
class Detection:
    """One detected face in original image pixels.

    Attributes:
        box: ``(x, y, w, h)``.
        points: ``[5, 2]`` (x, y): eye centres, nose tip, mouth corners, image-left first;
            ``None`` when the detector has none (``none``): alignment then crops the box.
        score: detector confidence in [0, 1].
    """

    box: tuple[float, float, float, float]
    points: np.ndarray | None
    score: float


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "facemtl"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@functools.cache
def _packaged_yunet() -> Path | None:
    """The YuNet file shipped in ``facemtl/weights`` (232 KB, MIT), if present and intact."""
    packaged = Path(__file__).resolve().parents[1] / "weights" / YUNET_FILE
    return packaged if packaged.is_file() and _sha256(packaged) == YUNET_SHA256 else None


def yunet_model_path(path: str | Path | None = None, download: bool = True) -> Path:
    """Locate the YuNet ONNX file: ``path``, else ``$FACEMTL_YUNET``, else the copy shipped in
    the package (``facemtl/weights``), else the cache, else download.

    The download (once, into ``~/.cache/facemtl``) is hash-checked and written atomically,
    so a half-finished or tampered file is never used.

    Raises:
        FacemtlError: the named file is missing, or no file is cached and the download fails.
    """
    explicit = path or os.environ.get("FACEMTL_YUNET")
    if explicit:
        if not Path(explicit).is_file():
            raise FacemtlError(f"YuNet model {explicit} does not exist")
        return Path(explicit)
    packaged = _packaged_yunet()
    if packaged is not None:
        return packaged
    cached = _cache_dir() / YUNET_FILE
    if cached.is_file():
        return cached
    if not download:
        raise FacemtlError(f"no YuNet model at {cached}; set FACEMTL_YUNET=/path/to/{YUNET_FILE}")
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_name(cached.name + f".{os.getpid()}.tmp")
    try:
        with urllib.request.urlopen(YUNET_URL, timeout=20) as response:
            tmp.write_bytes(response.read())
        digest = _sha256(tmp)
        if digest != YUNET_SHA256:
            raise FacemtlError(f"downloaded {YUNET_URL} has SHA-256 {digest}, expected {YUNET_SHA256}")
        os.replace(tmp, cached)
    except OSError as err:
        raise FacemtlError(
            f"cannot download the YuNet face detector model ({err}); set FACEMTL_YUNET=/path/to/{YUNET_FILE} "
            "or use --detector haar"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
    return cached


def _downscale(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """Shrink so the longer side is at most ``max_side``; returns the image and the scale used."""
    scale = min(1.0, max_side / max(image.shape[:2]))
    if scale < 1.0:
        size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return image, scale


class YuNetDetector:
    """OpenCV YuNet: boxes, 5 landmarks and a score per face.

    Args:
        model: ONNX file (see :func:`yunet_model_path` for how ``None`` is resolved).
        score_threshold: minimum face score.
        nms_threshold: IoU above which overlapping boxes are merged.
        max_side: frames are shrunk to this longer side before detection; detection cost
            grows with pixel count, and YuNet finds faces down to ~10 px at this size.
    """

    def __init__(self, model: str | Path | None = None, score_threshold: float = 0.6,
                 nms_threshold: float = 0.3, max_side: int = 640) -> None:
        self.max_side = max_side
        self._net = cv2.FaceDetectorYN.create(str(yunet_model_path(model)), "", (320, 320),
                                              score_threshold, nms_threshold, 5000)
        self._size = (320, 320)

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces in an RGB uint8 ``[H, W, 3]`` image, in original pixel coordinates."""
        small, scale = _downscale(image, self.max_side)
        if min(small.shape[:2]) < MIN_SIDE:
            return []
        size = (small.shape[1], small.shape[0])
        if size != self._size:  # YuNet's anchors are built for one input size
            self._net.setInputSize(size)
            self._size = size
        _, faces = self._net.detect(cv2.cvtColor(small, cv2.COLOR_RGB2BGR))  # trained on BGR
        if faces is None:
            return []
        faces = faces.astype(np.float64) / np.r_[np.full(14, scale), 1.0]
        faces = faces[np.isfinite(faces).all(axis=1) & (faces[:, 2] > 0) & (faces[:, 3] > 0)]
        return [Detection(tuple(f[:4]), f[4:14].reshape(5, 2).astype(np.float32), float(f[14])) for f in faces]


class HaarDetector:
    """OpenCV's bundled frontal-face Haar cascade; 5 points estimated from the box.

    The cascade gives no calibrated score, so ``score`` is 1.0.

    Args:
        min_size: smallest face, in pixels of the (shrunk) detection image.
        min_neighbors: overlapping hits needed to keep a face; 6 gave the fewest wrong
            counts on the development photos (5 adds false positives, 4 more so).
        max_side: as for :class:`YuNetDetector`.
    """

    def __init__(self, min_size: int = 24, min_neighbors: int = 6, max_side: int = 640) -> None:
        self.min_size, self.min_neighbors, self.max_side = min_size, min_neighbors, max_side
        self._cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
        if self._cascade.empty():
            raise FacemtlError("OpenCV's Haar cascade file is missing from this OpenCV install")

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces in an RGB uint8 ``[H, W, 3]`` image, in original pixel coordinates."""
        small, scale = _downscale(image, self.max_side)
        if min(small.shape[:2]) < MIN_SIDE:
            return []
        grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
        boxes = self._cascade.detectMultiScale(grey, 1.1, self.min_neighbors, minSize=(self.min_size, self.min_size))
        result = []
        for x, y, w, h in np.asarray(boxes, np.float64).reshape(-1, 4) / scale:
            points = (np.array([x, y]) + HAAR_POINTS * np.array([w, h])).astype(np.float32)
            result.append(Detection((x, y, w, h), points, 1.0))
        return result


class WholeImageDetector:
    """No detection: the whole image is one face (inputs that are already face crops)."""

    def detect(self, image: np.ndarray) -> list[Detection]:
        h, w = image.shape[:2]
        return [Detection((0.0, 0.0, float(w), float(h)), None, 1.0)]


DETECTORS: dict[str, type] = {"yunet": YuNetDetector, "haar": HaarDetector, "none": WholeImageDetector}


def create_detector(name: str, **options) -> YuNetDetector | HaarDetector | WholeImageDetector:
    """Build a detector by name (``auto``, or a key of :data:`DETECTORS`).

    ``auto`` is YuNet when its model file is available (path, env, cache or download) and
    otherwise falls back to Haar with a warning, so a fresh offline install still works.
    """
    if name == "auto":
        try:
            return YuNetDetector(**options)
        except FacemtlError as err:
            warnings.warn(f"using the cruder Haar face detector: {err}", stacklevel=2)
            return HaarDetector(**{k: v for k, v in options.items() if k == "max_side"})
    if name not in DETECTORS:
        raise FacemtlError(f"unknown detector {name!r}; valid: auto, {', '.join(DETECTORS)}")
    return DETECTORS[name](**options)
