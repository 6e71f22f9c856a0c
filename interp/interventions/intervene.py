"""Batched interventions: many patched forward passes of a hooked tower in one batched forward.

An *intervention* is one patched run: a :class:`~interp.interventions.units.PatchUnit` (or several, applied
together) whose selected part of the activation is overwritten with the same part of a
*replacement* tensor for that site (clean activations from another run, zeros, a mean, a
resampled reference). This module runs many interventions at once: ``K`` copies of the input
batch are stacked along the batch axis, and one hook per involved site writes each copy's own
patch into its block of rows (one advanced-index assignment for all copies), so ``K`` patched
forwards cost one forward of ``K x B`` images. ``K`` is measured, not fixed: see
:class:`_StackSizer`; ``max_batch`` bounds the images per forward.

Less work than ``K`` full forwards, the same values to float rounding:

* *Prefix sharing*: everything before an intervention's earliest patched site is the same for
  all of them. The unpatched forward runs once per call, caching each *residual checkpoint*
  (a site through which the whole rest of the forward flows: ViT ``hook_embed`` /
  ``blocks.i.hook_resid_pre`` / ``blocks.i.hook_resid_post``, ResNet ``stem.hook_out`` /
  ``layer{s}.{j}.hook_out``, the final embedding); interventions are grouped by the last
  checkpoint at or before their first patch and resume there
  (:meth:`~interp.hooked.base.HookedImageTower.forward_from`) on ``K x B`` rows.
* *Only what the metric reads*: a ViT pooled by its class token needs only the class token
  out of its last block, so unless a unit patches inside that block, the block computes keys
  and values for every token but query, residual and MLP for token 0 alone.
* *Only the patched rows*: when every unit of a chunk replaces whole token rows at a ViT
  checkpoint, the following block's attention input projection is the unpatched one with
  those rows projected anew.

Hooks are added only through the model's ``hooks()`` context, so they are removed also when
the forward (or the metric) raises.
"""

from __future__ import annotations

