"""Inputs to frames: paths, folders, arrays and PIL images become a stream of :class:`Frame`.

Everything is turned into RGB uint8 ``[H, W, 3]`` here, once, so the rest of the
pipeline never sees alpha channels, grey images, 16-bit or float pixels.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from facemtl.errors import FacemtlError
from facemtl.pipeline.video import iter_video, video_info

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".jp2", ".pgm", ".ppm", ".pnm"}
VIDEO_EXTENSIONS = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts"}


@dataclass
class Frame:
    """One image or decoded video frame, or the reason an input produced none.

    Attributes:
        input: the input's name (path, or ``<array i>`` for in-memory images).
        index: 0-based frame index in the video (0 for images).
        timestamp: seconds since the video's first frame (0.0 for images).
        image: RGB uint8 ``[H, W, 3]``; ``None`` when ``error`` is set.
        error: why no image is available (unreadable, unsupported, decoding failed...).
        video: whether the frame comes from a video.
        fps: the video's frame rate, when known.
    """

    input: str
    index: int
    timestamp: float
    image: np.ndarray | None
    error: str = ""
    video: bool = False
    fps: float | None = None


@dataclass(frozen=True)
class Source:
    """One input: ``kind`` is ``image``, ``video``, ``array`` or ``bad`` (with ``error``).

    ``header`` holds what a video's header said when first read (:func:`_video_header`), so
    the progress count and the decoding share one look: a file FFmpeg cannot open is opened
    (and complained about, by FFmpeg too) once.
    """

    name: str
    kind: str
    data: Any = None
    error: str = ""
    header: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


def to_rgb_uint8(array: np.ndarray) -> np.ndarray:
    """RGB uint8 ``[H, W, 3]`` from grey ``[H, W]``/``[H, W, 1]``, RGB, or RGBA (alpha dropped).

    uint16 keeps its 8 high bits; floats are taken as [0, 1].
    """
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)) or min(array.shape[:2]) < 1:
        raise FacemtlError(f"expected an image array [H, W], [H, W, 3] or [H, W, 4], got shape {array.shape}")
    if array.dtype == np.uint16:
        array = (array >> 8).astype(np.uint8)
    elif np.issubdtype(array.dtype, np.floating) or array.dtype == bool:
        array = (np.clip(np.nan_to_num(array.astype(np.float32)), 0, 1) * 255 + 0.5).astype(np.uint8)
    elif array.dtype != np.uint8:
        array = np.clip(array, 0, 255).astype(np.uint8)
    if array.ndim == 2:
        return np.ascontiguousarray(np.repeat(array[:, :, None], 3, axis=2))
    return np.ascontiguousarray(array[:, :, :3])


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as RGB uint8 ``[H, W, 3]`` (EXIF orientation applied).

    OpenCV's ``IMREAD_COLOR`` already turns grey, RGBA and 16-bit files into 8-bit colour.

    Raises:
        FacemtlError: the file is missing, empty or not a decodable image.
    """
    try:
        data = np.fromfile(str(path), dtype=np.uint8)  # fromfile + imdecode also handles non-ASCII paths
    except OSError as err:
        raise FacemtlError(f"cannot read file ({err.strerror or err})") from None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise FacemtlError("not a readable image (corrupt, empty or unsupported format)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _is_pil(obj: Any) -> bool:
    return type(obj).__module__.startswith("PIL.") and hasattr(obj, "convert")


def _pil_to_array(image: Any) -> np.ndarray:
    if image.mode in ("RGB", "L", "RGBA", "I;16", "I;16B", "I;16L"):
        return np.asarray(image)
    return np.asarray(image.convert("RGB"))


def _path_source(path: Path) -> list[Source]:
    if path.is_dir():
        # hidden = a dot-name *inside* the folder: the folder's own path may well be "../photos"
        files = sorted(p for p in path.rglob("*") if p.is_file()
                       and not any(part.startswith(".") for part in p.relative_to(path).parts)
                       and p.suffix.lower() in IMAGE_EXTENSIONS | VIDEO_EXTENSIONS)
        return [_path_source(p)[0] for p in files]  # an empty folder contributes nothing
    if not path.exists():
        return [Source(str(path), "bad", error="no such file or folder")]
    suffix = path.suffix.lower()
    if suffix in VIDEO_EXTENSIONS:
        return [Source(str(path), "video", path)]
    if suffix in IMAGE_EXTENSIONS:
        return [Source(str(path), "image", path)]
    return [Source(str(path), "bad", error=f"unsupported file type {suffix or '(no extension)'!r}; "
                   f"images: {' '.join(sorted(IMAGE_EXTENSIONS))}; videos: {' '.join(sorted(VIDEO_EXTENSIONS))}")]


def expand_sources(source: Any) -> tuple[list[Source], list[str]]:
    """Flatten a path, folder, array, PIL image or a list of them into sources.

    Folders are searched recursively for image and video extensions, sorted by path.

    Returns:
        The sources, and a note per input that yielded nothing (e.g. an empty folder).
    """
    items = list(source) if isinstance(source, (list, tuple)) else [source]
    sources: list[Source] = []
    notes: list[str] = []
    for i, item in enumerate(items):
        name = f"<array {i}>" if len(items) > 1 else "<array>"
        if isinstance(item, np.ndarray):
            sources.append(Source(name, "array", item))
        elif _is_pil(item):
            sources.append(Source(getattr(item, "filename", "") or name, "array", _pil_to_array(item)))
        elif isinstance(item, (str, Path)):
            found = _path_source(Path(item))
            if not found:
                notes.append(f"{item}: folder holds no image or video files")
            sources += found
        else:
            sources.append(Source(repr(item)[:60], "bad", error=f"unsupported input type {type(item).__name__}"))
    return sources, notes


def _video_header(source: Source) -> dict[str, Any]:
    """``{"count", "fps"}`` from a video source's header, or ``{"error"}``; read on first call only."""
    if not source.header:
        try:
            count, fps = video_info(source.data, strict=True)
            source.header.update(count=count, fps=fps)
        except FacemtlError as err:
            source.header["error"] = str(err)
    return source.header


def count_frames(source: Source, every: int) -> int | None:
    """Frames ``iter_frames`` will yield for ``source`` (progress bars); ``None`` if unknown."""
    if source.kind != "video":
        return 1
    header = _video_header(source)
    if "error" in header:
        return 1  # its one error row
    count = header["count"]
    return None if count is None else -(-count // every)


def iter_frames(source: Source, every: int = 1) -> Iterator[Frame]:
    """Frames of one source; an input that fails yields one :class:`Frame` with ``error`` set."""
    if source.kind == "bad":
        yield Frame(source.name, 0, 0.0, None, source.error)
    elif source.kind in ("image", "array"):
        try:
            image = read_image(source.data) if source.kind == "image" else to_rgb_uint8(source.data)
        except FacemtlError as err:
            yield Frame(source.name, 0, 0.0, None, str(err))
            return
        yield Frame(source.name, 0, 0.0, image)
    else:
        header = _video_header(source)
        if "error" in header:  # not opened again: FFmpeg has said why once already
            yield Frame(source.name, 0, 0.0, None, header["error"], video=True)
            return
        fps = header["fps"]
        last = -1
        try:
            for index, timestamp, image in iter_video(source.data, every):
                last = index
                yield Frame(source.name, index, timestamp, image, video=True, fps=fps)
        except FacemtlError as err:
            yield Frame(source.name, last + 1, 0.0 if last < 0 else float("nan"), None, str(err), video=True, fps=fps)
            return
        if last < 0:
            yield Frame(source.name, 0, 0.0, None, "no decodable video frames", video=True, fps=fps)
