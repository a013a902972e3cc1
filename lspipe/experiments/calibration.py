"""Calibration: expected calibration error, reliability diagrams and temperature scaling
(paper Fig. 2 and Table 3).

Conventions
-----------
* Confidence = the largest softmax probability (top label); "correct" = the top label (first
  index on ties, as ``argmax``) equals the true label. Softmax is evaluated in float64.
* ``B`` equal-width bins with edges ``numpy.linspace(0, 1, B + 1)``, **right-closed**: bin ``b``
  (0-based) holds the confidences in ``(b/B, (b+1)/B]`` (the intervals of Guo et al. 2017). A
  confidence of exactly 0 goes into the first bin, exactly 1.0 into the last bin (there is no
  extra bin). torchmetrics' ``CalibrationError`` uses left-closed bins ``[b/B, (b+1)/B)`` with an
  extra bin for 1.0; the two agree except for confidences exactly on an interior edge, or exactly
  1.0 while the last bin holds other confidences as well.
* ``ECE = sum_b (n_b / N) * |acc(b) - conf(b)|`` over non-empty bins; the reliability diagram
  reports per bin the count, the mean accuracy and the mean confidence (NaN / ``null`` for an
  empty bin).
* Temperature scaling divides the logits by one scalar ``T > 0``, fitted by minimising the NLL on
  the *validation* split over ``log T`` (a coarse grid over ``[log_t_min, log_t_max]`` followed by
  bounded Brent search between the grid neighbours of the best point; the NLL is a convex function
  of ``1/T``, hence unimodal in ``log T``, so this finds the global minimum from any start).
  Before/after metrics are reported on the *test* split; the *validation* split's metrics at
  T = 1 are recorded too (``val``: what the claims report chooses the label-smoothing alpha by,
  without looking at test).
* ECE floor (``ece_floor`` beside every ECE): the expected ECE of a *perfectly calibrated* model
  with the same confidences, i.e. when example ``i`` is correct with probability ``c_i`` exactly
  (independently). The ECE estimator is biased upwards at finite N (each bin's accuracy is a
  sample mean); this is the value a model could not go below on average at this N and confidence
  histogram. Computed exactly (:func:`expected_ece_calibrated`): per bin the number of correct
  examples is Poisson-binomial, its distribution is built by convolution, and
  ``E|correct/n_b - conf_b|`` is summed over it.
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy.special import log_softmax, logsumexp

from lspipe.base.args import optional_float
from lspipe.base.defaults import default
from lspipe.base.errors import ConfigError
from lspipe.base.io import read_json, write_json, write_text
from lspipe.base.runs import pick_ls_alpha, run_name
from lspipe.core.tables import fmt_pm, markdown_table, mean_std, write_csv
from lspipe.engine.dumpfile import Dump

BIN_CONVENTION = (
    "B equal-width bins, edges linspace(0, 1, B+1), right-closed (b/B, (b+1)/B]; "
    "confidence 0 in the first bin, 1.0 in the last bin"
)
FIT_SPLIT, REPORT_SPLIT = "val", "test"
# 2: validation metrics at T = 1 ("val") and the ECE floor beside every ECE
FORMAT_VERSION = 2


# --------------------------------------------------------------------------- ECE / reliability


def bin_edges(n_bins: int) -> np.ndarray:
    if n_bins < 1:
        raise ValueError(f"the number of bins must be >= 1, got {n_bins}")
    return np.linspace(0.0, 1.0, n_bins + 1)


def bin_index(confidences: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin of each confidence under the right-closed convention (see the module docstring)."""
    c = np.asarray(confidences, dtype=np.float64)
    if c.size and (not np.all(np.isfinite(c)) or c.min() < 0.0 or c.max() > 1.0):
        raise ValueError("confidences must be finite and lie in [0, 1]")
    # searchsorted(side="left") returns i with edges[i-1] < c <= edges[i]: bin i - 1.
    return np.clip(np.searchsorted(bin_edges(n_bins), c, side="left") - 1, 0, n_bins - 1)


