"""Opening up CLIP image towers: hooked models, activations, CKA, patching, circuits.

The main entry points are importable from here lazily (importing ``interp`` itself loads
neither torch nor TransformerLens)::

    from interp import hook_image_tower, load_hooked_run, collect_activations, cross_domain_cka

(The CKA function itself is ``interp.cka.cka``: ``interp.cka`` is its module.)
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "hook_image_tower": "interp.hooked",
    "HookedImageTower": "interp.hooked_base",
    "LayerSite": "interp.hooked_base",
    "UnknownSiteError": "interp.hooked_base",
    "HookedViT": "interp.hooked_vit",
    "HookedResNet": "interp.hooked_resnet",
    "ZeroShotHead": "interp.zeroshot_head",
    "HookedRun": "interp.runs",
    "load_hooked_run": "interp.runs",
    "ImageFileDataset": "interp.imagesets",
    "collect_activations": "interp.activations",
    "collect_domain_activations": "interp.activations",
    "DomainActivations": "interp.activations",
    "linear_cka_features": "interp.cka",
    "minibatch_cka": "interp.cka",
    "hsic": "interp.cka",
    "class_means": "interp.cross_domain",
    "cross_domain_cka": "interp.cross_domain",
    "model_vs_model_cka": "interp.cross_domain",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'interp' has no attribute {name!r}")
