"""Node effects: how much each unit of each site contributes to a metric on the zero-shot logits.

A *site* is a hook of a hooked tower (:mod:`interp.hooked.base`); its *units* are

* ViT ``tokens`` sites (``blocks.{i}.hook_resid_post``: residual dimensions,
  ``blocks.{i}.mlp.hook_post``: MLP neurons): the last axis, summed over tokens;
* ViT ``heads`` sites (``blocks.{i}.attn.hook_z``): the head axis, summed over tokens and
  ``d_head`` (``z -> result`` is linear, so a head's effect at ``hook_z`` equals its effect at
  ``hook_result``);
* ResNet ``spatial`` sites (``layer{i}.{j}.hook_out``): channels, summed over positions.

Sign convention (the usual integrated-gradients one): the *effect* of unit ``u`` of site ``s``
on one image is ``sum_positions (a_clean - a_base) * g``, with ``g`` the gradient of the metric
at ``s``, so a positive effect means the unit raises the metric relative to its baseline, and
the effects of a site sum to ``m(clean) - m(site s at baseline)``. Effects are averaged over
images. Baselines: ``"zero"`` or ``"mean"`` (per-position mean activation over reference
images, ``(per-example shape)``), or explicit tensors.

Methods (``S`` = steps, ``L`` = number of sites):

* ``"atp"`` (attribution patching): ``g`` at the clean activations; all sites from one forward
  and one backward pass. Exact for a model linear in the site.
* ``"ig"`` (per-site integrated gradients, the paper's definition): for site ``s`` alone the
  activation is moved along ``a(alpha) = a_clean + alpha (a_base - a_clean)`` with every other
  site upstream clean and everything downstream recomputed; ``g`` is averaged over ``S``
  values of ``alpha`` (left Riemann rule ``alpha_k = k/S`` as in the paper's and SFC's code,
  or midpoint ``(k + 1/2)/S``). Completeness per site: the effects of ``s`` sum to
  ``m(clean) - m(s at baseline)`` up to the Riemann error. Computed in ``S`` passes: each pass
  carries one copy of the image batch per site along the batch axis and interpolates site
  ``s`` only in copy ``s`` (``sites_per_pass`` bounds the width); a copy joins the batch at
  the last residual checkpoint before its site (:func:`spawn_points`), so it costs only the
  network from there on (the clean prefix is shared). Same values as the reference loop in
  ``S`` passes instead of ``L x S``, and fewer block evaluations. Exact per-site IG cannot
  share more: each site needs its own downstream trajectory.
* ``"ig_loop"``: the same quantity computed as the paper's code does, one site at a time
  (``L x S`` passes); the reference for tests and benchmarks.

Gradients: TransformerLens forward hooks (the tower's ``hooks()`` context, which removes every
hook on exit, also on errors) hand each site's tensor to the rest of the forward pass and keep
a reference to it; ``torch.autograd.grad`` on those tensors gives the gradients. This is the
gradient a TransformerLens backward hook or nnsight's ``.grad`` sees (tested), without touching
parameters' ``.grad``, and it allows batched vector-Jacobian products for edges.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor
from tqdm.auto import tqdm

from interp.hooked.activations import tensor_digest  # noqa: F401  (re-exported for cache keys)
from interp.hooked.base import HookedImageTower, in_eval_mode
from interp.metrics import MetricFn, get_metric, metric_name
from training.util.files import digest, torch_save
from training.util.validate import check_choice

NODE_METHODS: tuple[str, ...] = ("atp", "ig", "ig_loop")
BASELINES: tuple[str, ...] = ("zero", "mean")
RULES: tuple[str, ...] = ("left", "midpoint")

#: Unit axis (batch axis counted) of every layout that has units.
UNIT_AXIS: dict[str, int] = {
    "tokens": 2, "sequence": 2, "heads": 2, "head_result": 2, "spatial": 1, "vector": 1,
    "head_vector": 1,
}

Baseline = str | Mapping[str, Tensor]


# --------------------------------------------------------------------------- sites and units
def default_sites(model: HookedImageTower) -> list[str]:
    """The sites of the circuit analysis, in forward order.

    ViT: per block, attention heads (``attn.hook_z``), MLP neurons (``mlp.hook_post``) and
    residual dimensions (``hook_resid_post``). ResNet: every bottleneck's output channels
    (``layer{i}.{j}.hook_out``), as in the paper.
    """
    if model.cfg.architecture == "vit":
        sites = []
        for i in range(model.cfg.n_layers):
            sites += [f"blocks.{i}.attn.hook_z", f"blocks.{i}.mlp.hook_post",
                      f"blocks.{i}.hook_resid_post"]
        return sites
    return [s.name for s in model.layers() if s.name not in ("stem.hook_out", "hook_image_embed")]


def check_node_sites(model: HookedImageTower, sites: Sequence[str] | None) -> list[str]:
    """Validate ``sites`` (default :func:`default_sites`), return them in forward order."""
    sites = default_sites(model) if sites is None else list(dict.fromkeys(sites))
    if not sites:
        raise ValueError("no sites given")
    model.check_sites(sites)
    bad = [s for s in sites if model.site_layout(s) not in UNIT_AXIS]
    if bad:
        raise ValueError(
            f"site(s) {bad} have layouts {[model.site_layout(s) for s in bad]} without units; "
            f"node sites need one of the layouts {list(UNIT_AXIS)}"
        )
    order = model.site_names()
    return sorted(sites, key=order.index)


def to_units(x: Tensor, layout: str) -> Tensor:
    """Sum a batched site tensor over everything but batch and units: ``(B, ...) -> (B, U)``.

    Leading extra axes are kept: ``(K, B, ...) -> (K, B, U)`` if ``x`` has one more axis than
    the layout (the unit axis is counted from the right then).
    """
    axis = UNIT_AXIS[layout]
    nd = {"tokens": 3, "sequence": 3, "heads": 4, "head_result": 4, "spatial": 4, "vector": 2,
          "head_vector": 3}[layout]
    extra = x.ndim - nd
    if extra not in (0, 1):
        raise ValueError(f"a {layout!r} tensor must have {nd} (or {nd + 1}) axes, got {x.ndim}")
    x = x.movedim(axis + extra, 1 + extra)
    return x.reshape(*x.shape[: 2 + extra], -1).sum(-1)


def unit_selector(layout: str, ndim: int, units: Tensor) -> Tensor:
    """Reshape a ``(K, U)`` tensor to broadcast against ``(K, B, ...)`` site tensors of ``ndim``
    axes (without ``K``): the ``U`` axis lands on the layout's unit axis."""
    shape = [units.shape[0]] + [1] * ndim
    shape[1 + UNIT_AXIS[layout]] = units.shape[1]
    return units.reshape(shape)


