"""The claims report's statistics: verdict words and roles, the settings, each check's interval and verdict
(:func:`decide`), its power and the seeds it needs (:func:`decidability`), a check's record (:func:`check`), the
conjunction of a claim's primary checks and the test-image bootstrap (variance beyond seeds)."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Iterable, Sequence

import numpy as np

from lspipe.base.defaults import default, fill


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
