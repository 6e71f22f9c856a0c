"""Shared base of the hooked OpenCLIP image towers.

:class:`HookedImageTower` is a TransformerLens ``HookedRootModule`` whose subclasses
(:class:`interp.hooked.vit.HookedViT`, :class:`interp.hooked.resnet.HookedResNet`) re-run an
OpenCLIP image tower's computation with a ``HookPoint`` at every site of interest. This base
adds what is common to both: validated site names (an unknown name raises an error listing the
valid ones), a ``run_with_cache`` that returns an indexable ``ActivationCache``, the ordered
``layers()`` used by layerwise analyses, the activation layout of every site (so that pooling
knows which axes are positions), and an optional zero-shot head that turns image embeddings
into class logits.

Hooks are only ever added through TransformerLens' ``hooks()`` context (used by
``run_with_hooks`` and ``run_with_cache`` too), which removes them in a ``finally`` clause, so an
exception inside the context leaves no hook behind.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import torch
from torch import Tensor, nn
from transformer_lens import ActivationCache, HookedRootModule
from transformer_lens.hook_points import HookPoint

from training.util.validate import check_choice

#: How each site's activation is laid out (B = batch):
#:
#: * ``tokens``      (B, T, D), ViT token stream; token 0 is the class token
#: * ``sequence``    (B, L, D), token sequence without a class token (ViT patch embeddings,
#:   attentional-pooler outputs)
#: * ``heads``       (B, T, H, d_head), per-head q/k/v/z (ViT)
#: * ``head_result`` (B, T, H, D), per-head contribution to the attention output (ViT)
#: * ``pattern``     (B, H, T_query, T_key), attention scores / pattern (ViT)
#: * ``spatial``     (B, C, H, W), convolutional feature map (ResNet)
#: * ``vector``      (B, D), one vector per image (final embedding, logits)
#: * ``head_vector`` (B, H, d), per-head vectors of the ResNet attention pool
#: * ``head_weights`` (B, H, T), the ResNet attention pool's pattern over positions
LAYOUTS: tuple[str, ...] = (
    "tokens", "sequence", "heads", "head_result", "pattern", "spatial", "vector",
    "head_vector", "head_weights",
)

ReturnType = Literal["embed", "logits"]


def hook_point(layout: str) -> HookPoint:
    """A TransformerLens ``HookPoint`` tagged with the layout of the activation it sees."""
    check_choice("layout", layout, LAYOUTS)
    point = HookPoint()
    point.layout = layout
    return point


class LayerSite(NamedTuple):
    """One site of a layerwise analysis: hook name and short label for plots."""

    name: str
    label: str


@dataclass(frozen=True)
class TowerConfig:
    """Shape facts about a hooked tower (also what TransformerLens helpers read as ``cfg``).

    ``n_layers``: transformer blocks (ViT) or bottleneck blocks (ResNet); ``n_heads``: heads
    per attention layer (ViT) or in the attention pool (ResNet); ``d_model``: residual width
    (ViT) or stem width (ResNet); ``embed_dim``: width of the final image embedding.
    """

    architecture: str
    n_layers: int
    n_heads: int
    d_model: int
    embed_dim: int
    image_size: tuple[int, int]
    device: torch.device


class UnknownSiteError(KeyError, ValueError):
    """A site (hook) name that the model does not have; the message lists the valid ones."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class HookedImageTower(HookedRootModule):
    """Base class: an OpenCLIP image tower with TransformerLens hook points.

    Subclasses build their modules (sharing parameters with the OpenCLIP tower), implement
    :meth:`embed_image` and :meth:`layers`, and call :meth:`_finish_setup` last. The forward
    pass maps images ``(B, 3, H, W)`` to the image embedding ``(B, E)`` (exactly OpenCLIP's
    ``encode_image``, unnormalised) or, with a zero-shot head, to class logits ``(B, C)``.
    """

    cfg: TowerConfig
    head: nn.Module | None

    def __init__(self) -> None:
        super().__init__()

    # ----------------------------------------------------------------- construction
    def _finish_setup(self, head: nn.Module | None) -> None:
        """Attach the head (or None) and build TransformerLens' name -> hook dictionaries."""
        self.head = head
        if head is not None:
            embed_dim = getattr(head, "embed_dim", None)
            if embed_dim is not None and embed_dim != self.cfg.embed_dim:
                raise ValueError(
                    f"head expects {embed_dim}-d embeddings but the image tower outputs "
                    f"{self.cfg.embed_dim}-d ones"
                )
        self.setup()

    def set_head(self, head: nn.Module | None) -> HookedImageTower:
        """Attach (or with ``None`` remove) a zero-shot head; returns ``self``."""
        self._finish_setup(head)
        return self

    # ----------------------------------------------------------------- forward
    def embed_image(self, images: Tensor) -> Tensor:
        """Images ``(B, 3, H, W)`` -> image embedding ``(B, E)`` through every hook point."""
        raise NotImplementedError

    def forward(self, images: Tensor, return_type: ReturnType | None = None) -> Tensor:
        """Run the tower.

        ``return_type="embed"`` gives the image embedding ``(B, E)`` (= OpenCLIP's
        ``encode_image``); ``"logits"`` gives the head's class logits ``(B, C)``. The default
        is ``"logits"`` when a head is attached, else ``"embed"``.
        """
        if return_type is None:
            return_type = "logits" if self.head is not None else "embed"
        check_choice("return_type", return_type, ("embed", "logits"))
        embed = self.embed_image(images)
        if return_type == "embed":
            return embed
        if self.head is None:
            raise ValueError("return_type='logits' needs a zero-shot head: use set_head(...)")
        return self.head(embed)

    @property
    def reads_class_token_only(self) -> bool:
        """Whether the embedding depends on the last block's class token alone (then
        ``class_token_only`` may truncate that block); ``False`` unless a subclass says so."""
        return False

    def embed_from(self, site: str | None, x: Tensor, *, class_token_only: bool = False) -> Tensor:
        """The rest of :meth:`embed_image` from a residual checkpoint ``site`` whose hook
        receives ``x`` (``None``: from the images); see the subclasses."""
        raise NotImplementedError

    def forward_from(
        self, site: str | None, x: Tensor, return_type: ReturnType | None = None, *,
        class_token_only: bool = False, **options: Any,
    ) -> Tensor:
        """:meth:`forward` resumed at a residual checkpoint: the hook at ``site`` sees ``x``
        (the activation it would see in a full forward) and the forward goes on from there.

        ``site`` may also be ``None`` (``x`` are the images) or ``head.hook_logits`` (then only
        that hook runs). Used to share the unpatched prefix of many patched runs;
        ``class_token_only`` and ``options`` (a ViT's ``qkv``): see
        :meth:`interp.hooked.vit.HookedViT.embed_from`.
        """
        if return_type is None:
            return_type = "logits" if self.head is not None else "embed"
        check_choice("return_type", return_type, ("embed", "logits"))
        if return_type == "logits" and self.head is None:
            raise ValueError("return_type='logits' needs a zero-shot head: use set_head(...)")
        if site == "head.hook_logits":
            if return_type != "logits":
                raise ValueError("resuming at head.hook_logits gives logits, not embeddings")
            return self.head.hook_logits(x)
        embed = self.embed_from(site, x, class_token_only=class_token_only, **options)
        return embed if return_type == "embed" else self.head(embed)

    # ----------------------------------------------------------------- sites
    def site_names(self) -> list[str]:
        """Every hook name, in the order the forward pass reaches them."""
        return list(self.hook_dict)

    def layers(self) -> list[LayerSite]:
        """Ordered sites for layerwise analyses, each with a short label."""
        raise NotImplementedError

    def site_layout(self, name: str) -> str:
        """Layout of the activation at ``name`` (one of :data:`LAYOUTS`)."""
        self.check_sites([name])
        return self.hook_dict[name].layout

    def check_sites(self, names: Iterable[str]) -> list[str]:
        """Return ``names`` as a list, or raise :class:`UnknownSiteError` listing valid names."""
        names = [names] if isinstance(names, str) else list(names)
        unknown = [n for n in names if n not in self.hook_dict]
        if unknown:
            valid = self.site_names()
            hints = []
            for name in unknown:
                close = difflib.get_close_matches(name, valid, n=3)
                if close:
                    hints.append(f"{name!r} -> did you mean {close}?")
            hint = (" (" + "; ".join(hints) + ")") if hints else ""
            raise UnknownSiteError(
                f"unknown site(s) {unknown} for {type(self).__name__}{hint}; valid sites: {valid}"
            )
        return names

    def _check_hook_names(self, hooks: Sequence[tuple[Any, Callable]] | None) -> list:
        hooks = list(hooks or [])
        self.check_sites([name for name, _ in hooks if isinstance(name, str)])
        return hooks

    # ----------------------------------------------------------------- hooks
    @contextmanager
    def hooks(
        self,
        fwd_hooks: Sequence[tuple[str | Callable[[str], bool], Callable]] | None = None,
        bwd_hooks: Sequence[tuple[str | Callable[[str], bool], Callable]] | None = None,
        reset_hooks_end: bool = True,
        clear_contexts: bool = False,
    ) -> Iterator[HookedImageTower]:
        """Temporarily add hooks (``(name or name-filter, fn(tensor, hook))`` pairs).

        Names are validated before anything is added; every hook added here is removed on
        exit, also when the body raises.
        """
        fwd = self._check_hook_names(fwd_hooks)
        bwd = self._check_hook_names(bwd_hooks)
        with super().hooks(fwd, bwd, reset_hooks_end, clear_contexts) as model:
            yield model

    def run_with_cache(
        self, *model_args: Any, names_filter: Any = None, **kwargs: Any
    ) -> tuple[Tensor, ActivationCache]:
        """Run the model and cache activations; returns ``(output, ActivationCache)``.

        ``names_filter``: ``None`` (every site), a site name, a list of names (validated), or a
        predicate on names. The cache is indexable by name (``cache["blocks.0.hook_resid_post"]``)
        and holds detached tensors with the batch dimension first.
        """
        if isinstance(names_filter, str):
            self.check_sites([names_filter])
        elif isinstance(names_filter, list | tuple):
            names_filter = self.check_sites(names_filter)
        output, cache = super().run_with_cache(*model_args, names_filter=names_filter, **kwargs)
        return output, ActivationCache(cache, self)


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for the body, then restore its previous train/eval mode.

    Every analysis runs in eval mode: an OpenCLIP tower starts in train mode, where BatchNorm
    (ResNet) would normalise with batch statistics, so an image's result would depend on its
    batch, and would update its running statistics, changing the model. The previous mode of
    every submodule is restored (also when the body raises).
    """
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training


def in_eval_mode(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator: run ``fn(model, ...)`` inside :func:`eval_mode` of its first argument."""

    @functools.wraps(fn)
    def wrapper(model: nn.Module, *args: Any, **kwargs: Any) -> Any:
        with eval_mode(model):
            return fn(model, *args, **kwargs)

    return wrapper


def layer_scale(x: Tensor, module: nn.Module) -> Tensor:
    """Apply an OpenCLIP ``LayerScale`` out of place (never ``mul_``), or any other module.

    ``x``: ``(..., D)``; LayerScale multiplies the last axis by ``gamma`` ``(D,)``.
    """
    gamma = getattr(module, "gamma", None)
    if isinstance(gamma, Tensor):
        return x * gamma
    return module(x)
