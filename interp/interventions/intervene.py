"""Batched interventions: many patched forward passes of a hooked tower in one batched forward.

An *intervention* is one patched run: a :class:`~interp.interventions.units.PatchUnit` (or several, applied
together) whose selected part of the activation is overwritten with the same part of a
*replacement* tensor for that site (clean activations from another run, zeros, a mean, a
resampled reference). This module runs many interventions at once: ``K`` copies of the input
batch are stacked along the batch axis, and one hook per involved site writes each copy's own
patch into its block of rows, so ``K`` patched forwards cost one forward of ``K x B`` images.
Interventions are sorted by where they first patch, and chunked so that no forward exceeds
``max_batch`` images.

Prefix sharing: everything before the earliest patched site is the same for all copies. When
a chunk's earliest patch comes at or after a *residual checkpoint* (a site through which the
whole rest of the forward flows: ViT ``hook_embed`` / ``blocks.i.hook_resid_pre`` /
``blocks.i.hook_resid_post``, ResNet ``stem.hook_out`` / ``layer{s}.{j}.hook_out``, the final
embedding), the forward runs on the ``B`` original images and the hook at that checkpoint
repeats the activation ``K`` times; only the rest of the network runs on ``K x B`` rows.

Hooks are added only through the model's ``hooks()`` context, so they are removed also when
the forward (or the metric) raises.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from interp.hooked.base import HookedImageTower, eval_mode
from interp.hooked.resnet import HookedResNet
from interp.hooked.vit import HookedViT
from interp.interventions.units import PatchUnit, site_shapes, unit_index
from interp.metrics import MetricFn, evaluate_metric

#: One patched run: a unit, or several units patched together.
Intervention = PatchUnit | Sequence[PatchUnit]


def as_units(intervention: Intervention) -> tuple[PatchUnit, ...]:
    """The units of one intervention as a tuple (a single unit becomes a 1-tuple)."""
    if isinstance(intervention, PatchUnit):
        return (intervention,)
    units = tuple(intervention)
    bad = [u for u in units if not isinstance(u, PatchUnit)]
    if bad:
        raise TypeError(f"an intervention must be PatchUnits, got {bad[:3]}")
    return units


def residual_checkpoints(model: HookedImageTower) -> tuple[str, ...]:
    """Sites through which the whole rest of the forward pass flows, in forward order.

    Repeating the activation at such a site is the same as repeating the input images.
    Empty for tower types this module does not know (then inputs are repeated).
    """
    names = model.site_names()
    if isinstance(model, HookedViT):
        keep = {"hook_embed", "hook_pooled", "hook_image_embed"}
        for i in range(model.cfg.n_layers):
            keep |= {f"blocks.{i}.hook_resid_pre", f"blocks.{i}.hook_resid_post"}
    elif isinstance(model, HookedResNet):
        keep = {"stem.hook_out", "attnpool.hook_out", "hook_image_embed"}
        keep |= {n for n in names if n.startswith("layer") and n.endswith(".hook_out")}
    else:
        return ()
    keep.add("head.hook_logits")
    return tuple(n for n in names if n in keep)


def check_replacements(
    replacements: Mapping[str, Tensor],
    shapes: Mapping[str, tuple[int, ...]],
    batch: int,
) -> None:
    """Each replacement must be ``(batch, *shape)`` or ``(1, *shape)`` (broadcast to the batch).

    ``shapes``: per-example shapes of the sites being patched. Raises ``ValueError`` naming
    the site, the given shape and the expected one.
    """
    for site, shape in shapes.items():
        if site not in replacements:
            raise ValueError(
                f"no replacement activations for site {site!r}; given for {sorted(replacements)}"
            )
        got = tuple(replacements[site].shape)
        if got[1:] != tuple(shape) or got[:1] not in ((batch,), (1,)):
            raise ValueError(
                f"replacement for site {site!r} has shape {got}, expected ({batch}, "
                f"{', '.join(map(str, shape))}) to match the patched run's batch of {batch} "
                "(or a leading 1 to broadcast)"
            )


def _resolve(
    model: HookedImageTower, interventions: Sequence[Intervention],
    shapes: Mapping[str, tuple[int, ...]] | None,
) -> tuple[list[tuple[PatchUnit, ...]], dict[str, tuple[int, ...]], dict[PatchUnit, tuple]]:
    groups = [as_units(i) for i in interventions]
    if any(not g for g in groups):
        raise ValueError("an intervention with no units")
    sites = list(dict.fromkeys(u.site for g in groups for u in g))
    model.check_sites(sites)
    if shapes is None or any(s not in shapes for s in sites):
        shapes = site_shapes(model, sites)
    indices = {
        u: unit_index(u, model.site_layout(u.site), shapes[u.site]) for g in groups for u in g
    }
    return groups, {s: tuple(shapes[s]) for s in sites}, indices


def _write(act: Tensor, index: tuple, src: Tensor) -> None:
    """``act[index] = src[index]`` for one copy's rows; ``src`` may have batch 1."""
    act[index] = src[index].to(act.dtype)


