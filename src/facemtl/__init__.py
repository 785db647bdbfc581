"""facemtl: multi-task facial behaviour analysis (expression, action units, valence/arousal,
landmarks, attributes) with one shared network and the training strategies of SCN, DACL,
MAL, multi-task distillation and TCDCN."""

from facemtl.errors import FacemtlError
from facemtl.labels import TASKS, LabelSpaces

__version__ = "0.1.0"

__all__ = ["TASKS", "FacemtlError", "LabelSpaces", "__version__"]


def __getattr__(name: str):
    # Lazy: `import facemtl` must not pull in OpenCV, pandas or the detector.
    if name == "FaceAnalyzer":
        from facemtl.pipeline.analyzer import FaceAnalyzer

        return FaceAnalyzer
    raise AttributeError(f"module 'facemtl' has no attribute {name!r}")