# --------------------------------------------------------------------------- validation
def check_options(method: str, baseline: Baseline, steps: int, rule: str) -> None:
    """Raise ``ValueError`` naming a bad method, baseline, number of steps or rule."""
    check_choice("node method", method, NODE_METHODS)
    if isinstance(baseline, str):
        check_choice("baseline (or a {site: tensor} mapping)", baseline, BASELINES)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    check_choice("Riemann rule", rule, RULES)


def alphas(steps: int, rule: str) -> list[float]:
    """Interpolation points in ``[0, 1)``: ``k/S`` (left) or ``(k + 1/2)/S`` (midpoint)."""
    check_options("ig", "zero", steps, rule)
    shift = 0.0 if rule == "left" else 0.5
    return [(k + shift) / steps for k in range(steps)]


def check_inputs(model: HookedImageTower, images: Tensor, labels: Tensor) -> Tensor:
    """Check a model with a head, images ``(N, 3, H, W)`` and labels ``(N,)``; return labels."""
    if model.head is None:
        raise ValueError("node effects need class logits: attach a zero-shot head (set_head)")
    if images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(f"images must be a non-empty (N, 3, H, W) batch, got {tuple(images.shape)}")
    labels = torch.as_tensor(labels, dtype=torch.long)
    if labels.shape != (images.shape[0],):
        raise ValueError(f"labels must be ({images.shape[0]},), got {tuple(labels.shape)}")
    return labels


