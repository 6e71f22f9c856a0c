"""domainlens: when and how CLIP generalizes across visual domains.

The Python API lives in two import packages: :mod:`training` (data, mixtures, training,
zero-shot evaluation) and :mod:`interp` (hooked models, CKA, patching, circuits). This package
holds only the command line, a thin layer over both.
"""

__version__ = "0.1.0"
