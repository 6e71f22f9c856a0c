"""Figures drawn from the tidy result tables only (matplotlib, no pyplot global state)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.image import AxesImage


def domain_heatmap(
    ax: Axes, matrix: pd.DataFrame, domains: Sequence[str], title: str,
    annotate: bool = True, title_size: int = 8,
) -> AxesImage:
    """Draw a domain x domain similarity matrix in [0, 1] on ``ax``, values written in cells."""
    image = ax.imshow(matrix.to_numpy(dtype=float), vmin=0.0, vmax=1.0, cmap="viridis")
    ax.set_xticks(range(len(domains)), domains, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(domains)), domains, fontsize=7)
    ax.set_title(title, fontsize=title_size)
    if annotate:
        for r in range(len(domains)):
            for c in range(len(domains)):
                v = matrix.iat[r, c]
                if np.isfinite(v):
                    ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=6,
                            color="white" if v < 0.6 else "black")
    return image
