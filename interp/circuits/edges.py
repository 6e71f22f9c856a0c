"""Edge weights between kept units of connected sites.

The edge set (which site feeds which) is read off the computation, not hard-coded: in an
*edge pass* every chosen site is cut, i.e. its activation is replaced by a fresh leaf tensor
of the same value, so a site's computed value depends on the leaves of exactly those sites it
reads directly, not through another chosen site. :func:`site_parents` finds them by autograd
(a structural test, once per model and site list). Consequences:

* ResNet bottleneck outputs, or ViT ``hook_resid_post`` only: each site's parent is the
  previous site (consecutive sites; never a wrap-around from the last site to the first).
* The default ViT sites (per block ``l``: heads ``attn.hook_z``, neurons ``mlp.hook_post``,
  residual ``hook_resid_post``) give the Sparse-Feature-Circuits edge set through the
  residual stream: ``resid[l-1] -> attn[l]``, ``resid[l-1] -> mlp[l]``, ``attn[l] -> mlp[l]``,
  ``resid[l-1] -> resid[l]`` (the skip connection), ``attn[l] -> resid[l]``, ``mlp[l] -> resid[l]``.
  The residual site re-cuts the stream at every block, so longer-range paths are chains of
  these edges. (Without residual sites the same rule links every head and neuron to every
  later head and neuron through the residual stream.)

Weights (``g_d`` = gradient of the metric at the downstream site, clean, total, per image;
``Delta_u = a_clean - a_base`` upstream; sums over positions, mean over images):

* ``"gxa"`` (gradient times activation): ``w(u -> d) = sum g_d * (d f_d / d a_u) Delta_u``,
  with ``f_d`` the downstream site as a function of its parents' leaves;
* ``"ig"``: the same with ``d f_d / d a_u`` averaged over ``S`` points of the path on which
  all parents of the downstream site move together from clean to baseline. Completeness per
  downstream unit: its incoming weights from all units of all parent sites sum to
  ``sum g_d (f_d(parents clean) - f_d(parents at baseline))``.

``gxa`` equals ``ig`` with one step of the left rule. For a site whose children cover every
path to the metric, the ``gxa`` weights out of a unit into all units of its children sum to
its attribution-patching node effect. Cost per image batch: one forward+backward for ``g``,
then per step one forward of the cut model plus one batched vector-Jacobian product
(``is_grads_batched``) per chunk of kept downstream units.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor
from tqdm.auto import tqdm

from interp.circuits.attribution import (
    UNIT_AXIS,
    Baseline,
    alphas,
    batches,
    check_inputs,
    check_node_sites,
    check_options,
    clean_activations,
    resolve_baseline,
    site_grads,
    to_units,
    unit_selector,
)
from interp.hooked.base import HookedImageTower, in_eval_mode
from interp.metrics import MetricFn, get_metric
from training.util.files import torch_save
from training.util.seeding import torch_generator
from training.util.validate import check_choice

EDGE_METHODS: tuple[str, ...] = ("gxa", "ig")


class _Stop(Exception):
    """Raised after the last site of an edge pass: the rest of the forward is not needed."""


def _cut_forward(
    model: HookedImageTower,
    images: Tensor,
    sites: Sequence[str],
    values: Mapping[str, Tensor] | None,
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Run the model with every site cut; returns ``(computed, leaves)``.

    ``computed[s]``: the value the model computed at ``s`` (a function of its parents'
    leaves); ``leaves[s]``: the leaf passed on (``values[s]`` if given, else a detached copy
    of the computed value). The caller must be in a grad-enabled context.
    """
    computed: dict[str, Tensor] = {}
    leaves: dict[str, Tensor] = {}
    last = sites[-1]

    def cut(x: Tensor, hook: Any) -> Tensor:
        computed[hook.name] = x
        source = x if values is None else values[hook.name]
        leaf = source.detach().to(x.dtype).requires_grad_(True)
        leaves[hook.name] = leaf
        if hook.name == last:
            raise _Stop
        return leaf

    try:
        with model.hooks(fwd_hooks=[(s, cut) for s in sites]):
            model(images)
    except _Stop:
        pass
    return computed, leaves


