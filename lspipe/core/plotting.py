"""Figure output shared by every figure: a headless backend, one style, atomic PDF/PNG files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from lspipe.base.defaults import default  # noqa: E402
from lspipe.base.io import atomic_path  # noqa: E402

STYLE = {
    "figure.dpi": 100,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "font.size": 9,
    "legend.fontsize": 8,
    "legend.frameon": False,
}


def new_figure(nrows: int = 1, ncols: int = 1, size: tuple[float, float] | None = None, **kwargs):
    plt.rcParams.update(STYLE)
    size = size or (3.2 * ncols, 2.8 * nrows)
    return plt.subplots(nrows, ncols, figsize=size, squeeze=False, **kwargs)


def save_figure(fig, paths: Sequence[str | os.PathLike], dpi: int = default("figures.dpi")) -> None:
    """Write ``fig`` to every path (format from the suffix), each atomically, then close it."""
    for p in paths:
        p = Path(p)
        with atomic_path(p) as tmp:
            fig.savefig(tmp, format=p.suffix.lstrip("."), dpi=dpi, bbox_inches="tight")
    plt.close(fig)
