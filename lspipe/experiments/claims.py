"""The claims report: did this run reproduce "When Does Label Smoothing Help?"?

Pure functions over outputs the workflow has already written (evaluation JSONs, calibration
JSONs, the Fig. 5 smoothness-index CSVs, the per-seed Fig. 6 MI curves, the tightness table
computed here from the activation dumps, and, for the optional test-image bootstrap, the teacher
dumps) that turn each claim of the paper into pre-specified checks: an effect per seed, its
interval over seeds and a verdict. The rules are **rule version** :data:`RULES_VERSION`
(:data:`RULE_VERSIONS` holds each version's freeze time; docs/claims.md the changelog); they are
stated in the report itself (:func:`decision_rule_text`) and the defaults are the schema's
``claims`` section (read through :mod:`lspipe.base.defaults`).

A claim, per dataset/arch, has

* one **primary** check, fixed in advance: it alone gives the claim's verdict;
* **descriptive** checks, exploratory: the summary shows their effects, no verdict words; no
  multiplicity correction (primary only);
* **regime** checks: preconditions of the paper's argument (the hard-target model is overconfident
  and in the paper's accuracy regime; teacher accuracy rises with alpha), outside the verdict.

Models are keyed by their **objective** (:func:`objective_of`: the run name, else label smoothing
at the recorded alpha): the hard-target arm is ``{kind: ls, alpha: 0}`` only; other objectives (a
confidence-penalty teacher records alpha 0) are rows of their own; two models for one objective and
seed are refused.

Primary checks:

1. accuracy: accuracy(LS at ``ls_alpha``) − accuracy(hard), paired by seed, above −margin
   (``accuracy_margin``, or ``accuracy_margin_relative`` × the hard model's error rate);
2. representations: tightness ratio (hard) − (LS), mean over every class triple (at most
   ``tightness_triples``), on ``tightness_split``, above 0;
3. calibration: RMS calibration error of LS at alpha* minus that of the hard model after temperature
   scaling, below ``ece_margin``; the squared errors estimated without bias per model (Kumar et
   al. 2019) and combined in a two-estimate interval (:func:`ce_gap_stats`); alpha* chosen among the
   grid's nonzero alphas by the mean *validation* ECE (or NLL) at T = 1, never by test;
4. distillation: per seed, the mean over the in-range temperatures of (hard-teacher student −
   baseline curve at its gamma) minus the mean over the in-range LS teachers of (LS-teacher student −
   baseline at its gamma), above 0; the largest leave-one-out interpolation error of the baseline
   curve is a systematic term added to each end of the interval;
5. erasure: (peak − late) of the MI with LS minus (peak − late) with hard targets, paired by seed,
   above the MI margin (``mi_noise_multiple`` × the measured sd of one MI estimate) for
   "supported"; "contradicted" needs the interval below 0;
6. the MNIST distillation toy (:func:`toy_claims`): two primary checks, (a) the LS teacher at least
   as accurate as the hard-target teacher (claim 1's margin) and (b) its student worse than the hard
   teacher's student (above 0), whose conjunction (:func:`conjunction`) is the claim's verdict.

Decision rule (:func:`decide`), the interval alone, symmetric: with n seeds the two-sided
``confidence`` interval of the mean effect is ``mean ± t_{n-1} · sd / sqrt(n)`` (plus a systematic
term where one is named); each end is a one-sided test at level ``(1 − confidence) / 2``.
``supported``: n >= ``min_seeds`` and the interval strictly on the claimed side of the bound;
``contradicted``: n >= ``min_seeds`` and the interval strictly beyond the (contradiction) bound;
``inconclusive``: otherwise, and for identical per-seed values over fewer than
:data:`ZERO_SPREAD_SEEDS` seeds or of a continuous effect (from that many seeds on, an effect on a
grid of step h takes ``sd = max(sample sd, h / 2)``); ``not compared``: runs exist, but none can be
compared (the config key that would make them comparable is named); ``not run``: the configuration
does not run the experiment (the key is named); ``number only``: a check that reports a number
(3d). Power (:func:`power`, :func:`decidability`): the noncentral t, seeds for 80 % power at the
observed effect and at 0, also with the sd at its one-sided 80 % chi-square upper bound.
"""

from __future__ import annotations

import csv
import itertools
import math
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from lspipe.base.defaults import default, fill
from lspipe.base.io import read_json, write_json, write_text
from lspipe.base.errors import ConfigError
from lspipe.base.runs import fmt, objective_label, objective_token, parse_run, run_name, run_objective
from lspipe.engine.dumpfile import Dump
from lspipe.experiments.calibration import debiased_squared_ce, reliability, softmax, top_label
from lspipe.experiments.distill import FORM_LABELS, StudentRun, read_gamma_table, trained_as
from lspipe.experiments.distill_toy import PAPER as TOY_PAPER
from lspipe.experiments.distill_toy import PAPER_STUDENT_ALONE
from lspipe.experiments.mi import mi_noise

SUPPORTED, CONTRADICTED, INCONCLUSIVE = "supported", "contradicted", "inconclusive"
NOT_COMPARED, NOT_RUN = "not compared", "not run"
REPORTED = "number only"  # a check that reports a number and gives no verdict (3d)
VERDICTS = (SUPPORTED, CONTRADICTED, INCONCLUSIVE, NOT_COMPARED, NOT_RUN, REPORTED)
PRIMARY, DESCRIPTIVE, REGIME = "primary", "descriptive", "regime"
NO_SPREAD = "1 seed: no spread"
SEEDS_SEARCH_MAX = 1000  # the seed recommendation searches n = 2 .. this
ZERO_SPREAD_SEEDS = 5  # identical per-seed values decide (sd floored at resolution / 2) only from this many seeds
POWER_TARGET = 0.8  # "seeds needed": for this power of the rule in use
POWER_SD_LEVEL = 0.8  # ... also with the sd at its one-sided upper confidence bound of this level
SENSITIVITY = (0.90, 0.95, 0.99)  # the verdict at these confidence levels (the report's sensitivity column)
HARD = {"kind": "ls", "alpha": 0.0}  # the hard-target arm: label smoothing at alpha 0, nothing else

# Versions of the decision rules (docs/claims.md keeps the changelog). A verdict is confirmatory when
# every model it reads was trained after its rule version was frozen; otherwise it is a re-analysis.
RULES_VERSION = 4
RULE_VERSIONS = {
    1: ("2026-11-28T00:00:00Z", "first rules: two-sided ±0.01 ECE margin at LS 0.1, best student on test"),
    2: ("2026-12-03T00:00:00Z", "primary checks fixed in advance, α* on validation, one-sided margins, "
        "every-seed conjunct on 'greater' checks"),
    3: ("2026-12-06T14:06:00Z", "models keyed by objective; interval-alone rule; RMS calibration error debiased "
        "(Kumar et al. 2019) with a two-estimate interval; power from the noncentral t; claim 4's interpolation "
        "error as a systematic term; claim 5 contradicted below 0; relative accuracy margin; 3d a number"),
    4: ("2026-12-06T14:45:00Z", "claim 6, the MNIST distillation toy: two primary checks (the LS teacher at least as "
        "accurate, claim 1's margin; its student worse, above 0) whose conjunction is the claim's verdict"),
}

CLAIM_TITLES = {
    1: "Accuracy: label smoothing does not hurt top-1 accuracy (Table 2)",
    2: "Representations: label smoothing tightens each class's cluster relative to the template distances (Fig. 1)",
    3: "Calibration: label smoothing calibrates about as well as temperature scaling (Table 3, Fig. 2)",
    4: ("Distillation: students of a hard-target teacher gain more over the student baseline than students of "
        "label-smoothed teachers (Fig. 5)"),
    5: "Erasure of information: the mutual information falls more during training with label smoothing (Fig. 6)",
    6: ("Distillation toy: the label-smoothed teacher is at least as accurate as the hard-target teacher, and its "
        "student is worse (MNIST, section 4)"),
}

# the slides' distillation loss, and how each lspipe form departs from it (claim 4 names the form used)
SLIDES_EQUATION = "(1 − β) H(y, p) + β H(p_teacher(T), p_student(T))"
FORM_DEPARTURE = {
    "teacher": "the student's soft term is taken at T = 1, not at T (only the teacher is softened)",
    "slides": "none: the slides' equation as written",
    "hinton": "the soft term is multiplied by T² (Hinton et al. 2015)",
}


def settings(overrides: dict | None = None) -> dict:
    """The decision settings: the schema's ``claims`` defaults updated with ``overrides``."""
    return fill("claims", overrides)


# --------------------------------------------------------------------------- statistics and verdicts


def _t(confidence: float, df: int) -> float:
    from scipy.stats import t as student_t

    return float(student_t.ppf(0.5 + confidence / 2, df))


def effect_stats(values: dict[int, float], confidence: float = default("claims.confidence"),
                 resolution: float = 0.0, systematic: float = 0.0) -> dict:
    """Mean, sample sd, the sd used (floored at ``resolution / 2``) and the t interval of per-seed effects.

    ``systematic``: a bound on an error shared by every seed (claim 4's interpolation error), added to
    each end of the interval (it does not shrink with seeds)."""
    seeds = sorted(values)
    v = np.array([values[s] for s in seeds], dtype=float)
    n = len(v)
    out = {"n": n, "seeds": seeds, "values": [float(x) for x in v], "mean": float(v.mean()) if n else None,
           "std": None, "sd_used": None, "sd_floor": resolution / 2, "floored": False, "half_width": None,
           "ci": None, "confidence": confidence, "one_sided_level": (1 - confidence) / 2, "resolution": resolution,
           "systematic": systematic, "method": "t"}
    if n >= 2:
        # equal values up to floating-point rounding have zero spread (not a tiny one from rounding)
        sd = 0.0 if np.ptp(v) <= 1e-12 * max(1.0, float(np.abs(v).max())) else float(v.std(ddof=1))
        used = max(sd, resolution / 2)
        half = _t(confidence, n - 1) * used / math.sqrt(n) + systematic
        out.update(std=sd, sd_used=used, floored=used > sd, half_width=half,
                   ci=[out["mean"] - half, out["mean"] + half])
    return out


def ce_gap_stats(ls_sq: dict[int, float], ref_sq: dict[int, float],
                 confidence: float = default("claims.confidence")) -> dict:
    """Claim 3's interval for the gap of RMS calibration errors ``sqrt(A) − sqrt(B)``, from per-seed
    unbiased estimates of the squared errors (A: LS, B: temperature scaling; Kumar et al. 2019,
    :func:`lspipe.experiments.calibration.debiased_squared_ce`).

    A and B (means over seeds) get t intervals at one-sided level ``(1 − confidence) / 4`` each
    (Bonferroni over the two), and the gap's interval is ``[√L_A⁺ − √U_B⁺, √U_A⁺ − √L_B⁺]``: each end
    is then a one-sided bound at level ``(1 − confidence) / 2`` or better. The square root is taken
    of the *bounds*, never of a single estimate, so the estimator's bias near 0 (which makes any
    plug-in ECE of a well-calibrated model too large) does not enter. Per-seed values
    ``√A_s⁺ − √B_s⁺`` are descriptive."""
    seeds = sorted(set(ls_sq) & set(ref_sq))
    a = np.array([ls_sq[s] for s in seeds], float)
    b = np.array([ref_sq[s] for s in seeds], float)
    n = len(seeds)
    root = lambda x: math.sqrt(max(float(x), 0.0))  # noqa: E731
    out = effect_stats({s: root(x) - root(y) for s, x, y in zip(seeds, a, b)}, confidence)
    out.update(method="ce_gap", squared={"ls": [float(x) for x in a], "reference": [float(x) for x in b]})
    if n == 0:
        return out
    out["mean"] = root(a.mean()) - root(b.mean())
    if n >= 2:
        q = 1 - (1 - confidence) / 4
        from scipy.stats import t as student_t

        tq = float(student_t.ppf(q, n - 1))
        sa, sb = float(a.std(ddof=1)), float(b.std(ddof=1))
        ua, la = a.mean() + tq * sa / math.sqrt(n), a.mean() - tq * sa / math.sqrt(n)
        ub, lb = b.mean() + tq * sb / math.sqrt(n), b.mean() - tq * sb / math.sqrt(n)
        lo, hi = root(la) - root(ub), root(ua) - root(lb)
        sd = 0.0 if sa == 0 and sb == 0 else float(np.std(np.array(out["values"]), ddof=1))
        out.update(std=sd, sd_used=sd, ci=[lo, hi], half_width=(hi - lo) / 2,
                   bounds={"A": [float(la), float(ua)], "B": [float(lb), float(ub)]}, std_squared=[sa, sb])
    return out


def _bounds(kind: str, bound: float) -> tuple[float | None, float | None]:
    return {"greater": (bound, None), "at_least": (-bound, None), "at_most": (None, bound),
            "within": (-bound, bound)}[kind]


def decide(stats: dict, kind: str, bound: float, min_seeds: int, contra: float | None = None) -> tuple[str, str]:
    """Verdict and its one-line ground, by the interval alone (see the module docstring).

    ``kind``: ``greater`` (interval above ``bound``), ``at_least`` (interval above −``bound``),
    ``at_most`` (interval below +``bound``), ``within`` (interval inside ±``bound``). ``contra``: the
    bound whose far side contradicts the claim when it differs from ``bound`` (claim 5: the noise
    margin decides "supported", 0 "contradicted"). An interval end equal to a bound is not strictly
    inside (inconclusive). Zero spread over fewer than :data:`ZERO_SPREAD_SEEDS` seeds, or of a
    continuous effect, is inconclusive."""
    lo_b, hi_b = _bounds(kind, bound)
    clo, chi = _bounds(kind, bound if contra is None else contra)
    n = stats["n"]
    if n == 0:
        return NOT_COMPARED, "no comparable runs"
    if n < 2 or stats["ci"] is None:
        return INCONCLUSIVE, f"{NO_SPREAD}: no interval"
    if stats.get("std", stats.get("sd_used")) == 0:
        if not stats.get("resolution") or stats.get("sd_used") == 0:
            return INCONCLUSIVE, (f"every seed gives the same value ({stats['values'][0]:.4g}): zero spread of a "
                                  "continuous effect gives no interval")
        if n < ZERO_SPREAD_SEEDS:
            return INCONCLUSIVE, (f"every seed gives the same value ({stats['values'][0]:.4g}): zero spread over fewer "
                                  f"than {ZERO_SPREAD_SEEDS} seeds says nothing of the seed-to-seed variance")
    if n < min_seeds:
        return INCONCLUSIVE, f"{n} seeds, fewer than claims.min_seeds = {min_seeds}"
    lo, hi = stats["ci"]
    if (clo is not None and hi < clo) or (chi is not None and lo > chi):
        return CONTRADICTED, "the interval lies beyond the claimed bound"
    if (lo_b is None or lo > lo_b) and (hi_b is None or hi < hi_b):
        return SUPPORTED, "the interval lies inside the claimed range"
    return INCONCLUSIVE, "the interval touches or straddles a bound of the claimed range"


RULE_TEXT = {
    "greater": "interval above {b:.4g}",
    "at_least": "interval above −{b:.4g} (\"does not hurt\": the margin {b:.4g})",
    "at_most": "interval below +{b:.4g} (\"not worse / no better than\": the margin {b:.4g})",
    "within": "interval inside ±{b:.4g} (\"comparable\": the margin {b:.4g})",
}


def rule_text(kind: str, bound: float, contra: float | None = None) -> str:
    if kind == "number":
        return "a number, no verdict"
    if bound == 0 and kind in ("at_least", "at_most"):
        text = f"interval {'above' if kind == 'at_least' else 'below'} 0 (no margin)"
    else:
        text = RULE_TEXT[kind].format(b=bound)
    if contra is not None and contra != bound:
        text += f"; contradicted only by an interval below {contra:.4g}"
    return text


def _sign(x: float, digits: int = 4) -> str:
    return f"{x:+.{digits}g}"


# --------------------------------------------------------------------------- power


def sd_upper(sd: float, n: int, level: float = POWER_SD_LEVEL) -> float:
    """One-sided ``level`` upper confidence bound of a normal sd from a sample sd of n values:
    ``sd · sqrt((n − 1) / χ²_{1 − level}(n − 1))`` (χ² quantile at 1 − level)."""
    from scipy.stats import chi2

    return sd * math.sqrt((n - 1) / float(chi2.ppf(1 - level, n - 1)))


def _distance(kind: str, effect: float, bound: float) -> float:
    """How far a true effect lies inside the claimed range's near end (negative: outside)."""
    return {"greater": effect - bound, "at_least": effect + bound, "at_most": bound - effect}[kind]


def power(kind: str, effect: float, bound: float, sd: float, n: int, alpha: float) -> float:
    """P(supported) at ``n`` seeds for a true mean effect ``effect`` and seed sd ``sd``: the power of
    the one-sided t test at level ``alpha`` (noncentral t, ``scipy.stats.nct``) that the interval's
    near end clears the bound; for ``within`` the two one-sided tests together (TOST, the lower bound
    ``P1 + P2 − 1``)."""
    from scipy.stats import nct, t as student_t

    if n < 2 or sd <= 0:
        return float("nan")
    crit = float(student_t.ppf(1 - alpha, n - 1))

    def one(delta):
        return float(nct.sf(crit, n - 1, delta * math.sqrt(n) / sd))

    if kind == "within":
        return max(0.0, one(effect + bound) + one(bound - effect) - 1.0)
    return one(_distance(kind, effect, bound))


def seeds_for_power(kind: str, effect: float, bound: float, sd: float, alpha: float,
                    target: float = POWER_TARGET, at_least: int = 2) -> int | None:
    """Smallest n >= ``at_least`` (and >= 2) whose :func:`power` reaches ``target``; None when sd is
    unknown or zero; ``SEEDS_SEARCH_MAX + 1`` when beyond the search (e.g. a true effect outside the
    claimed range, which no number of seeds supports)."""
    if not sd or sd <= 0:
        return None
    if kind != "within" and _distance(kind, effect, bound) <= 0:
        return SEEDS_SEARCH_MAX + 1
    if kind == "within" and abs(effect) >= bound:
        return SEEDS_SEARCH_MAX + 1
    lo, hi = max(2, at_least), SEEDS_SEARCH_MAX
    if power(kind, effect, bound, sd, hi, alpha) < target:
        return SEEDS_SEARCH_MAX + 1
    while lo < hi:  # power rises with n
        mid = (lo + hi) // 2
        if power(kind, effect, bound, sd, mid, alpha) >= target:
            hi = mid
        else:
            lo = mid + 1
    return lo


def _seeds_text(n: int | None) -> str:
    return "—" if n is None else (f"more than {SEEDS_SEARCH_MAX}" if n > SEEDS_SEARCH_MAX else str(n))


