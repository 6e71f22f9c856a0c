"""Hooked OpenCLIP ModifiedResNet.

:class:`HookedResNet` shares its parameters with an OpenCLIP ``ModifiedResNet`` and recomputes
its forward pass with hook points, replacing OpenCLIP's in-place ops (``ReLU(inplace=True)``,
``out += identity``) by out-of-place ones, so a cached activation is never overwritten by a later
op. The attention pool is recomputed head by head (for the pooled query only, which is all
OpenCLIP keeps). Hook names (B = batch, C x H x W = a feature map, P = positions + 1):

=================================  ====================================================
``stem.hook_conv1/2/3``            (B, C, H, W) after each stem conv + BN + ReLU
``stem.hook_out``                  (B, C, H, W) stem output (after the 2x2 average pool)
``layer{i}.{j}.hook_conv1``        (B, C, H, W) after conv1 + bn1 + ReLU
``layer{i}.{j}.hook_conv2``        (B, C, H, W) after conv2 + bn2 + ReLU (before the
                                   stride-2 average pool)
``layer{i}.{j}.hook_conv3``        (B, C, H, W) after conv3 + bn3, before the residual sum
``layer{i}.{j}.hook_shortcut``     (B, C, H, W) identity or downsampled input
``layer{i}.{j}.hook_out``          (B, C, H, W) block output, ReLU(conv3 + shortcut)
``attnpool.hook_in``               (B, P, C) mean token + positions, position-embedded
``attnpool.hook_q``                (B, H, d_head) the pooled (mean-token) query per head
``attnpool.hook_k/v``              (B, P, H, d_head)
``attnpool.hook_pattern``          (B, H, P) attention of the pooled query over positions
``attnpool.hook_z``                (B, H, d_head)
``attnpool.hook_result``           (B, H, E) per-head output: ``out = result.sum(1) + b``
``attnpool.hook_out``              (B, E) attention-pool output
``hook_image_embed``               (B, E) final image embedding (= ``encode_image``)
=================================  ====================================================
"""

from __future__ import annotations

import torch
from open_clip.modified_resnet import AttentionPool2d, Bottleneck, ModifiedResNet
from torch import Tensor, nn
from torch.nn import functional as F

from interp.hooked.base import HookedImageTower, LayerSite, TowerConfig, hook_point


class HookedStem(nn.Module):
    """The three-conv stem with average pool: ``(B, 3, H, W)`` -> ``(B, C, H/4, W/4)``."""

    def __init__(self, visual: ModifiedResNet) -> None:
        super().__init__()
        self.conv1, self.bn1 = visual.conv1, visual.bn1
        self.hook_conv1 = hook_point("spatial")
        self.conv2, self.bn2 = visual.conv2, visual.bn2
        self.hook_conv2 = hook_point("spatial")
        self.conv3, self.bn3 = visual.conv3, visual.bn3
        self.hook_conv3 = hook_point("spatial")
        self.avgpool = visual.avgpool
        self.hook_out = hook_point("spatial")

    def forward(self, x: Tensor) -> Tensor:
        """``x``: images ``(B, 3, H, W)`` -> ``(B, C, H/4, W/4)``."""
        x = self.hook_conv1(F.relu(self.bn1(self.conv1(x))))
        x = self.hook_conv2(F.relu(self.bn2(self.conv2(x))))
        x = self.hook_conv3(F.relu(self.bn3(self.conv3(x))))
        return self.hook_out(self.avgpool(x))


class HookedBottleneck(nn.Module):
    """OpenCLIP's anti-aliased Bottleneck, out of place: ``(B, C, H, W)`` -> ``(B, 4P, H/s, W/s)``."""

    def __init__(self, block: Bottleneck) -> None:
        super().__init__()
        if not isinstance(block, Bottleneck):
            raise TypeError(f"expected an OpenCLIP Bottleneck, got {type(block).__name__}")
        self.conv1, self.bn1 = block.conv1, block.bn1
        self.hook_conv1 = hook_point("spatial")
        self.conv2, self.bn2 = block.conv2, block.bn2
        self.hook_conv2 = hook_point("spatial")
        self.avgpool = block.avgpool
        self.conv3, self.bn3 = block.conv3, block.bn3
        self.hook_conv3 = hook_point("spatial")
        self.downsample = block.downsample
        self.hook_shortcut = hook_point("spatial")
        self.hook_out = hook_point("spatial")

    def forward(self, x: Tensor) -> Tensor:
        """``x``: ``(B, C, H, W)`` -> block output."""
        out = self.hook_conv1(F.relu(self.bn1(self.conv1(x))))
        out = self.hook_conv2(F.relu(self.bn2(self.conv2(out))))
        out = self.hook_conv3(self.bn3(self.conv3(self.avgpool(out))))
        shortcut = self.hook_shortcut(self.downsample(x) if self.downsample is not None else x)
        return self.hook_out(F.relu(out + shortcut))


