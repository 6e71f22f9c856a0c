"""Figures drawn from the tidy result tables only (matplotlib, no pyplot global state).

Shared pieces: :func:`save_figure` (the one function that writes a figure: PNG plus a vector
PDF beside it, atomically), :func:`domain_heatmap` (a domain x domain matrix with the diagonal
masked and the colour scale set by the off-diagonal values) and :func:`split_references`
(a table's measured rows and its reference rows, :data:`REFERENCE_STYLE` for drawing them).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.image import AxesImage

#: The ``reference`` value of a measured row (issue 13's tables; a table without the column
#: holds measured rows only).
MEASURED = "none"
#: Line style of a reference drawn beside the measured line, in the measured line's colour.
REFERENCE_STYLE = {"init": "--"}


def split_references(table: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """``(measured rows, {reference: rows})`` of a table with an optional ``reference``
    column (no column: every row is measured)."""
    if "reference" not in table.columns:
        return table, {}
    ref = table["reference"].fillna(MEASURED).astype(str)
    others = {str(r): table[ref == r] for r in dict.fromkeys(ref) if r != MEASURED}
    return table[ref == MEASURED], others


def reference_handles(references: dict[str, pd.DataFrame]) -> list:
    """Legend entries for the drawn references (``init``: "dashed: init (epoch 0)")."""
    from matplotlib.lines import Line2D

    return [Line2D([], [], color="0.3", lw=1.0, ls=style, label=f"{name} reference (epoch 0)"
                   if name == "init" else f"{name} reference")
            for name, style in REFERENCE_STYLE.items()
            if name in references and not references[name].empty]


def off_diagonal_limits(matrices: Sequence[pd.DataFrame]) -> tuple[float, float]:
    """Colour limits ``(low, high)`` from the finite off-diagonal cells of square matrices
    (a little room when they are all equal; ``(0, 1)`` when there are none)."""
    cells = []
    for matrix in matrices:
        values = matrix.to_numpy(dtype=float)
        cells.append(values[~np.eye(len(values), dtype=bool)])
    finite = np.concatenate(cells) if cells else np.array([])
    finite = finite[np.isfinite(finite)]
    if not finite.size:
        return 0.0, 1.0
    low, high = float(finite.min()), float(finite.max())
    if high - low < 1e-9:
        low, high = low - 0.05, high + 0.05
    return low, high


def domain_heatmap(
    ax: Axes, matrix: pd.DataFrame, domains: Sequence[str], title: str,
    annotate: bool = True, title_size: int = 8, limits: tuple[float, float] | None = None,
    spread: pd.DataFrame | None = None,
) -> AxesImage:
    """Draw a domain x domain similarity matrix on ``ax`` with the diagonal masked (a domain
    against itself is 1 by construction and would flatten the scale), coloured between
    ``limits`` (default: the off-diagonal minimum and maximum, :func:`off_diagonal_limits`;
    pass one pair to share a scale over panels). Values are written in the cells, with
    ``± spread`` (e.g. the std over seeds) where ``spread`` is given."""
    values = matrix.to_numpy(dtype=float).copy()
    values[np.eye(len(values), dtype=bool)] = np.nan
    low, high = limits if limits is not None else off_diagonal_limits([matrix])
    from matplotlib import colormaps

    cmap = colormaps["viridis"].with_extremes(bad="white")
    image = ax.imshow(np.ma.masked_invalid(values), vmin=low, vmax=high, cmap=cmap)
    ax.set_xticks(range(len(domains)), domains, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(domains)), domains, fontsize=7)
    ax.set_title(title, fontsize=title_size)
    if annotate:
        for r in range(len(domains)):
            for c in range(len(domains)):
                v = values[r, c]
                if not np.isfinite(v):
                    continue
                text = f"{v:.2f}"
                if spread is not None and np.isfinite(spread.iat[r, c]):
                    text += f"\n±{spread.iat[r, c]:.2f}"
                ax.text(c, r, text, ha="center", va="center", fontsize=5 if spread is not None else 6,
                        color="white" if image.norm(v) < 0.6 else "black")
    return image


def save_figure(fig: Figure, path: str | Path, dpi: int = 150, pdf: bool = True,
                **kwargs: Any) -> Path:
    """Write ``fig`` to ``path`` (PNG/PDF/SVG by suffix, default PNG) atomically, creating
    folders; a PNG also gets a vector PDF beside it (``pdf``: same figure, same style).
    ``kwargs`` go to ``savefig``; returns ``path``. The one save function of every figure."""
    from training.util.files import atomic_path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    kind = path.suffix.lstrip(".").lower() or "png"
    targets = [(path, kind)]
    if pdf and kind == "png":
        targets.append((path.with_suffix(".pdf"), "pdf"))
    for target, fmt in targets:
        with atomic_path(target) as tmp:
            fig.savefig(tmp, dpi=dpi, format=fmt, **kwargs)
    return path