import re
import time
import weakref
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn
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
    truncate: bool = True,
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
    ``(U, B, *out)``. ``max_batch`` bounds the images per forward (at most
    ``max_batch // B`` interventions share one; how many do is measured, see
    :func:`stack_size`). ``share_prefix``: run the unpatched forward up to each
    intervention's last residual checkpoint once and resume from there; ``truncate``: for a
    class-token-pooled ViT, compute only the class token in the last block when no
    intervention needs its other tokens (see :func:`needs_class_token_only`). Both change
    only float rounding. Runs without gradients, in eval mode (mode restored after).
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
    # segments: interventions that resume at the same checkpoint (None = from the images)
    # with the same truncation share forwards; a chunk never mixes segments
    segments: dict[tuple[str | None, bool], list[int]] = defaultdict(list)
    for i, group in enumerate(groups):
        earliest = min(order[u.site] for u in group)
        start = None
        for name in checkpoints:
            if order[name] <= earliest:
                start = name
        segments[(start, truncate and needs_class_token_only(model, group))].append(i)
    prefix: dict[str, Tensor] = {}
    prefix_qkv: dict[str, Tensor] = {}  # filled by _run_chunk: unpatched qkv after a checkpoint
    results: list[Tensor | None] = [None] * len(groups)
    cap = max(1, max_batch // max(batch, 1))

    with eval_mode(model), torch.no_grad(), tqdm(
        total=len(groups), desc=desc, disable=not progress, leave=False
    ) as bar:
        starts = [s for s, _ in segments if s is not None]
        if starts:
            # the unpatched prefix, once for every chunk: each checkpoint's activation
            _, cache = model.run_with_cache(inputs, names_filter=list(dict.fromkeys(starts)))
            prefix = {s: cache[s] for s in starts}
        sizer = _StackSizer(model, inputs, cap)
        # one dispatching hook per patched site for the whole call, not per chunk: a chunk
        # only puts its writers into ``active``
        active: dict[str, Callable[[Tensor, Any], Tensor]] = {}

        def dispatch(act: Tensor, hook: Any) -> Tensor | None:
            writer = active.get(hook.name)
            return None if writer is None else writer(act, hook)

        with model.hooks(fwd_hooks=[(site, dispatch) for site in shapes]):
            # the largest segment first: its first chunks measure the stacking size
            for key in sorted(segments, key=lambda k: -len(segments[k])):
                todo = segments[key]
                while todo:
                    copies = sizer.next_size(len(todo))
                    chunk, todo = todo[:copies], todo[copies:]
                    began = time.perf_counter()
                    out = _run_chunk(
                        model, inputs, prefix, prefix_qkv, key, replacements,
                        [groups[i] for i in chunk], indices, return_type, active,
                    )
                    if metric is not None:
                        values = evaluate_metric(metric, out, labels.repeat(len(chunk)))
                        out = values.view(len(chunk), batch)
                    else:
                        out = out.reshape(len(chunk), batch, *out.shape[1:])
                    sizer.record(len(chunk), time.perf_counter() - began)
                    for j, i in enumerate(chunk):
                        results[i] = out[j]
                    bar.update(len(chunk))
                sizer.segment_done()
    return torch.stack(results)  # type: ignore[arg-type]


def needs_class_token_only(model: HookedImageTower, group: Sequence[PatchUnit]) -> bool:
    """Whether ``group`` can run with the last ViT block truncated to the class token.

    True for a ViT pooled by its class token (:attr:`HookedViT.reads_class_token_only`) when
    no unit patches inside the last block other than its ``hook_resid_pre`` (full input)
    or its ``hook_resid_post`` (where only the class token row is kept).
    """
    if not isinstance(model, HookedViT) or not model.reads_class_token_only or not model.cfg.n_layers:
        return False
    last = model.cfg.n_layers - 1
    inside = f"blocks.{last}."
    allowed = (f"{inside}hook_resid_pre", f"{inside}hook_resid_post")
    return all(not u.site.startswith(inside) or u.site in allowed for u in group)


#: Measured stacking sizes: model -> {(input shape, dtype, device, threads, cap): copies}.
_STACK_SIZES: weakref.WeakKeyDictionary[nn.Module, dict[tuple, int]] = weakref.WeakKeyDictionary()


def stack_size(model: HookedImageTower, inputs: Tensor, max_copies: int) -> int | None:
    """The stacking size measured for ``model`` and inputs of this shape, if any."""
    return _STACK_SIZES.get(model, {}).get(_stack_key(inputs, max_copies))


def _stack_key(inputs: Tensor, cap: int) -> tuple:
    return (tuple(inputs.shape), inputs.dtype, str(inputs.device), torch.get_num_threads(), cap)


class _StackSizer:
    """How many patched copies to stack per forward, from timings of the first chunks.

    Per-copy cost falls with the stack size while fixed costs (Python, hooks, small GEMMs)
    dominate and rises again once activations stop fitting in cache, so the best size depends
    on the model, the batch, the machine and its threads. The first segment of a call (the
    largest) runs one chunk of each candidate size 1, 2, 4, ... up to the cap (real work,
    nothing is computed twice; it stops early once the time per copy is 15% above the best)
    and keeps the size with the lowest time per copy; the choice
    is remembered for this model and input shape, so later calls do not measure again.
    """

    def __init__(self, model: HookedImageTower, inputs: Tensor, cap: int) -> None:
        self.cap = cap
        self.key = _stack_key(inputs, cap)
        self.cache = _STACK_SIZES.setdefault(model, {})
        self.chosen: int | None = self.cache.get(self.key)
        sizes = [1 << i for i in range(cap.bit_length()) if 1 << i < cap] + [cap]
        self.trials = [] if self.chosen is not None else sizes
        self.timings: dict[int, float] = {}

    def next_size(self, remaining: int) -> int:
        """Copies for the next chunk, ``remaining`` interventions left in the segment."""
        if self.chosen is None:
            untried = [n for n in self.trials if n not in self.timings and n <= remaining]
            best = min(self.timings.values(), default=0.0)
            # past the best size, per-copy time only grows (cache): stop once it clearly does
            rising = bool(self.timings) and self.timings[max(self.timings)] > 1.15 * best
            if untried and not rising:
                return untried[0]
            self._choose()
        return self.chosen  # type: ignore[return-value]

    def record(self, copies: int, seconds: float) -> None:
        """Time of a chunk of ``copies`` (counted only while measuring)."""
        if self.chosen is None and copies in self.trials and copies not in self.timings:
            self.timings[copies] = seconds / copies

    def segment_done(self) -> None:
        """End of a segment: the measurement stops with the first one."""
        if self.chosen is None:
            self._choose()

    def _choose(self) -> None:
        """The fastest size per copy (within 5%: the larger); remembered if measured."""
        if len(self.timings) < 2:
            self.chosen = self.cap  # too few interventions to measure: stack them all
            return
        best = min(self.timings.values())
        self.chosen = max(n for n, t in self.timings.items() if t <= best * 1.05)
        self.cache[self.key] = self.chosen


def _writer(site: str, todo: Sequence[tuple[int, tuple]], src: Tensor, copies: int, batch: int,
            own: bool) -> Callable[[Tensor, Any], Tensor]:
    """The hook writing every copy's patch at one site: copy ``k`` owns rows ``k*B:(k+1)*B``.

    Units that select one index per axis (a position, a head, a whole site) are written for
    all copies at once by one advanced-index assignment; other units copy by copy. ``own``:
    the activation is the chunk's own repeated prefix, so it is written in place.
    """
    vector: dict[tuple[int, ...], list[tuple[int, tuple[int, ...]]]] = defaultdict(list)
    loop: list[tuple[int, tuple]] = []
    for k, index in todo:
        rest = index[1:]
        ints = tuple(j for j, v in enumerate(rest) if isinstance(v, int))
        if all(isinstance(v, int) or (isinstance(v, slice) and v == slice(None)) for v in rest):
            vector[ints].append((k, tuple(rest[j] for j in ints)))
        else:
            loop.append((k, index))
    plans = []
    for ints, items in vector.items():
        ks = torch.tensor([k for k, _ in items], device=src.device)
        where = [torch.tensor([v[n] for _, v in items], device=src.device) for n in range(len(ints))]
        tail: list[Any] = [slice(None)] * (src.ndim - 1)
        for axis, values in zip(ints, where, strict=True):
            tail[axis] = values
        sel = src[(slice(None), *tail)] if ints else src.unsqueeze(0)
        if ints and list(ints) == list(range(ints[0], ints[-1] + 1)):
            # adjacent index tensors keep their place in src; in the destination (separated
            # from the copy index by the batch slice) they come first
            sel = sel.movedim(1 + ints[0], 0)
        plans.append(((ks, slice(None), *tail), sel))

    def hook(act: Tensor, hook: Any) -> Tensor:
        if act.shape[0] != copies * batch:
            raise RuntimeError(
                f"site {site!r} saw batch {act.shape[0]}, expected {copies} x {batch}: the "
                "tower's forward does not carry the batch through this site; run with "
                "share_prefix=False"
            )
        # never write into a tensor the forward produced (it may be cached or reused)
        act = act if own else act.clone()
        view = act.unflatten(0, (copies, batch))
        for index, values in plans:
            index = tuple(i.to(act.device) if isinstance(i, Tensor) else i for i in index)
            view[index] = values.to(device=act.device, dtype=act.dtype)
        for k, index in loop:
            _write(view[k], index, src)
        return act

    return hook


def _run_chunk(
    model: HookedImageTower,
    inputs: Tensor,
    prefix: Mapping[str, Tensor],
    prefix_qkv: dict[str, Tensor],
    segment: tuple[str | None, bool],
    replacements: Mapping[str, Tensor],
    groups: Sequence[tuple[PatchUnit, ...]],
    indices: Mapping[PatchUnit, tuple],
    return_type: str | None,
    active: dict[str, Callable[[Tensor, Any], Tensor]],
) -> Tensor:
    """One forward of ``len(groups)`` stacked copies; copy ``k`` owns rows ``k*B:(k+1)*B``.

    ``segment``: ``(start, class_token_only)``: resume at checkpoint ``start`` from its
    unpatched activation in ``prefix`` (``None``: from the images), truncating the last ViT
    block to the class token if asked. When every unit of the chunk replaces whole token rows
    at a ViT checkpoint followed by a block, that block's attention input projection is the
    unpatched one (computed once per call, kept in ``prefix_qkv``) with only the patched
    rows projected anew.
    """
    start, class_only = segment
    copies, batch = len(groups), int(inputs.shape[0])
    last_post = f"blocks.{model.cfg.n_layers - 1}.hook_resid_post" if class_only else None
    writes: dict[str, list[tuple[int, tuple]]] = defaultdict(list)
    for k, group in enumerate(groups):
        for u in group:
            index = indices[u]
            if u.site == last_post:
                # only the class token row exists there: position 0 (or all) stays, others
                # patch a token nothing downstream reads
                if isinstance(index[1], int) and index[1] != 0:
                    continue
                index = (index[0], slice(None) if index[1] == slice(None) else 0, *index[2:])
            writes[u.site].append((k, index))
    active.clear()
    for site, todo in writes.items():
        src = replacements[site]
        if site == last_post:
            src = src[:, :1]
        active[site] = _writer(site, todo, src, copies, batch, own=site == start)
    if start is None:
        x = inputs.repeat(copies, 1, 1, 1)
    else:
        x = prefix[start]
        if start == last_post:
            x = x[:, :1]
        x = x.repeat(copies, *([1] * (x.ndim - 1)))
    kwargs: dict[str, Any] = {"class_token_only": True} if class_only else {}
    rows = _replaced_rows(model, start, groups, indices)
    if rows is not None:
        block, ks, ps = rows
        if start not in prefix_qkv:
            prefix_qkv[start] = block.qkv_of(prefix[start])
        new = replacements[start][:, ps.to(replacements[start].device)]
        new = new.to(device=x.device, dtype=x.dtype).expand(batch, -1, -1)  # (B, n, D)
        qkv = prefix_qkv[start].repeat(copies, 1, 1)
        qkv.unflatten(0, (copies, batch))[ks, :, ps] = block.qkv_of(new).transpose(0, 1)
        kwargs["qkv"] = qkv
    # the call's dispatching hooks apply the writers in ``active``
    if start is None and not kwargs:
        # the plain forward (also for towers without resumable checkpoints)
        out = model(x, return_type=return_type) if return_type else model(x)
    else:
        out = model.forward_from(start, x, return_type, **kwargs)
    active.clear()
    if out.shape[0] != copies * batch:
        raise RuntimeError(f"the patched forward returned batch {out.shape[0]}, expected {copies * batch}")
    return out


def _replaced_rows(
    model: HookedImageTower, start: str | None, groups: Sequence[tuple[PatchUnit, ...]],
    indices: Mapping[PatchUnit, tuple],
) -> tuple[nn.Module, Tensor, Tensor] | None:
    """``(next block, copies, positions)`` if every unit replaces one whole token row at the
    ViT checkpoint ``start`` and a block follows it; else ``None``."""
    if not isinstance(model, HookedViT) or start is None:
        return None
    match = re.fullmatch(r"blocks\.(\d+)\.hook_resid_(pre|post)", start)
    if match is None:
        return None
    index = int(match[1]) + (match[2] == "post")
    if index >= model.cfg.n_layers:
        return None
    ks, ps = [], []
    for k, group in enumerate(groups):
        for u in group:
            where = indices[u]
            full_row = (len(where) == 3 and isinstance(where[1], int)
                        and isinstance(where[2], slice) and where[2] == slice(None))
            if u.site != start or not full_row:
                return None
            ks.append(k)
            ps.append(where[1])
    device = model.blocks[index].attn.in_proj_weight.device
    return model.blocks[index], torch.tensor(ks, device=device), torch.tensor(ps, device=device)
