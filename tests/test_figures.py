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


# --------------------------------------------------------------------------- layouts: no overlaps, one font scale

FIGURES = ("fig1", "fig2", "teacher_projections", "fig5", "fig6", "learning_curves")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


def _draw(kind, tmp_path, monkeypatch, scale):
    """Figure ``kind`` drawn from small inputs at ``figures.scale`` ``scale``; the figure itself (not saved)."""
    import json

    import lspipe.core.plotting as plotting
    from lspipe.experiments import distill, learning_curves
    from lspipe.experiments import teacher_projection as TP

    figs = []
    monkeypatch.setattr(plotting, "save_figure", lambda fig, out, dpi=None: figs.append(fig))
    tmp_path.mkdir(parents=True, exist_ok=True)
    out = [tmp_path / "f.png"]
    if kind == "fig1":
        from test_projection import _toy_dump

        hard, ls = _toy_dump(tmp_path / "h.h5", 0.0, 1), _toy_dump(tmp_path / "l.h5", 0.1, 2)
        rows = [{"dataset": "toy", "arch": "mlp", "classes": ["zero", "one", "two"]},
                {"dataset": "toy", "arch": "mlp", "classes": ["one", "two", "three"],
                 "title": "a long row title: semantically similar classes one and two, and three for contrast"}]
        projection.projection_figure(rows, [hard, hard], [ls, ls], out, per_class=5, ls_alpha=0.1, scale=scale)
    elif kind == "teacher_projections":
        from test_teacher_projection import _dump

        hard, ls = _dump(tmp_path / "h.h5", 0.0, 1.0), _dump(tmp_path / "l.h5", 0.1, 0.05, seed=1)
        TP.teacher_projection_figure(hard, ls, ["two", "zero", "one"], out, per_class=6, ls_alpha=0.1, scale=scale)
    elif kind == "fig2":
        paths = []
        for i, alpha in enumerate((0.0, 0.1)):
            paths.append(tmp_path / f"{i}.json")
            paths[-1].write_text(json.dumps(_cal_result(0, [0] * 10 + [3, 2, 40, 100, 200], alpha)))
        C.reliability_figure(paths, out, ls_alpha=0.1, scale=scale)
    elif kind == "fig5":
        base = {"dataset": "d", "teacher_arch": "resnet20", "student_arch": "mlp", "split": "test", "seeds": 2,
                "form": "teacher", "temperature": "", "teacher_alpha": ""}
        rows = [{**base, "family": fam, "gamma_mean": g, "gamma_min": g, "gamma_max": g + 0.01,
                 "accuracy_pct_mean": 90 + k, "accuracy_pct_min": 89 + k, "accuracy_pct_max": 91 + k,
                 "temperature": 2.0 if fam == "kd_hard" else "", "teacher_alpha": 0.1 if fam == "kd_ls" else ""}
                for k, (fam, g) in enumerate([("teacher", 0.0), ("teacher", 0.1), ("baseline", 0.0), ("baseline", 0.1),
                                              ("kd_hard", 0.05), ("kd_hard", 0.2), ("kd_ls", 0.15)])]
        distill.plot_distillation(rows, out, gamma_note="whole training split, n = 1000", scale=scale)
    elif kind == "fig6":
        figs.append(mi.plot_mi(_mi_table(2, [1.0, 1.5, 1.2], [1.1, 1.6, 1.3]), "d / a: Y = logit(1) - logit(7)",
                               scale=scale))
    else:
        from test_learning_curves import _metrics

        paths = [_metrics(tmp_path / "m" / f"a{a}_s{s}" / "metrics.csv", [10, 20, 30], [2.0, 1.0 + a, 0.5 + a],
                          [0.5, 0.8, 0.9 - s / 10]) for a in (0, 0.1) for s in (0, 1)]
        learning_curves.learning_curves_figure(paths, out, title="d / a", scale=scale)
    return figs[-1]


@pytest.mark.parametrize("scale", [1.0, 2.0])
@pytest.mark.parametrize("kind", FIGURES)
def test_titles_and_labels_do_not_overlap(kind, scale, tmp_path, monkeypatch):
    from lspipe.core import plotting

    fig = _draw(kind, tmp_path, monkeypatch, scale)
    assert len(plotting._texts(fig)) >= 4  # a title, axis labels and a legend at least
    assert plotting.text_overlaps(fig) == []