def batches(n: int, batch_size: int) -> Iterator[slice]:
    """Consecutive slices of ``range(n)`` of at most ``batch_size``."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for start in range(0, n, batch_size):
        yield slice(start, min(n, start + batch_size))


# --------------------------------------------------------------------------- forward helpers
def _device(model: HookedImageTower) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
@in_eval_mode
def clean_activations(model: HookedImageTower, images: Tensor, sites: Sequence[str]) -> dict[str, Tensor]:
    """Clean activations ``{site: (B, ...)}`` of one batch (one forward, no gradients)."""
    out: dict[str, Tensor] = {}

    def store(x: Tensor, hook: Any) -> None:
        out[hook.name] = x.detach().clone()

    with model.hooks(fwd_hooks=[(s, store) for s in sites]):
        model(images)
    return out


def resolve_baseline(
    model: HookedImageTower,
    sites: Sequence[str],
    baseline: Baseline,
    reference: Tensor | None,
    images: Tensor,
    batch_size: int = 64,
) -> dict[str, Tensor | float]:
    """``{site: baseline}`` with a ``(per-example shape)`` tensor or ``0.0`` (zero baseline).

    ``"mean"`` averages over ``reference`` (default: ``images``), per position, with
    :func:`interp.interventions.ablation.ablation_values` (the mean ablation of the faithfulness checks).
    """
    if isinstance(baseline, str):
        if baseline == "zero":
            return dict.fromkeys(sites, 0.0)
        from interp.interventions.ablation import ablation_values

        ref = images if reference is None else reference.to(images.device)
        return {s: v[0] for s, v in
                ablation_values(model, "mean", sites, reference=ref, batch_size=batch_size).items()}
    missing = [s for s in sites if s not in baseline]
    if missing:
        raise ValueError(f"baseline mapping lacks site(s) {missing}")
    return {s: baseline[s] for s in sites}


def _metric_values(metric: MetricFn, logits: Tensor, labels: Tensor) -> Tensor:
    values = metric(logits, labels)
    if values.shape != (logits.shape[0],):
        raise ValueError(f"the metric must return one value per image, got {tuple(values.shape)}")
    return values


# --------------------------------------------------------------------------- result
@dataclass
class NodeEffects:
    """Mean effect of every unit of every site, ``{site: (U,) float64}``, with provenance.

    ``cost``: counts of ``fwd_bwd`` passes (a forward and a backward), ``fwd`` passes (forward
    only), ``images`` (image-forwards, a compute proxy); ``metric_clean``: mean clean metric.
    """

    effects: dict[str, Tensor]
    method: str
    baseline: str
    steps: int
    rule: str
    metric: str
    n_images: int
    metric_clean: float
    cost: dict[str, int] = field(default_factory=dict)

    @property
    def sites(self) -> list[str]:
        """Sites in forward order."""
        return list(self.effects)

    def to_frame(self, labels: Mapping[str, str] | None = None) -> pd.DataFrame:
        """Long table: site, layer (label), unit, metric (``node_effect``), value."""
        rows = []
        for site, values in self.effects.items():
            label = (labels or {}).get(site, site)
            rows += [{"site": site, "layer": label, "unit": u, "metric": "node_effect",
                      "value": float(v)} for u, v in enumerate(values.tolist())]
        return pd.DataFrame(rows)

    def to_payload(self) -> dict[str, Any]:
        """A ``torch.save``-able dict (tensors and plain values)."""
        return {"effects": self.effects, "method": self.method, "baseline": self.baseline,
                "steps": self.steps, "rule": self.rule, "metric": self.metric,
                "n_images": self.n_images, "metric_clean": self.metric_clean, "cost": self.cost}

    def save(self, path: str | Path) -> Path:
        """Write atomically (temp file + rename)."""
        return torch_save(self.to_payload(), path)

    @classmethod
    def load(cls, path: str | Path) -> NodeEffects:
        """Read what :meth:`save` wrote."""
        payload = torch.load(path, map_location="cpu", weights_only=True)
        return cls(**payload)


def cache_key(**parts: Any) -> str:
    """Short hex key of JSON-serialisable parts (:func:`training.util.files.digest`)."""
    return digest(parts, length=24)


# --------------------------------------------------------------------------- methods
def _add(sums: dict[str, Tensor], site: str, value: Tensor) -> None:
    """Accumulate a ``(U,)`` float64 CPU sum."""
    value = value.detach().cpu()
    sums[site] = sums[site] + value if site in sums else value


def site_grads(
    model: HookedImageTower, images: Tensor, labels: Tensor, sites: Sequence[str], metric: MetricFn
) -> tuple[dict[str, Tensor], dict[str, Tensor], Tensor]:
    """Clean activations, total metric gradients at ``sites`` and the metric values:
    ``({s: (B, ...)}, {s: (B, ...)}, (B,))``.

    One forward and one backward; the metric is summed over the batch (rows independent)."""
    captured: dict[str, Tensor] = {}

    def capture(x: Tensor, hook: Any) -> Tensor:
        if not x.requires_grad:
            x = x.detach().requires_grad_(True)
        captured[hook.name] = x
        return x

    with torch.enable_grad(), model.hooks(fwd_hooks=[(s, capture) for s in sites]):
        values = _metric_values(metric, model(images), labels)
        grads = torch.autograd.grad(values.sum(), [captured[s] for s in sites])
    acts = {s: captured[s].detach() for s in sites}
    return acts, dict(zip(sites, grads, strict=True)), values.detach()


def _atp_batch(model, images, labels, sites, base, metric, layouts, sums, cost) -> float:
    acts, grads, values = site_grads(model, images, labels, sites, metric)
    for s in sites:
        g = grads[s]
        delta = acts[s] - base[s]
        _add(sums, s, to_units(delta * g, layouts[s]).double().sum(0))
    cost["fwd_bwd"] += 1
    cost["images"] += images.shape[0]
    return float(values.double().sum())


def spawn_points(model: HookedImageTower, sites: Sequence[str]) -> dict[str | None, list[str]]:
    """Where each site's IG copy joins the widened batch: ``{checkpoint or None: [sites]}``.

    A copy is needed only from its site on; upstream of it, it equals the clean run. It is
    spawned at the latest residual checkpoint (a site through which the whole forward flows,
    :func:`interp.interventions.intervene.residual_checkpoints`) at or before the site, as a repeat of the
    clean chunk there; ``None`` = at the input (no checkpoint before the site).
    """
    from interp.interventions.intervene import residual_checkpoints

    order = {n: i for i, n in enumerate(model.site_names())}
    checkpoints = list(residual_checkpoints(model))
    spawn: dict[str | None, list[str]] = {}
    for site in sites:
        before = [c for c in checkpoints if order[c] <= order[site]]
        spawn.setdefault(before[-1] if before else None, []).append(site)
    return spawn


def _ig_batched(model, images, labels, sites, base, metric, layouts, sums, cost, steps, rule,
                sites_per_pass, bar) -> None:
    """Per-site IG for one image batch, ``sites_per_pass`` sites per pass.

    Chunk 0 of the widened batch is the clean run; chunk ``j`` (the ``j``-th site of the
    group) is spawned at :func:`spawn_points` and carries that site's interpolation, so each
    copy only costs the part of the network from its site on.
    """
    b = images.shape[0]
    clean = clean_activations(model, images, sites)
    cost["fwd"] += 1
    cost["images"] += b
    groups = [sites[i:i + sites_per_pass] for i in range(0, len(sites), sites_per_pass)]
    grad_sums = {s: torch.zeros_like(clean[s]) for s in sites}
    for group in groups:
        k = len(group)
        spawn = spawn_points(model, group)
        slot = {s: j + 1 for j, s in enumerate(group)}
        at_input = 1 + len(spawn.get(None, []))
        wide = images.repeat(at_input, *([1] * (images.ndim - 1)))
        hook_names = [n for n in model.site_names() if n in spawn or n in slot]
        last_spawn = [n for n in hook_names if n in spawn][-1] if set(spawn) - {None} else None
        for alpha in alphas(steps, rule):
            leaves: dict[str, Tensor] = {}
            state = {"dropped": False}

            def widen_and_interpolate(x: Tensor, hook: Any, alpha: float = alpha,
                                      spawn: dict = spawn, slot: dict[str, int] = slot,
                                      leaves: dict[str, Tensor] = leaves, state: dict = state,
                                      last_spawn: str | None = last_spawn) -> Tensor:
                name = hook.name
                if name in spawn:
                    x = torch.cat([x] + [x[:b]] * len(spawn[name]))
                    if name == last_spawn:
                        x = x[b:]  # the clean chunk has spawned every copy: drop it
                        state["dropped"] = True
                if name in slot:
                    # chunk of this site: ``slot`` counts the clean chunk, gone after the last spawn
                    j = slot[name] - int(state["dropped"])
                    leaf = (clean[name] + alpha * (base[name] - clean[name])).detach()
                    leaves[name] = leaf.requires_grad_(True)
                    x = torch.cat([x[: j * b], leaves[name].to(x.dtype), x[(j + 1) * b:]])
                return x

            with torch.enable_grad(), model.hooks(
                fwd_hooks=[(n, widen_and_interpolate) for n in hook_names]
            ):
                logits = model(wide)
                if not state["dropped"]:  # every copy was spawned at the input
                    logits = logits[b:]
                if logits.shape[0] != k * b:
                    raise RuntimeError(f"widened batch has {logits.shape[0]} rows, expected {k * b}")
                values = _metric_values(metric, logits, labels.repeat(k))
                grads = torch.autograd.grad(values.sum(), [leaves[s] for s in group])
            for s, g in zip(group, grads, strict=True):
                grad_sums[s] += g
            cost["fwd_bwd"] += 1
            cost["images"] += k * b
            bar.update(1)
    for s in sites:
        delta = clean[s] - base[s]
        _add(sums, s, to_units(delta * grad_sums[s] / steps, layouts[s]).double().sum(0))


def _ig_loop(model, images, labels, sites, base, metric, layouts, sums, cost, steps, rule, bar) -> None:
    """The reference: one site at a time, one pass per (site, step), as the paper's code."""
    for site in sites:
        clean = clean_activations(model, images, [site])[site]
        cost["fwd"] += 1
        cost["images"] += images.shape[0]
        grad_sum = torch.zeros_like(clean)
        for alpha in alphas(steps, rule):
            leaf = (clean + alpha * (base[site] - clean)).detach().requires_grad_(True)

            def replace(x: Tensor, hook: Any, leaf: Tensor = leaf) -> Tensor:
                return leaf.to(x.dtype)

            with torch.enable_grad(), model.hooks(fwd_hooks=[(site, replace)]):
                values = _metric_values(metric, model(images), labels)
                (grad,) = torch.autograd.grad(values.sum(), [leaf])
            grad_sum += grad
            cost["fwd_bwd"] += 1
            cost["images"] += images.shape[0]
            bar.update(1)
        _add(sums, site, to_units((clean - base[site]) * grad_sum / steps, layouts[site]).double().sum(0))


