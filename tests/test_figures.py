"""Figures that show the effects: Fig. 1 one scale per row, Fig. 6 y-range and labels, Fig. 2
low-count bins; and a benchmark on every table and figure rule."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from conftest import REPO
from lspipe.experiments import calibration as C
from lspipe.experiments import mi, projection


def test_fig1_panels_of_a_row_share_one_scale():
    from lspipe.core.plotting import new_figure

    rng = np.random.default_rng(0)
    panels = []
    for scale, shift in ((1.0, 0.0), (0.1, 5.0), (3.0, -2.0), (0.5, 0.0)):
        pts = rng.normal(size=(30, 2)) * scale + shift
        tpl = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]) * scale + shift
        panels.append(projection.Panel(pts, np.repeat([0, 1, 2], 10), tpl, "val"))
    fig, axes = new_figure(1, 4)
    width = projection.share_row_scale(axes[0], panels)
    extents = [np.ptp(np.vstack([p.points, p.templates]), axis=0).max() for p in panels]
    assert width == pytest.approx(max(extents) * 1.12)
    for ax, p in zip(axes[0], panels):
        (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
        assert x1 - x0 == pytest.approx(width) and y1 - y0 == pytest.approx(width)
        xy = np.vstack([p.points, p.templates])  # every point of the panel is visible
        assert xy[:, 0].min() >= x0 and xy[:, 0].max() <= x1 and xy[:, 1].min() >= y0 and xy[:, 1].max() <= y1


def _mi_table(seeds, lows, highs):
    return [{"alpha": a, "step": s, "seeds": seeds, "mi_mean": (lo + hi) / 2, "mi_min": lo, "mi_max": hi,
             "mi_std": 0.0, "n": 600, "copies": 5, "log_n": math.log(600), "log_2": math.log(2)}
            for a in (0.0, 0.1) for s, lo, hi in zip((0, 10, 20), lows, highs)]


def test_fig6_y_range_shows_the_gap_and_names_off_scale_bounds():
    table = _mi_table(1, [1.0, 1.5, 1.2], [1.0, 1.6, 1.3])
    lo, hi = mi.mi_ylim(table)
    assert lo == pytest.approx(1.0 - 0.08 * 0.6) and hi == pytest.approx(1.6 + 0.08 * 0.6)
    fig = mi.plot_mi(table, "t")
    ax = fig.axes[0]
    assert ax.get_ylim() == pytest.approx((lo, hi))
    texts = " ".join(t.get_text() for t in ax.texts)
    assert "log N = 6.40 (N = 600) above" in texts and "log 2 = 0.69 below" in texts
    assert "1 seed: no spread" in ax.get_title() and "seed(s)" not in ax.get_title()
    fig = mi.plot_mi(_mi_table(3, [0.2, 3.0, 0.5], [0.3, 6.5, 0.8]), "t")
    ax = fig.axes[0]
    assert "off scale" not in " ".join(t.get_text() for t in ax.texts)  # both bounds inside: drawn as lines
    assert "band over 3 seeds" in ax.get_title()


def _cal_result(seed, conf_counts, alpha):
    edges = np.linspace(0, 1, 16)
    count = np.array(conf_counts)
    acc = np.where(count > 0, 0.5, np.nan)
    conf = np.where(count > 0, (edges[:-1] + edges[1:]) / 2, np.nan)
    rel = C.Reliability(edges, count, acc, conf, 0.1, int(count.sum())).to_dict()
    return {"model": {"dataset": "d", "arch": "a", "alpha": alpha, "seed": seed}, "bins": 15, "split": "test",
            "temperature": 1.5, "before": {"ece": 0.1, "reliability": rel}, "after": {"ece": 0.05, "reliability": rel}}


def test_fig2_low_count_bins_are_hollow(tmp_path, monkeypatch):
    import json

    counts = [0] * 10 + [3, 2, 40, 100, 200]  # two bins below the minimum count
    paths = []
    for i, alpha in enumerate((0.0, 0.1)):
        p = tmp_path / f"{i}.json"
        p.write_text(json.dumps(_cal_result(0, counts, alpha)))
        paths.append(p)
    captured = {}
    import lspipe.core.plotting

    monkeypatch.setattr(lspipe.core.plotting, "save_figure", lambda fig, out, dpi: captured.setdefault("fig", fig))
    C.reliability_figure(paths, [tmp_path / "f.png"], ls_alpha=0.1, min_count=10)
    ax, hax = captured["fig"].axes[:2]
    hollow = [c for c in ax.collections if len(c.get_offsets()) and len(c.get_facecolors()) == 0]
    filled = [c for c in ax.collections if len(c.get_offsets()) and len(c.get_facecolors())]
    assert [len(c.get_offsets()) for c in hollow] == [2, 2, 2]  # per curve: the 3- and 2-example bins
    assert [len(c.get_offsets()) for c in filled] == [3, 3, 3]
    sizes = filled[0].get_sizes()
    assert sizes[0] < sizes[1] < sizes[2]  # marker area grows with the count
    assert all(len(line.get_xdata()) in (2, 3) for line in ax.lines)  # the diagonal, and curves of 3 full bins
    assert "examples" in hax.get_ylabel() and "examples per confidence bin" in hax.get_title()


def test_every_table_and_figure_rule_has_a_benchmark():
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        text = smk.read_text()
        blocks = re.split(r"\n(?=rule \w+:|    rule:)", text)
        for block in blocks:
            m = re.match(r"rule (\w+):", block.strip())
            name = m.group(1) if m else "?"
            makes_result = re.search(r"/(tables|figures)/|figure_paths\(|claims\.md", block.split("log:")[0])
            if m and makes_result:
                assert "benchmark:" in block, f"{smk.name}: rule {name} writes a table or figure without a benchmark"
