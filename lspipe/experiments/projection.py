"""Penultimate-layer projections onto the plane of three class templates (paper Fig. 1).

The method of the paper: the *template* of class ``k`` is row ``k`` of the last layer's weight
matrix with the bias appended, ``t_k = [w_k, b_k]``, so that the logit is ``z_k = <t_k, [x, 1]>``
for the penultimate activation ``x`` extended by a constant 1. For three classes the templates
span an affine plane (the plane *through* the three points). Its coordinates here:

* origin = the centroid of the three templates;
* basis = the two leading right-singular vectors of the centred templates (an orthonormal basis
  of ``span(t2 - t1, t3 - t1)``), signs fixed so that the first template has positive
  coordinates where possible (cosmetic only).

Activations ``[x, 1]`` are projected orthogonally onto the plane: ``u = B ([x, 1] - origin)``.
Templates go through the same map, so the drawn template positions are in the same coordinates
as the points (they land on a triangle with the templates' pairwise distances as side lengths).
A different order of the three classes changes the coordinates by a rigid motion only.

The tightness ratio of three classes' projected points (:func:`tightness`: mean class spread
over mean template distance) is printed in Fig. 1's panel titles, and computed for every teacher
dump of claim 2 over the Fig. 1 triples and (up to ``claims.tightness_triples``) every class
triple by ``lspipe tightness-table`` (:func:`tightness_rows`), which the claims report reads.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from lspipe.base.defaults import default
from lspipe.base.errors import ConfigError, DataError
from lspipe.base.runs import run_name
from lspipe.core.tables import write_csv
from lspipe.engine.dumpfile import Dump

COLUMNS = (("train", "hard"), ("val", "hard"), ("train", "ls"), ("val", "ls"))
SPLIT_TITLES = {"train": "training", "val": "validation", "test": "test"}


def templates(weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """K x (D + 1) templates: the weight rows with the bias appended (float64)."""
    w, b = np.asarray(weight, dtype=np.float64), np.asarray(bias, dtype=np.float64)
    if w.ndim != 2 or b.shape != (w.shape[0],):
        raise ValueError(f"weight must be K x D and bias K, got {w.shape} and {b.shape}")
    return np.hstack([w, b[:, None]])


def extend(features: np.ndarray) -> np.ndarray:
    """Activations extended by a constant 1 (N x (D + 1), float64)."""
    x = np.asarray(features, dtype=np.float64)
    return np.hstack([x, np.ones((len(x), 1))])


@dataclass
class Plane:
    origin: np.ndarray  # (D + 1,)
    basis: np.ndarray  # 2 x (D + 1), orthonormal rows

    def project(self, points: np.ndarray) -> np.ndarray:
        """Plane coordinates (N x 2) of points in template space (N x (D + 1))."""
        return (np.asarray(points, dtype=np.float64) - self.origin) @ self.basis.T


def template_plane(t: np.ndarray) -> Plane:
    """The affine plane through three templates (3 x (D + 1)); see the module docstring."""
    t = np.asarray(t, dtype=np.float64)
    if t.ndim != 2 or t.shape[0] != 3:
        raise ValueError(f"need exactly 3 templates, got shape {t.shape}")
    origin = t.mean(axis=0)
    _, s, vt = np.linalg.svd(t - origin, full_matrices=False)
    if s[0] == 0 or s[1] <= 1e-10 * s[0]:
        raise ValueError("the three templates are (nearly) collinear: they do not span a plane")
    basis = vt[:2].copy()
    first = (t[0] - origin) @ basis.T
    basis[first < 0] *= -1  # cosmetic: first template in the positive quadrant
    return Plane(origin, basis)


def select_rows(labels: np.ndarray, index: np.ndarray, class_ids: Sequence[int], per_class: int,
                seed: int) -> np.ndarray:
    """Up to ``per_class`` seeded random rows of each class (all of them when fewer exist).

    The draw depends only on the examples' prepared-split ``index`` values, the class and the
    seed, so every dump of the same data set selects the same examples.
    """
    labels, index = np.asarray(labels), np.asarray(index)
    out = []
    for c in class_ids:
        rows = np.flatnonzero(labels == c)
        rows = rows[np.argsort(index[rows], kind="stable")]
        if len(rows) == 0:
            raise DataError(f"no examples of class index {c} in this split")
        if len(rows) > per_class:
            rng = np.random.default_rng([seed, int(c)])
            rows = np.sort(rng.choice(rows, size=per_class, replace=False))
        out.append(rows)
    return np.concatenate(out)


def class_ids(classes: Sequence[str], names: Sequence[str], where: str = "projections.rows[]") -> list[int]:
    """Indices of the class names; a clear error for an unknown or repeated name."""
    classes = list(classes)
    unknown = [n for n in names if n not in classes]
    if unknown:
        raise ConfigError(f"{where}.classes: unknown class name(s) {unknown}; the classes are: {', '.join(classes)}")
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}.classes {list(names)} repeats a class; give three different classes")
    return [classes.index(n) for n in names]


@dataclass
class Panel:
    points: np.ndarray  # N x 2
    labels: np.ndarray  # N, position 0..2 in the row's class list
    templates: np.ndarray  # 3 x 2
    split: str


def panel(dump, names: Sequence[str], split: str, per_class: int, seed: int, where: str = "projections.rows[]") -> Panel:
    """Projection of ``per_class`` examples per class of ``split`` onto the classes' template plane."""
    ids = class_ids(dump.classes, names, where)
    t = templates(dump.weight, dump.bias)[ids]
    plane = template_plane(t)
    s = dump.split(split)
    rows = select_rows(s.labels, s.index, ids, per_class, seed)
    labels = np.array([ids.index(int(y)) for y in s.labels[rows]])  # position in `names`
    return Panel(plane.project(extend(s.features[rows])), labels, plane.project(t), split)


