"""Training methods, one file per paper, all plugged into :class:`facemtl.engine.Trainer`."""

from facemtl.methods.base import Method, TrainContext
from facemtl.methods.plain import PlainMethod
from facemtl.methods.scn import SCNMethod
from facemtl.registry import METHODS

__all__ = ["METHODS", "Method", "PlainMethod", "SCNMethod", "TrainContext"]