@in_eval_mode
def site_parents(model: HookedImageTower, sites: Sequence[str] | None = None) -> dict[str, list[str]]:
    """``{site: [parent sites]}``: the chosen sites each site reads directly (forward order).

    Found by autograd on one probe image with every site cut (see the module docstring);
    a site's parents always come before it in the forward pass.
    """
    sites = check_node_sites(model, sites)
    height, width = model.cfg.image_size
    param = next(model.parameters())
    probe = torch.randn(1, 3, height, width, generator=torch_generator(0))
    with torch.enable_grad():
        computed, leaves = _cut_forward(model, probe.to(param), sites, None)
        parents: dict[str, list[str]] = {}
        for i, site in enumerate(sites):
            value, earlier = computed[site], sites[:i]
            if not earlier or not value.requires_grad:
                parents[site] = []
                continue
            grads = torch.autograd.grad(value.sum(), [leaves[s] for s in earlier],
                                        allow_unused=True, retain_graph=True)
            parents[site] = [s for s, g in zip(earlier, grads, strict=True) if g is not None]
    return parents


@dataclass
class EdgeWeights:
    """Edge weights ``{(upstream site, downstream site): (K_down, K_up) float64}``.

    Row ``i``/column ``j`` refer to ``kept[down][i]`` / ``kept[up][j]``. ``cost`` counts passes
    (``fwd_bwd``, ``fwd``) and vector-Jacobian products (``vjp``, each batched over up to
    ``vjp_chunk`` downstream units).
    """

    weights: dict[tuple[str, str], Tensor]
    kept: dict[str, list[int]]
    parents: dict[str, list[str]]
    method: str
    steps: int
    rule: str
    n_images: int
    cost: dict[str, int] = field(default_factory=dict)

    def to_frame(self) -> pd.DataFrame:
        """Long table: up_site, up_unit, down_site, down_unit, weight."""
        rows = []
        for (up, down), w in self.weights.items():
            for i, d in enumerate(self.kept[down]):
                for j, u in enumerate(self.kept[up]):
                    rows.append({"up_site": up, "up_unit": u, "down_site": down, "down_unit": d,
                                 "weight": float(w[i, j])})
        return pd.DataFrame(rows, columns=["up_site", "up_unit", "down_site", "down_unit", "weight"])

    def to_payload(self) -> dict[str, Any]:
        """A ``torch.save``-able dict (``weights`` keyed ``"up|down"``)."""
        return {"weights": {f"{u}|{d}": w for (u, d), w in self.weights.items()},
                "kept": self.kept, "parents": self.parents, "method": self.method,
                "steps": self.steps, "rule": self.rule, "n_images": self.n_images,
                "cost": self.cost}

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> EdgeWeights:
        """Inverse of :meth:`to_payload`."""
        weights = {tuple(k.split("|")): v for k, v in payload["weights"].items()}
        return cls(**{**payload, "weights": weights})

    def save(self, path: str | Path) -> Path:
        """Write atomically (``torch.save``)."""
        return torch_save(self.to_payload(), path)

    @classmethod
    def load(cls, path: str | Path) -> EdgeWeights:
        """Read what :meth:`save` wrote."""
        return cls.from_payload(torch.load(path, map_location="cpu", weights_only=True))


def _check_kept(model: HookedImageTower, kept: Mapping[str, Sequence[int]], sites: Sequence[str],
                shapes: Mapping[str, tuple[int, ...]]) -> dict[str, list[int]]:
    out = {}
    for site, units in kept.items():
        if site not in sites:
            raise ValueError(f"kept units for site {site!r}, which is not among the sites {list(sites)}")
        n = int(shapes[site][UNIT_AXIS[model.site_layout(site)] - 1])
        units = [int(u) for u in units]
        bad = [u for u in units if not 0 <= u < n]
        if bad:
            raise ValueError(f"unit(s) {bad[:5]} out of range for site {site!r}: allowed 0..{n - 1}")
        out[site] = sorted(set(units))
    return out


