"""The distillation section's teacher projections (the source slides' last pages).

Why do label-smoothed teachers make worse teachers (paper Sec. 4, Fig. 5)? The slides answer with
the penultimate-layer projections of the distillation experiment's *teachers* (ResNet-56 on
CIFAR-10) on training examples, with and without label smoothing: with hard targets, examples of
a class spread out, each with its own similarity to the other classes; with label smoothing every
example of a class sits about equally far from the other classes' templates, so the relative
information between logits that a student could learn from is erased.

This module draws that figure for a ``distillation`` entry's ``teacher_projection``: the same
template-plane projection as Fig. 1 (:mod:`lspipe.experiments.projection`: class templates = last-layer rows
with the bias appended, activations extended by 1, orthogonal projection onto the plane through
the three templates), of ``per_class`` seeded training examples of each of three classes, for
the hard-target teacher (alpha = 0) and one label-smoothed teacher of the grid (``ls_alpha``,
default: the smallest nonzero ``teacher_alphas``), both of the entry's lowest seed (the teacher of
that seed's students). Each panel also states the examples' spread: the standard deviation over
a class's examples of their distance to the templates of the two other classes, averaged over
the three classes and both other classes, relative to the distance between the templates (small
with label smoothing: every example at the same distance).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from lspipe.base.defaults import default, fill
from lspipe.base.errors import ConfigError
from lspipe.base.runs import pick_ls_alpha, run_name
from lspipe.engine.dumpfile import Dump
from lspipe.experiments.projection import class_labels, class_legend, draw_panel, panel, share_row_scale

FIGURE_STEM = "fig5_teacher_projections_{dataset}"
SETTINGS = "distillation[].teacher_projection"  # the config key of the figure's settings (and their defaults)


def plan(entry: dict, where: str = "distillation[]") -> dict | None:
    """The figure's settings for one ``distillation`` entry, or None when it has no ``teacher_projection``.

    Returns ``{"classes", "ls_alpha", "per_class", "seed", "teacher_seed", "teacher_arch"}``; raises
    :class:`ConfigError` when ``ls_alpha`` is not a nonzero alpha of the entry's ``teacher_alphas``.
    """
    if not entry.get("teacher_projection"):
        return None
    tp = fill(SETTINGS, entry["teacher_projection"])
    smoothed = sorted(float(a) for a in entry["teacher_alphas"] if float(a) > 0)
    ls_alpha = pick_ls_alpha(smoothed, tp.get("ls_alpha"))
    if ls_alpha is None and tp.get("ls_alpha") is None:
        raise ConfigError(f"{where}.teacher_projection needs a label-smoothed teacher: teacher_alphas "
                          f"{entry['teacher_alphas']} has no alpha > 0; add one or set teacher_projection: null")
    if ls_alpha is None:
        raise ConfigError(f"{where}.teacher_projection.ls_alpha {tp.get('ls_alpha')} is not a nonzero alpha of "
                          f"{where}.teacher_alphas {entry['teacher_alphas']}; pick one of {smoothed}")
    return {
        "classes": list(tp["classes"]), "ls_alpha": float(ls_alpha), "per_class": int(tp["per_class"]),
        "seed": int(tp["seed"]), "teacher_seed": int(min(entry["seeds"])), "teacher_arch": entry["teacher_arch"],
    }


class TeacherProjectionPlan:
    """The distillation teachers' projections in a configuration's workflow (``Plan.teacher_projection``):
    the settings of every ``distillation`` entry with a ``teacher_projection`` (:func:`plan`, which
    checks them) and the two dumps each figure draws."""

    name = "teacher_projection"

    def __init__(self, plan_):
        self._paths = plan_.paths
        self.settings = {d["dataset"]: p for i, d in enumerate(plan_.config.get("distillation", []))
                         if (p := plan(d, f"distillation[{i}]")) is not None}
        for i, d in enumerate(plan_.config.get("distillation", [])):
            if d["dataset"] in self.settings:
                plan_.check_classes(d["dataset"], self.settings[d["dataset"]]["classes"],
                                    f"distillation[{i}].teacher_projection.classes")

    def dump(self, dataset: str, kind: str) -> str:
        """Dump of the hard-target (``kind`` "hard") or label-smoothed ("ls") teacher of the grid's lowest seed."""
        p = self.settings[dataset]
        alpha = 0.0 if kind == "hard" else p["ls_alpha"]
        return self._paths.dump(dataset, p["teacher_arch"], "teacher", run_name(alpha, p["teacher_seed"]))

    def targets(self) -> list[str]:
        return [f for d in self.settings for f in self._paths.figures(FIGURE_STEM.format(dataset=d))]


