"""Video decoding (PyAV, else OpenCV) and IoU tracking of face ids across frames.

PyAV (``pip install facemtl[video]``) gives timestamps from the container's presentation
times and the display rotation; without it OpenCV's bundled FFmpeg decodes and reports
its own position in milliseconds. Either way frames come out as RGB uint8 ``[H, W, 3]``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from facemtl.errors import FacemtlError


def _has_pyav() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def video_info(path: str | Path, strict: bool = False) -> tuple[int | None, float | None]:
    """``(frame count, frames per second)`` from the container header; ``None`` when unknown.

    Cheap (no decoding); used for progress bars and the annotated video's frame rate.

    Raises:
        FacemtlError: with ``strict``, the file cannot be opened or has no video stream (the
            error :func:`iter_video` would give), so a caller can skip a file FFmpeg already
            complained about instead of opening it again.
    """
    if _has_pyav():
        import av

        try:
            with av.open(str(path)) as container:
                stream = container.streams.video[0]
                rate = float(stream.average_rate) if stream.average_rate else None
                return (stream.frames or None), rate
        except (av.error.FFmpegError, IndexError, OSError) as err:
            if strict:
                raise FacemtlError("no video stream in this file" if isinstance(err, IndexError)
                                   else f"cannot open video ({err})") from None
            return None, None
    capture = cv2.VideoCapture(str(path))
    try:
        if strict and not capture.isOpened():
            raise FacemtlError("cannot open video")
        count, rate = capture.get(cv2.CAP_PROP_FRAME_COUNT), capture.get(cv2.CAP_PROP_FPS)
        return (int(count) if count > 0 else None), (rate if rate > 0 else None)
    finally:
        capture.release()


def iter_video(path: str | Path, every: int = 1) -> Iterator[tuple[int, float, np.ndarray]]:
    """Decode every ``every``-th frame of a video.

    Yields:
        ``(index, timestamp, image)``: 0-based index in decoding order, seconds since the
        stream's first frame, RGB uint8 ``[H, W, 3]`` (display rotation applied with PyAV).

    Raises:
        FacemtlError: the file cannot be opened, has no video stream, or decoding fails
            (frames already yielded stay valid).
    """
    if every < 1:
        raise FacemtlError(f"--every must be >= 1, got {every}")
    yield from (_iter_pyav if _has_pyav() else _iter_opencv)(Path(path), every)


def _iter_pyav(path: Path, every: int) -> Iterator[tuple[int, float, np.ndarray]]:
    import av

    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as err:
        raise FacemtlError(f"cannot open video ({err})") from None
    with container:
        if not container.streams.video:
            raise FacemtlError("no video stream in this file")
        stream = container.streams.video[0]
        # PyAV's default (slice) threading: frame threading measured slower on small CPUs, and
        # the detector, not decoding, bounds throughput.
        rate = float(stream.average_rate) if stream.average_rate else 25.0
        first: float | None = None
        try:
            for index, frame in enumerate(container.decode(stream)):
                time = frame.time if frame.time is not None else index / rate
                first = time if first is None else first
                if index % every:
                    continue  # decoded (inter-frame coding needs it) but never converted
                image = frame.to_ndarray(format="rgb24")
                quarter_turns = round(getattr(frame, "rotation", 0) / 90) % 4
                if quarter_turns:  # phones store portrait video sideways plus a display rotation
                    image = np.ascontiguousarray(np.rot90(image, quarter_turns))
                yield index, time - first, image
        except av.error.FFmpegError as err:
            raise FacemtlError(f"decoding failed ({err})") from None


def _iter_opencv(path: Path, every: int) -> Iterator[tuple[int, float, np.ndarray]]:
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise FacemtlError("cannot open video")
    try:
        index, first = 0, None
        while True:
            if index % every:
                if not capture.grab():  # skip without converting the frame
                    break
            else:
                ok, frame = capture.read()
                if not ok:
                    break
                time = capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
                first = time if first is None else first
                yield index, time - first, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            index += 1
    finally:
        capture.release()


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over union of two ``(x, y, w, h)`` boxes."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


@dataclass
class IoUTracker:
    """Keeps ``face_id`` stable across frames by greedy IoU matching with the previous boxes.

    Deliberately simple (no motion model, no appearance): faces in talking-head and
    interview videos move little between processed frames. A track unseen for more than
    ``max_age`` processed frames is dropped; a face that returns later gets a new id.

    Args:
        threshold: minimum IoU to continue a track.
        max_age: processed frames a track survives without a match.
    """

    threshold: float = 0.3
    max_age: int = 10
    _tracks: dict[int, tuple[tuple[float, ...], int]] = field(default_factory=dict)
    _next_id: int = 0

    def update(self, boxes: list[tuple[float, ...]]) -> list[int]:
        """Face ids for this frame's boxes, in the same order."""
        pairs = sorted(((iou(box, track[0]), i, tid) for i, box in enumerate(boxes)
                        for tid, track in self._tracks.items()), reverse=True)
        ids: list[int | None] = [None] * len(boxes)
        taken: set[int] = set()
        for score, i, tid in pairs:
            if score < self.threshold:
                break
            if ids[i] is None and tid not in taken:
                ids[i] = tid
                taken.add(tid)
        # new faces get ids left to right, so a first frame reads naturally
        for i in sorted((i for i in range(len(boxes)) if ids[i] is None), key=lambda i: boxes[i][0]):
            ids[i] = self._next_id
            self._next_id += 1
        self._tracks = {tid: (track[0], track[1] + 1) for tid, track in self._tracks.items()
                        if tid not in ids and track[1] + 1 <= self.max_age}
        self._tracks.update({tid: (box, 0) for tid, box in zip(ids, boxes)})
        return [int(i) for i in ids]
