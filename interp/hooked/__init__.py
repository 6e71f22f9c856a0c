"""Entry point for hooked image towers: any OpenCLIP model (or its ``.visual``) -> hooked tower.

>>> hooked = hook_image_tower(clip_model)            # HookedViT or HookedResNet
>>> embed, cache = hooked.run_with_cache(images)     # images (B, 3, H, W)
>>> cache["blocks.0.hook_resid_post"].shape          # (B, T, D)
"""

from __future__ import annotations

import copy as copy_module

from open_clip.modified_resnet import ModifiedResNet
from open_clip.transformer import VisionTransformer
from torch import nn

from interp.hooked.base import HookedImageTower
from interp.hooked.resnet import HookedResNet
from interp.hooked.vit import HookedViT

#: The towers :func:`hook_image_tower` can wrap, for error messages.
SUPPORTED_TOWERS = (
    "VisionTransformer (plain, LayerScale, attentional pooler, 'tok'/'avg' pooling, 'custom' "
    "blocks with qk_norm / scale_heads / scale_fc; e.g. ViT-B-32, ViT-M-16-alt, "
    "ViT-L-14-CLIPA, coca_ViT-B-32) and ModifiedResNet (RN50, RN101, RN50x4, RN50x16, RN50x64)"
)


class UnsupportedTowerError(TypeError, ValueError):
    """An image tower :func:`hook_image_tower` cannot wrap: a ``TypeError`` (the wrong kind of
    module) that is also a ``ValueError``, so the command line reports it as bad input, in one
    line."""


def hook_image_tower(
    model: nn.Module, head: nn.Module | None = None, copy: bool = False
) -> HookedImageTower:
    """Wrap an OpenCLIP CLIP model's image tower (or the tower itself) with hook points.

    ``model``: an OpenCLIP ``CLIP``/``CustomTextCLIP`` (its ``.visual`` is used) or a
    ``VisionTransformer`` / ``ModifiedResNet``. Parameters are shared with ``model`` unless
    ``copy=True`` (then the tower is deep-copied first); the original modules are never
    modified (in-place ops are re-implemented out of place in the hooked forward). The hooked
    tower starts in the train/eval mode of the source tower. ``head``: optional
    :class:`interp.hooked.head.ZeroShotHead` for class logits.
    """
    visual = getattr(model, "visual", model)
    if copy:
        visual = copy_module.deepcopy(visual)
    if isinstance(visual, VisionTransformer):
        hooked: HookedImageTower = HookedViT(visual, head=head)
    elif isinstance(visual, ModifiedResNet):
        hooked = HookedResNet(visual, head=head)
    else:
        raise UnsupportedTowerError(
            f"unsupported image tower {type(visual).__name__}; supported: OpenCLIP's "
            f"{SUPPORTED_TOWERS} (timm towers such as convnext/ViTamin/EVA and HF towers are not)"
        )
    return hooked.train(visual.training)
