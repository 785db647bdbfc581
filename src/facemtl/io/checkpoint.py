"""Checkpoints: one self-describing ``.safetensors`` file, written atomically, read without unpickling.

Layout of the file:

- tensors ``model.<key>``: the method's ``state_dict`` (network, plus what the method owns);
- tensors ``optim.<param>.<key>`` and ``rng.torch`` (only in resumable ``last`` checkpoints);
- metadata (strings): ``format``, ``config`` (resolved YAML), ``label_spaces`` (JSON),
  ``tasks`` (JSON list), ``trainer_state`` (JSON), ``optim_meta`` (JSON: param groups and
  non-tensor optimiser state), ``preprocess`` (JSON: input size, pixel scaling and the
  5-point alignment template the inference pipeline warps faces onto).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from facemtl.errors import FacemtlError
from facemtl.labels import LabelSpaces
from facemtl.weights import base_model

FORMAT = "facemtl-checkpoint-1"
#: The shipped model's name: accepted wherever a checkpoint path is (``--checkpoint facemtl_base``).
BASE_NAME = "facemtl_base"
#: Suffixes of files ``torch.save`` usually writes: pickles, refused unless their bytes say safetensors.
PICKLE_SUFFIXES = frozenset({".pt", ".pth", ".ckpt", ".bin", ".pkl", ".pickle", ".tar"})


@dataclass
class Checkpoint:
    """A loaded checkpoint: tensors by name and its decoded metadata."""

    path: Path
    model_state: dict[str, torch.Tensor]
    config: dict[str, Any]
    label_spaces: LabelSpaces
    tasks: list[str]
    trainer_state: dict[str, Any]
    preprocess: dict[str, Any]
    optimizer_state: dict[str, Any] | None
    rng_state: torch.Tensor | None


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for param_id, entries in state["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{param_id}.{key}"] = value
            else:
                scalars.setdefault(str(param_id), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        _, param_id, key = name.split(".", 2)
        state.setdefault(int(param_id), {})[key] = value
    for param_id, entries in meta["scalars"].items():
        state.setdefault(int(param_id), {}).update(entries)
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(
    path: str | Path,
    model_state: dict[str, torch.Tensor],
    *,
    config_yaml: str,
    label_spaces: LabelSpaces,
    tasks: list[str] | tuple[str, ...],
    trainer_state: dict[str, Any] | None = None,
    preprocess: dict[str, Any] | None = None,
    optimizer_state: dict[str, Any] | None = None,
    rng_state: torch.Tensor | None = None,
) -> Path:
    """Write a checkpoint atomically (temporary file + rename: a kill never leaves half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().cpu().contiguous().clone() for k, v in model_state.items()}
    metadata = {
        "format": FORMAT,
        "config": config_yaml,
        "label_spaces": label_spaces.to_json(),
        "tasks": json.dumps(list(tasks)),
        "trainer_state": json.dumps(trainer_state or {}),
        "preprocess": json.dumps(preprocess or {}),
    }
    if optimizer_state is not None:
        optim_tensors, optim_meta = _flatten_optimizer(optimizer_state)
        tensors.update({k: v.detach().cpu().contiguous().clone() for k, v in optim_tensors.items()})
        metadata["optim_meta"] = json.dumps(optim_meta)
    if rng_state is not None:
        tensors["rng.torch"] = rng_state.clone()
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    replace_durably(tmp, path)
    return path


def replace_durably(tmp: Path, path: Path) -> None:
    """Rename a fully written ``tmp`` over ``path``: readers see the old file or the new one, never half.

    The data is flushed to disk before the rename and the rename itself after it, so a
    power cut cannot leave a renamed but empty file either (SIGKILL alone could not).
    """
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    if hasattr(os, "O_DIRECTORY"):  # POSIX: persist the directory entry
        folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


def _looks_safetensors(head: bytes, size: int) -> bool:
    """A safetensors file opens with its JSON header's length (8 bytes, little-endian) then ``{``."""
    return len(head) >= 9 and head[8:9] == b"{" and 8 + int.from_bytes(head[:8], "little") <= size


