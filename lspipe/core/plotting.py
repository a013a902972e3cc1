"""Figure output shared by every figure: a headless backend, one style, atomic PDF/PNG files.

Font sizes scale with ``figures.scale`` (slides: 1.5 to 2): :func:`new_figure` sets the style at
that scale, and a figure gives every explicit size in points at scale 1 through :func:`font`,
so every text of every figure grows alike. The figure grows by the square root of the scale
(:func:`grow`), so the text takes more of it while panels keep room: at scale 2 the fonts are
twice as large and the figure 1.41 times as wide and high, text 1.41 times larger relative to it.
:func:`text_overlaps` is the check that titles and labels stay apart (tests run it on each figure).
"""

from __future__ import annotations

import itertools
import math
import os
import textwrap
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from lspipe.base.defaults import default  # noqa: E402
from lspipe.base.io import atomic_path  # noqa: E402

FONT_SIZE = 9.0  # points of ordinary text (axis labels, titles) at figures.scale 1
PAD = 4 / 72  # inches around each axes and its texts under the constrained layout, at scale 1 (matplotlib's: 3/72)
STYLE = {
    "figure.dpi": 100,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.frameon": False,
}
FONTS = {"font.size": 9.0, "legend.fontsize": 8.0, "axes.titlesize": 9.0, "axes.labelsize": 9.0,
         "xtick.labelsize": 8.0, "ytick.labelsize": 8.0, "figure.titlesize": 9.0}  # points at scale 1


def style(scale: float = default("figures.scale")) -> dict:
    """The rc settings of every figure, fonts at ``scale`` (``figures.scale``)."""
    return {**STYLE, **{k: v * float(scale) for k, v in FONTS.items()}}


def font(points: float) -> float:
    """A font size given in points at scale 1, at the scale of the figure being drawn (:func:`new_figure`'s)."""
    return points * plt.rcParams["font.size"] / FONT_SIZE


def grow(size: tuple[float, float], scale: float) -> tuple[float, float]:
    """A figure size given at scale 1, at ``scale``: each side times the square root of the scale."""
    g = math.sqrt(float(scale))
    return size[0] * g, size[1] * g


def fit(text: str, width: float, points: float) -> str:
    """``text`` wrapped (each of its lines) to about ``width`` inches of the figure at scale 1 at
    ``points`` (at scale 1, as :func:`font`), so that a title stays within its axes or figure at any
    ``figures.scale`` (the width grows with :func:`grow`, the text with :func:`font`)."""
    g = math.sqrt(plt.rcParams["font.size"] / FONT_SIZE)
    chars = max(12, int(width * g * 72 / (0.6 * font(points))))
    return "\n".join(textwrap.fill(line, chars) if line else line for line in text.split("\n"))


def new_figure(nrows: int = 1, ncols: int = 1, size: tuple[float, float] | None = None, *,
               scale: float = default("figures.scale"), **kwargs):
    """A figure of ``nrows`` x ``ncols`` axes (a 2-d array), in the style at ``scale``."""
    plt.rcParams.update(style(scale))
    size = grow(size or (3.2 * ncols, 2.8 * nrows), scale)
    fig, axes = plt.subplots(nrows, ncols, figsize=size, squeeze=False, **kwargs)
    if kwargs.get("layout") == "constrained":
        fig.get_layout_engine().set(h_pad=PAD * scale, w_pad=PAD * scale)  # room between texts grows with them
    return fig, axes


def new_row_figure(nrows: int, ncols: int, size: tuple[float, float], *, scale: float = default("figures.scale")):
    """A figure of ``nrows`` rows of ``ncols`` axes, each row a subfigure (for its own title and
    legend), laid out by matplotlib's constrained layout so that no title or label overlaps another:
    ``(fig, rows, axes)``, ``rows`` the subfigures, ``axes`` a 2-d array."""
    import numpy as np

    plt.rcParams.update(style(scale))
    fig = plt.figure(figsize=grow(size, scale), layout="constrained")
    fig.get_layout_engine().set(h_pad=PAD * scale, w_pad=PAD * scale)  # room between texts grows with them
    rows = list(np.ravel(fig.subfigures(nrows, 1, squeeze=False)))
    axes = np.array([list(np.ravel(r.subplots(1, ncols, squeeze=False))) for r in rows])
    return fig, rows, axes


def new_column_figure(ncols: int, size: tuple[float, float], *, scale: float = default("figures.scale")):
    """A figure of ``ncols`` panels side by side, each a subfigure of one axes (for its own legend below
    it), under the constrained layout: ``(fig, columns, axes)``."""
    import numpy as np

    plt.rcParams.update(style(scale))
    fig = plt.figure(figsize=grow(size, scale), layout="constrained")
    fig.get_layout_engine().set(h_pad=PAD * scale, w_pad=PAD * scale)
    cols = list(np.ravel(fig.subfigures(1, ncols, squeeze=False)))
    return fig, cols, [c.subplots() for c in cols]


def save_figure(fig, paths: Sequence[str | os.PathLike], dpi: int = default("figures.dpi")) -> None:
    """Write ``fig`` to every path (format from the suffix), each atomically, then close it."""
    for p in paths:
        p = Path(p)
        with atomic_path(p) as tmp:
            fig.savefig(tmp, format=p.suffix.lstrip("."), dpi=dpi, bbox_inches="tight")
    plt.close(fig)


def _texts(fig) -> list[tuple[str, object]]:
    """(name, artist) of every non-empty title and label of ``fig``: suptitles (of the figure and its
    subfigures), axes titles (left, centre, right) and axis labels, and the legends."""
    out = []
    for i, f in enumerate([fig, *getattr(fig, "subfigs", [])]):
        if getattr(f, "_suptitle", None) is not None and f._suptitle.get_text():
            out.append(("suptitle" if i == 0 else f"row {i - 1} title", f._suptitle))
        out += [(f"{'figure' if i == 0 else f'row {i - 1}'} legend {j}", leg) for j, leg in enumerate(f.legends)]
    for i, ax in enumerate(fig.get_axes()):
        for loc in ("left", "center", "right"):
            t = ax.get_title(loc)
            if t:
                out.append((f"axes {i} title {t!r}", ax._left_title if loc == "left" else
                            (ax.title if loc == "center" else ax._right_title)))
        for which, label in (("x", ax.xaxis.label), ("y", ax.yaxis.label)):
            if label.get_text() and label.get_visible():
                out.append((f"axes {i} {which} label {label.get_text()!r}", label))
        if ax.get_legend() is not None:
            out.append((f"axes {i} legend", ax.get_legend()))
    return out


def text_overlaps(fig) -> list[str]:
    """The pairs of titles, labels and legends of ``fig`` whose boxes overlap once drawn (empty: none do)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [(name, t.get_window_extent(renderer)) for name, t in _texts(fig)]
    return [f"{a} / {b}" for (a, p), (b, q) in itertools.combinations(boxes, 2) if p.overlaps(q)]