def projection_models(config: dict) -> list[tuple[str, str, int]]:
    """``(dataset, arch, seed)`` of each ``projections.rows`` entry: the lowest seed of its teacher grid."""
    grids = {(g["dataset"], g["arch"]): g for g in config["teachers"]}
    out = []
    for i, row in enumerate(config.get("projections", {}).get("rows", [])):
        g = grids.get((row["dataset"], row["arch"]))
        if g is None:
            raise ConfigError(f"projections.rows[{i}]: no teacher grid for dataset {row['dataset']!r} and arch "
                              f"{row['arch']!r} under teachers")
        out.append((g["dataset"], g["arch"], min(g["seeds"])))
    return out


class ProjectionPlan:
    """Fig. 1 in a configuration's workflow (``Plan.projection``): the teacher of each row
    (:func:`projection_models`, which checks ``projections.rows``) and the dumps drawn."""

    name = "projection"

    def __init__(self, plan):
        self._paths, self._config = plan.paths, plan.config
        self.models = projection_models(plan.config)  # (dataset, arch, seed) per row; raises ConfigError
        for i, row in enumerate(plan.config.get("projections", {}).get("rows", [])):
            plan.check_classes(row["dataset"], row["classes"], f"projections.rows[{i}].classes")

    def dumps(self, kind: str) -> list[str]:
        """Dump of each row's teacher: ``kind`` "hard" (alpha 0) or "ls" (``projections.ls_alpha``)."""
        alpha = {"hard": 0.0, "ls": self._config["projections"]["ls_alpha"]}[kind]
        return [self._paths.dump(d, a, "teacher", run_name(alpha, s)) for d, a, s in self.models]

    def targets(self) -> list[str]:
        return self._paths.figures("fig1_projections") if self._config.get("projections", {}).get("rows") else []


def class_labels(dump: Dump, names: Sequence[str]) -> list[str]:
    """How a figure shows classes: the display name a dump records for a WordNet-id class
    (``class_names``, from ImageNet's ``LOC_synset_mapping.txt``: "tench (n01440764)"), else the name."""
    shown = json.loads(dump.meta("class_names") or "{}")
    return [f"{shown[n]} ({n})" if n in shown else n for n in names]


