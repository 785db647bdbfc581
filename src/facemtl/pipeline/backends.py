"""Inference backends: a facemtl network behind one numpy-in, numpy-out call.

:class:`FaceAnalyzer <facemtl.pipeline.analyzer.FaceAnalyzer>` sees a backend as
``model(images) -> outputs``: ``images`` float32 ``[B, 3, S, S]`` RGB in [0, 1] (grey faces
already converted), ``outputs`` raw network outputs keyed by output name (``expr``, ``au``,
``va``, ``lmk``, ``attr_<name>``; see :func:`output_names`). Each backend also carries what
the pipeline needs to feed it: tasks, label spaces, input size, alignment template, grey.

- :class:`TorchModel` reads a ``.safetensors`` checkpoint (or run folder) and runs PyTorch;
- :class:`OnnxModel` reads a ``.onnx`` file written by ``facemtl export`` and runs
  onnxruntime. This module imports neither torch nor onnxruntime at module level, and the
  ONNX path never imports torch: ``facemtl[onnx]`` inference works where torch is absent.
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facemtl.errors import FacemtlError
from facemtl.labels import LabelSpaces
from facemtl.registry import ordered_tasks
from facemtl.tasks import spec

#: ``format`` entry of an exported model's ``metadata_props``.
ONNX_FORMAT = "facemtl-onnx-1"
BACKENDS = ("torch", "onnx")
#: Test-time augmentation: ``flip`` also analyses each face's mirror image and averages.
TTA_MODES = ("none", "flip")


def output_names(tasks: tuple[str, ...] | list[str], spaces: LabelSpaces) -> list[str]:
    """Flat output names in network order: each task's spec's names (``attr``: one ``attr_<name>`` per attribute)."""
    return [name for task in tasks for name in spec(task).output_names(spaces)]


def flatten_outputs(out: dict[str, Any], tasks: tuple[str, ...] | list[str], spaces: LabelSpaces) -> dict[str, Any]:
    """A :class:`MultiTaskNet` output dict as flat tensors named by :func:`output_names`."""
    return {name: value for task in tasks for name, value in spec(task).flatten(out[task], spaces).items()}


@dataclass
class ModelInfo:
    """What the pipeline needs to know about a model besides its weights."""

    tasks: tuple[str, ...]
    label_spaces: LabelSpaces
    image_size: int
    template: np.ndarray | None  # [5, 2] alignment template in crop-normalised coordinates
    grey: bool  # trained on grey faces: feed grey faces

    @classmethod
    def from_metadata(cls, config: dict[str, Any], spaces: LabelSpaces, tasks: list[str],
                      preprocess: dict[str, Any]) -> ModelInfo:
        """Built from a checkpoint's (or an exported model's) metadata."""
        template = preprocess.get("template_5pt")
        return cls(
            tasks=ordered_tasks(tasks), label_spaces=spaces,  # MultiTaskNet's order
            image_size=int(preprocess.get("image_size") or config["data"]["image_size"]),
            template=np.asarray(template, np.float64) if template else None,
            grey=bool(config["data"].get("grey", False)),
        )


def _has_torch() -> bool:
    """Whether torch can be imported, asked without importing it (an ONNX-only install has none)."""
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):  # blocked, or a broken entry in sys.modules
        return False


def pick_backend(path: Path, backend: str | None) -> str:
    """``backend`` checked against the file: ``None`` means ``onnx`` for a ``.onnx`` file, else ``torch``
    (which must be installed: a :class:`FacemtlError` says so, instead of an ImportError later)."""
    is_onnx = path.suffix.lower() == ".onnx"
    if backend is None:
        backend = "onnx" if is_onnx else "torch"
    if backend not in BACKENDS:
        raise FacemtlError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    if backend == "onnx" and not is_onnx:
        raise FacemtlError(f"backend 'onnx' needs a .onnx model, got {path}; "
                           f"make one with: facemtl export --checkpoint {path} --onnx model.onnx")
    if backend == "torch" and is_onnx:
        raise FacemtlError(f"backend 'torch' needs a .safetensors checkpoint or run folder, got {path}; use backend 'onnx'")
    if backend == "torch" and not _has_torch():
        raise FacemtlError(f"{path} needs PyTorch, which is not installed (an ONNX-only install): install torch "
                           "(README, Install), or give a .onnx model made with facemtl export")
    return backend


class TorchModel:
    """A facemtl checkpoint run with PyTorch on ``device`` (``cpu``, ``cuda``, ``cuda:N``, ``auto``)."""

    def __init__(self, checkpoint: str | Path, device: str = "cpu") -> None:
        from facemtl.device import resolve_device  # torch: ONNX-only installs never build this backend
        from facemtl.tasks.network import load_network

        self.device = resolve_device(device)
        net, ckpt = load_network(checkpoint)
        self.net = net.to(self.device).eval()
        self.info = ModelInfo.from_metadata(ckpt.config, ckpt.label_spaces, ckpt.tasks, ckpt.preprocess)
        self.names = output_names(self.info.tasks, self.info.label_spaces)

    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Raw outputs of ``images`` float32 ``[B, 3, S, S]``, keyed by :func:`output_names`."""
        import torch

        with torch.inference_mode():
            out = self.net(torch.from_numpy(images).to(self.device))
            flat = flatten_outputs(out, self.info.tasks, self.info.label_spaces)
            return {name: value.float().cpu().numpy() for name, value in flat.items()}