def intervention_hooks(
    model: HookedImageTower,
    replacements: Mapping[str, Tensor],
    units: Intervention,
    shapes: Mapping[str, tuple[int, ...]] | None = None,
) -> list[tuple[str, Callable[[Tensor, Any], Tensor]]]:
    """Forward hooks that apply one intervention to every example of a run.

    ``replacements``: ``{site: (B, *shape) or (1, *shape)}``. Use the hooks with
    ``model.hooks(fwd_hooks=...)`` or ``model.run_with_hooks``; see :func:`intervene`.
    The patched activation is a new tensor (the original one is never written).
    """
    (group,), shapes, indices = _resolve(model, [units], shapes)
    check_replacements(replacements, shapes, batch=_batch_of(replacements, shapes))
    by_site: dict[str, list[tuple]] = defaultdict(list)
    for u in group:
        by_site[u.site].append(indices[u])

    def make(site: str) -> Callable[[Tensor, Any], Tensor]:
        src, writes = replacements[site], by_site[site]

        def hook(act: Tensor, hook: Any) -> Tensor:
            if src.shape[0] not in (1, act.shape[0]):
                raise ValueError(
                    f"replacement for site {site!r} has batch {src.shape[0]} but the run has "
                    f"batch {act.shape[0]}"
                )
            act = act.clone()
            for index in writes:
                _write(act, index, src)
            return act

        return hook

    return [(site, make(site)) for site in by_site]


def _batch_of(replacements: Mapping[str, Tensor], shapes: Mapping[str, tuple[int, ...]]) -> int:
    batches = {int(replacements[s].shape[0]) for s in shapes if s in replacements}
    batches.discard(1)
    if len(batches) > 1:
        raise ValueError(
            "replacement activations have different batch sizes "
            f"{ {s: tuple(replacements[s].shape) for s in shapes if s in replacements} }"
        )
    return batches.pop() if batches else 1


@contextmanager
def intervene(
    model: HookedImageTower, replacements: Mapping[str, Tensor], units: Intervention
) -> Iterator[HookedImageTower]:
    """Context in which every forward of ``model`` applies one intervention.

    >>> with intervene(model, {"blocks.1.hook_resid_post": clean}, PatchUnit("blocks.1.hook_resid_post", position=0)):
    ...     logits = model(corrupted_images)

    The hooks are removed on exit, also when the body raises.
    """
    with model.hooks(fwd_hooks=intervention_hooks(model, replacements, units)) as hooked:
        yield hooked