def decidability(stats: dict, kind: str, bound: float, unit: str, min_seeds: int) -> dict:
    """What these seeds can decide, and the seeds a decision would need (80 % power).

    The half-width w: a ``greater`` check is decided only by a mean beyond ``bound ± w``, a margin
    check by a mean beyond ``±m ± w``. Power (:func:`power`, the noncentral t) of the rule in use,
    the interval alone: P(supported) now, and the seeds for :data:`POWER_TARGET` power at the
    observed mean effect and (margin checks) at a true effect of 0, each with the sd observed and at
    its one-sided :data:`POWER_SD_LEVEL` upper confidence bound (:func:`sd_upper`; a sd from 3 seeds is
    not taken at face value)."""
    u = f" {unit}" if unit else ""
    n, w, sd = stats["n"], stats["half_width"], stats["sd_used"]
    out = {"half_width": w, "supported_if": None, "contradicted_if": None, "seeds_needed": None,
           "undecidable_near_zero": None, "power": None, "text": ""}
    if kind == "number":
        return out
    if n < 2 or w is None:
        out["text"] = (f"{NO_SPREAD}: the smallest decidable effect cannot be estimated (a verdict needs at least "
                       f"claims.min_seeds = {min_seeds} seeds)")
        return out
    if not sd:
        out["text"] = "zero spread: the smallest decidable effect cannot be estimated"
        return out
    lo_b, hi_b = _bounds(kind, bound)
    if kind == "greater":
        sup, con = f"above {_sign(bound + w)}{u}", f"below {_sign(bound - w)}{u}"
    elif kind == "at_least":
        sup, con = f"above {_sign(lo_b + w)}{u}", f"below {_sign(lo_b - w)}{u}"
    elif kind == "at_most":
        sup, con = f"below {_sign(hi_b - w)}{u}", f"above {_sign(hi_b + w)}{u}"
    else:
        sup = f"within ±{bound - w:.4g}{u}" if w < bound else "never (the half-width exceeds the margin)"
        con = f"beyond ±{bound + w:.4g}{u}"
    out.update(supported_if=sup, contradicted_if=con)
    text = (f"with {n} seeds at this spread (sd {sd:.3g}{u}) the interval's half-width is {w:.3g}{u}: the check is "
            f"decided only by a mean effect {sup} (supported) or {con} (contradicted)")
    if kind != "greater":
        out["undecidable_near_zero"] = w >= bound
        if w >= bound:
            text += f"; undecidable at {n} seeds for an effect near 0: the half-width exceeds the margin {bound:g}{u}"
    if stats.get("method", "t") != "t":
        text += ("; power: not computed for this interval (two estimates combined); its half-width shrinks like "
                 "1/√n and with the test set's size")
        out["text"] = text
        return out
    alpha = stats["one_sided_level"]
    sd_up = sd_upper(sd, n)
    mean = stats["mean"]
    sys_ = stats.get("systematic") or 0.0  # a systematic term moves the bound by itself: power at the moved bound
    bound = bound + sys_ if kind == "greater" else bound - sys_
    pw = {"method": f"noncentral t (scipy.stats.nct), one-sided level {alpha:g} per end; sd at its one-sided "
                    f"{100 * POWER_SD_LEVEL:g} % chi-square upper bound", "target": POWER_TARGET,
          "sd": sd, "sd_upper": sd_up, "now": power(kind, mean, bound, sd, n, alpha),
          "at_observed": seeds_for_power(kind, mean, bound, sd, alpha, at_least=min_seeds),
          "at_observed_sd_upper": seeds_for_power(kind, mean, bound, sd_up, alpha, at_least=min_seeds)}
    if kind != "greater":
        pw["at_zero"] = seeds_for_power(kind, 0.0, bound, sd, alpha, at_least=min_seeds)
        pw["at_zero_sd_upper"] = seeds_for_power(kind, 0.0, bound, sd_up, alpha, at_least=min_seeds)
    out["power"] = pw
    out["seeds_needed"] = pw["at_zero"] if kind != "greater" else pw["at_observed"]
    t80 = f"{100 * POWER_TARGET:g} %"
    text += (f"; power (P(supported)) at the observed mean {_sign(mean)}{u} and this sd: {100 * pw['now']:.0f} % with "
             f"{n} seeds; {t80} power needs {_seeds_text(pw['at_observed'])} seeds at the observed mean "
             f"({_seeds_text(pw['at_observed_sd_upper'])} with the sd at its {100 * POWER_SD_LEVEL:g} % upper bound "
             f"{sd_up:.3g}{u})")
    if kind != "greater":
        text += (f", {_seeds_text(pw['at_zero'])} at a true effect of 0 "
                 f"({_seeds_text(pw['at_zero_sd_upper'])} with the sd at its upper bound)")
    out["text"] = text
    return out


def reason_text(stats: dict, kind: str, bound: float, unit: str, verdict: str, why: str) -> str:
    """The reason line: where the mean lies, k of n seeds on the claimed side (a description, not part
    of the rule), whether the interval excludes 0, its half-width against the margin, the one-sided level."""
    u = f" {unit}" if unit else ""
    n = stats["n"]
    if n == 0:
        return why
    if kind == "number":
        return f"{why}; mean {_sign(stats['mean'])}{u}"
    lo_b, hi_b = _bounds(kind, bound)

    def side(x):
        return (lo_b is None or x > lo_b) and (hi_b is None or x < hi_b)

    per_seed = ", ".join(f"s{s} {_sign(v)}" for s, v in zip(stats["seeds"], stats["values"]))
    k = sum(side(v) for v in stats["values"])
    parts = [f"{verdict}: {why}", f"mean {_sign(stats['mean'])}{u} ({'inside' if side(stats['mean']) else 'outside'} "
             f"the claimed range)", f"seeds {per_seed} ({k} of {n} on the claimed side: a description, not the rule)"]
    if stats["ci"] is not None:
        lo, hi = stats["ci"]
        excl = "excludes" if lo > 0 or hi < 0 else "includes"
        pct = f"{100 * stats['confidence']:g} %"
        parts.append(f"the {pct} interval [{_sign(lo)}, {_sign(hi)}]{u} {excl} 0")
        w = stats["half_width"]
        if kind == "greater":
            parts.append(f"half-width {w:.3g}{u}")
        else:
            parts.append(f"half-width {w:.3g}{u} against the margin {bound:g}{u}"
                         + (" (wider than the margin)" if w >= bound else ""))
        if stats.get("systematic"):
            parts.append(f"of which {stats['systematic']:.3g}{u} is a systematic term added to each end")
        if stats["floored"]:
            parts.append(f"sd floored at half the resolution ({stats['sd_floor']:.3g}{u}; sample sd {stats['std']:.3g})")
        parts.append(f"each end of the interval is a one-sided test at level {100 * stats['one_sided_level']:g} %")
    return "; ".join(parts)


def check(claim: int, scope: str, statement: str, values: dict[int, float], *, kind: str, bound: float,
          unit: str, cfg: dict, role: str = DESCRIPTIVE, label: str = "", resolution: float = 0.0,
          numbers: dict | None = None, notes: Sequence[str] = (), sources: dict | None = None,
          contra: float | None = None, systematic: float = 0.0, stats_at=None, paper: dict | None = None) -> dict:
    """One check: the per-seed effects, their statistics, the verdict and its grounds.

    ``stats_at(confidence)`` replaces :func:`effect_stats` (claim 3's interval of two estimates);
    ``kind`` ``number``: a number with its interval and no verdict; ``paper``: the paper's own
    effect on the same scale (``{"value", "source"}``), drawn in the forest plot."""
    if stats_at is None:
        def stats_at(conf):
            return effect_stats(values, conf, resolution, systematic)
    stats = stats_at(cfg["confidence"])
    if kind == "number":
        verdict, why = (REPORTED, "a number, no verdict") if stats["n"] else (NOT_COMPARED, "no comparable runs")
        sens = {}
    else:
        verdict, why = decide(stats, kind, bound, cfg["min_seeds"], contra)
        sens = {f"{100 * c:g}": decide(stats_at(c), kind, bound, cfg["min_seeds"], contra)[0] for c in SENSITIVITY}
    extra = {}
    if verdict == NOT_COMPARED:
        extra = {"config_key": "the grids' seeds (teachers[].seeds, distillation[].seeds)"}
        why = f"no seed has every run this check pairs; {extra['config_key']} would make the runs comparable"
    return {**extra, "claim": claim, "id": "", "role": role, "scope": scope, "label": label, "statement": statement,
            "verdict": verdict, "reason": reason_text(stats, kind, bound, unit, verdict, why),
            "rule": rule_text(kind, bound, contra), "kind": kind, "bound": bound, "contra": contra, "unit": unit,
            "effect": stats, "sensitivity": sens, "paper": paper,
            "decidable": decidability(stats, kind, bound, unit, cfg["min_seeds"]), "numbers": numbers or {},
            "notes": list(notes), "sources": sources or {"files": [], "keys": []}}


def not_run(claim: int, scope: str, statement: str, key: str, role: str = PRIMARY, label: str = "") -> dict:
    return _empty(claim, scope, statement, NOT_RUN,
                  f"the configuration does not run this experiment; set {key} to run it", key, role, label)


def not_compared(claim: int, scope: str, statement: str, why: str, key: str, role: str = PRIMARY, label: str = "",
                 numbers: dict | None = None, notes: Sequence[str] = (), sources: dict | None = None) -> dict:
    c = _empty(claim, scope, statement, NOT_COMPARED, f"{why}; {key} would make the runs comparable", key, role, label)
    c.update(numbers=numbers or {}, notes=list(notes), sources=sources or c["sources"])
    return c


def _empty(claim, scope, statement, verdict, reason, key, role, label) -> dict:
    return {"claim": claim, "id": "", "role": role, "scope": scope, "label": label, "statement": statement,
            "verdict": verdict, "reason": reason, "config_key": key, "rule": "", "kind": None, "bound": None,
            "contra": None, "unit": "", "effect": None, "sensitivity": {}, "paper": None, "decidable": None,
            "numbers": {}, "notes": [], "sources": {"files": [], "keys": []}}


def pick_ls_alpha(alphas: Iterable[float], wanted: float | None) -> float | None:
    """The label-smoothed alpha compared: ``wanted`` if present, else (``wanted`` None) the smallest nonzero."""
    alphas = sorted({float(a) for a in alphas})
    if wanted is not None:
        return float(wanted) if any(math.isclose(a, float(wanted)) for a in alphas) else None
    nonzero = [a for a in alphas if a > 0]
    return nonzero[0] if nonzero else None


def _close(a, b) -> bool:
    return math.isclose(float(a), float(b), abs_tol=1e-12)


def _mean(v):
    v = list(v)
    return float(np.mean(v)) if len(v) else None


def _sources(records: Iterable[dict], keys: Sequence[str]) -> dict:
    """Input files (``_path`` of each record read from a file) and the keys read from them."""
    files = sorted({str(r["_path"]) for r in records if isinstance(r, dict) and r.get("_path")})
    return {"files": files, "keys": list(keys)}


def _resolution(evals: Iterable[dict], split: str) -> float:
    """One test image in percentage points: the step of an accuracy difference (0 when N is unknown)."""
    ns = [int(ev[split]["n"]) for ev in evals if ev.get(split, {}).get("n")]
    return 100.0 / min(ns) if ns else 0.0


def _assign_ids(checks: list[dict]) -> list[dict]:
    """Ids per (claim, grid): the primary 'a', descriptive 'b', 'c', ..., regime 'R' ('R1', 'R2' when several)."""
    by: dict[tuple, list[dict]] = defaultdict(list)
    for c in checks:
        by[(c["claim"], c["scope"])].append(c)
    for (claim, _), cs in by.items():
        primaries = [c for c in cs if c["role"] == PRIMARY]  # several only for claim 6 (a conjunction): a, b
        letters = iter("abcdefghijklmnopqrstuvwxyz"[max(1, len(primaries)):])
        regime = [c for c in cs if c["role"] == REGIME]
        for c in cs:
            if c["role"] == PRIMARY:
                c["id"] = f"{claim}{'abcdefghijklmnopqrstuvwxyz'[primaries.index(c)]}"
            elif c["role"] == REGIME:
                c["id"] = f"{claim}R" + (str(regime.index(c) + 1) if len(regime) > 1 else "")
            else:
                c["id"] = f"{claim}{next(letters)}"
    return checks


# --------------------------------------------------------------------------- models keyed by objective


def objective_of(model: dict) -> dict:
    """A model's objective: the one its run name says (:func:`lspipe.base.runs.run_objective`), else
    label smoothing at its recorded alpha. A confidence-penalty teacher records ``alpha: 0`` but is
    not the hard-target arm: its run name says so."""
    obj = run_objective(model.get("run") or "", model.get("alpha"))
    if obj is None:
        raise ConfigError(f"model {model.get('run')!r} of {model.get('dataset')}/{model.get('arch')}: neither its run "
                          "name nor its alpha says its objective; rerun its evaluation (snakemake -R analyse_model)")
    if obj["kind"] == "ls":
        obj = {"kind": "ls", "alpha": float(obj.get("alpha", 0.0))}
    return obj


def objective_key(obj: dict) -> str:
    return objective_token(obj) if obj["kind"] != "ls" else f"a{fmt(obj['alpha'])}"


def is_ls(obj: dict) -> bool:
    return obj["kind"] == "ls"


def group_models(records: Iterable[dict], what: str) -> dict[tuple, dict[str, dict[int, dict]]]:
    """``{(dataset, arch): {objective key: {seed: record}}}`` of model records (eval or calibration
    JSONs, each with ``model``); each record gets ``_objective``. Two records for one (dataset, arch,
    objective, seed) are refused (:class:`ConfigError` naming both files)."""
    out: dict[tuple, dict[str, dict[int, dict]]] = defaultdict(lambda: defaultdict(dict))
    for r in records:
        m = r["model"]
        obj = objective_of(m)
        key, seed = objective_key(obj), int(m["seed"])
        cell = out[(m["dataset"], m["arch"])][key]
        if seed in cell:
            raise ConfigError(f"two {what} for {m['dataset']}/{m['arch']} {objective_label(obj)} seed {seed}: "
                              f"{cell[seed].get('_path', cell[seed]['model'].get('run'))} and "
                              f"{r.get('_path', m.get('run'))}; remove one (or pass --config to read only what a "
                              "configuration names)")
        r["_objective"] = obj
        cell[seed] = r
    return out


def ls_alphas(by_obj: dict[str, dict]) -> dict[float, str]:
    """``{alpha: key}`` of the label-smoothing objectives of a grid (the hard arm is alpha 0)."""
    out = {}
    for key, cell in by_obj.items():
        obj = next(iter(cell.values()))["_objective"]
        if is_ls(obj):
            out[float(obj["alpha"])] = key
    return out


# --------------------------------------------------------------------------- claim 1: accuracy

# The paper's Table 2 (top-1 %, alpha 0 / alpha 0.1) by dataset family: claim 1's regime flag and the forest plot
PAPER_ACCURACY = {"cifar100": (72.1, 72.7, "CIFAR-100 ResNet-56"), "cifar10": (86.8, 86.7, "CIFAR-10 AlexNet"),
                  "imagenet": (80.9, 80.9, "ImageNet Inception-v4")}


def paper_family(dataset: str) -> str | None:
    """The paper's dataset a configured dataset name stands for (``cifar10``, ``cifar100``, ``imagenet``)."""
    name = dataset.lower().replace("-", "").replace("_", "")
    return next((k for k in PAPER_ACCURACY if name.startswith(k)), None)


def accuracy_margin(cfg: dict, hard_accuracy: float | None) -> tuple[float, str]:
    """Claim 1's margin in pp and its source: ``claims.accuracy_margin`` when set, else
    ``claims.accuracy_margin_relative`` x the hard-target model's error rate (100 − accuracy)."""
    if cfg.get("accuracy_margin") is not None:
        return float(cfg["accuracy_margin"]), f"claims.accuracy_margin = {cfg['accuracy_margin']:g} pp"
    r = cfg["accuracy_margin_relative"]
    err = 100.0 - (hard_accuracy if hard_accuracy is not None else 0.0)
    return r * err, (f"claims.accuracy_margin_relative = {r:g} × the α = 0 model's error {err:.3g} % (the paper's "
                     f"Table 2: twice its largest seed sd, 0.3 pp, in units of CIFAR-10 AlexNet's 13.2 % error ≈ 0.05)")


def accuracy_claims(teacher_evals: Sequence[dict], cfg: dict, split: str = default("accuracy_table.split")) -> list[dict]:
    """Claim 1 per teacher grid: accuracy(LS) − accuracy(hard) in percentage points, paired by seed.
    Models are keyed by objective: the hard arm is label smoothing at alpha 0 and nothing else.
    Primary: ``claims.ls_alpha``; descriptive: every other nonzero alpha and every other objective of
    the grid (a confidence-penalty teacher is a row of its own). Regime: the hard-target model's
    accuracy is in the paper's regime (within ``claims.regime_accuracy_gap`` pp of the paper's
    Table 2, for the datasets the paper reports)."""
    statement = "label smoothing does not hurt top-1 accuracy: accuracy(LS) − accuracy(α = 0), paired by seed"
    out = []
    for (ds, arch), by_obj in sorted(group_models(teacher_evals, "teacher evaluations").items()):
        scope = f"{ds}/{arch}"
        alphas = ls_alphas(by_obj)
        ls = pick_ls_alpha(alphas, cfg["ls_alpha"])
        hard = next((alphas[a] for a in alphas if _close(a, 0.0)), None)
        if ls is None or hard is None:
            out.append(not_run(1, scope, statement, "teachers[].alphas (alpha 0 and an LS alpha; claims.ls_alpha)"))
            continue
        others = [alphas[a] for a in sorted(alphas) if a > 0 and not _close(a, ls)]
        others += sorted(k for k in by_obj if k not in alphas.values())  # other objectives: rows of their own
        h = by_obj[hard]
        acc_hard_all = _mean(100.0 * r[split]["accuracy"] for r in h.values())
        margin, margin_src = accuracy_margin(cfg, acc_hard_all)
        for key, role in [(alphas[ls], PRIMARY)] + [(k, DESCRIPTIVE) for k in others]:
            s = by_obj[key]
            obj = next(iter(s.values()))["_objective"]
            seeds = sorted(set(h) & set(s))
            acc_h = {k: 100.0 * h[k][split]["accuracy"] for k in seeds}
            acc_s = {k: 100.0 * s[k][split]["accuracy"] for k in seeds}
            used = [h[k] for k in seeds] + [s[k] for k in seeds]
            src = _sources(used, [f"{split}.accuracy", f"{split}.n"])
            name = f"LS α = {obj['alpha']:g}" if is_ls(obj) else objective_label(obj)
            label = f"{name}, {split} split"
            st = statement if is_ls(obj) else (f"{objective_label(obj)} does not hurt top-1 accuracy: "
                                                f"accuracy({obj['kind']}) − accuracy(α = 0), paired by seed")
            if not seeds:
                out.append(not_compared(1, scope, st, "no seed has both models",
                                        f"teachers[].seeds ({sorted(h)} and {sorted(s)})", role, label, sources=src))
                continue
            numbers = {f"accuracy α=0 (%, {split})": _mean(acc_h.values()),
                       f"accuracy {name} (%, {split})": _mean(acc_s.values()),
                       "margin (pp)": f"{margin:.3g} ({margin_src})",
                       "test images (one image = resolution)": min(int(ev[split].get("n") or 0) for ev in used) or "?"}
            fam = paper_family(ds)
            paper = None
            if fam and role == PRIMARY and _close(ls, 0.1):
                p0, p1, what = PAPER_ACCURACY[fam]
                paper = {"value": p1 - p0, "source": f"Table 2, {what}: {p1:g} − {p0:g}"}
            out.append(check(1, scope, st, {k: acc_s[k] - acc_h[k] for k in seeds}, kind="at_least",
                             bound=margin, unit="pp", cfg=cfg, role=role, label=label,
                             resolution=_resolution(used, split), numbers=numbers, sources=src, paper=paper))
        # regime: the hard-target model's accuracy against the paper's
        fam = paper_family(ds)
        st_r = ("the hard-target model is in the paper's accuracy regime: accuracy(α = 0) − the paper's accuracy(α = 0) "
                f"above −claims.regime_accuracy_gap")
        if fam is None:
            out.append(not_compared(1, scope, st_r, f"the paper reports no accuracy for {ds}",
                                    "a dataset the paper reports (cifar10, cifar100, imagenet)", REGIME))
        else:
            p0, _, what = PAPER_ACCURACY[fam]
            out.append(check(1, scope, st_r, {k: 100.0 * r[split]["accuracy"] - p0 for k, r in h.items()},
                             kind="at_least", bound=cfg["regime_accuracy_gap"], unit="pp", cfg=cfg, role=REGIME,
                             numbers={f"the paper's accuracy α=0 ({what}, %)": p0,
                                      f"accuracy α=0 (%, {split})": acc_hard_all},
                             resolution=_resolution(h.values(), split),
                             sources=_sources(h.values(), [f"{split}.accuracy"])))
    if not out:
        out.append(not_run(1, "all", statement, "teachers"))
    return out