def share_row_scale(axes_row, panels: Sequence[Panel], pad: float = 0.06) -> float:
    """One axis scale for every panel of a row: each panel is centred on its own points and
    templates, and every panel spans the same square width (the largest extent in the row, plus
    ``pad`` on each side), so distances compare across columns. Returns that width."""
    boxes = []
    for p in panels:
        xy = np.vstack([p.points, p.templates])
        lo, hi = xy.min(axis=0), xy.max(axis=0)
        boxes.append(((lo + hi) / 2, float(np.max(hi - lo))))
    width = max(w for _, w in boxes) * (1 + 2 * pad) or 1.0
    for ax, (centre, _) in zip(axes_row, boxes):
        ax.set_xlim(centre[0] - width / 2, centre[0] + width / 2)
        ax.set_ylim(centre[1] - width / 2, centre[1] + width / 2)
        ax.set_aspect("equal", adjustable="box")
    return width


# --------------------------------------------------------------------------- tightness (claim 2)


def tightness(points: np.ndarray, labels: np.ndarray, templates: np.ndarray) -> dict:
    """Tightness ratio of three classes' projected points (smaller = tighter).

    ``spread_c`` = mean Euclidean distance of class ``c``'s points (``labels == c``, c = 0, 1, 2)
    to their centroid; ``template_distance`` = mean of the three pairwise distances between the
    templates; ``ratio`` = mean of the three spreads / template distance. All in the same plane
    coordinates (the projected templates keep their pairwise distances, as they lie in the plane).
    """
    p = np.asarray(points, dtype=np.float64)
    y = np.asarray(labels)
    t = np.asarray(templates, dtype=np.float64)
    if t.shape[0] != 3:
        raise ValueError(f"need 3 templates, got {t.shape}")
    spreads = []
    for c in range(3):
        pc = p[y == c]
        if len(pc) == 0:
            raise ValueError(f"class position {c} has no points")
        spreads.append(float(np.linalg.norm(pc - pc.mean(axis=0), axis=1).mean()))
    dist = float(np.mean([np.linalg.norm(t[i] - t[j]) for i, j in ((0, 1), (0, 2), (1, 2))]))
    return {"spreads": spreads, "template_distance": dist, "ratio": float(np.mean(spreads) / dist)}


def class_triples(num_classes: int, count: int, seed: int) -> list[tuple[int, int, int]]:
    """All sorted class triples when there are at most ``count``, else ``count`` distinct seeded random ones."""
    total = math.comb(num_classes, 3)
    if total <= count:
        return list(itertools.combinations(range(num_classes), 3))
    rng = np.random.default_rng(seed)
    seen: set[tuple[int, int, int]] = set()
    out = []
    while len(out) < count:
        tri = tuple(sorted(int(c) for c in rng.choice(num_classes, 3, replace=False)))
        if tri not in seen:
            seen.add(tri)
            out.append(tri)
    return out


TIGHTNESS_FIELDS = ["dataset", "arch", "alpha", "seed", "run", "split", "kind", "row", "classes", "n",
                    "spread_0", "spread_1", "spread_2", "template_distance", "ratio"]


TIGHTNESS_SPLITS = ("train", "val")  # the paper's Fig. 1 shows both


def tightness_rows(dump_paths: Sequence[str | Path], fig1_rows: Sequence[dict], *,
                   triples: int = default("claims.tightness_triples"), seed: int = default("claims.tightness_seed"),
                   splits: Sequence[str] = TIGHTNESS_SPLITS) -> list[dict]:
    """Tightness of every dump on each of ``splits``: each Fig. 1 row of its dataset/arch (kind
    ``fig1``) and ``triples`` class triples (kind ``random``; all when there are at most that many;
    the same triples for every dump of a dataset), with every example of the three classes."""
    rows = []
    for path in dump_paths:
        d = Dump(path)
        ds, arch = d.meta("dataset"), d.meta("arch")
        todo = [("fig1", i, list(r["classes"])) for i, r in enumerate(fig1_rows)
                if r["dataset"] == ds and r["arch"] == arch]
        todo += [("random", i, [d.classes[c] for c in tri])
                 for i, tri in enumerate(class_triples(len(d.classes), triples, seed))]
        for split in splits:
            base = {"dataset": ds, "arch": arch, "alpha": float(d.meta("alpha")), "seed": int(d.meta("seed")),
                    "run": d.meta("run"), "split": split}
            for kind, i, names in todo:
                p = panel(d, names, split, per_class=10**12, seed=0, where=f"projections.rows[{i}]")
                t = tightness(p.points, p.labels, p.templates)
                rows.append({**base, "kind": kind, "row": i, "classes": "|".join(names), "n": int(len(p.labels)),
                             "spread_0": t["spreads"][0], "spread_1": t["spreads"][1], "spread_2": t["spreads"][2],
                             "template_distance": t["template_distance"], "ratio": t["ratio"]})
    return rows


