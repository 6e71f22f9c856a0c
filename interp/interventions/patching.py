"""Activation patching between two runs of a hooked image tower, and across domains.

Two runs see different images with the same labels: the *clean* (source) run and the
*corrupted* (target) run, e.g. a class's photos and the same class's doodles. A patch copies
part of one run's activation at one site (a :class:`~interp.interventions.units.PatchUnit`: the whole site,
a position, a head, a channel group) into the other run and measures a metric on the
zero-shot logits (:mod:`interp.metrics`). Directions:

* ``"denoising"``: the receiver is the corrupted run, the donor the clean run; a large effect
  means the patched part carries what the corrupted run lacks;
* ``"noising"``: the receiver is the clean run, the donor the corrupted run; a large effect
  means the clean run needs that part.

In both directions the normalised value is the fraction of the gap closed towards the
donor, ``(patched - receiver) / (donor - receiver)``: 0 = no change, 1 = the receiver's
metric became the donor's. Per example it can be undefined (tiny gap): the aggregate is the
ratio of mean differences with a seeded bootstrap interval (:func:`interp.metrics.bootstrap_recovery`).

Cross-domain patching (:func:`cross_domain_patching`) pairs images by class: either
``"paired"`` (image ``i`` of class ``c`` in domain A with image ``i`` of class ``c`` in domain
B, after a seeded shuffle) or ``"class_mean"`` (every image of class ``c`` in B receives the
mean activation of class ``c`` in A; the donor metric is then A's mean metric over the class).
A class mean is not an image: no patch can move the receiver to A's mean metric (the network
is not linear), so class-mean recovery is normalised by the same class-mean quantity, the
receiver's metric with the *whole* site(s) of the intervention set to the class mean
(``PatchingResult.reference``): ``(patched - receiver) / (reference - receiver)``, exactly 1
for a whole-site patch.
Note that patching a *whole* residual-stream site with a paired image reproduces the donor
exactly (recovery 1 at every layer); the informative site-level questions are the components
(attention / MLP outputs, ResNet branches), class means, and positions or heads.

All sweeps are batched by :func:`interp.interventions.intervene.run_interventions`. Results are tidy
tables (:meth:`PatchingResult.to_frame`, :meth:`PatchingResult.examples_frame`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from interp.hooked.base import HookedImageTower, eval_mode
from interp.interventions.ablation import reference_activations
from interp.interventions.intervene import Intervention, as_units, run_interventions
from interp.interventions.units import (
    PatchUnit,
    describe_units,
    site_label,
    site_shapes,
    sweep_units,
)
from interp.metrics import (
    MetricFn,
    bootstrap_ci,
    bootstrap_recovery,
    evaluate_metric,
    metric_name,
    normalized_recovery,
)
from training.util.seeding import seeded_rng
from training.util.validate import check_choice

#: Patching directions (see the module docstring).
DIRECTIONS: tuple[str, ...] = ("denoising", "noising")

#: How cross-domain patching matches donor and receiver images (see the module docstring).
PAIRINGS: tuple[str, ...] = ("paired", "class_mean")


def _check_choice(value: str, allowed: Sequence[str], what: str) -> str:
    return check_choice(what, value, allowed)


@dataclass
class PatchingResult:
    """Per-example metrics of a patching sweep.

    ``values``: ``(U, B)`` metric of the receiver run with intervention ``u`` patched in;
    ``receiver``: ``(B,)`` unpatched metric of the receiver run; ``donor``: ``(B,)`` metric of
    the donor run (``None`` if unknown); ``interventions``: ``U`` tuples of units;
    ``labels``: ``(B,)`` true classes; ``class_names``: name per label index (optional);
    ``meta``: constant columns for tables (run, setup, test_domain, seed, domains, ...);
    ``reference``: ``(U, B)`` metric of the receiver run with the whole site(s) of intervention
    ``u`` patched (class-mean pairing), the normaliser of recovery instead of ``donor`` when
    given.
    """

    values: Tensor
    receiver: Tensor
    donor: Tensor | None
    interventions: list[tuple[PatchUnit, ...]]
    labels: Tensor
    direction: str
    metric: str
    site_labels: dict[str, str]
    site_order: dict[str, int]
    site_kinds: dict[str, str] = field(default_factory=dict)
    class_names: Sequence[str] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    reference: Tensor | None = None

    @property
    def effect(self) -> Tensor:
        """``values - receiver``: the change each patch makes, ``(U, B)``."""
        return self.values - self.receiver[None]

    def _target(self) -> Tensor | None:
        """What recovery is normalised by, ``(U, B)`` or ``(B,)``: ``reference`` if given, else
        the donor run's metric."""
        return self.reference if self.reference is not None else self.donor

    def recovery(self) -> np.ndarray:
        """Per-example normalised recovery ``(U, B)`` (NaN where the gap is ~0)."""
        if self._target() is None:
            raise ValueError("recovery needs the donor run's metric; it was not given")
        return normalized_recovery(self.values, self.receiver, self._target())

    def _classes(self) -> np.ndarray:
        labels = self.labels.cpu().numpy()
        if self.class_names is None:
            return labels.astype(str)
        return np.asarray(self.class_names, dtype=object)[labels]

    def _columns(self, u: int) -> dict[str, Any]:
        group = self.interventions[u]
        return {
            **self.meta,
            **describe_units(group, self.site_labels),
            "site_order": min(self.site_order.get(x.site, -1) for x in group),
            "site_kind": "+".join(dict.fromkeys(self.site_kinds.get(x.site, "") for x in group)),
            "direction": self.direction,
            "metric": self.metric,
        }

    def to_frame(
        self,
        n_boot: int = 1000,
        level: float = 0.95,
        seed: int = 0,
        per_class: bool = False,
    ) -> pd.DataFrame:
        """Tidy summary: one row per (intervention, class subset, statistic).

        Statistics (``statistic`` column): ``patched`` (mean patched metric), ``effect``
        (mean ``patched - receiver``) and, with a donor, ``recovery`` (ratio of mean
        differences, normalised by ``reference`` when given); each with a seeded
        percentile-bootstrap interval over examples
        (``ci_low``, ``ci_high``) and ``n`` examples. ``class_name`` is ``"all"``, plus one
        block per class if ``per_class``. Also ``receiver_mean`` and ``donor_mean`` columns.
        """
        receiver = self.receiver.cpu().numpy().astype(np.float64)
        donor = None if self.donor is None else self.donor.cpu().numpy().astype(np.float64)
        target = self._target()
        target = None if target is None else target.cpu().numpy().astype(np.float64)
        classes = self._classes()
        subsets: list[tuple[str, np.ndarray]] = [("all", np.ones(len(classes), dtype=bool))]
        if per_class:
            subsets += [(str(c), classes == c) for c in dict.fromkeys(classes.tolist())]
        rows = []
        for u in range(len(self.interventions)):
            base = self._columns(u)
            patched = self.values[u].cpu().numpy().astype(np.float64)
            for name, mask in subsets:
                extra = {"class_name": name, "n": int(mask.sum()),
                         "receiver_mean": float(receiver[mask].mean()),
                         "donor_mean": float(donor[mask].mean()) if donor is not None else np.nan}
                for statistic, data in (("patched", patched), ("effect", patched - receiver)):
                    est, low, high = bootstrap_ci(data[mask], n_boot=n_boot, level=level, seed=seed)
                    rows.append({**base, **extra, "statistic": statistic, "value": est,
                                 "ci_low": low, "ci_high": high})
                if target is not None:
                    goal = target[u] if target.ndim == 2 else target
                    est, low, high = bootstrap_recovery(
                        patched[mask], receiver[mask], goal[mask], n_boot=n_boot, level=level, seed=seed
                    )
                    rows.append({**base, **extra, "statistic": "recovery", "value": est,
                                 "ci_low": low, "ci_high": high})
        return pd.DataFrame(rows)

    def examples_frame(self) -> pd.DataFrame:
        """Per-example table: one row per (intervention, example) with ``patched``,
        ``receiver``, ``donor`` and ``recovery`` (NaN where undefined) columns."""
        n_units, batch = self.values.shape
        recovery = self.recovery() if self._target() is not None else np.full((n_units, batch), np.nan)
        classes = self._classes()
        frames = []
        for u in range(n_units):
            frame = pd.DataFrame({
                "example": np.arange(batch),
                "class_name": classes,
                "label": self.labels.cpu().numpy(),
                "patched": self.values[u].cpu().numpy(),
                "receiver": self.receiver.cpu().numpy(),
                "donor": np.nan if self.donor is None else self.donor.cpu().numpy(),
                "recovery": recovery[u],
            })
            for key, value in reversed(self._columns(u).items()):
                frame.insert(0, key, value)
            frames.append(frame)
        return pd.concat(frames, ignore_index=True)