def class_spread(points: np.ndarray, labels: np.ndarray, templates: np.ndarray) -> float:
    """Mean over classes c and other classes j != c of std_x |u_x - t_j| / mean pairwise |t_i - t_j|.

    ``points`` (N x 2 plane coordinates), ``labels`` (N, positions 0..2), ``templates`` (3 x 2).
    """
    points, templates = np.asarray(points, float), np.asarray(templates, float)
    scale = np.mean([np.linalg.norm(templates[i] - templates[j]) for i in range(3) for j in range(i + 1, 3)])
    stds = []
    for c in range(3):
        sel = points[np.asarray(labels) == c]
        for j in range(3):
            if j != c and len(sel) > 1:
                stds.append(np.linalg.norm(sel - templates[j], axis=1).std())
    return float(np.mean(stds) / scale)


def teacher_projection_figure(hard_dump: str | Path, ls_dump: str | Path, classes: Sequence[str],
                              out_paths: Sequence[str | Path], *, per_class: int = default(f"{SETTINGS}.per_class"),
                              seed: int = default(f"{SETTINGS}.seed"), ls_alpha: float | None = None,
                              dpi: int = default("figures.dpi"), scale: float = default("figures.scale"),
                              where: str = "distillation[]"):
    """Two panels (hard-target teacher, LS teacher) of training examples, drawn as Fig. 1's (plane
    axes labelled, one scale for both panels); returns the two Panels."""
    from lspipe.core.plotting import fit, font, new_row_figure, save_figure  # matplotlib: only when a figure is drawn

    dumps = {"hard": Dump(hard_dump), "ls": Dump(ls_dump)}
    alphas = {k: float(d.meta("alpha")) for k, d in dumps.items()}
    if any(d.meta("role") != "teacher" for d in dumps.values()):
        raise ValueError(f"{where}: teacher projections need teacher dumps, got roles "
                         f"{[d.meta('role') for d in dumps.values()]}")
    if alphas["hard"] != 0.0 or alphas["ls"] == 0.0 or (ls_alpha is not None and alphas["ls"] != float(ls_alpha)):
        raise ValueError(f"{where}: dumps have alphas {alphas}, expected hard 0 and LS {ls_alpha}")
    names = list(classes)
    width = 6.6
    fig, rows, axes = new_row_figure(1, 2, size=(width, 3.5), scale=scale)
    panels = []
    for j, kind in enumerate(("hard", "ls")):
        p = panel(dumps[kind], names, "train", per_class, seed, f"{where}.teacher_projection")
        panels.append(p)
        label = "hard targets" if kind == "hard" else "label smoothing"
        title = f"teacher α = {alphas[kind]:g} ({label})\nspread = {class_spread(p.points, p.labels, p.templates):.3f}"
        draw_panel(axes[0, j], p, fit(title, (width - 1.2) / 2, 8), ylabel=j == 0)
    share_row_scale(axes[0], panels)
    class_legend(rows[0], class_labels(dumps["hard"], names))
    d = dumps["hard"]
    fig.suptitle(fit(f"Distillation teachers {d.meta('dataset')} / {d.meta('arch')} (seed {d.meta('seed')}): penultimate "
                     "activations of training examples on the template plane (same scale in both panels)", width, 9),
                 fontsize=font(9))
    save_figure(fig, out_paths, dpi)
    return panels


# --------------------------------------------------------------------------- CLI


def _cmd(a):
    teacher_projection_figure(a.hard, a.ls, json.loads(a.classes), a.out, per_class=a.per_class, seed=a.seed,
                              ls_alpha=a.ls_alpha, dpi=a.dpi, scale=a.scale)
    print(f"wrote {', '.join(a.out)}")


def add_cli(sub) -> None:
    s = sub.add_parser("distillation-teacher-projections", aliases=["teacher-projections"],
                       help="the distillation teachers' penultimate projections, alpha 0 vs LS (training examples)",
                       description="The distillation teachers' penultimate-layer projections (the paper's explanation "
                                   "of Fig. 5): training examples of three classes on their template plane, the "
                                   "hard-target teacher beside a label-smoothed one. The workflow's "
                                   "distillation_teacher_projections rule runs it.")
    s.add_argument("--hard", required=True, help="dump of the hard-target (alpha 0) teacher")
    s.add_argument("--ls", required=True, help="dump of the label-smoothed teacher")
    s.add_argument("--classes", required=True, help="the three class names as a JSON list")
    s.add_argument("--out", nargs="+", required=True, help="figure paths (format from the suffix)")
    s.add_argument("--per-class", type=int, default=default(f"{SETTINGS}.per_class"), help="examples drawn per class")
    s.add_argument("--seed", type=int, default=default(f"{SETTINGS}.seed"), help="seed of the example choice")
    s.add_argument("--ls-alpha", type=float, default=None,
                   help="the alpha the label-smoothed dump must have (default: any nonzero)")
    s.add_argument("--dpi", type=int, default=default("figures.dpi"), help="resolution of raster figures")
    s.add_argument("--scale", type=float, default=default("figures.scale"), help="font scale (figures.scale)")
    s.set_defaults(func=_cmd)
