"""Figures of the embedding-separation and feature-sharing tables (:mod:`interp.embeddings`).

* :func:`plot_distances`: domain x domain distance heatmaps, one panel per (measure,
  reference) of one class subset, one colour scale for all panels;
* :func:`plot_probe`: the cross-validated domain probe's balanced accuracy per domain, a bar
  group per reference (chance 0.5 dashed);
* :func:`plot_umap`: the 2-D densMAP picture coloured by domain;
* :func:`plot_sharing`: class-averaged sharing matrices, one panel per site;
* :func:`plot_sharing_by_layer`: each domain's sharing score per site (layer);
* :func:`plot_side_by_side`: two runs' numbers next to each other (the aligned-captions test).

Only ``matplotlib.figure.Figure`` (no pyplot).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure

from interp.plots import domain_heatmap


def _order(values: Sequence[str]) -> list[str]:
    from training.domains import DOMAINS

    values = list(dict.fromkeys(values))
    return sorted(values, key=lambda d: (DOMAINS.index(d) if d in DOMAINS else len(DOMAINS), d))


def _colours(domains: Sequence[str]) -> dict[str, tuple]:
    cmap = colormaps["tab10"]
    return {d: cmap(i % 10) for i, d in enumerate(domains)}


def plot_distances(distances: pd.DataFrame, class_subset: str = "all", title: str = "") -> Figure:
    """Heatmaps of a separation ``distances`` table (columns measure, class_subset, reference,
    domain_a, domain_b, value) for one class subset."""
    part = distances[distances["class_subset"] == class_subset]
    if part.empty:
        raise ValueError(f"no distances for class subset {class_subset!r}")
    panels = list(part.groupby(["measure", "reference"], sort=False))
    domains = _order(part["domain_a"])
    vmax = float(np.nanmax(part["value"])) or 1.0
    ncols = min(4, len(panels))  # at most 4 panels a row
    nrows = -(-len(panels) // ncols)
    fig = Figure(figsize=(2.6 * ncols + 0.6, 2.9 * nrows), layout="constrained")
    grid = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in grid[len(panels):]:
        ax.set_axis_off()
    axes = grid[:len(panels)]
    image = None
    for ax, ((measure, ref), p) in zip(axes, panels, strict=True):
        m = p.pivot(index="domain_a", columns="domain_b", values="value").loc[domains, domains]
        image = ax.imshow(m.to_numpy(float), vmin=0, vmax=vmax, cmap="magma")
        ax.set_xticks(range(len(domains)), domains, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(len(domains)), domains, fontsize=7)
        ax.set_title(f"{measure.replace('_', ' ')}\n({ref})", fontsize=8)
        for r in range(len(domains)):
            for c in range(len(domains)):
                v = m.iat[r, c]
                if np.isfinite(v):
                    ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=5.5,
                            color="white" if v < 0.6 * vmax else "black")
    fig.colorbar(image, ax=list(axes), shrink=0.8, label="Euclidean distance")
    fig.suptitle(title or f"embedding separation, {class_subset} classes", fontsize=9)
    return fig


def _label_unit_axes(ax, ticks: list[str], ylabel: str, title: str, top: float,
                     tick_size: int) -> None:
    """Categorical x ticks, a y axis from 0 to just above 1, a legend and a title."""
    ax.set_xticks(range(len(ticks)), ticks, rotation=30, fontsize=tick_size)
    ax.set_ylim(0, top)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)


def plot_probe(probe: pd.DataFrame, title: str = "") -> Figure:
    """Bars of a probe table (columns reference, domain, value)."""
    domains = _order(probe["domain"])
    refs = list(dict.fromkeys(probe["reference"]))
    fig = Figure(figsize=(1.0 + 0.9 * len(domains), 3.0), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / len(refs)
    for i, ref in enumerate(refs):
        v = probe[probe["reference"] == ref].set_index("domain")["value"].reindex(domains)
        ax.bar(np.arange(len(domains)) + (i - (len(refs) - 1) / 2) * width, v, width, label=ref)
    ax.axhline(0.5, color="grey", ls="--", lw=0.8)
    _label_unit_axes(ax, domains, "balanced accuracy (CV)", title or "linear domain probe, one vs rest",
                     top=1.05, tick_size=8)
    return fig


def plot_umap(coords: pd.DataFrame, title: str = "") -> Figure:
    """Scatter of a UMAP table (columns domain, x, y), coloured by domain."""
    domains = _order(coords["domain"])
    colours = _colours(domains)
    fig = Figure(figsize=(4.2, 3.6), layout="constrained")
    ax = fig.subplots()
    for d in domains:
        p = coords[coords["domain"] == d]
        ax.scatter(p["x"], p["y"], s=6, alpha=0.7, color=colours[d], label=d, linewidths=0)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=7, markerscale=2, loc="best")
    ax.set_title(title or "densMAP of the image embeddings", fontsize=9)
    return fig


def plot_sharing(summary: pd.DataFrame, title: str = "") -> Figure:
    """Class-averaged sharing matrices (columns site, domain_a, domain_b, value), one panel
    per site."""
    sites = list(dict.fromkeys(summary["site"])) if "site" in summary else [None]
    fig = Figure(figsize=(max(4.2, 2.7 * len(sites) + 0.6), 3.1), layout="constrained")
    axes = fig.subplots(1, len(sites), squeeze=False)[0]
    image = None
    for ax, site in zip(axes, sites, strict=True):
        p = summary if site is None else summary[summary["site"] == site]
        domains = _order(p["domain_a"])
        m = p.pivot(index="domain_a", columns="domain_b", values="value").loc[domains, domains]
        image = domain_heatmap(ax, m, domains, str(site or ""))
    fig.colorbar(image, ax=list(axes), shrink=0.8, label="share@k (mean over k)")
    fig.suptitle(title or "SAE feature sharing", fontsize=8)
    return fig


def plot_sharing_by_layer(scores: pd.DataFrame, title: str = "") -> Figure:
    """Each domain's sharing score (columns site, domain, value) per site, in site order."""
    sites = list(dict.fromkeys(scores["site"]))
    domains = _order(scores["domain"])
    colours = _colours(domains)
    fig = Figure(figsize=(1.5 + 0.8 * len(sites), 3.0), layout="constrained")
    ax = fig.subplots()
    for d in domains:
        v = scores[scores["domain"] == d].set_index("site")["value"].reindex(sites)
        ax.plot(range(len(sites)), v, marker="o", color=colours[d], label=d)
    _label_unit_axes(ax, sites, "sharing score", title or "feature sharing by layer", top=1.02,
                     tick_size=7)
    return fig


def plot_side_by_side(table: pd.DataFrame, title: str = "") -> Figure:
    """Grouped bars of a comparison table (columns quantity, domain, variant, value): one
    panel per quantity, one bar per variant (e.g. standard vs aligned captions)."""
    quantities = list(dict.fromkeys(table["quantity"]))
    variants = list(dict.fromkeys(table["variant"]))
    fig = Figure(figsize=(3.2 * len(quantities), 3.0), layout="constrained")
    axes = fig.subplots(1, len(quantities), squeeze=False)[0]
    width = 0.8 / len(variants)
    for ax, q in zip(axes, quantities, strict=True):
        p = table[table["quantity"] == q]
        domains = _order(p["domain"])
        for i, v in enumerate(variants):
            vals = p[p["variant"] == v].set_index("domain")["value"].reindex(domains)
            ax.bar(np.arange(len(domains)) + (i - (len(variants) - 1) / 2) * width, vals, width,
                   label=v)
        ax.set_xticks(range(len(domains)), domains, rotation=30, fontsize=7)
        ax.set_title(q.replace("_", " "), fontsize=8)
    axes[0].legend(fontsize=7)
    fig.suptitle(title or "standard vs aligned captions", fontsize=9)
    return fig