def _site_info(model: HookedImageTower, groups: Sequence[tuple[PatchUnit, ...]]) -> tuple[dict, dict]:
    sites = list(dict.fromkeys(u.site for g in groups for u in g))
    order = {name: i for i, name in enumerate(model.site_names())}
    return {s: site_label(model, s) for s in sites}, {s: order[s] for s in sites}


def site_kind(model: HookedImageTower, site: str) -> str:
    """``"layer"`` for the sites of ``model.layers()`` (the residual stream / block outputs),
    ``"component"`` for everything else (attention / MLP outputs, branches, heads)."""
    return "layer" if site in {layer.name for layer in model.layers()} else "component"


def component_sites(model: HookedImageTower) -> list[str]:
    """Per-block component outputs, in forward order: ViT ``blocks.i.hook_attn_out`` and
    ``blocks.i.hook_mlp_out``; ResNet each bottleneck's residual branch ``layer{s}.{j}.hook_conv3``
    (before the sum with the shortcut). Patching these (unlike whole residual-stream sites)
    does not trivially copy the donor's downstream computation."""
    names = model.site_names()
    if model.cfg.architecture == "vit":
        wanted = {f"blocks.{i}.hook_{c}_out" for i in range(model.cfg.n_layers) for c in ("attn", "mlp")}
    else:
        wanted = {n for n in names if n.startswith("layer") and n.endswith(".hook_conv3")}
    return [n for n in names if n in wanted]