# --------------------------------------------------------------------------- Fig. 1


def draw_panel(ax, p: Panel, title: str, *, ylabel: bool) -> None:
    """One projection panel: the examples by class (colours C0..C2), the class templates as stars,
    plane axes labelled (axis 2 only where ``ylabel``); limits are :func:`share_row_scale`'s."""
    from lspipe.core.plotting import font  # matplotlib: only when a figure is drawn

    for c in range(3):
        sel = p.labels == c
        ax.scatter(p.points[sel, 0], p.points[sel, 1], s=6, alpha=0.6, color=f"C{c}", lw=0)
        ax.scatter(*p.templates[c], marker="*", s=140, color=f"C{c}", edgecolor="black", lw=0.8, zorder=5)
    ax.tick_params(labelsize=font(6))
    ax.set_title(title, fontsize=font(8))
    ax.set_xlabel("plane axis 1", fontsize=font(7), labelpad=1)
    if ylabel:
        ax.set_ylabel("plane axis 2", fontsize=font(7), labelpad=1)


def class_legend(where, shown: Sequence[str]):
    """The legend of a projection figure's three classes and the template star, to the right of
    ``where`` (a figure or a subfigure: one row), outside every panel."""
    from matplotlib.lines import Line2D

    from lspipe.core.plotting import font  # matplotlib: only when a figure is drawn

    handles = [Line2D([], [], ls="", marker="o", ms=font(4), color=f"C{c}", label=n) for c, n in enumerate(shown)]
    handles.append(Line2D([], [], ls="", marker="*", ms=font(8), color="0.6", mec="black", label="class\ntemplate"))
    return where.legend(handles=handles, loc="outside right center", fontsize=font(7))


def projection_figure(rows: Sequence[dict], hard_dumps: Sequence[str | Path], ls_dumps: Sequence[str | Path],
                      out_paths: Sequence[str | Path], *, per_class: int = default("projections.per_class"),
                      seed: int = default("projections.seed"), ls_alpha: float | None = None,
                      dpi: int = default("figures.dpi"), scale: float = default("figures.scale")) -> list[list[Panel]]:
    """Fig. 1: one row per configured entry, titled above it; columns train / validation for alpha 0
    and for LS, one scale across the row; fonts at ``scale`` (``figures.scale``)."""
    from lspipe.core.plotting import fit, font, new_row_figure, save_figure  # matplotlib: only when a figure is drawn

    if not (len(rows) == len(hard_dumps) == len(ls_dumps)) or not rows:
        raise ValueError(f"need one hard and one LS dump per row: {len(rows)} rows, "
                         f"{len(hard_dumps)} hard and {len(ls_dumps)} LS dumps")
    width = 2.4 * len(COLUMNS) + 1.0
    fig, subfigs, axes = new_row_figure(len(rows), len(COLUMNS), size=(width, 2.9 * len(rows) + 0.5), scale=scale)
    all_panels = []
    for i, (row, hp, lp) in enumerate(zip(rows, hard_dumps, ls_dumps)):
        where = f"projections.rows[{i}]"
        dumps = {"hard": Dump(hp), "ls": Dump(lp)}
        alphas = {k: float(d.meta("alpha")) for k, d in dumps.items()}
        if alphas["hard"] != 0.0 or (ls_alpha is not None and alphas["ls"] != float(ls_alpha)):
            raise ValueError(f"{where}: dumps have alphas {alphas}, expected hard 0 and LS {ls_alpha}")
        names = list(row["classes"])
        panels = []
        for j, (split, kind) in enumerate(COLUMNS):
            p = panel(dumps[kind], names, split, per_class, seed, where)
            panels.append(p)
            ratio = tightness(p.points, p.labels, p.templates)["ratio"]
            draw_panel(axes[i, j], p, fit(f"{SPLIT_TITLES[split]}, α = {alphas[kind]:g}\nr = {ratio:.2f}", 2.1, 8),
                       ylabel=j == 0)
        share_row_scale(axes[i], panels)
        d = dumps["hard"]
        title = row.get("title") or f"{d.meta('dataset')} / {d.meta('arch')}"
        # the row's own title, above its panels (never stacked into a y label); its classes in its legend
        subfigs[i].suptitle(fit(title, width - 1.0, 9), fontsize=font(9), fontweight="bold")
        class_legend(subfigs[i], class_labels(d, names))
        all_panels.append(panels)
    fig.suptitle(fit("Penultimate activations projected onto the plane of three class templates\n"
                     "(same scale across each row; r = mean class spread / mean template distance)", width, 9),
                 fontsize=font(9))
    save_figure(fig, out_paths, dpi)
    return all_panels


