"""FaceAnalyzer: images, folders and videos in, one row per face per frame out.

The stages, each in its own module: sources (decode to RGB) -> detect (boxes + 5 points)
-> align (similarity warp onto the checkpoint's template) -> MultiTaskNet (batched across
faces *and* frames) -> rows (:mod:`~facemtl.pipeline.schema`) -> CSV / DataFrame.

Rows are produced in input order while at most about ``2 x batch_size`` frames wait for
the model, so a long video streams through in bounded memory.

The network runs behind a backend (:mod:`~facemtl.pipeline.backends`): PyTorch for a
``.safetensors`` checkpoint, onnxruntime for a ``facemtl export`` ``.onnx`` file. Nothing
here imports torch, so the ONNX path runs where torch is not installed.
"""

from __future__ import annotations

import os
import time
import warnings
from collections import defaultdict, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

import facemtl.pipeline.schema as schema
from facemtl.errors import FacemtlError
from facemtl.geometry import apply, face_transform, invert, to_crop_pixels, warp_face
from facemtl.pipeline.backends import (
    OnnxModel,
    TorchModel,
    check_tta,
    load_model,
    pick_backend,
    predict_faces,
    to_grey,
)
from facemtl.pipeline.detect import Detection, WholeImageDetector, create_detector
from facemtl.pipeline.sources import Frame, Source, count_frames, expand_sources, iter_frames
from facemtl.pipeline.tracking import followed_detection
from facemtl.pipeline.video import IoUTracker
from facemtl.pipeline.writers import Annotator, CsvWriter
from facemtl.progress import progress_bar
from facemtl.tasks import spec
from facemtl.weights import base_model

Row = dict[str, Any]


@dataclass
class _Face:
    face_id: int
    detection: Detection
    matrix: np.ndarray  # original pixels -> crop pixels
    crop: np.ndarray | None  # [S, S, 3] uint8 until the model has seen it
    outputs: dict[str, Any] | None = None


@dataclass
class _Pending:
    frame: Frame
    faces: list[_Face] = field(default_factory=list)
    error: str = ""

    def done(self) -> bool:
        return all(face.outputs is not None for face in self.faces)


def _plausible(box: tuple[float, ...], width: int, height: int) -> bool:
    """A finite, non-empty box touching the image (a third-party detector may return junk)."""
    x, y, w, h = box
    return bool(np.isfinite(box).all()) and w > 0 and h > 0 and x < width and y < height and x + w > 0 and y + h > 0