# --------------------------------------------------------------------------- claim 2: tightness


def read_csv(path: str | Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def tightness_claims(rows: Sequence[dict], cfg: dict, fig1_ls_alpha: float | None, has_fig1_rows: bool) -> list[dict]:
    """Claim 2 per teacher grid, paired by seed: ratio(hard) − ratio(LS) > 0.

    Primary: the mean over every class triple of the table (kind ``random``) on
    ``claims.tightness_split``, LS = ``claims.ls_alpha``. Descriptive: the same on the table's
    other splits, and each Fig. 1 row on each split (LS = ``projections.ls_alpha``).
    """
    statement = "label smoothing tightens the clusters: tightness ratio(α = 0) − ratio(LS) > 0, paired by seed"
    by: dict[tuple, dict] = defaultdict(lambda: defaultdict(dict))  # (ds, arch, split, kind, row) -> alpha -> seed -> row
    grids: dict[tuple, set] = defaultdict(set)
    for r in rows:
        if r.get("run") and not is_ls(objective_of(r)):
            continue  # another objective's dump (e.g. a confidence-penalty teacher, alpha 0): not the hard arm
        split = r.get("split") or "val"
        by[(r["dataset"], r["arch"], split, r["kind"], int(r["row"]))][float(r["alpha"])][int(r["seed"])] = r
        grids[(r["dataset"], r["arch"])].add(float(r["alpha"]))
    out = []
    primary_split = cfg["tightness_split"]
    if not grids:
        out.append(not_run(2, "all", statement, "teachers[].alphas (alpha 0 and an LS alpha) and claims.tightness_triples"))
    for (ds, arch), alphas in sorted(grids.items()):
        scope = f"{ds}/{arch}"
        splits = sorted({k[2] for k in by if k[:2] == (ds, arch)}, key=lambda s: (s != primary_split, s))
        ls = pick_ls_alpha(alphas, cfg["ls_alpha"])
        if primary_split not in splits:
            out.append(not_compared(2, scope, statement, f"the tightness table has no {primary_split!r} split",
                                    "claims.tightness_split"))
        for split in splits:
            role = PRIMARY if split == primary_split else DESCRIPTIVE
            keys = sorted(k for k in by if k[:4] == (ds, arch, split, "random"))
            label = f"mean over class triples, {split} split"
            if not keys or ls is None or 0.0 not in alphas:
                out.append(not_run(2, scope, statement, "teachers[].alphas (alpha 0 and an LS alpha; claims.ls_alpha) "
                                   "and claims.tightness_triples", role, label))
                continue
            diffs: dict[int, list[float]] = defaultdict(list)
            ratio_h: dict[int, list[float]] = defaultdict(list)
            ratio_s: dict[int, list[float]] = defaultdict(list)
            used = []
            for k in keys:
                h, s = by[k].get(0.0, {}), by[k].get(ls, {})
                for seed in set(h) & set(s):
                    diffs[seed].append(float(h[seed]["ratio"]) - float(s[seed]["ratio"]))
                    ratio_h[seed].append(float(h[seed]["ratio"]))
                    ratio_s[seed].append(float(s[seed]["ratio"]))
                    used += [h[seed], s[seed]]
            src = _sources(used, [f"kind=random, split={split}: ratio per (alpha, seed, triple)"])
            if not diffs:
                out.append(not_compared(2, scope, statement, f"no seed has both α = 0 and α = {ls:g}",
                                        "teachers[].seeds / claims.ls_alpha", role, label, sources=src))
                continue
            counts = {len(v) for v in diffs.values()}
            mh, ms = _mean(itertools.chain(*ratio_h.values())), _mean(itertools.chain(*ratio_s.values()))
            numbers = {"class triples": max(counts), "mean ratio α=0": mh, f"mean ratio α={ls:g}": ms,
                       f"ratio_LS / ratio_hard (α={ls:g})": ms / mh if mh else None,
                       "ratio_LS / ratio_hard per seed": ", ".join(
                           f"s{s} {np.mean(ratio_s[s]) / np.mean(ratio_h[s]):.3f}" for s in sorted(diffs)),
                       "fraction of (triple, seed) pairs tighter with LS":
                           float(np.mean([x > 0 for v in diffs.values() for x in v]))}
            notes = [] if len(counts) == 1 else [f"seeds differ in their number of triples: {sorted(counts)}"]
            out.append(check(2, scope, statement, {s: float(np.mean(v)) for s, v in diffs.items()}, kind="greater",
                             bound=0.0, unit="ratio", cfg=cfg, role=role, label=f"{label}; LS α = {ls:g}",
                             numbers=numbers, notes=notes, sources=src))
        fig1 = sorted(k for k in by if k[:2] == (ds, arch) and k[3] == "fig1")
        for key in sorted(fig1, key=lambda k: (k[4], k[2] != primary_split, k[2])):
            _, _, split, _, i = key
            lsf = pick_ls_alpha(by[key], fig1_ls_alpha)
            label = f"Fig. 1 row {i}, {split} split"
            if lsf is None or 0.0 not in by[key]:
                out.append(not_run(2, scope, statement, "projections.ls_alpha", DESCRIPTIVE, label))
                continue
            h, s = by[key][0.0], by[key][lsf]
            seeds = sorted(set(h) & set(s))
            src = _sources([h[k] for k in seeds] + [s[k] for k in seeds], [f"kind=fig1, row={i}, split={split}: ratio"])
            if not seeds:
                out.append(not_compared(2, scope, statement, "no seed has both models", "teachers[].seeds",
                                        DESCRIPTIVE, label, sources=src))
                continue
            classes = h[seeds[0]]["classes"].replace("|", ", ")
            mh, ms = _mean(float(h[k]["ratio"]) for k in seeds), _mean(float(s[k]["ratio"]) for k in seeds)
            numbers = {"ratio α=0": mh, f"ratio α={lsf:g}": ms, f"ratio_LS / ratio_hard": ms / mh if mh else None}
            out.append(check(2, scope, statement, {k: float(h[k]["ratio"]) - float(s[k]["ratio"]) for k in seeds},
                             kind="greater", bound=0.0, unit="ratio", cfg=cfg, role=DESCRIPTIVE,
                             label=f"{label} ({classes}); LS α = {lsf:g}", numbers=numbers, sources=src))
    if not has_fig1_rows:
        out.append(not_run(2, out[0]["scope"] if out and out[0]["scope"] != "all" else "all", statement,
                           "projections.rows", DESCRIPTIVE, "Fig. 1 rows"))
    return out


# --------------------------------------------------------------------------- claim 3: calibration


def choose_alpha(val_metric: dict[float, float], nonzero: Sequence[float]) -> tuple[float, str | None]:
    """alpha* = the nonzero alpha with the lowest validation metric (ties: the smaller alpha), and a
    note when it sits at an edge of the grid's nonzero alphas (None otherwise)."""
    alphas = sorted(nonzero)
    best = min(alphas, key=lambda a: (val_metric[a], a))
    if len(alphas) == 1:
        return best, "α* is the grid's only nonzero α: no choice was made"
    if best == alphas[-1]:
        return best, f"α* = {best:g} is the grid's largest α: a larger α may calibrate better"
    if best == alphas[0]:
        return best, f"α* = {best:g} is the grid's smallest nonzero α: a smaller α may calibrate better"
    return best, None


# The paper's Table 3 ECE (LS − temperature scaling) by dataset family: drawn beside claim 3's primary in the forest plot
PAPER_ECE_GAP = {"cifar100": (0.024 - 0.021, "Table 3, CIFAR-100 ResNet-56: ECE 0.024 (LS) − 0.021 (TS)"),
                 "imagenet": (0.035 - 0.022, "Table 3, ImageNet Inception-v4: ECE 0.035 (LS) − 0.022 (TS)")}


def _squared_ce(record: dict, part: str) -> float | None:
    """Claim 3's unbiased squared RMS calibration error of one calibration JSON's ``before`` / ``after``
    reliability diagram (:func:`lspipe.experiments.calibration.debiased_squared_ce`); None without one."""
    rel = (record.get(part) or {}).get("reliability")
    if not rel or "count" not in rel:
        return None
    return debiased_squared_ce(rel["count"], rel["accuracy"], rel["confidence"])


def calibration_claims(results: Sequence[dict], cfg: dict) -> list[dict]:
    """Claim 3 per teacher grid, from every teacher's calibration JSON (``lspipe calibrate``).

    Models are keyed by objective (only label smoothing enters; the hard arm is alpha 0). alpha* =
    argmin over the nonzero alphas of the mean over seeds of the validation ECE (or NLL,
    ``claims.calibration_selection``) at T = 1; an alpha missing in a seed of the hard arm is left
    out of the choice (and named), not the seed. Primary: the RMS calibration error of LS at alpha*
    minus that of the hard arm after temperature scaling, on test, interval below ``claims.ece_margin``
    (:func:`ce_gap_stats`: squared errors estimated without bias, Kumar et al. 2019). Descriptive: LS
    lowers the RMS calibration error and the NLL of hard targets at T = 1. Reported, no verdict: NLL(LS)
    − NLL(temperature scaled) (the paper claims nothing there). Regime: the hard-target model's
    fitted T > 1 (a T on the edge of its search range is left out)."""
    rows = [r for r in results if r["model"].get("role", "teacher") == "teacher"]
    groups = group_models(rows, "calibration files")
    st_a = ("LS at α* (chosen on validation) is not worse calibrated than temperature scaling: RMS calibration error "
            "CE(LS α*) − CE(α = 0, temperature scaled) < margin, test split (squared errors estimated without bias)")
    out = []
    if not groups:
        return [not_run(3, "all", st_a, "teachers[].alphas (alpha 0 and a nonzero alpha)")]
    metric = cfg["calibration_selection"]
    for (ds, arch), by_obj in sorted(groups.items()):
        scope = f"{ds}/{arch}"
        others = sorted(objective_label(next(iter(c.values()))["_objective"]) for k, c in by_obj.items()
                        if not is_ls(next(iter(c.values()))["_objective"]))
        by_alpha = {a: by_obj[k] for a, k in ls_alphas(by_obj).items()}
        nonzero_all = sorted(a for a in by_alpha if a > 0)
        if 0.0 not in by_alpha or not nonzero_all:
            out.append(not_run(3, scope, st_a, "teachers[].alphas (alpha 0 and a nonzero alpha)"))
            continue
        hard_seeds = set(by_alpha[0.0])
        nonzero = [a for a in nonzero_all if hard_seeds <= set(by_alpha[a])]
        dropped = [a for a in nonzero_all if a not in nonzero]
        if not nonzero:  # every alpha misses a seed: fall back to the seeds all of them share
            nonzero = nonzero_all
            dropped = []
        seeds = sorted(set.intersection(*(set(by_alpha[a]) for a in [0.0] + nonzero)))
        all_used = [r for a in by_alpha for r in by_alpha[a].values()]
        src = _sources(all_used, [f"val.{metric} (α* selection, T = 1)", "before.reliability", "after.reliability",
                                  "before.ece", "after.ece", "before.ece_floor", "before.nll", "after.nll",
                                  "temperature", "fit.at_bound"])
        if not seeds:
            out.append(not_compared(3, scope, st_a, "no seed has every α of the grid", "teachers[].seeds", sources=src))
            continue
        if any("val" not in by_alpha[a][s] for a in nonzero for s in seeds):
            out.append(not_compared(3, scope, st_a, "the calibration JSONs have no validation metrics at T = 1 "
                                    "(written before lspipe.experiments.calibration format 2)",
                                    "rerunning `lspipe calibrate` (snakemake -R analyse_model)", sources=src))
            continue
        val = {a: _mean(by_alpha[a][s]["val"][metric] for s in seeds) for a in nonzero}
        star, edge = choose_alpha(val, nonzero)
        h, s_ = by_alpha[0.0], by_alpha[star]
        sq = {("ls", k): _squared_ce(s_[k], "before") for k in seeds}
        sq.update({("ts", k): _squared_ce(h[k], "after") for k in seeds})
        sq.update({("hard", k): _squared_ce(h[k], "before") for k in seeds})
        if any(v is None for v in sq.values()):
            out.append(not_compared(3, scope, st_a, "the calibration JSONs have no reliability diagrams",
                                    "rerunning `lspipe calibrate` (snakemake -R analyse_model)", sources=src))
            continue
        ece = {a: _mean(by_alpha[a][s]["before"]["ece"] for s in seeds) for a in [0.0] + nonzero}

        def rms(arm):
            return math.sqrt(max(0.0, _mean(sq[(arm, k)] for k in seeds)))

        numbers = {
            f"validation {metric.upper()} at T = 1 by α (selects α*)": ", ".join(f"α={a:g}: {v:.4f}" for a, v in val.items()),
            "α*": star,
            "RMS calibration error, debiased (√ of the mean squared estimate): "
            f"LS α*={star:g} / α=0 temperature scaled / α=0 at T = 1": f"{rms('ls'):.4f} / {rms('ts'):.4f} / {rms('hard'):.4f}",
            "test ECE (plug-in, biased upwards) at T = 1 by α": ", ".join(f"α={a:g}: {v:.4f}" for a, v in ece.items()),
            f"test ECE α*={star:g}": _mean(s_[k]["before"]["ece"] for k in seeds),
            "test ECE α=0, temperature scaled": _mean(h[k]["after"]["ece"] for k in seeds),
            "plug-in ECE difference LS α* − temperature scaled (biased towards 0 near calibration)":
                _mean(s_[k]["before"]["ece"] - h[k]["after"]["ece"] for k in seeds),
        }
        floors = {"LS α*": [s_[k]["before"].get("ece_floor") for k in seeds],
                  "α=0 temperature scaled": [h[k]["after"].get("ece_floor") for k in seeds]}
        n_test = h[seeds[0]]["before"].get("reliability", {}).get("n")
        if all(v is not None for f in floors.values() for v in f):
            numbers["ECE floor (expected plug-in ECE if perfectly calibrated, same N and confidences)"] = "; ".join(
                f"{k}: {_mean(v):.4f}" for k, v in floors.items()) + (f" (N = {n_test}, {h[seeds[0]]['bins']} bins)"
                                                                      if n_test else "")
        numbers.update({
            f"test NLL α*={star:g}": _mean(s_[k]["before"]["nll"] for k in seeds),
            "test NLL α=0, temperature scaled": _mean(h[k]["after"]["nll"] for k in seeds),
            "test NLL α=0, T = 1": _mean(h[k]["before"]["nll"] for k in seeds),
        })
        at_bound = {(a, k): by_alpha[a][k]["temperature"] for a in by_alpha for k in by_alpha[a]
                    if (by_alpha[a][k].get("fit") or {}).get("at_bound")}
        notes = [f"α* chosen among the nonzero alphas {', '.join(f'{a:g}' for a in nonzero)} by the mean validation "
                 f"{metric.upper()} at T = 1 over seeds {seeds} (claims.calibration_selection), without test data; "
                 "temperature scaling gets one fitted T per model, LS one α per grid (conservative for LS)",
                 "the calibration error is the RMS over 15 confidence bins, its square estimated without bias per model "
                 "(Kumar, Liang & Ma 2019); the plug-in ECE of a well-calibrated model sits at its floor (about 0.027 "
                 "at 2,000 test images), which would shrink the gap to temperature scaling, so the ECE is reported, "
                 "not tested; the interval combines two estimates (Bonferroni), see the decision rule"]
        notes += [edge] if edge else []
        if dropped:
            notes.append("left out of the α* choice (missing in a seed of α = 0): α " + ", ".join(f"{a:g}" for a in dropped))
        if others:
            notes.append("other objectives left out (claim 3 compares label smoothing): " + "; ".join(others))
        if at_bound:
            notes.append("temperatures at the edge of the search range (a bound, not a fitted value): " + ", ".join(
                f"α={a:g} s{k}: T = {t:.3g}" for (a, k), t in sorted(at_bound.items())))
        ls_sq = {k: sq[("ls", k)] for k in seeds}
        ts_sq = {k: sq[("ts", k)] for k in seeds}
        hard_sq = {k: sq[("hard", k)] for k in seeds}
        fam = paper_family(ds)
        paper = ({"value": PAPER_ECE_GAP[fam][0], "source": PAPER_ECE_GAP[fam][1] + " (plug-in ECE)"}
                 if fam in PAPER_ECE_GAP else None)
        out.append(check(3, scope, st_a, {}, kind="at_most", bound=cfg["ece_margin"], unit="CE", cfg=cfg, role=PRIMARY,
                         label=f"α* = {star:g}", numbers=numbers, notes=notes, sources=src, paper=paper,
                         stats_at=lambda c, a=ls_sq, b=ts_sq: ce_gap_stats(a, b, c)))
        out.append(check(3, scope, "LS at α* lowers the RMS calibration error of hard targets at T = 1: "
                         "CE(α = 0) − CE(LS α*) > 0, test split", {}, kind="greater", bound=0.0, unit="CE", cfg=cfg,
                         label=f"α* = {star:g}", numbers={k: v for k, v in numbers.items() if "ECE" in k or "RMS" in k},
                         sources=src, stats_at=lambda c, a=hard_sq, b=ls_sq: ce_gap_stats(a, b, c)))
        out.append(check(3, scope, "LS at α* lowers the NLL (a proper score) of hard targets at T = 1: "
                         "NLL(α = 0) − NLL(LS α*) > 0, paired by seed, test split",
                         {k: h[k]["before"]["nll"] - s_[k]["before"]["nll"] for k in seeds}, kind="greater",
                         bound=0.0, unit="nats", cfg=cfg, label=f"α* = {star:g}",
                         numbers={k: v for k, v in numbers.items() if "NLL" in k}, sources=src))
        out.append(check(3, scope, "NLL (a proper score) of LS at α* against temperature scaling: "
                         "NLL(LS α*) − NLL(α = 0, temperature scaled), a number (the paper claims nothing here)",
                         {k: s_[k]["before"]["nll"] - h[k]["after"]["nll"] for k in seeds}, kind="number",
                         bound=0.0, unit="nats", cfg=cfg, label=f"α* = {star:g}",
                         numbers={k: v for k, v in numbers.items() if "NLL" in k}, sources=src))
        temps = {k: float(r["temperature"]) - 1.0 for k, r in h.items() if (0.0, k) not in at_bound}
        left = sorted(k for k in h if (0.0, k) in at_bound)
        out.append(check(3, scope, "the hard-target model is overconfident: its fitted temperature T − 1 > 0",
                         temps, kind="greater", bound=0.0, unit="T", cfg=cfg, role=REGIME,
                         numbers={"T (fitted on the validation split)": _mean(float(r["temperature"]) for r in h.values())},
                         notes=[f"seeds {left} left out: T at the edge of the search range"] if left else [],
                         sources=_sources(h.values(), ["temperature", "fit.at_bound"])))
    return out


# --------------------------------------------------------------------------- claim 4: distillation


def interpolate_baseline(points: dict[float, float], gamma: float) -> float | None:
    """The student-baseline accuracy curve (alpha -> accuracy, one seed) linearly interpolated at
    ``gamma``; ``None`` outside the alphas' range (no extrapolation)."""
    xs = sorted(points)
    if not xs or gamma < xs[0] - 1e-12 or gamma > xs[-1] + 1e-12:
        return None
    return float(np.interp(gamma, xs, [points[x] for x in xs]))


def interpolation_error(baseline: dict[int, dict[float, float]]) -> list[float]:
    """Leave-one-out errors of the linear interpolation: each interior baseline point of each seed
    predicted from its two neighbours, minus its accuracy (pp). At twice the grid's spacing, so an
    upper-side estimate of the error at the spacing used."""
    errs = []
    for curve in baseline.values():
        xs = sorted(curve)
        for i in range(1, len(xs) - 1):
            a, b, c = xs[i - 1], xs[i], xs[i + 1]
            pred = curve[a] + (curve[c] - curve[a]) * (b - a) / (c - a)
            errs.append(pred - curve[b])
    return errs


def distillation_claims(dataset: str, teacher_evals: Sequence[dict], student_evals: Sequence[dict],
                        gamma: dict[tuple[str, int, str], float], cfg: dict, split: str = default("distillation[].split"),
                        gamma_path: str | None = None) -> list[dict]:
    """Claim 4 for one ``distillation`` entry (its dataset); student seed s learns from teacher s.

    ``gamma`` maps ``(teacher alpha, seed, T)`` (canonical number strings, :func:`lspipe.experiments.distill.read_gamma_table`)
    to the teacher's smoothness index. A student eval may be a teacher's (a baseline trained as a
    teacher, :func:`lspipe.experiments.distill.teacher_twins`): the run name decides its family.
    """
    teacher_alphas = sorted({float(a) for a, _, _ in gamma})
    tarch = sarch = None
    baseline: dict[int, dict[float, float]] = defaultdict(dict)
    kd_hard: dict[float, dict[int, float]] = defaultdict(dict)
    kd_ls: dict[float, dict[int, float]] = defaultdict(dict)
    ls_temp: dict[float, float] = {}  # the temperature of each LS teacher's students (distillation[].ls_temperature)
    forms, used = set(), []
    for ev in student_evals:
        m = ev["model"]
        if m["dataset"] != dataset:
            continue
        sarch = m["arch"]
        r = StudentRun.parse(m["run"])
        acc = 100.0 * ev[split]["accuracy"]
        used.append(ev)
        if not r.distilled:
            baseline[r.seed][r.alpha] = acc
            continue
        tarch = r.teacher_arch
        forms.add(m.get("form") or "teacher")  # students from before the form existed used "teacher"
        if r.teacher_alpha == 0.0:
            kd_hard[r.temperature][r.seed] = acc
        else:
            kd_ls[r.teacher_alpha][r.seed] = acc
            ls_temp[r.teacher_alpha] = r.temperature
    teacher: dict[float, dict[int, float]] = defaultdict(dict)
    teacher_used = []
    for ev in teacher_evals:  # the distilled teachers: their dataset, arch and the alphas of the gamma table
        m = ev["model"]
        if not is_ls(objective_of(m)):
            continue  # another objective (e.g. a confidence-penalty teacher, alpha 0) is no distilled teacher
        if m["dataset"] == dataset and m["arch"] == tarch and any(_close(m["alpha"], a) for a in teacher_alphas):
            teacher[float(m["alpha"])][int(m["seed"])] = 100.0 * ev[split]["accuracy"]
            teacher_used.append(ev)
    scope = f"{dataset}/{tarch or '?'} → {sarch or '?'}"
    res = _resolution(used, split)
    gsrc = [gamma_path] if gamma_path else []
    src = {"files": sorted(set(_sources(used, []).get("files")) | set(gsrc)),
           "keys": [f"{split}.accuracy of every student", "gamma per (teacher alpha, seed, T)"]}
    out = []

    # the loss form, and where it departs from the slides' equation
    form = "/".join(sorted(forms)) or "?"
    form_note = (f"distillation loss form {form!r} ({FORM_LABELS.get(form, form)}); the slides' equation is "
                 f"{SLIDES_EQUATION}; departure: {FORM_DEPARTURE.get(form, 'unknown form')}")

    # the baseline curve at a teacher's gamma, per seed; which points are in range
    def gamma_of(talpha, s, temp):
        return gamma.get((fmt(talpha), s, fmt(temp)))

    def at_gamma(s, g):
        return interpolate_baseline(baseline.get(s, {}), g) if g is not None else None

    errs = interpolation_error(baseline)
    interp_note = ("baseline(γ): the student-baseline curve of the same seed (students trained alone with LS at α, "
                   "placed at γ = α), linearly interpolated in α between its two neighbouring baseline alphas; no "
                   "extrapolation (a γ outside the baseline alphas' range is not compared); interpolation error, "
                   "leave-one-out on the interior baseline points (at twice the grid spacing, an upper-side estimate): "
                   + (f"max |error| {max(abs(e) for e in errs):.3g} pp, mean |error| {np.mean(np.abs(errs)):.3g} pp over "
                      f"{len(errs)} points" if errs else "not estimable (fewer than 3 baseline alphas)"))
    base_alphas = sorted({a for c in baseline.values() for a in c})
    range_key = (f"distillation[].baseline_alphas (now {', '.join(f'{a:g}' for a in base_alphas) or 'none'}: "
                 "extend them to cover the teachers' γ)")

    # regime: teacher accuracy rises with alpha (least-squares slope per seed)
    st = "teacher accuracy rises with α: least-squares slope of accuracy (pp) against α over the distilled teachers, per seed"
    tseeds = sorted(set.intersection(*(set(v) for v in teacher.values()))) if teacher else []
    if len(teacher) < 2 or not tseeds:
        out.append(not_run(4, scope, st, "distillation[].teacher_alphas (at least two)", REGIME))
    else:
        alphas = sorted(teacher)
        slopes = {s: float(np.polyfit(alphas, [teacher[a][s] for a in alphas], 1)[0]) for s in tseeds}
        nums = {f"teacher accuracy α={a:g} (%)": _mean(teacher[a][s] for s in tseeds) for a in alphas}
        out.append(check(4, scope, st, slopes, kind="greater", bound=0.0, unit="pp per unit α", cfg=cfg, role=REGIME,
                         numbers=nums, sources=_sources(teacher_used, [f"{split}.accuracy"])))

    # the primary contrast
    st_a = ("a hard-target teacher's students gain more over the baseline than LS teachers' students: per seed, "
            "mean over the in-range T of [acc(student of the α = 0 teacher at T) − baseline(γ)] minus mean over the "
            "in-range LS teachers of [acc(student of the LS teacher at T = 1) − baseline(γ)] > 0")
    if any(t != 1.0 for t in ls_temp.values()):  # distillation[].ls_temperature set (the MNIST toy)
        st_a = st_a.replace("at T = 1", "at T = " + "/".join(f"{t:g}" for t in sorted(set(ls_temp.values()))))
    # a run missing in one seed drops its temperature (or LS teacher), named, not the seed
    seeds = sorted(set().union(*[set(v) for v in kd_hard.values()], *[set(v) for v in kd_ls.values()]))
    temps_missing = [t for t in sorted(kd_hard) if set(kd_hard[t]) != set(seeds)]
    ls_missing = [a for a in sorted(kd_ls) if set(kd_ls[a]) != set(seeds)]
    if (kd_hard and len(temps_missing) == len(kd_hard)) or (kd_ls and len(ls_missing) == len(kd_ls)):
        all_seeds = [set(v) for v in kd_hard.values()] + [set(v) for v in kd_ls.values()]
        seeds = sorted(set.intersection(*all_seeds))  # no complete family: the seeds that have every run
        temps_missing, ls_missing = [], []

    def in_range(talpha, temp):
        return bool(seeds) and all(at_gamma(s, gamma_of(talpha, s, temp)) is not None for s in seeds)

    temps_in = [t for t in sorted(kd_hard) if t not in temps_missing and in_range(0.0, t)]
    ls_in = [a for a in sorted(kd_ls) if a not in ls_missing and in_range(a, ls_temp[a])]
    temps_out = [t for t in sorted(kd_hard) if t not in temps_in and t not in temps_missing]
    ls_out = [a for a in sorted(kd_ls) if a not in ls_in and a not in ls_missing]
    sys_err = max((abs(e) for e in errs), default=None)
    gam = {f"γ of the α = 0 teacher at T = {t:g} (mean over seeds)": _mean(g for s in seeds if (g := gamma_of(0.0, s, t)) is not None)
           for t in sorted(kd_hard)}
    gam.update({f"γ of the LS teacher α = {a:g} at T = {ls_temp[a]:g}": _mean(
        g for s in seeds if (g := gamma_of(a, s, ls_temp[a])) is not None) for a in sorted(kd_ls)})
    range_nums = {"baseline alphas": ", ".join(f"{a:g}" for a in base_alphas),
                  "in-range temperatures": ", ".join(f"{t:g}" for t in temps_in) or "none",
                  "in-range LS teachers": ", ".join(f"{a:g}" for a in ls_in) or "none", **gam}
    notes = [form_note, interp_note]
    if sys_err is not None:
        notes.append(f"systematic term: the largest leave-one-out interpolation error, {sys_err:.3g} pp, is added to each "
                     "end of the interval (a bias shared by every seed, which more seeds do not shrink)")
    if temps_missing or ls_missing:
        notes.append("left out (a run missing in some seed; the seed is kept): " + ", ".join(
            [f"T = {t:g} (seeds {sorted(set(seeds) - set(kd_hard[t]))} missing)" for t in temps_missing]
            + [f"LS teacher α = {a:g} (seeds {sorted(set(seeds) - set(kd_ls[a]))} missing)" for a in ls_missing]))
    if temps_out or ls_out:
        notes.append("left out (γ outside the baseline alphas' range in some seed, or no baseline of a seed): "
                     + ", ".join([f"T = {t:g}" for t in temps_out] + [f"LS teacher α = {a:g}" for a in ls_out]))
    if not kd_hard or not kd_ls:
        key = "distillation[].temperatures" if not kd_hard else "distillation[].teacher_alphas (a nonzero alpha)"
        out.append(not_run(4, scope, st_a, key))
    elif sys_err is None:
        out.append(not_compared(4, scope, st_a, "fewer than 3 baseline alphas: the interpolation error of baseline(γ), "
                                "a bias shared by every seed, cannot be estimated", "distillation[].baseline_alphas (at "
                                "least 3, so that the leave-one-out interpolation error bounds the bias)",
                                numbers=range_nums, notes=notes, sources=src))
    elif not temps_in or not ls_in:
        out.append(not_compared(4, scope, st_a, "no " + ("temperature" if not temps_in else "LS teacher") +
                                " whose γ lies inside the baseline alphas' range in every seed", range_key,
                                numbers=range_nums, notes=notes, sources=src))
    else:
        values = {}
        for s in seeds:
            hard = np.mean([kd_hard[t][s] - at_gamma(s, gamma_of(0.0, s, t)) for t in temps_in])
            soft = np.mean([kd_ls[a][s] - at_gamma(s, gamma_of(a, s, ls_temp[a])) for a in ls_in])
            values[s] = float(hard - soft)
        out.append(check(4, scope, st_a, values, kind="greater", bound=0.0, unit="pp", cfg=cfg, role=PRIMARY,
                         resolution=res, numbers=range_nums, notes=notes, sources=src, systematic=sys_err))

    # descriptive: each temperature and each LS teacher against the baseline at its gamma
    def versus_baseline(acc_by_seed, talpha, temp):
        values, gammas = {}, []
        for s, acc in acc_by_seed.items():
            g = gamma_of(talpha, s, temp)
            base = at_gamma(s, g)
            gammas += [g] if g is not None else []
            if base is not None:
                values[s] = acc - base
        return values, gammas

    st_b = "students of the hard-target teacher beat the student baseline at the same γ: acc(student) − baseline(γ) > 0"
    for temp in sorted(kd_hard):
        values, gammas = versus_baseline(kd_hard[temp], 0.0, temp)
        nums = {"γ (mean over seeds)": _mean(gammas), "student accuracy (%)": _mean(kd_hard[temp].values())}
        label = f"T = {temp:g}"
        if not values:
            out.append(not_compared(4, scope, st_b, "γ outside the baseline alphas' range in every seed", range_key,
                                    DESCRIPTIVE, label, numbers=nums, sources=src))
            continue
        out.append(check(4, scope, st_b, values, kind="greater", bound=0.0, unit="pp", cfg=cfg, label=label,
                         resolution=res, numbers=nums, sources=src, systematic=sys_err or 0.0))
    st_c = ("students of LS teachers at T = 1 are no better than the student baseline at the same γ: "
            "acc(student) − baseline(γ) < margin")
    if any(t != 1.0 for t in ls_temp.values()):
        st_c = st_c.replace("at T = 1", "at T = " + "/".join(f"{t:g}" for t in sorted(set(ls_temp.values()))))
    for a in sorted(kd_ls):
        values, gammas = versus_baseline(kd_ls[a], a, ls_temp[a])
        nums = {"γ (mean over seeds)": _mean(gammas), "student accuracy (%)": _mean(kd_ls[a].values())}
        label = f"teacher α = {a:g}"
        if not values:
            out.append(not_compared(4, scope, st_c, "γ outside the baseline alphas' range in every seed", range_key,
                                    DESCRIPTIVE, label, numbers=nums, sources=src))
            continue
        margin, margin_src = accuracy_margin(cfg, _mean(c[0.0] for c in baseline.values() if 0.0 in c))
        nums["margin (pp)"] = f"{margin:.3g} ({margin_src.replace('α = 0 model', 'α = 0 student baseline')})"
        out.append(check(4, scope, st_c, values, kind="at_most", bound=margin, unit="pp", cfg=cfg,
                         label=label, resolution=res, numbers=nums, sources=src, systematic=sys_err or 0.0))
    return out


# --------------------------------------------------------------------------- claim 6: the MNIST distillation toy


def toy_claims(teacher_evals: Sequence[dict], student_evals: Sequence[dict], toys: Sequence[dict], cfg: dict) -> list[dict]:
    """Claim 6 per ``distillation_toy`` entry (``toys``: :meth:`lspipe.experiments.distill_toy.DistillationToyPlan.settings`):
    "the label-smoothed teacher is at least as accurate, and its student is worse". Two primary checks,
    paired by seed, whose conjunction is the claim's verdict (:func:`conjunction`):

    a. accuracy(LS teacher) − accuracy(hard-target teacher), pp, above −margin (claim 1's margin:
       ``claims.accuracy_margin``, or ``accuracy_margin_relative`` × the hard teacher's error rate);
    b. accuracy(student of the hard-target teacher) − accuracy(student of the LS teacher), both at the
       toy's temperature, pp, above 0.

    Descriptive: each teacher's student against the student trained alone with hard targets (above 0;
    Hinton et al. 2015: 146 test errors alone, 74 from the hard teacher)."""
    statement_a = ("the label-smoothed teacher is at least as accurate as the hard-target teacher: accuracy(LS teacher) "
                   "− accuracy(α = 0 teacher), paired by seed")
    out = []
    for toy in toys:
        ds, tarch, sarch = toy["dataset"], toy["teacher_arch"], toy["student_arch"]
        t, ls, split = float(toy["temperature"]), float(toy["ls_alpha"]), toy["split"]
        scope = f"{ds}/{tarch} → {sarch}, T = {t:g}"
        statement_b = (f"the label-smoothed teacher's student is worse: accuracy(student of the α = 0 teacher) − "
                       f"accuracy(student of the LS teacher), both at T = {t:g}, paired by seed")
        teacher: dict[float, dict[int, dict]] = defaultdict(dict)
        for ev in teacher_evals:
            m = ev["model"]
            if (m["dataset"], m["arch"]) != (ds, tarch):
                continue
            obj = objective_of(m)
            if is_ls(obj) and any(_close(obj["alpha"], a) for a in (0.0, ls)):
                teacher[0.0 if _close(obj["alpha"], 0.0) else ls][int(m["seed"])] = ev
        student: dict[str, dict[int, dict]] = defaultdict(dict)
        for ev in student_evals:
            m = ev["model"]
            if (m["dataset"], m["arch"]) != (ds, sarch):
                continue
            try:
                r = StudentRun.parse(m["run"])
            except ValueError:
                continue
            if r.distilled and r.teacher_arch == tarch and _close(r.temperature, t):
                if _close(r.teacher_alpha, 0.0):
                    student["hard"][r.seed] = ev
                elif _close(r.teacher_alpha, ls):
                    student["ls"][r.seed] = ev
            elif not r.distilled and _close(r.alpha, 0.0):
                student["alone"][r.seed] = ev

        def acc(ev):
            return 100.0 * ev[split]["accuracy"]

        # a: the LS teacher at least as accurate
        h, l = teacher.get(0.0, {}), teacher.get(ls, {})
        if not h or not l:
            out.append(not_run(6, scope, statement_a, f"teachers[].alphas of {ds}/{tarch} (0 and {ls:g})"))
        else:
            seeds = sorted(set(h) & set(l))
            used = [h[k] for k in seeds] + [l[k] for k in seeds]
            src = _sources(used, [f"{split}.accuracy", f"{split}.n"])
            if not seeds:
                out.append(not_compared(6, scope, statement_a, "no seed has both teachers",
                                        f"teachers[].seeds ({sorted(h)} and {sorted(l)})", sources=src))
            else:
                hard_acc = _mean(acc(h[k]) for k in seeds)
                margin, margin_src = accuracy_margin(cfg, hard_acc)
                p_hard, p_ls = TOY_PAPER["hard"][0], TOY_PAPER["ls"][0]
                out.append(check(
                    6, scope, statement_a, {k: acc(l[k]) - acc(h[k]) for k in seeds}, kind="at_least", bound=margin,
                    unit="pp", cfg=cfg, role=PRIMARY, label=f"teachers, LS α = {ls:g}, {split} split",
                    resolution=_resolution(used, split), sources=src,
                    numbers={f"error α = 0 teacher (%, {split})": 100.0 - hard_acc,
                             f"error LS teacher (%, {split})": 100.0 - _mean(acc(l[k]) for k in seeds),
                             "margin (pp)": f"{margin:.3g} ({margin_src})"},
                    paper={"value": p_hard - p_ls, "source": f"section 4: teacher error {p_hard:g} % (hard) and "
                                                               f"{p_ls:g} % (LS)"}))
                out[-1]["direction_words"] = ("the LS teacher is more accurate", "the LS teacher is less accurate")
        # b: its student worse
        sh, sl = student.get("hard", {}), student.get("ls", {})
        if not sh or not sl:
            out.append(not_run(6, scope, statement_b, f"distillation[] of {ds}: temperatures and ls_temperature "
                                                      f"({t:g}), teacher_alphas (0 and {ls:g})"))
        else:
            seeds = sorted(set(sh) & set(sl))
            used = [sh[k] for k in seeds] + [sl[k] for k in seeds]
            src = _sources(used, [f"{split}.accuracy", f"{split}.n"])
            forms = sorted({ev["model"].get("form") or "teacher" for ev in used})
            notes = [f"distillation loss form {'/'.join(forms)} ({', '.join(FORM_LABELS.get(f, f) for f in forms)})"]
            if not seeds:
                out.append(not_compared(6, scope, statement_b, "no seed has both teachers' students",
                                        f"distillation[].seeds ({sorted(sh)} and {sorted(sl)})", sources=src))
            else:
                p_hard, p_ls = TOY_PAPER["hard"][1], TOY_PAPER["ls"][1]
                out.append(check(
                    6, scope, statement_b, {k: acc(sh[k]) - acc(sl[k]) for k in seeds}, kind="greater", bound=0.0,
                    unit="pp", cfg=cfg, role=PRIMARY, label=f"students at T = {t:g}, {split} split",
                    resolution=_resolution(used, split), sources=src, notes=notes,
                    numbers={f"error of the α = 0 teacher's student (%, {split})": 100.0 - _mean(acc(sh[k]) for k in seeds),
                             f"error of the LS teacher's student (%, {split})": 100.0 - _mean(acc(sl[k]) for k in seeds)},
                    paper={"value": p_ls - p_hard, "source": f"section 4: student error {p_hard:g} % (hard teacher) "
                                                               f"and {p_ls:g} % (LS teacher)"}))
                out[-1]["direction_words"] = ("the LS teacher's student is worse", "the LS teacher's student is better")
        # descriptive: each teacher's student against the student alone (hard targets)
        alone = student.get("alone", {})
        for key, name in (("hard", "the α = 0 teacher's"), ("ls", f"the LS teacher's (α = {ls:g})")):
            st = f"{name} student beats the student trained alone with hard targets: accuracy(student) − accuracy(alone)"
            kd = student.get(key, {})
            seeds = sorted(set(kd) & set(alone))
            if not kd or not alone:
                out.append(not_run(6, scope, st, "distillation[].baseline_alphas (0)", role=DESCRIPTIVE,
                                   label=f"{key} teacher's student vs alone"))
                continue
            used = [kd[k] for k in seeds] + [alone[k] for k in seeds]
            paper = ({"value": PAPER_STUDENT_ALONE - TOY_PAPER["hard"][1],
                      "source": "Hinton et al. 2015, section 3: 146 test errors alone, 74 from the teacher"}
                     if key == "hard" else None)
            out.append(check(6, scope, st, {k: acc(kd[k]) - acc(alone[k]) for k in seeds}, kind="greater", bound=0.0,
                             unit="pp", cfg=cfg, label=f"{key} teacher's student vs alone",
                             resolution=_resolution(used, split), sources=_sources(used, [f"{split}.accuracy"]),
                             paper=paper))
    return out


def conjunction(verdicts: Sequence[str]) -> str:
    """The verdict of a claim with several primary checks (claim 6): supported when every one is; not run /
    not compared when one is; contradicted when one is (and none is not run or not compared); inconclusive
    otherwise. "Supported" is an intersection-union test: each check at its one-sided level keeps that
    level for the conjunction; "contradicted" (any part) is not corrected for the two parts."""
    v = list(verdicts)
    if not v or NOT_RUN in v:
        return NOT_RUN
    if NOT_COMPARED in v:
        return NOT_COMPARED
    if all(x == SUPPORTED for x in v):
        return SUPPORTED
    return CONTRADICTED if CONTRADICTED in v else INCONCLUSIVE


# --------------------------------------------------------------------------- claim 5: MI


def curve_shape(mi: Sequence[float]) -> dict:
    """first, peak (max of the 3-record running mean), late (mean of the last fifth of the records,
    at least one) of one MI curve in record order; None for fewer than 3 records."""
    v = np.asarray(mi, dtype=float)
    if len(v) < 3:
        return None
    running = np.convolve(v, np.ones(3) / 3, mode="valid")
    k = max(1, math.ceil(len(v) / 5))
    return {"first": float(v[0]), "peak": float(running.max()), "late": float(v[-k:].mean()), "late_records": k}


def mi_claims(curves: Sequence[dict], cfg: dict) -> list[dict]:
    """Claim 5 per probed grid from per-seed MI curves (rows of ``lspipe mi-curve`` CSVs, with
    ``dataset`` and ``arch`` added). LS = ``claims.ls_alpha``; the MI margin is
    ``claims.mi_noise_multiple`` × the sd of one MI estimate measured from the repeat draw
    (:func:`lspipe.experiments.mi.mi_noise`, pooled over the grid's records). Primary: (peak − late)(LS) −
    (peak − late)(α = 0) > margin, paired by seed. Descriptive: with LS the MI rises then falls
    (min(peak − first, peak − late) > margin); late MI(α = 0) − MI(LS) > margin."""
    by: dict[tuple, dict[float, dict[int, list]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    rows_by: dict[tuple, list] = defaultdict(list)
    for r in curves:
        if r.get("run") and not is_ls(objective_of(r)):
            continue  # another objective's probe (e.g. a confidence-penalty teacher, alpha 0): not the hard arm
        rep = r.get("mi_repeat")
        by[(r["dataset"], r["arch"])][float(r["alpha"])][int(r["seed"])].append(
            (int(r["step"]), float(r["mi"]), None if rep in (None, "") else float(rep)))
        rows_by[(r["dataset"], r["arch"])].append(r)
    st_a = ("the MI falls more with LS: (peak − late)(LS) − (peak − late)(α = 0) > margin, paired by seed "
            "(peak: the highest 3-record running mean; late: the mean of the last fifth of the records)")
    st_b = "with LS the MI rises then falls: min(peak − first, peak − late) > margin"
    st_c = "late in training the MI is lower with LS: late MI(α = 0) − late MI(LS) > margin"
    if not by:
        return [not_run(5, "all", st_a, "teachers[].probe")]
    out = []
    for (ds, arch), by_alpha in sorted(by.items()):
        scope = f"{ds}/{arch}"
        src = _sources(rows_by[(ds, arch)], ["step", "mi", "mi_repeat (the repeat draw)"])
        ls = pick_ls_alpha(by_alpha, cfg["ls_alpha"])
        if ls is None or 0.0 not in by_alpha:
            out.append(not_run(5, scope, st_a, "mi.alphas (alpha 0 and an LS alpha; claims.ls_alpha)"))
            continue
        pairs = [(m, rp) for a in by_alpha for pts in by_alpha[a].values() for _, m, rp in pts if rp is not None]
        sigma = mi_noise(pairs)
        if sigma is None:
            out.append(not_compared(5, scope, st_a, "the probe traces have no repeat draw (recorded before "
                                    "lspipe.experiments.mi format 2), so the MI noise level, and with it the margin, is unknown",
                                    "retraining the probed teachers (snakemake -R train_teacher)", sources=src))
            continue
        margin = cfg["mi_noise_multiple"] * sigma
        shape = {}
        for a in (0.0, ls):
            for s, pts in by_alpha[a].items():
                shape[(a, s)] = curve_shape([m for _, m, _ in sorted(pts)])
        if any(v is None for v in shape.values()):
            out.append(not_compared(5, scope, st_a, "a curve has fewer than 3 records",
                                    "teachers[].probe.every (at least 3 records per curve)", sources=src))
            continue
        nums = {"MI noise: sd of one estimate (repeat draws)": sigma, "repeat-draw pairs": len(pairs),
                f"MI margin (claims.mi_noise_multiple = {cfg['mi_noise_multiple']:g} × sd)": margin}
        for a in (0.0, ls):
            ss = sorted(by_alpha[a])
            nums[f"α={a:g} first / peak / late (nats, mean over seeds)"] = " / ".join(
                f"{_mean(shape[(a, s)][k] for s in ss):.3f}" for k in ("first", "peak", "late"))
        k = shape[(ls, sorted(by_alpha[ls])[0])]["late_records"]
        notes = [f"late = the mean of the last {k} record{'s' if k > 1 else ''} (a fifth of the records)",
                 "the noise margin decides only 'supported'; 'contradicted' needs the interval below 0 (LS falls "
                 "less than hard targets), so a real extra fall smaller than the margin is inconclusive, not contradicted",
                 "log 2 ≈ 0.693 nats: only the class is distinguishable"]
        seeds = sorted(set(by_alpha[0.0]) & set(by_alpha[ls]))

        def fall(a, s):
            return shape[(a, s)]["peak"] - shape[(a, s)]["late"]

        out.append(check(5, scope, st_a, {s: fall(ls, s) - fall(0.0, s) for s in seeds}, kind="greater", bound=margin, contra=0.0,
                         unit="nats", cfg=cfg, role=PRIMARY, label=f"LS α = {ls:g}", numbers=nums, notes=notes,
                         sources=src))
        out.append(check(5, scope, st_b, {s: min(shape[(ls, s)]["peak"] - shape[(ls, s)]["first"], fall(ls, s))
                                          for s in sorted(by_alpha[ls])}, kind="greater", bound=margin, contra=0.0, unit="nats",
                         cfg=cfg, label=f"LS α = {ls:g}", numbers=nums, sources=src))
        out.append(check(5, scope, st_c, {s: shape[(0.0, s)]["late"] - shape[(ls, s)]["late"] for s in seeds},
                         kind="greater", bound=margin, contra=0.0, unit="nats", cfg=cfg, label=f"LS α = {ls:g}", numbers=nums,
                         sources=src))
    return out


# --------------------------------------------------------------------------- variance beyond seeds: test-image bootstrap


def _test_predictions(path: str | Path, temperature: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(top-label confidence, correct) of a dump's test split at ``temperature``."""
    s = Dump(path).split("test")
    return top_label(softmax(s.logits, temperature), s.labels)


def bootstrap_widening(checks: Sequence[dict], calibrations: Sequence[dict], dumps: dict[tuple, str], cfg: dict) -> None:
    """Adds ``bootstrap`` to the primary checks of claims 1 and 3: how much the test set's sampling would
    widen their interval. One resample of the test images per replicate, shared by every seed and model
    (the test set is one, shared), ``claims.bootstrap`` replicates (seed ``claims.bootstrap_seed``); the
    effect's mean over seeds is recomputed on each, and its sd over replicates, sd_test, is combined with
    the interval's: half-width ``sqrt(w² + (z · sd_test)²)``, z the normal quantile of the interval's level
    (w the seed-only half-width; the seeds' own sd holds part of the test sampling already, so this is
    an upper-side figure). ``dumps`` maps ``(dataset, arch, alpha, seed)`` to a teacher dump (label smoothing)."""
    reps = int(cfg.get("bootstrap") or 0)
    if reps <= 0:
        return
    rng = np.random.default_rng(cfg["bootstrap_seed"])
    temps = {(c["model"]["dataset"], c["model"]["arch"], float(c["model"]["alpha"]), int(c["model"]["seed"])):
             float(c["temperature"]) for c in calibrations if is_ls(objective_of(c["model"]))}
    cache: dict[tuple, tuple] = {}

    def pred(ds, arch, alpha, seed, t=1.0):
        key = (ds, arch, alpha, seed, t)
        if key not in cache:
            cache[key] = _test_predictions(dumps[(ds, arch, alpha, seed)], t)
        return cache[key]

    for c in checks:
        if c["role"] != PRIMARY or c["claim"] not in (1, 3) or not (c.get("effect") or {}).get("ci"):
            continue
        ds, arch = c["scope"].split("/", 1)
        e, seeds = c["effect"], c["effect"]["seeds"]
        if c["claim"] == 1:
            alpha = float(c["label"].split("=")[1].split(",")[0])
            need = [(ds, arch, a, s) for a in (0.0, alpha) for s in seeds]
        else:
            alpha = float(c["numbers"]["α*"])
            need = [(ds, arch, a, s) for a in (0.0, alpha) for s in seeds]
            if any((ds, arch, 0.0, s) not in temps for s in seeds):
                continue
        if any(k not in dumps for k in need):
            c["bootstrap"] = {"text": "not computed: the dumps of some compared models are not among the inputs"}
            continue
        n_test = len(pred(ds, arch, 0.0, seeds[0])[1])
        stats = []
        for _ in range(reps):
            idx = rng.integers(0, n_test, n_test)
            if c["claim"] == 1:
                stats.append(float(np.mean([100.0 * (pred(ds, arch, alpha, s)[1][idx].mean()
                                                     - pred(ds, arch, 0.0, s)[1][idx].mean()) for s in seeds])))
            else:
                def sq(conf, correct):
                    r = reliability(conf[idx], correct[idx], 15)
                    return debiased_squared_ce(r.count, r.accuracy, r.confidence)

                a = np.mean([sq(*pred(ds, arch, alpha, s)) for s in seeds])
                b = np.mean([sq(*pred(ds, arch, 0.0, s, temps[(ds, arch, 0.0, s)])) for s in seeds])
                stats.append(math.sqrt(max(a, 0.0)) - math.sqrt(max(b, 0.0)))
        sd_test = float(np.std(stats, ddof=1))
        w = e["half_width"]
        from scipy.stats import norm

        z = float(norm.ppf(0.5 + e["confidence"] / 2))  # sd_test is known from many replicates: a normal quantile
        w2 = math.sqrt(w**2 + (z * sd_test) ** 2)
        u = f" {c['unit']}" if c["unit"] else ""
        c["bootstrap"] = {"replicates": reps, "seed": cfg["bootstrap_seed"], "sd_test": sd_test,
                          "half_width": w, "half_width_with_test": w2, "widening": w2 / w if w else None,
                          "text": (f"the test set's sampling ({reps} resamples of its {n_test} images, shared by every "
                                   f"seed) has sd {sd_test:.3g}{u} on the mean effect; with it the half-width would be "
                                   f"{w2:.3g}{u} instead of {w:.3g}{u} (× {w2 / w:.2f}); the verdict stays the seed-only "
                                   "interval's")}


def dump_map(paths: Iterable[str | Path]) -> dict[tuple, str]:
    """``{(dataset, arch, alpha, seed): path}`` of label-smoothing teacher dumps
    ``<results>/dumps/<dataset>/<arch>/teacher/a<alpha>_s<seed>.h5`` (other files are skipped)."""
    out = {}
    for path in paths:
        p = Path(path)
        parsed = parse_run(p.stem)
        if parsed and "alpha" in parsed and p.parent.name == "teacher":
            out[(p.parents[2].name, p.parents[1].name, float(parsed["alpha"]), int(parsed["seed"]))] = str(p)
    return out


# --------------------------------------------------------------------------- what a user's own dataset came for


def _pick_text(picks: dict[int, float]) -> str:
    return ", ".join(f"s{s}: {a:g}" for s, a in sorted(picks.items()))


def _interval(values: dict[int, float], cfg: dict, resolution: float = 0.0,
              within: tuple[float, float] | None = None) -> dict:
    """Mean and t interval over seeds (:func:`effect_stats`), in the report's plain form; ``within``: the
    quantity's range (accuracy 0-100 %, a temperature above 0), to which the interval is clipped."""
    e = effect_stats(values, cfg["confidence"], resolution)
    ci = e["ci"]
    if ci is not None and within is not None:
        ci = [max(ci[0], within[0]), min(ci[1], within[1])]
    return {"n": e["n"], "seeds": e["seeds"], "values": e["values"], "mean": e["mean"], "ci": ci,
            "confidence": e["confidence"]}


def _accuracy_pick(by_obj: dict, split: str, cfg: dict) -> dict | None:
    """The alpha validation picks for accuracy in one grid: the highest mean validation accuracy over the
    seeds every label-smoothing alpha shares (alpha 0 included; ties: the smaller alpha), with each seed's
    own pick, and the chosen alpha's test effect against alpha 0 (for alpha 0: that of the best nonzero
    alpha), paired by seed."""
    alphas = ls_alphas(by_obj)
    if 0.0 not in alphas or len(alphas) < 2:
        return None
    cells = {a: by_obj[k] for a, k in alphas.items()}
    seeds = sorted(set.intersection(*(set(c) for c in cells.values())))
    if not seeds or any("val" not in cells[a][s] or split not in cells[a][s] for a in cells for s in seeds):
        return None
    val = {a: _mean(100.0 * cells[a][s]["val"]["accuracy"] for s in seeds) for a in sorted(cells)}
    pick = max(sorted(val), key=lambda a: (val[a], -a))
    picks = {s: max(sorted(cells), key=lambda a, s=s: (cells[a][s]["val"]["accuracy"], -a)) for s in seeds}
    nonzero = [a for a in sorted(val) if a > 0]
    compared = pick if pick > 0 else max(nonzero, key=lambda a: (val[a], -a))
    used = [cells[a][s] for a in (0.0, compared) for s in seeds]
    gain = {s: 100.0 * (cells[compared][s][split]["accuracy"] - cells[0.0][s][split]["accuracy"]) for s in seeds}
    acc = {s: 100.0 * cells[pick][s][split]["accuracy"] for s in seeds}
    res = _resolution(used, split)  # one test image: equal accuracies over seeds give no zero-width interval
    return {"alpha": pick, "validation_accuracy_pct": val, "per_seed_pick": picks, "compared_alpha": compared,
            "split": split, "accuracy_pct": _interval(acc, cfg, res, (0.0, 100.0)),
            "gain_pp": _interval(gain, cfg, res),
            "evaluated_on_the_selection_split": split == "val"}


def _temperatures(cal_by_obj: dict, cfg: dict) -> dict:
    """The temperature scaling fits per label-smoothing alpha (mean and interval over seeds; a T at the
    edge of its search range is a bound, not a fit: left out and named)."""
    out = {}
    for a, key in sorted(ls_alphas(cal_by_obj).items()):
        cell = cal_by_obj[key]
        fitted = {s: float(r["temperature"]) for s, r in cell.items() if not (r.get("fit") or {}).get("at_bound")}
        out[a] = {**_interval(fitted, cfg, within=(0.0, math.inf)), "at_bound": sorted(s for s in cell if s not in fitted)}
    return out


def _negated(e: dict) -> dict:
    """An interval dict (n, mean, ci, confidence) of minus the effect."""
    ci = e.get("ci")
    return {"n": e.get("n"), "mean": None if e.get("mean") is None else -e["mean"],
            "ci": None if ci is None else [-ci[1], -ci[0]], "confidence": e.get("confidence")}


def _squared_rms(c: dict, arm: str) -> float | None:
    sq = (c.get("effect") or {}).get("squared", {}).get(arm)
    return math.sqrt(max(0.0, float(np.mean(sq)))) if sq else None


def own_data(evals: Sequence[dict], calibrations: Sequence[dict], checks: Sequence[dict], cfg: dict,
             split: str = default("accuracy_table.split")) -> list[dict]:
    """What a user of a dataset that is not one of the paper's (:func:`paper_family` None) came for, per
    teacher grid: the alpha validation picks for accuracy (:func:`_accuracy_pick`), the alpha claim 3
    picks on validation for calibration (its alpha*, with claim 3's intervals against alpha 0 at T = 1
    and against temperature scaling), the temperature scaling needs (from the calibration JSONs), and
    whether to distil from a smoothed teacher (claim 4's primary contrast), each with its interval over
    seeds. Nothing here is a verdict: the decision rule is the claims'."""
    teachers = [e for e in evals if e["model"].get("role", "teacher") == "teacher"]
    ev_groups = group_models(teachers, "teacher evaluations")
    cal_groups = group_models([c for c in calibrations if c["model"].get("role", "teacher") == "teacher"],
                              "calibration files")
    out = []
    for ds, arch in sorted(set(ev_groups) | set(cal_groups)):
        if paper_family(ds) is not None:
            continue
        scope = f"{ds}/{arch}"
        item = {"dataset": ds, "arch": arch, "scope": scope, "accuracy": None, "calibration": None,
                "temperature": None, "distillation": []}
        if (ds, arch) in ev_groups:
            item["accuracy"] = _accuracy_pick(ev_groups[(ds, arch)], split, cfg)
        prim3 = next((c for c in checks if c["claim"] == 3 and c["scope"] == scope and c["role"] == PRIMARY), None)
        if prim3 and prim3.get("effect") and prim3["effect"].get("n"):
            lowers = next((c for c in checks if c["claim"] == 3 and c["scope"] == scope and c["role"] == DESCRIPTIVE
                           and c["unit"] == "CE"), None)
            e3, eb = prim3["effect"], (lowers or {}).get("effect") or {}
            item["calibration"] = {
                "alpha": float(prim3["numbers"]["α*"]), "selection": cfg["calibration_selection"], "check": prim3["id"],
                "rms_ls": _squared_rms(prim3, "ls"), "rms_temperature_scaled": _squared_rms(prim3, "reference"),
                "rms_hard": _squared_rms(lowers, "ls") if lowers else None,  # 3b: CE(α = 0) − CE(LS α*)
                "versus_temperature_scaling": {k: e3.get(k) for k in ("n", "mean", "ci", "confidence")},
                "change_vs_hard": _negated(eb) if eb else None,  # CE(LS α*) − CE(α = 0) at T = 1: 3b negated
                "lowers_hard_check": (lowers or {}).get("id")}
        elif prim3:
            item["calibration"] = {"alpha": None, "why": prim3["reason"]}
        if (ds, arch) in cal_groups:
            item["temperature"] = _temperatures(cal_groups[(ds, arch)], cfg)
        for c in checks:
            if c["claim"] != 4 or c["role"] != PRIMARY or not c["scope"].startswith(f"{ds}/{arch} → "):
                continue
            e = c.get("effect") or {}
            item["distillation"].append({"scope": c["scope"], "check": c["id"], "verdict": c["verdict"],
                                         "effect_pp": {k: e.get(k) for k in ("n", "mean", "ci", "confidence")}
                                         if e else None,
                                         "why": c["reason"] if not e else None})
        out.append(item)
    return out


# --------------------------------------------------------------------------- what the report reads


def tightness_models(config: dict) -> list[tuple[str, str, float, int]]:
    """``(dataset, arch, alpha, seed)`` of the teacher dumps claim 2 needs (validated config): per
    grid with alpha 0, alpha 0, the claims' LS alpha (``claims.ls_alpha``) and, for grids drawn in
    Fig. 1, ``projections.ls_alpha``; every seed. Empty when no grid has alpha 0 and an LS alpha."""
    proj = config.get("projections", {})
    fig1 = {(r["dataset"], r["arch"]) for r in proj.get("rows", [])}
    wanted = config.get("claims", {}).get("ls_alpha")
    out = []
    for g in config["teachers"]:
        if not any(_close(a, 0.0) for a in g["alphas"]):
            continue
        alphas = {pick_ls_alpha(g["alphas"], wanted)}
        if (g["dataset"], g["arch"]) in fig1:
            alphas.add(pick_ls_alpha(g["alphas"], proj.get("ls_alpha")))
        alphas.discard(None)
        if alphas:
            out += [(g["dataset"], g["arch"], a, int(s)) for a in sorted({0.0} | alphas) for s in g["seeds"]]
    return out


def calibration_models(config: dict) -> list[tuple[str, str, float, int]]:
    """``(dataset, arch, alpha, seed)`` of the calibration JSONs claim 3 reads: every alpha and seed of
    every teacher grid with alpha 0 and a nonzero alpha (alpha* is chosen among all of them)."""
    out = []
    for g in config["teachers"]:
        alphas = sorted({float(a) for a in g["alphas"]})
        if 0.0 in alphas and any(a > 0 for a in alphas):
            out += [(g["dataset"], g["arch"], a, int(s)) for a in alphas for s in g["seeds"]]
    return out


class ClaimsPlan:
    """The claims report in a configuration's workflow (``Plan.claims``): the teacher dumps of claim 2's
    tightness table (:func:`tightness_models`) and every input of the report (:meth:`inputs`), read
    from the other experiments' plans on the workflow's :class:`lspipe.workflow.plan.Plan`."""

    name = "claims"

    def __init__(self, plan):
        self._plan = plan
        self.tightness_models = tightness_models(plan.config)

    def tightness_dumps(self) -> list[str]:
        """Teacher dumps of claim 2's tightness table (alpha 0, the compared LS alphas, every seed)."""
        return [self._plan.paths.dump(d, a, "teacher", run_name(alpha, s)) for d, a, alpha, s in self.tightness_models]

    def inputs(self) -> dict:
        """Every input of the report and its settings: what the ``claims`` rule reads and what
        ``lspipe claims --config`` reads (nothing else in the results folder)."""
        plan = self._plan
        config, p, distillation = plan.config, plan.paths, plan.distillation
        evals = [p.eval(*m) for m in plan.trained_models]
        # a student baseline trained as a teacher (lspipe.experiments.distill.teacher_twins) is read from the teacher's eval
        twins = {ds: {run: p.eval(ds, distillation.entries[ds]["student_arch"], *trained_as(run, t)) for run in t}
                 for ds, t in distillation.twins.items() if t}
        return {
            "evals": evals + sorted({path for t in twins.values() for path in t.values()} - set(evals)),
            "twins": twins,
            "calibrations": [p.calibration(d, a, "teacher", run_name(al, s)) for d, a, al, s in calibration_models(config)],
            "tightness": [p.table("tightness.csv")] if self.tightness_models else [],
            "gamma": [distillation.gamma_table(d) for d in distillation.entries],
            "mi_curves": plan.mi.all_curves(),
            "dumps": ([p.dump(d, a, "teacher", run_name(al, s)) for d, a, al, s in calibration_models(config)]
                      if config.get("claims", {}).get("bootstrap") else []),
            "settings": dict(config.get("claims", {})),
            "accuracy_split": config["accuracy_table"]["split"],
            "fig1_ls_alpha": config["projections"]["ls_alpha"],
            "fig1_rows": len(config["projections"]["rows"]),
            "distillation_split": {d: e["split"] for d, e in distillation.entries.items()},
            "toys": plan.distillation_toy.settings(),
        }

    def targets(self) -> list[str]:
        p = self._plan.paths
        return ([p.report("claims.md"), p.report("claims.json"), p.report("claims.rst"), *p.figures("claims_forest")]
                + ([p.table("tightness.csv")] if self.tightness_models else []))


# --------------------------------------------------------------------------- the report


def summarise(checks: Sequence[dict]) -> list[dict]:
    """One entry per (claim, scope): the verdict is the primary check's, with its effect, interval and
    verdict at each :data:`SENSITIVITY` level; descriptive checks (exploratory) are listed with their
    effects, no verdict; regime checks with their own verdicts."""
    groups: dict[tuple[int, str], list[dict]] = defaultdict(list)
    for c in checks:
        groups[(c["claim"], c["scope"])].append(c)
    out = []
    for (claim, scope), cs in sorted(groups.items()):
        prims = [c for c in cs if c["role"] == PRIMARY]
        prim = prims[0] if prims else None
        if len(prims) > 1:  # claim 6: the conjunction of its primary checks
            verdict, primary = conjunction([c["verdict"] for c in prims]), ", ".join(c["id"] for c in prims)
            effect = "; ".join(f"{c['id']} {short_effect(c)}" for c in prims)
            levels = sorted({k for c in prims for k in (c.get("sensitivity") or {})}, key=float)
            sens = {k: conjunction([(c.get("sensitivity") or {}).get(k, c["verdict"]) for c in prims]) for k in levels}
        else:
            verdict, primary = (prim["verdict"], prim["id"]) if prim else (NOT_RUN, None)
            effect, sens = (short_effect(prim) if prim else "—"), (prim or {}).get("sensitivity") or {}
        out.append({"claim": claim, "title": CLAIM_TITLES[claim], "scope": scope,
                    "verdict": verdict, "primary": primary, "effect": effect,
                    "direction": ("; ".join(f"{c['id']} {direction_text(c)}" for c in prims) if len(prims) > 1
                                  else direction_text(prim) if prim else NOT_RUN),
                    "sensitivity": sens,
                    "marking": (prim or {}).get("marking"),
                    "descriptive": [{"id": c["id"], "effect": short_effect(c)} for c in cs if c["role"] == DESCRIPTIVE],
                    "regime": [{"id": c["id"], "verdict": c["verdict"]} for c in cs if c["role"] == REGIME]})
    return out


def _num(x) -> str:
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


def short_effect(c: dict) -> str:
    """``+0.61 [−1.4, +2.6] pp``: mean and interval (or the state of a check without them)."""
    e = c.get("effect")
    if not e or not e.get("n"):
        return c["verdict"]
    u = f" {c['unit']}" if c.get("unit") else ""
    if e["ci"] is None:
        return f"{e['mean']:+.3g}{u} (1 seed)"
    lo, hi = e["ci"]
    return f"{e['mean']:+.3g} [{lo:+.3g}, {hi:+.3g}]{u}"


def effect_text(c: dict) -> str:
    e = c["effect"]
    if not e or e["n"] == 0:
        return "no comparable runs"
    unit = f" {c['unit']}" if c["unit"] else ""
    per_seed = ", ".join(f"s{s}: {v:+.4g}" for s, v in zip(e["seeds"], e["values"]))
    if e["n"] == 1:
        return f"{e['mean']:+.4g}{unit} ({NO_SPREAD}; {per_seed})"
    lo, hi = e["ci"]
    return (f"{e['mean']:+.4g}{unit}, sd {e['std']:.3g}, {100 * e['confidence']:g}% CI [{lo:+.4g}, {hi:+.4g}] over "
            f"{e['n']} seeds ({per_seed})")


def sources_text(src: dict | None) -> str:
    """Files grouped by folder (``folder/{a, b}``) and the keys read."""
    if not src or not src.get("files"):
        return "none recorded (inputs passed in memory)"
    by: dict[str, list[str]] = defaultdict(list)
    for f in src["files"]:
        p = Path(f)
        by[str(p.parent)].append(p.name)
    files = "; ".join(f"{d}/{names[0]}" if len(names) == 1 else f"{d}/{{{', '.join(names)}}}"
                      for d, names in sorted(by.items()))
    return files + (f" (keys: {', '.join(src['keys'])})" if src.get("keys") else "")


def rules_hash(cfg: dict) -> str:
    """sha256 (first 16 hex digits) of the rule version and every decision setting, as canonical JSON."""
    import hashlib
    import json

    text = json.dumps({"rules_version": RULES_VERSION, "settings": cfg}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def model_file(eval_path: str | Path) -> Path | None:
    """``<results>/models/<dataset>/<arch>/<role>/<run>/model.pt`` of ``<results>/eval/<dataset>/<arch>/<role>/<run>.json``."""
    p = Path(eval_path)
    if len(p.parents) < 5 or p.parents[3].name != "eval":
        return None
    return p.parents[4] / "models" / p.parents[2].name / p.parents[1].name / p.parent.name / p.stem / "model.pt"


# The rule version that last changed each claim's rules: a report whose claims' rules are all older than
# the present version is confirmatory for models trained after *their* freeze (version 4 only added claim 6).
CLAIM_RULES_SINCE = {1: 3, 2: 3, 3: 3, 4: 3, 5: 3, 6: 4}


def rules_version_in_effect(checks: Iterable[dict]) -> int:
    """The newest rule version among the claims a report decides (:data:`CLAIM_RULES_SINCE`; claims that
    are not run do not count): its freeze time is the one :func:`analysis_marking` compares the models with."""
    claims_run = {c["claim"] for c in checks if c["verdict"] != NOT_RUN}
    return max((CLAIM_RULES_SINCE.get(k, RULES_VERSION) for k in claims_run), default=RULES_VERSION)


def analysis_marking(eval_paths: Iterable[str | Path], frozen: str | None = None, version: int | None = None) -> dict:
    """Confirmatory when every model the report reads (the model.pt beside each evaluation) was written
    after the rule version in effect was frozen (``version``, :func:`rules_version_in_effect`; default the
    present version, :data:`RULE_VERSIONS`); otherwise a re-analysis: rules written after (some of) these
    models were trained, and perhaps after their verdicts were seen."""
    from datetime import datetime, timezone

    version = RULES_VERSION if version is None else version
    frozen = frozen or RULE_VERSIONS[version][0]
    t0 = datetime.fromisoformat(frozen.replace("Z", "+00:00")).timestamp()
    times, unknown = [], []
    for e in eval_paths:
        m = model_file(e)
        if m is not None and m.exists():
            times.append(m.stat().st_mtime)
        else:
            unknown.append(str(e))
    base = {"rules_version": RULES_VERSION, "rules_in_effect": version, "rules_frozen": frozen}
    if not times and not unknown:
        return {**base, "marking": "re-analysis", "why": "no models read"}
    if unknown:
        return {**base, "marking": "re-analysis", "why": f"the training time of {len(unknown)} model(s) is unknown "
                f"(no model.pt beside their evaluation, e.g. {unknown[0]})"}
    first = datetime.fromtimestamp(min(times), timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    if min(times) >= t0:
        return {**base, "marking": "confirmatory", "why": f"every model was trained after rule version {version} "
                f"was frozen ({frozen}; the first model: {first})"}
    return {**base, "marking": "re-analysis", "why": f"models trained before rule version {version} was frozen "
            f"({frozen}; the first model: {first}): the rules were written after these models, perhaps after their "
            "verdicts were seen"}


def decision_rule_text(cfg: dict) -> list[str]:
    level = 100 * (1 - cfg["confidence"]) / 2
    acc_margin = (f"{cfg['accuracy_margin']:g} pp (claims.accuracy_margin)" if cfg.get("accuracy_margin") is not None
                  else f"{cfg['accuracy_margin_relative']:g} × the α = 0 model's error rate "
                       "(claims.accuracy_margin_relative; claims.accuracy_margin: null)")
    return [
        f"Rule version {RULES_VERSION} (frozen {RULE_VERSIONS[RULES_VERSION][0]}; settings hash {rules_hash(cfg)}); "
        "the changelog of rule versions is docs/claims.md. Confirmatory: every model the report reads was trained "
        "after the rules were frozen; otherwise re-analysis.",
        "Each claim has one primary check, fixed in advance: its verdict is the claim's (claim 6: two, their "
        "conjunction). Descriptive checks are "
        "exploratory: the summary shows their effects only (their sections keep a verdict word, not corrected for "
        "multiplicity). Regime checks test a precondition of the paper's argument and are shown beside the claim, "
        "outside its verdict. Models are keyed by objective: the hard-target arm is label smoothing at α = 0 and "
        "nothing else (a confidence-penalty teacher is a row of its own); two models for one objective and seed are "
        "refused.",
        f"Each check compares one effect per seed (paired by seed where runs are paired) with a bound. With n seeds "
        f"the {100 * cfg['confidence']:g} % interval of the mean effect is mean ± t(n−1) · sd / √n (claims.confidence); "
        f"each end of it is a one-sided test at level {level:g} %. The intervals cover the variation over seeds only, "
        f"conditional on one training subset, one validation split and one test set (claims.bootstrap reports how "
        f"much the test set's sampling would widen them).",
        f"The decision is by the interval alone (symmetric): supported: at least {cfg['min_seeds']} seeds "
        f"(claims.min_seeds) and the whole interval strictly on the claimed side of the bound; contradicted: at least "
        f"{cfg['min_seeds']} seeds and the whole interval strictly beyond the bound; inconclusive: otherwise (fewer "
        f"seeds, an interval that touches or straddles a bound). \"k of n seeds on the claimed side\" is a "
        f"description, not part of the rule. Not compared: runs exist but none can be compared (the config key that "
        f"would make them comparable is named); not run: the configuration does not run the experiment (the key is "
        f"named). The sensitivity column gives the verdict at 90, 95 and 99 %.",
        f"Zero spread: identical per-seed values over fewer than {ZERO_SPREAD_SEEDS} seeds, or of a continuous effect, "
        f"are inconclusive; from {ZERO_SPREAD_SEEDS} seeds on, an effect on a grid of step h (one test image, 100 / N "
        f"pp, for accuracy effects) takes sd = max(sample sd, h / 2).",
        f"Power: each check states its interval's half-width (the smallest decidable effect), P(supported) at the "
        f"observed mean, and the seeds needed for {100 * POWER_TARGET:g} % power of this rule from the noncentral t "
        f"(scipy.stats.nct; for 'within' the two one-sided tests), at the observed mean effect and, for margin checks, "
        f"at a true effect of 0, each with the observed sd and with the sd at its one-sided "
        f"{100 * POWER_SD_LEVEL:g} % chi-square upper confidence bound.",
        f"1 Accuracy, primary: accuracy(LS at claims.ls_alpha) − accuracy(α = 0), percentage points, paired by seed, "
        f"interval above −margin, the margin {acc_margin}. Descriptive: every other nonzero α and every other "
        f"objective of the grid. Regime: accuracy(α = 0) within claims.regime_accuracy_gap = "
        f"{cfg['regime_accuracy_gap']:g} pp of the paper's Table 2 (datasets the paper reports).",
        f"2 Representations: the tightness ratio of three classes projected onto their template plane (as Fig. 1) is "
        f"the mean over the classes of the mean distance of a class's points to their centroid, divided by the mean "
        f"pairwise distance between the three projected templates, with every example of the classes (smaller = "
        f"tighter). Primary: ratio(α = 0) − ratio(LS), averaged over every class triple when there are at most "
        f"{cfg['tightness_triples']} (claims.tightness_triples; else that many seeded random triples, "
        f"claims.tightness_seed), on the {cfg['tightness_split']} split (claims.tightness_split), above 0, paired by "
        f"seed. Descriptive: the same on the other split and each Fig. 1 row (LS = projections.ls_alpha).",
        f"3 Calibration, primary (one-sided non-inferiority): α* is the nonzero α of the grid with the lowest mean "
        f"validation {cfg['calibration_selection'].upper()} at T = 1 (claims.calibration_selection; test data are not "
        f"looked at; an α missing in a seed is left out of the choice and named). The calibration error is the RMS "
        f"over the 15 confidence bins; per model its square is estimated without bias (Kumar, Liang & Ma 2019: per bin "
        f"(acc − conf)² − acc (1 − acc) / (n_b − 1)), because the plug-in ECE of a well-calibrated model sits at its "
        f"floor (about 0.027 at 2,000 test images) and would shrink the gap to temperature scaling. Over seeds, the "
        f"mean squared errors A (LS at α*) and B (α = 0 temperature scaled) get t intervals at one-sided level "
        f"{level / 2:g} % each, and the interval of √A − √B is [√L_A − √U_B, √U_A − √L_B] (Bonferroni: each end a "
        f"one-sided bound at {level:g} % or better); it must lie below {cfg['ece_margin']:g} (claims.ece_margin; the "
        f"paper's own Table 3 gaps, 0.003 and 0.013, pass it). The plug-in ECE and its floor are reported. Descriptive: "
        f"LS at α* lowers the RMS calibration error and the NLL of α = 0 at T = 1. Reported without a verdict: "
        f"NLL(LS α*) − NLL(temperature scaled) (the paper claims nothing there). Regime: the hard-target model's T > 1.",
        f"4 Distillation, primary: per seed, the mean over the temperatures whose γ lies inside the baseline alphas' "
        f"range in every seed of [accuracy of the α = 0 teacher's student at T − baseline(γ)] minus the mean over the "
        f"LS teachers in range of [accuracy of the LS teacher's student at T = 1 − baseline(γ)], above 0; baseline(γ) "
        f"is the same seed's student-baseline curve linearly interpolated at γ (no extrapolation); the largest "
        f"leave-one-out interpolation error is a systematic term added to each end of the interval (fewer than 3 "
        f"baseline alphas: not compared). A temperature or LS teacher missing in a seed is left out and named, not the "
        f"seed. Descriptive: each T (above 0) and each LS teacher (below +margin, as claim 1's). Regime: teacher "
        f"accuracy rises with α (least-squares slope per seed above 0). The loss form is named.",
        f"5 Erasure, primary: (peak − late) MI with LS (claims.ls_alpha) minus (peak − late) with α = 0, paired by "
        f"seed; supported when the interval lies above the MI margin, {cfg['mi_noise_multiple']:g} "
        f"(claims.mi_noise_multiple) × the measured sd of one MI estimate; contradicted only when it lies below 0 (the "
        f"noise margin is not counted twice). Peak is the highest 3-record running mean, late the mean of the last "
        f"fifth of the records. Descriptive: with LS the MI rises then falls; late MI(α = 0) − MI(LS).",
        f"6 Distillation toy (distillation_toy), two primary checks whose conjunction is the verdict (supported when "
        f"both are, contradicted when either is and none is not run or not compared, else inconclusive; an "
        f"intersection-union test, each part at one-sided level {level:g} %): (a) accuracy(LS teacher at "
        f"distillation_toy[].ls_alpha) − accuracy(α = 0 teacher), pp, paired by seed, above −margin (claim 1's "
        f"margin, of the α = 0 teacher); (b) accuracy(student of the α = 0 teacher) − accuracy(student of the LS "
        f"teacher), both at distillation_toy[].temperature, pp, paired by seed, above 0. Descriptive: each teacher's "
        f"student − the student trained alone with hard targets, above 0.",
    ]


def _check_lines(c: dict) -> list[str]:
    head = f"#### {c['id']} ({c['role']}){': ' + c['label'] if c['label'] else ''} — **{c['verdict']}**"
    lines = [head, "", f"- Claim: {c['statement']}."]
    if c["verdict"] in (NOT_RUN, NOT_COMPARED):
        lines.append(f"- {c['verdict'].capitalize()}: {c['reason']}.")
    else:
        lines += [f"- Effect: {effect_text(c)}.", f"- Rule: {c['rule']}.", f"- Reason: {c['reason']}."]
        if c.get("sensitivity"):
            lines.append("- Sensitivity: " + ", ".join(f"{k} %: {v}" for k, v in c["sensitivity"].items()) + ".")
        if c["decidable"] and c["decidable"]["text"]:
            lines.append(f"- Decidable: {c['decidable']['text']}.")
    if c.get("paper"):
        lines.append(f"- The paper: {c['paper']['value']:+.3g} {c['unit']} ({c['paper']['source']}).")
    if c.get("bootstrap"):
        lines.append(f"- Test-image bootstrap: {c['bootstrap']['text']}.")
    if c["numbers"]:
        lines.append("- Numbers: " + "; ".join(f"{k}: {_num(v)}" for k, v in c["numbers"].items()) + ".")
    lines += [f"- Note: {n}." for n in c["notes"]]
    lines += [f"- Sources: {sources_text(c.get('sources'))}.", ""]
    return lines


def _effects(items: list[dict]) -> str:
    return ", ".join(f"{d['id']} {d['effect']}" for d in items) or "—"


def _brief(items: list[dict]) -> str:
    return ", ".join(f"{d['id']} {d['verdict']}" for d in items) or "—"


def _sens(s: dict) -> str:
    return " / ".join(s["sensitivity"].get(f"{100 * c:g}", "—") for c in SENSITIVITY) if s["sensitivity"] else "—"


# --------------------------------------------------------------------------- the banner: what the run found

# the sign of an effect in words: (claim, role, unit) -> (above 0, below 0); others read "above 0" / "below 0"
DIRECTION_WORDS = {
    (1, PRIMARY, "pp"): ("LS raises accuracy", "LS lowers accuracy"),
    (2, PRIMARY, "ratio"): ("LS tightens the clusters", "LS loosens the clusters"),
    (3, PRIMARY, "CE"): ("LS at α* is less calibrated than temperature scaling",
                         "LS at α* is better calibrated than temperature scaling"),
    (3, DESCRIPTIVE, "CE"): ("LS at α* is better calibrated than α = 0 (T = 1)",
                             "LS at α* is less calibrated than α = 0 (T = 1)"),
    (4, PRIMARY, "pp"): ("a hard-target teacher's students gain more", "label-smoothed teachers' students gain more"),
    (5, PRIMARY, "nats"): ("the MI falls more with LS", "the MI falls less with LS"),
}
# the banner also shows this descriptive check beside a claim's primary: (claim, unit) of the check
BANNER_DESCRIPTIVE = {3: "CE"}  # claim 3: LS against hard targets at T = 1 (the calibration effect itself)


def direction_text(c: dict) -> str:
    """The direction of a check's mean effect in words, its mean and interval, and whether the interval
    excludes 0: ``LS tightens the clusters, +0.12 [+0.05, +0.19] ratio (the interval excludes 0)``. A
    description: the verdict is the rule's (a direction can be clear where the verdict is inconclusive)."""
    e = c.get("effect")
    if not e or not e.get("n"):
        return c["verdict"]
    up, down = c.get("direction_words") or DIRECTION_WORDS.get((c["claim"], c["role"], c.get("unit")),
                                                               ("above 0", "below 0"))
    words = up if e["mean"] > 0 else down if e["mean"] < 0 else "no change"
    if e["ci"] is None:
        u = f" {c['unit']}" if c.get("unit") else ""
        return f"{words}, {e['mean']:+.3g}{u} (1 seed: no interval)"
    lo, hi = e["ci"]
    how = "the interval excludes 0" if lo > 0 or hi < 0 else "the interval includes 0"
    return f"{words}, {short_effect(c)} ({how})"


def seeds_needed_text(c: dict, min_seeds: int) -> str:
    """The seeds a verdict of a check needs: for 80 % power at the observed mean effect and sd (in brackets:
    with the sd at its 80 % upper bound), from :func:`decidability`."""
    d = c.get("decidable") or {}
    pw = d.get("power")
    if pw:
        if pw["at_observed"] is not None and pw["at_observed"] > SEEDS_SEARCH_MAX:
            return "none at the effect seen (outside the claimed range)"
        return f"{_seeds_text(pw['at_observed'])} ({_seeds_text(pw['at_observed_sd_upper'])})"
    e = c.get("effect") or {}
    if not e.get("n"):
        return "—"
    if e.get("ci") is None:
        return f"at least {min_seeds} ({NO_SPREAD})"
    if e.get("method") == "ce_gap" and d.get("half_width") is not None:
        return (f"at least {min_seeds}; no power formula (half-width {d['half_width']:.2g} against the margin "
                f"{c['bound']:g})")
    return "—"


def banner(checks: Sequence[dict], cfg: dict) -> dict:
    """The report's opening, in plain words: the seeds trained against the seeds a verdict needs, and per
    claim (primary check) its direction in this run beside its verdict (claim 3 also shows its calibration
    effect against hard targets, :data:`BANNER_DESCRIPTIVE`); the datasets that are not the paper's (the
    report then ends with :func:`own_data`). ``head``, ``rows`` (claim, direction, verdict, seeds), ``note``,
    ``own`` (a line or None); rendered by :func:`banner_lines` and :func:`render_rst`."""
    k = cfg["min_seeds"]
    prims = sorted((c for c in checks if c["role"] == PRIMARY), key=lambda c: (c["claim"], c["scope"]))
    ns = sorted({c["effect"]["n"] for c in prims if (c.get("effect") or {}).get("n")})
    trained = (str(ns[0]) if len(ns) == 1 else f"{ns[0]} to {ns[-1]}") if ns else "none"
    if not ns:
        head = "No claim had runs to compare: the summary names the config key each one needs."
    elif ns[-1] < k:
        head = (f"Seeds trained: {trained}. A verdict needs at least {k} (claims.min_seeds), so with {trained} "
                f"seed{'s' if ns[-1] > 1 else ''} no claim can be decided (supported or contradicted), whatever its "
                "direction. Below: each claim's direction in this run, and the seeds a verdict would need.")
    else:
        counts: dict[str, int] = defaultdict(int)
        for c in prims:
            counts[c["verdict"]] += 1
        head = (f"Seeds trained: {trained}; a verdict needs at least {k} (claims.min_seeds). Verdicts: "
                + ", ".join(f"{n} {v}" for v, n in sorted(counts.items(), key=lambda kv: VERDICTS.index(kv[0])))
                + (f"; a claim with fewer than {k} seeds cannot be decided." if ns[0] < k else "."))
    rows = []
    for c in prims:
        text = direction_text(c)
        unit = BANNER_DESCRIPTIVE.get(c["claim"])
        extra = next((d for d in checks if unit and d["claim"] == c["claim"] and d["scope"] == c["scope"]
                      and d["role"] == DESCRIPTIVE and d.get("unit") == unit and (d.get("effect") or {}).get("n")), None)
        if extra is not None:
            text = f"{text}; {extra['id']} (exploratory): {direction_text(extra)}"
        rows.append({"claim": f"{c['claim']} {CLAIM_TITLES[c['claim']].split(':')[0].lower()}, {c['scope']}",
                     "direction": text, "verdict": c["verdict"], "check": c["id"],
                     "seeds": f"{(c.get('effect') or {}).get('n') or 0} / {seeds_needed_text(c, k)}"})
    note = (f"Seeds needed: for {100 * POWER_TARGET:g} % power of the rule at the effect and spread seen (in brackets: "
            f"with the sd at its {100 * POWER_SD_LEVEL:g} % upper bound). A direction describes; only a verdict decides "
            f"(rule version {RULES_VERSION}, docs/claims.md).")
    own = sorted({c["scope"].split("/")[0] for c in checks if c["scope"] != "all"
                  and paper_family(c["scope"].split("/")[0]) is None})
    own_line = (f"{', '.join(own)}: not among the paper's datasets; the report ends with what you came for (the α "
                "validation picks for accuracy and for calibration, the temperature scaling needs, and whether to "
                "distil from a smoothed teacher)." if own else None)
    return {"seeds_trained": ns, "min_seeds": k, "head": head, "rows": rows, "note": note, "own": own_line}


def banner_lines(checks: Sequence[dict], cfg: dict) -> list[str]:
    """The banner (:func:`banner`) in markdown: at most 12 lines for five claims."""
    b = banner(checks, cfg)
    lines = [f"**What this run found.** {b['head']}", "",
             "| claim | direction in this run: mean effect [95 % interval] | verdict | seeds trained / needed |",
             "|---|---|---|---|"]
    lines += [f"| {r['claim']} | {r['direction']} | **{r['verdict']}** | {r['seeds']} |" for r in b["rows"]]
    lines += ["", b["note"]] + ([b["own"]] if b["own"] else [])
    return lines


def _iv(d: dict | None, spec: str = ".3g", unit: str = "") -> str:
    """``97.6 % [95.1, 100.0]`` (``spec`` ``.1f``, unit ``%``) of an interval dict (mean, ci)."""
    if not d or not d.get("n"):
        return "no comparable runs"
    f = lambda x: format(x, spec)  # noqa: E731
    u = f" {unit}" if unit else ""
    if d.get("ci") is None:
        return f"{f(d['mean'])}{u} (1 seed: no interval)"
    lo, hi = d["ci"]
    return f"{f(d['mean'])}{u} [{f(lo)}, {f(hi)}]"


def _excludes_zero(d: dict | None) -> bool | None:
    if not d or d.get("ci") is None:
        return None
    return d["ci"][0] > 0 or d["ci"][1] < 0


def own_data_lines(own: Sequence[dict], cfg: dict) -> list[str]:
    """The report's last section (markdown; each entry's header a bold line, so that the same lines serve
    reStructuredText): per grid of a user's own dataset, what :func:`own_data` found."""
    lines = []
    pct = f"{100 * cfg['confidence']:g} %"
    for item in own:
        ns = sorted({t["n"] for t in (item["temperature"] or {}).values()}
                    | ({item["accuracy"]["gain_pp"]["n"]} if item["accuracy"] else set()))
        over = (f"{ns[0]} seed{'s' if ns[0] > 1 else ''}" if len(ns) == 1 else f"{ns[0]} to {ns[-1]} seeds") \
            if ns else "the seeds"
        lines += [f"**What you came for: {item['scope']}** ({item['dataset']} is not one of the paper's datasets). "
                  f"What this run's validation split picks, each with its {pct} interval over {over}: descriptions, "
                  "not verdicts.", ""]
        a = item["accuracy"]
        if a is None:
            lines.append("- **α for accuracy**: not chosen (the grid needs α = 0 and a nonzero α with validation "
                         "accuracy in every seed: teachers[].alphas).")
        else:
            val = ", ".join(f"{al:g}: {v:.1f} %" for al, v in sorted(a["validation_accuracy_pct"].items()))
            if a["alpha"] > 0:
                what = (f"test accuracy at α = {a['alpha']:g}: {_iv(a['accuracy_pct'], '.1f', '%')}; against α = 0: "
                        f"{_iv(a['gain_pp'], '+.2f', 'pp')}")
            else:
                what = (f"no smoothing; the best nonzero α on validation, {a['compared_alpha']:g}, changes test accuracy "
                        f"by {_iv(a['gain_pp'], '+.2f', 'pp')} against α = 0")
            opt = " (on the split that chose it: optimistic)" if a["evaluated_on_the_selection_split"] else ""
            lines.append(f"- **α for accuracy: {a['alpha']:g}**, the highest mean validation accuracy (α = {val}); "
                         f"each seed alone picks {_pick_text(a['per_seed_pick'])}. {what.capitalize()}{opt}.")
        cal = item["calibration"]
        if cal is None or cal.get("alpha") is None:
            why = f": {cal['why']}" if cal else " (the grid has no calibration files with α = 0 and a nonzero α)"
            lines.append(f"- **α for calibration**: not chosen{why}.")
        else:
            sel = cal["selection"].upper()
            rms = lambda x: "?" if x is None else f"{x:.3f}"  # noqa: E731
            text = (f"- **α for calibration: {cal['alpha']:g}** (claim 3's α*: the lowest mean validation {sel} at "
                    f"T = 1). Test RMS calibration error {rms(cal['rms_ls'])} at T = 1")
            if cal.get("change_vs_hard"):
                text += (f", against α = 0's {rms(cal['rms_hard'])}: a change of {_iv(cal['change_vs_hard'], '+.3f')} "
                         f"({cal['lowers_hard_check']})")
            text += (f"; against α = 0 temperature scaled ({rms(cal['rms_temperature_scaled'])}): "
                     f"{_iv(cal['versus_temperature_scaling'], '+.3f')} ({cal['check']}).")
            lines.append(text)
        temps = item["temperature"]
        if not temps:
            lines.append("- **Temperature**: no calibration files for this grid.")
        else:
            def t_text(al):
                t = temps[al]
                edge = f", seeds {t['at_bound']} at the edge of the search range left out" if t["at_bound"] else ""
                return f"{_iv(t, '.2f')}{edge}"

            hard = (f"α = 0 needs T = {t_text(0.0)}" if 0.0 in temps else "no α = 0 model")
            others = "; ".join(f"α = {al:g}: {t_text(al)}" for al in sorted(temps) if al > 0)
            lines.append(f"- **Temperature scaling** (T fitted on validation, applied as logits / T): {hard}"
                         + (f"; by α: {others}" if others else "") + ".")
        if not item["distillation"]:
            lines.append("- **Distil from a smoothed teacher?** Not run for this grid (distillation).")
        for d in item["distillation"]:
            e = d["effect_pp"]
            if not e or not e.get("n"):
                lines.append(f"- **Distil from a smoothed teacher?** Not answered ({d['scope']}, {d['verdict']}): "
                             f"{d['why']}.")
                continue
            clear = _excludes_zero(e)
            if clear and e["mean"] > 0:
                answer = "No"
            elif clear and e["mean"] < 0:
                answer = "Yes"
            else:
                answer = ("Not clear" + (f" at {e['n']} seeds (the interval includes 0)" if e.get("ci") is not None
                                         else f" ({NO_SPREAD})"))
            lines.append(f"- **Distil from a smoothed teacher? {answer}.** Claim 4's contrast ({d['check']}, "
                         f"{d['scope']}): the gain over the student baseline at the same smoothness γ of a hard-target "
                         f"teacher's students minus that of label-smoothed teachers' students, {_iv(e, '+.2f', 'pp')}.")
        lines.append("")
    return lines


def render_markdown(checks: Sequence[dict], cfg: dict, marking: dict | None = None, forest: str | None = None,
                    own: Sequence[dict] = ()) -> str:
    """claims.md: the banner (:func:`banner_lines`), the forest plot, the summary, the decision rule, every
    check, and, for a user's own dataset, what they came for (:func:`own_data_lines`, from :func:`own_data`)."""
    summary = summarise(checks)
    lines = ["# Did this run reproduce the paper?", ""] + banner_lines(checks, cfg) + [""]
    if forest:
        lines += [f"![Each claim's primary effect, its {100 * cfg['confidence']:g} % interval, its margin and the "
                  f"paper's effect]({forest})", ""]
    lines += ["Claims of Müller, Kornblith & Hinton, *When Does Label Smoothing Help?* (NeurIPS 2019), "
              "checked on this run's outputs. A claim's verdict is its primary check's; the effect comes first, the "
              "verdict is its label.", ""]
    if marking:
        lines += [f"**{marking['marking'].capitalize()}** under rule version {marking['rules_version']} (settings hash "
                  f"{rules_hash(cfg)}): {marking['why']}.", ""]
    lines += ["## Summary", "",
              "| claim | scope | direction: primary effect [95 % interval] | verdict (primary check) | "
              "verdict at 90 / 95 / 99 % | descriptive checks (exploratory: effects only) | regime checks |",
              "|---|---|---|---|---|---|---|"]
    lines += [f"| {s['claim']}. {s['title']} | {s['scope']} | {s['direction']} | **{s['verdict']}** "
              f"({s['primary'] or '—'}) | {_sens(s)} | {_effects(s['descriptive'])} | {_brief(s['regime'])} |"
              for s in summary]
    lines += ["", "## Decision rule", ""] + [f"- {t}" for t in decision_rule_text(cfg)] + [""]
    for claim in sorted({c["claim"] for c in checks}):
        lines += [f"## {claim}. {CLAIM_TITLES[claim]}", ""]
        for s in (s for s in summary if s["claim"] == claim):
            lines += [f"### {s['scope']}: **{s['verdict']}** (primary check {s['primary'] or '—'})", ""]
            order = {PRIMARY: 0, DESCRIPTIVE: 1, REGIME: 2}
            for c in sorted((c for c in checks if c["claim"] == claim and c["scope"] == s["scope"]),
                            key=lambda c: (order[c["role"]], c["id"])):
                lines += _check_lines(c)
    if own:
        lines += ["## What you came for", ""] + own_data_lines(own, cfg)
    return "\n".join(lines) + "\n"


def _rst_escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace("*", "\\*").replace("|", "\\|").replace("`", "\\`").replace("_ ", "\\_ ")


def render_rst(checks: Sequence[dict], cfg: dict, marking: dict | None = None, own: Sequence[dict] = ()) -> str:
    """The same report as reStructuredText (for the Snakemake report's first page)."""
    e = _rst_escape
    lines = ["Did this run reproduce the paper?", "---------------------------------", ""]
    b = banner(checks, cfg)
    lines += [f"**What this run found.** {e(b['head'])}", ""]
    lines += [f"* {e(r['claim'])}: {e(r['direction'])}; **{r['verdict']}**; seeds trained / needed: {e(r['seeds'])}"
              for r in b["rows"]]
    lines += ["", e(b["note"]) + (" " + e(b["own"]) if b["own"] else ""), ""]
    if marking:
        lines += [f"{e(marking['marking'].capitalize())} under rule version {marking['rules_version']}: "
                  f"{e(marking['why'])}.", ""]
    for s in summarise(checks):
        lines.append(f"* {s['claim']}. {e(s['title'])}, {e(s['scope'])}: {e(s['direction'])}, **{s['verdict']}** "
                     f"(primary check {s['primary'] or '-'}; at 90 / 95 / 99 %: {e(_sens(s))}); descriptive: "
                     f"{e(_effects(s['descriptive']))}; regime: {e(_brief(s['regime']))}")
    lines += ["", "Decision rule: " + e(" ".join(decision_rule_text(cfg))), ""]
    for c in checks:
        head = (f"* Check {c['id']} ({c['role']}), {e(c['scope'])}{', ' + e(c['label']) if c['label'] else ''}: "
                f"**{c['verdict']}**. {e(c['statement'])}.")
        if c["verdict"] in (NOT_RUN, NOT_COMPARED):
            lines.append(f"{head} {e(c['reason'])}.")
            continue
        body = f" Effect: {e(effect_text(c))}. {e(c['reason'])}."
        if c["decidable"] and c["decidable"]["text"]:
            body += f" Decidable: {e(c['decidable']['text'])}."
        if c["numbers"]:
            body += " " + e("; ".join(f"{k}: {_num(v)}" for k, v in c["numbers"].items())) + "."
        body += f" Sources: {e(sources_text(c.get('sources')))}."
        lines.append(head + body)
    if own:  # the markdown lines: bold and "- " bullets are reStructuredText too; the rest escaped
        lines += [""] + [e(line).replace("\\*\\*", "**") for line in own_data_lines(own, cfg)]
    return "\n".join(lines) + "\n"


def forest_plot(checks: Sequence[dict], paths: Sequence[str | Path], cfg: dict,
                dpi: int = default("figures.dpi")) -> None:
    """The report's first figure: one row per primary check (claim and scope) with its own axis (the
    claims' units differ): the mean effect and its interval, the bound(s) of the rule (dashed; claim
    5's contradiction bound 0 dotted), 0, and the paper's own effect where the paper gives one
    (a diamond). The verdict is the row's label, at its right."""
    from lspipe.core.plotting import new_figure, save_figure  # matplotlib: only when a figure is drawn

    rows = [c for c in checks if c["role"] == PRIMARY]
    fig, axes = new_figure(len(rows) or 1, 1, size=(6.4, 0.85 * max(1, len(rows)) + 0.9))
    legend = {}
    colours = {SUPPORTED: "C2", CONTRADICTED: "C3"}
    for ax, c in zip(axes[:, 0], rows):
        e = c.get("effect")
        ax.set_yticks([])
        ax.spines["left"].set_visible(False)
        ax.set_title(f"{c['id']} {c['scope']}: {CLAIM_TITLES[c['claim']].split(':')[0]} ({c.get('unit') or 'effect'})",
                     fontsize=8, loc="left")
        ax.text(1.01, 0.5, c["verdict"], transform=ax.transAxes, fontsize=8, va="center", fontweight="bold",
                color=colours.get(c["verdict"], "0.3"))
        xs = [0.0]
        if e and e.get("n"):
            xs.append(e["mean"])
            if e["ci"]:
                lo, hi = e["ci"]
                h = ax.errorbar([e["mean"]], [0], xerr=[[e["mean"] - lo], [hi - e["mean"]]], fmt="o", color="C0",
                                capsize=4, lw=2)
                legend.setdefault(f"this run: mean and {100 * cfg['confidence']:g} % interval over seeds", h)
                xs += [lo, hi]
            else:
                (h,) = ax.plot([e["mean"]], [0], "o", color="C0")
                legend.setdefault("this run (1 seed: no interval)", h)
        if c.get("kind") in ("greater", "at_least", "at_most", "within"):
            lo_b, hi_b = _bounds(c["kind"], c["bound"])
            for b in (x for x in (lo_b, hi_b) if x is not None):
                legend.setdefault("bound of the rule (supported beyond it)", ax.axvline(b, color="C3", ls="--", lw=1))
                xs.append(b)
            if c.get("contra") is not None and c["contra"] != c["bound"]:
                legend.setdefault("contradicted below", ax.axvline(c["contra"], color="C3", ls=":", lw=1.2))
        ax.axvline(0.0, color="0.5", lw=0.6)
        if c.get("paper"):
            (h,) = ax.plot([c["paper"]["value"]], [0], "D", color="C1", ms=6)
            legend.setdefault("the paper's effect", h)
            xs.append(c["paper"]["value"])
        span = max(xs) - min(xs) or 1.0
        ax.set_xlim(min(xs) - 0.1 * span, max(xs) + 0.1 * span)
        ax.set_ylim(-1, 1)
    fig.suptitle("Each claim's primary effect (the verdict is the label)", fontsize=9)
    fig.tight_layout(rect=(0, 0.06, 0.92, 1))
    fig.legend(legend.values(), legend.keys(), loc="lower center", ncol=2, fontsize=7)
    save_figure(fig, paths, dpi)


def build_checks(*, evals: Sequence[dict] = (), calibrations: Sequence[dict] = (), tightness: Sequence[dict] = (),
                 gamma: dict[str, dict] | None = None, mi_curves: Sequence[dict] = (), cfg: dict,
                 accuracy_split: str = default("accuracy_table.split"), fig1_ls_alpha: float | None = None,
                 has_fig1_rows: bool = False,
                 distillation_splits: dict[str, str] | None = None, gamma_paths: dict[str, str] | None = None,
                 twins: dict[str, dict[str, str]] | None = None, toys: Sequence[dict] = ()) -> list[dict]:
    """Every check of the report. ``gamma`` maps a distillation dataset to its gamma table; ``twins``
    a dataset to {student baseline run: eval path of the teacher it was trained as}; ``toys`` the
    ``distillation_toy`` entries (claim 6)."""
    twin_paths = {str(p) for t in (twins or {}).values() for p in t.values()}
    teachers = [e for e in evals if e["model"]["role"] == "teacher"]
    students = [e for e in evals if e["model"]["role"] == "student" or str(e.get("_path")) in twin_paths]
    checks = accuracy_claims(teachers, cfg, accuracy_split)
    checks += tightness_claims(tightness, cfg, fig1_ls_alpha, has_fig1_rows)
    checks += calibration_claims(calibrations, cfg)
    if gamma:
        for ds, g in sorted(gamma.items()):
            checks += distillation_claims(ds, teachers, students, g, cfg, (distillation_splits or {}).get(ds, "test"),
                                          (gamma_paths or {}).get(ds))
    else:
        checks.append(not_run(4, "all", "distillation (Fig. 5)", "distillation"))
    checks += mi_claims(mi_curves, cfg)
    # claim 6 (the MNIST toy, beyond the paper's image experiments) only where a distillation_toy entry asks for it
    checks += toy_claims(teachers, students, toys, cfg)
    return _assign_ids(checks)


def write_report(checks: Sequence[dict], cfg: dict, md_path, json_path, rst_path=None, *, marking: dict | None = None,
                 forest: Sequence[str | Path] = (), dpi: int = default("figures.dpi"), own: Sequence[dict] = ()) -> None:
    """claims.json (settings, rule version and hash, marking, decision rule, banner, summary, checks, and
    ``what_you_came_for``: :func:`own_data`'s entries, passed as ``own``), claims.md (the banner, then the
    forest plot, when ``forest`` names its files; ``own`` at the end), claims.rst."""
    marking = marking or analysis_marking([])
    for c in checks:
        c["marking"] = marking["marking"]
    forest = [Path(f) for f in forest]
    if forest:
        forest_plot(checks, forest, cfg, dpi)
    png = next((f for f in forest if f.suffix == ".png"), forest[0] if forest else None)
    rel = None
    if png is not None:
        import os

        rel = os.path.relpath(png, Path(md_path).parent)
    write_json(json_path, {"rules_version": RULES_VERSION, "rules_frozen": RULE_VERSIONS[RULES_VERSION][0],
                           "rules_hash": rules_hash(cfg), "marking": marking, "settings": cfg,
                           "decision_rule": decision_rule_text(cfg), "banner": banner(checks, cfg),
                           "summary": summarise(checks), "checks": list(checks), "what_you_came_for": list(own)})
    write_text(md_path, render_markdown(checks, cfg, marking, rel, own))
    if rst_path:
        write_text(rst_path, render_rst(checks, cfg, marking, own))


# --------------------------------------------------------------------------- reading the inputs


def _read_mi_curve(path: str | Path) -> list[dict]:
    """Per-seed MI curve CSV at ``<results>/mi/<dataset>/<arch>/a<alpha>_s<seed>.csv``; the dataset
    and arch come from the path."""
    p = Path(path)
    rows = read_csv(p)
    for r in rows:
        r.setdefault("dataset", p.parent.parent.name)
        r.setdefault("arch", p.parent.name)
        r.setdefault("run", p.stem)
        r["_path"] = str(p)
    return rows


def _read_json(path) -> dict:
    d = read_json(path)
    d["_path"] = str(path)
    return d


def discover(results: str | Path) -> dict[str, list[str]]:
    """The inputs of the claims report in a results folder of the standard layout (everything found)."""
    r = Path(results)

    def glob(pattern):
        return sorted(str(p) for p in r.glob(pattern))

    return {"evals": glob("eval/*/*/*/*.json"), "calibrations": glob("calibration/*/*/teacher/*.json"),
            "tightness": glob("tables/tightness.csv"), "gamma": glob("tables/distillation_gamma_*.csv"),
            "mi_curves": glob("mi/*/*/*.csv"), "dumps": glob("dumps/*/*/teacher/*.h5")}


def _rectangle(name: str, cells: dict[tuple, set]) -> list[str]:
    """Problems of a grid whose rows (e.g. alphas) do not share one set of columns (e.g. seeds)."""
    sets = {k: frozenset(v) for k, v in cells.items()}
    if len(set(sets.values())) <= 1:
        return []
    return [f"{name}: " + "; ".join(f"{k}: seeds {sorted(v)}" for k, v in sorted(sets.items(), key=lambda kv: str(kv[0])))]


def mixed_grids(inputs: dict) -> list[str]:
    """Signs that a results folder mixes the outputs of several configurations (orphans of an
    earlier config): grids that are not a full alpha x seed rectangle, calibration or MI files
    whose alphas/seeds differ from the evaluations', students whose teacher, alpha or temperature
    the gamma table does not hold, and gamma tables without their students."""
    problems = []
    teacher: dict[tuple, dict[float, set]] = defaultdict(lambda: defaultdict(set))
    students: dict[str, list] = defaultdict(list)
    for ev in inputs["evals"]:
        m = ev["model"]
        if m["role"] == "teacher":
            teacher[(m["dataset"], m["arch"])][float(m["alpha"])].add(int(m["seed"]))
        else:
            students[m["dataset"]].append((StudentRun.parse(m["run"]), ev.get("_path")))
    for (ds, arch), g in sorted(teacher.items()):
        problems += _rectangle(f"teacher evaluations {ds}/{arch} (α × seed)", {f"α {a:g}": s for a, s in g.items()})
    cal: dict[tuple, dict[float, set]] = defaultdict(lambda: defaultdict(set))
    for c in inputs["calibrations"]:
        m = c["model"]
        cal[(m["dataset"], m["arch"])][float(m["alpha"])].add(int(m["seed"]))
    for key, g in sorted(cal.items()):
        if {a: frozenset(s) for a, s in g.items()} != {a: frozenset(s) for a, s in teacher.get(key, {}).items()}:
            problems.append(f"calibration files {key[0]}/{key[1]} hold α × seed {_grid_text(g)}, the teacher "
                            f"evaluations {_grid_text(teacher.get(key, {}))}")
    mi: dict[tuple, dict[float, set]] = defaultdict(lambda: defaultdict(set))
    for r in inputs["mi_curves"]:
        mi[(r["dataset"], r["arch"])][float(r["alpha"])].add(int(r["seed"]))
    for (ds, arch), g in sorted(mi.items()):
        problems += _rectangle(f"MI curves {ds}/{arch} (α × seed)", {f"α {a:g}": s for a, s in g.items()})
        extra = {a for a in g if a not in teacher.get((ds, arch), {})}
        if extra:
            problems.append(f"MI curves {ds}/{arch} of α {sorted(extra)} have no teacher evaluation")
    for ds, table in sorted(inputs["gamma"].items()):
        runs = students.pop(ds, [])
        keys = set(table)
        kd = [(r, p) for r, p in runs if r.distilled]
        for r, path in kd:
            if (fmt(r.teacher_alpha), r.seed, fmt(r.temperature)) not in keys:
                problems.append(f"student {path or r.name}: its teacher (α {r.teacher_alpha:g}, seed {r.seed}, "
                                f"T {r.temperature:g}) is not in distillation_gamma_{ds}.csv")
        fam: dict[str, set] = defaultdict(set)
        for r, _ in runs:
            key = ("baseline α " + fmt(r.alpha) if not r.distilled else
                   f"teacher α {fmt(r.teacher_alpha)} at T {fmt(r.temperature)}")
            fam[key].add(r.seed)
        problems += _rectangle(f"students of {ds} (family × seed)", fam)
        if not kd:
            problems.append(f"distillation_gamma_{ds}.csv has no distilled students")
    for ds, runs in sorted(students.items()):
        problems.append(f"{len(runs)} student evaluation(s) of {ds} without distillation_gamma_{ds}.csv")
    return problems


def _grid_text(g: dict) -> str:
    return "{" + ", ".join(f"{a:g}: {sorted(s)}" for a, s in sorted(g.items())) + "}"


def found_text(paths: dict[str, list[str]]) -> str:
    """What a results folder holds, for the listing ``lspipe claims --results`` prints."""
    return "; ".join(f"{k}: {len(v)} file(s)" for k, v in paths.items())


# --------------------------------------------------------------------------- CLI


def load_inputs(paths: dict) -> dict:
    """The content of the report's input files (``paths`` as :func:`inputs` or :func:`discover` give them)."""
    gamma, gamma_paths = {}, {}
    for path in paths.get("gamma") or []:
        stem = Path(path).stem
        ds = stem[len("distillation_gamma_"):] if stem.startswith("distillation_gamma_") else stem
        gamma[ds], gamma_paths[ds] = read_gamma_table(path), str(path)
    tightness = []
    for path in paths.get("tightness") or []:
        tightness += [{**r, "_path": str(path)} for r in read_csv(path)]
    return {"evals": [_read_json(p) for p in paths.get("evals") or []],
            "calibrations": [_read_json(p) for p in paths.get("calibrations") or []],
            "tightness": tightness, "gamma": gamma, "gamma_paths": gamma_paths,
            "mi_curves": [r for p in paths.get("mi_curves") or [] for r in _read_mi_curve(p)]}
