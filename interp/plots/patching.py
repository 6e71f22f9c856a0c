"""Activation-patching figures, drawn from :mod:`interp.interventions.patching` summary tables only.

* :func:`plot_recovery_by_layer`: site-level recovery (or another statistic) per layer in
  forward order, one line per domain pair (source -> target) and site kind (solid: layers,
  i.e. block outputs; dash-dotted: components), bootstrap interval as a band, the ``init``
  reference (a ``reference`` column, issue 13) dashed in the same colour; one panel per
  (pairing, direction). The y range follows the estimates; intervals reaching beyond it are
  clipped (recovery intervals get wide where the domains' metrics barely differ).
* :func:`plot_layer_heatmap`: layer x position, layer x head or layer x channel-group
  heatmap of a statistic; one panel per (domain pair, pairing, direction).

Rows repeated over runs or seeds are averaged (the band then spans their min and max).
Only ``matplotlib.figure.Figure`` is used (no pyplot, no global state, no display needed).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure

from interp.plots import REFERENCE_STYLE, reference_handles, save_figure, split_references
from training.util.validate import check_choice

_REQUIRED = ("layer", "site_order", "granularity", "statistic", "value", "direction")
_AXIS_COLUMN = {"position": "position", "head": "head", "channel_group": "channel_start"}


def _select(table: pd.DataFrame, granularity: str, statistic: str) -> pd.DataFrame:
    missing = [c for c in _REQUIRED if c not in table.columns]
    if missing:
        raise ValueError(f"not a patching summary table: missing column(s) {missing}")
    rows = table[(table["granularity"] == granularity) & (table["statistic"] == statistic)]
    if "class_name" in rows.columns:
        rows = rows[rows["class_name"] == "all"]
    if rows.empty:
        have = sorted(set(zip(table["granularity"], table["statistic"], strict=True)))
        raise ValueError(
            f"no rows with granularity {granularity!r} and statistic {statistic!r}; the table "
            f"has (granularity, statistic) pairs {have}"
        )
    rows = rows.copy()
    for column in ("source_domain", "target_domain", "pairing"):
        if column not in rows.columns:
            rows[column] = "-"
    rows["pair"] = rows["source_domain"].astype(str) + " \u2192 " + rows["target_domain"].astype(str)
    return rows


def _save(fig: Figure, path: str | Path | None) -> Figure:
    if path is not None:
        save_figure(fig, path, dpi=130, bbox_inches="tight")
    return fig


def plot_recovery_by_layer(
    table: pd.DataFrame, statistic: str = "recovery", path: str | Path | None = None
) -> Figure:
    """Site-level ``statistic`` per layer, one line per domain pair; returns the figure.

    ``table``: a summary from :meth:`interp.interventions.patching.PatchingResult.to_frame` (or several
    concatenated). Written to ``path`` if given.
    """
    measured, references = split_references(table)
    rows = _select(measured, "site", statistic)
    refs = {name: _select(r, "site", statistic) for name, r in references.items()
            if name in REFERENCE_STYLE and not r.empty
            and ((r["granularity"] == "site") & (r["statistic"] == statistic)).any()}
    pairings = sorted(rows["pairing"].unique())
    directions = sorted(rows["direction"].unique())
    panels = [(p, d) for p in pairings for d in directions]
    fig = Figure(figsize=(4.8 * len(directions), 3.4 * len(pairings)), layout="constrained")
    axes = fig.subplots(len(pairings), len(directions), squeeze=False).reshape(-1)
    pairs = sorted(rows["pair"].unique())
    colours = colormaps["tab10"]
    layer_order = rows.drop_duplicates("layer").sort_values("site_order")["layer"].tolist()
    position = {layer: i for i, layer in enumerate(layer_order)}
    for ax, (pairing, direction) in zip(axes, panels, strict=True):
        panel = rows[(rows["pairing"] == pairing) & (rows["direction"] == direction)]
        if panel.empty:
            ax.set_visible(False)
            continue
        kinds = sorted(panel["site_kind"].unique()) if "site_kind" in panel else [None]
        for (i, pair), kind in ((ip, k) for ip in enumerate(pairs) for k in kinds):
            data = panel[panel["pair"] == pair]
            if kind is not None:
                data = data[data["site_kind"] == kind]
            if data.empty:
                continue
            style = "-." if kind == "component" else "-"
            label = pair if len(kinds) == 1 else f"{pair} ({kind}s)"
            grouped = data.groupby("layer", sort=False)
            mean = grouped["value"].mean()
            if grouped.size().max() == 1:
                low, high = grouped["ci_low"].mean(), grouped["ci_high"].mean()
            else:
                low, high = grouped["value"].min(), grouped["value"].max()
            order = sorted(mean.index, key=position.get)
            x = [position[layer] for layer in order]
            ax.plot(x, mean[order].to_numpy(), marker="o", linestyle=style, color=colours(i % 10),
                    label=label)
            ax.fill_between(x, low[order].to_numpy(), high[order].to_numpy(), color=colours(i % 10),
                            alpha=0.2, linewidth=0)
            for name, ref in refs.items():
                ref = ref[(ref["pairing"] == pairing) & (ref["direction"] == direction)
                          & (ref["pair"] == pair)]
                if kind is not None:
                    ref = ref[ref["site_kind"] == kind]
                line = ref.groupby("layer", sort=False)["value"].mean()
                line = line[[layer for layer in order if layer in line.index]]
                ax.plot([position[layer] for layer in line.index], line.to_numpy(),
                        linestyle=REFERENCE_STYLE[name], color=colours(i % 10), linewidth=1.0)
        values = panel["value"].to_numpy(dtype=float)
        values = values[np.isfinite(values)]
        if values.size:  # scale to the estimates; wide intervals are clipped, not the lines
            low_y, high_y = min(values.min(), 0.0), max(values.max(), 1.0 if statistic == "recovery" else 0.0)
            pad = 0.15 * (high_y - low_y or 1.0)
            ax.set_ylim(low_y - pad, high_y + pad)
        ax.axhline(0.0, color="grey", linewidth=0.8)
        if statistic == "recovery":
            ax.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
        ax.set_xticks(range(len(layer_order)), layer_order, rotation=60, ha="right", fontsize=7)
        ax.set_title(f"{direction}, {pairing}", fontsize=9)
        ax.set_xlabel("site (forward order)")
        ax.set_ylabel(statistic)
    last = next(ax for ax in axes[::-1] if ax.get_visible())
    handles = last.get_legend_handles_labels()[0] + reference_handles(refs)
    last.legend(handles=handles, fontsize=7, loc="best")
    metric = ", ".join(sorted(rows["metric"].astype(str).unique())) if "metric" in rows else ""
    fig.suptitle(f"Cross-domain patching: {statistic} per layer ({metric})", fontsize=10)
    return _save(fig, path)


def plot_layer_heatmap(
    table: pd.DataFrame,
    granularity: str = "position",
    statistic: str = "recovery",
    path: str | Path | None = None,
) -> Figure:
    """Layer x ``granularity`` heatmap of ``statistic`` (``position``, ``head`` or
    ``channel_group``); one panel per (domain pair, pairing, direction). Missing cells (e.g.
    ResNet stages with fewer positions) are blank; the colour scale is symmetric around 0."""
    check_choice("heatmap granularity", granularity, _AXIS_COLUMN)
    rows = _select(split_references(table)[0], granularity, statistic)
    column = _AXIS_COLUMN[granularity]
    panels = list(rows.groupby(["pair", "pairing", "direction"], sort=True).groups)
    layer_order = rows.drop_duplicates("layer").sort_values("site_order")["layer"].tolist()
    columns = sorted(rows[column].dropna().astype(int).unique())
    finite = rows["value"].to_numpy(dtype=float)
    finite = finite[np.isfinite(finite)]
    scale = float(np.quantile(np.abs(finite), 0.99)) if finite.size else 1.0
    scale = scale if scale > 0 else 1.0
    width = min(18.0, 2.5 + 0.09 * len(columns)) if granularity == "position" else 2.5 + 0.45 * len(columns)
    fig = Figure(figsize=(width, (0.9 + 0.32 * len(layer_order)) * len(panels) + 0.4),
                 layout="constrained")
    axes = np.atleast_1d(fig.subplots(len(panels), 1, squeeze=False)[:, 0])
    image = None
    for ax, (pair, pairing, direction) in zip(axes, panels, strict=True):
        panel = rows[(rows["pair"] == pair) & (rows["pairing"] == pairing) & (rows["direction"] == direction)]
        grid = (panel.assign(col=panel[column].astype(int))
                .pivot_table(index="layer", columns="col", values="value", aggfunc="mean")
                .reindex(index=layer_order, columns=columns))
        image = ax.imshow(grid.to_numpy(dtype=float), aspect="auto", cmap="RdBu_r",
                          vmin=-scale, vmax=scale, interpolation="nearest")
        ax.set_yticks(range(len(layer_order)), layer_order, fontsize=7)
        step = max(1, len(columns) // 16)
        ticks = list(range(0, len(columns), step))
        labels = [str(columns[i]) for i in ticks]
        vit_tokens = rows["site"].astype(str).str.match(r"^(blocks\.|hook_embed$)").all()
        if granularity == "position" and columns and columns[0] == 0 and vit_tokens:
            labels[0] = "cls"
        ax.set_xticks(ticks, labels, fontsize=7)
        ax.set_xlabel({"position": "position (ViT: token, 0 = class; ResNet: row-major grid)",
                       "head": "head", "channel_group": "first channel of group"}[granularity],
                      fontsize=8)
        ax.set_title(f"{pair}: {direction}, {pairing}", fontsize=9)
    if image is not None:
        fig.colorbar(image, ax=list(axes), label=statistic, shrink=0.8)
    return _save(fig, path)
