"""The distillation teachers' projections (the slides' last pages): plan, spread measure, figure."""

from __future__ import annotations

import numpy as np
import pytest

from lspipe import cli
from lspipe.base.errors import ConfigError
from lspipe.engine.dumpfile import Dump, write_h5
from lspipe.experiments import teacher_projection as TP
from lspipe.experiments.projection import extend, template_plane, templates

ENTRY = {"dataset": "toy", "teacher_arch": "mlp", "teacher_alphas": [0.0, 0.3, 0.1], "seeds": [4, 2],
         "teacher_projection": {"classes": ["zero", "one", "two"], "ls_alpha": None, "per_class": 7, "seed": 1}}


def test_plan_picks_the_smallest_ls_teacher_of_the_lowest_seed():
    p = TP.plan(ENTRY, "distillation[0]")
    assert p == {"classes": ["zero", "one", "two"], "ls_alpha": 0.1, "per_class": 7, "seed": 1, "teacher_seed": 2,
                 "teacher_arch": "mlp"}
    assert TP.plan({**ENTRY, "teacher_projection": {**ENTRY["teacher_projection"], "ls_alpha": 0.3}})["ls_alpha"] == 0.3
    assert TP.plan({**ENTRY, "teacher_projection": None}) is None
    with pytest.raises(ConfigError, match=r"distillation\[0\]\.teacher_projection\.ls_alpha 0\.2 is not a nonzero alpha"):
        TP.plan({**ENTRY, "teacher_projection": {**ENTRY["teacher_projection"], "ls_alpha": 0.2}}, "distillation[0]")
    with pytest.raises(ConfigError, match="has no alpha > 0"):
        TP.plan({**ENTRY, "teacher_alphas": [0.0]}, "distillation[0]")


def test_class_spread_by_hand():
    t = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0]])
    # class 0: two points at distances (1, 3) and (1, 3) from template 1 -> no spread w.r.t. template 1
    pts = np.array([[1.0, 0.0], [3.0, 0.0], [2.0, 1.0], [2.0, 3.0], [0.0, 1.0], [0.0, 3.0]])
    labels = np.array([0, 0, 1, 1, 2, 2])
    scale = (2 + 2 + np.sqrt(8)) / 3
    stds = []
    for c in range(3):
        sel = pts[labels == c]
        for j in range(3):
            if j != c:
                stds.append(np.std([np.hypot(*(q - t[j])) for q in sel]))
    assert TP.class_spread(pts, labels, t) == pytest.approx(np.mean(stds) / scale)
    # every example of a class at one point: no spread at all
    assert TP.class_spread(np.repeat(t * 0.5 + 0.2, 4, axis=0), np.repeat([0, 1, 2], 4), t) == pytest.approx(0.0)


def _dump(path, alpha, noise, seed=0):
    rng = np.random.default_rng(seed)
    k, d = 3, 5
    w, b = rng.normal(size=(k, d)), rng.normal(size=k)
    splits = {}
    for split, n in (("train", 60), ("val", 12), ("test", 12)):
        y = np.arange(n) % k
        f = (w[y] + noise * rng.normal(size=(n, d))).astype(np.float32)
        splits[split] = (y, np.arange(n), lambda a, e, f=f, lg=(f @ w.T + b).astype(np.float32): (f[a:e], lg[a:e]))
    write_h5(path, classes=["zero", "one", "two"], weight=w, bias=b, splits=splits, chunk_rows=8,
             attrs={"alpha": alpha, "dataset": "toy", "arch": "mlp", "role": "teacher", "seed": 2})
    return path


def test_figure_projects_training_examples_of_both_teachers(tmp_path):
    from matplotlib.image import imread

    hard, ls = _dump(tmp_path / "h.h5", 0.0, 1.0), _dump(tmp_path / "l.h5", 0.1, 0.05, seed=1)
    out = [tmp_path / "f.png", tmp_path / "f.pdf"]
    panels = TP.teacher_projection_figure(hard, ls, ["two", "zero", "one"], out, per_class=6, seed=0, ls_alpha=0.1, dpi=40)
    assert [p.split for p in panels] == ["train", "train"] and imread(out[0]).ndim == 3 and out[1].stat().st_size > 1000
    d = Dump(hard)
    s = d.split("train")
    t = templates(d.weight, d.bias)[[2, 0, 1]]
    np.testing.assert_allclose(panels[0].templates, template_plane(t).project(t))
    assert panels[0].points.shape == (18, 2)
    allp = template_plane(t).project(extend(s.features))  # every drawn point is a projected training row
    assert all(np.isclose(allp, q).all(1).any() for q in panels[0].points)
    # the smoothed (here: tight) teacher has the smaller spread
    assert TP.class_spread(panels[1].points, panels[1].labels, panels[1].templates) < \
        TP.class_spread(panels[0].points, panels[0].labels, panels[0].templates)
    with pytest.raises(ValueError, match="expected hard 0 and LS 0.3"):
        TP.teacher_projection_figure(hard, ls, ["zero", "one", "two"], out, ls_alpha=0.3)
    assert cli.main(["teacher-projections", "--hard", str(hard), "--ls", str(ls), "--classes", '["zero", "one", "six"]',
                     "--out", str(out[0])]) == 2  # unknown class: a clear error naming the key