def _providers(device: str, available: list[str]) -> list[Any]:
    """onnxruntime execution providers for a facemtl device name (no torch involved)."""
    cuda = "CUDAExecutionProvider" in available
    if device == "cpu" or (device == "auto" and not cuda):
        return ["CPUExecutionProvider"]
    if device == "auto":
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    kind, _, index = device.partition(":")
    if kind != "cuda" or (index and not index.isdigit()):
        raise FacemtlError(f"unknown device {device!r}; use cpu, cuda, cuda:N or auto")
    if not cuda:
        raise FacemtlError(f"device {device!r} requested but this onnxruntime has no CUDA provider "
                           "(install onnxruntime-gpu); use cpu or auto")
    return [("CUDAExecutionProvider", {"device_id": int(index or 0)}), "CPUExecutionProvider"]


def read_onnx_metadata(metadata: dict[str, str], path: Path) -> ModelInfo:
    """:class:`ModelInfo` from an exported model's ``metadata_props``."""
    if metadata.get("format") != ONNX_FORMAT:
        raise FacemtlError(f"{path}: not a facemtl ONNX export (format {metadata.get('format')!r}, "
                           f"expected {ONNX_FORMAT}); export one with facemtl export")
    import yaml

    return ModelInfo.from_metadata(yaml.safe_load(metadata["config"]), LabelSpaces.from_json(metadata["label_spaces"]),
                                   json.loads(metadata["tasks"]), json.loads(metadata["preprocess"]))


class OnnxModel:
    """A ``facemtl export`` ONNX file run with onnxruntime; never imports torch.

    CPU threads: ``$OMP_NUM_THREADS`` when set (as PyTorch does), else onnxruntime's default.
    """

    def __init__(self, path: str | Path, device: str = "cpu") -> None:
        path = Path(path)
        try:
            import onnxruntime as ort
        except ImportError:
            raise FacemtlError("backend 'onnx' needs onnxruntime: pip install 'facemtl[onnx]'") from None
        if not path.is_file():
            raise FacemtlError(f"ONNX model {path} does not exist")
        providers = _providers(device, ort.get_available_providers())
        options = ort.SessionOptions()
        threads = os.environ.get("OMP_NUM_THREADS", "")
        if threads.isdigit():
            options.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as err:  # noqa: BLE001  onnxruntime raises its own types for a bad file
            raise FacemtlError(f"{path}: onnxruntime cannot load it ({str(err).splitlines()[0]})") from None
        self.device = device
        self.info = read_onnx_metadata(self.session.get_modelmeta().custom_metadata_map, path)
        self.names = output_names(self.info.tasks, self.info.label_spaces)
        missing = set(self.names) - {o.name for o in self.session.get_outputs()}
        if missing:
            raise FacemtlError(f"{path}: outputs {sorted(missing)} missing for tasks {list(self.info.tasks)}")

    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Raw outputs of ``images`` float32 ``[B, 3, S, S]``, keyed by :func:`output_names`."""
        return dict(zip(self.names, self.session.run(self.names, {"image": images})))


def load_model(path: str | Path, backend: str | None = None, device: str = "cpu") -> TorchModel | OnnxModel:
    """A backend for ``path`` (``backend=None``: chosen by the file's suffix, see :func:`pick_backend`)."""
    path = Path(path)
    if pick_backend(path, backend) == "onnx":
        return OnnxModel(path, device)
    return TorchModel(path, device)


def to_grey(images: np.ndarray) -> np.ndarray:
    """``[B, 3, H, W]`` RGB in [0, 1] -> BT.601 luminance repeated to 3 channels, as training's
    :func:`facemtl.data.augment.to_grey` (same weights), without torch."""
    luma = np.tensordot(np.asarray((0.299, 0.587, 0.114), images.dtype), images, axes=([0], [1]))
    return np.ascontiguousarray(np.repeat(luma[:, None], 3, axis=1))


def postprocess(raw: dict[str, np.ndarray], tasks: tuple[str, ...], spaces: LabelSpaces) -> dict[str, Any]:
    """Raw outputs -> per task its spec's post-processed values: ``expr`` and ``attr`` probabilities
    (softmax; ``attr`` as ``{name: [B, C]}``), ``au`` (sigmoid), ``va`` and ``lmk`` as they are."""
    return {task: spec(task).postprocess(raw, spaces) for task in tasks}


def check_tta(tta: str) -> str:
    """``tta`` if it is one of :data:`TTA_MODES`, else a :class:`FacemtlError` naming them."""
    if tta not in TTA_MODES:
        raise FacemtlError(f"unknown test-time augmentation {tta!r}; use one of {', '.join(TTA_MODES)}")
    return tta


def predict_faces(model: TorchModel | OnnxModel, images: np.ndarray, tta: str = "none") -> dict[str, Any]:
    """:func:`postprocess`-ed outputs of ``images`` float32 ``[B, 3, S, S]``.

    ``tta="flip"`` runs the mirrored faces too and averages both views, the mirrored view
    mapped back first (:func:`unmirror`): two forward passes per face.
    """
    info = model.info
    outputs = postprocess(model(images), info.tasks, info.label_spaces)
    if check_tta(tta) == "none":
        return outputs
    mirrored = postprocess(model(np.ascontiguousarray(images[..., ::-1])), info.tasks, info.label_spaces)
    return _average(outputs, unmirror(mirrored, info.label_spaces))


def unmirror(outputs: dict[str, Any], spaces: LabelSpaces) -> dict[str, Any]:
    """Post-processed outputs of *mirrored* faces, expressed for the faces as given (each spec's
    :meth:`~facemtl.tasks.base.TaskSpec.unmirror`: landmarks reflected and relabelled left <->
    right, the ``pose`` attribute reversed; expression, AUs, valence/arousal unchanged)."""
    return {task: spec(task).unmirror(value, spaces) for task, value in outputs.items()}


def _average(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """Per task, its spec's mean of the two views."""
    return {task: spec(task).average([value, second[task]]) for task, value in first.items()}
