"""Device names as users write them (``cpu``, ``cuda``, ``cuda:1``, ``auto``) to torch devices."""

from __future__ import annotations

import torch

from facemtl.errors import FacemtlError


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when available), ``cpu``, ``cuda``, ``cuda:N`` as a torch device.

    Raises:
        FacemtlError: for an unknown name, or CUDA asked for where there is none.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise FacemtlError(f"unknown device {name!r}; use cpu, cuda, cuda:N or auto") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise FacemtlError(f"device {name!r} requested but no CUDA device is available; use cpu or auto")
    return device
