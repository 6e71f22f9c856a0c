"""Cross-domain CKA figures, drawn from :func:`interp.similarity.cross_domain.cross_domain_cka` tables.

* :func:`plot_cka_by_layer`: CKA per layer, one line per domain pair; pairs containing the
  highlighted (test) domain in colour, the others in grey; one panel per (class subset,
  kernel). Rows repeated over runs or seeds are averaged, with a min-max band; the ``init``
  reference rows (a ``reference`` column, issue 13) are a dashed line in the pair's colour.
* :func:`plot_cka_heatmaps`: a domain x domain heatmap per layer (measured rows only,
  diagonal masked, one colour scale from the off-diagonal values).

Only ``matplotlib.figure.Figure`` is used (no pyplot), so nothing touches global state and
no display is needed.
"""

from __future__ import annotations

from collections.abc import Sequence

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
    save_figure,
    split_references,
)

__all__ = ["cka_matrix", "plot_cka_by_layer", "plot_cka_heatmaps", "save_figure"]

_PAIR_COLUMNS = ["domain_a", "domain_b"]
_REQUIRED = ("layer", "layer_index", "domain_a", "domain_b", "value")


def _check_table(table: pd.DataFrame) -> None:
    missing = [c for c in _REQUIRED if c not in table.columns]
    if missing:
        raise ValueError(f"not a cross-domain CKA table: missing column(s) {missing}")
    if table.empty:
        raise ValueError("empty CKA table: nothing to plot")


def _domain_order(table: pd.DataFrame) -> list[str]:
    order: list[str] = []
    for a, b in table[_PAIR_COLUMNS].itertuples(index=False):
        for d in (a, b):
            if d not in order:
                order.append(d)
    return order


def _highlight(table: pd.DataFrame, highlight: str | None) -> str | None:
    if highlight is not None:
        return highlight
    if "test_domain" in table.columns:
        found = table["test_domain"].dropna().unique()
        if len(found) == 1:
            return str(found[0])
    return None


def _layer_ticks(table: pd.DataFrame) -> tuple[list[int], list[str]]:
    layers = table[["layer_index", "layer"]].drop_duplicates().sort_values("layer_index")
    return layers["layer_index"].tolist(), layers["layer"].astype(str).tolist()


def plot_cka_by_layer(
    table: pd.DataFrame, highlight: str | None = None, title: str | None = None
) -> Figure:
    """CKA per layer for each domain pair; pairs with ``highlight`` (default: the table's
    test domain) coloured, others grey (all coloured without a highlight). One panel per
    (class_subset, kernel)."""
    _check_table(table)
    highlight = _highlight(table, highlight)
    table, references = split_references(table)
    _check_table(table)
    facets = [c for c in ("class_subset", "kernel") if c in table.columns]
    groups = list(table.groupby(facets, sort=False)) if facets else [((), table)]
    fig = Figure(figsize=(4.6 * len(groups) + 1.8, 3.8), layout="constrained")
    axes = fig.subplots(1, len(groups), sharey=True, squeeze=False)[0]
    colours = iter(colormaps["tab10" if highlight is not None else "tab20"].colors)
    pair_colour: dict[tuple[str, str], str] = {}
    for ax, (key, part) in zip(axes, groups, strict=True):
        stats = (
            part.groupby([*_PAIR_COLUMNS, "layer_index"], sort=False)["value"]
            .agg(["mean", "min", "max"])
            .reset_index()
        )
        for (a, b), line in stats.groupby(_PAIR_COLUMNS, sort=False):
            line = line.sort_values("layer_index")
            hot = highlight is None or highlight in (a, b)
            if hot and (a, b) not in pair_colour:
                pair_colour[(a, b)] = next(colours, "black")
            colour = pair_colour.get((a, b), "0.65")
            ax.plot(
                line["layer_index"], line["mean"], color=colour, lw=2.2 if hot else 1.0,
                alpha=1.0 if hot else 0.7, marker="o" if hot else None, ms=3,
                label=f"{a}-{b}" if hot else None, zorder=3 if hot else 2,
            )
            if (line["max"] > line["min"]).any():
                ax.fill_between(line["layer_index"], line["min"], line["max"], color=colour, alpha=0.15, lw=0)
            for name, style in REFERENCE_STYLE.items():
                _reference_line(ax, references.get(name), facets, key, (a, b), colour, style,
                                hot, name)
        ticks, labels = _layer_ticks(part)
        ax.set_xticks(ticks, labels, rotation=45, ha="right", fontsize=8)
        ax.set_xlabel("layer")
        ax.grid(alpha=0.3)
        key = key if isinstance(key, tuple) else (key,)
        ax.set_title(", ".join(f"{f}={k}" for f, k in zip(facets, key, strict=True)), fontsize=9)
    axes[0].set_ylabel("CKA")
    handles = list(axes[0].get_legend_handles_labels()[0])
    if highlight is not None:
        handles.append(Line2D([], [], color="0.65", lw=1.0, label="other pairs"))
    handles += reference_handles(references)
    fig.legend(
        handles=handles, loc="outside right center", fontsize=8,
        title=f"pairs with {highlight}" if highlight is not None else "domain pairs",
    )
    if title:
        fig.suptitle(title)
    return fig


