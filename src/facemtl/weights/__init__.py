"""Weights shipped inside the package: the model ``FaceAnalyzer()`` and ``facemtl predict`` use by default.

``facemtl_base.safetensors`` is trained by ``configs/facemtl_base_teacher.yaml`` (a FER2013
expression teacher) then ``configs/facemtl_base.yaml`` (the student: FER2013 expression + MTFL
landmarks and attributes; model card: ``docs/model_card.md``). The file is verified
against :data:`BASE_SHA256` before first use, so a truncated or swapped file is an error,
never a silently different model.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

from facemtl.errors import FacemtlError

BASE_MODEL = Path(__file__).with_name("facemtl_base.safetensors")
#: SHA-256 of the shipped file (benchmarks/real_model.py --print-hash recomputes it).
BASE_SHA256 = "1efc197f2c04411ff3ac87b430e1f3492ce35a321e0e68a6bf1ab210ddc4effb"


def sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@cache
def base_model() -> Path:
    """Path of the shipped model after checking its hash.

    Raises:
        FacemtlError: when the file is missing or its hash differs from :data:`BASE_SHA256`.
    """
    if not BASE_MODEL.is_file():
        raise FacemtlError(f"{BASE_MODEL}: the shipped model is missing from this install; pass --checkpoint PATH or set FACEMTL_CHECKPOINT")
    found = sha256(BASE_MODEL)
    if found != BASE_SHA256:
        raise FacemtlError(f"{BASE_MODEL}: SHA-256 {found[:16]}... differs from the expected {BASE_SHA256[:16]}...; "
                           "reinstall facemtl, or pass --checkpoint PATH or set FACEMTL_CHECKPOINT")
    return BASE_MODEL
