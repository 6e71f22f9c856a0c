"""Layerwise CKA across domains and across models, as tidy tables.

:func:`cross_domain_cka` is the paper's representational-similarity measure: for every site
and every pair of domains, CKA between the two domains' class-mean activation matrices, rows
aligned by class. The class list is computed for each pair (the classes both domains have,
optionally restricted to a requested subset such as the held-out classes), never carried
over from another domain as in the official code's stale-class-list bug. A per-sample mode
matches images by class instead (for each class, the same number of images from both
domains, drawn reproducibly). :func:`model_vs_model_cka` compares every pair of layers of two
checkpoints on the same images.

Linear CKA uses the feature-space form: at each site the domains' matrices are centred once
into one stack and a single symmetric product ``Z'Z`` gives every pair's cross-covariance
(:func:`interp.similarity.cka.linear_hsic_all`); ``method="reference"`` recomputes the paper's way instead (both Gram
matrices built for every pair), for benchmarks and cross-checks.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from tqdm.auto import tqdm

from interp.similarity.cka import (
    KERNELS,
    as_matrix,
    cka,
    cka_from_hsic_matrix,
    cka_ratio,
    gram,
    hsic,
    linear_cka_stats,
    linear_hsic_all,
    linear_stats,
    min_rows,
    minibatch_cka,
    stacked_centred,
)
from training.util.seeding import seeded_rng
from training.util.validate import check_choice

MODES: tuple[str, ...] = ("class_mean", "per_sample")
METHODS: tuple[str, ...] = ("fast", "reference")
META_COLUMNS: tuple[str, ...] = ("run", "setup", "test_domain", "seed", "epoch")
CROSS_DOMAIN_COLUMNS: tuple[str, ...] = (
    *META_COLUMNS, "site", "layer", "layer_index", "domain_a", "domain_b", "class_subset",
    "n_classes", "n", "mode", "kernel", "hsic", "metric", "value",
)
MODEL_PAIR_COLUMNS: tuple[str, ...] = (
    "model_a", "model_b", "site_a", "layer_a", "layer_index_a", "site_b", "layer_b",
    "layer_index_b", "class_subset", "n_classes", "n", "mode", "kernel", "hsic", "metric",
    "value",
)


def class_means(
    acts: Tensor | np.ndarray, labels: Sequence[Any], classes: Sequence[Any] | None = None
) -> tuple[Tensor, list[Any]]:
    """Mean activation per class: ``acts`` ``(N, F)``, ``labels`` ``(N,)`` -> ``(C, F)`` float64.

    ``classes``: the rows' order (default: sorted distinct labels); a class without any row
    raises ``ValueError``. Returns ``(means, classes)``.
    """
    x = as_matrix(acts, "acts")
    labels = np.asarray(labels)
    if labels.shape != (x.shape[0],):
        raise ValueError(f"{labels.shape[0] if labels.ndim else 0} labels for {x.shape[0]} rows")
    groups = pd.Series(np.arange(len(labels))).groupby(labels).indices
    classes = sorted(groups) if classes is None else list(classes)
    missing = [c for c in classes if c not in groups]
    if missing:
        raise ValueError(f"no rows of class(es) {missing}")
    index = torch.as_tensor(np.concatenate([groups[c] for c in classes]), device=x.device)
    sizes = torch.as_tensor([len(groups[c]) for c in classes], device=x.device)
    owner = torch.repeat_interleave(torch.arange(len(classes), device=x.device), sizes)
    sums = torch.zeros(len(classes), x.shape[1], dtype=x.dtype, device=x.device)
    sums.index_add_(0, owner, x[index])
    return sums / sizes[:, None].to(x.dtype), classes


def _stable_rng(seed: int, *parts: Any) -> np.random.Generator:
    return seeded_rng(int(seed), *(p if isinstance(p, int) else str(p) for p in parts))


class _Domain:
    """One domain's activations, labels and per-class row positions."""

    def __init__(self, name: str, acts: Mapping[str, Tensor], labels: Sequence[Any]) -> None:
        self.name = name
        self.acts = acts
        self.labels = np.asarray(labels)
        for site, x in acts.items():
            if x.shape[0] != len(self.labels):
                raise ValueError(
                    f"domain {name!r}: site {site!r} has {x.shape[0]} rows but there are "
                    f"{len(self.labels)} labels"
                )
        self.rows = {c: np.asarray(r) for c, r in pd.Series(np.arange(len(self.labels))).groupby(self.labels).indices.items()}

    def permuted_rows(self, cls: Any, seed: int) -> np.ndarray:
        return _stable_rng(seed, self.name, cls).permutation(self.rows[cls])


