"""Hooked OpenCLIP VisionTransformer.

:class:`HookedViT` shares its parameters with an OpenCLIP ``VisionTransformer`` and recomputes
its forward pass with TransformerLens-style hook points. Attention is recomputed from
``in_proj_weight`` / ``out_proj`` (OpenCLIP calls ``nn.MultiheadAttention`` with
``need_weights=False``, so no pattern or per-head output exists there); LayerScale is applied
out of place. Hook names (B = batch, T = 1 + patches, H = heads):

================================  =====================================================
``hook_patch_embed``              (B, P, D) patch embeddings (conv1), no class token
``hook_embed``                    (B, T, D) class token + patches + position embedding
``blocks.{i}.hook_resid_pre``     (B, T, D) block input (after ``ln_pre`` for block 0)
``blocks.{i}.attn.hook_q/k/v``    (B, T, H, d_head) (q, k after a 'custom' block's qk_norm)
``blocks.{i}.attn.hook_attn_scores``  (B, H, T, T) scaled dot products, pre-softmax
``blocks.{i}.attn.hook_pattern``  (B, H, T, T) attention probabilities
``blocks.{i}.attn.hook_z``        (B, T, H, d_head) pattern-weighted values (times a
                                  'custom' block's per-head scale)
``blocks.{i}.attn.hook_result``   (B, T, H, D) per-head output, LayerScale applied:
                                  ``attn_out = result.sum(2) + attn.b_O``
``blocks.{i}.hook_attn_out``      (B, T, D) attention output added to the residual
``blocks.{i}.hook_resid_mid``     (B, T, D)
``blocks.{i}.mlp.hook_pre/post``  (B, T, M) MLP hidden layer before / after the activation
``blocks.{i}.hook_mlp_out``       (B, T, D) MLP output added to the residual
``blocks.{i}.hook_resid_post``    (B, T, D) block output
``attn_pool.hook_out``            (B, Q, E) attentional pooler output (if the model has one)
``hook_pooled``                   (B, D') pooled and normalised, before the projection
``hook_image_embed``              (B, E) final image embedding (= ``encode_image``)
================================  =====================================================
"""

from __future__ import annotations

import torch
from open_clip.transformer import (
    Attention,
    CustomResidualAttentionBlock,
    ResidualAttentionBlock,
    VisionTransformer,
)
from torch import Tensor, nn
from torch.nn import functional as F

from interp.hooked.base import HookedImageTower, LayerSite, TowerConfig, hook_point, layer_scale


