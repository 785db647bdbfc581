"""Plain multi-task training: the weighted sum of masked per-task losses.

This is also the teacher of the multi-task distillation recipe (Deng et al.), with
per-task weights such as ``method.task_weights.au=8``.
"""

from __future__ import annotations

from facemtl.methods.base import Method
from facemtl.registry import METHODS


@METHODS.register("plain")
class PlainMethod(Method):
    """Weighted multi-task loss, one forward and one optimiser step per batch."""
