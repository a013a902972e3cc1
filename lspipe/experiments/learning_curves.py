"""Learning curves of every teacher grid: training loss and validation accuracy against the step.

Training writes one ``metrics.csv`` per model (:data:`lspipe.engine.training.METRIC_FIELDS`: one row
per epoch, with ``step``, ``train_loss``, the loss of the model's own objective over the epoch, and
``val_acc``, the accuracy on the validation split at the epoch's end, a fraction). This figure reads
those files of a grid as they are (it trains nothing and needs nothing but them): one line per
objective (label smoothing at each alpha, then the grid's other objectives), the mean over seeds,
with a band from the lowest to the highest seed at each step. A label-smoothed model's training loss
has a floor above 0 (the entropy of its smoothed targets), so the loss panel compares how each model
converges, not the models with each other; the accuracy panel (in percent) compares them.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path
from typing import Sequence

import numpy as np

from lspipe.base.defaults import default
from lspipe.base.errors import DataError
from lspipe.base.runs import objective_label, parse_run

FIGURE_STEM = "learning_curves_{dataset}_{arch}"


class LearningCurvesPlan:
    """The learning curves in a configuration's workflow (``Plan.learning_curves``): one figure per
    teacher grid, read from the ``metrics.csv`` its training jobs write (no input of its own to make)."""

    name = "learning_curves"

    def __init__(self, plan):
        self._plan = plan
        self.grids = list(dict.fromkeys((g["dataset"], g["arch"]) for g in plan.config["teachers"]))

    def metrics(self, dataset: str, arch: str) -> list[str]:
        """The metrics CSV of every teacher of one grid (every objective and seed)."""
        return [self._plan.paths.metrics(d, a, "teacher", run) for d, a, run in self._plan.teacher_runs
                if (d, a) == (dataset, arch)]

    def targets(self) -> list[str]:
        return [f for d, a in self.grids for f in self._plan.paths.figures(FIGURE_STEM.format(dataset=d, arch=a))]


def read_metrics(path: str | Path) -> dict:
    """One model's curves: ``{"run", "objective", "seed", "step", "train_loss", "val_acc_pct"}`` from its
    ``metrics.csv`` (``.../<run>/metrics.csv``; the run name says the objective and seed)."""
    p = Path(path)
    parsed = parse_run(p.parent.name)
    if parsed is None or "objective" not in parsed:
        raise DataError(f"{p}: its folder {p.parent.name!r} is not a teacher's run name (a<alpha>_s<seed>, ...); "
                        "pass the metrics.csv files of a teacher grid, laid out as the workflow writes them")
    try:
        with open(p, newline="") as fh:
            rows = list(csv.DictReader(fh))
        steps = np.array([int(r["step"]) for r in rows])
        loss = np.array([float(r["train_loss"]) for r in rows])
        acc = np.array([100.0 * float(r["val_acc"]) for r in rows])
    except (OSError, KeyError, ValueError) as err:
        raise DataError(f"cannot read the training metrics {p} ({type(err).__name__}: {err}); rebuild the model "
                        f"that writes it (`snakemake -f {p.parent / 'model.pt'}`)") from None
    if not len(rows):
        raise DataError(f"{p} holds no epoch: its training has not finished an epoch")
    return {"run": p.parent.name, "objective": parsed["objective"], "seed": parsed["seed"], "step": steps,
            "train_loss": loss, "val_acc_pct": acc}


def curves(models: Sequence[dict]) -> list[dict]:
    """Per objective (label smoothing by alpha first, then the others by label): the steps and, per
    quantity, the mean, min and max over the seeds that recorded each step."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for m in models:
        o = m["objective"]
        key = (0, float(o["alpha"]), "") if o["kind"] == "ls" else (1, 0.0, objective_label(o))
        groups[key].append(m)
    out = []
    for key in sorted(groups):
        ms = sorted(groups[key], key=lambda m: m["seed"])
        steps = sorted({int(s) for m in ms for s in m["step"]})
        entry = {"objective": ms[0]["objective"], "label": objective_label(ms[0]["objective"]),
                 "seeds": [m["seed"] for m in ms], "step": np.array(steps)}
        for q in ("train_loss", "val_acc_pct"):
            at = [[m[q][list(m["step"]).index(s)] for m in ms if s in m["step"]] for s in steps]
            entry[q] = {"mean": np.array([np.mean(v) for v in at]), "min": np.array([np.min(v) for v in at]),
                        "max": np.array([np.max(v) for v in at])}
        out.append(entry)
    return out


