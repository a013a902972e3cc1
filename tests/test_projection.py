"""Template-plane projections (Fig. 1): the plane's geometry, example selection, the figure."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from lspipe.base.errors import ConfigError
from lspipe.engine.dumpfile import Dump, write_h5
from lspipe.experiments import projection as P


def _pairwise(x):
    return np.linalg.norm(x[:, None, :] - x[None, :, :], axis=-1)


@pytest.fixture
def geometry():
    rng = np.random.default_rng(0)
    d = 12
    w, b = rng.normal(size=(5, d)), rng.normal(size=5)
    feats = np.abs(rng.normal(2.0, 1.5, size=(60, d)))
    return w, b, feats


def test_templates_append_the_bias_and_reproduce_the_logits(geometry):
    w, b, feats = geometry
    t = P.templates(w, b)
    assert t.shape == (5, 13)
    np.testing.assert_array_equal(t[:, -1], b)
    np.testing.assert_allclose(P.extend(feats) @ t.T, feats @ w.T + b)


def test_basis_is_orthonormal_and_spans_the_templates_plane(geometry):
    w, b, _ = geometry
    t = P.templates(w, b)[[0, 2, 4]]
    plane = P.template_plane(t)
    np.testing.assert_allclose(plane.basis @ plane.basis.T, np.eye(2), atol=1e-12)
    np.testing.assert_allclose(plane.origin, t.mean(0))
    # t2 - t1 and t3 - t1 lie in the span of the basis (their residual after projection is zero)
    for v in (t[1] - t[0], t[2] - t[0]):
        np.testing.assert_allclose(plane.basis.T @ (plane.basis @ v), v, atol=1e-10)
    with pytest.raises(ValueError, match="collinear"):
        P.template_plane(np.stack([t[0], 2 * t[0], 3 * t[0]]))


def test_templates_land_on_the_triangle_of_their_distances(geometry):
    w, b, _ = geometry
    t = P.templates(w, b)[[1, 3, 4]]
    corners = P.template_plane(t).project(t)
    np.testing.assert_allclose(_pairwise(corners), _pairwise(t), rtol=1e-10)
    np.testing.assert_allclose(corners.mean(0), 0, atol=1e-12)  # the centroid is the origin


def test_class_order_changes_the_picture_only_by_a_rigid_motion(geometry):
    w, b, feats = geometry
    x = P.extend(feats)
    ref = None
    for perm in itertools.permutations([0, 2, 3]):
        t = P.templates(w, b)[list(perm)]
        plane = P.template_plane(t)
        pts = np.vstack([plane.project(x), plane.project(P.templates(w, b)[[0, 2, 3]])])
        if ref is None:
            ref = pts
        np.testing.assert_allclose(_pairwise(pts), _pairwise(ref), atol=1e-9)
    # and the projection is the orthogonal one: the residual is orthogonal to the plane
    resid = (x - plane.origin) - plane.project(x) @ plane.basis
    np.testing.assert_allclose(resid @ plane.basis.T, 0, atol=1e-9)


def test_select_rows_is_seeded_capped_and_independent_of_row_order():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, 300)
    index = rng.permutation(1000)[:300]
    rows = P.select_rows(labels, index, [2, 0, 3], per_class=20, seed=5)
    assert [np.sum(labels[rows] == c) for c in (2, 0, 3)] == [20, 20, 20]
    np.testing.assert_array_equal(rows, P.select_rows(labels, index, [2, 0, 3], per_class=20, seed=5))
    assert not np.array_equal(rows, P.select_rows(labels, index, [2, 0, 3], per_class=20, seed=6))
    # the same examples (by index) when the dump stores its rows in another order
    perm = rng.permutation(300)
    rows2 = P.select_rows(labels[perm], index[perm], [2, 0, 3], per_class=20, seed=5)
    assert set(index[perm][rows2]) == set(index[rows])
    few = P.select_rows(labels, index, [1], per_class=10_000, seed=0)
    assert len(few) == np.sum(labels == 1)  # all of them when a class has fewer


def test_unknown_or_repeated_class_name_is_a_clear_error():
    with pytest.raises(ConfigError, match=r"projections.rows\[1\].classes: unknown class name\(s\) \['dgo'\]; "
                                          r"the classes are: cat, dog, eel"):
        P.class_ids(["cat", "dog", "eel"], ["cat", "dgo", "eel"], "projections.rows[1]")
    with pytest.raises(ConfigError, match="repeats a class"):
        P.class_ids(["cat", "dog", "eel"], ["cat", "cat", "eel"])
    assert P.class_ids(["cat", "dog", "eel"], ["eel", "cat", "dog"]) == [2, 0, 1]


def _toy_dump(path, alpha, seed):
    rng = np.random.default_rng(seed)
    k, d = 4, 6
    w, b = rng.normal(size=(k, d)), rng.normal(size=k)
    splits = {}
    for split, n in (("train", 80), ("val", 40), ("test", 20)):
        y = np.arange(n) % k
        f = np.abs(rng.normal(size=(n, d)) + w[y]).astype(np.float32)
        lg = (f @ w.T + b).astype(np.float32)
        splits[split] = (y, np.arange(n), lambda a, e, f=f, lg=lg: (f[a:e], lg[a:e]))
    write_h5(path, classes=["zero", "one", "two", "three"], weight=w, bias=b, splits=splits,
             attrs={"alpha": alpha, "dataset": "toy", "arch": "mlp"}, chunk_rows=16)
    return path


def test_panel_and_figure(tmp_path):
    from matplotlib.image import imread

    hard, ls = _toy_dump(tmp_path / "h.h5", 0.0, 1), _toy_dump(tmp_path / "l.h5", 0.1, 2)
    d = Dump(hard)
    p = P.panel(d, ["three", "one", "zero"], "val", per_class=4, seed=0)
    assert p.points.shape == (12, 2) and sorted(np.bincount(p.labels)) == [4, 4, 4]
    s = d.split("val")
    rows = P.select_rows(s.labels, s.index, [3, 1, 0], 4, 0)
    t = P.templates(d.weight, d.bias)[[3, 1, 0]]
    plane = P.template_plane(t)
    np.testing.assert_allclose(p.points, plane.project(P.extend(s.features[rows])))
    np.testing.assert_allclose(p.templates, plane.project(t))
    np.testing.assert_array_equal(p.labels, [[3, 1, 0].index(c) for c in s.labels[rows]])

    out = [tmp_path / "f1.png", tmp_path / "f1.pdf"]
    cfg_rows = [{"dataset": "toy", "arch": "mlp", "classes": ["zero", "one", "two"]},
                {"dataset": "toy", "arch": "mlp", "classes": ["one", "two", "three"], "title": "similar"}]
    panels = P.projection_figure(cfg_rows, [hard, hard], [ls, ls], out, per_class=5, seed=0, ls_alpha=0.1, dpi=40)
    assert len(panels) == 2 and [q.split for q in panels[0]] == ["train", "val", "train", "val"]
    assert imread(out[0]).ndim == 3 and out[1].stat().st_size > 1000
    with pytest.raises(ConfigError, match=r"projections.rows\[0\].classes: unknown class"):
        P.projection_figure([{"dataset": "toy", "arch": "mlp", "classes": ["zero", "one", "six"]}], [hard], [ls], out)
    with pytest.raises(ValueError, match="expected hard 0 and LS 0.3"):
        P.projection_figure(cfg_rows[:1], [hard], [ls], out, ls_alpha=0.3)


def test_projection_models_use_the_lowest_seed():
    cfg = {"teachers": [{"dataset": "c", "arch": "a", "seeds": [3, 1, 2]}],
           "projections": {"rows": [{"dataset": "c", "arch": "a", "classes": ["x", "y", "z"]}]}}
    assert P.projection_models(cfg) == [("c", "a", 1)]
    cfg["projections"]["rows"].append({"dataset": "c", "arch": "b", "classes": ["x", "y", "z"]})
    with pytest.raises(ConfigError, match=r"projections.rows\[1\]: no teacher grid"):
        P.projection_models(cfg)
