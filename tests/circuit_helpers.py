"""Tiny hooked towers with zero-shot heads and images, shared by the circuit tests."""

from __future__ import annotations

import torch
from patch_helpers import N_CLASSES, make_tower

from interp.hooked.base import HookedImageTower


def tiny_tower(kind: str = "vit", seed: int = 0, dtype: torch.dtype = torch.float32) -> HookedImageTower:
    """A randomly initialised tiny OpenCLIP image tower with a 5-class plain-cosine head, eval
    mode (the patching tests' tower with logit scale 1)."""
    return make_tower(kind, seed, dtype, logit_scale=1.0)


def tiny_images(n: int = 6, seed: int = 0, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random images ``(n, 3, 32, 32)`` and labels ``(n,)``."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 3, 32, 32, generator=g).to(dtype)
    labels = torch.randint(0, N_CLASSES, (n,), generator=g)
    return images, labels