def _metric_of(model: HookedImageTower, images: Tensor, labels: Tensor, metric: str | MetricFn,
               batch_size: int) -> Tensor:
    """Unpatched metric ``(N,)`` of ``images`` in eval mode without gradients."""
    with eval_mode(model), torch.no_grad():
        chunks = [
            evaluate_metric(metric, model(images[i : i + batch_size]), labels[i : i + batch_size])
            for i in range(0, images.shape[0], batch_size)
        ]
    return torch.cat(chunks)


def collect_site_activations(
    model: HookedImageTower, images: Tensor, sites: Sequence[str], batch_size: int = 64
) -> dict[str, Tensor]:
    """Full activations ``{site: (N, *shape)}`` of ``images`` ``(N, 3, H, W)`` (no gradients,
    eval mode, the model's mode restored)."""
    return reference_activations(model, images, sites, batch_size=batch_size)


def _resolve_interventions(
    model: HookedImageTower,
    interventions: Sequence[Intervention] | None,
    sites: Sequence[str] | None,
    granularity: str,
    n_groups: int,
) -> list[tuple[PatchUnit, ...]]:
    if interventions is None:
        if sites is None:
            sites = [layer.name for layer in model.layers()]
        interventions = sweep_units(model, sites, granularity, n_groups=n_groups)
    elif sites is not None:
        raise ValueError("give either interventions or sites (+ granularity), not both")
    groups = [as_units(i) for i in interventions]
    if not groups:
        raise ValueError("no interventions to patch")
    return groups


