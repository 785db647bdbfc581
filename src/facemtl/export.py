"""``facemtl export``: a checkpoint as one self-describing ONNX file.

The file has one input, ``image`` float32 ``[batch, 3, S, S]`` RGB in [0, 1] (the
network normalises inside, as in PyTorch; ``batch`` is dynamic), and one output per head,
raw as the network gives them: ``expr [batch, C]`` and ``au [batch, A]`` logits,
``va [batch, 2]``, ``lmk [batch, K, 2]`` (crop-normalised), ``attr_<name> [batch, C_name]``
logits. ``feat`` / ``feat_map`` are left out. The checkpoint's metadata travels in the
model's ``metadata_props``: ``format``, ``config`` (YAML), ``label_spaces`` (JSON),
``tasks`` (JSON), ``preprocess`` (JSON: ``image_size``, ``template_5pt``, ``grey``,
``input`` layout), ``outputs`` (JSON: names in order), ``source`` (checkpoint file name and
SHA-256). :class:`facemtl.pipeline.backends.OnnxModel` runs it without torch.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from facemtl.errors import FacemtlError
from facemtl.io.checkpoint import Checkpoint
from facemtl.labels import LabelSpaces
from facemtl.models import MultiTaskNet
from facemtl.tasks.network import load_network
from facemtl.pipeline.backends import ONNX_FORMAT, ModelInfo, OnnxModel, flatten_outputs, output_names

#: Protobuf refuses single files over 2 GiB; bigger models keep their weights next to the .onnx.
_MAX_INLINE_BYTES = 1 << 30


class _Flat(nn.Module):
    """The network with its heads as a tuple in :func:`output_names` order (ONNX outputs are positional)."""

    def __init__(self, net: MultiTaskNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(flatten_outputs(self.net(image), self.net.tasks, self.net.label_spaces).values())


def onnx_metadata(ckpt: Checkpoint) -> dict[str, str]:
    """The ``metadata_props`` of an export: everything inference needs besides the weights."""
    import yaml

    info = ModelInfo.from_metadata(ckpt.config, ckpt.label_spaces, ckpt.tasks, ckpt.preprocess)
    preprocess = {
        **ckpt.preprocess,
        "image_size": info.image_size,
        "grey": info.grey,
        "input": "image float32 [batch, 3, S, S] RGB in [0, 1]; mean/std normalisation is inside the model",
    }
    return {
        "format": ONNX_FORMAT,
        "config": yaml.safe_dump(ckpt.config, sort_keys=False),
        "label_spaces": ckpt.label_spaces.to_json(),
        "tasks": json.dumps(list(ckpt.tasks)),
        "preprocess": json.dumps(preprocess),
        "outputs": json.dumps(output_names(info.tasks, ckpt.label_spaces)),
        "source": json.dumps({"checkpoint": ckpt.path.name, "sha256": _sha256(ckpt.path)}),
    }


def export_onnx(checkpoint: str | Path, out: str | Path, opset: int | None = None) -> Path:
    """Export a checkpoint to ``out`` (see the module docstring for the file's contract).

    Args:
        checkpoint: run folder or ``.safetensors`` checkpoint.
        out: the ``.onnx`` file to write (its folder is created).
        opset: ONNX opset; ``None`` takes torch's default.

    Returns:
        ``out`` as a path.
    """
    if tuple(int(part) for part in torch.__version__.split(".")[:2]) < (2, 5):
        raise FacemtlError(f"facemtl export needs torch >= 2.5 (its dynamo ONNX exporter), found {torch.__version__}")
    try:
        import onnx
        import onnxscript  # noqa: F401  torch.onnx's dynamo exporter needs it; say so before any work
    except ImportError:
        raise FacemtlError("facemtl export needs onnx and onnxscript: pip install 'facemtl[onnx]'") from None
    out = Path(out)
    if out.suffix.lower() != ".onnx":
        raise FacemtlError(f"--onnx {out}: expected a file name ending in .onnx")
    net, ckpt = load_network(checkpoint)
    size = ModelInfo.from_metadata(ckpt.config, ckpt.label_spaces, ckpt.tasks, ckpt.preprocess).image_size
    out.parent.mkdir(parents=True, exist_ok=True)
    # batch 2 as the example: a batch of 1 can get specialised away despite the dynamic dim
    example = torch.rand(2, 3, size, size)
    program = torch.onnx.export(
        _Flat(net).eval(), (example,), input_names=["image"], output_names=output_names(net.tasks, net.label_spaces),
        dynamic_shapes={"image": {0: torch.export.Dim("batch")}}, opset_version=opset, dynamo=True, verbose=False,
    )
    model = program.model_proto
    for key, value in onnx_metadata(ckpt).items():
        model.metadata_props.add(key=key, value=value)
    big = sum(p.numel() * p.element_size() for p in net.parameters()) > _MAX_INLINE_BYTES
    onnx.save_model(model, str(out), save_as_external_data=big, location=out.name + ".data" if big else None)
    onnx.checker.check_model(str(out))
    return out


def parity(checkpoint: str | Path, onnx_path: str | Path, batch: int = 2, seed: int = 0) -> float:
    """Max abs difference between PyTorch and onnxruntime outputs on a random ``batch`` (fp32, CPU)."""
    net, _ = load_network(checkpoint)
    model = OnnxModel(onnx_path)
    size = model.info.image_size
    images = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        expected = flatten_outputs(net(images), net.tasks, net.label_spaces)
    got = model(images.numpy())
    return max(float((expected[name] - torch.from_numpy(got[name])).abs().max()) for name in expected)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