class HookedAttentionPool(nn.Module):
    """OpenCLIP's ``AttentionPool2d`` recomputed per head, for the pooled (mean) query only.

    Input feature map ``(B, C, H, W)``, output ``(B, E)``.
    """

    def __init__(self, pool: AttentionPool2d) -> None:
        super().__init__()
        self.positional_embedding = pool.positional_embedding
        self.q_proj, self.k_proj, self.v_proj, self.c_proj = (
            pool.q_proj, pool.k_proj, pool.v_proj, pool.c_proj,
        )
        self.n_heads = int(pool.num_heads)
        self.d_model = int(pool.q_proj.in_features)
        self.d_head = self.d_model // self.n_heads
        self.hook_in = hook_point("sequence")
        self.hook_q = hook_point("head_vector")
        self.hook_k = hook_point("heads")
        self.hook_v = hook_point("heads")
        self.hook_pattern = hook_point("head_weights")
        self.hook_z = hook_point("head_vector")
        self.hook_result = hook_point("head_vector")
        self.hook_out = hook_point("vector")

    def forward(self, x: Tensor) -> Tensor:
        """``x``: ``(B, C, H, W)`` -> ``(B, E)``."""
        batch = x.shape[0]
        heads, d_head = self.n_heads, self.d_head
        x = x.flatten(2).permute(0, 2, 1)  # (B, HW, C)
        x = torch.cat([x.mean(dim=1, keepdim=True), x], dim=1)
        x = self.hook_in(x + self.positional_embedding.to(x.dtype))
        q = self.hook_q(self.q_proj(x[:, 0]).reshape(batch, heads, d_head))
        k = self.hook_k(self.k_proj(x).reshape(batch, -1, heads, d_head))
        v = self.hook_v(self.v_proj(x).reshape(batch, -1, heads, d_head))
        scores = torch.einsum("bhd,bkhd->bhk", q * d_head**-0.5, k)
        pattern = self.hook_pattern(scores.softmax(dim=-1))
        z = self.hook_z(torch.einsum("bhk,bkhd->bhd", pattern, v))
        w_out = self.c_proj.weight.reshape(self.c_proj.out_features, heads, d_head)
        result = self.hook_result(torch.einsum("bhd,ehd->bhe", z, w_out))
        out = result.sum(dim=1)
        if self.c_proj.bias is not None:
            out = out + self.c_proj.bias
        return self.hook_out(out)


class HookedResNet(HookedImageTower):
    """Hooked OpenCLIP ``ModifiedResNet`` (parameters shared with ``visual``)."""

    def __init__(self, visual: ModifiedResNet, head: nn.Module | None = None) -> None:
        super().__init__()
        if not isinstance(visual, ModifiedResNet):
            raise TypeError(f"expected an OpenCLIP ModifiedResNet, got {type(visual).__name__}")
        self.stem = HookedStem(visual)
        self.stage_names = ("layer1", "layer2", "layer3", "layer4")
        for stage in self.stage_names:
            setattr(self, stage, nn.ModuleList(HookedBottleneck(b) for b in getattr(visual, stage)))
        self.attnpool = HookedAttentionPool(visual.attnpool)
        self.hook_image_embed = hook_point("vector")
        self.cfg = TowerConfig(
            architecture="resnet",
            n_layers=sum(len(getattr(self, s)) for s in self.stage_names),
            n_heads=self.attnpool.n_heads,
            d_model=int(visual.conv3.out_channels),
            embed_dim=int(visual.output_dim),
            image_size=(int(visual.image_size),) * 2
            if isinstance(visual.image_size, int)
            else tuple(visual.image_size),
            device=visual.conv1.weight.device,
        )
        self._finish_setup(head)

    def embed_image(self, images: Tensor) -> Tensor:
        """Images ``(B, 3, H, W)`` -> image embedding ``(B, E)``."""
        x = self.stem(images)
        for stage in self.stage_names:
            for block in getattr(self, stage):
                x = block(x)
        return self.hook_image_embed(self.attnpool(x))

    def embed_from(self, site: str | None, x: Tensor, *, class_token_only: bool = False) -> Tensor:
        """The rest of the forward pass from a residual checkpoint: ``x`` -> ``(B, E)``.

        ``site``: ``None`` (``x`` are images, i.e. :meth:`embed_image`), ``stem.hook_out``, ``layer{s}.{j}.hook_out``, ``attnpool.hook_out`` or
        ``hook_image_embed``; ``x``: the activation that site's hook receives. The hook at
        ``site`` and every later one is called. ``class_token_only`` is accepted for the
        tower interface and changes nothing: the attention pool already computes only its
        pooled query.
        """
        if site == "hook_image_embed":
            return self.hook_image_embed(x)
        if site == "attnpool.hook_out":
            return self.hook_image_embed(self.attnpool.hook_out(x))
        blocks = [(f"{stage}.{j}", block) for stage in self.stage_names
                  for j, block in enumerate(getattr(self, stage))]
        if site is None:
            return self.embed_image(x)
        if site == "stem.hook_out":
            x, start = self.stem.hook_out(x), 0
        else:
            names = [f"{name}.hook_out" for name, _ in blocks]
            if site not in names:
                raise ValueError(f"{site!r} is not a residual checkpoint of the ResNet")
            start = names.index(site)
            x = blocks[start][1].hook_out(x)
            start += 1
        for _, block in blocks[start:]:
            x = block(x)
        return self.hook_image_embed(self.attnpool(x))

    def layers(self) -> list[LayerSite]:
        """Stem output, every bottleneck's output, and the final embedding."""
        sites = [LayerSite("stem.hook_out", "stem")]
        for i, stage in enumerate(self.stage_names, start=1):
            sites += [
                LayerSite(f"{stage}.{j}.hook_out", f"L{i}.{j}") for j in range(len(getattr(self, stage)))
            ]
        sites.append(LayerSite("hook_image_embed", "embed"))
        return sites