def test_the_overlap_check_finds_an_overlap():
    from lspipe.core import plotting

    fig, axes = plotting.new_figure(1, 2)
    axes[0, 0].set_title("a title long enough to run into its neighbour's title " * 2)
    axes[0, 1].set_title("the neighbour")
    fig.suptitle("suptitle")
    assert any("axes 0 title" in pair and "axes 1 title" in pair for pair in plotting.text_overlaps(fig))


@pytest.mark.parametrize("kind", FIGURES)
def test_every_figure_honours_figures_scale(kind, tmp_path, monkeypatch):
    """Every title, label and tick label is twice as large at figures.scale 2 as at 1 (and the figure 1.41 times)."""
    from lspipe.core import plotting

    def sizes(fig):
        texts = [t.get_texts()[0] if hasattr(t, "get_texts") else t for _, t in plotting._texts(fig)]  # legends: a label
        texts += [ax.xaxis.get_ticklabels()[0] for ax in fig.axes if ax.xaxis.get_ticklabels()]
        return np.array([t.get_fontsize() for t in texts]), fig.get_size_inches()

    (one, size1), (two, size2) = (sizes(_draw(kind, tmp_path / str(s), monkeypatch, s)) for s in (1.0, 2.0))
    assert len(one) == len(two) >= 4 and one.max() <= 10
    np.testing.assert_allclose(two, 2 * one)
    np.testing.assert_allclose(size2, size1 * math.sqrt(2))


def test_fig1_row_titles_stand_above_their_rows_not_in_the_y_label(tmp_path, monkeypatch):
    fig = _draw("fig1", tmp_path, monkeypatch, 1.0)
    fig.canvas.draw()  # the constrained layout places the texts
    assert [sf._suptitle.get_text().replace("\n", " ") for sf in fig.subfigs] == [
        "toy / mlp", "a long row title: semantically similar classes one and two, and three for contrast"]
    for row in fig.subfigs:
        axes = row.axes
        assert axes[0].get_ylabel() == "plane axis 2" and all(ax.get_ylabel() == "" for ax in axes[1:])
        assert all(ax.get_xlabel() == "plane axis 1" for ax in axes)
        # the row's suptitle is above every panel title of its row, the figure's above every row
        assert min(ax.title.get_window_extent().y0 for ax in axes) < row._suptitle.get_window_extent().y0
    assert fig._suptitle.get_window_extent().y0 > max(sf._suptitle.get_window_extent().y1 for sf in fig.subfigs)


def test_teacher_projections_share_one_scale_and_label_their_axes(tmp_path, monkeypatch):
    fig = _draw("teacher_projections", tmp_path, monkeypatch, 1.0)
    hard, ls = fig.axes[:2]
    assert (hard.get_xlabel(), hard.get_ylabel(), ls.get_xlabel()) == ("plane axis 1", "plane axis 2", "plane axis 1")
    widths = [np.ptp(ax.get_xlim()) for ax in (hard, ls)] + [np.ptp(ax.get_ylim()) for ax in (hard, ls)]
    assert max(widths) == pytest.approx(min(widths))  # one scale: the same square span in both panels


def test_fig2_panels_align_and_edge_markers_are_whole(tmp_path, monkeypatch):
    fig = _draw("fig2", tmp_path, monkeypatch, 1.0)
    ax, hax = fig.axes[:2]
    fig.canvas.draw()
    (a, b) = (ax.get_position(), hax.get_position())
    assert a.x0 == pytest.approx(b.x0) and a.x1 == pytest.approx(b.x1)  # same width, the bins line up
    assert ax.get_shared_x_axes().joined(ax, hax)
    drawn = [c for c in ax.collections if len(c.get_offsets())] + [ln for ln in ax.lines if len(ln.get_xdata()) > 2]
    assert drawn and not any(c.get_clip_on() for c in drawn)  # a marker at accuracy 1 is not cut in half
    hollow = [c for c in ax.collections if len(c.get_offsets()) and len(c.get_facecolors()) == 0]
    filled = [c for c in ax.collections if len(c.get_offsets()) and len(c.get_facecolors())]
    assert all(c.get_alpha() < 0.5 for c in hollow)  # faint: low-count bins do not dominate the panel
    assert max(c.get_sizes().max() for c in hollow) < min(c.get_sizes().min() for c in filled)
