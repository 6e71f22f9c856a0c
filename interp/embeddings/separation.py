"""How far apart the domains' embeddings are: tidy tables from ``(N, E)`` embeddings.

Inputs everywhere: ``x`` ``(N, E)`` embeddings (L2-normalised by :func:`l2_normalise`
first; the measures do not renormalise), ``domains`` ``(N,)`` and ``classes`` ``(N,)`` labels.

* :func:`domain_mean_distances`: Euclidean distance between the domains' mean embeddings,
  every ordered pair (a ``D x D`` tidy table, zeros on the diagonal).
* :func:`class_mean_distances`: for each pair of domains, the mean over the classes both
  have of the distance between the two domains' class means.
* :func:`dimension_differences`: per embedding dimension, ``|mean(domain) - mean(rest)|``.
* :func:`domain_probe`: one-vs-rest linear probes (logistic regression, class-weight
  balanced), stratified k-fold; each domain's number is the cross-validated *balanced*
  accuracy of telling its images from all the others (chance 0.5, 1.0 = linearly separable).
  One-vs-rest rather than per-domain recall of a multinomial probe so that each domain's
  number depends on its own separability, not on which other domain absorbs its errors.

References (``reference`` column), the controls of the other similarity measures where they
mean something: ``domain-shuffle`` recomputes a measure with the domain labels permuted
(seeded; the finite-sample floor of a distance, the probe's chance level);
``class-shuffle`` permutes class labels within each domain, which only changes the
class-conditional distance (the other measures ignore classes, so it is not computed for
them). The ``init`` reference (epoch-0 checkpoint) is the experiment's job
(:mod:`domainlens.experiments.embeddings`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from training.util.seeding import derived_seed, seeded_rng

REFERENCES: tuple[str, ...] = ("domain-shuffle", "class-shuffle")


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` ``(N, E)`` scaled to unit L2 norm (zero rows stay zero), float64."""
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def check_embeddings(
    x: np.ndarray, domains: Sequence[str], classes: Sequence[str] | None = None,
    *, order: Sequence[str] | None = None, min_per_domain: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, list[str]]:
    """Validate and convert inputs; return ``(x, domains, classes, order)``.

    ``order``: the domains to report, in this order (default: order of first appearance);
    a domain of ``order`` without rows, or one with fewer than ``min_per_domain`` rows, is
    refused with a ``ValueError`` naming it.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"embeddings must be a non-empty (N, E) array, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("embeddings contain NaN or infinite values")
    domains = np.asarray(domains, dtype=object)
    if domains.shape != (x.shape[0],):
        raise ValueError(f"domains must have one label per row ({x.shape[0]}), got {domains.shape}")
    if classes is not None:
        classes = np.asarray(classes, dtype=object)
        if classes.shape != (x.shape[0],):
            raise ValueError(f"classes must have one label per row ({x.shape[0]}), "
                             f"got {classes.shape}")
    present = list(dict.fromkeys(domains.tolist()))
    order = present if order is None else list(order)
    unknown = [d for d in order if d not in present]
    if unknown:
        raise ValueError(f"domain(s) {unknown} have no embeddings; the table has {present}")
    if len(order) < 2:
        raise ValueError(f"need at least two domains, got {order}")
    counts = {d: int((domains == d).sum()) for d in order}
    few = {d: n for d, n in counts.items() if n < min_per_domain}
    if few:
        raise ValueError(f"too few images: {few}; need at least {min_per_domain} per domain")
    return x, domains, classes, order


def _pairs(order: Sequence[str], value) -> pd.DataFrame:
    return pd.DataFrame([{"domain_a": a, "domain_b": b, "value": float(value(a, b))}
                         for a in order for b in order])


def domain_mean_distances(
    x: np.ndarray, domains: Sequence[str], order: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Euclidean distance between domain-mean embeddings: columns domain_a, domain_b, value
    (``len(order)**2`` rows, symmetric, 0 on the diagonal)."""
    x, domains, _, order = check_embeddings(x, domains, order=order)
    means = {d: x[domains == d].mean(axis=0) for d in order}
    return _pairs(order, lambda a, b: np.linalg.norm(means[a] - means[b]))


