"""The claims report: did this run reproduce "When Does Label Smoothing Help?"?

Pure functions over outputs the workflow has already written (evaluation JSONs, calibration
JSONs, the Fig. 5 smoothness-index CSVs, the per-seed Fig. 6 MI curves and the tightness table
computed here from the activation dumps) that turn each claim of the paper into numbers, an
effect size with its spread over seeds, and a verdict:

1. accuracy: label smoothing (LS) does not hurt top-1 accuracy (Table 2);
2. representations: LS tightens each class's cluster relative to the distance between the
   class templates (Fig. 1), measured by the *tightness ratio* (:func:`tightness`);
3. calibration: LS lowers the ECE of hard targets at T = 1, temperature scaling of the
   hard-target model finds T > 1, and LS reaches an ECE comparable to temperature scaling (Table 3);
4. distillation: teacher accuracy rises with alpha, students of the hard-target teacher beat the
   student baseline (interpolated at the same gamma), students of LS teachers at T = 1 are no
   better than the baseline, hence the best student has a hard-target teacher (Fig. 5);
5. erasure of information: the MI rises then falls, and late in training it is lower with LS (Fig. 6).

Decision rule (:func:`decide`). Every check compares one *effect* per seed (paired by seed where
the runs are paired: same seed, different alpha or teacher) with a bound: ``greater`` (effect > t,
and in every seed), ``at_least`` (effect > -margin: "does not hurt"), ``at_most`` (effect <
margin: "no better than") or ``within`` (|effect| < margin: "comparable"). With n seeds the
two-sided ``confidence`` interval of the mean effect is ``mean ± t_{n-1} * sd / sqrt(n)``
(Student t, sample sd). The check is

* ``supported`` when n >= ``min_seeds`` and the whole interval lies on the claimed side of the
  bound(s) (for ``greater`` also every seed's effect);
* ``contradicted`` when n >= ``min_seeds`` and the whole interval lies beyond a bound;
* ``inconclusive`` otherwise (fewer seeds, or an interval that straddles a bound);
* ``not run`` when the configuration does not run the experiment (the report names the key).

A claim's verdict per dataset/arch combines its checks: ``contradicted`` if any check is,
``supported`` if all are, ``not run`` if none ran, else ``inconclusive``.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .io import read_json, write_json, write_text

SUPPORTED, CONTRADICTED, INCONCLUSIVE, NOT_RUN = "supported", "contradicted", "inconclusive", "not run"
VERDICTS = (SUPPORTED, CONTRADICTED, INCONCLUSIVE, NOT_RUN)
NO_SPREAD = "1 seed: no spread"

DEFAULTS = {
    "ls_alpha": None, "min_seeds": 3, "confidence": 0.95, "accuracy_margin": 0.5, "ece_margin": 0.01,
    "mi_margin": 0.05, "tightness_triples": 100, "tightness_seed": 0, "tightness_split": "val",
}

CLAIM_TITLES = {
    1: "Accuracy: label smoothing does not hurt top-1 accuracy (Table 2)",
    2: "Representations: label smoothing tightens each class's cluster relative to the template distances (Fig. 1)",
    3: "Calibration: label smoothing calibrates about as well as temperature scaling (Table 3, Fig. 2)",
    4: "Distillation: the best student comes from a hard-target teacher (Fig. 5)",
    5: "Erasure of information: MI rises then falls, and ends lower with label smoothing (Fig. 6)",
}


def settings(overrides: dict | None = None) -> dict:
    """The decision settings: :data:`DEFAULTS` updated with ``overrides`` (the config's ``claims``)."""
    out = dict(DEFAULTS)
    out.update({k: v for k, v in (overrides or {}).items()})
    return out


# --------------------------------------------------------------------------- statistics and verdicts


def effect_stats(values: dict[int, float], confidence: float = 0.95) -> dict:
    """Mean, sample sd and t confidence interval of per-seed effects (``None`` where undefined)."""
    seeds = sorted(values)
    v = np.array([values[s] for s in seeds], dtype=float)
    n = len(v)
    out = {"n": n, "seeds": seeds, "values": [float(x) for x in v], "mean": float(v.mean()) if n else None,
           "std": None, "ci": None, "confidence": confidence}
    if n >= 2:
        from scipy.stats import t as student_t

        sd = float(v.std(ddof=1))
        half = float(student_t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
        out.update(std=sd, ci=[out["mean"] - half, out["mean"] + half])
    return out


def decide(stats: dict, kind: str, bound: float, min_seeds: int) -> tuple[str, str]:
    """Verdict and reason of one check (see the module docstring for the rule).

    ``kind``: ``greater`` (effect > bound in every seed and CI above bound), ``at_least`` (CI above
    -bound), ``at_most`` (CI below +bound), ``within`` (CI inside (-bound, +bound)).
    """
    lo_b, hi_b = {"greater": (bound, None), "at_least": (-bound, None), "at_most": (None, bound),
                  "within": (-bound, bound)}[kind]
    n, mean = stats["n"], stats["mean"]
    if n == 0:
        return INCONCLUSIVE, "no comparable runs"

    def on_side(x):
        return (lo_b is None or x > lo_b) and (hi_b is None or x < hi_b)

    if n < min_seeds or stats["ci"] is None:
        side = "inside" if on_side(mean) else "outside"
        spread = NO_SPREAD if n == 1 else f"{n} seeds"
        return INCONCLUSIVE, (f"{spread}, fewer than claims.min_seeds = {min_seeds}; the observed mean effect lies "
                              f"{side} the claimed range")
    lo, hi = stats["ci"]
    pct = f"{100 * stats['confidence']:g}%"
    if (lo_b is not None and hi < lo_b) or (hi_b is not None and lo > hi_b):
        return CONTRADICTED, f"the {pct} interval [{lo:.4g}, {hi:.4g}] lies beyond the claimed bound"
    inside = (lo_b is None or lo > lo_b) and (hi_b is None or hi < hi_b)
    if inside and kind == "greater" and not all(x > bound for x in stats["values"]):
        return INCONCLUSIVE, "the interval is on the claimed side, but not every seed's effect is"
    if inside:
        return SUPPORTED, f"the {pct} interval [{lo:.4g}, {hi:.4g}] lies inside the claimed range"
    return INCONCLUSIVE, f"the {pct} interval [{lo:.4g}, {hi:.4g}] straddles a bound of the claimed range"


RULE_TEXT = {
    "greater": "effect > {b:g} in every seed and its interval above {b:g}",
    "at_least": "interval above −{b:g} (\"does not hurt\" margin)",
    "at_most": "interval below +{b:g} (\"no better than\" margin)",
    "within": "interval inside ±{b:g} (\"comparable\" margin)",
}


def check(claim: int, scope: str, statement: str, values: dict[int, float], *, kind: str, bound: float,
          unit: str, cfg: dict, numbers: dict | None = None, notes: Sequence[str] = ()) -> dict:
    """One check: the per-seed effects, their statistics and the verdict."""
    stats = effect_stats(values, cfg["confidence"])
    verdict, reason = decide(stats, kind, bound, cfg["min_seeds"])
    return {"claim": claim, "scope": scope, "statement": statement, "verdict": verdict, "reason": reason,
            "rule": RULE_TEXT[kind].format(b=bound), "kind": kind, "bound": bound, "unit": unit, "effect": stats,
            "numbers": numbers or {}, "notes": list(notes)}


def not_run(claim: int, scope: str, statement: str, key: str) -> dict:
    return {"claim": claim, "scope": scope, "statement": statement, "verdict": NOT_RUN,
            "reason": f"the configuration does not run this experiment; set {key} to run it", "config_key": key,
            "rule": "", "kind": None, "bound": None, "unit": "", "effect": None, "numbers": {}, "notes": []}


def combine(verdicts: Iterable[str]) -> str:
    v = [x for x in verdicts if x != NOT_RUN]
    if not v:
        return NOT_RUN
    if CONTRADICTED in v:
        return CONTRADICTED
    return SUPPORTED if all(x == SUPPORTED for x in v) else INCONCLUSIVE


def pick_ls_alpha(alphas: Iterable[float], wanted: float | None) -> float | None:
    """The label-smoothed alpha compared: ``wanted`` if present, else (``wanted`` None) the smallest nonzero."""
    alphas = sorted({float(a) for a in alphas})
    if wanted is not None:
        return float(wanted) if any(math.isclose(a, float(wanted)) for a in alphas) else None
    nonzero = [a for a in alphas if a > 0]
    return nonzero[0] if nonzero else None


def _close(a, b) -> bool:
    return math.isclose(float(a), float(b), abs_tol=1e-12)


# --------------------------------------------------------------------------- claim 1: accuracy


def accuracy_claims(teacher_evals: Sequence[dict], cfg: dict, split: str = "test") -> list[dict]:
    """Claim 1 per teacher grid: accuracy(LS) − accuracy(hard) in percentage points, paired by seed."""
    statement = "label smoothing does not hurt top-1 accuracy (paired by seed: LS − hard targets)"
    grids: dict[tuple, dict[float, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    for ev in teacher_evals:
        m = ev["model"]
        grids[(m["dataset"], m["arch"])][float(m["alpha"])][int(m["seed"])] = 100.0 * ev[split]["accuracy"]
    out = []
    for (ds, arch), by_alpha in sorted(grids.items()):
        scope = f"{ds}/{arch}"
        ls = pick_ls_alpha(by_alpha, cfg["ls_alpha"])
        hard = next((a for a in by_alpha if _close(a, 0.0)), None)
        if ls is None or hard is None:
            out.append(not_run(1, scope, statement, "teachers[].alphas (alpha 0 and an LS alpha; claims.ls_alpha)"))
            continue
        h, s = by_alpha[hard], by_alpha[ls]
        seeds = sorted(set(h) & set(s))
        values = {k: s[k] - h[k] for k in seeds}
        numbers = {f"accuracy α=0 (%, {split})": _mean([h[k] for k in seeds]),
                   f"accuracy α={ls:g} (%, {split})": _mean([s[k] for k in seeds])}
        out.append(check(1, scope, f"{statement}; LS α = {ls:g}, {split} split", values, kind="at_least",
                         bound=cfg["accuracy_margin"], unit="pp", cfg=cfg, numbers=numbers))
    if not out:
        out.append(not_run(1, "all", statement, "teachers"))
    return out


def _mean(v):
    return float(np.mean(v)) if len(v) else None


# --------------------------------------------------------------------------- claim 2: tightness


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


def tightness_rows(dump_paths: Sequence[str | Path], fig1_rows: Sequence[dict], *, triples: int = 100,
                   seed: int = 0, split: str = "val") -> list[dict]:
    """Tightness of every dump: each Fig. 1 row of its dataset/arch (kind ``fig1``) and ``triples``
    class triples (kind ``random``, the same triples for every dump of a dataset), on ``split``,
    with every example of the three classes in that split."""
    from .activations import Dump
    from .projection import panel

    rows = []
    for path in dump_paths:
        d = Dump(path)
        ds, arch = d.meta("dataset"), d.meta("arch")
        base = {"dataset": ds, "arch": arch, "alpha": float(d.meta("alpha")), "seed": int(d.meta("seed")),
                "run": d.meta("run"), "split": split}
        todo = [("fig1", i, list(r["classes"])) for i, r in enumerate(fig1_rows)
                if r["dataset"] == ds and r["arch"] == arch]
        todo += [("random", i, [d.classes[c] for c in tri])
                 for i, tri in enumerate(class_triples(len(d.classes), triples, seed))]
        for kind, i, names in todo:
            p = panel(d, names, split, per_class=10**12, seed=0, where=f"projections.rows[{i}]")
            t = tightness(p.points, p.labels, p.templates)
            rows.append({**base, "kind": kind, "row": i, "classes": "|".join(names), "n": int(len(p.labels)),
                         "spread_0": t["spreads"][0], "spread_1": t["spreads"][1], "spread_2": t["spreads"][2],
                         "template_distance": t["template_distance"], "ratio": t["ratio"]})
    return rows


def read_csv(path: str | Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def tightness_claims(rows: Sequence[dict], cfg: dict, fig1_ls_alpha: float | None, has_fig1_rows: bool) -> list[dict]:
    """Claim 2: ratio(hard) − ratio(LS) > 0, paired by seed, per Fig. 1 row and averaged over random triples."""
    statement = "label smoothing tightens the clusters: tightness ratio (hard) − (LS) > 0, paired by seed"
    by: dict[tuple, dict] = defaultdict(lambda: defaultdict(dict))  # (ds, arch, kind, row) -> alpha -> seed -> row
    grids: dict[tuple, set] = defaultdict(set)
    for r in rows:
        a, s = float(r["alpha"]), int(r["seed"])
        by[(r["dataset"], r["arch"], r["kind"], int(r["row"]))][a][s] = r
        grids[(r["dataset"], r["arch"])].add(a)
    out = []
    fig1_keys = sorted(k for k in by if k[2] == "fig1")
    if not has_fig1_rows:
        out.append(not_run(2, "Fig. 1 rows", statement, "projections.rows"))
    for key in fig1_keys:
        ds, arch, _, i = key
        ls = pick_ls_alpha(by[key], fig1_ls_alpha)
        if ls is None or 0.0 not in by[key]:
            out.append(not_run(2, f"{ds}/{arch} Fig. 1 row {i}", statement, "projections.ls_alpha"))
            continue
        h, s = by[key][0.0], by[key][ls]
        seeds = sorted(set(h) & set(s))
        classes = h[seeds[0]]["classes"].replace("|", ", ")
        values = {k: float(h[k]["ratio"]) - float(s[k]["ratio"]) for k in seeds}
        numbers = {"ratio α=0": _mean([float(h[k]["ratio"]) for k in seeds]),
                   f"ratio α={ls:g}": _mean([float(s[k]["ratio"]) for k in seeds])}
        out.append(check(2, f"{ds}/{arch} Fig. 1 row {i} ({classes})", f"{statement}; LS α = {ls:g}", values,
                         kind="greater", bound=0.0, unit="ratio", cfg=cfg, numbers=numbers))
    for (ds, arch), alphas in sorted(grids.items()):
        keys = sorted(k for k in by if k[:3] == (ds, arch, "random"))
        ls = pick_ls_alpha(alphas, cfg["ls_alpha"])
        if not keys or ls is None or 0.0 not in alphas:
            out.append(not_run(2, f"{ds}/{arch} random triples", statement,
                               "teachers[].alphas (alpha 0 and an LS alpha; claims.ls_alpha) and claims.tightness_triples"))
            continue
        diffs: dict[int, list[float]] = defaultdict(list)
        ratios: dict[str, list[float]] = defaultdict(list)
        for k in keys:
            h, s = by[k].get(0.0, {}), by[k].get(ls, {})
            for seed in set(h) & set(s):
                diffs[seed].append(float(h[seed]["ratio"]) - float(s[seed]["ratio"]))
                ratios["h"].append(float(h[seed]["ratio"]))
                ratios["s"].append(float(s[seed]["ratio"]))
        if not diffs:
            out.append(not_run(2, f"{ds}/{arch} random triples", statement, "claims.ls_alpha"))
            continue
        values = {seed: float(np.mean(v)) for seed, v in diffs.items()}
        tighter = float(np.mean([x > 0 for v in diffs.values() for x in v]))
        numbers = {"triples": len(keys), "mean ratio α=0": _mean(ratios["h"]), f"mean ratio α={ls:g}": _mean(ratios["s"]),
                   "fraction of (triple, seed) pairs tighter with LS": tighter}
        out.append(check(2, f"{ds}/{arch} {len(keys)} class triples", f"{statement} (mean over triples); LS α = {ls:g}",
                         values, kind="greater", bound=0.0, unit="ratio", cfg=cfg, numbers=numbers))
    return out


# --------------------------------------------------------------------------- claim 3: calibration


def calibration_claims(results: Sequence[dict], cfg: dict, ls_alpha: float | None) -> list[dict]:
    """Claim 3 per Table 3 grid, from per-model calibration JSONs (``lspipe calibrate``)."""
    groups: dict[tuple, dict[float, dict[int, dict]]] = defaultdict(lambda: defaultdict(dict))
    for r in results:
        m = r["model"]
        if m.get("role", "teacher") == "teacher":
            groups[(m["dataset"], m["arch"])][float(m["alpha"])][int(m["seed"])] = r
    out = []
    if not groups:
        key = "teachers[].alphas (alpha 0 and calibration.ls_alpha)"
        for st in ("LS lowers the ECE of hard targets at T = 1", "temperature scaling of the hard-target model finds T > 1",
                   "LS reaches an ECE comparable to temperature scaling"):
            out.append(not_run(3, "all", st, key))
        return out
    for (ds, arch), by_alpha in sorted(groups.items()):
        scope = f"{ds}/{arch}"
        ls = pick_ls_alpha(by_alpha, ls_alpha)
        if ls is None or 0.0 not in by_alpha:
            out.append(not_run(3, scope, "calibration", "teachers[].alphas (alpha 0 and calibration.ls_alpha)"))
            continue
        h, s = by_alpha[0.0], by_alpha[ls]
        seeds = sorted(set(h) & set(s))
        split = h[seeds[0]]["split"] if seeds else "test"
        ece_h = {k: h[k]["before"]["ece"] for k in seeds}
        ece_ts = {k: h[k]["after"]["ece"] for k in seeds}
        ece_ls = {k: s[k]["before"]["ece"] for k in seeds}
        temps = {k: float(v["temperature"]) for k, v in h.items()}
        nums = {f"ECE α=0, T=1 ({split})": _mean(list(ece_h.values())),
                "ECE α=0, temperature scaled": _mean(list(ece_ts.values())),
                f"ECE α={ls:g}": _mean(list(ece_ls.values())), "T (fitted on val)": _mean(list(temps.values()))}
        out.append(check(3, scope, f"LS (α = {ls:g}) lowers the ECE of hard targets at T = 1: ECE(hard) − ECE(LS) > 0, "
                         "paired by seed", {k: ece_h[k] - ece_ls[k] for k in seeds}, kind="greater", bound=0.0,
                         unit="ECE", cfg=cfg, numbers=nums))
        out.append(check(3, scope, "temperature scaling of the hard-target model finds T > 1: T − 1 > 0",
                         {k: t - 1.0 for k, t in temps.items()}, kind="greater", bound=0.0, unit="T", cfg=cfg,
                         numbers={"T (fitted on val)": nums["T (fitted on val)"]}))
        out.append(check(3, scope, f"LS (α = {ls:g}) reaches an ECE comparable to temperature scaling: "
                         "ECE(LS) − ECE(hard, temperature scaled), paired by seed",
                         {k: ece_ls[k] - ece_ts[k] for k in seeds}, kind="within", bound=cfg["ece_margin"],
                         unit="ECE", cfg=cfg, numbers=nums))
    return out


# --------------------------------------------------------------------------- claim 4: distillation


def interpolate_baseline(points: dict[float, float], gamma: float) -> float | None:
    """The student-baseline accuracy curve (alpha -> accuracy, one seed) linearly interpolated at
    ``gamma``; ``None`` outside the alphas' range (no extrapolation)."""
    xs = sorted(points)
    if not xs or gamma < xs[0] - 1e-12 or gamma > xs[-1] + 1e-12:
        return None
    return float(np.interp(gamma, xs, [points[x] for x in xs]))


def distillation_claims(dataset: str, teacher_evals: Sequence[dict], student_evals: Sequence[dict],
                        gamma: dict[tuple[str, int, str], float], cfg: dict, split: str = "test") -> list[dict]:
    """Claim 4 for one ``distillation`` entry (its dataset), per seed (student seed s learns from teacher s).

    ``gamma`` maps ``(teacher alpha, seed, T)`` (canonical number strings, :func:`lspipe.distill.read_gamma_table`)
    to the teacher's smoothness index.
    """
    from .distill import fmt, parse_student_run

    teacher_alphas = sorted({float(a) for a, _, _ in gamma})
    tarch = None
    baseline: dict[int, dict[float, float]] = defaultdict(dict)
    kd_hard: dict[float, dict[int, float]] = defaultdict(dict)
    kd_ls: dict[float, dict[int, float]] = defaultdict(dict)
    sarch = None
    for ev in student_evals:
        m = ev["model"]
        if m["dataset"] != dataset:
            continue
        sarch = m["arch"]
        r = parse_student_run(m["run"])
        acc = 100.0 * ev[split]["accuracy"]
        if not r.distilled:
            baseline[r.seed][r.alpha] = acc
        elif r.teacher_alpha == 0.0:
            tarch = r.teacher_arch
            kd_hard[r.temperature][r.seed] = acc
        else:
            tarch = r.teacher_arch
            kd_ls[r.teacher_alpha][r.seed] = acc
    teacher: dict[float, dict[int, float]] = defaultdict(dict)
    for ev in teacher_evals:  # the distilled teachers: their dataset, arch and the alphas of the gamma table
        m = ev["model"]
        if m["dataset"] == dataset and m["arch"] == tarch and any(_close(m["alpha"], a) for a in teacher_alphas):
            teacher[float(m["alpha"])][int(m["seed"])] = 100.0 * ev[split]["accuracy"]
    scope = f"{dataset}/{tarch or '?'} → {sarch or '?'}"
    out = []

    # 4a: teacher accuracy rises with alpha (least-squares slope per seed)
    st = "teacher accuracy rises with α: least-squares slope of accuracy (pp) against α over the distilled teachers, per seed"
    seeds = sorted(set.intersection(*(set(v) for v in teacher.values()))) if teacher else []
    if len(teacher) < 2 or not seeds:
        out.append(not_run(4, scope, st, "distillation[].teacher_alphas (at least two)"))
    else:
        alphas = sorted(teacher)
        slopes = {s: float(np.polyfit(alphas, [teacher[a][s] for a in alphas], 1)[0]) for s in seeds}
        nums = {f"teacher accuracy α={a:g} (%)": _mean([teacher[a][s] for s in seeds]) for a in alphas}
        out.append(check(4, scope, st, slopes, kind="greater", bound=0.0, unit="pp per unit α", cfg=cfg, numbers=nums))

    # 4b / 4c: students against the baseline curve interpolated at the same gamma
    def versus_baseline(family, acc_by_seed, talpha, temp):
        values, gammas, skipped = {}, [], []
        for s, acc in acc_by_seed.items():
            g = gamma.get((fmt(talpha), s, fmt(temp)))
            base = interpolate_baseline(baseline.get(s, {}), g) if g is not None else None
            if base is None:
                skipped.append(s)
                continue
            values[s] = acc - base
            gammas.append(g)
        notes = ["compared against the student-baseline curve (students trained alone with LS at α) of the same "
                 "seed, linearly interpolated at the teacher's γ (the hard teacher's γ never equals a baseline α)"]
        if skipped:
            notes.append(f"seed(s) {skipped}: γ outside the baseline's α range (or no baseline of that seed); "
                         "not compared (no extrapolation; widen distillation[].baseline_alphas)")
        return values, gammas, notes

    st_b = "students of the hard-target teacher beat the student baseline at the same γ: acc(student) − baseline(γ) > 0"
    if not kd_hard:
        out.append(not_run(4, scope, st_b, "distillation[].temperatures"))
    for temp in sorted(kd_hard):
        values, gammas, notes = versus_baseline("kd_hard", kd_hard[temp], 0.0, temp)
        nums = {"γ (mean over seeds)": _mean(gammas), "student accuracy (%)": _mean(list(kd_hard[temp].values()))}
        out.append(check(4, scope, f"{st_b}; T = {temp:g}", values, kind="greater", bound=0.0, unit="pp", cfg=cfg,
                         numbers=nums, notes=notes))
    st_c = ("students of LS teachers at T = 1 are no better than the student baseline at the same γ: "
            "acc(student) − baseline(γ) < margin")
    if not kd_ls:
        out.append(not_run(4, scope, st_c, "distillation[].teacher_alphas (a nonzero alpha)"))
    for a in sorted(kd_ls):
        values, gammas, notes = versus_baseline("kd_ls", kd_ls[a], a, 1.0)
        nums = {"γ (mean over seeds)": _mean(gammas), "student accuracy (%)": _mean(list(kd_ls[a].values()))}
        out.append(check(4, scope, f"{st_c}; teacher α = {a:g}", values, kind="at_most", bound=cfg["accuracy_margin"],
                         unit="pp", cfg=cfg, numbers=nums, notes=notes))

    # 4d: the best student comes from a hard-target teacher
    st_d = ("the best student comes from a hard-target teacher: best hard-teacher student − best other student "
            "(points chosen by mean accuracy over seeds), paired by seed")
    points = {f"hard teacher, T = {t:g}": v for t, v in kd_hard.items()}
    others = {f"LS teacher α = {a:g}, T = 1": v for a, v in kd_ls.items()}
    base_pts: dict[float, dict[int, float]] = defaultdict(dict)
    for s, curve in baseline.items():
        for a, acc in curve.items():
            base_pts[a][s] = acc
    others.update({f"student alone, LS α = {a:g}": v for a, v in base_pts.items()})
    if not points or not others:
        out.append(not_run(4, scope, st_d, "distillation"))
    else:
        best_h = max(points, key=lambda k: np.mean(list(points[k].values())))
        best_o = max(others, key=lambda k: np.mean(list(others[k].values())))
        seeds = sorted(set(points[best_h]) & set(others[best_o]))
        values = {s: points[best_h][s] - others[best_o][s] for s in seeds}
        nums = {f"best hard-teacher student ({best_h}) (%)": _mean(list(points[best_h].values())),
                f"best other student ({best_o}) (%)": _mean(list(others[best_o].values()))}
        out.append(check(4, scope, st_d, values, kind="greater", bound=0.0, unit="pp", cfg=cfg, numbers=nums,
                         notes=["the two points are selected on the same data they are compared on"]))
    return out


# --------------------------------------------------------------------------- claim 5: MI


def mi_claims(curves: Sequence[dict], cfg: dict) -> list[dict]:
    """Claim 5 per probed grid from per-seed MI curves (rows of ``lspipe mi-curve`` CSVs, with
    ``dataset`` and ``arch`` added): (a) with LS the MI rises then falls: min(peak − first,
    peak − last) > ``mi_margin`` per seed; (b) at the last recorded step MI(hard) − MI(LS) > 0."""
    by: dict[tuple, dict[float, dict[int, list[tuple[int, float]]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list)))
    for r in curves:
        by[(r["dataset"], r["arch"])][float(r["alpha"])][int(r["seed"])].append((int(r["step"]), float(r["mi"])))
    st_a = "with label smoothing the MI rises then falls: min(peak − first, peak − last) per seed"
    st_b = "late in training (last recorded step) the MI is lower with LS than without: MI(hard) − MI(LS) > 0"
    if not by:
        return [not_run(5, "all", st_a, "teachers[].probe"), not_run(5, "all", st_b, "teachers[].probe")]
    out = []
    for (ds, arch), by_alpha in sorted(by.items()):
        scope = f"{ds}/{arch}"
        ls = pick_ls_alpha(by_alpha, cfg["ls_alpha"])
        if ls is None or 0.0 not in by_alpha:
            out.append(not_run(5, scope, st_a, "mi.alphas (alpha 0 and an LS alpha; claims.ls_alpha)"))
            continue
        shape = {}
        for a in (0.0, ls):
            for s, pts in by_alpha[a].items():
                mi = [v for _, v in sorted(pts)]
                peak = max(mi)
                shape[(a, s)] = (mi[0], peak, mi[-1], min(peak - mi[0], peak - mi[-1]))
        ls_seeds = sorted(by_alpha[ls])
        nums = {f"α={a:g} first / peak / last (nats, mean over seeds)": " / ".join(
            f"{_mean([shape[(a, s)][i] for s in sorted(by_alpha[a])]):.3f}" for i in range(3)) for a in (0.0, ls)}
        out.append(check(5, scope, f"{st_a}; LS α = {ls:g}", {s: shape[(ls, s)][3] for s in ls_seeds},
                         kind="greater", bound=cfg["mi_margin"], unit="nats", cfg=cfg, numbers=nums))
        seeds = sorted(set(by_alpha[0.0]) & set(by_alpha[ls]))
        out.append(check(5, scope, f"{st_b}; LS α = {ls:g}", {s: shape[(0.0, s)][2] - shape[(ls, s)][2] for s in seeds},
                         kind="greater", bound=0.0, unit="nats", cfg=cfg, numbers=nums,
                         notes=["log 2 ≈ 0.693 nats: only the class is distinguishable"]))
    return out


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


# --------------------------------------------------------------------------- the report


def summarise(checks: Sequence[dict]) -> list[dict]:
    """One verdict per (claim, dataset/arch scope prefix)."""
    groups: dict[tuple[int, str], list[str]] = defaultdict(list)
    for c in checks:
        groups[(c["claim"], c["scope"].split(" ")[0])].append(c["verdict"])
    return [{"claim": k[0], "title": CLAIM_TITLES[k[0]], "scope": k[1], "verdict": combine(v), "checks": len(v)}
            for k, v in sorted(groups.items())]


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


def decision_rule_text(cfg: dict) -> list[str]:
    return [
        f"Each check compares one effect per seed (paired by seed where runs are paired) with the claimed range. "
        f"With n seeds, the {100 * cfg['confidence']:g}% confidence interval of the mean effect is "
        f"mean ± t(n−1) · sd / √n (claims.confidence).",
        f"supported: at least {cfg['min_seeds']} seeds (claims.min_seeds) and the whole interval inside the claimed "
        f"range (for \"greater than\" claims also every seed's effect); contradicted: at least {cfg['min_seeds']} seeds "
        f"and the whole interval beyond the claimed bound; inconclusive: otherwise (fewer seeds, or an interval that "
        f"straddles a bound); not run: the configuration does not run the experiment (the config key is named).",
        f"Margins: \"does not hurt\" / \"no better than\" accept accuracy differences up to {cfg['accuracy_margin']:g} "
        f"percentage points (claims.accuracy_margin); \"comparable\" ECE means within ±{cfg['ece_margin']:g} "
        f"(claims.ece_margin); \"rises then falls\" needs a rise and a fall of more than {cfg['mi_margin']:g} nats "
        f"(claims.mi_margin).",
        "A claim's verdict per dataset/arch: contradicted if any of its checks is, supported if all are, "
        "not run if none ran, inconclusive otherwise.",
        "Tightness ratio (claim 2): for three classes projected onto their template plane (as Fig. 1), the mean over "
        "the classes of the mean distance of a class's points to their centroid, divided by the mean pairwise distance "
        f"between the three projected templates, on the {cfg['tightness_split']} split with every example of the "
        f"three classes (smaller = tighter); for the Fig. 1 triples and averaged over up to "
        f"{cfg['tightness_triples']} class triples (all when fewer; seeded by claims.tightness_seed).",
    ]


def render_markdown(checks: Sequence[dict], cfg: dict) -> str:
    lines = ["# Did this run reproduce the paper?", "",
             "Claims of Müller, Kornblith & Hinton, *When Does Label Smoothing Help?* (NeurIPS 2019), "
             "checked on this run's outputs.", "", "## Summary", "",
             "| claim | scope | verdict | checks |", "|---|---|---|---|"]
    lines += [f"| {s['claim']}. {s['title']} | {s['scope']} | **{s['verdict']}** | {s['checks']} |"
              for s in summarise(checks)]
    lines += ["", "## Decision rule", ""] + [f"- {t}" for t in decision_rule_text(cfg)] + [""]
    for claim in sorted({c["claim"] for c in checks}):
        lines += [f"## {claim}. {CLAIM_TITLES[claim]}", ""]
        for c in (c for c in checks if c["claim"] == claim):
            lines += [f"### {c['scope']}: **{c['verdict']}**", "", f"- Claim: {c['statement']}."]
            if c["verdict"] == NOT_RUN:
                lines += [f"- Not run: {c['reason']}.", ""]
                continue
            lines += [f"- Effect: {effect_text(c)}.", f"- Rule: {c['rule']}; {c['reason']}."]
            if c["numbers"]:
                lines.append("- Numbers: " + "; ".join(f"{k}: {_num(v)}" for k, v in c["numbers"].items()) + ".")
            lines += [f"- Note: {n}." for n in c["notes"]] + [""]
    return "\n".join(lines) + "\n"


def _rst_escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace("*", "\\*").replace("|", "\\|").replace("`", "\\`").replace("_ ", "\\_ ")


def render_rst(checks: Sequence[dict], cfg: dict) -> str:
    """The same report as reStructuredText (for the Snakemake report's first page)."""
    e = _rst_escape
    lines = ["Did this run reproduce the paper?", "---------------------------------", ""]
    for s in summarise(checks):
        lines.append(f"* **{s['verdict']}**: {s['claim']}. {e(s['title'])}, {e(s['scope'])}")
    lines += ["", "Decision rule: " + e(" ".join(decision_rule_text(cfg))), ""]
    for c in checks:
        head = f"* Claim {c['claim']}, {e(c['scope'])}: **{c['verdict']}**. {e(c['statement'])}."
        if c["verdict"] == NOT_RUN:
            lines.append(f"{head} {e(c['reason'])}.")
            continue
        body = f" Effect: {e(effect_text(c))}. {e(c['reason'])}."
        if c["numbers"]:
            body += " " + e("; ".join(f"{k}: {_num(v)}" for k, v in c["numbers"].items())) + "."
        lines.append(head + body)
    return "\n".join(lines) + "\n"


def build_checks(*, evals: Sequence[dict] = (), calibrations: Sequence[dict] = (), tightness: Sequence[dict] = (),
                 gamma: dict[str, dict] | None = None, mi_curves: Sequence[dict] = (), cfg: dict,
                 accuracy_split: str = "test", calibration_ls_alpha: float | None = None,
                 fig1_ls_alpha: float | None = None, has_fig1_rows: bool = False,
                 distillation_splits: dict[str, str] | None = None) -> list[dict]:
    """Every check of the report. ``gamma`` maps a distillation dataset to its gamma table."""
    teachers = [e for e in evals if e["model"]["role"] == "teacher"]
    students = [e for e in evals if e["model"]["role"] == "student"]
    checks = accuracy_claims(teachers, cfg, accuracy_split)
    checks += tightness_claims(tightness, cfg, fig1_ls_alpha, has_fig1_rows)
    checks += calibration_claims(calibrations, cfg, calibration_ls_alpha)
    if gamma:
        for ds, g in sorted(gamma.items()):
            checks += distillation_claims(ds, teachers, students, g, cfg, (distillation_splits or {}).get(ds, "test"))
    else:
        checks.append(not_run(4, "all", "distillation (Fig. 5)", "distillation"))
    checks += mi_claims(mi_curves, cfg)
    return checks


def write_report(checks: Sequence[dict], cfg: dict, md_path, json_path, rst_path=None) -> None:
    write_json(json_path, {"settings": cfg, "decision_rule": decision_rule_text(cfg), "summary": summarise(checks),
                           "checks": list(checks)})
    write_text(md_path, render_markdown(checks, cfg))
    if rst_path:
        write_text(rst_path, render_rst(checks, cfg))


# --------------------------------------------------------------------------- CLI


def _read_mi_curve(path: str | Path) -> list[dict]:
    """Per-seed MI curve CSV at ``<results>/mi/<dataset>/<arch>/a<alpha>_s<seed>.csv``; the dataset
    and arch come from the path."""
    p = Path(path)
    rows = read_csv(p)
    for r in rows:
        r.setdefault("dataset", p.parent.parent.name)
        r.setdefault("arch", p.parent.name)
    return rows


def discover(results: str | Path) -> dict[str, list[str]]:
    """The inputs of the claims report in a results folder of the standard layout."""
    r = Path(results)

    def glob(pattern):
        return sorted(str(p) for p in r.glob(pattern))

    return {"evals": glob("eval/*/*/*/*.json"), "calibrations": glob("calibration/*/*/teacher/*.json"),
            "tightness": glob("tables/tightness.csv"), "gamma": glob("tables/distillation_gamma_*.csv"),
            "mi_curves": glob("mi/*/*/*.csv")}


def _cmd_claims(a):
    from .distill import read_gamma_table

    if a.results:
        found = discover(a.results)
        a.evals, a.calibrations = a.evals or found["evals"], a.calibrations or found["calibrations"]
        a.tightness = a.tightness or (found["tightness"] or [None])[0]
        a.gamma, a.mi_curves = a.gamma or found["gamma"], a.mi_curves or found["mi_curves"]
    cfg = settings(a.settings)
    gamma = {}
    for path in a.gamma or []:
        stem = Path(path).stem
        ds = stem[len("distillation_gamma_"):] if stem.startswith("distillation_gamma_") else stem
        gamma[ds] = read_gamma_table(path)
    tightness = read_csv(a.tightness) if a.tightness else []
    fig1_rows = a.fig1_rows if a.fig1_rows is not None else sum(r["kind"] == "fig1" for r in tightness)
    checks = build_checks(
        evals=[read_json(p) for p in a.evals or []], calibrations=[read_json(p) for p in a.calibrations or []],
        tightness=tightness, gamma=gamma,
        mi_curves=[r for p in a.mi_curves or [] for r in _read_mi_curve(p)], cfg=cfg,
        accuracy_split=a.accuracy_split, calibration_ls_alpha=a.calibration_ls_alpha,
        fig1_ls_alpha=a.fig1_ls_alpha, has_fig1_rows=fig1_rows > 0,
        distillation_splits=dict(kv.split("=", 1) for kv in a.distillation_split or []),
    )
    write_report(checks, cfg, a.md, a.json, a.rst)
    for s in summarise(checks):
        print(f"claim {s['claim']} {s['scope']}: {s['verdict']}")


def _cmd_tightness(a):
    from .tables import write_csv

    rows = tightness_rows(a.dumps, json.loads(a.rows), triples=a.triples, seed=a.seed, split=a.split)
    write_csv(a.out, rows, TIGHTNESS_FIELDS)
    print(f"tightness of {len(a.dumps)} dumps, {len(rows)} rows -> {a.out}")


def add_cli(sub) -> None:
    from .cli import optional_float

    s = sub.add_parser("claims", help="the claims report: verdict per claim of the paper (claims.md / claims.json)")
    s.add_argument("--results", default=None,
                   help="results folder: take every input not given explicitly from its standard layout")
    s.add_argument("--evals", nargs="*", default=[], help="per-model evaluation JSONs (teachers and students)")
    s.add_argument("--calibrations", nargs="*", default=[], help="per-model calibration JSONs of the Table 3 grids")
    s.add_argument("--tightness", default=None, help="CSV from `lspipe tightness-table`")
    s.add_argument("--gamma", nargs="*", default=[], help="distillation_gamma_<dataset>.csv of each distillation entry")
    s.add_argument("--mi-curves", nargs="*", default=[], help="per-seed MI curves <results>/mi/<dataset>/<arch>/*.csv")
    s.add_argument("--settings", type=json.loads, default=None, help="the config's claims section as JSON")
    s.add_argument("--accuracy-split", default="test")
    s.add_argument("--calibration-ls-alpha", type=optional_float, default=None)
    s.add_argument("--fig1-ls-alpha", type=optional_float, default=None,
                   help="LS alpha of the Fig. 1 rows (projections.ls_alpha); none: the smallest nonzero")
    s.add_argument("--fig1-rows", type=int, default=None,
                   help="number of configured Fig. 1 rows (default: those in the tightness table)")
    s.add_argument("--distillation-split", nargs="*", default=[], help="dataset=split of each distillation entry")
    s.add_argument("--md", required=True)
    s.add_argument("--json", required=True)
    s.add_argument("--rst", default=None, help="reStructuredText copy (for the Snakemake report)")
    s.set_defaults(func=_cmd_claims)

    s = sub.add_parser("tightness-table", aliases=["tightness"], help="claim 2: tightness ratio of class triples projected onto their template plane")
    s.add_argument("--dumps", nargs="+", required=True)
    s.add_argument("--rows", default="[]", help="the config's projections.rows as JSON")
    s.add_argument("--triples", type=int, default=100)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--split", default="val")
    s.add_argument("--out", required=True)
    s.set_defaults(func=_cmd_tightness)