@torch.no_grad()
@in_eval_mode
def clean_metric(
    model: HookedImageTower, images: Tensor, labels: Tensor, metric: str | MetricFn = "logit",
    batch_size: int = 64,
) -> Tensor:
    """Per-image clean metric ``(N,)`` float64."""
    fn = get_metric(metric)
    labels = check_inputs(model, images, labels)
    device = _device(model)
    out = [_metric_values(fn, model(images[p].to(device)), labels[p].to(device)).double().cpu()
           for p in batches(images.shape[0], batch_size)]
    return torch.cat(out)


@in_eval_mode
def node_effects(
    model: HookedImageTower,
    images: Tensor,
    labels: Tensor,
    sites: Sequence[str] | None = None,
    *,
    metric: str | MetricFn = "logit",
    method: str = "atp",
    baseline: Baseline = "zero",
    reference: Tensor | None = None,
    steps: int = 10,
    rule: str = "left",
    batch_size: int = 32,
    sites_per_pass: int | None = None,
    progress: bool = True,
) -> NodeEffects:
    """Mean effect of every unit of every site on ``metric`` (see the module docstring).

    ``images``: ``(N, 3, H, W)`` model inputs; ``labels``: ``(N,)`` true class indices of the
    head; ``sites``: default :func:`default_sites`. ``method``: ``"atp"``, ``"ig"`` or
    ``"ig_loop"``; ``steps``/``rule``: IG's Riemann sum (ignored by ``"atp"``). ``baseline``:
    ``"zero"``, ``"mean"`` (over ``reference``, default the images) or ``{site: tensor}``.
    ``batch_size``: images per pass; ``sites_per_pass`` (``"ig"`` only): sites stacked in one
    pass (default: all). Runs in eval mode (:func:`interp.hooked.base.eval_mode`; the model's
    mode is restored). Returns :class:`NodeEffects` with ``(U,)`` effects per site.
    """
    check_options(method, baseline, steps, rule)
    labels = check_inputs(model, images, labels)
    sites = check_node_sites(model, sites)
    fn = get_metric(metric)
    layouts = {s: model.site_layout(s) for s in sites}
    device = _device(model)
    base = resolve_baseline(model, sites, baseline, reference, images.to(device), batch_size)
    base = {s: (v.to(device) if isinstance(v, Tensor) else v) for s, v in base.items()}
    n = images.shape[0]
    sums: dict[str, Tensor] = {}
    cost = {"fwd_bwd": 0, "fwd": 0, "images": 0}
    per_pass = len(sites) if sites_per_pass is None else int(sites_per_pass)
    if per_pass < 1:
        raise ValueError(f"sites_per_pass must be >= 1, got {sites_per_pass}")
    n_batches = -(-n // batch_size)
    total = {"atp": 1, "ig": steps * -(-len(sites) // per_pass), "ig_loop": steps * len(sites)}
    bar = tqdm(total=total[method] * n_batches, desc=f"nodes ({method})", disable=not progress,
               leave=False)
    metric_sum = 0.0
    try:
        for part in batches(n, batch_size):
            x, y = images[part].to(device), labels[part].to(device)
            if method == "atp":
                metric_sum += _atp_batch(model, x, y, sites, base, fn, layouts,
                                         sums, cost)
                bar.update(1)
            elif method == "ig":
                _ig_batched(model, x, y, sites, base, fn, layouts, sums, cost, steps,
                            rule, per_pass, bar)
            else:
                _ig_loop(model, x, y, sites, base, fn, layouts, sums, cost, steps, rule, bar)
    finally:
        bar.close()
    if method != "atp":
        metric_sum = float(clean_metric(model, images, labels, fn, batch_size).sum())
        cost["fwd"] += n_batches
        cost["images"] += n
    effects = {s: sums[s] / n for s in sites}
    return NodeEffects(
        effects=effects, method=method,
        baseline=baseline if isinstance(baseline, str) else "custom",
        steps=1 if method == "atp" else steps, rule=rule if method != "atp" else "-",
        metric=metric_name(metric), n_images=n, metric_clean=metric_sum / n, cost=cost,
    )


# --------------------------------------------------------------------------- completeness check
@torch.no_grad()
@in_eval_mode
def site_baseline_effects(
    model: HookedImageTower,
    images: Tensor,
    labels: Tensor,
    sites: Sequence[str] | None = None,
    *,
    metric: str | MetricFn = "logit",
    baseline: Baseline = "zero",
    reference: Tensor | None = None,
    batch_size: int = 32,
) -> dict[str, float]:
    """``{site: mean(m(clean) - m(site at baseline))}``: what a site's effects sum to under
    per-site IG (completeness). One forward per site and batch, plus the clean one."""
    labels = check_inputs(model, images, labels)
    sites = check_node_sites(model, sites)
    fn = get_metric(metric)
    device = _device(model)
    base = resolve_baseline(model, sites, baseline, reference, images.to(device), batch_size)
    clean = clean_metric(model, images, labels, fn, batch_size)
    out = {}
    for site in sites:
        vals = []
        for part in batches(images.shape[0], batch_size):
            b = base[site]

            def replace(x: Tensor, hook: Any, b: Tensor | float = b) -> Tensor:
                return torch.zeros_like(x) + (b.to(x) if isinstance(b, Tensor) else b)

            with model.hooks(fwd_hooks=[(site, replace)]):
                logits = model(images[part].to(device))
            vals.append(_metric_values(fn, logits, labels[part].to(device)).double().cpu())
        out[site] = float((clean - torch.cat(vals)).mean())
    return out


def effect_sums(effects: NodeEffects) -> dict[str, float]:
    """``{site: sum of its units' effects}``."""
    return {s: float(v.sum()) for s, v in effects.effects.items()}

