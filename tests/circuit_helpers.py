"""Tiny hooked towers with zero-shot heads and images, shared by the circuit tests."""

from __future__ import annotations

import open_clip
import torch

from interp.hooked import hook_image_tower
from interp.hooked_base import HookedImageTower
from interp.zeroshot_head import ZeroShotHead

TINY_VIT = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1},
}
TINY_RN = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": [1, 1, 1, 1], "width": 8, "head_width": 8,
                   "patch_size": None},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1},
}
N_CLASSES = 5


def tiny_tower(kind: str = "vit", seed: int = 0, dtype: torch.dtype = torch.float32) -> HookedImageTower:
    """A randomly initialised tiny OpenCLIP image tower with a 5-class cosine head, eval mode.

    BatchNorm statistics of the ResNet are randomised so that no layer is an identity."""
    cfg = TINY_VIT if kind == "vit" else TINY_RN
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        clip = open_clip.CLIP(**cfg)
        for module in clip.visual.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.data.normal_(1, 0.2)
                module.bias.data.normal_(0, 0.2)
        head = ZeroShotHead(torch.randn(N_CLASSES, cfg["embed_dim"]))
    model = hook_image_tower(clip, head=head).eval()
    return model.to(dtype)


def tiny_images(n: int = 6, seed: int = 0, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random images ``(n, 3, 32, 32)`` and labels ``(n,)``."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 3, 32, 32, generator=g).to(dtype)
    labels = torch.randint(0, N_CLASSES, (n,), generator=g)
    return images, labels