@dataclass
class Reliability:
    """Reliability-diagram data of one set of predictions."""

    edges: np.ndarray
    count: np.ndarray  # per bin
    accuracy: np.ndarray  # per bin, NaN when empty
    confidence: np.ndarray  # per bin, NaN when empty
    ece: float
    n: int

    def to_dict(self) -> dict:
        def clean(a):
            return [None if not np.isfinite(v) else float(v) for v in a]

        return {
            "edges": [float(e) for e in self.edges], "count": [int(c) for c in self.count],
            "accuracy": clean(self.accuracy), "confidence": clean(self.confidence),
            "ece": self.ece, "n": self.n,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Reliability":
        def arr(v):
            return np.array([np.nan if x is None else x for x in v], dtype=np.float64)

        return cls(np.asarray(d["edges"], float), np.asarray(d["count"], np.int64), arr(d["accuracy"]),
                   arr(d["confidence"]), float(d["ece"]), int(d["n"]))


def reliability(confidences: np.ndarray, correct: np.ndarray, n_bins: int = default("calibration.bins")) -> Reliability:
    """Per-bin count, accuracy and mean confidence, and the ECE, of top-label predictions."""
    conf = np.asarray(confidences, dtype=np.float64).ravel()
    corr = np.asarray(correct, dtype=np.float64).ravel()
    if conf.shape != corr.shape:
        raise ValueError(f"confidences {conf.shape} and correct {corr.shape} differ in length")
    if conf.size == 0:
        raise ValueError("no predictions to calibrate")
    b = bin_index(conf, n_bins)
    count = np.bincount(b, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.bincount(b, weights=corr, minlength=n_bins) / count
        mean_conf = np.bincount(b, weights=conf, minlength=n_bins) / count
    full = count > 0
    ece = float(np.sum(count[full] / conf.size * np.abs(acc[full] - mean_conf[full])))
    return Reliability(bin_edges(n_bins), count, acc, mean_conf, ece, int(conf.size))


def poisson_binomial_pmf(p: np.ndarray) -> np.ndarray:
    """Distribution of the number of successes of independent Bernoulli(p_i) trials (length n + 1).

    Exact up to floating-point rounding: blocks of 32 trials by the recursion
    ``pmf'[k] = pmf[k] (1 - p) + pmf[k - 1] p`` (vectorised over the blocks), then the blocks'
    distributions convolved pairwise (FFT for long ones), O(n log^2 n).
    """
    from scipy.signal import fftconvolve

    p = np.asarray(p, dtype=np.float64).ravel()
    n = len(p)
    if n == 0:
        return np.ones(1)
    block = 32
    padded = np.concatenate([p, np.zeros((-n) % block)]).reshape(-1, block)  # p = 0 adds no success
    m = np.zeros((len(padded), block + 1))
    m[:, 0] = 1.0
    for j in range(block):
        q = padded[:, j : j + 1]
        m[:, 1:] = m[:, 1:] * (1.0 - q) + m[:, :-1] * q
        m[:, 0] *= 1.0 - q[:, 0]
    parts = list(m)
    while len(parts) > 1:
        nxt = []
        for i in range(0, len(parts) - 1, 2):
            a, b = parts[i], parts[i + 1]
            nxt.append(np.convolve(a, b) if min(len(a), len(b)) < 256 else fftconvolve(a, b))
        if len(parts) % 2:
            nxt.append(parts[-1])
        parts = nxt
    pmf = np.clip(parts[0][: n + 1], 0.0, None)
    return pmf / pmf.sum()


def expected_ece_calibrated(confidences: np.ndarray, n_bins: int = default("calibration.bins")) -> float:
    """Expected ECE of a perfectly calibrated model with these confidences (the ECE floor).

    Each example is correct with probability equal to its confidence, independently; the bins
    (fixed by the confidences) are those of :func:`reliability`. Per bin ``b`` with ``n_b``
    examples of mean confidence ``conf_b``, the number correct ``S_b`` is Poisson-binomial
    (:func:`poisson_binomial_pmf`) and the floor is ``sum_b (n_b / N) E|S_b / n_b - conf_b|``.
    """
    c = np.asarray(confidences, dtype=np.float64).ravel()
    if c.size == 0:
        raise ValueError("no predictions")
    b = bin_index(c, n_bins)
    total = 0.0
    for k in np.unique(b):
        cb = c[b == k]
        pmf = poisson_binomial_pmf(cb)
        total += len(cb) / c.size * float(np.sum(pmf * np.abs(np.arange(len(cb) + 1) / len(cb) - cb.mean())))
    return total


def debiased_squared_ce(count, accuracy, confidence) -> float:
    """Unbiased estimate of the squared binned RMS calibration error ``sum_b (n_b / N) (mu_b - conf_b)^2``
    (mu_b: the bin's true accuracy), the debiased estimator of Kumar, Liang & Ma (2019, "Verified
    Uncertainty Calibration", section 5): per bin the plug-in ``(acc_b - conf_b)^2`` minus the unbiased
    variance estimate of the bin's accuracy, ``acc_b (1 - acc_b) / (n_b - 1)``. Takes a reliability
    diagram's per-bin count, accuracy and mean confidence (``Reliability`` or its ``to_dict``; empty
    bins None/NaN). A bin with one example has no variance estimate: its term is left out (weight
    1 / N). The estimate can be negative (its expectation is >= 0); do not clip it before averaging.

    The plug-in ECE of a perfectly calibrated model is about 0.02-0.03 at 2,000 test images (the ECE
    floor); this estimate's expectation is 0 there, whatever N."""
    n = np.asarray(count, dtype=np.float64)
    acc = np.array([np.nan if a is None else a for a in accuracy], dtype=np.float64)
    conf = np.array([np.nan if c is None else c for c in confidence], dtype=np.float64)
    total = n.sum()
    if total <= 0:
        raise ValueError("no predictions")
    use = n >= 2
    term = (acc[use] - conf[use]) ** 2 - acc[use] * (1.0 - acc[use]) / (n[use] - 1.0)
    return float(np.sum(n[use] / total * term))


def top_label(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(confidence, correct) of the top label of each row of ``probs``."""
    probs = np.asarray(probs)
    pred = probs.argmax(axis=1)
    return probs[np.arange(len(pred)), pred], pred == np.asarray(labels)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    return np.exp(log_softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=1))


def ece(logits: np.ndarray, labels: np.ndarray, n_bins: int = default("calibration.bins"), temperature: float = 1.0) -> float:
    """Expected calibration error of ``softmax(logits / temperature)``."""
    return reliability(*top_label(softmax(logits, temperature), labels), n_bins).ece


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``softmax(logits / temperature)`` (natural log)."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    y = np.asarray(labels)
    return float(np.mean(logsumexp(z, axis=1) - z[np.arange(len(y)), y]))


# --------------------------------------------------------------------------- temperature scaling


@dataclass
class TemperatureFit:
    temperature: float
    log_temperature: float
    nll_before: float  # at T = 1, on the fitting split
    nll_after: float
    at_bound: bool  # the optimum lies on the edge of the search range (T is a bound, not a minimum)


LOG_T_MIN, LOG_T_MAX = math.log(1e-2), math.log(1e2)  # the search range of T: [0.01, 100]


def fit_temperature(
    logits: np.ndarray, labels: np.ndarray, *, log_t_min: float = LOG_T_MIN, log_t_max: float = LOG_T_MAX,
    grid: int = 41,
) -> TemperatureFit:
    """Fit ``T > 0`` minimising ``nll(logits / T)`` over ``log T`` in ``[log_t_min, log_t_max]``.

    A grid over ``log T`` brackets the global minimum (the NLL is unimodal in ``log T``), bounded
    Brent search refines it to ``xatol = 1e-6`` in ``log T``. Pass *validation* logits.
    """
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels)
    if z.ndim != 2 or len(z) != len(y) or len(y) == 0:
        raise ValueError(f"need N x K logits and N labels, got {z.shape} and {y.shape}")

    def f(log_t: float) -> float:
        return nll(z, y, math.exp(log_t))

    xs = np.linspace(log_t_min, log_t_max, grid)
    vals = np.array([f(x) for x in xs])
    i = int(np.argmin(vals))
    lo, hi = xs[max(i - 1, 0)], xs[min(i + 1, grid - 1)]
    from scipy.optimize import minimize_scalar  # 0.4 s to import: only when a temperature is fitted

    res = minimize_scalar(f, bounds=(lo, hi), method="bounded", options={"xatol": 1e-6})
    best, best_val = (float(res.x), float(res.fun)) if res.fun < vals[i] else (float(xs[i]), float(vals[i]))
    at_bound = best - log_t_min < 1e-3 or log_t_max - best < 1e-3
    if at_bound:
        warnings.warn(f"temperature scaling: the optimum lies at the edge of the search range "
                      f"(T = {math.exp(best):.4g}); the validation NLL keeps falling beyond it", stacklevel=2)
    return TemperatureFit(math.exp(best), best, f(0.0), best_val, bool(at_bound))


# --------------------------------------------------------------------------- per model


def split_metrics(logits: np.ndarray, labels: np.ndarray, n_bins: int, temperature: float = 1.0) -> dict:
    conf, correct = top_label(softmax(logits, temperature), labels)
    rel = reliability(conf, correct, n_bins)
    return {
        "ece": rel.ece, "ece_floor": expected_ece_calibrated(conf, n_bins), "nll": nll(logits, labels, temperature),
        "accuracy": float(np.mean(np.asarray(logits).argmax(1) == np.asarray(labels))),
        "reliability": rel.to_dict(),
    }


def calibrate(fit_logits, fit_labels, eval_logits, eval_labels, n_bins: int = default("calibration.bins")) -> dict:
    """Fit T on (fit_logits, fit_labels); ECE/NLL/accuracy before and after on the eval arrays, and
    the fitting split's own metrics at T = 1 (``val``)."""
    fit = fit_temperature(fit_logits, fit_labels)
    return {
        "format_version": FORMAT_VERSION, "bins": n_bins, "bin_convention": BIN_CONVENTION,
        "temperature": fit.temperature, "log_temperature": fit.log_temperature,
        "fit": {"nll_before": fit.nll_before, "nll_after": fit.nll_after, "at_bound": fit.at_bound,
                "n": int(len(fit_labels)), "search_range": [math.exp(LOG_T_MIN), math.exp(LOG_T_MAX)]},
        "val": split_metrics(fit_logits, fit_labels, n_bins, 1.0),
        "before": split_metrics(eval_logits, eval_labels, n_bins, 1.0),
        "after": split_metrics(eval_logits, eval_labels, n_bins, fit.temperature),
    }


def calibrate_dump(path: str | Path, n_bins: int = default("calibration.bins")) -> dict:
    """Temperature scaling fitted on the dump's validation split, reported on its test split."""
    dump = Dump(path)
    fit, ev = dump.split(FIT_SPLIT), dump.split(REPORT_SPLIT)
    out = calibrate(fit.logits, fit.labels, ev.logits, ev.labels, n_bins)
    out["model"] = {k: dump.meta(k) for k in ("dataset", "arch", "role", "run", "alpha", "seed")}
    alpha = out["model"]["alpha"]
    out["model"]["alpha"] = None if alpha in (None, "none") else float(alpha)
    out["model"]["objective"] = dump.objective()  # the value its training job got (lspipe.core.losses)
    out["fit"]["split"], out["split"] = FIT_SPLIT, REPORT_SPLIT
    out["dump"] = str(path)
    return out


# --------------------------------------------------------------------------- Table 3 / Fig. 2


def table3_grids(config: dict) -> list[tuple[str, str, float, list[int]]]:
    """``(dataset, arch, ls_alpha, seeds)`` of the teacher grids in Table 3 / Fig. 2.

    A grid takes part when it has hard targets (alpha 0) and a label-smoothed model: alpha
    ``calibration.ls_alpha``, or with ``null`` the smallest nonzero alpha of the grid. A grid with
    alpha 0 that lacks an explicitly configured ``calibration.ls_alpha`` is an error.
    """
    want = config.get("calibration", {}).get("ls_alpha")
    out = []
    for i, g in enumerate(config["teachers"]):
        if 0.0 not in {float(a) for a in g["alphas"]}:
            continue
        ls = pick_ls_alpha(g["alphas"], want)
        if ls is None and want is not None:
            raise ConfigError(f"calibration.ls_alpha {want} is not in teachers[{i}].alphas {g['alphas']}: add it there, "
                              f"or set calibration.ls_alpha: null to use the smallest nonzero alpha of each grid")
        if ls is not None:
            out.append((g["dataset"], g["arch"], ls, list(g["seeds"])))
    return out


class CalibrationPlan:
    """Table 3 and Fig. 2 in a configuration's workflow (``Plan.calibration``): the teacher grids
    they compare (:func:`table3_grids`, which checks ``calibration.ls_alpha``) and the per-model
    calibration JSONs each grid reads."""

    name = "calibration"

    def __init__(self, plan):
        self._paths = plan.paths
        self.grids = table3_grids(plan.config)  # (dataset, arch, LS alpha, seeds); raises ConfigError

    def ls_alpha(self, dataset: str, arch: str) -> float:
        """The LS alpha of a grid's column in Table 3 / Fig. 2."""
        return next(ls for d, a, ls, _ in self.grids if (d, a) == (dataset, arch))

    def jsons(self, dataset: str, arch: str) -> list[str]:
        """Calibration JSONs of one grid: hard-target and LS runs, every seed."""
        return [self._paths.calibration(d, a, "teacher", run_name(al, s)) for d, a, ls, seeds in self.grids
                if (d, a) == (dataset, arch) for al in (0.0, ls) for s in seeds]

    def all_jsons(self) -> list[str]:
        """Calibration JSONs of every grid (Table 3's inputs)."""
        return [p for d, a, *_ in self.grids for p in self.jsons(d, a)]

    def targets(self) -> list[str]:
        if not self.grids:
            return []
        p = self._paths
        return [p.table("calibration.csv"), p.table("calibration.md")] + [
            f for d, a, *_ in self.grids for f in p.figures(f"fig2_reliability_{d}_{a}")]


def _group(results: Sequence[dict]) -> dict[tuple[str, str], list[dict]]:
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in results:
        groups[(r["model"]["dataset"], r["model"]["arch"])].append(r)
    return groups


def ls_alpha_of(results: Sequence[dict], ls_alpha: float | None, where: str = "") -> float:
    """The label-smoothed alpha compared: ``ls_alpha``, or the smallest nonzero alpha present."""
    alphas = sorted({float(r["model"]["alpha"]) for r in results})
    picked = pick_ls_alpha(alphas, ls_alpha)
    if picked is None and ls_alpha is None:
        raise ConfigError(f"{where}no label-smoothed model (alpha > 0) to compare; add a nonzero alpha to "
                          f"the teacher grid or set calibration.ls_alpha")
    if picked is None:
        raise ConfigError(f"{where}calibration.ls_alpha {ls_alpha} has no model (alphas present: {alphas}); "
                          f"add it to the teacher grid's alphas or change calibration.ls_alpha")
    return picked


def _pick(results: Sequence[dict], alpha: float, where: str) -> list[dict]:
    runs = sorted((r for r in results if float(r["model"]["alpha"]) == alpha), key=lambda r: int(r["model"]["seed"]))
    if not runs:
        raise ConfigError(f"{where}no model with alpha {alpha:g}; the teacher grid needs alpha 0 (hard targets)")
    return runs


def calibration_table(json_paths: Sequence[str | Path], csv_path, md_path, *, ls_alpha: float | None = None,
                      digits: int = default("calibration.digits")) -> list[dict]:
    """Paper Table 3 from per-model calibration JSONs: one row per dataset / arch."""
    rows = []
    for (ds, arch), res in sorted(_group([read_json(p) for p in json_paths]).items()):
        where = f"{ds}/{arch}: "
        a_ls = ls_alpha_of(res, ls_alpha, where)
        hard, ls = _pick(res, 0.0, where), _pick(res, a_ls, where)
        row = {"dataset": ds, "arch": arch, "split": hard[0]["split"], "bins": hard[0]["bins"],
               "hard_seeds": len(hard), "ls_alpha": a_ls, "ls_seeds": len(ls),
               "temperature_at_bound": sum(bool(r.get("fit", {}).get("at_bound")) for r in hard)}
        for name, vals in {  # units named in the columns: ECE a fraction (as the paper's Table 3), accuracy in %
            "ece_hard_frac": [r["before"]["ece"] for r in hard],
            "ece_ts_frac": [r["after"]["ece"] for r in hard],
            "temperature": [r["temperature"] for r in hard],
            "ece_ls_frac": [r["before"]["ece"] for r in ls],
            "nll_hard": [r["before"]["nll"] for r in hard],
            "nll_ts": [r["after"]["nll"] for r in hard],
            "nll_ls": [r["before"]["nll"] for r in ls],
            "accuracy_hard_pct": [100.0 * r["before"]["accuracy"] for r in hard],
            "accuracy_ls_pct": [100.0 * r["before"]["accuracy"] for r in ls],
        }.items():
            mu, sd = mean_std(vals)
            row[f"{name}_mean"], row[f"{name}_std"] = mu, sd
        rows.append(row)
    fields = list(rows[0]) if rows else ["dataset", "arch"]
    write_csv(csv_path, rows, fields)
    body = [[r["dataset"], r["arch"], fmt_pm(r["ece_hard_frac_mean"], r["ece_hard_frac_std"], digits, r["hard_seeds"]),
             f"{fmt_pm(r['ece_ts_frac_mean'], r['ece_ts_frac_std'], digits, r['hard_seeds'])} "
             f"(T = {r['temperature_mean']:.2f}"
             + (f"; at the edge of the search range in {r['temperature_at_bound']} of {r['hard_seeds']} seeds: a bound, "
                "not a fitted value)" if r["temperature_at_bound"] else ")"),
             f"{fmt_pm(r['ece_ls_frac_mean'], r['ece_ls_frac_std'], digits, r['ls_seeds'])} (α = {r['ls_alpha']:g})",
             f"{r['accuracy_hard_pct_mean']:.1f} / {r['accuracy_ls_pct_mean']:.1f}"] for r in rows]
    split = rows[0]["split"] if rows else REPORT_SPLIT
    bins = rows[0]["bins"] if rows else "B"
    title = (f"Expected calibration error (a fraction, {bins} equal-width bins) on the {split} split, mean ± std over seeds "
             f"(paper Table 3 layout). Temperature T fitted on the {FIT_SPLIT} split (mean over seeds).\n\n")
    write_text(md_path, title + markdown_table(
        ["dataset", "arch", "hard targets (T = 1)", "temperature scaled", "label smoothing", "accuracy % hard / LS"],
        body))
    return rows


def pooled(rels: Sequence[Reliability]) -> Reliability:
    """Reliability of several prediction sets taken together (count-weighted per bin)."""
    count = sum(r.count for r in rels)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = sum(np.nan_to_num(r.accuracy) * r.count for r in rels) / count
        conf = sum(np.nan_to_num(r.confidence) * r.count for r in rels) / count
    n = int(count.sum())
    full = count > 0
    ece_ = float(np.sum(count[full] / n * np.abs(acc[full] - conf[full])))
    return Reliability(rels[0].edges, count, acc, conf, ece_, n)


def reliability_figure(json_paths: Sequence[str | Path], out_paths: Sequence[str | Path], *,
                       ls_alpha: float | None = None, dpi: int = default("figures.dpi"),
                       min_count: int = default("calibration.min_bin_count"),
                       scale: float = default("figures.scale")) -> None:
    """Fig. 2 for one dataset / arch: hard targets, hard + temperature scaling and LS, with the diagonal.

    Bins are pooled over seeds (the diagram of all seeds' test predictions together); the legend
    gives the ECE and T as mean over seeds. Marker area grows with the bin's share of examples;
    bins with fewer than ``min_count`` examples are drawn small, hollow and faint, and left out of the
    line, so a noisy bin of a handful of examples does not read as a calibration failure. The
    histogram below shares the diagram's x-axis (same width, aligned bins); markers at the edges
    (accuracy 1, confidence 1) are drawn whole, not clipped by the axes.
    """
    from lspipe.core.plotting import fit, font, new_figure, save_figure  # matplotlib: only when a figure is drawn

    groups = _group([read_json(p) for p in json_paths])
    if len(groups) != 1:
        raise ValueError(f"reliability_figure draws one dataset/arch, got {sorted(groups)}")
    (ds, arch), res = next(iter(groups.items()))
    where = f"{ds}/{arch}: "
    a_ls = ls_alpha_of(res, ls_alpha, where)
    hard, ls = _pick(res, 0.0, where), _pick(res, a_ls, where)
    curves = [
        ("hard targets", [r["before"] for r in hard], "C0", "o", ""),
        ("hard + temp. scaling", [r["after"] for r in hard], "C1", "s",
         f"T = {np.mean([r['temperature'] for r in hard]):.2f}, "),
        (f"label smoothing α = {a_ls:g}", [r["before"] for r in ls], "C2", "^", ""),
    ]
    width_in = 3.9
    fig, axes = new_figure(2, 1, size=(width_in, 5.6), scale=scale, sharex=True, layout="constrained",
                           gridspec_kw={"height_ratios": [3, 1]})
    ax, hax = axes[0, 0], axes[1, 0]
    ax.plot([0, 1], [0, 1], color="0.5", ls="--", lw=1, label="perfect calibration")
    width = 1.0 / hard[0]["bins"]
    for j, (name, metrics, colour, marker, extra) in enumerate(curves):
        rel = pooled([Reliability.from_dict(m["reliability"]) for m in metrics])
        full = rel.count > 0
        many = rel.count >= min_count
        few = full & ~many
        size = 4.0 + 80.0 * np.sqrt(rel.count / rel.n)  # marker area (points^2) by the bin's share
        ece_mean = np.mean([m["ece"] for m in metrics])
        # markers at accuracy or confidence 1 drawn whole (unclipped); an empty line or collection stays clipped, as
        # unclipped it would count as a marker at the figure's corner and collapse the layout
        ax.plot(rel.confidence[many], rel.accuracy[many], marker=marker, ms=3.0, lw=1.3, color=colour,
                clip_on=not many.any(), label=f"{name} ({extra}ECE {ece_mean:.3f})", zorder=4)
        if many.any():
            ax.scatter(rel.confidence[many], rel.accuracy[many], s=size[many], marker=marker, color=colour, zorder=4,
                       clip_on=False)
        if few.any():  # few examples: small, faint and behind the curves, the same small size whatever the count
            ax.scatter(rel.confidence[few], rel.accuracy[few], s=10, marker=marker, facecolors="none",
                       edgecolors=colour, linewidths=0.6, alpha=0.35, zorder=2, clip_on=False)
        centres = 0.5 * (rel.edges[:-1] + rel.edges[1:])
        hax.bar(centres + (j - 1) * width / 3, rel.count / rel.n, width=width / 3, color=colour)
    ax.scatter([], [], s=10, marker="o", facecolors="none", edgecolors="0.4", linewidths=0.6, alpha=0.6,
               label=f"faint, hollow: a bin of < {min_count} examples (not in the line)")
    ax.scatter([], [], s=30, marker="o", color="0.4", label="filled: marker area ∝ √(share of examples)")
    ax.set(xlim=(0, 1), ylim=(0, 1))
    ax.set_ylabel("accuracy", fontsize=font(9))
    ax.set_title(fit(f"{ds} / {arch} ({hard[0]['split']} split, pooled over seeds)", width_in, 9), fontsize=font(9),
                 pad=10)  # room for whole markers at accuracy 1
    hax.set(xlim=(0, 1))
    hax.set_xlabel("confidence (bin)", fontsize=font(9))
    hax.set_ylabel("share of\nexamples", fontsize=font(8))
    hax.set_title(fit("examples per confidence bin (colours as above)", width_in - 0.8, 7), fontsize=font(7))
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", fontsize=font(7))
    save_figure(fig, out_paths, dpi)


# --------------------------------------------------------------------------- CLI


def summary(dump, res: dict) -> str:
    """One line on a dump's calibration (:func:`calibrate_dump`'s result)."""
    return (f"{dump}: T = {res['temperature']:.4f}, ECE {res['before']['ece']:.4f} -> {res['after']['ece']:.4f}, "
            f"NLL {res['before']['nll']:.4f} -> {res['after']['nll']:.4f} ({res['split']} split)")


def _cmd_calibrate(a):
    res = calibrate_dump(a.dump, a.bins)
    write_json(a.out, res)
    print(summary(a.dump, res))


def _cmd_table(a):
    calibration_table(a.inputs, a.csv, a.md, ls_alpha=a.ls_alpha, digits=a.digits)
    print(Path(a.md).read_text())


def _cmd_figure(a):
    reliability_figure(a.inputs, a.out, ls_alpha=a.ls_alpha, dpi=a.dpi, min_count=a.min_bin_count, scale=a.scale)
    print(f"wrote {', '.join(a.out)}")


def add_cli(sub) -> None:
    s = sub.add_parser("calibrate", help="temperature scaling (fit on val) and ECE before/after (test) of one dump",
                       description="Calibration of one model from its activation dump: the temperature that "
                                   "minimises the validation NLL, and the expected calibration error (ECE) and "
                                   "reliability bins on the test split before and after scaling, as JSON.")
    s.add_argument("--dump", required=True, help="the model's activation dump (HDF5)")
    s.add_argument("--out", required=True, help="the calibration (JSON)")
    s.add_argument("--bins", type=int, default=default("calibration.bins"),
                   help="equal-width confidence bins of the ECE and the reliability diagram")
    s.set_defaults(func=_cmd_calibrate)

    s = sub.add_parser("calibration-table", help="Table 3: ECE hard / temperature scaled / LS, mean +- std over seeds",
                       description="Table 3 of the paper: ECE of the hard-target models before and after temperature "
                                   "scaling, and of the label-smoothed models, mean and standard deviation over seeds. "
                                   "The workflow's calibration_table rule runs it.")
    s.add_argument("--inputs", nargs="+", required=True, help="per-model calibration JSONs")
    s.add_argument("--csv", required=True, help="the table as CSV")
    s.add_argument("--md", required=True, help="the table as Markdown")
    s.add_argument("--ls-alpha", type=optional_float, default=None,
                   help="alpha of the LS model; 'none' takes the smallest nonzero alpha per dataset/arch")
    s.add_argument("--digits", type=int, default=default("calibration.digits"), help="decimals in the Markdown table")
    s.set_defaults(func=_cmd_table)

    s = sub.add_parser("reliability-figure", help="Fig. 2: reliability diagram of one dataset/arch",
                       description="Fig. 2 of the paper: the reliability diagram (accuracy against confidence per bin) "
                                   "of one dataset and architecture, hard targets, hard targets with temperature "
                                   "scaling, and label smoothing. The workflow's reliability_figure rule runs it.")
    s.add_argument("--inputs", nargs="+", required=True, help="calibration JSONs of one dataset/arch")
    s.add_argument("--out", nargs="+", required=True, help="figure paths (format from the suffix)")
    s.add_argument("--ls-alpha", type=optional_float, default=None,
                   help="alpha of the LS model drawn (default: the smallest nonzero)")
    s.add_argument("--dpi", type=int, default=default("figures.dpi"), help="resolution of raster figures")
    s.add_argument("--min-bin-count", type=int, default=default("calibration.min_bin_count"),
                   help="bins with fewer examples are drawn hollow and left out of the curve")
    s.add_argument("--scale", type=float, default=default("figures.scale"), help="font scale (figures.scale)")
    s.set_defaults(func=_cmd_figure)