def run_interventions(
    model: HookedImageTower,
    inputs: Tensor,
    replacements: Mapping[str, Tensor],
    interventions: Sequence[Intervention],
    *,
    metric: str | MetricFn | None = None,
    labels: Tensor | None = None,
    return_type: str | None = None,
    max_batch: int = 256,
    share_prefix: bool = True,
    shapes: Mapping[str, tuple[int, ...]] | None = None,
    progress: bool = True,
    desc: str = "patched forwards",
) -> Tensor:
    """Run each intervention on ``inputs``, batching many of them per forward.

    ``inputs``: ``(B, 3, H, W)`` images of the run being patched. ``replacements``:
    ``{site: (B, *shape) or (1, *shape)}`` values written into the patched units.
    ``interventions``: ``U`` units or groups of units. With ``metric`` (a name from
    :data:`interp.metrics.METRIC_NAMES` or a callable) and ``labels`` ``(B,)`` the result is
    the metric per intervention and example, ``(U, B)``; without, the raw outputs
    ``(U, B, *out)``. ``max_batch`` bounds the images per forward (``K = max_batch // B``
    interventions share one). Runs without gradients, in eval mode (mode restored after).
    """
    if inputs.ndim != 4:
        raise ValueError(f"inputs must be images (B, 3, H, W), got shape {tuple(inputs.shape)}")
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    batch = int(inputs.shape[0])
    if metric is not None:
        if labels is None:
            raise ValueError("a metric needs labels (B,) of the patched run's images")
        labels = torch.as_tensor(labels, device=inputs.device)
        if tuple(labels.shape) != (batch,):
            raise ValueError(f"labels must be ({batch},) to match the inputs, got {tuple(labels.shape)}")
    groups, shapes, indices = _resolve(model, interventions, shapes)
    check_replacements(replacements, shapes, batch)
    order = {name: i for i, name in enumerate(model.site_names())}
    checkpoints = residual_checkpoints(model) if share_prefix else ()
    first = [min(order[u.site] for u in g) for g in groups]
    ranked = sorted(range(len(groups)), key=lambda i: first[i])
    per_chunk = max(1, max_batch // max(batch, 1))
    results: list[Tensor | None] = [None] * len(groups)

    with eval_mode(model), torch.no_grad(), tqdm(
        total=len(groups), desc=desc, disable=not progress, leave=False
    ) as bar:
        for start in range(0, len(ranked), per_chunk):
            chunk = ranked[start : start + per_chunk]
            expand = None
            earliest = first[chunk[0]]
            for name in checkpoints:
                if order[name] <= earliest:
                    expand = name
            out = _run_chunk(
                model, inputs, replacements, [groups[i] for i in chunk], indices, expand,
                return_type,
            )
            if metric is not None:
                values = evaluate_metric(metric, out, labels.repeat(len(chunk)))
                out = values.view(len(chunk), batch)
            else:
                out = out.reshape(len(chunk), batch, *out.shape[1:])
            for j, i in enumerate(chunk):
                results[i] = out[j]
            bar.update(len(chunk))
    return torch.stack(results)  # type: ignore[arg-type]


def _run_chunk(
    model: HookedImageTower,
    inputs: Tensor,
    replacements: Mapping[str, Tensor],
    groups: Sequence[tuple[PatchUnit, ...]],
    indices: Mapping[PatchUnit, tuple],
    expand: str | None,
    return_type: str | None,
) -> Tensor:
    """One forward of ``len(groups)`` stacked copies; copy ``k`` owns rows ``k*B:(k+1)*B``."""
    copies, batch = len(groups), int(inputs.shape[0])
    writes: dict[str, list[tuple[int, tuple]]] = defaultdict(list)
    for k, group in enumerate(groups):
        for u in group:
            writes[u.site].append((k, indices[u]))
    if expand is not None:
        writes.setdefault(expand, [])

    def make(site: str) -> Callable[[Tensor, Any], Tensor]:
        src, todo = replacements.get(site), writes[site]

        def hook(act: Tensor, hook: Any) -> Tensor:
            # repeating at the expand site = repeating the input; elsewhere copy, never write
            # into the tensor the forward produced
            act = act.repeat(copies, *([1] * (act.ndim - 1))) if site == expand else act.clone()
            if act.shape[0] != copies * batch:
                raise RuntimeError(
                    f"site {site!r} saw batch {act.shape[0]}, expected {copies} x {batch}: the "
                    "tower's forward does not carry the batch through this site; run with "
                    "share_prefix=False"
                )
            for k, index in todo:
                _write(act[k * batch : (k + 1) * batch], index, src)
            return act

        return hook

    stacked = inputs if expand is not None else inputs.repeat(copies, 1, 1, 1)
    with model.hooks(fwd_hooks=[(site, make(site)) for site in writes]):
        out = model(stacked, return_type=return_type) if return_type else model(stacked)
    if out.shape[0] != copies * batch:
        raise RuntimeError(f"the patched forward returned batch {out.shape[0]}, expected {copies * batch}")
    return out