def patch_activations(
    model: HookedImageTower,
    receiver_images: Tensor,
    donor_acts: Mapping[str, Tensor],
    labels: Tensor,
    interventions: Sequence[Intervention],
    *,
    donor_metric: Tensor | None = None,
    metric: str | MetricFn = "logit_diff",
    direction: str = "denoising",
    class_names: Sequence[str] | None = None,
    meta: Mapping[str, Any] | None = None,
    max_batch: int = 256,
    share_prefix: bool = True,
    progress: bool = True,
    whole_site_reference: bool = False,
) -> PatchingResult:
    """Patch given donor activations into the receiver run, one intervention at a time.

    ``receiver_images``: ``(B, 3, H, W)``; ``donor_acts``: ``{site: (B, *shape)}`` (row ``i``
    goes into example ``i``; ``(1, *shape)`` broadcasts), e.g. class means; ``labels``:
    ``(B,)``; ``donor_metric``: ``(B,)`` the donor's metric per row, for recovery (optional).
    ``whole_site_reference``: also patch each intervention's whole site(s) and normalise
    recovery by that (``PatchingResult.reference``), for donor activations that are not one
    image's (class means). Returns a :class:`PatchingResult`.
    """
    _check_choice(direction, DIRECTIONS, "direction")
    groups = [as_units(i) for i in interventions]
    if not groups:
        raise ValueError("no interventions to patch")
    labels = torch.as_tensor(labels)
    batch = int(receiver_images.shape[0])
    if donor_metric is not None and tuple(donor_metric.shape) != (batch,):
        raise ValueError(f"donor_metric must be ({batch},), got {tuple(donor_metric.shape)}")
    receiver = _metric_of(model, receiver_images, labels, metric, max(batch, 1))
    values = run_interventions(
        model, receiver_images, donor_acts, groups, metric=metric, labels=labels,
        max_batch=max_batch, share_prefix=share_prefix, progress=progress, desc=direction,
    )
    reference = None
    if whole_site_reference:
        wholes = [tuple(PatchUnit(site) for site in dict.fromkeys(u.site for u in g)) for g in groups]
        distinct = list(dict.fromkeys(wholes))
        whole_values = run_interventions(
            model, receiver_images, donor_acts, distinct, metric=metric, labels=labels,
            max_batch=max_batch, share_prefix=share_prefix, progress=False,
        )
        index = {w: i for i, w in enumerate(distinct)}
        reference = whole_values[[index[w] for w in wholes]].cpu()
    site_labels, site_order = _site_info(model, groups)
    return PatchingResult(
        values=values.cpu(), receiver=receiver.cpu(),
        donor=None if donor_metric is None else donor_metric.detach().cpu(),
        interventions=groups, labels=labels.cpu(), direction=direction,
        metric=metric_name(metric), site_labels=site_labels, site_order=site_order,
        site_kinds={s: site_kind(model, s) for s in site_labels}, class_names=class_names, meta=dict(meta or {}),
        reference=reference,
    )


def activation_patching(
    model: HookedImageTower,
    clean: Tensor,
    corrupted: Tensor,
    labels: Tensor,
    interventions: Sequence[Intervention] | None = None,
    *,
    sites: Sequence[str] | None = None,
    granularity: str = "site",
    n_groups: int = 8,
    metric: str | MetricFn = "logit_diff",
    direction: str = "denoising",
    class_names: Sequence[str] | None = None,
    meta: Mapping[str, Any] | None = None,
    max_batch: int = 256,
    share_prefix: bool = True,
    progress: bool = True,
) -> PatchingResult:
    """Patch between a clean and a corrupted run of the same batch shape.

    ``clean``, ``corrupted``: ``(B, 3, H, W)`` images, row ``i`` of each paired;
    ``labels``: ``(B,)`` true classes (shared by both runs). What to patch: explicit
    ``interventions`` (units or groups of units), or ``sites`` (default ``model.layers()``)
    swept at ``granularity`` (:data:`interp.interventions.units.GRANULARITIES`; ``n_groups`` channel groups).
    ``direction``: ``"denoising"`` patches clean activations into the corrupted run,
    ``"noising"`` the reverse. Returns a :class:`PatchingResult` whose ``donor`` is the donor
    run's own metric.
    """
    _check_choice(direction, DIRECTIONS, "direction")
    for name, images in (("clean", clean), ("corrupted", corrupted)):
        if images.ndim != 4:
            raise ValueError(f"{name} images must be (B, 3, H, W), got shape {tuple(images.shape)}")
    if clean.shape != corrupted.shape:
        raise ValueError(
            f"clean and corrupted batches must have the same shape (row i of each is a pair), "
            f"got clean {tuple(clean.shape)} and corrupted {tuple(corrupted.shape)}"
        )
    labels = torch.as_tensor(labels)
    if tuple(labels.shape) != (clean.shape[0],):
        raise ValueError(f"labels must be ({clean.shape[0]},), got shape {tuple(labels.shape)}")
    groups = _resolve_interventions(model, interventions, sites, granularity, n_groups)
    receiver_images, donor_images = (corrupted, clean) if direction == "denoising" else (clean, corrupted)
    needed = list(dict.fromkeys(u.site for g in groups for u in g))
    donor_acts = collect_site_activations(model, donor_images, needed, batch_size=max(1, max_batch))
    donor_metric = _metric_of(model, donor_images, labels, metric, max(1, max_batch))
    return patch_activations(
        model, receiver_images, donor_acts, labels, groups, donor_metric=donor_metric,
        metric=metric, direction=direction, class_names=class_names, meta=meta,
        max_batch=max_batch, share_prefix=share_prefix, progress=progress,
    )


