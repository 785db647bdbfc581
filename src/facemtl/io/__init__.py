"""File formats at the bottom of the stack: the checkpoint file (safetensors + JSON metadata),
and OpenFace 2's CSV (:func:`read_openface`), read with facemtl's column names."""

from facemtl.io.openface import read_openface

__all__ = ["read_openface"]
