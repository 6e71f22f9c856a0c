"""A mixture on disk, read for training: kept for the callers that import it from here.

The one mixture type and its reader/writer live in :mod:`training.mixtures`
(:class:`~training.mixtures.Mixture`, :func:`~training.mixtures.read_mixture`,
:func:`~training.mixtures.write_mixture`).
"""

from __future__ import annotations

from .mixtures import REQUIRED_COLUMNS, Mixture, manifest_path, read_mixture

__all__ = ["REQUIRED_COLUMNS", "Mixture", "manifest_path", "read_mixture"]