# ------------------------------------------------------------------------- cross-domain


def pair_by_class(
    labels_a: Tensor | np.ndarray, labels_b: Tensor | np.ndarray, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of rows ``(rows_a, rows_b)`` with equal labels, for classes present in both.

    Per class, both domains' rows are shuffled with a generator seeded by ``seed`` and the
    label, and paired in order; the class contributes ``min(n_a, n_b)`` pairs, so every row is
    used at most once. Pairs are ordered by class, then by shuffled order.
    """
    a = np.asarray(torch.as_tensor(labels_a).cpu())
    b = np.asarray(torch.as_tensor(labels_b).cpu())
    rows_a, rows_b = [], []
    for label in sorted(set(a.tolist()) & set(b.tolist())):
        rng = seeded_rng(int(seed), int(label))
        ia = rng.permutation(np.flatnonzero(a == label))
        ib = rng.permutation(np.flatnonzero(b == label))
        n = min(len(ia), len(ib))
        rows_a.append(ia[:n])
        rows_b.append(ib[:n])
    if not rows_a:
        raise ValueError(
            f"the two domains share no class: labels {sorted(set(a.tolist()))} vs {sorted(set(b.tolist()))}"
        )
    return np.concatenate(rows_a), np.concatenate(rows_b)


def class_means(
    acts: Mapping[str, Tensor], labels: Tensor | np.ndarray, wanted: Tensor | np.ndarray
) -> dict[str, Tensor]:
    """Per row of ``wanted`` ``(M,)``, the mean over rows of ``acts`` ``{site: (N, *shape)}``
    whose label ``(N,)`` equals it: ``{site: (M, *shape)}``. A wanted label absent from
    ``labels`` raises ``ValueError``."""
    labels_t = torch.as_tensor(labels).cpu()
    wanted_t = torch.as_tensor(wanted).cpu()
    missing = sorted(set(wanted_t.tolist()) - set(labels_t.tolist()))
    if missing:
        raise ValueError(f"no donor images of class(es) {missing} to average")
    out = {}
    for site, a in acts.items():
        means = {int(c): a[(labels_t == c).to(a.device)].double().mean(dim=0).to(a.dtype)
                 for c in wanted_t.unique().tolist()}
        out[site] = torch.stack([means[int(c)] for c in wanted_t.tolist()])
    return out


def _per_class_mean(values: Tensor, labels: Tensor, wanted: Tensor) -> Tensor:
    means = {int(c): values[labels == c].double().mean().to(values.dtype)
             for c in wanted.unique().tolist()}
    return torch.stack([means[int(c)] for c in wanted.tolist()])


def cross_domain_patching(
    model: HookedImageTower,
    source_images: Tensor,
    source_labels: Tensor,
    target_images: Tensor,
    target_labels: Tensor,
    interventions: Sequence[Intervention] | None = None,
    *,
    sites: Sequence[str] | None = None,
    granularity: str = "site",
    n_groups: int = 8,
    pairing: str = "paired",
    directions: Sequence[str] = DIRECTIONS,
    metric: str | MetricFn = "logit_diff",
    source_domain: str = "source",
    target_domain: str = "target",
    class_names: Sequence[str] | None = None,
    seed: int = 0,
    meta: Mapping[str, Any] | None = None,
    max_batch: int = 256,
    share_prefix: bool = True,
    progress: bool = True,
) -> list[PatchingResult]:
    """Patch a class's activations from domain A (source) into its images in domain B (target).

    ``source_images`` ``(N_A, 3, H, W)`` with ``source_labels`` ``(N_A,)``; ``target_images``
    ``(N_B, 3, H, W)`` with ``target_labels`` ``(N_B,)``; only classes present in both are
    used. ``pairing``: ``"paired"`` (see :func:`pair_by_class`, ``seed``) or ``"class_mean"``.
    ``directions``: ``"denoising"`` = A's activations into B's run (receiver B, donor A),
    ``"noising"`` = B's into A's run. Returns one :class:`PatchingResult` per direction, with
    ``source_domain``, ``target_domain`` and ``pairing`` in its ``meta``; recovery is the
    fraction of the receiver-donor gap closed (class means: of the gap to the whole-site
    class-mean patch, see the module docstring).
    """
    _check_choice(pairing, PAIRINGS, "pairing")
    for d in directions:
        _check_choice(d, DIRECTIONS, "direction")
    for name, images, labels in (("source", source_images, source_labels),
                                 ("target", target_images, target_labels)):
        if images.ndim != 4 or images.shape[0] == 0:
            raise ValueError(f"{name} images must be (N, 3, H, W) with N >= 1, got {tuple(images.shape)}")
        if tuple(torch.as_tensor(labels).shape) != (images.shape[0],):
            raise ValueError(f"{name} labels must be ({images.shape[0]},), got {tuple(torch.as_tensor(labels).shape)}")
    if source_images.shape[1:] != target_images.shape[1:]:
        raise ValueError(f"source images {tuple(source_images.shape[1:])} and target images "
                         f"{tuple(target_images.shape[1:])} differ in shape")
    groups = _resolve_interventions(model, interventions, sites, granularity, n_groups)
    needed = list(dict.fromkeys(u.site for g in groups for u in g))
    site_shapes(model, needed)  # validates sites early, before the long part
    labels = {"source": torch.as_tensor(source_labels).long().cpu(),
              "target": torch.as_tensor(target_labels).long().cpu()}
    images = {"source": source_images, "target": target_images}
    base = {**dict(meta or {}), "source_domain": source_domain, "target_domain": target_domain,
            "pairing": pairing}
    results = []
    if pairing == "paired":
        rows_a, rows_b = pair_by_class(labels["source"], labels["target"], seed=seed)
        rows = {"source": torch.as_tensor(rows_a), "target": torch.as_tensor(rows_b)}
        pair_labels = labels["source"][rows["source"]]
        for direction in directions:
            donor, receiver = ("source", "target") if direction == "denoising" else ("target", "source")
            donor_images = images[donor][rows[donor]]
            donor_acts = collect_site_activations(model, donor_images, needed, batch_size=max(1, max_batch))
            donor_metric = _metric_of(model, donor_images, pair_labels, metric, max(1, max_batch))
            results.append(patch_activations(
                model, images[receiver][rows[receiver]], donor_acts, pair_labels, groups,
                donor_metric=donor_metric, metric=metric, direction=direction,
                class_names=class_names, meta=base, max_batch=max_batch,
                share_prefix=share_prefix, progress=progress,
            ))
        return results
    for direction in directions:
        donor, receiver = ("source", "target") if direction == "denoising" else ("target", "source")
        shared = torch.as_tensor(sorted(set(labels["source"].tolist()) & set(labels["target"].tolist())))
        if shared.numel() == 0:
            raise ValueError("the two domains share no class")
        keep = torch.isin(labels[receiver], shared)
        receiver_labels = labels[receiver][keep]
        donor_all = collect_site_activations(model, images[donor], needed, batch_size=max(1, max_batch))
        donor_acts = class_means(donor_all, labels[donor], receiver_labels)
        donor_metric_all = _metric_of(model, images[donor], labels[donor], metric, max(1, max_batch))
        donor_metric = _per_class_mean(donor_metric_all, labels[donor], receiver_labels)
        results.append(patch_activations(
            model, images[receiver][keep.to(images[receiver].device)], donor_acts, receiver_labels,
            groups, donor_metric=donor_metric, metric=metric, direction=direction,
            class_names=class_names, meta=base, max_batch=max_batch, share_prefix=share_prefix,
            progress=progress, whole_site_reference=True,
        ))
    return results


def results_frame(results: Sequence[PatchingResult], **kwargs: Any) -> pd.DataFrame:
    """Concatenate :meth:`PatchingResult.to_frame` of several results (kwargs passed on)."""
    return pd.concat([r.to_frame(**kwargs) for r in results], ignore_index=True)


def examples_frame(results: Sequence[PatchingResult]) -> pd.DataFrame:
    """Concatenate :meth:`PatchingResult.examples_frame` of several results."""
    return pd.concat([r.examples_frame() for r in results], ignore_index=True)
