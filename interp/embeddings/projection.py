"""A seeded 2-D picture of the embeddings: UMAP with densMAP on a per-domain subsample.

:func:`subsample_per_domain` draws up to ``n`` rows per domain with a generator seeded by
``(seed, "umap", domain)`` from the *index* only (never from the embeddings), so every model
evaluated on the same images gets the same subsample. :func:`umap_coordinates` runs
``umap.UMAP(n_components=2, densmap=True, random_state=seed)`` (a fixed ``random_state``
makes umap-learn single-threaded and its output reproducible) and returns a tidy table.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from training.util.seeding import derived_seed, seeded_rng


def subsample_per_domain(
    domains: Sequence[str], n: int, seed: int = 0, exclude: Sequence[str] = (),
) -> np.ndarray:
    """Sorted row positions: at most ``n`` rows of every domain not in ``exclude``, drawn
    without replacement by a generator seeded with ``(seed, "umap", domain)``."""
    if int(n) != n or n < 1:
        raise ValueError(f"per-domain sample size must be an integer >= 1, got {n}")
    domains = np.asarray(domains, dtype=object)
    keep = []
    for d in dict.fromkeys(domains.tolist()):
        if d in exclude:
            continue
        idx = np.flatnonzero(domains == d)
        if len(idx) > n:
            idx = np.sort(seeded_rng(int(seed), "umap", str(d)).choice(idx, size=int(n),
                                                                          replace=False))
        keep.append(idx)
    if not keep:
        raise ValueError(f"no rows left after excluding {list(exclude)}")
    return np.sort(np.concatenate(keep))


def umap_coordinates(
    x: np.ndarray, domains: Sequence[str], classes: Sequence[str] | None = None,
    *, per_domain: int = 500, seed: int = 0, exclude: Sequence[str] = (),
    n_neighbors: int = 15, min_dist: float = 0.1, metric: str = "cosine",
) -> pd.DataFrame:
    """2-D densMAP coordinates of a seeded subsample of ``x`` ``(N, E)``.

    Returns columns row (position in ``x``), domain, class_name, x, y. ``n_neighbors`` is
    capped at the sample size - 1; fewer than 4 rows after subsampling are refused.
    """
    import umap  # umap-learn; imported here (numba compiles on first import)

    x = np.asarray(x, dtype=np.float32)
    domains = np.asarray(domains, dtype=object)
    if x.ndim != 2 or len(x) != len(domains):
        raise ValueError(f"embeddings (N, E) and one domain per row expected, got {x.shape} "
                         f"and {len(domains)} labels")
    rows = subsample_per_domain(domains, per_domain, seed, exclude)
    if len(rows) < 4:
        raise ValueError(f"too few images for UMAP: {len(rows)} after subsampling (need >= 4)")
    reducer = umap.UMAP(n_components=2, densmap=True, n_neighbors=min(n_neighbors, len(rows) - 1),
                        min_dist=min_dist, metric=metric,
                        random_state=derived_seed(seed, "umap") % 2**32)
    with warnings.catch_warnings():  # umap-learn says a seed makes it single-threaded: intended
        warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)
        coords = reducer.fit_transform(x[rows])
    return pd.DataFrame({
        "row": rows, "domain": domains[rows],
        "class_name": (np.asarray(classes, dtype=object)[rows] if classes is not None else ""),
        "x": coords[:, 0].astype(float), "y": coords[:, 1].astype(float),
    })
