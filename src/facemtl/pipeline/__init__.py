"""Inference pipeline: images, folders and videos -> detected, aligned faces -> per-face rows.

``FaceAnalyzer`` is imported lazily so ``import facemtl.pipeline.schema`` needs neither
OpenCV nor pandas.
"""

from __future__ import annotations

from typing import Any

__all__ = ["FaceAnalyzer"]


def __getattr__(name: str) -> Any:
    if name == "FaceAnalyzer":
        from facemtl.pipeline.analyzer import FaceAnalyzer

        return FaceAnalyzer
    raise AttributeError(f"module 'facemtl.pipeline' has no attribute {name!r}")
