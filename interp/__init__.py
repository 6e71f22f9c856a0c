"""Opening up CLIP image towers: hooked models, activations, CKA, patching, circuits.

The main entry points are importable from here lazily (importing ``interp`` itself loads
neither torch nor TransformerLens)::

    from interp import hook_image_tower, load_hooked_run, collect_activations, cross_domain_cka

(The CKA function itself is ``interp.similarity.cka.cka``: ``interp.similarity.cka`` is its module.)
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "hook_image_tower": "interp.hooked",
    "HookedImageTower": "interp.hooked.base",
    "LayerSite": "interp.hooked.base",
    "UnknownSiteError": "interp.hooked.base",
    "HookedViT": "interp.hooked.vit",
    "HookedResNet": "interp.hooked.resnet",
    "ZeroShotHead": "interp.hooked.head",
    "HookedRun": "interp.hooked.runs",
    "load_hooked_run": "interp.hooked.runs",
    "ImageFileDataset": "interp.hooked.images",
    "collect_activations": "interp.hooked.activations",
    "collect_domain_activations": "interp.hooked.activations",
    "DomainActivations": "interp.hooked.activations",
    "linear_cka_features": "interp.similarity.cka",
    "minibatch_cka": "interp.similarity.cka",
    "hsic": "interp.similarity.cka",
    "class_means": "interp.similarity.cross_domain",
    "cross_domain_cka": "interp.similarity.cross_domain",
    "model_vs_model_cka": "interp.similarity.cross_domain",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'interp' has no attribute {name!r}")