class FaceAnalyzer:
    """Detects, aligns and analyses faces with a facemtl checkpoint.

    Construction is cheap: the weights and the detector load on first use.

    Args:
        checkpoint: run folder, ``.safetensors`` file or ``.onnx`` file (``facemtl export``);
            default ``$FACEMTL_CHECKPOINT``, else the model shipped in the package
            (:mod:`facemtl.weights`, hash-checked).
        detector: ``auto`` (YuNet, else Haar), ``yunet``, ``haar`` or ``none`` (each image
            is already one face crop); see :mod:`facemtl.pipeline.detect`.
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``auto``.
        batch_size: faces per forward pass, gathered across frames and files.
        detector_options: keyword arguments for the detector (e.g. ``model`` for YuNet's
            ONNX file, ``score_threshold``, ``max_side``).
        backend: ``torch`` or ``onnx`` (onnxruntime, no torch needed: ``pip install
            'facemtl[onnx]'``); default: ``onnx`` for a ``.onnx`` file, else ``torch``.
        tta: test-time augmentation: ``none``, or ``flip`` to average each face with its
            mirror image (landmarks and pose mirrored back; twice the model time).
        detect_every: in videos, run the detector on every K-th analysed frame only and follow
            each face in between from the landmarks the model predicted for it in the previous
            frame (:mod:`facemtl.pipeline.tracking`); 1 = detect on every frame.

    Example:
        >>> analyzer = FaceAnalyzer("runs/demo/checkpoints/best.safetensors")
        >>> df = analyzer.predict("group.jpg")                 # one row per face
        >>> analyzer.predict("talk.mp4", out="talk.csv", every=5)  # streamed to disk
        >>> FaceAnalyzer("model.onnx", backend="onnx").predict("group.jpg")  # same columns

    Attributes:
        timings: seconds spent per stage (``decode``, ``detect``, ``align``, ``model``,
            ``rows``, ``write``), accumulated over calls; for benchmarks.
    """

    def __init__(self, checkpoint: str | Path | None = None, detector: str = "auto", device: str = "cpu",
                 batch_size: int = 32, detector_options: dict[str, Any] | None = None,
                 backend: str | None = None, tta: str = "none", detect_every: int = 1) -> None:
        path = checkpoint or os.environ.get("FACEMTL_CHECKPOINT")
        if not path:
            path = base_model()
        if batch_size < 1:
            raise FacemtlError(f"batch size must be >= 1, got {batch_size}")
        if detect_every < 1:
            raise FacemtlError(f"--detect-every must be >= 1, got {detect_every}")
        self.detect_every = detect_every
        self.tta = check_tta(tta)
        self.checkpoint_path = Path(path)
        self.backend = pick_backend(self.checkpoint_path, backend)
        self.detector_name = detector
        self.detector_options = dict(detector_options or {})
        self.device: Any = device
        if self.backend == "torch":  # a missing GPU or file, or a pickle, is reported here, before any work
            from facemtl.device import resolve_device
            from facemtl.io.checkpoint import resolve_checkpoint_path  # imports torch, which onnx runs lack

            self.checkpoint_path = resolve_checkpoint_path(self.checkpoint_path)  # also facemtl_base, run folders
            self.device = resolve_device(device)
        self.batch_size = batch_size
        self.timings: dict[str, float] = defaultdict(float)
        self._model: TorchModel | OnnxModel | None = None
        self._detector: Any = None

    # -- loading ----------------------------------------------------------------------
    def _load(self) -> TorchModel | OnnxModel:
        if self._model is None:
            model = load_model(self.checkpoint_path, self.backend, str(self.device))
            info = model.info
            self.tasks, self.label_spaces, self.image_size = info.tasks, info.label_spaces, info.image_size
            self.template, self.grey = info.template, info.grey
            self._model = model
        return self._model

    def _get_detector(self) -> Any:
        if self._detector is None:
            self._detector = create_detector(self.detector_name, **self.detector_options)
        return self._detector

    @property
    def columns(self) -> list[str]:
        """The CSV columns this checkpoint produces (:func:`facemtl.pipeline.schema.columns`)."""
        self._load()
        return schema.columns(self.tasks, self.label_spaces)

    # -- public API -------------------------------------------------------------------
    def predict(self, source: Any, out: str | Path | TextIO | None = None, *, every: int = 1,
                annotate: str | Path | None = None, progress: bool = False) -> Any:
        """Analyse every face in ``source``.

        Args:
            source: an image or video path, a folder (searched recursively), a NumPy image
                (RGB uint8 ``[H, W, 3]``; grey ``[H, W]``, RGBA, uint16 and float [0, 1]
                are converted), a PIL image, or a list of any of these.
            out: CSV path or text stream: rows are written batch by batch (a long video
                never sits in memory) and the path is returned. ``None``: return a DataFrame.
            every: analyse every N-th video frame.
            annotate: folder for pictures (and ``.mp4`` per video) with boxes, landmarks
                and the top expression drawn.
            progress: show a progress bar (frames) on stderr.

        Returns:
            A ``pandas.DataFrame`` with :func:`columns` (``out=None``), else ``out``.
            Inputs that fail become ``success = 0`` rows with ``error`` set, plus a warning.
        """
        columns = self.columns
        batches = self.iter_rows(source, every=every, annotate=annotate, progress=progress)
        if out is None:
            import pandas as pd

            frame = pd.DataFrame([row for batch in batches for row in batch], columns=columns)
            frame.attrs["schema_version"] = schema.SCHEMA_VERSION
            return frame
        writer = CsvWriter(out, columns)
        try:
            for batch in batches:
                start = time.perf_counter()
                writer.write(batch)
                self.timings["write"] += time.perf_counter() - start
        finally:
            writer.close()
        return out

    def iter_rows(self, source: Any, *, every: int = 1, annotate: str | Path | None = None,
                  progress: bool = False) -> Iterator[list[Row]]:
        """Rows in input order, yielded in batches as the model produces them (see :meth:`predict`).

        Inputs are checked here, before anything is written: nothing to analyse (an empty
        folder, an empty list) raises :class:`FacemtlError` at once.
        """
        self._load()
        if every < 1:
            raise FacemtlError(f"--every must be >= 1, got {every}")
        sources, notes = expand_sources(source)
        if not sources:
            raise FacemtlError("nothing to analyse: " + ("; ".join(notes) or "no input given"))
        for note in notes:
            warnings.warn(note, stacklevel=2)
        return self._stream(sources, every, annotate, progress)

    def _stream(self, sources: list[Source], every: int, annotate: str | Path | None,
                progress: bool) -> Iterator[list[Row]]:
        detector = self._get_detector()
        counts = [count_frames(s, every) for s in sources]
        annotator = Annotator(annotate) if annotate else None
        # a live bar on a terminal; in a log, a line per 10 % of the frames instead of every redraw
        bar = progress_bar(total=None if None in counts else sum(counts), desc="predict", unit="frame", show=progress,
                           dynamic_ncols=True)
        pending: deque[_Pending] = deque()
        queue: list[_Face] = []
        try:
            for src in sources:
                tracker = IoUTracker() if src.kind == "video" else None
                detect_every = self.detect_every if tracker is not None else 1
                last: list[_Face] = []
                for index, frame in enumerate(self._timed_frames(iter_frames(src, every))):
                    follow = last if index % detect_every and last else None
                    if follow is not None and queue:  # the faces to follow need their landmarks first
                        self._run_model(queue)
                        queue = []
                    item = self._prepare(frame, detector, tracker, keep_image=annotator is not None, follow=follow)
                    last = item.faces
                    pending.append(item)
                    queue += item.faces
                    bar.update(1)
                    ran = False
                    while len(queue) >= self.batch_size or (queue and len(pending) > 2 * self.batch_size):
                        self._run_model(queue[: self.batch_size])
                        queue, ran = queue[self.batch_size :], True
                    if ran or len(pending) >= self.batch_size:
                        rows = self._emit(pending, annotator, every)
                        if rows:
                            yield rows
            if queue:
                self._run_model(queue)
            rows = self._emit(pending, annotator, every)
            if rows:
                yield rows
        finally:
            bar.close()
            if annotator is not None:
                annotator.close()

    # -- stages -----------------------------------------------------------------------
    def _timed_frames(self, frames: Iterator[Frame]) -> Iterator[Frame]:
        while True:
            start = time.perf_counter()
            frame = next(frames, None)
            self.timings["decode"] += time.perf_counter() - start
            if frame is None:
                return
            yield frame

    def _prepare(self, frame: Frame, detector: Any, tracker: IoUTracker | None, keep_image: bool,
                 follow: list[_Face] | None = None) -> _Pending:
        """Detect (or follow the previous frame's ``follow`` faces), assign face ids and warp the crops of one frame."""
        if frame.error:
            warnings.warn(f"{frame.input}: {frame.error}", stacklevel=3)
            return _Pending(frame, error=frame.error)
        start = time.perf_counter()
        height, width = frame.image.shape[:2]
        if follow is not None:
            detections = [d for d in (self._followed(face, width, height) for face in follow) if d is not None]
        else:
            try:
                detections = detector.detect(frame.image)
            except Exception as err:  # noqa: BLE001  an odd frame (e.g. 1x1 px) must not stop a folder
                warnings.warn(f"{frame.input} frame {frame.index}: face detection failed ({err})", stacklevel=3)
                return _Pending(frame, error=f"face detection failed: {str(err).splitlines()[0]}")
        detections = [d for d in detections if _plausible(d.box, width, height)]
        mid = time.perf_counter()
        self.timings["detect"] += mid - start
        if tracker is not None:
            ids = tracker.update([d.box for d in detections])
        else:  # still images: number faces left to right
            ids = list(np.argsort(np.argsort([d.box[0] for d in detections], kind="stable")))
        faces = []
        for face_id, det in sorted(zip(ids, detections), key=lambda pair: pair[0]):
            # --no-detect inputs are crops already: use all of the image, no margin
            margin = 0.0 if isinstance(detector, WholeImageDetector) else 0.2
            matrix = face_transform(det.points, det.box, self.image_size, self.template, margin)
            faces.append(_Face(int(face_id), det, matrix, warp_face(frame.image, matrix, self.image_size)))
        if not keep_image:  # only --annotate needs the full frame after this point
            frame.image = None
        self.timings["align"] += time.perf_counter() - mid
        return _Pending(frame, faces)

    def _followed(self, face: _Face, width: int, height: int) -> Detection | None:
        landmarks = (face.outputs or {}).get("lmk")
        return followed_detection(face.detection, face.matrix, landmarks, self.image_size, width, height)

    def _run_model(self, faces: list[_Face]) -> None:
        """One forward pass over ``faces``; stores per-face outputs and frees the crops."""
        start = time.perf_counter()
        images = np.stack([face.crop for face in faces]).transpose(0, 3, 1, 2).astype(np.float32) / 255.0
        if self.grey:
            images = to_grey(images)
        numpy = predict_faces(self._model, np.ascontiguousarray(images), self.tta)
        for i, face in enumerate(faces):
            face.outputs = {t: ({n: v[i] for n, v in o.items()} if isinstance(o, dict) else o[i]) for t, o in numpy.items()}
            face.crop = None
        self.timings["model"] += time.perf_counter() - start

    def _emit(self, pending: deque[_Pending], annotator: Annotator | None, every: int) -> list[Row]:
        """Rows of the leading frames whose faces all have outputs (keeps input order)."""
        start = time.perf_counter()
        rows: list[Row] = []
        while pending and pending[0].done():
            item = pending.popleft()
            frame_rows = self._rows(item)
            if annotator is not None:
                annotator.add(item.frame, frame_rows, every)
            rows += frame_rows
        self.timings["rows"] += time.perf_counter() - start
        return rows

    def _rows(self, item: _Pending) -> list[Row]:
        frame = item.frame
        # OpenFace numbers frames from 1 (its CSVs and every tool reading them do)
        base: Row = {"input": frame.input, "frame": frame.index + 1, "timestamp": frame.timestamp}
        if not item.faces:
            return [{**base, "face_id": -1, "confidence": 0.0, "success": 0, "error": item.error}]
        return [{**base, **self._face_row(face), "error": ""} for face in item.faces]

    def _face_row(self, face: _Face) -> Row:
        det, out = face.detection, face.outputs or {}
        row: Row = {"face_id": face.face_id, "confidence": det.score, "success": 1}
        row.update(zip(("face_x", "face_y", "face_w", "face_h"), map(float, det.box)))
        if det.points is not None:
            row.update({f"det_x_{i}": float(x) for i, x in enumerate(det.points[:, 0])})
            row.update({f"det_y_{i}": float(y) for i, y in enumerate(det.points[:, 1])})
        matrix = invert(face.matrix)

        def to_image(points: np.ndarray) -> np.ndarray:  # model output (crop-normalised) -> original pixels
            return apply(matrix, to_crop_pixels(points, self.image_size))

        for task, value in out.items():
            row.update(spec(task).row(value, self.label_spaces, to_image))
        return row