# --------------------------------------------------------------------------- CLI


def _cmd_tightness(a):
    rows = tightness_rows(a.dumps, json.loads(a.rows), triples=a.triples, seed=a.seed, splits=a.splits)
    write_csv(a.out, rows, TIGHTNESS_FIELDS)
    print(f"tightness of {len(a.dumps)} dumps, {len(rows)} rows -> {a.out}")


def _cmd_projections(a):
    rows = json.loads(a.rows)
    projection_figure(rows, a.hard, a.ls, a.out, per_class=a.per_class, seed=a.seed, ls_alpha=a.ls_alpha, dpi=a.dpi,
                      scale=a.scale)
    print(f"wrote {', '.join(a.out)}")


def add_cli(sub) -> None:
    s = sub.add_parser("projections-figure", aliases=["projections"], help="Fig. 1: activations projected onto three classes' template plane",
                       description="Fig. 1 of the paper: penultimate-layer activations of three classes projected "
                                   "onto the plane through their templates, training and validation examples, "
                                   "without and with label smoothing; one row per projections.rows entry. The "
                                   "workflow's projections_figure rule runs it.")
    s.add_argument("--rows", required=True, help="the config's projections.rows as JSON: dataset, arch, three classes")
    s.add_argument("--hard", nargs="+", required=True, help="alpha-0 dump of each row, in row order")
    s.add_argument("--ls", nargs="+", required=True, help="label-smoothed dump of each row, in row order")
    s.add_argument("--out", nargs="+", required=True, help="figure paths (format from the suffix)")
    s.add_argument("--per-class", type=int, default=default("projections.per_class"),
                   help="examples drawn per class and split")
    s.add_argument("--seed", type=int, default=default("projections.seed"), help="seed of the example choice")
    s.add_argument("--ls-alpha", type=float, default=None,
                   help="the alpha the label-smoothed dumps must have (default: any nonzero)")
    s.add_argument("--dpi", type=int, default=default("figures.dpi"), help="resolution of raster figures")
    s.add_argument("--scale", type=float, default=default("figures.scale"), help="font scale (figures.scale)")
    s.set_defaults(func=_cmd_projections)

    s = sub.add_parser("tightness-table", aliases=["tightness"],
                       help="claim 2: tightness ratio of class triples projected onto their template plane",
                       description="Claim 2 of the claims report: the tightness ratio (spread within a class over "
                                   "distance between classes) of class triples projected onto their template plane, "
                                   "per model. The workflow's tightness_table rule runs it.")
    s.add_argument("--dumps", nargs="+", required=True, help="activation dumps of the models (HDF5)")
    s.add_argument("--rows", default="[]", help="the config's projections.rows as JSON (their triples are measured too)")
    s.add_argument("--triples", type=int, default=default("claims.tightness_triples"),
                   help="random class triples per model")
    s.add_argument("--seed", type=int, default=default("claims.tightness_seed"), help="seed of the triples' choice")
    s.add_argument("--splits", nargs="+", default=list(TIGHTNESS_SPLITS), help="dump splits")
    s.add_argument("--out", required=True, help="the table (CSV)")
    s.set_defaults(func=_cmd_tightness)
