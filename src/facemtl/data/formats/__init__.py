"""Real dataset formats, one module per release format; importing this registers them all.

Each module parses its annotation files into :class:`~facemtl.data.records.Records` and
documents its label mapping; the README "Datasets" section lists recipe keys and layouts.
"""

import facemtl.data.mix  # noqa: F401  (registers "mix")
from facemtl.data.formats import (  # noqa: F401  (each registers its dataset builders)
    affectnet,
    affwild2,
    affwild2_mtl,
    bp4d,
    disfa,
    dlib_xml,
    expw,
    fer2013,
    ferplus,
    generic_csv,
    mtfl,
    rafdb,
    w300,
)
