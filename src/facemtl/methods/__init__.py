"""Training methods, one module (MAL: one package) per paper, all plugged into :class:`facemtl.engine.Trainer`."""

from facemtl.methods.base import Method, TrainContext
from facemtl.methods.dacl import DACLMethod
from facemtl.methods.distill import DistillMethod
from facemtl.methods.mal import MALMethod
from facemtl.methods.plain import PlainMethod
from facemtl.methods.scn import SCNMethod
from facemtl.methods.tcdcn import TCDCNMethod
from facemtl.registry import METHODS

__all__ = ["METHODS", "DACLMethod", "DistillMethod", "MALMethod", "Method", "PlainMethod", "SCNMethod", "TCDCNMethod", "TrainContext"]