@in_eval_mode
def edge_weights(
    model: HookedImageTower,
    images: Tensor,
    labels: Tensor,
    kept: Mapping[str, Sequence[int]],
    sites: Sequence[str] | None = None,
    *,
    metric: str | MetricFn = "logit",
    method: str = "gxa",
    baseline: Baseline = "zero",
    reference: Tensor | None = None,
    steps: int = 10,
    rule: str = "left",
    batch_size: int = 32,
    vjp_chunk: int = 8,
    parents: Mapping[str, Sequence[str]] | None = None,
    progress: bool = True,
) -> EdgeWeights:
    """Weights of all edges between kept units of connected sites (see the module docstring).

    ``kept``: ``{site: unit indices}`` (sites without kept units have no edges); ``sites``: the
    cut sites, default :func:`interp.circuits.attribution.default_sites` (cutting defines the edge set,
    so pass the same sites as for the nodes). ``method``: ``"gxa"`` or ``"ig"`` (``steps``,
    ``rule``); ``baseline``/``reference``: as for node effects. ``parents``: a precomputed
    :func:`site_parents`. Runs in eval mode (the model's mode is restored). Returns
    :class:`EdgeWeights` (means over images).
    """
    check_choice("edge method", method, EDGE_METHODS)
    check_options("ig", baseline, steps, rule)
    if vjp_chunk < 1:
        raise ValueError(f"vjp_chunk must be >= 1, got {vjp_chunk}")
    labels = check_inputs(model, images, labels)
    sites = check_node_sites(model, sites)
    fn = get_metric(metric)
    parents = {s: list(p) for s, p in (parents or site_parents(model, sites)).items()}
    device = next(model.parameters()).device
    n = images.shape[0]
    shapes = {s: tuple(a.shape[1:])
              for s, a in clean_activations(model, images[:1].to(device), sites).items()}
    kept = _check_kept(model, kept, sites, shapes)
    layouts = {s: model.site_layout(s) for s in sites}
    base = resolve_baseline(model, sites, baseline, reference, images.to(device), batch_size)
    path = [0.0] if method == "gxa" else alphas(steps, rule)
    pairs = [(u, d) for d in sites if kept.get(d) for u in parents.get(d, []) if kept.get(u)]
    sums = {p: torch.zeros(len(kept[p[1]]), len(kept[p[0]]), dtype=torch.float64) for p in pairs}
    downs = [d for d in sites if any(p[1] == d for p in pairs)]
    cost = {"fwd_bwd": 0, "fwd": 0, "vjp": 0, "images": 0}
    bar = tqdm(total=-(-n // batch_size) * len(path), desc=f"edges ({method})",
               disable=not progress, leave=False)
    try:
        for part in batches(n, batch_size):
            x, y = images[part].to(device), labels[part].to(device)
            clean, grads, _ = site_grads(model, x, y, sites, fn)
            cost["fwd_bwd"] += 1
            cost["images"] += x.shape[0]
            delta = {s: clean[s] - base[s] for s in sites}
            for alpha in path:
                values = {s: clean[s] - alpha * delta[s] for s in sites}
                with torch.enable_grad():
                    computed, leaves = _cut_forward(model, x, sites, values)
                    cost["fwd"] += 1
                    cost["images"] += x.shape[0]
                    for d in downs:
                        ups = [u for u in parents[d] if (u, d) in sums]
                        _accumulate(d, ups, kept, computed, leaves, grads, delta, layouts, sums,
                                    vjp_chunk, cost)
                bar.update(1)
    finally:
        bar.close()
    weights = {p: s / (n * len(path)) for p, s in sums.items()}
    return EdgeWeights(weights=weights, kept=kept, parents=parents, method=method,
                       steps=len(path), rule="left" if method == "gxa" else rule, n_images=n,
                       cost=cost)


def _accumulate(d, ups, kept, computed, leaves, grads, delta, layouts, sums, chunk, cost) -> None:
    """Add one batch and step of ``w(u -> d)`` for all kept ``d`` and all parents ``u``."""
    units = torch.tensor(kept[d])
    g = grads[d]
    n_units = g.shape[UNIT_AXIS[layouts[d]]]
    for start in range(0, len(units), chunk):
        sel = units[start:start + chunk]
        onehot = torch.zeros(len(sel), n_units, dtype=g.dtype, device=g.device)
        onehot[torch.arange(len(sel)), sel.to(g.device)] = 1
        grad_out = unit_selector(layouts[d], g.ndim, onehot) * g.unsqueeze(0)
        vjps = torch.autograd.grad(computed[d], [leaves[u] for u in ups], grad_outputs=grad_out,
                                   is_grads_batched=True, retain_graph=True, allow_unused=True)
        cost["vjp"] += 1
        for u, vjp in zip(ups, vjps, strict=True):
            if vjp is None:
                continue
            contrib = to_units(vjp * delta[u].unsqueeze(0), layouts[u]).sum(1)  # (k, U_u)
            cols = torch.tensor(kept[u], device=contrib.device)
            sums[(u, d)][start:start + len(sel)] += contrib[:, cols].double().cpu()


