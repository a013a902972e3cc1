"""Mutual information between an example and its logits over training: paper Fig. 6.

The paper's "erasure of information" experiment (Sec. 5): ``X`` is the index of a training
example drawn uniformly from ``N`` probe examples of two classes, ``Y`` the difference of those
two classes' logits for a randomly augmented copy of ``x`` (the augmentation is the only
randomness). ``p(y | x)`` is modelled as a Gaussian ``N(mu_x, sigma^2)`` with ``mu_x`` the mean
over ``L`` augmented copies and one pooled ``sigma^2``, giving (the normalising constants cancel)::

    I(X; Y) = mean over (x, y) of [ -(y - mu_x)^2 / (2 sigma^2)
                                    - log( (1/N) sum_x' exp(-(y - mu_x')^2 / (2 sigma^2)) ) ]

where the mean runs over all ``N * L`` recorded pairs ``(x, y)``. The logits are recorded during
training by :class:`lspipe.engine.probe.ProbeRecorder` into a probe trace
(:class:`lspipe.engine.probefile.ProbeTrace`): those of ``L`` augmented copies of the probe examples
every ``every`` steps, and of a second, independent draw of ``L`` copies (the *repeat draw*): the MI
of the two draws at the same step differ only by the augmentation, so their difference measures the
estimator's noise (:func:`mi_noise`; the claims report sets its MI margin from it). This module has:

* :func:`mutual_information`, the estimator (``mi_curve`` applies it to every recorded step);
* the ``lspipe mi-curve`` and ``lspipe mi-figure`` sub-commands (Fig. 6 and its table).

Conventions of the estimator (documented in docs/design.md as well):

* ``sigma^2`` is the pooled within-example variance
  ``sum_x sum_l (y_xl - mu_x)^2 / (N * (L - ddof))``; the default ``ddof = 0`` is the
  maximum-likelihood estimate pooled over all examples and copies (the paper notes' convention);
  ``ddof = 1`` (one degree of freedom per example spent on ``mu_x``) is the unbiased
  one-way-ANOVA estimate. ``L >= 2`` copies are required. The curve CSVs, the table and the
  figure record the ``ddof`` used.
* ``sigma = 0`` (every copy of every example gives the same ``y``, e.g. no augmentation) is the
  limit ``sigma -> 0`` of the formula: each term becomes ``log(N / n_x)`` with ``n_x`` the number of
  examples whose mean equals ``mu_x`` exactly, i.e. the entropy of the partition of the examples by
  their (exactly equal) means: ``log N`` when all means differ, ``0`` when all are equal.
* Each term is at most ``log N`` (the ``x' = x`` summand alone gives that bound), so the estimate
  lies in ``[0, log N]`` up to floating-point rounding; the returned value is clipped to that
  interval, which only removes rounding excursions of order 1e-15 (the raw value is available
  with ``clip=False``).
* With ``L`` copies the estimate has a small positive floor even when the true ``I = 0``: the
  per-example means scatter by ``sigma / sqrt(L)``; it is about ``0.5 * log(L / (L - 1))``
  (0.11 nats at ``L = 5``). Compare curves at the same ``L``.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections import defaultdict
from typing import Sequence

import numpy as np
from scipy.special import logsumexp

from lspipe.base.defaults import default
from lspipe.base.errors import ConfigError, DataError
from lspipe.base.runs import run_name
from lspipe.core.tables import write_csv
from lspipe.engine.probefile import ProbeTrace

CURVE_FIELDS = ["step", "mi", "mi_repeat", "sigma", "mu_std", "n", "copies", "log_n", "ddof", "alpha", "seed"]


# --------------------------------------------------------------------------- estimator


def pooled_sigma2(y: np.ndarray, ddof: int = default("mi.ddof")) -> float:
    """Pooled within-example variance of ``y`` (N x L): ``sum (y - mu_x)^2 / (N (L - ddof))``."""
    y = np.asarray(y, dtype=np.float64)
    n, copies = y.shape
    if copies - ddof < 1:
        raise ValueError(f"need at least {ddof + 1} copies per example to pool the variance with ddof={ddof}; got L={copies}")
    resid = y - y.mean(axis=1, keepdims=True)
    return float((resid**2).sum() / (n * (copies - ddof)))


def mutual_information(y: np.ndarray, ddof: int = default("mi.ddof"), clip: bool = True, block: int = 4096) -> float:
    """The paper's Gaussian estimate of ``I(X; Y)`` in nats from ``y`` (N examples x L copies).

    See the module docstring for the formula, the pooled variance (``ddof``), the ``sigma = 0``
    limit and the clipping to ``[0, log N]``. The log of the mixture density is evaluated with
    ``scipy.special.logsumexp`` in blocks of ``block`` samples (memory ``block x N`` floats).
    """
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 2 or y.shape[0] < 1 or y.shape[1] < 2:
        raise ValueError(f"expected y of shape (N examples, L >= 2 copies); got {y.shape}")
    if not np.all(np.isfinite(y)):
        raise ValueError("y contains NaN or infinite values (did training diverge?)")
    n, copies = y.shape
    mu = y.mean(axis=1)
    sigma2 = pooled_sigma2(y, ddof)
    log_n = math.log(n)
    if sigma2 == 0.0:
        # sigma -> 0 limit: exp(-(y - mu_x')^2 / 2 sigma^2) -> [mu_x' == mu_x] as y == mu_x.
        _, inverse, counts = np.unique(mu, return_inverse=True, return_counts=True)
        raw = float(np.mean(log_n - np.log(counts[inverse])))
    else:
        ys = y.reshape(-1)
        own = (-((y - mu[:, None]) ** 2) / (2 * sigma2)).reshape(-1)
        total = 0.0
        for s in range(0, len(ys), block):
            d = ys[s : s + block, None] - mu[None, :]
            log_mix = logsumexp(-(d**2) / (2 * sigma2), axis=1) - log_n
            total += float(np.sum(own[s : s + block] - log_mix))
        raw = total / len(ys)
    return float(min(max(raw, 0.0), log_n)) if clip else raw


# --------------------------------------------------------------------------- the MI over training


def mi_curve(trace: ProbeTrace, ddof: int = default("mi.ddof")) -> list[dict]:
    """One row per recorded step: step, mi (nats), mi_repeat (the MI of the repeat draw; empty for a
    trace without one), sigma, mu_std (spread of the means), n, copies, log_n, ddof."""
    rows = []
    repeat = trace.differences(repeat=True)
    for i, (step, y) in enumerate(zip(trace.steps, trace.differences())):
        rows.append({
            "step": int(step), "mi": mutual_information(y, ddof=ddof),
            "mi_repeat": "" if repeat is None else mutual_information(repeat[i], ddof=ddof),
            "sigma": math.sqrt(pooled_sigma2(y, ddof)),
            "mu_std": float(y.mean(axis=1).std()), "n": trace.n, "copies": trace.copies, "log_n": math.log(trace.n),
            "ddof": int(ddof),
        })
    return rows


# --------------------------------------------------------------------------- Fig. 6


def mi_noise(pairs: Sequence[tuple[float, float]]) -> float | None:
    """The sd of one MI estimate from pairs ``(mi, mi_repeat)`` of two independent augmentation draws
    at the same step: ``sqrt(mean((mi - mi_repeat)^2) / 2)`` (the difference of two independent
    estimates has twice the variance of one). None without pairs."""
    d = np.array([a - b for a, b in pairs], dtype=np.float64)
    if d.size == 0:
        return None
    return float(math.sqrt(np.mean(d**2) / 2.0))


def fig6_plan(config: dict) -> dict[tuple[str, str], dict]:
    """The Fig. 6 panels of a validated config: ``(dataset, arch)`` of every teacher grid with a
    ``probe`` -> ``{"alphas", "seeds", "title"}``; ``alphas`` is config ``mi.alphas`` (null: all of
    the grid's alphas). Raises :class:`~lspipe.base.errors.ConfigError` for an alpha not in a grid."""
    wanted = (config.get("mi") or {}).get("alphas")
    plan = {}
    for i, g in enumerate(config["teachers"]):
        if not g.get("probe"):
            continue
        alphas = list(g["alphas"]) if wanted is None else list(wanted)
        missing = [a for a in alphas if a not in g["alphas"]]
        if missing:
            raise ConfigError(
                f"mi.alphas {missing} are not in teachers[{i}].alphas {g['alphas']} (the probed grid "
                f"{g['dataset']}/{g['arch']}); add them there or remove them from mi.alphas"
            )
        if (config["datasets"].get(g["dataset"]) or {}).get("storage") == "streaming":
            raise ConfigError(
                f"teachers[{i}].probe: the mutual-information probe holds its images in memory, but dataset "
                f"{g['dataset']!r} is streamed; set datasets.{g['dataset']}.storage: resident, or remove the probe"
            )
        c0, c1 = g["probe"]["classes"]
        plan[(g["dataset"], g["arch"])] = {
            "alphas": alphas, "seeds": list(g["seeds"]),
            "title": f"{g['dataset']} / {g['arch']}: Y = logit({c0}) - logit({c1})",
        }
    return plan


class MIPlan:
    """Fig. 6 in a configuration's workflow (``Plan.mi``): its panels (:func:`fig6_plan`, which checks
    ``mi.alphas``) and the MI curve of every probed teacher each panel reads."""

    name = "mi"

    def __init__(self, plan):
        self._paths = plan.paths
        self.grids = fig6_plan(plan.config)  # (dataset, arch) -> alphas, seeds, title; raises ConfigError
        for i, g in enumerate(plan.config["teachers"]):  # the probe's classes, before its teachers train
            if g.get("probe"):
                plan.check_classes(g["dataset"], g["probe"]["classes"], f"teachers[{i}].probe.classes")

    def curves(self, dataset: str, arch: str) -> list[str]:
        """MI curve CSVs of one panel: every alpha and seed."""
        g = self.grids[(dataset, arch)]
        return [self._paths.mi_curve(dataset, arch, run_name(a, s)) for a in g["alphas"] for s in g["seeds"]]

    def all_curves(self) -> list[str]:
        return [p for d, a in self.grids for p in self.curves(d, a)]

    def targets(self) -> list[str]:
        p = self._paths
        return [f for d, a in self.grids for f in p.figures(f"fig6_mi_{d}_{a}") + [p.table(f"mi_{d}_{a}.csv")]]


def _read_curves(paths: Sequence[str | os.PathLike]) -> list[dict]:
    rows = []
    for p in paths:
        with open(p, newline="") as fh:
            for r in csv.DictReader(fh):
                rows.append({"step": int(r["step"]), "mi": float(r["mi"]), "n": int(r["n"]), "copies": int(r["copies"]),
                             "ddof": int(r["ddof"]), "alpha": float(r["alpha"]), "seed": int(r["seed"]), "path": str(p)})
    if not rows:
        raise DataError(f"no MI rows in {list(map(str, paths))}")
    return rows


def mi_table(rows: list[dict], alphas: Sequence[float] | None = None) -> list[dict]:
    """Mean, sample std, min and max of the MI over seeds, per alpha and step."""
    by: dict[tuple[float, int], list[float]] = defaultdict(list)
    seeds: dict[float, dict[int, list[int]]] = defaultdict(dict)
    for r in rows:
        if alphas is not None and not any(math.isclose(r["alpha"], a) for a in alphas):
            continue
        by[(r["alpha"], r["step"])].append(r["mi"])
        seeds[r["alpha"]].setdefault(r["seed"], []).append(r["step"])
    for a, per_seed in seeds.items():
        grids = {tuple(sorted(s)) for s in per_seed.values()}
        if len(grids) > 1:
            raise DataError(f"the MI curves of alpha {a:g} were recorded at different steps across seeds {sorted(per_seed)}")
    ns = {(r["n"], r["copies"]) for r in rows}
    if len(ns) > 1:
        raise DataError(f"the MI curves mix probe sizes (N, L) {sorted(ns)}; use one probe setting per teacher grid")
    n, copies = ns.pop()
    ddofs = {r.get("ddof", 0) for r in rows}
    if len(ddofs) > 1:
        raise DataError(f"the MI curves mix variance conventions ddof {sorted(ddofs)}; recompute them with one mi.ddof")
    ddof = ddofs.pop()
    out = []
    for (a, step), v in sorted(by.items()):
        arr = np.asarray(v)
        out.append({
            "alpha": a, "step": step, "seeds": len(arr), "mi_mean": float(arr.mean()),
            "mi_std": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0, "mi_min": float(arr.min()),
            "mi_max": float(arr.max()), "n": n, "copies": copies, "log_n": math.log(n), "log_2": math.log(2),
            "ddof": ddof,
        })
    return out


def mi_ylim(table: list[dict], pad: float = 0.08) -> tuple[float, float]:
    """A y-range around the curves and their min–max bands (``pad`` of the span on each side,
    never below 0): the gap between the curves fills the axes instead of ``[0, log N]``."""
    lo = min(r["mi_min"] for r in table)
    hi = max(r["mi_max"] for r in table)
    span = max(hi - lo, 0.05 * max(abs(hi), 1e-3))
    return max(0.0, lo - pad * span), hi + pad * span


def plot_mi(table: list[dict], title: str = "", scale: float = default("figures.scale")):
    """Fig. 6: I(X; Y) against the training step, one line (mean) and min/max band per alpha; fonts
    at ``scale`` (``figures.scale``)."""
    import matplotlib

    from lspipe.core.plotting import fit, font, new_figure  # matplotlib: only when a figure is drawn

    fig, axes = new_figure(1, 1, size=(4.2, 3.0), scale=scale, layout="constrained")
    ax = axes[0, 0]
    alphas = sorted({r["alpha"] for r in table})
    cmap = matplotlib.colormaps["viridis"]
    for i, a in enumerate(alphas):
        rs = [r for r in table if r["alpha"] == a]
        steps = [r["step"] for r in rs]
        color = cmap(0.85 * i / max(1, len(alphas) - 1))
        label = f"α = {a:g}" + (" (hard targets)" if a == 0 else "")
        ax.plot(steps, [r["mi_mean"] for r in rs], color=color, marker="o", ms=2.5, lw=1.4, label=label)
        ax.fill_between(steps, [r["mi_min"] for r in rs], [r["mi_max"] for r in rs], color=color, alpha=0.2, lw=0)
    n, log_n = table[0]["n"], table[0]["log_n"]
    lo, hi = mi_ylim(table)
    ax.set_ylim(lo, hi)
    off_scale = []
    for value, name, ls in ((log_n, f"log N = {log_n:.2f} (N = {n})", "--"), (math.log(2), "log 2 = 0.69", ":")):
        if lo <= value <= hi:
            ax.axhline(value, color="0.3", ls=ls, lw=0.9)
            ax.text(1.0, value, f" {name.split(' = ')[0]}", transform=ax.get_yaxis_transform(), va="center",
                    ha="left", fontsize=font(7))
        else:
            off_scale.append(f"{name} {'above' if value > hi else 'below'}")
    if off_scale:  # the bounds as text, so the y-range can show the gap between the curves
        ax.text(0.99, 0.98, "off scale: " + "; ".join(off_scale), transform=ax.transAxes, ha="right", va="top",
                fontsize=font(6), color="0.3")
    ax.set_xlabel("training step")
    ax.set_ylabel("I(X; Y) [nats]")
    seeds = sorted({r["seeds"] for r in table})
    ddof = table[0].get("ddof", 0)
    spread = "1 seed: no spread" if seeds == [1] else f"mean, min–max band over {'/'.join(map(str, seeds))} seeds"
    ax.set_title(fit(title + ("\n" if title else "") + f"{spread}; σ² pooled, ddof = {ddof}", 4.0, 8), fontsize=font(8))
    ax.legend(loc="best")
    return fig


# --------------------------------------------------------------------------- CLI


PROBE_KEYS = ("classes", "per_class", "copies", "every", "seed")


def check_probe_settings(trace: ProbeTrace, expected: dict) -> None:
    """Refuse a trace recorded with other probe settings than the config's (``teachers[].probe``,
    defaults filled in): its traces would be labelled and analysed as if they were the new ones."""
    recorded = json.loads(trace.attrs["settings"]) if "settings" in trace.attrs else {}
    recorded = {k: recorded.get(k) for k in PROBE_KEYS}
    wanted = {k: expected.get(k, recorded[k] if k == "seed" else None) for k in PROBE_KEYS}
    wanted["classes"] = [str(c) for c in wanted["classes"] or []]
    if recorded != wanted:
        diff = ", ".join(f"{k} {recorded[k]!r} (config: {wanted[k]!r})" for k in PROBE_KEYS if recorded[k] != wanted[k])
        raise DataError(
            f"{trace.path} was recorded with other probe settings than teachers[].probe: {diff}; retrain its "
            f"teacher to record the new probe (`snakemake -f {trace.path}`, or a plain `snakemake`, whose params "
            "trigger retrains it) or restore the old probe settings"
        )


def cmd_mi_curve(a):
    trace = ProbeTrace(a.probe)
    if not trace.complete:
        raise DataError(f"{a.probe} is an incomplete probe trace (training did not finish)")
    if a.expect_probe is not None:
        check_probe_settings(trace, a.expect_probe)
    rows = mi_curve(trace, ddof=a.ddof)
    for r in rows:
        r.update(alpha=a.alpha, seed=a.seed)
    write_csv(a.out, rows, CURVE_FIELDS)
    print(f"MI over {len(rows)} records of {a.probe} (N = {trace.n}, L = {trace.copies}): "
          + ", ".join(f"{r['step']}:{r['mi']:.3f}" for r in rows))


def cmd_mi_figure(a):
    from lspipe.core.plotting import save_figure  # matplotlib: only when a figure is drawn

    table = mi_table(_read_curves(a.curves), a.alphas)
    if not table:
        raise DataError(f"none of the MI curves has an alpha in mi.alphas {a.alphas}")
    write_csv(a.csv, table, list(table[0]))
    fig = plot_mi(table, a.title, scale=a.scale)
    save_figure(fig, a.out, dpi=a.dpi)
    print(f"Fig. 6 -> {', '.join(a.out)}; table -> {a.csv}")


def add_cli(sub) -> None:
    s = sub.add_parser("mi-curve", help="Fig. 6: mutual information I(X; Y) at every recorded step of a probe trace",
                       description="Fig. 6 of the paper: the mutual information between a probe example and the "
                                   "difference of two classes' logits of its augmented copies, at every recorded step "
                                   "of one teacher's training (the probe trace of `lspipe train --probe`). The "
                                   "workflow's mi_curve rule runs it.")
    s.add_argument("--probe", required=True, help="probe.h5 written by `lspipe train --probe`")
    s.add_argument("--out", required=True, help="CSV: step, mi, sigma, mu_std, n, copies, log_n, ddof, alpha, seed")
    s.add_argument("--ddof", type=int, default=default("mi.ddof"), choices=[0, 1],
                   help="pooled variance divides by N*(L-ddof): 0 maximum likelihood, 1 unbiased")
    s.add_argument("--alpha", type=float, required=True, help="the teacher's alpha (copied into the CSV)")
    s.add_argument("--seed", type=int, required=True, help="the teacher's seed (copied into the CSV)")
    s.add_argument("--expect-probe", type=json.loads, default=None,
                   help="the config's probe settings as JSON: refuse a trace recorded with others")
    s.set_defaults(func=cmd_mi_curve)

    s = sub.add_parser("mi-figure", help="Fig. 6: MI against training step per alpha (mean, min/max over seeds)",
                       description="Fig. 6 of the paper: the mutual information against the training step, one "
                                   "line per alpha (mean over seeds, min/max band), from the `lspipe mi-curve` CSVs. "
                                   "The workflow's mi_figure rule runs it.")
    s.add_argument("--curves", nargs="+", required=True, help="CSVs written by `lspipe mi-curve`")
    s.add_argument("--alphas", type=float, nargs="*", default=None, help="alphas drawn (default: all)")
    s.add_argument("--csv", required=True, help="the numbers: alpha, step, seeds, mi_mean/std/min/max, n, log_n")
    s.add_argument("--out", nargs="+", required=True, help="figure files (format from the suffix)")
    s.add_argument("--title", default="", help="the figure's title")
    s.add_argument("--dpi", type=int, default=default("figures.dpi"), help="resolution of raster figures")
    s.add_argument("--scale", type=float, default=default("figures.scale"), help="font scale (figures.scale)")
    s.set_defaults(func=cmd_mi_figure)


__all__ = [
    "mutual_information", "pooled_sigma2", "mi_curve", "mi_noise", "mi_table", "plot_mi", "fig6_plan", "add_cli",
]
