"""facemtl: multi-task facial behaviour analysis (expression, action units, valence/arousal,
landmarks, attributes) with one shared network and the training strategies of SCN, DACL,
MAL, multi-task distillation and TCDCN."""

from facemtl.tasks import TASKS, FacemtlError, LabelSpaces

__version__ = "0.1.0"

__all__ = ["TASKS", "FacemtlError", "LabelSpaces", "__version__"]