class HookedAttention(nn.Module):
    """Multi-head self-attention recomputed head by head from ``nn.MultiheadAttention``.

    Input ``(B, T, D)`` (already normalised by ``ln_1``), output ``(B, T, D)`` after LayerScale.
    """

    def __init__(self, mha: nn.Module, ls: nn.Module) -> None:
        super().__init__()
        if isinstance(mha, nn.MultiheadAttention):
            if not mha._qkv_same_embed_dim or mha.bias_k is not None or mha.add_zero_attn:
                raise ValueError(
                    "only self-attention with a packed in_proj_weight and no bias_k/zero_attn is "
                    "supported (OpenCLIP's default vision blocks)"
                )
            self.ln_q, self.ln_k = nn.Identity(), nn.Identity()
            self.head_scale = None
        elif isinstance(mha, Attention):  # a 'custom' block's attention
            unsupported = [name for name, on in (
                ("scaled_cosine_attn", mha.logit_scale is not None),
                ("scale_attn_inner", not isinstance(mha.ln_inner, nn.Identity)),
            ) if on]
            if unsupported:
                raise ValueError(
                    f"unsupported 'custom' vision block option(s) {unsupported}: they normalise "
                    "the heads jointly, so per-head hooks would not add up; supported 'custom' "
                    "options: qk_norm, scale_heads, scale_fc, ls_init_value"
                )
            self.ln_q, self.ln_k = mha.ln_q, mha.ln_k  # over d_head, per head and token
            self.head_scale = mha.head_scale  # (H, 1, 1) or None
        else:
            raise ValueError(f"unsupported attention module {type(mha).__name__}")
        self.n_heads = int(mha.num_heads)
        self.d_model = int(mha.in_proj_weight.shape[1])
        self.d_head = self.d_model // self.n_heads
        self.in_proj_weight = mha.in_proj_weight
        if mha.in_proj_bias is not None:
            self.in_proj_bias = mha.in_proj_bias
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = mha.out_proj
        self.ls = ls
        self.hook_q = hook_point("heads")
        self.hook_k = hook_point("heads")
        self.hook_v = hook_point("heads")
        self.hook_attn_scores = hook_point("pattern")
        self.hook_pattern = hook_point("pattern")
        self.hook_z = hook_point("heads")
        self.hook_result = hook_point("head_result")

    @property
    def b_O(self) -> Tensor:  # noqa: N802 (TransformerLens name)
        """Output bias after LayerScale ``(D,)``: ``attn_out = result.sum(2) + b_O``."""
        bias = self.out_proj.bias
        if bias is None:
            return torch.zeros(self.d_model, device=self.in_proj_weight.device)
        return layer_scale(bias, self.ls)

    def forward(self, x: Tensor, qkv: Tensor | None = None) -> Tensor:
        """``x``: ``(B, T, D)`` -> attention output ``(B, T, D)``.

        ``qkv``: the input projection ``F.linear(x, in_proj_weight, in_proj_bias)``
        ``(B, T, 3D)`` when the caller already has it (then ``x`` is not read).
        """
        if qkv is None:
            qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        batch, tokens, _ = qkv.shape
        heads, d_head = self.n_heads, self.d_head
        q, k, v = (t.reshape(batch, tokens, heads, d_head) for t in qkv.chunk(3, dim=-1))
        q, k, v = self.hook_q(self.ln_q(q)), self.hook_k(self.ln_k(k)), self.hook_v(v)
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) * d_head**-0.5
        scores = self.hook_attn_scores(scores)
        pattern = self.hook_pattern(scores.softmax(dim=-1))
        z = self.hook_z(self._scale_heads(torch.einsum("bhqk,bkhd->bqhd", pattern, v)))
        w_out = self.out_proj.weight.reshape(self.d_model, heads, d_head)
        result = torch.einsum("bqhd,mhd->bqhm", z, w_out)
        result = self.hook_result(layer_scale(result, self.ls))
        out = result.sum(dim=2)
        if self.out_proj.bias is not None:
            out = out + layer_scale(self.out_proj.bias, self.ls)
        return out

    def _scale_heads(self, z: Tensor) -> Tensor:
        """``(B, T, H, d_head)`` times a 'custom' block's per-head scale (NormFormer), if any."""
        if self.head_scale is None:
            return z
        return z * self.head_scale.reshape(1, 1, self.n_heads, 1).to(z.dtype)

    def forward_class_query(self, x: Tensor, qkv: Tensor | None = None) -> Tensor:
        """Attention output of the class token only: ``x`` ``(B, T, D)`` -> ``(B, 1, D)``.

        Keys and values come from every token, the query from token 0 alone; the same numbers
        as ``forward(x)[:, :1]`` (to float rounding) at about a third of the cost. No hook
        point is called (the per-token activations it would report do not exist here).
        ``qkv``: as in :meth:`forward`.
        """
        heads, d_head, width = self.n_heads, self.d_head, self.d_model
        if qkv is None:
            w_q, w_kv = self.in_proj_weight[:width], self.in_proj_weight[width:]
            b_q = b_kv = None
            if self.in_proj_bias is not None:
                b_q, b_kv = self.in_proj_bias[:width], self.in_proj_bias[width:]
            q, kv = F.linear(x[:, :1], w_q, b_q), F.linear(x, w_kv, b_kv)
        else:
            q, kv = qkv[:, :1, :width], qkv[..., width:]
        batch, tokens, _ = kv.shape
        q = self.ln_q(q.reshape(batch, heads, d_head))
        k, v = (t.reshape(batch, tokens, heads, d_head) for t in kv.chunk(2, dim=-1))
        k = self.ln_k(k)
        scores = torch.einsum("bhd,bkhd->bhk", q, k) * d_head**-0.5
        z = torch.einsum("bhk,bkhd->bhd", scores.softmax(dim=-1), v).reshape(batch, 1, heads, d_head)
        z = self._scale_heads(z).reshape(batch, 1, width)
        return layer_scale(self.out_proj(z), self.ls)