def _match(
    a: _Domain, b: _Domain, classes: Sequence[Any], max_per_class: int | None, seed: int
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    counts = [min(len(a.rows[c]), len(b.rows[c]), max_per_class or len(a.rows[c])) for c in classes]
    if not classes:
        return np.array([], dtype=int), np.array([], dtype=int), []
    rows_a = np.concatenate([a.permuted_rows(c, seed)[:m] for c, m in zip(classes, counts, strict=True)])
    rows_b = np.concatenate([b.permuted_rows(c, seed)[:m] for c, m in zip(classes, counts, strict=True)])
    return rows_a, rows_b, counts


def matched_rows(
    labels_a: Sequence[Any],
    labels_b: Sequence[Any],
    classes: Sequence[Any] | None = None,
    *,
    domains: tuple[str, str] = ("a", "b"),
    max_per_class: int | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of two domains matched by class, as per-sample cross-domain CKA pairs them.

    For each class (default: all both have, sorted), ``min(count_a, count_b, max_per_class)``
    rows of each domain, drawn by a permutation seeded by ``(seed, domain, class)``. Returns
    ``(rows_a, rows_b)``, index arrays of equal length with ``labels_a[rows_a] ==
    labels_b[rows_b]``.
    """
    a = _Domain(domains[0], {}, labels_a)
    b = _Domain(domains[1], {}, labels_b)
    shared = set(a.rows) & set(b.rows)
    classes = sorted(shared) if classes is None else [c for c in classes if c in shared]
    rows_a, rows_b, _ = _match(a, b, classes, max_per_class, seed)
    return rows_a, rows_b


def _unpack(
    activations: Mapping[str, Any], labels: Mapping[str, Sequence[Any]] | None
) -> dict[str, _Domain]:
    domains = {}
    for name, value in activations.items():
        if hasattr(value, "acts") and hasattr(value, "labels"):
            acts, lab = value.acts, value.labels
        else:
            if labels is None or name not in labels:
                raise ValueError(f"no labels for domain {name!r}")
            acts, lab = value, labels[name]
        if labels is not None and name in labels:
            lab = labels[name]
        domains[name] = _Domain(name, acts, lab)
    return domains


def _pair_classes(
    a: _Domain, b: _Domain, classes: Sequence[Any] | None, unbiased: bool, mode: str
) -> list[Any]:
    shared = set(a.rows) & set(b.rows)
    chosen = sorted(shared) if classes is None else [c for c in classes if c in shared]
    need = min_rows(unbiased)
    if mode == "class_mean" and len(chosen) < need:
        kind = "unbiased HSIC" if unbiased else "HSIC"
        raise ValueError(
            f"{kind} needs at least {need} classes, but domains {a.name!r} and {b.name!r} share "
            f"only {len(chosen)} of the requested classes ({chosen}); use more classes"
            + (" or unbiased=False (needs 2)" if unbiased else "")
        )
    return chosen


def _check_requested(domains: Mapping[str, _Domain], classes: Sequence[Any]) -> None:
    if len(set(classes)) != len(classes):
        raise ValueError(f"duplicate classes in {list(classes)}")
    for domain in domains.values():
        missing = [c for c in classes if c not in domain.rows]
        if missing:
            raise ValueError(
                f"domain {domain.name!r} has no images of requested class(es) {missing} "
                f"({len(domain.rows)} classes present); pass missing='intersect' (CLI: --missing intersect) to use, for "
                "each domain pair, the requested classes both domains have"
            )


def _site_labels(
    sites: Sequence[str], layers: Sequence[tuple[str, str]] | None
) -> dict[str, tuple[str, int]]:
    lookup = {name: label for name, label in (layers or [])}
    return {site: (lookup.get(site, site), i) for i, site in enumerate(sites)}


class _SiteMatrices:
    """One site's row-selected matrices and their prepared CKA statistics, reused by pairs."""

    def __init__(self, site: str, kernel: str, unbiased: bool, sigma: float | None) -> None:
        self.site, self.kernel, self.unbiased, self.sigma = site, kernel, unbiased, sigma
        self._matrices: dict[tuple[str, Any], Tensor] = {}
        self._stats: dict[tuple[str, Any], Any] = {}

    def matrix(self, domain: _Domain, key: Any, rows: np.ndarray | None) -> Tensor:
        """Class means (``key = ("mean", classes)``) or selected rows of the domain, float64."""
        cache_key = (domain.name, key)
        if cache_key not in self._matrices:
            raw = torch.as_tensor(domain.acts[self.site])
            if key[0] == "mean":
                x, _ = class_means(as_matrix(raw, f"{domain.name}/{self.site}"), domain.labels, list(key[1]))
            else:  # select rows first: one float64 copy of the selection only
                raw = raw[torch.as_tensor(rows, device=raw.device, dtype=torch.long)]
                x = as_matrix(raw, f"{domain.name}/{self.site}")
            self._matrices[cache_key] = x
        return self._matrices[cache_key]

    def stats(self, domain: _Domain, key: Any, rows: np.ndarray | None) -> Any:
        """``LinearStats`` (linear) or ``(gram, self_hsic)`` (RBF) of one matrix."""
        cache_key = (domain.name, key)
        if cache_key not in self._stats:
            x = self.matrix(domain, key, rows)
            if self.kernel == "linear":
                self._stats[cache_key] = linear_stats(x, self.unbiased)
            else:
                k = gram(x, "rbf", self.sigma)
                self._stats[cache_key] = (k, hsic(k, k, self.unbiased))
            del self._matrices[cache_key]
        return self._stats[cache_key]

    def cka(self, a: _Domain, key_a: Any, rows_a: Any, b: _Domain, key_b: Any, rows_b: Any) -> float:
        """CKA of two domains' matrices from their shared statistics."""
        stats_a, stats_b = self.stats(a, key_a, rows_a), self.stats(b, key_b, rows_b)
        if self.kernel == "linear":
            return linear_cka_stats(stats_a, stats_b)
        (ka, ha), (kb, hb) = stats_a, stats_b
        return cka_ratio(hsic(ka, kb, self.unbiased), ha, hb)


def _fused_linear_site(
    site: str, plan: Sequence[tuple], unbiased: bool, blas: str, workspace: dict
) -> dict:
    """Linear CKA of every planned pair at ``site``, ``{(domain_a, domain_b, key): value}``.

    Pairs are grouped by their row key (the same classes, or the same matched images, for
    both domains): the matrices of a group's domains are row-selected, converted to float64
    and centred once into one stack ``(n, D w)``, and one symmetric product gives all
    cross-covariance blocks (:func:`interp.similarity.cka.linear_hsic_all`). ``workspace``
    keeps the stack's and the product's buffers for the next site.
    """
    groups: dict[Any, dict[str, tuple[_Domain, Any]]] = {}
    for a, b, _, key_a, rows_a, _key_b, rows_b, _ in plan:  # key_b == key_a
        members = groups.setdefault(key_a, {})
        members.setdefault(a.name, (a, rows_a))
        members.setdefault(b.name, (b, rows_b))
    values = {}
    for key, members in groups.items():
        mats, names, picks = [], [], []
        for domain, rows in members.values():
            raw = torch.as_tensor(domain.acts[site])
            if key[0] == "mean":
                x, _ = class_means(as_matrix(raw, f"{domain.name}/{site}"), domain.labels, list(key[1]))
                mats.append(x)
                picks.append(None)
            else:  # rows selected while stacking: one float64 copy, straight into the stack
                mats.append(raw)
                picks.append(rows)
            names.append(f"{domain.name}/{site}")
        z, widths = stacked_centred(mats, names, workspace, rows=picks)
        del mats
        matrix = cka_from_hsic_matrix(linear_hsic_all(z, widths, unbiased, blas, workspace)).tolist()
        del z
        order = {name: i for i, name in enumerate(members)}
        for a, b, _, key_a, *_ in plan:
            if key_a == key:
                values[(a.name, b.name, key)] = matrix[order[a.name]][order[b.name]]
    return values


def cross_domain_cka(
    activations: Mapping[str, Any],
    labels: Mapping[str, Sequence[Any]] | None = None,
    *,
    sites: Sequence[str] | None = None,
    layers: Sequence[tuple[str, str]] | None = None,
    domains: Sequence[str] | None = None,
    classes: Sequence[Any] | None = None,
    class_subset: str | None = None,
    missing: Literal["error", "intersect"] = "error",
    mode: Literal["class_mean", "per_sample"] = "class_mean",
    kernel: Literal["linear", "rbf"] = "linear",
    unbiased: bool = True,
    sigma: float | None = None,
    method: Literal["fast", "reference"] = "fast",
    minibatch_size: int | None = None,
    max_per_class: int | None = None,
    seed: int = 0,
    meta: Mapping[str, Any] | None = None,
    progress: bool = True,
    blas: Literal["auto", "torch"] = "auto",
) -> pd.DataFrame:
    """CKA between every pair of domains at every site, as a tidy table.

    Args:
        activations: ``{domain: {site: (N_d, F) tensor}}`` (or ``{domain: DomainActivations}``).
        labels: ``{domain: (N_d,) class labels}`` (optional for ``DomainActivations``).
        sites: sites to compare (default: those of the first domain, in its order).
        layers: ``(site, label)`` pairs (e.g. ``model.layers()``) giving the ``layer`` column.
        domains: which domains, in which order (default: all); pairs in combination order.
        classes: restrict to these classes (e.g. the held-out ones); ``None``: all classes
            both domains of a pair have.
        class_subset: the ``class_subset`` column (default ``"all"`` or ``"custom"``).
        missing: a requested class absent from a domain raises (``"error"``) or is skipped
            for the pairs involving that domain (``"intersect"``).
        mode: ``"class_mean"`` (rows = classes) or ``"per_sample"`` (rows = images matched by
            class: ``min(count_a, count_b, max_per_class)`` images per class, seeded).
        kernel, unbiased, sigma: see :func:`interp.similarity.cka.cka` (RBF ``sigma`` per matrix by
            the median rule when ``None``).
        method: ``"fast"`` (linear: feature-space form; at each site the domains' matrices
            are centred once into one stack and one symmetric product gives every pair's
            cross-covariance; RBF: Gram matrices shared across pairs) or ``"reference"``
            (the paper's way: both Gram matrices rebuilt for every pair).
        blas: the fast linear path's product ``Z'Z``: ``"auto"`` (CPU: NumPy's symmetric
            ``syrk``, half the flops) or ``"torch"`` (``z.T @ z``); for benchmarks.
        minibatch_size: if given, minibatch CKA with this batch size (large per-sample ``n``).
        meta: constant columns (``run``, ``setup``, ``test_domain``, ``seed``, ``epoch``).

    Returns one row per (site, domain pair) with columns :data:`CROSS_DOMAIN_COLUMNS` plus any
    extra ``meta`` keys.
    """
    check_choice("mode", mode, MODES)
    check_choice("kernel", kernel, KERNELS)
    check_choice("method", method, METHODS)
    check_choice("blas", blas, ("auto", "torch"))
    check_choice("missing", missing, ("error", "intersect"))
    every = _unpack(activations, labels)
    names = list(every) if domains is None else list(domains)
    unknown = [d for d in names if d not in every]
    if unknown:
        raise ValueError(f"unknown domain(s) {unknown}; activations are given for {list(every)}")
    if len(names) < 2:
        raise ValueError(f"need at least two domains, got {names}")
    chosen = {d: every[d] for d in names}
    if sites is None:
        sites = list(chosen[names[0]].acts)
    sites = list(sites)
    for d in chosen.values():
        absent = [s for s in sites if s not in d.acts]
        if absent:
            raise ValueError(f"domain {d.name!r} has no activations for site(s) {absent}")
    if classes is not None:
        classes = list(classes)
        if not classes:
            raise ValueError("empty class subset")
        if missing == "error":
            _check_requested(chosen, classes)
    subset = class_subset or ("all" if classes is None else "custom")

    # Rows of every pair, fixed before looking at any site.
    plan = []
    for da, db in itertools.combinations(names, 2):
        a, b = chosen[da], chosen[db]
        pair_classes = _pair_classes(a, b, classes, unbiased, mode)
        if mode == "class_mean":
            key_a = key_b = ("mean", tuple(pair_classes))
            rows_a = rows_b = None
            n = len(pair_classes)
        else:
            rows_a, rows_b, counts = _match(a, b, pair_classes, max_per_class, seed)
            key_a = key_b = ("sample", tuple(zip(pair_classes, counts, strict=True)))
            n = len(rows_a)
            if n < min_rows(unbiased):
                raise ValueError(
                    f"only {n} images of domains {da!r} and {db!r} can be matched by class; "
                    f"{'unbiased ' if unbiased else ''}HSIC needs at least {min_rows(unbiased)}"
                )
        plan.append((a, b, pair_classes, key_a, rows_a, key_b, rows_b, n))

    labels_of = _site_labels(sites, layers)
    meta = dict(meta or {})
    base = {column: meta.pop(column, None) for column in META_COLUMNS}
    records = []
    fused = method == "fast" and kernel == "linear" and minibatch_size is None
    fused_values: dict[str, dict] = {}
    if fused:
        workspace: dict = {}  # buffers reused by all sites of this call, freed on return
        # Widest site first: each buffer is allocated (and page-faulted) once.
        def width(site: str) -> int:  # a malformed (not 2-D) input is reported by stacked_centred
            return sum(int(d.acts[site].shape[-1]) for d in chosen.values() if len(d.acts[site].shape) == 2)

        widest_first = sorted(sites, key=lambda s: -width(s))
        for site in tqdm(widest_first, desc="cross-domain CKA", disable=not progress):
            fused_values[site] = _fused_linear_site(site, plan, unbiased, blas, workspace)
        del workspace
    for site in tqdm(sites, desc="cross-domain CKA", disable=not progress or fused):
        cache = _SiteMatrices(site, kernel, unbiased, sigma)
        for a, b, pair_classes, key_a, rows_a, key_b, rows_b, n in plan:
            if fused:
                value = fused_values[site][(a.name, b.name, key_a)]
            elif method == "reference":
                value = cka(
                    cache.matrix(a, key_a, rows_a), cache.matrix(b, key_b, rows_b), kernel,
                    unbiased, sigma, method="gram",
                )
            elif minibatch_size is not None:
                value = minibatch_cka(
                    cache.matrix(a, key_a, rows_a), cache.matrix(b, key_b, rows_b),
                    minibatch_size, kernel, unbiased, sigma, seed,
                )
            else:
                value = cache.cka(a, key_a, rows_a, b, key_b, rows_b)
            label, index = labels_of[site]
            records.append({
                **base, "site": site, "layer": label, "layer_index": index,
                "domain_a": a.name, "domain_b": b.name, "class_subset": subset,
                "n_classes": len(pair_classes), "n": n, "mode": mode, "kernel": kernel,
                "hsic": "unbiased" if unbiased else "biased", "metric": "cka",
                "value": float(value), **meta,
            })
    return pd.DataFrame.from_records(records, columns=[*CROSS_DOMAIN_COLUMNS, *meta])


def model_vs_model_cka(
    acts_a: Mapping[str, Tensor],
    acts_b: Mapping[str, Tensor],
    *,
    sites_a: Sequence[str] | None = None,
    sites_b: Sequence[str] | None = None,
    layers_a: Sequence[tuple[str, str]] | None = None,
    layers_b: Sequence[tuple[str, str]] | None = None,
    labels: Sequence[Any] | None = None,
    classes: Sequence[Any] | None = None,
    class_subset: str | None = None,
    kernel: Literal["linear", "rbf"] = "linear",
    unbiased: bool = True,
    sigma: float | None = None,
    names: tuple[str, str] = ("a", "b"),
    meta: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """CKA between every site of model A and every site of model B on the same images.

    ``acts_a``/``acts_b``: ``{site: (N, F)}`` over the same ``N`` images in the same order
    (e.g. two checkpoints trained on different mixtures). With ``labels`` ``(N,)`` the rows
    are class means (over ``classes``, default all) instead of images. ``names`` fill the
    ``model_a``/``model_b`` columns. Returns columns :data:`MODEL_PAIR_COLUMNS` plus ``meta``.
    """
    check_choice("kernel", kernel, KERNELS)
    sites_a = list(acts_a) if sites_a is None else list(sites_a)
    sites_b = list(acts_b) if sites_b is None else list(sites_b)
    for which, acts, sites in (("A", acts_a, sites_a), ("B", acts_b, sites_b)):
        absent = [s for s in sites if s not in acts]
        if absent:
            raise ValueError(f"model {which} has no activations for site(s) {absent}")
    sizes = {acts_a[s].shape[0] for s in sites_a} | {acts_b[s].shape[0] for s in sites_b}
    if len(sizes) != 1:
        raise ValueError(f"both models must be run on the same images; row counts differ: {sorted(sizes)}")

    def prepare(acts: Mapping[str, Tensor], site: str) -> tuple[Any, int]:
        x = as_matrix(acts[site], site)
        if labels is not None:
            x, _ = class_means(x, labels, classes)
        if kernel == "linear":
            return linear_stats(x, unbiased), x.shape[0]
        k = gram(x, "rbf", sigma)
        return (k, hsic(k, k, unbiased)), x.shape[0]

    labels_a, labels_b = _site_labels(sites_a, layers_a), _site_labels(sites_b, layers_b)
    prepared_b = {s: prepare(acts_b, s) for s in sites_b}
    mode = "per_sample" if labels is None else "class_mean"
    n_classes = None if labels is None else len(classes if classes is not None else set(np.asarray(labels).tolist()))
    subset = class_subset or ("all" if classes is None else "custom")
    meta = dict(meta or {})
    records = []
    for site_a in tqdm(sites_a, desc="model-vs-model CKA", disable=not progress):
        stats_a, n = prepare(acts_a, site_a)
        for site_b in sites_b:
            stats_b, _ = prepared_b[site_b]
            if kernel == "linear":
                value = linear_cka_stats(stats_a, stats_b)
            else:
                value = cka_ratio(hsic(stats_a[0], stats_b[0], unbiased), stats_a[1], stats_b[1])
            records.append({
                "model_a": names[0], "model_b": names[1],
                "site_a": site_a, "layer_a": labels_a[site_a][0], "layer_index_a": labels_a[site_a][1],
                "site_b": site_b, "layer_b": labels_b[site_b][0], "layer_index_b": labels_b[site_b][1],
                "class_subset": subset, "n_classes": n_classes, "n": n, "mode": mode,
                "kernel": kernel, "hsic": "unbiased" if unbiased else "biased", "metric": "cka",
                "value": float(value), **meta,
            })
    return pd.DataFrame.from_records(records, columns=[*MODEL_PAIR_COLUMNS, *meta])