def _pickle_kind(path: Path) -> str:
    """How ``path`` shows itself a pickle ("" when it does not), from its first bytes and its suffix.

    ``.safetensors`` files are only checked for ``torch.save``'s zip: a stray ``0x80`` first
    byte there is left to the safetensors reader's own error.
    """
    with open(path, "rb") as handle:
        head = handle.read(9)
    if head.startswith(b"PK\x03\x04"):
        return "a torch.save zip archive (pickled)"
    if path.suffix.lower() == ".safetensors" or _looks_safetensors(head, path.stat().st_size):
        return ""
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "a pickle"
    return f"a {path.suffix.lower()} file (pickled)" if path.suffix.lower() in PICKLE_SUFFIXES else ""


def refuse_pickle(path: str | Path, what: str = "") -> None:
    """Raise naming ``path`` (after ``what``, e.g. ``model.pretrained=``) if it is a pickle, with
    the one-line conversion to safetensors.

    Unpickling runs whatever code the file names, so facemtl never does it; the file is
    only sniffed (first bytes, suffix), never loaded.

    Raises:
        FacemtlError: when ``path`` is a pickle (``torch.save``'s zip or a raw pickle).
    """
    path = Path(path)
    kind = _pickle_kind(path)
    if not kind:
        return
    out = path.with_suffix(".safetensors") if path.suffix != ".safetensors" else path.with_suffix(".converted.safetensors")
    convert = ("python -c \"import torch; from safetensors.torch import save_file; "
               f"s = torch.load({str(path)!r}, weights_only=True); s = s.get('state_dict', s.get('model', s)); "
               f"save_file({{k: v.contiguous().clone() for k, v in s.items()}}, {str(out)!r})\"")
    raise FacemtlError(f"{what}{path} is {kind}, which facemtl will not unpickle (loading a pickle can run any code); "
                       f"convert its weights once with: {convert}")


def resolve_checkpoint_path(path: str | Path) -> Path:
    """``facemtl_base`` means the shipped model, a run folder its best checkpoint; a file is taken
    as is, unless it is a pickle (:func:`refuse_pickle`).

    Raises:
        FacemtlError: when nothing is there, or the file is a pickle.
    """
    if str(path) == BASE_NAME:
        return base_model()
    path = Path(path)
    if path.is_dir():
        for candidate in (path / "checkpoints" / "best.safetensors", path / "best.safetensors"):
            if candidate.is_file():
                return candidate
        raise FacemtlError(f"{path}: no checkpoints/best.safetensors in this folder")
    if not path.is_file():
        raise FacemtlError(f"checkpoint {path} does not exist")
    refuse_pickle(path)
    return path


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a facemtl checkpoint (file, run folder or ``facemtl_base``); never unpickles."""
    path = resolve_checkpoint_path(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (a safetensors handle, not a dict)
    except (SafetensorError, OSError) as err:
        raise FacemtlError(f"{path}: not a readable safetensors file ({err})") from None
    if metadata.get("format") != FORMAT:
        raise FacemtlError(f"{path}: not a facemtl checkpoint (format {metadata.get('format')!r}, expected {FORMAT}); "
                           "plain backbone weights go in --set model.pretrained=PATH")
    import yaml

    optim_tensors = {k: v for k, v in tensors.items() if k.startswith("optim.")}
    return Checkpoint(
        path=path,
        model_state={k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")},
        config=yaml.safe_load(metadata["config"]),
        label_spaces=LabelSpaces.from_json(metadata["label_spaces"]),
        tasks=json.loads(metadata["tasks"]),
        trainer_state=json.loads(metadata["trainer_state"]),
        preprocess=json.loads(metadata.get("preprocess", "{}")),
        optimizer_state=_unflatten_optimizer(optim_tensors, json.loads(metadata["optim_meta"])) if "optim_meta" in metadata else None,
        rng_state=tensors.get("rng.torch"),
    )


def load_model_state(module: torch.nn.Module, checkpoint: Checkpoint, tasks: list[str] | tuple[str, ...]) -> None:
    """Load weights strictly, explaining a task-set mismatch instead of listing raw keys."""
    if sorted(checkpoint.tasks) != sorted(tasks):
        raise FacemtlError(
            f"{checkpoint.path}: checkpoint was trained for tasks {checkpoint.tasks}, the model has {list(tasks)}"
        )
    missing, unexpected = module.load_state_dict(checkpoint.model_state, strict=False)
    if missing or unexpected:
        raise FacemtlError(
            f"{checkpoint.path}: weights do not match the model ({len(missing)} missing e.g. {missing[:3]}, "
            f"{len(unexpected)} unexpected e.g. {unexpected[:3]}); was it trained with another backbone or method?"
        )