def _reference_line(ax, rows: pd.DataFrame | None, facets: list[str], key, pair: tuple[str, str],
                    colour, style: str, hot: bool, name: str) -> None:
    """The mean over repeated rows of one reference of one domain pair, dashed."""
    if rows is None or rows.empty:
        return
    key = key if isinstance(key, tuple) else (key,)
    mask = (rows["domain_a"] == pair[0]) & (rows["domain_b"] == pair[1])
    for facet, value in zip(facets, key, strict=True):
        mask &= rows[facet] == value
    line = rows[mask].groupby("layer_index")["value"].mean().sort_index()
    if not line.empty:
        ax.plot(line.index, line.to_numpy(), color=colour, lw=1.2 if hot else 0.8, ls=style,
                alpha=0.9 if hot else 0.5)


def cka_matrix(table: pd.DataFrame, site: str, domains: Sequence[str] | None = None) -> pd.DataFrame:
    """Domain x domain CKA matrix of one site (mean over repeated rows; diagonal 1)."""
    part = table[table["site"] == site]
    if part.empty:
        raise ValueError(f"no rows for site {site!r}; sites in the table: {table['site'].unique().tolist()}")
    domains = _domain_order(table) if domains is None else list(domains)
    matrix = pd.DataFrame(
        np.where(np.eye(len(domains), dtype=bool), 1.0, np.nan), index=domains, columns=domains
    )
    values = part.groupby(_PAIR_COLUMNS)["value"].mean()
    for (a, b), v in values.items():
        if a in matrix.index and b in matrix.index:
            matrix.loc[a, b] = matrix.loc[b, a] = v
    return matrix


def plot_cka_heatmaps(
    table: pd.DataFrame, sites: Sequence[str] | None = None, ncols: int = 4, title: str | None = None
) -> Figure:
    """One domain x domain CKA heatmap per layer (values annotated, diagonal masked, one
    colour scale over all panels from the off-diagonal values).

    The table must hold one class subset, kernel and mode (filter it first); repeated rows
    (runs, seeds) are averaged; reference rows (``reference`` other than ``none``) are left out.
    """
    _check_table(table)
    table, _ = split_references(table)
    _check_table(table)
    for column in ("class_subset", "kernel", "mode", "hsic"):
        if column in table.columns and table[column].nunique() > 1:
            raise ValueError(
                f"the table mixes several {column} values {sorted(table[column].unique())}; "
                "filter it to one before drawing heatmaps"
            )
    if sites is None:
        order = table[["site", "layer_index"]].drop_duplicates().sort_values("layer_index")
        sites = order["site"].tolist()
    labels = dict(table[["site", "layer"]].drop_duplicates().itertuples(index=False))
    domains = _domain_order(table)
    ncols = max(1, min(ncols, len(sites)))
    nrows = -(-len(sites) // ncols)
    size = 0.42 * len(domains) + 1.2
    fig = Figure(figsize=(size * ncols + 1.0, size * nrows + 0.6), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    image = None
    matrices = [cka_matrix(table, site, domains) for site in sites]
    limits = off_diagonal_limits(matrices)
    for ax, site, matrix in zip(axes.flat, sites, matrices, strict=False):
        image = domain_heatmap(ax, matrix, domains, str(labels.get(site, site)),
                               annotate=len(domains) <= 8, title_size=9, limits=limits)
    for ax in list(axes.flat)[len(sites):]:
        ax.set_axis_off()
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.8, label="CKA")
    if title:
        fig.suptitle(title)
    return fig
