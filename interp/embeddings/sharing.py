"""Which SAE latents two domains share for a class: top-latent histograms and share@k.

* :func:`top_latents`: each image's ``top`` largest *positive* latents. Ties are broken by
  the lower latent index (a stable sort on ``-z``); latents ``<= 0`` are never counted, so an
  image with fewer than ``top`` active latents contributes fewer.
* :func:`latent_histograms`: for every (class, domain), how many of its images have each
  latent among their top latents: ``(n_classes, n_domains, L)`` counts.
* :func:`top_set`: the ``k`` latents with the largest counts of one histogram, ties again by
  the lower index, only latents with a count > 0 (a histogram with fewer than ``k`` non-zero
  latents gives a smaller set).
* :func:`sharing_table`: ``share_k(a, b) = |top_set(h_a, k) & top_set(h_b, k)| / k``, averaged
  over ``ks``, for every class and ordered domain pair. A (class, domain) whose histogram is all
  zero (no image of it, or none with a positive latent) has nothing to compare: its pairs are
  NaN, and :func:`sharing_summary` / :func:`domain_scores` skip NaNs (``n_classes`` says how
  many classes a mean has).
* :func:`domain_scores`: a domain's score = the mean of its row of the class-averaged matrix
  without the diagonal, for *every* domain (the paper's code always reported sketch's row).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

KS: tuple[int, ...] = (5, 10, 15, 20)


def _check_k(k: int, n_latents: int, name: str = "k") -> int:
    if int(k) != k or k < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {k}")
    if k > n_latents:
        raise ValueError(f"{name}={k} is larger than the number of latents ({n_latents})")
    return int(k)


def top_latents(z: np.ndarray, top: int = 20) -> list[np.ndarray]:
    """Per row of ``z`` ``(N, L)``, the indices of its ``top`` largest positive latents (ties:
    lower index first), largest first."""
    z = np.asarray(z)
    top = _check_k(top, z.shape[1], "top")
    order = np.argsort(-z, axis=1, kind="stable")[:, :top]
    return [row[z[i, row] > 0] for i, row in enumerate(order)]


def latent_histograms(
    z: np.ndarray, domains: Sequence[str], classes: Sequence[str],
    *, domain_order: Sequence[str] | None = None, class_order: Sequence[str] | None = None,
    top: int = 20,
) -> tuple[np.ndarray, list[str], list[str]]:
    """Counts ``(n_classes, n_domains, L)`` of each latent among the images' top latents, with
    the class and domain orders. An unknown domain or class in the orders is refused."""
    z = np.asarray(z)
    domains = np.asarray(domains, dtype=object)
    classes = np.asarray(classes, dtype=object)
    if z.ndim != 2 or len(domains) != len(z) or len(classes) != len(z):
        raise ValueError(f"latents (N, L) with one domain and class per row expected, got "
                         f"{z.shape}, {len(domains)} domains, {len(classes)} classes")
    d_order = list(dict.fromkeys(domains.tolist())) if domain_order is None else list(domain_order)
    c_order = list(dict.fromkeys(classes.tolist())) if class_order is None else list(class_order)
    for what, order, labels in (("domain", d_order, domains), ("class", c_order, classes)):
        unknown = sorted(set(order) - set(labels.tolist()))
        if unknown:
            raise ValueError(f"unknown {what}(s) {unknown}: no latents given for them")
    tops = top_latents(z, top)
    d_index = {d: i for i, d in enumerate(d_order)}
    c_index = {c: i for i, c in enumerate(c_order)}
    hist = np.zeros((len(c_order), len(d_order), z.shape[1]), dtype=np.int64)
    for row, (d, c) in enumerate(zip(domains, classes, strict=True)):
        if d in d_index and c in c_index:
            np.add.at(hist[c_index[c], d_index[d]], tops[row], 1)
    return hist, c_order, d_order


def top_set(h: np.ndarray, k: int) -> set[int]:
    """The ``k`` latents with the largest counts in ``h`` ``(L,)`` (ties: lower index), only
    latents with a count > 0."""
    h = np.asarray(h)
    k = _check_k(k, len(h))
    order = np.argsort(-h, kind="stable")[:k]
    return {int(i) for i in order if h[i] > 0}


def share(h_a: np.ndarray, h_b: np.ndarray, ks: Sequence[int] = KS) -> float:
    """Mean over ``ks`` of ``|top_set(h_a, k) & top_set(h_b, k)| / k``; NaN if either
    histogram is all zero."""
    if not np.asarray(h_a).any() or not np.asarray(h_b).any():
        return float("nan")
    return float(np.mean([len(top_set(h_a, k) & top_set(h_b, k)) / k for k in ks]))


def sharing_table(
    hist: np.ndarray, class_order: Sequence[str], domain_order: Sequence[str],
    ks: Sequence[int] = KS,
) -> pd.DataFrame:
    """Tidy per-class sharing matrices: class_name, domain_a, domain_b, value."""
    if not ks:
        raise ValueError("ks: none given")
    for k in ks:
        _check_k(k, hist.shape[2])
    rows = [{"class_name": c, "domain_a": a, "domain_b": b,
             "value": share(hist[ci, ai], hist[ci, bi], ks)}
            for ci, c in enumerate(class_order)
            for ai, a in enumerate(domain_order) for bi, b in enumerate(domain_order)]
    return pd.DataFrame(rows)


def sharing_summary(table: pd.DataFrame, classes: Sequence[str] | None = None) -> pd.DataFrame:
    """The class-averaged matrix over ``classes`` (default all): domain_a, domain_b, value
    (NaN-skipping mean), n_classes (classes with a defined value)."""
    part = table if classes is None else table[table["class_name"].isin(list(classes))]
    if part.empty:
        raise ValueError(f"no sharing rows for classes {list(classes or [])}")
    grouped = part.groupby(["domain_a", "domain_b"], sort=False)["value"]
    return pd.DataFrame({"value": grouped.mean(), "n_classes": grouped.count()}).reset_index()


def domain_scores(summary: pd.DataFrame, domains: Sequence[str] | None = None) -> pd.DataFrame:
    """Each domain's sharing score: the mean of its row of ``summary`` (from
    :func:`sharing_summary`) without the diagonal. Columns domain, value."""
    present = list(dict.fromkeys(summary["domain_a"].tolist()))
    domains = present if domains is None else list(domains)
    unknown = [d for d in domains if d not in present]
    if unknown:
        raise ValueError(f"unknown domain(s) {unknown}; the sharing table has {present}")
    rows = []
    for d in domains:
        row = summary[(summary["domain_a"] == d) & (summary["domain_b"] != d)]["value"]
        rows.append({"domain": d, "value": float(row.mean()) if row.notna().any() else float("nan")})
    return pd.DataFrame(rows)
