"""The claims report: did this run reproduce "When Does Label Smoothing Help?"?

Pure functions over outputs the workflow has already written (evaluation JSONs, calibration
JSONs, the Fig. 5 smoothness-index CSVs, the per-seed Fig. 6 MI curves and the tightness table
computed here from the activation dumps) that turn each claim of the paper into pre-specified
checks: an effect per seed, its interval over seeds and a verdict. Every rule and default is
stated in the README ("The claims report"), in the report itself (:func:`decision_rule_text`) and
in the schema's ``claims`` section, which holds the defaults (read through :mod:`lspipe.base.defaults`).

A claim, per dataset/arch, has

* one **primary** check, fixed in advance: it alone gives the claim's verdict;
* **descriptive** checks with their own verdicts, shown beside it. Multiplicity policy: *primary
  only*. No descriptive verdict can change the claim's, so none is corrected for multiplicity;
  read them as exploratory;
* **regime** checks: preconditions of the paper's argument (the hard-target model is
  overconfident; teacher accuracy rises with alpha), shown beside the claim, outside its verdict.

Primary checks:

1. accuracy: accuracy(LS at ``ls_alpha``) − accuracy(hard), paired by seed, above −``accuracy_margin``;
2. representations: tightness ratio (hard) − (LS), mean over every class triple (at most
   ``tightness_triples``), on ``tightness_split``, above 0;
3. calibration: ECE(LS at alpha*) − ECE(hard targets, temperature scaled), paired by seed, below
   ``ece_margin`` (one-sided non-inferiority); alpha* chosen among the grid's nonzero alphas by the
   mean *validation* ECE (or NLL: ``calibration_selection``) at T = 1, never by test;
4. distillation: per seed, the mean over the in-range temperatures of (hard-teacher student −
   baseline curve at its gamma) minus the mean over the in-range LS teachers of (LS-teacher
   student − baseline at its gamma), above 0;
5. erasure: (peak − late) of the MI with LS minus (peak − late) with hard targets, paired by
   seed, above the MI margin (``mi_noise_multiple`` × the measured sd of one MI estimate).

Decision rule (:func:`decide`): with n seeds the two-sided ``confidence`` interval of the mean
effect is ``mean ± t_{n-1} · sd / sqrt(n)``; each end of it is a one-sided test at level
``(1 − confidence) / 2``. The sd is ``max(sample sd, resolution / 2)``, ``resolution`` the smallest
step a per-seed effect can take (one test image, 100 / N pp, for accuracy effects; 0 for
continuous ones): identical values on a grid of step h are consistent with any spread up to h / 2,
so they never give a zero-width interval, and a continuous effect with zero spread gives none.
``supported``: n >= ``min_seeds`` and the interval strictly on the claimed side of the bound
(``greater`` also needs every seed's effect there); ``contradicted``: n >= ``min_seeds`` and the
interval strictly beyond the bound; ``inconclusive``: otherwise (an interval that touches or
straddles a bound, too few seeds); ``not compared``: runs exist, but none can be compared (the
config key that would make them comparable is named); ``not run``: the configuration does not run
the experiment (the key is named).
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
from lspipe.base.runs import fmt, run_name
from lspipe.experiments.distill import FORM_LABELS, parse_student_run, read_gamma_table, trained_as
from lspipe.experiments.mi import mi_noise

SUPPORTED, CONTRADICTED, INCONCLUSIVE = "supported", "contradicted", "inconclusive"
NOT_COMPARED, NOT_RUN = "not compared", "not run"
VERDICTS = (SUPPORTED, CONTRADICTED, INCONCLUSIVE, NOT_COMPARED, NOT_RUN)
PRIMARY, DESCRIPTIVE, REGIME = "primary", "descriptive", "regime"
NO_SPREAD = "1 seed: no spread"
SEEDS_SEARCH_MAX = 1000  # the seed recommendation searches n = 2 .. this

CLAIM_TITLES = {
    1: "Accuracy: label smoothing does not hurt top-1 accuracy (Table 2)",
    2: "Representations: label smoothing tightens each class's cluster relative to the template distances (Fig. 1)",
    3: "Calibration: label smoothing calibrates about as well as temperature scaling (Table 3, Fig. 2)",
    4: ("Distillation: students of a hard-target teacher gain more over the student baseline than students of "
        "label-smoothed teachers (Fig. 5)"),
    5: "Erasure of information: the mutual information falls more during training with label smoothing (Fig. 6)",
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
                 resolution: float = 0.0) -> dict:
    """Mean, sample sd, the sd used (floored at ``resolution / 2``) and the t interval of per-seed effects."""
    seeds = sorted(values)
    v = np.array([values[s] for s in seeds], dtype=float)
    n = len(v)
    out = {"n": n, "seeds": seeds, "values": [float(x) for x in v], "mean": float(v.mean()) if n else None,
           "std": None, "sd_used": None, "sd_floor": resolution / 2, "floored": False, "half_width": None,
           "ci": None, "confidence": confidence, "one_sided_level": (1 - confidence) / 2, "resolution": resolution}
    if n >= 2:
        # equal values up to floating-point rounding have zero spread (not a tiny one from rounding)
        sd = 0.0 if np.ptp(v) <= 1e-12 * max(1.0, float(np.abs(v).max())) else float(v.std(ddof=1))
        used = max(sd, resolution / 2)
        half = _t(confidence, n - 1) * used / math.sqrt(n)
        out.update(std=sd, sd_used=used, floored=used > sd, half_width=half,
                   ci=[out["mean"] - half, out["mean"] + half])
    return out


def _bounds(kind: str, bound: float) -> tuple[float | None, float | None]:
    return {"greater": (bound, None), "at_least": (-bound, None), "at_most": (None, bound),
            "within": (-bound, bound)}[kind]


def decide(stats: dict, kind: str, bound: float, min_seeds: int) -> tuple[str, str]:
    """Verdict and its one-line ground (see the module docstring for the rule).

    ``kind``: ``greater`` (every seed's effect and the interval above ``bound``), ``at_least``
    (interval above −``bound``), ``at_most`` (interval below +``bound``), ``within`` (interval
    inside ±``bound``). An interval end equal to a bound is not strictly inside (inconclusive).
    """
    lo_b, hi_b = _bounds(kind, bound)
    n = stats["n"]
    if n == 0:
        return NOT_COMPARED, "no comparable runs"
    if n < 2 or stats["ci"] is None:
        return INCONCLUSIVE, f"{NO_SPREAD}: no interval"
    if stats["sd_used"] == 0:
        return INCONCLUSIVE, (f"every seed gives the same value ({stats['values'][0]:.4g}): zero spread of a continuous "
                              "effect gives no interval")
    if n < min_seeds:
        return INCONCLUSIVE, f"{n} seeds, fewer than claims.min_seeds = {min_seeds}"
    lo, hi = stats["ci"]
    if (lo_b is not None and hi < lo_b) or (hi_b is not None and lo > hi_b):
        return CONTRADICTED, "the interval lies beyond the claimed bound"
    inside = (lo_b is None or lo > lo_b) and (hi_b is None or hi < hi_b)
    if inside and kind == "greater" and not all(x > bound for x in stats["values"]):
        return INCONCLUSIVE, "the interval is on the claimed side, but not every seed's effect is"
    if inside:
        return SUPPORTED, "the interval lies inside the claimed range"
    return INCONCLUSIVE, "the interval touches or straddles a bound of the claimed range"


RULE_TEXT = {
    "greater": "effect > {b:.4g} in every seed and the interval above {b:.4g}",
    "at_least": "interval above −{b:.4g} (\"does not hurt\": the margin {b:.4g})",
    "at_most": "interval below +{b:.4g} (\"not worse / no better than\": the margin {b:.4g})",
    "within": "interval inside ±{b:.4g} (\"comparable\": the margin {b:.4g})",
}


def rule_text(kind: str, bound: float) -> str:
    if bound == 0 and kind in ("at_least", "at_most"):
        return f"interval {'above' if kind == 'at_least' else 'below'} 0 (no margin)"
    return RULE_TEXT[kind].format(b=bound)


def _sign(x: float, digits: int = 4) -> str:
    return f"{x:+.{digits}g}"


def seeds_needed(sd: float | None, target: float, confidence: float, at_least: int = 2) -> int | None:
    """Smallest n >= ``at_least`` whose interval half-width ``t_{n-1} sd / sqrt(n)`` is below ``target``;
    None when sd is unknown or zero, or target <= 0; ``SEEDS_SEARCH_MAX + 1`` when beyond the search."""
    if not sd or target <= 0:
        return None
    for n in range(max(2, at_least), SEEDS_SEARCH_MAX + 1):
        if _t(confidence, n - 1) * sd / math.sqrt(n) < target:
            return n
    return SEEDS_SEARCH_MAX + 1


def decidability(stats: dict, kind: str, bound: float, unit: str, min_seeds: int) -> dict:
    """The smallest effect these seeds could decide, and the seeds a decision would need.

    With half-width w, a ``greater`` check is decided only by a mean beyond ``bound ± w``; a margin
    check (``at_least`` / ``at_most`` / ``within``, margin m) by a mean beyond ``±m ± w``. Seeds
    needed at the observed spread: for a margin check, to decide a true effect of 0 (w < m); for
    ``greater``, to decide the observed mean (w < |mean − bound|).
    """
    u = f" {unit}" if unit else ""
    n, w, sd = stats["n"], stats["half_width"], stats["sd_used"]
    out = {"half_width": w, "supported_if": None, "contradicted_if": None, "seeds_needed": None,
           "undecidable_near_zero": None, "text": ""}
    if n < 2 or w is None:
        out["text"] = (f"{NO_SPREAD}: the smallest decidable effect cannot be estimated (a verdict needs at least "
                       f"claims.min_seeds = {min_seeds} seeds)")
        return out
    if not sd:
        out["text"] = "zero spread: the smallest decidable effect cannot be estimated"
        return out
    conf = stats["confidence"]
    margin = kind != "greater"
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
    if margin:
        need = seeds_needed(sd, bound, conf, min_seeds)
        out["undecidable_near_zero"] = w >= bound
        out["seeds_needed"] = need
        if w >= bound:
            text += (f"; undecidable at {n} seeds for an effect near 0: the half-width exceeds the margin {bound:g}{u}")
        if need is not None:
            more = f"more than {SEEDS_SEARCH_MAX}" if need > SEEDS_SEARCH_MAX else f"{need}"
            text += f"; deciding an effect of 0 against the margin at this spread needs {more} seeds"
    else:
        need = seeds_needed(sd, abs(stats["mean"] - bound), conf, min_seeds)
        out["seeds_needed"] = need
        if need is not None:
            more = f"more than {SEEDS_SEARCH_MAX}" if need > SEEDS_SEARCH_MAX else f"{need}"
            text += f"; the observed mean would be decided with {more} seeds at this spread"
    out["text"] = text
    return out


def reason_text(stats: dict, kind: str, bound: float, unit: str, verdict: str, why: str) -> str:
    """The reason line: where the mean and every seed lie, whether the interval excludes 0, its
    half-width against the margin, and the one-sided level."""
    u = f" {unit}" if unit else ""
    n = stats["n"]
    if n == 0:
        return why
    lo_b, hi_b = _bounds(kind, bound)

    def side(x):
        return (lo_b is None or x > lo_b) and (hi_b is None or x < hi_b)

    per_seed = ", ".join(f"s{s} {_sign(v)}" for s, v in zip(stats["seeds"], stats["values"]))
    k = sum(side(v) for v in stats["values"])
    parts = [f"{verdict}: {why}", f"mean {_sign(stats['mean'])}{u} ({'inside' if side(stats['mean']) else 'outside'} "
             f"the claimed range)", f"seeds {per_seed} ({k} of {n} inside the claimed range)"]
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
        if stats["floored"]:
            parts.append(f"sd floored at half the resolution ({stats['sd_floor']:.3g}{u}; sample sd {stats['std']:.3g})")
        parts.append(f"each end of the interval is a one-sided test at level {100 * stats['one_sided_level']:g} %")
    return "; ".join(parts)


def check(claim: int, scope: str, statement: str, values: dict[int, float], *, kind: str, bound: float,
          unit: str, cfg: dict, role: str = DESCRIPTIVE, label: str = "", resolution: float = 0.0,
          numbers: dict | None = None, notes: Sequence[str] = (), sources: dict | None = None) -> dict:
    """One check: the per-seed effects, their statistics, the verdict and its grounds."""
    stats = effect_stats(values, cfg["confidence"], resolution)
    verdict, why = decide(stats, kind, bound, cfg["min_seeds"])
    extra = {}
    if verdict == NOT_COMPARED:
        extra = {"config_key": "the grids' seeds (teachers[].seeds, distillation[].seeds)"}
        why = f"no seed has every run this check pairs; {extra['config_key']} would make the runs comparable"
    return {**extra, "claim": claim, "id": "", "role": role, "scope": scope, "label": label, "statement": statement,
            "verdict": verdict, "reason": reason_text(stats, kind, bound, unit, verdict, why),
            "rule": rule_text(kind, bound), "kind": kind, "bound": bound, "unit": unit, "effect": stats,
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
            "unit": "", "effect": None, "decidable": None, "numbers": {}, "notes": [],
            "sources": {"files": [], "keys": []}}


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
        letters = iter("bcdefghijklmnopqrstuvwxyz")
        regime = [c for c in cs if c["role"] == REGIME]
        for c in cs:
            if c["role"] == PRIMARY:
                c["id"] = f"{claim}a"
            elif c["role"] == REGIME:
                c["id"] = f"{claim}R" + (str(regime.index(c) + 1) if len(regime) > 1 else "")
            else:
                c["id"] = f"{claim}{next(letters)}"
    return checks


# --------------------------------------------------------------------------- claim 1: accuracy


def accuracy_claims(teacher_evals: Sequence[dict], cfg: dict, split: str = default("accuracy_table.split")) -> list[dict]:
    """Claim 1 per teacher grid: accuracy(LS) − accuracy(hard) in percentage points, paired by seed.
    Primary: ``claims.ls_alpha``; descriptive: every other nonzero alpha of the grid."""
    statement = "label smoothing does not hurt top-1 accuracy: accuracy(LS) − accuracy(α = 0), paired by seed"
    grids: dict[tuple, dict[float, dict[int, dict]]] = defaultdict(lambda: defaultdict(dict))
    for ev in teacher_evals:
        m = ev["model"]
        grids[(m["dataset"], m["arch"])][float(m["alpha"])][int(m["seed"])] = ev
    out = []
    for (ds, arch), by_alpha in sorted(grids.items()):
        scope = f"{ds}/{arch}"
        ls = pick_ls_alpha(by_alpha, cfg["ls_alpha"])
        hard = next((a for a in by_alpha if _close(a, 0.0)), None)
        if ls is None or hard is None:
            out.append(not_run(1, scope, statement, "teachers[].alphas (alpha 0 and an LS alpha; claims.ls_alpha)"))
            continue
        others = [a for a in sorted(by_alpha) if a > 0 and not _close(a, ls)]
        for a, role in [(ls, PRIMARY)] + [(a, DESCRIPTIVE) for a in others]:
            h, s = by_alpha[hard], by_alpha[a]
            seeds = sorted(set(h) & set(s))
            acc_h = {k: 100.0 * h[k][split]["accuracy"] for k in seeds}
            acc_s = {k: 100.0 * s[k][split]["accuracy"] for k in seeds}
            used = [h[k] for k in seeds] + [s[k] for k in seeds]
            src = _sources(used, [f"{split}.accuracy", f"{split}.n"])
            label = f"LS α = {a:g}, {split} split"
            if not seeds:
                out.append(not_compared(1, scope, statement, "no seed has both models",
                                        f"teachers[].seeds ({sorted(h)} and {sorted(s)})", role, label, sources=src))
                continue
            numbers = {f"accuracy α=0 (%, {split})": _mean(acc_h.values()),
                       f"accuracy α={a:g} (%, {split})": _mean(acc_s.values()),
                       "test images (one image = resolution)": min(int(ev[split].get("n") or 0) for ev in used) or "?"}
            out.append(check(1, scope, statement, {k: acc_s[k] - acc_h[k] for k in seeds}, kind="at_least",
                             bound=cfg["accuracy_margin"], unit="pp", cfg=cfg, role=role, label=label,
                             resolution=_resolution(used, split), numbers=numbers, sources=src))
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


def calibration_claims(results: Sequence[dict], cfg: dict) -> list[dict]:
    """Claim 3 per teacher grid, from every teacher's calibration JSON (``lspipe calibrate``).

    alpha* = argmin over the nonzero alphas of the mean over seeds of the validation ECE (or NLL,
    ``claims.calibration_selection``) at T = 1. Primary: ECE_test(LS at alpha*) − ECE_test(hard,
    temperature scaled) < ``claims.ece_margin``, paired by seed. Descriptive: LS lowers the ECE and
    the NLL of hard targets at T = 1; in NLL, LS at alpha* is not worse than temperature scaling.
    Regime: the hard-target model's fitted T > 1 (a T on the edge of its search range is left out).
    """
    groups: dict[tuple, dict[float, dict[int, dict]]] = defaultdict(lambda: defaultdict(dict))
    for r in results:
        m = r["model"]
        if m.get("role", "teacher") == "teacher":
            groups[(m["dataset"], m["arch"])][float(m["alpha"])][int(m["seed"])] = r
    st_a = ("LS at α* (chosen on validation) is not worse calibrated than temperature scaling: "
            "ECE(LS α*) − ECE(α = 0, temperature scaled) < margin, paired by seed, test split")
    out = []
    if not groups:
        return [not_run(3, "all", st_a, "teachers[].alphas (alpha 0 and a nonzero alpha)")]
    metric = cfg["calibration_selection"]
    for (ds, arch), by_alpha in sorted(groups.items()):
        scope = f"{ds}/{arch}"
        nonzero = sorted(a for a in by_alpha if a > 0)
        if 0.0 not in by_alpha or not nonzero:
            out.append(not_run(3, scope, st_a, "teachers[].alphas (alpha 0 and a nonzero alpha)"))
            continue
        seeds = sorted(set.intersection(*(set(by_alpha[a]) for a in [0.0] + nonzero)))
        all_used = [r for a in by_alpha for r in by_alpha[a].values()]
        src = _sources(all_used, [f"val.{metric} (α* selection, T = 1)", "before.ece", "before.ece_floor",
                                  "after.ece", "after.ece_floor", "before.nll", "after.nll", "temperature",
                                  "fit.at_bound"])
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
        ece = {a: _mean(by_alpha[a][s]["before"]["ece"] for s in seeds) for a in [0.0] + nonzero}
        numbers = {
            f"validation {metric.upper()} at T = 1 by α (selects α*)": ", ".join(f"α={a:g}: {v:.4f}" for a, v in val.items()),
            "α*": star,
            "test ECE at T = 1 by α": ", ".join(f"α={a:g}: {v:.4f}" for a, v in ece.items()),
            f"test ECE α*={star:g}": _mean(s_[k]["before"]["ece"] for k in seeds),
            "test ECE α=0, temperature scaled": _mean(h[k]["after"]["ece"] for k in seeds),
            "test ECE α=0, T = 1": ece[0.0],
        }
        floors = {"LS α*": [s_[k]["before"].get("ece_floor") for k in seeds],
                  "α=0 temperature scaled": [h[k]["after"].get("ece_floor") for k in seeds],
                  "α=0 at T = 1": [h[k]["before"].get("ece_floor") for k in seeds]}
        n_test = h[seeds[0]]["before"].get("reliability", {}).get("n")
        if all(v is not None for f in floors.values() for v in f):
            numbers["ECE floor (expected ECE if perfectly calibrated, same N and confidences)"] = "; ".join(
                f"{k}: {_mean(v):.4f}" for k, v in floors.items()) + (f" (N = {n_test}, {h[seeds[0]]['bins']} bins)"
                                                                      if n_test else "")
        else:
            numbers["ECE floor"] = "n/a (calibration JSONs written before lspipe.experiments.calibration format 2; rerun calibrate)"
        numbers.update({
            f"test NLL α*={star:g}": _mean(s_[k]["before"]["nll"] for k in seeds),
            "test NLL α=0, temperature scaled": _mean(h[k]["after"]["nll"] for k in seeds),
            "test NLL α=0, T = 1": _mean(h[k]["before"]["nll"] for k in seeds),
        })
        at_bound = {(a, k): by_alpha[a][k]["temperature"] for a in by_alpha for k in by_alpha[a]
                    if (by_alpha[a][k].get("fit") or {}).get("at_bound")}
        notes = [f"α* chosen among the nonzero alphas {', '.join(f'{a:g}' for a in nonzero)} by the mean validation "
                 f"{metric.upper()} at T = 1 over seeds {seeds} (claims.calibration_selection), without test data; "
                 "temperature scaling gets one fitted T per model, LS one α per grid (conservative for LS)"]
        notes += [edge] if edge else []
        if at_bound:
            notes.append("temperatures at the edge of the search range (a bound, not a fitted value): " + ", ".join(
                f"α={a:g} s{k}: T = {t:.3g}" for (a, k), t in sorted(at_bound.items())))
        out.append(check(3, scope, st_a, {k: s_[k]["before"]["ece"] - h[k]["after"]["ece"] for k in seeds},
                         kind="at_most", bound=cfg["ece_margin"], unit="ECE", cfg=cfg, role=PRIMARY,
                         label=f"α* = {star:g}", numbers=numbers, notes=notes, sources=src))
        out.append(check(3, scope, "LS at α* lowers the ECE of hard targets at T = 1: ECE(α = 0) − ECE(LS α*) > 0, "
                         "paired by seed, test split", {k: h[k]["before"]["ece"] - s_[k]["before"]["ece"] for k in seeds},
                         kind="greater", bound=0.0, unit="ECE", cfg=cfg, label=f"α* = {star:g}",
                         numbers={k: v for k, v in numbers.items() if "ECE" in k}, sources=src))
        out.append(check(3, scope, "LS at α* lowers the NLL (a proper score) of hard targets at T = 1: "
                         "NLL(α = 0) − NLL(LS α*) > 0, paired by seed, test split",
                         {k: h[k]["before"]["nll"] - s_[k]["before"]["nll"] for k in seeds}, kind="greater",
                         bound=0.0, unit="nats", cfg=cfg, label=f"α* = {star:g}",
                         numbers={k: v for k, v in numbers.items() if "NLL" in k}, sources=src))
        out.append(check(3, scope, "in NLL (a proper score) LS at α* is better than temperature scaling: "
                         "NLL(LS α*) − NLL(α = 0, temperature scaled) < 0 (the paper states no NLL margin)",
                         {k: s_[k]["before"]["nll"] - h[k]["after"]["nll"] for k in seeds}, kind="at_most",
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
    forms, used = set(), []
    for ev in student_evals:
        m = ev["model"]
        if m["dataset"] != dataset:
            continue
        sarch = m["arch"]
        r = parse_student_run(m["run"])
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
    teacher: dict[float, dict[int, float]] = defaultdict(dict)
    teacher_used = []
    for ev in teacher_evals:  # the distilled teachers: their dataset, arch and the alphas of the gamma table
        m = ev["model"]
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
    all_seeds = [set(v) for v in kd_hard.values()] + [set(v) for v in kd_ls.values()]
    seeds = sorted(set.intersection(*all_seeds)) if all_seeds else []

    def in_range(talpha, temp):
        return bool(seeds) and all(at_gamma(s, gamma_of(talpha, s, temp)) is not None for s in seeds)

    temps_in = [t for t in sorted(kd_hard) if in_range(0.0, t)]
    ls_in = [a for a in sorted(kd_ls) if in_range(a, 1.0)]
    temps_out = [t for t in sorted(kd_hard) if t not in temps_in]
    ls_out = [a for a in sorted(kd_ls) if a not in ls_in]
    gam = {f"γ of the α = 0 teacher at T = {t:g} (mean over seeds)": _mean(g for s in seeds if (g := gamma_of(0.0, s, t)) is not None)
           for t in sorted(kd_hard)}
    gam.update({f"γ of the LS teacher α = {a:g} at T = 1": _mean(g for s in seeds if (g := gamma_of(a, s, 1.0)) is not None)
                for a in sorted(kd_ls)})
    range_nums = {"baseline alphas": ", ".join(f"{a:g}" for a in base_alphas),
                  "in-range temperatures": ", ".join(f"{t:g}" for t in temps_in) or "none",
                  "in-range LS teachers": ", ".join(f"{a:g}" for a in ls_in) or "none", **gam}
    notes = [form_note, interp_note]
    if temps_out or ls_out:
        notes.append("left out (γ outside the baseline alphas' range in some seed, or no baseline of a seed): "
                     + ", ".join([f"T = {t:g}" for t in temps_out] + [f"LS teacher α = {a:g}" for a in ls_out]))
    if not kd_hard or not kd_ls:
        key = "distillation[].temperatures" if not kd_hard else "distillation[].teacher_alphas (a nonzero alpha)"
        out.append(not_run(4, scope, st_a, key))
    elif not temps_in or not ls_in:
        out.append(not_compared(4, scope, st_a, "no " + ("temperature" if not temps_in else "LS teacher") +
                                " whose γ lies inside the baseline alphas' range in every seed", range_key,
                                numbers=range_nums, notes=notes, sources=src))
    else:
        values = {}
        for s in seeds:
            hard = np.mean([kd_hard[t][s] - at_gamma(s, gamma_of(0.0, s, t)) for t in temps_in])
            soft = np.mean([kd_ls[a][s] - at_gamma(s, gamma_of(a, s, 1.0)) for a in ls_in])
            values[s] = float(hard - soft)
        out.append(check(4, scope, st_a, values, kind="greater", bound=0.0, unit="pp", cfg=cfg, role=PRIMARY,
                         resolution=res, numbers=range_nums, notes=notes, sources=src))

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
                         resolution=res, numbers=nums, sources=src))
    st_c = ("students of LS teachers at T = 1 are no better than the student baseline at the same γ: "
            "acc(student) − baseline(γ) < margin")
    for a in sorted(kd_ls):
        values, gammas = versus_baseline(kd_ls[a], a, 1.0)
        nums = {"γ (mean over seeds)": _mean(gammas), "student accuracy (%)": _mean(kd_ls[a].values())}
        label = f"teacher α = {a:g}"
        if not values:
            out.append(not_compared(4, scope, st_c, "γ outside the baseline alphas' range in every seed", range_key,
                                    DESCRIPTIVE, label, numbers=nums, sources=src))
            continue
        out.append(check(4, scope, st_c, values, kind="at_most", bound=cfg["accuracy_margin"], unit="pp", cfg=cfg,
                         label=label, resolution=res, numbers=nums, sources=src))
    return out


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
                 "log 2 ≈ 0.693 nats: only the class is distinguishable"]
        seeds = sorted(set(by_alpha[0.0]) & set(by_alpha[ls]))

        def fall(a, s):
            return shape[(a, s)]["peak"] - shape[(a, s)]["late"]

        out.append(check(5, scope, st_a, {s: fall(ls, s) - fall(0.0, s) for s in seeds}, kind="greater", bound=margin,
                         unit="nats", cfg=cfg, role=PRIMARY, label=f"LS α = {ls:g}", numbers=nums, notes=notes,
                         sources=src))
        out.append(check(5, scope, st_b, {s: min(shape[(ls, s)]["peak"] - shape[(ls, s)]["first"], fall(ls, s))
                                          for s in sorted(by_alpha[ls])}, kind="greater", bound=margin, unit="nats",
                         cfg=cfg, label=f"LS α = {ls:g}", numbers=nums, sources=src))
        out.append(check(5, scope, st_c, {s: shape[(0.0, s)]["late"] - shape[(ls, s)]["late"] for s in seeds},
                         kind="greater", bound=margin, unit="nats", cfg=cfg, label=f"LS α = {ls:g}", numbers=nums,
                         sources=src))
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
            "settings": dict(config.get("claims", {})),
            "accuracy_split": config["accuracy_table"]["split"],
            "fig1_ls_alpha": config["projections"]["ls_alpha"],
            "fig1_rows": len(config["projections"]["rows"]),
            "distillation_split": {d: e["split"] for d, e in distillation.entries.items()},
        }

    def targets(self) -> list[str]:
        p = self._plan.paths
        return ([p.report("claims.md"), p.report("claims.json"), p.report("claims.rst")]
                + ([p.table("tightness.csv")] if self.tightness_models else []))


# --------------------------------------------------------------------------- the report


def summarise(checks: Sequence[dict]) -> list[dict]:
    """One entry per (claim, scope): the verdict is the primary check's; descriptive and regime
    checks are listed with their own verdicts."""
    groups: dict[tuple[int, str], list[dict]] = defaultdict(list)
    for c in checks:
        groups[(c["claim"], c["scope"])].append(c)
    out = []
    for (claim, scope), cs in sorted(groups.items()):
        prim = next((c for c in cs if c["role"] == PRIMARY), None)
        out.append({"claim": claim, "title": CLAIM_TITLES[claim], "scope": scope,
                    "verdict": prim["verdict"] if prim else NOT_RUN, "primary": prim["id"] if prim else None,
                    "descriptive": [{"id": c["id"], "verdict": c["verdict"]} for c in cs if c["role"] == DESCRIPTIVE],
                    "regime": [{"id": c["id"], "verdict": c["verdict"]} for c in cs if c["role"] == REGIME]})
    return out


def _num(x) -> str:
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


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


def decision_rule_text(cfg: dict) -> list[str]:
    level = 100 * (1 - cfg["confidence"]) / 2
    return [
        "Each claim has one primary check, fixed in advance: its verdict is the claim's. Descriptive checks have "
        "their own verdicts and cannot change the claim's (multiplicity policy: primary only, so no correction is "
        "applied; read descriptive verdicts as exploratory). Regime checks test a precondition of the paper's "
        "argument and are shown beside the claim, outside its verdict.",
        f"Each check compares one effect per seed (paired by seed where runs are paired) with a bound. With n seeds "
        f"the {100 * cfg['confidence']:g} % interval of the mean effect is mean ± t(n−1) · sd / √n (claims.confidence); "
        f"each end of it is a one-sided test at level {level:g} %.",
        "Zero-variance guard: the sd used is max(sample sd, resolution / 2), the resolution being the smallest step a "
        "per-seed effect can take (one test image, 100 / N percentage points, for accuracy effects; 0 for continuous "
        "effects): identical values on a grid of step h are consistent with any spread up to h / 2, so they never give "
        "a zero-width interval; a continuous effect with zero spread gives no interval (inconclusive).",
        f"supported: at least {cfg['min_seeds']} seeds (claims.min_seeds) and the whole interval strictly on the "
        f"claimed side of the bound (\"greater than\" checks also need every seed's effect there); contradicted: at "
        f"least {cfg['min_seeds']} seeds and the whole interval strictly beyond the bound; inconclusive: otherwise "
        f"(fewer seeds, an interval that touches or straddles a bound); not compared: runs exist but none can be "
        f"compared (the config key that would make them comparable is named); not run: the configuration does not "
        f"run the experiment (the key is named).",
        "Each check states the smallest effect its seeds could decide (the interval's half-width w: a mean effect "
        "must lie beyond bound ± w) and the seeds a decision would need at the observed spread (a margin check: to "
        "decide a true effect of 0; otherwise: to decide the observed mean). A margin check whose half-width exceeds "
        "its margin is undecidable for an effect near 0 at that seed count, and says so.",
        f"1 Accuracy, primary: accuracy(LS at claims.ls_alpha) − accuracy(α = 0), percentage points, paired by seed, "
        f"interval above −{cfg['accuracy_margin']:g} (claims.accuracy_margin). Descriptive: every other nonzero α of "
        f"the grid.",
        f"2 Representations: the tightness ratio of three classes projected onto their template plane (as Fig. 1) is "
        f"the mean over the classes of the mean distance of a class's points to their centroid, divided by the mean "
        f"pairwise distance between the three projected templates, with every example of the classes (smaller = "
        f"tighter). Primary: ratio(α = 0) − ratio(LS), averaged over every class triple when there are at most "
        f"{cfg['tightness_triples']} (claims.tightness_triples; else that many seeded random triples, "
        f"claims.tightness_seed), on the {cfg['tightness_split']} split (claims.tightness_split), above 0, paired by "
        f"seed. Descriptive: the same on the other split (training and validation examples are both checked) and each "
        f"Fig. 1 row (LS = projections.ls_alpha). ratio_LS / ratio_hard is printed.",
        f"3 Calibration, primary (one-sided non-inferiority): α* is the nonzero α of the grid with the lowest mean "
        f"validation {cfg['calibration_selection'].upper()} at T = 1 (claims.calibration_selection; test data are not "
        f"looked at); ECE_test(LS at α*) − ECE_test(α = 0 after temperature scaling), paired by seed, interval below "
        f"{cfg['ece_margin']:g} (claims.ece_margin; the paper's own results pass it: the largest LS − temperature "
        f"scaling gap in its Table 3 is 0.013 (ImageNet), 0.014 in a public CIFAR-100 re-implementation). The ECE floor "
        f"(the expected ECE of a perfectly calibrated model with the same test N and confidences, computed exactly) is "
        f"reported beside every ECE; α* on the grid's edge and temperatures on the edge of their search range "
        f"[0.01, 100] are flagged. Descriptive: LS at α* lowers the ECE and the NLL of α = 0 at T = 1; in NLL it beats "
        f"temperature scaling. Regime: the hard-target model's T > 1 (a T on the edge of the search range is a bound, "
        f"left out).",
        f"4 Distillation, primary: per seed, the mean over the temperatures whose γ lies inside the baseline alphas' "
        f"range in every seed of [accuracy of the α = 0 teacher's student at T − baseline(γ)] minus the mean over the "
        f"LS teachers in range of [accuracy of the LS teacher's student at T = 1 − baseline(γ)], above 0; baseline(γ) "
        f"is the same seed's student-baseline curve linearly interpolated at γ (no extrapolation; its error is "
        f"estimated leave-one-out). Descriptive: each T (above 0) and each LS teacher (below +"
        f"{cfg['accuracy_margin']:g}, claims.accuracy_margin). Regime: teacher accuracy rises with α (least-squares "
        f"slope per seed above 0). The loss form and its departure from the slides' equation are named.",
        f"5 Erasure, primary: (peak − late) MI with LS (claims.ls_alpha) minus (peak − late) with α = 0, paired by "
        f"seed, above the MI margin; peak is the highest 3-record running mean, late the mean of the last fifth of the "
        f"records; the margin is {cfg['mi_noise_multiple']:g} (claims.mi_noise_multiple) × the measured sd of one MI "
        f"estimate (from two independent augmentation draws at every recorded step). Descriptive: with LS the MI "
        f"rises then falls (min(peak − first, peak − late) above the margin); late MI(α = 0) − MI(LS) above the "
        f"margin.",
    ]


def _check_lines(c: dict) -> list[str]:
    head = f"#### {c['id']} ({c['role']}){': ' + c['label'] if c['label'] else ''} — **{c['verdict']}**"
    lines = [head, "", f"- Claim: {c['statement']}."]
    if c["verdict"] in (NOT_RUN, NOT_COMPARED):
        lines.append(f"- {c['verdict'].capitalize()}: {c['reason']}.")
    else:
        lines += [f"- Effect: {effect_text(c)}.", f"- Rule: {c['rule']}.", f"- Reason: {c['reason']}."]
        if c["decidable"] and c["decidable"]["text"]:
            lines.append(f"- Decidable: {c['decidable']['text']}.")
    if c["numbers"]:
        lines.append("- Numbers: " + "; ".join(f"{k}: {_num(v)}" for k, v in c["numbers"].items()) + ".")
    lines += [f"- Note: {n}." for n in c["notes"]]
    lines += [f"- Sources: {sources_text(c.get('sources'))}.", ""]
    return lines


def _brief(items: list[dict]) -> str:
    return ", ".join(f"{d['id']} {d['verdict']}" for d in items) or "—"


def render_markdown(checks: Sequence[dict], cfg: dict) -> str:
    summary = summarise(checks)
    lines = ["# Did this run reproduce the paper?", "",
             "Claims of Müller, Kornblith & Hinton, *When Does Label Smoothing Help?* (NeurIPS 2019), "
             "checked on this run's outputs. A claim's verdict is its primary check's; descriptive and regime "
             "checks are shown with their own verdicts.", "", "## Summary", "",
             "| claim | scope | verdict (primary check) | descriptive checks | regime checks |", "|---|---|---|---|---|"]
    lines += [f"| {s['claim']}. {s['title']} | {s['scope']} | **{s['verdict']}** ({s['primary'] or '—'}) | "
              f"{_brief(s['descriptive'])} | {_brief(s['regime'])} |" for s in summary]
    lines += ["", "## Decision rule", ""] + [f"- {t}" for t in decision_rule_text(cfg)] + [""]
    for claim in sorted({c["claim"] for c in checks}):
        lines += [f"## {claim}. {CLAIM_TITLES[claim]}", ""]
        for s in (s for s in summary if s["claim"] == claim):
            lines += [f"### {s['scope']}: **{s['verdict']}** (primary check {s['primary'] or '—'})", ""]
            order = {PRIMARY: 0, DESCRIPTIVE: 1, REGIME: 2}
            for c in sorted((c for c in checks if c["claim"] == claim and c["scope"] == s["scope"]),
                            key=lambda c: (order[c["role"]], c["id"])):
                lines += _check_lines(c)
    return "\n".join(lines) + "\n"


def _rst_escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace("*", "\\*").replace("|", "\\|").replace("`", "\\`").replace("_ ", "\\_ ")


def render_rst(checks: Sequence[dict], cfg: dict) -> str:
    """The same report as reStructuredText (for the Snakemake report's first page)."""
    e = _rst_escape
    lines = ["Did this run reproduce the paper?", "---------------------------------", ""]
    for s in summarise(checks):
        lines.append(f"* **{s['verdict']}** (primary check {s['primary'] or '-'}): {s['claim']}. {e(s['title'])}, "
                     f"{e(s['scope'])}; descriptive: {e(_brief(s['descriptive']))}; regime: {e(_brief(s['regime']))}")
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
    return "\n".join(lines) + "\n"


def build_checks(*, evals: Sequence[dict] = (), calibrations: Sequence[dict] = (), tightness: Sequence[dict] = (),
                 gamma: dict[str, dict] | None = None, mi_curves: Sequence[dict] = (), cfg: dict,
                 accuracy_split: str = default("accuracy_table.split"), fig1_ls_alpha: float | None = None,
                 has_fig1_rows: bool = False,
                 distillation_splits: dict[str, str] | None = None, gamma_paths: dict[str, str] | None = None,
                 twins: dict[str, dict[str, str]] | None = None) -> list[dict]:
    """Every check of the report. ``gamma`` maps a distillation dataset to its gamma table; ``twins``
    a dataset to {student baseline run: eval path of the teacher it was trained as}."""
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
    return _assign_ids(checks)


def write_report(checks: Sequence[dict], cfg: dict, md_path, json_path, rst_path=None) -> None:
    write_json(json_path, {"settings": cfg, "decision_rule": decision_rule_text(cfg), "summary": summarise(checks),
                           "checks": list(checks)})
    write_text(md_path, render_markdown(checks, cfg))
    if rst_path:
        write_text(rst_path, render_rst(checks, cfg))


# --------------------------------------------------------------------------- reading the inputs


def _read_mi_curve(path: str | Path) -> list[dict]:
    """Per-seed MI curve CSV at ``<results>/mi/<dataset>/<arch>/a<alpha>_s<seed>.csv``; the dataset
    and arch come from the path."""
    p = Path(path)
    rows = read_csv(p)
    for r in rows:
        r.setdefault("dataset", p.parent.parent.name)
        r.setdefault("arch", p.parent.name)
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
            "mi_curves": glob("mi/*/*/*.csv")}


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
            students[m["dataset"]].append((parse_student_run(m["run"]), ev.get("_path")))
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