class HookedMLP(nn.Module):
    """OpenCLIP's block MLP (``c_fc`` -> activation [-> LayerNorm] -> ``c_proj``) with neuron hooks.

    Input ``(B, T, D)``, hidden ``(B, T, M)``, output ``(B, T, D)`` (before LayerScale). The
    LayerNorm is a 'custom' block's ``scale_fc`` (NormFormer); ``hook_post`` sees its output,
    so ``c_proj(hook_post)`` is the MLP output in every layout.
    """

    def __init__(self, mlp: nn.Module) -> None:
        super().__init__()
        names = [name for name, _ in mlp.named_children()]
        if names not in (["c_fc", "gelu", "c_proj"], ["c_fc", "gelu", "ln", "c_proj"]):
            raise ValueError(
                f"unsupported MLP layout {names}; expected ['c_fc', 'gelu', 'c_proj'] "
                "(or with 'ln' before 'c_proj')"
            )
        self.c_fc = mlp.c_fc
        self.hook_pre = hook_point("tokens")
        self.act = mlp.gelu
        self.ln = getattr(mlp, "ln", nn.Identity())
        self.hook_post = hook_point("tokens")
        self.c_proj = mlp.c_proj

    def forward(self, x: Tensor) -> Tensor:
        """``x``: ``(B, T, D)`` -> ``(B, T, D)``."""
        return self.c_proj(self.hook_post(self.ln(self.act(self.hook_pre(self.c_fc(x))))))

    def compute(self, x: Tensor) -> Tensor:
        """:meth:`forward` without calling the hooks."""
        return self.c_proj(self.ln(self.act(self.c_fc(x))))