def learning_curves_figure(metric_paths: Sequence[str | Path], out_paths: Sequence[str | Path], *, title: str = "",
                           dpi: int = default("figures.dpi"), scale: float = default("figures.scale")) -> list[dict]:
    """Two panels: training loss and validation accuracy (%) against the step, one line per objective
    (mean over seeds) with a min–max band over seeds; returns :func:`curves`."""
    import matplotlib

    from lspipe.core.plotting import fit, font, new_figure, save_figure  # matplotlib: only when a figure is drawn

    lines = curves([read_metrics(p) for p in metric_paths])
    fig, axes = new_figure(1, 2, size=(7.6, 3.6), scale=scale, layout="constrained")
    cmap = matplotlib.colormaps["viridis"]
    ls_lines = [c for c in lines if c["objective"]["kind"] == "ls"]
    for i, c in enumerate(lines):
        is_ls = c["objective"]["kind"] == "ls"
        color = cmap(0.85 * i / max(1, len(ls_lines) - 1)) if is_ls else f"C{3 + i - len(ls_lines)}"
        label = c["label"] + (", hard targets" if is_ls and c["objective"]["alpha"] == 0 else "")
        for ax, q in zip(axes[0], ("train_loss", "val_acc_pct")):
            ax.plot(c["step"], c[q]["mean"], color=color, lw=1.4, ls="-" if is_ls else "--",
                    label=f"{label} ({len(c['seeds'])} seed{'s' if len(c['seeds']) > 1 else ''})")
            if len(c["seeds"]) > 1:
                ax.fill_between(c["step"], c[q]["min"], c[q]["max"], color=color, alpha=0.2, lw=0)
    for ax, ylabel, sub in zip(axes[0], ("training loss", "validation accuracy (%)"),
                               ("(a) training loss, each model's own objective", "(b) validation accuracy")):
        ax.set_xlabel("training step", fontsize=font(9))
        ax.set_ylabel(ylabel, fontsize=font(9))
        ax.set_title(fit(sub, 3.4, 9), fontsize=font(9))
    seeds = sorted({len(c["seeds"]) for c in lines})
    spread = "1 seed: no spread" if seeds == [1] else f"mean, min–max band over {'/'.join(map(str, seeds))} seeds"
    fig.suptitle(fit((title + ": " if title else "") + f"learning curves ({spread}; one point per epoch)", 7.6, 9),
                 fontsize=font(9))
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside lower center", fontsize=font(7),
               ncols=min(3, len(lines)))
    save_figure(fig, out_paths, dpi)
    return lines


# --------------------------------------------------------------------------- CLI


def _cmd(a):
    lines = learning_curves_figure(a.metrics, a.out, title=a.title, dpi=a.dpi, scale=a.scale)
    for c in lines:
        print(f"{c['label']}: {len(c['seeds'])} seed(s), {len(c['step'])} epochs, last step {int(c['step'][-1])}: "
              f"training loss {c['train_loss']['mean'][-1]:.4f}, validation accuracy {c['val_acc_pct']['mean'][-1]:.2f}%")
    print(f"wrote {', '.join(a.out)}")


def add_cli(sub) -> None:
    s = sub.add_parser("learning-curves-figure", aliases=["learning-curves"],
                       help="training loss and validation accuracy over the steps of a teacher grid (metrics.csv files)",
                       description="Learning curves of one teacher grid: the training loss and the validation accuracy "
                                   "against the step, one line per alpha, the seeds as a band. The workflow's "
                                   "learning_curves_figure rule runs it.")
    s.add_argument("--metrics", nargs="+", required=True, help="metrics.csv of every teacher of the grid")
    s.add_argument("--out", nargs="+", required=True, help="figure paths (format from the suffix)")
    s.add_argument("--title", default="", help="what the figure shows, e.g. 'digits / smallcnn'")
    s.add_argument("--dpi", type=int, default=default("figures.dpi"), help="resolution of raster figures")
    s.add_argument("--scale", type=float, default=default("figures.scale"), help="font scale (figures.scale)")
    s.set_defaults(func=_cmd)

