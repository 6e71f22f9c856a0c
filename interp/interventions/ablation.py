"""Ablations of a hooked tower: zero, mean over a reference set, resample from a reference set.

An ablation replaces part of the activation at some sites with a value carrying no
information about the input: the building block of circuit faithfulness checks
("mean-ablate everything outside the circuit") and of per-site importance sweeps. What is
replaced is given by :class:`~interp.interventions.units.PatchUnit` s (whole site, a position, a head, a set
of channels); with what, by the method:

* ``"zero"``: zeros;
* ``"mean"``: the mean activation over a reference set of images, per position (the mean keeps
  every non-batch axis: ``(1, *shape)``);
* ``"resample"``: each example gets the activation of one reference image drawn at random
  (seeded); within one run the same reference image serves every ablated site, so the
  replacement is a coherent other input.

Typical use (the circuits code does exactly this)::

    values = ablation_values(model, "mean", sites, reference=ref_images)
    outside = complement_units(model, kept_channels)              # all but the circuit
    logits = run_with_ablations(model, images, outside, values)   # gradients allowed
    # many ablations at once, batched, with a metric per example:
    table = ablation_sweep(model, images, labels, units, values).to_frame()

Hooks are only added through the model's ``hooks()`` context and removed on exit, also on
errors.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
from torch import Tensor

from interp.hooked.base import HookedImageTower, eval_mode
from interp.interventions.intervene import Intervention, as_units, intervene, run_interventions
from interp.interventions.units import (
    CIRCUIT_AXIS,
    PatchUnit,
    describe_units,
    n_channels,
    n_heads,
    site_label,
    site_shapes,
)
from interp.metrics import MetricFn, bootstrap_ci, evaluate_metric, metric_name
from training.util.seeding import torch_generator
from training.util.validate import check_choice

#: Ablation methods (see the module docstring).
ABLATION_METHODS: tuple[str, ...] = ("zero", "mean", "resample")


def check_method(method: str) -> str:
    """Return ``method`` or raise ``ValueError`` listing :data:`ABLATION_METHODS`."""
    check_choice("ablation method", method, ABLATION_METHODS)
    return method


def reference_activations(
    model: HookedImageTower,
    reference: Tensor,
    sites: Sequence[str],
    batch_size: int = 64,
) -> dict[str, Tensor]:
    """Full activations ``{site: (N, *shape)}`` of reference images ``(N, 3, H, W)``.

    Run without gradients in eval mode (the model's mode is restored).
    """
    if reference.ndim != 4 or reference.shape[0] == 0:
        raise ValueError(f"reference images must be (N, 3, H, W) with N >= 1, got {tuple(reference.shape)}")
    sites = model.check_sites(list(dict.fromkeys(sites)))
    chunks: dict[str, list[Tensor]] = {s: [] for s in sites}
    with eval_mode(model), torch.no_grad():
        for start in range(0, reference.shape[0], batch_size):
            _, cache = model.run_with_cache(reference[start : start + batch_size], names_filter=sites)
            for s in sites:
                chunks[s].append(cache[s].clone())
    return {s: torch.cat(chunks[s]) for s in sites}


def ablation_values(
    model: HookedImageTower,
    method: str,
    sites: Sequence[str],
    reference: Tensor | Mapping[str, Tensor] | None = None,
    *,
    batch: int | None = None,
    seed: int = 0,
    batch_size: int = 64,
) -> dict[str, Tensor]:
    """Replacement values ``{site: tensor}`` for an ablation ``method`` at ``sites``.

    ``reference``: images ``(N, 3, H, W)`` or their activations ``{site: (N, *shape)}`` (from
    :func:`reference_activations`); needed for ``"mean"`` and ``"resample"``. Returns
    ``(1, *shape)`` tensors for ``"zero"`` and ``"mean"`` (broadcast over any batch), and
    ``(batch, *shape)`` for ``"resample"``: row ``i`` is the activation of reference image
    ``r_i``, with ``r`` drawn uniformly with replacement by a generator seeded with ``seed``
    (the same ``r`` for every site).
    """
    check_method(method)
    sites = model.check_sites(list(dict.fromkeys(sites)))
    if not sites:
        raise ValueError("no sites given")
    if method == "zero":
        shapes = site_shapes(model, sites)
        param = next(model.parameters())
        return {s: torch.zeros(1, *shapes[s], device=param.device, dtype=param.dtype) for s in sites}
    if reference is None:
        raise ValueError(f"ablation method {method!r} needs reference images or activations")
    if isinstance(reference, Tensor):
        acts = reference_activations(model, reference, sites, batch_size=batch_size)
    else:
        missing = [s for s in sites if s not in reference]
        if missing:
            raise ValueError(f"reference activations lack site(s) {missing}; given {sorted(reference)}")
        acts = {s: reference[s] for s in sites}
        sizes = {s: int(a.shape[0]) for s, a in acts.items()}
        if len(set(sizes.values())) != 1 or 0 in sizes.values():
            raise ValueError(f"reference activations must share one N >= 1 rows, got {sizes}")
    if method == "mean":
        return {s: a.double().mean(dim=0, keepdim=True).to(a.dtype) for s, a in acts.items()}
    if batch is None or batch < 1:
        raise ValueError(f"resample ablation needs batch >= 1 (the ablated run's batch size), got {batch}")
    n = int(next(iter(acts.values())).shape[0])
    generator = torch_generator(int(seed))
    rows = torch.randint(0, n, (int(batch),), generator=generator)
    return {s: a[rows.to(a.device)] for s, a in acts.items()}


def complement_units(
    model: HookedImageTower,
    kept: Mapping[str, Sequence[int]],
    shapes: Mapping[str, tuple[int, ...]] | None = None,
) -> list[PatchUnit]:
    """Units covering every unit *not* in ``kept[site]`` at each site (the circuit's outside).

    ``kept``: ``{site: unit indices}``, on the same unit axis as :mod:`interp.circuits.attribution`
    (:data:`interp.interventions.units.CIRCUIT_AXIS`): heads for per-head layouts (``attn.hook_z``,
    ``attn.hook_result``, ResNet ``attnpool.hook_z``), channels otherwise (residual
    dimensions, MLP neurons, conv channels), always over all positions. A site whose units are
    all kept contributes no unit; an empty ``kept[site]`` ablates the whole site.
    """
    sites = model.check_sites(list(kept))
    shapes = site_shapes(model, sites) if shapes is None else shapes
    units = []
    for site in sites:
        layout = model.site_layout(site)
        if layout not in CIRCUIT_AXIS:
            raise ValueError(
                f"site {site!r} has layout {layout!r} without circuit units; expected one of "
                f"{list(CIRCUIT_AXIS)}"
            )
        axis = CIRCUIT_AXIS[layout]
        size = (n_heads if axis == "head" else n_channels)(layout, shapes[site])
        keep = {int(c) for c in kept[site]}
        bad = sorted(c for c in keep if not 0 <= c < size)
        if bad:
            raise IndexError(
                f"kept {axis} {bad[:5]} out of range for site {site!r}: allowed 0..{size - 1}"
            )
        rest = tuple(c for c in range(size) if c not in keep)
        if rest:
            units.append(PatchUnit(site, head=rest) if axis == "head" else PatchUnit(site, channels=rest))
    return units


@contextmanager
def ablated(
    model: HookedImageTower, units: Intervention, values: Mapping[str, Tensor]
) -> Iterator[HookedImageTower]:
    """Context in which every forward of ``model`` has ``units`` replaced by ``values``.

    ``values`` from :func:`ablation_values`. Gradients flow as usual (through the kept parts).
    """
    if not as_units(units):
        yield model
        return
    with intervene(model, values, units) as hooked:
        yield hooked


def run_with_ablations(
    model: HookedImageTower,
    images: Tensor,
    units: Intervention,
    values: Mapping[str, Tensor],
    return_type: str | None = None,
) -> Tensor:
    """One forward of ``images`` ``(B, 3, H, W)`` with ``units`` ablated; returns the output.

    Runs in the model's current mode and grad mode (so gradients can be taken).
    """
    with ablated(model, units, values) as hooked:
        return hooked(images, return_type=return_type) if return_type else hooked(images)


@dataclass
class AblationResult:
    """Per-example metrics of an ablation sweep.

    ``values``: ``(U, B)`` metric with intervention ``u`` applied; ``clean``: ``(B,)``
    unablated metric; ``interventions``: the ``U`` interventions (tuples of units);
    ``labels``: ``(B,)``; ``meta``: constant columns for tables (run, setup, ...).
    """

    values: Tensor
    clean: Tensor
    interventions: list[tuple[PatchUnit, ...]]
    labels: Tensor
    method: str
    metric: str
    site_labels: dict[str, str]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def effect(self) -> Tensor:
        """``values - clean``: the change each ablation makes, ``(U, B)``."""
        return self.values - self.clean[None]

    def to_frame(self, n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> pd.DataFrame:
        """Tidy table: per intervention, the mean ablated metric and mean effect with
        seeded bootstrap intervals (``statistic`` column: ``ablated``, ``effect``)."""
        rows = []
        clean = self.clean.cpu().numpy()
        for u, group in enumerate(self.interventions):
            ablated_values = self.values[u].cpu().numpy()
            described = describe_units(group, self.site_labels)
            for statistic, data in (("ablated", ablated_values), ("effect", ablated_values - clean)):
                est, low, high = bootstrap_ci(data, n_boot=n_boot, level=level, seed=seed)
                rows.append({**self.meta, **described, "method": self.method, "metric": self.metric,
                             "statistic": statistic, "value": est, "ci_low": low, "ci_high": high,
                             "n": len(data)})
        return pd.DataFrame(rows)


def ablation_sweep(
    model: HookedImageTower,
    images: Tensor,
    labels: Tensor,
    interventions: Sequence[Intervention],
    values: Mapping[str, Tensor],
    *,
    method: str = "custom",
    metric: str | MetricFn = "logit",
    max_batch: int = 256,
    share_prefix: bool = True,
    meta: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> AblationResult:
    """Ablate each intervention separately on ``images`` ``(B, 3, H, W)``, batched.

    ``values``: from :func:`ablation_values` (for ``"resample"``, drawn with ``batch=B``);
    ``method``: its name for the table. Returns per-example metrics ``(U, B)`` and the clean
    metric ``(B,)`` in an :class:`AblationResult`.
    """
    groups = [as_units(i) for i in interventions]
    if not groups:
        raise ValueError("no interventions given")
    with eval_mode(model), torch.no_grad():
        clean = evaluate_metric(metric, model(images), labels)
    patched = run_interventions(
        model, images, values, groups, metric=metric, labels=labels, max_batch=max_batch,
        share_prefix=share_prefix, progress=progress, desc=f"{method} ablation",
    )
    sites = {u.site for g in groups for u in g}
    return AblationResult(
        values=patched.cpu(), clean=clean.cpu(), interventions=groups,
        labels=torch.as_tensor(labels).cpu(), method=method, metric=metric_name(metric),
        site_labels={s: site_label(model, s) for s in sites}, meta=dict(meta or {}),
    )