def class_mean_distances(
    x: np.ndarray, domains: Sequence[str], classes: Sequence[str],
    order: Sequence[str] | None = None, subset: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Class-conditional distance: for each domain pair, the mean over the classes both
    domains have (within ``subset`` if given) of ``||mean_a(c) - mean_b(c)||``.

    Columns domain_a, domain_b, value, n_classes (value NaN when no class is shared).
    """
    x, domains, classes, order = check_embeddings(x, domains, classes, order=order)
    keep = np.ones(len(x), bool) if subset is None else np.isin(classes, list(subset))
    means: dict[str, dict[str, np.ndarray]] = {}
    for d in order:
        rows = keep & (domains == d)
        means[d] = {c: x[rows & (classes == c)].mean(axis=0)
                    for c in dict.fromkeys(classes[rows].tolist())}
    rows = []
    for a in order:
        for b in order:
            shared = [c for c in means[a] if c in means[b]]
            dist = [np.linalg.norm(means[a][c] - means[b][c]) for c in shared]
            rows.append({"domain_a": a, "domain_b": b,
                         "value": float(np.mean(dist)) if dist else float("nan"),
                         "n_classes": len(shared)})
    return pd.DataFrame(rows)


def dimension_differences(
    x: np.ndarray, domains: Sequence[str], order: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Per dimension, ``|mean over the domain - mean over every other row|``: columns domain,
    dim, value (``len(order) * E`` rows). Sort by value to find a domain's marker dims."""
    x, domains, _, order = check_embeddings(x, domains, order=order)
    parts = []
    for d in order:
        inside = domains == d
        diff = np.abs(x[inside].mean(axis=0) - x[~inside].mean(axis=0))
        parts.append(pd.DataFrame({"domain": d, "dim": np.arange(x.shape[1]), "value": diff}))
    return pd.concat(parts, ignore_index=True)


def domain_probe(
    x: np.ndarray, domains: Sequence[str], order: Sequence[str] | None = None,
    *, folds: int = 5, seed: int = 0, C: float = 1.0, max_iter: int = 1000,
) -> pd.DataFrame:
    """Cross-validated one-vs-rest linear domain probes: columns domain, value (balanced
    accuracy over the held-out folds, chance 0.5), n_images, folds.

    Each domain's probe is ``LogisticRegression(C, class_weight="balanced")`` on the
    standardised-free embeddings, evaluated by ``StratifiedKFold(folds, shuffle=True,
    random_state=derived_seed(seed, "probe", domain))``. Needs at least ``folds`` images in
    each domain and in the rest.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    if int(folds) != folds or folds < 2:
        raise ValueError(f"folds must be an integer >= 2, got {folds}")
    x, domains, _, order = check_embeddings(x, domains, order=order, min_per_domain=folds)
    keep = np.isin(domains, order)
    x, domains = x[keep], domains[keep]
    rows = []
    for d in order:
        target = (domains == d).astype(int)
        cv = StratifiedKFold(int(folds), shuffle=True,
                             random_state=derived_seed(seed, "probe", d) % 2**32)
        probe = LogisticRegression(C=C, class_weight="balanced", max_iter=max_iter)
        pred = cross_val_predict(probe, x, target, cv=cv)
        rows.append({"domain": d, "value": float(balanced_accuracy_score(target, pred)),
                     "n_images": int(target.sum()), "folds": int(folds)})
    return pd.DataFrame(rows)


def shuffled(labels: Sequence[str], seed: int, *keys: str, within: Sequence[str] | None = None
             ) -> np.ndarray:
    """``labels`` permuted by a generator seeded with ``(seed, *keys)``; with ``within``
    (a grouping label per row), permuted only inside each group."""
    labels = np.asarray(labels, dtype=object).copy()
    rng = seeded_rng(seed, "shuffle", *keys)
    if within is None:
        return labels[rng.permutation(len(labels))]
    within = np.asarray(within, dtype=object)
    for group in dict.fromkeys(within.tolist()):
        idx = np.flatnonzero(within == group)
        labels[idx] = labels[idx[rng.permutation(len(idx))]]
    return labels


def separation_tables(
    x: np.ndarray, domains: Sequence[str], classes: Sequence[str],
    *, order: Sequence[str] | None = None, subsets: dict[str, Sequence[str] | None] | None = None,
    references: Sequence[str] = REFERENCES, folds: int = 5, seed: int = 0,
) -> dict[str, pd.DataFrame]:
    """Every separation measure with its references, as three tidy tables.

    ``subsets``: ``{name: classes or None}`` for the distances (default ``{"all": None}``);
    the dimensions and the probe use every image. Returns ``{"distances": measure
    (domain_mean_distance | class_mean_distance), class_subset, reference, domain_a,
    domain_b, value, n_classes; "dimensions": reference, domain, dim, value; "probe":
    reference, domain, value, n_images, folds}``; ``reference`` is ``model`` for the
    embeddings as given.
    """
    from training.util.validate import check_choices

    check_choices("references", references, REFERENCES)
    if int(folds) != folds or folds < 2:
        raise ValueError(f"folds must be an integer >= 2, got {folds}")
    x, domains, classes, order = check_embeddings(x, domains, classes, order=order,
                                                  min_per_domain=folds)
    subsets = subsets or {"all": None}
    variants = {"none": (domains, classes)}
    if "domain-shuffle" in references:
        variants["domain-shuffle"] = (shuffled(domains, seed, "domain"), classes)
    if "class-shuffle" in references:
        variants["class-shuffle"] = (domains, shuffled(classes, seed, "class", within=domains))
    dist, dims, probe = [], [], []
    for ref, (doms, cls) in variants.items():
        for name, subset in subsets.items():
            keep = np.ones(len(x), bool) if subset is None else np.isin(cls, list(subset))
            if ref != "class-shuffle":  # the domain means ignore classes
                part = domain_mean_distances(x[keep], doms[keep], order)
                dist.append(part.assign(measure="domain_mean_distance", class_subset=name,
                                        reference=ref, n_classes=np.nan))
            part = class_mean_distances(x, doms, cls, order, subset)
            dist.append(part.assign(measure="class_mean_distance", class_subset=name,
                                    reference=ref))
        if ref == "class-shuffle":
            continue
        dims.append(dimension_differences(x, doms, order).assign(reference=ref))
        probe.append(domain_probe(x, doms, order, folds=folds, seed=seed).assign(reference=ref))
    columns = ["measure", "class_subset", "reference", "domain_a", "domain_b", "value", "n_classes"]
    return {
        "distances": pd.concat(dist, ignore_index=True)[columns],
        "dimensions": pd.concat(dims, ignore_index=True)[["reference", "domain", "dim", "value"]],
        "probe": pd.concat(probe, ignore_index=True)[
            ["reference", "domain", "value", "n_images", "folds"]],
    }