class HookedViTBlock(nn.Module):
    """One pre-norm residual block: ``x + ls_1(attn(ln_1 x))``, then ``+ ls_2(mlp(ln_2 x))``."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        if type(block) not in (ResidualAttentionBlock, CustomResidualAttentionBlock):
            raise ValueError(
                f"unsupported vision block {type(block).__name__}: supported are OpenCLIP's "
                "ResidualAttentionBlock and CustomResidualAttentionBlock"
            )
        if hasattr(block, "ln_1_kv"):
            raise ValueError("cross-attention blocks are not supported in an image tower")
        if not isinstance(getattr(block, "ln_attn", nn.Identity()), nn.Identity):
            raise ValueError(
                "unsupported 'custom' vision block option ['scale_attn']: it normalises the "
                "heads jointly, so per-head hooks would not add up; supported 'custom' options: "
                "qk_norm, scale_heads, scale_fc, ls_init_value"
            )
        self.hook_resid_pre = hook_point("tokens")
        self.ln_1 = block.ln_1
        self.attn = HookedAttention(block.attn, block.ls_1)
        self.hook_attn_out = hook_point("tokens")
        self.hook_resid_mid = hook_point("tokens")
        self.ln_2 = block.ln_2
        self.mlp = HookedMLP(block.mlp)
        self.ls_2 = block.ls_2
        self.hook_mlp_out = hook_point("tokens")
        self.hook_resid_post = hook_point("tokens")

    def qkv_of(self, x: Tensor) -> Tensor:
        """The attention's input projection of ``ln_1(x)``: ``(..., D)`` -> ``(..., 3D)``
        (per token, so rows may be projected on their own)."""
        return F.linear(self.ln_1(x), self.attn.in_proj_weight, self.attn.in_proj_bias)

    def forward(self, x: Tensor, qkv: Tensor | None = None) -> Tensor:
        """``x``: residual stream ``(B, T, D)`` -> ``(B, T, D)``.

        ``qkv``: the attention's input projection of ``ln_1(x)`` ``(B, T, 3D)``, if known
        (:meth:`HookedAttention.forward`); the caller vouches that it matches ``x``.
        """
        x = self.hook_resid_pre(x)
        attn_out = self.hook_attn_out(self.attn(self.ln_1(x) if qkv is None else x, qkv=qkv))
        x = self.hook_resid_mid(x + attn_out)
        mlp_out = self.hook_mlp_out(layer_scale(self.mlp(self.ln_2(x)), self.ls_2))
        return self.hook_resid_post(x + mlp_out)

    def forward_class_token(self, x: Tensor, qkv: Tensor | None = None) -> Tensor:
        """The block's output at the class token only: ``(B, T, D)`` -> ``(B, 1, D)``.

        For the last block of a class-token-pooled ViT, where nothing after the block reads
        the other tokens: keys/values from every token, query, residual and MLP on token 0.
        ``hook_resid_pre`` sees the full input and ``hook_resid_post`` the ``(B, 1, D)``
        output; the hooks in between are not called. ``qkv``: as in :meth:`forward`.
        """
        x = self.hook_resid_pre(x)
        x0 = x[:, :1] + self.attn.forward_class_query(self.ln_1(x) if qkv is None else x, qkv=qkv)
        mlp_out = layer_scale(self.mlp.compute(self.ln_2(x0)), self.ls_2)
        return self.hook_resid_post(x0 + mlp_out)


class HookedPooler(nn.Module):
    """An OpenCLIP ``AttentionalPooler`` with a hook on its output ``(B, Q, E)``."""

    def __init__(self, pooler: nn.Module) -> None:
        super().__init__()
        self.pooler = pooler
        self.hook_out = hook_point("sequence")

    def forward(self, x: Tensor) -> Tensor:
        """``x``: tokens ``(B, T, D)`` -> queries ``(B, Q, E)``."""
        return self.hook_out(self.pooler(x))


class HookedViT(HookedImageTower):
    """Hooked OpenCLIP ``VisionTransformer`` (parameters shared with ``visual``)."""

    def __init__(self, visual: VisionTransformer, head: nn.Module | None = None) -> None:
        super().__init__()
        if not isinstance(visual, VisionTransformer):
            raise TypeError(f"expected an OpenCLIP VisionTransformer, got {type(visual).__name__}")
        attn_pool_type = getattr(visual, "attn_pool_type", "")
        if attn_pool_type:
            raise ValueError(
                f"attentional_pool={attn_pool_type!r} (OpenCLIP's work-in-progress pooling) is "
                "not supported; use attentional_pool=True or no attentional pooling"
            )
        if visual.attn_pool is None and visual.pool_type == "none":
            raise ValueError("pool_type='none' returns token maps, not image embeddings")
        self.conv1 = visual.conv1
        self.hook_patch_embed = hook_point("sequence")
        self.class_embedding = visual.class_embedding
        self.positional_embedding = visual.positional_embedding
        self.hook_embed = hook_point("tokens")
        self.patch_dropout = visual.patch_dropout
        self.ln_pre = visual.ln_pre
        self.blocks = nn.ModuleList(HookedViTBlock(b) for b in visual.transformer.resblocks)
        self.attn_pool = HookedPooler(visual.attn_pool) if visual.attn_pool is not None else None
        self.pool_type = visual.pool_type
        self.final_ln_after_pool = bool(visual.final_ln_after_pool)
        self.ln_post = visual.ln_post
        self.hook_pooled = hook_point("vector")
        if visual.proj is not None:
            self.proj = visual.proj
        else:
            self.register_parameter("proj", None)
        self.hook_image_embed = hook_point("vector")
        width = int(visual.conv1.out_channels)
        self.cfg = TowerConfig(
            architecture="vit",
            n_layers=len(self.blocks),
            n_heads=self.blocks[0].attn.n_heads if len(self.blocks) else 0,
            d_model=width,
            embed_dim=int(visual.output_dim),
            image_size=tuple(visual.image_size),
            device=visual.conv1.weight.device,
        )
        self._finish_setup(head)

    def _global_pool(self, x: Tensor) -> Tensor:
        """``(B, T, D)`` -> ``(B, D)``: class token (``tok``) or mean of the others (``avg``)."""
        if self.pool_type == "avg":
            return x[:, 1:].mean(dim=1)
        if self.pool_type == "tok":
            return x[:, 0]
        raise ValueError(f"unsupported pool_type {self.pool_type!r}")

    @property
    def reads_class_token_only(self) -> bool:
        """Whether the embedding depends on the last block's class token alone (``tok``
        pooling, no attentional pooler): then :meth:`embed_from` may truncate that block."""
        return self.attn_pool is None and self.pool_type == "tok"

    def embed_image(self, images: Tensor) -> Tensor:
        """Images ``(B, 3, H, W)`` -> image embedding ``(B, E)``."""
        return self.embed_from(None, images)

    def embed_from(
        self, site: str | None, x: Tensor, *, class_token_only: bool = False,
        qkv: Tensor | None = None,
    ) -> Tensor:
        """The rest of the forward pass from a residual checkpoint: ``x`` -> ``(B, E)``.

        ``site``: ``None`` (``x`` are images ``(B, 3, H, W)``), ``hook_embed``, ``blocks.{i}.hook_resid_pre``, ``blocks.{i}.hook_resid_post``,
        ``hook_pooled`` or ``hook_image_embed``; ``x``: the activation that site's hook receives
        (``(B, T, D)`` or ``(B, D')``/``(B, E)``). The hook at ``site`` and every later one is
        called, so ``embed_from("hook_embed", tokens)`` is :meth:`embed_image`. With
        ``class_token_only`` (needs :attr:`reads_class_token_only`) the last block computes only
        the class token (:meth:`HookedViTBlock.forward_class_token`): its inner hooks are not
        called, its ``hook_resid_post`` sees ``(B, 1, D)``, and ``x`` at that site may be given as
        ``(B, 1, D)`` too. ``qkv``: the first block's attention input projection, if the caller
        already has it (:meth:`HookedViTBlock.forward`; patched copies of a shared prefix
        differ in a few rows, so only those rows need projecting).
        """
        if class_token_only and not self.reads_class_token_only:
            raise ValueError(
                "class_token_only needs a ViT pooled by its class token (pool_type='tok', no "
                f"attentional pooler); this one has pool_type={self.pool_type!r}"
            )
        n_blocks = len(self.blocks)
        if site is None:
            x = self.conv1(x)
            x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
            x = self.hook_patch_embed(x)
            cls = self.class_embedding.to(x.dtype).view(1, 1, -1).expand(x.shape[0], -1, -1)
            x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
            site = "hook_embed"
        if site == "hook_embed":
            x = self.ln_pre(self.patch_dropout(self.hook_embed(x)))
            start = 0
        elif site in ("hook_pooled", "hook_image_embed"):
            return self._project(x, site)
        else:
            block, _, name = site.removeprefix("blocks.").partition(".")
            if not block.isdigit() or name not in ("hook_resid_pre", "hook_resid_post"):
                raise ValueError(f"{site!r} is not a residual checkpoint of the ViT")
            start = int(block)
            if name == "hook_resid_post":
                if class_token_only and start == n_blocks - 1:
                    x = x[:, :1]
                x = self.blocks[start].hook_resid_post(x)
                start += 1
        if qkv is not None and start >= n_blocks:
            raise ValueError(f"qkv given but no block runs after {site!r}")
        for i in range(start, n_blocks):
            first = qkv if i == start else None
            if class_token_only and i == n_blocks - 1:
                x = self.blocks[i].forward_class_token(x, qkv=first)
            else:
                x = self.blocks[i](x, qkv=first)
        if self.attn_pool is not None:
            pooled = self._global_pool(self.ln_post(self.attn_pool(x)))
        elif self.final_ln_after_pool:
            pooled = self.ln_post(self._global_pool(x))
        else:
            pooled = self._global_pool(self.ln_post(x))
        return self._project(pooled, "hook_pooled")

    def _project(self, x: Tensor, site: str) -> Tensor:
        """From ``hook_pooled`` ``(B, D')`` or ``hook_image_embed`` ``(B, E)`` to the embedding."""
        if site == "hook_pooled":
            x = self.hook_pooled(x)
            if self.proj is not None:
                x = x @ self.proj
        return self.hook_image_embed(x)

    def layers(self) -> list[LayerSite]:
        """Token embeddings, each block's output, and the final embedding."""
        sites = [LayerSite("hook_embed", "input")]
        sites += [
            LayerSite(f"blocks.{i}.hook_resid_post", f"block{i}") for i in range(len(self.blocks))
        ]
        sites.append(LayerSite("hook_image_embed", "embed"))
        return sites
