"""Circuit figures, drawn from the tidy tables of :mod:`domainlens.experiments.circuits` and the saved
circuit files only (matplotlib ``Figure``, no pyplot state).

* :func:`plot_node_sharing`: node Jaccard per layer, one line per domain pair (mean over
  classes); pairs containing the highlighted (test) domain in colour, others grey; one panel
  per class subset; the ``init`` reference (a ``reference`` column, issue 13) dashed in the
  pair's colour.
* :func:`plot_similarity_heatmaps`: domain x domain circuit similarity (edge Jaccard, WL
  kernel), one row per metric, one column per class subset; measured rows only, diagonal
  masked, one colour scale from the off-diagonal values.
* :func:`plot_circuits_for_class`: one layered circuit drawing per domain for one class.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from interp.plots import (
    REFERENCE_STYLE,
    domain_heatmap,
    off_diagonal_limits,
    reference_handles,
    split_references,
)

_REQUIRED = ("domain_a", "domain_b", "site", "metric", "class_subset", "statistic", "value")
_SUBSETS = ("held-out", "seen", "all")


def _check(summary: pd.DataFrame) -> None:
    missing = [c for c in _REQUIRED if c not in summary.columns]
    if missing:
        raise ValueError(f"not a circuit comparison summary: missing column(s) {missing}")


def _subsets(summary: pd.DataFrame) -> list[str]:
    present = set(summary["class_subset"])
    return [s for s in _SUBSETS if s in present]


def plot_node_sharing(summary: pd.DataFrame, highlight: str | None = None,
                      title: str | None = None) -> Figure:
    """Mean node Jaccard per layer for each domain pair (see the module docstring)."""
    _check(summary)
    summary, references = split_references(summary)
    part = summary[(summary["metric"] == "node_jaccard") & (summary["statistic"] == "mean")]
    refs = {name: rows[(rows["metric"] == "node_jaccard") & (rows["statistic"] == "mean")]
            for name, rows in references.items()}
    if part.empty:
        raise ValueError("the summary has no node_jaccard means to plot")
    subsets = _subsets(part)
    fig = Figure(figsize=(4.4 * len(subsets) + 1.8, 3.6), layout="constrained")
    axes = fig.subplots(1, len(subsets), sharey=True, squeeze=False)[0]
    colours = iter(colormaps["tab10" if highlight is not None else "tab20"].colors)
    pair_colour: dict[tuple[str, str], tuple] = {}
    for ax, subset in zip(axes, subsets, strict=True):
        rows = part[part["class_subset"] == subset]
        stats = rows.groupby(["domain_a", "domain_b", "layer_index"], sort=False)["value"].mean()
        stats = stats.reset_index()
        for (a, b), line in stats.groupby(["domain_a", "domain_b"], sort=False):
            line = line.sort_values("layer_index")
            hot = highlight is None or highlight in (a, b)
            if hot and (a, b) not in pair_colour:
                pair_colour[(a, b)] = next(colours, (0, 0, 0))
            colour = pair_colour.get((a, b), "0.65")
            ax.plot(line["layer_index"], line["value"], color=colour, lw=2.0 if hot else 1.0,
                    marker="o" if hot else None, ms=3, alpha=1.0 if hot else 0.7,
                    label=f"{a}-{b}" if hot else None, zorder=3 if hot else 2)
            for name, style in REFERENCE_STYLE.items():
                ref = refs.get(name)
                if ref is None or ref.empty:
                    continue
                ref = ref[(ref["class_subset"] == subset) & (ref["domain_a"] == a)
                          & (ref["domain_b"] == b)].groupby("layer_index")["value"].mean()
                ax.plot(ref.index, ref.to_numpy(), color=colour, lw=1.0, ls=style,
                        alpha=0.9 if hot else 0.5)
        ticks = rows[["layer_index", "layer"]].drop_duplicates().sort_values("layer_index")
        ax.set_xticks(ticks["layer_index"], ticks["layer"].astype(str), rotation=45, ha="right",
                      fontsize=7)
        ax.set_title(f"class subset: {subset}", fontsize=9)
        ax.grid(alpha=0.3)
        ax.set_ylim(-0.02, 1.02)
    axes[0].set_ylabel("node Jaccard (kept units)")
    handles = list(axes[0].get_legend_handles_labels()[0])
    if highlight is not None:
        handles.append(Line2D([], [], color="0.65", lw=1.0, label="other pairs"))
    handles += reference_handles(refs)
    fig.legend(handles=handles, loc="outside right center", fontsize=7,
               title=f"pairs with {highlight}" if highlight else "domain pairs")
    if title:
        fig.suptitle(title)
    return fig


def similarity_matrix(summary: pd.DataFrame, metric: str, class_subset: str,
                      domains: Sequence[str]) -> pd.DataFrame:
    """Domain x domain matrix of the class-mean ``metric`` (diagonal 1; measured rows only)."""
    summary, _ = split_references(summary)
    part = summary[(summary["metric"] == metric) & (summary["statistic"] == "mean")
                   & (summary["class_subset"] == class_subset)]
    matrix = pd.DataFrame(np.where(np.eye(len(domains), dtype=bool), 1.0, np.nan),
                          index=list(domains), columns=list(domains))
    for (a, b), v in part.groupby(["domain_a", "domain_b"])["value"].mean().items():
        if a in matrix.index and b in matrix.index:
            matrix.loc[a, b] = matrix.loc[b, a] = v
    return matrix


def plot_similarity_heatmaps(summary: pd.DataFrame, domains: Sequence[str] | None = None,
                             metrics: Sequence[str] = ("edge_jaccard", "wl_kernel"),
                             title: str | None = None) -> Figure:
    """Domain x domain heatmaps: rows = ``metrics``, columns = class subsets."""
    _check(summary)
    if domains is None:
        domains = list(dict.fromkeys([*summary["domain_a"], *summary["domain_b"]]))
    subsets = _subsets(summary)
    size = 0.45 * len(domains) + 1.4
    fig = Figure(figsize=(size * len(subsets) + 1.0, size * len(metrics) + 0.5), layout="constrained")
    axes = fig.subplots(len(metrics), len(subsets), squeeze=False)
    image = None
    matrices = {(metric, subset): similarity_matrix(summary, metric, subset, domains)
                for metric in metrics for subset in subsets}
    limits = off_diagonal_limits(list(matrices.values()))
    for i, metric in enumerate(metrics):
        for j, subset in enumerate(subsets):
            image = domain_heatmap(axes[i, j], matrices[(metric, subset)], domains,
                                   f"{metric}, {subset}", limits=limits)
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.8, label="similarity (mean over classes)")
    if title:
        fig.suptitle(title)
    return fig


def plot_circuits_for_class(files: Mapping[str, str | Path], class_name: str,
                            max_nodes_per_site: int = 16) -> Figure:
    """One layered drawing per domain (``{domain: circuit file}``) of ``class_name``'s circuits."""
    from interp.circuits.circuit import Circuit

    if not files:
        raise ValueError("no circuit files given")
    n = len(files)
    ncols = min(3, n)
    nrows = -(-n // ncols)
    fig = Figure(figsize=(5.2 * ncols, 3.6 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax, (domain, path) in zip(axes.flat, files.items(), strict=False):
        circuit = Circuit.load(path)
        circuit.draw(ax=ax, title=f"{class_name} / {domain} ({len(circuit)} nodes, "
                     f"{circuit.graph.number_of_edges()} edges)", max_nodes_per_site=max_nodes_per_site)
    for ax in list(axes.flat)[n:]:
        ax.set_axis_off()
    return fig
