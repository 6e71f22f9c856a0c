"""Tiny hooked towers, images and hook bookkeeping shared by the patching and ablation tests."""

from __future__ import annotations

import open_clip
import torch

from interp.hooked import hook_image_tower
from interp.hooked.base import HookedImageTower
from interp.hooked.head import ZeroShotHead

VIT_CONFIG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1},
}
RN_CONFIG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": [1, 1, 1, 1], "width": 8, "head_width": 8,
                   "patch_size": None},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1},
}
N_CLASSES = 5


def make_tower(
    kind: str, seed: int = 0, dtype: torch.dtype = torch.float64, logit_scale: float = 10.0
) -> HookedImageTower:
    """Random tiny tower (``vit``: 17 tokens, 2 heads, 2 blocks; ``rn``: ModifiedResNet) with a
    5-class cosine head, eval mode. ResNet BatchNorm statistics are randomised so that no
    block is close to an identity."""
    cfg = VIT_CONFIG if kind == "vit" else RN_CONFIG
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        clip = open_clip.CLIP(**cfg)
        for module in clip.visual.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.data.normal_(1, 0.2)
                module.bias.data.normal_(0, 0.2)
        head = ZeroShotHead(torch.randn(N_CLASSES, cfg["embed_dim"]), logit_scale=logit_scale)
    return hook_image_tower(clip, head=head).eval().to(dtype)


def make_images(n: int, seed: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``n`` random images ``(n, 3, 32, 32)``."""
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed)).to(dtype)


def hook_count(model: HookedImageTower) -> int:
    """Forward and backward hooks currently registered on any hook point of ``model``."""
    return sum(len(h._forward_hooks) + len(h._backward_hooks) for h in model.hook_dict.values())
