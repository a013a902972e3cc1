"""The claims on students: claim 4 (distillation, Fig. 5) and claim 6 (the MNIST distillation toy)."""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import numpy as np

from lspipe.base.defaults import default
from lspipe.base.runs import fmt
from lspipe.experiments.claims.statistics import (DESCRIPTIVE, PRIMARY, REGIME, _close, _mean, _resolution, _sources,
                                                  check, not_compared, not_run)
from lspipe.experiments.claims.teacher_checks import accuracy_margin, by_grid, is_ls, ls_alphas, objective_of
from lspipe.experiments.distill import FORM_LABELS, StudentRun
from lspipe.experiments.distill_toy import PAPER as TOY_PAPER
from lspipe.experiments.distill_toy import PAPER_STUDENT_ALONE


# the slides' distillation loss, and how each lspipe form departs from it (claim 4 names the form used)
SLIDES_EQUATION = "(1 − β) H(y, p) + β H(p_teacher(T), p_student(T))"
FORM_DEPARTURE = {
    "teacher": "the student's soft term is taken at T = 1, not at T (only the teacher is softened)",
    "slides": "none: the slides' equation as written",
    "hinton": "the soft term is multiplied by T² (Hinton et al. 2015)",
}


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
    d = _Distillation(dataset, teacher_evals, student_evals, gamma, split, gamma_path)
    return [_teacher_regime(d, cfg), _primary_contrast(d, cfg), *_versus_baseline_checks(d, cfg)]


class _Distillation:
    """Claim 4's data of one entry: the students' accuracies by family and seed, the distilled teachers', the
    baseline curve at a teacher's gamma and what the report says of them (sources, loss form, interpolation)."""

    def __init__(self, dataset, teacher_evals, student_evals, gamma, split, gamma_path):
        self.gamma, self.split = gamma, split
        teacher_alphas = sorted({float(a) for a, _, _ in gamma})
        tarch = sarch = None
        self.baseline: dict[int, dict[float, float]] = defaultdict(dict)
        self.kd_hard: dict[float, dict[int, float]] = defaultdict(dict)
        self.kd_ls: dict[float, dict[int, float]] = defaultdict(dict)
        self.ls_temp: dict[float, float] = {}  # the temperature of each LS teacher's students (distillation[].ls_temperature)
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
                self.baseline[r.seed][r.alpha] = acc
                continue
            tarch = r.teacher_arch
            forms.add(m.get("form") or "teacher")  # students from before the form existed used "teacher"
            if r.teacher_alpha == 0.0:
                self.kd_hard[r.temperature][r.seed] = acc
            else:
                self.kd_ls[r.teacher_alpha][r.seed] = acc
                self.ls_temp[r.teacher_alpha] = r.temperature
        self.teacher: dict[float, dict[int, float]] = defaultdict(dict)
        self.teacher_used = []
        for ev in teacher_evals:  # the distilled teachers: their dataset, arch and the alphas of the gamma table
            m = ev["model"]
            if not is_ls(objective_of(m)):
                continue  # another objective (e.g. a confidence-penalty teacher, alpha 0) is no distilled teacher
            if m["dataset"] == dataset and m["arch"] == tarch and any(_close(m["alpha"], a) for a in teacher_alphas):
                self.teacher[float(m["alpha"])][int(m["seed"])] = 100.0 * ev[split]["accuracy"]
                self.teacher_used.append(ev)
        self.scope = f"{dataset}/{tarch or '?'} → {sarch or '?'}"
        self.res = _resolution(used, split)
        gsrc = [gamma_path] if gamma_path else []
        self.src = {"files": sorted(set(_sources(used, []).get("files")) | set(gsrc)),
                    "keys": [f"{split}.accuracy of every student", "gamma per (teacher alpha, seed, T)"]}
        # the loss form, and where it departs from the slides' equation
        form = "/".join(sorted(forms)) or "?"
        self.form_note = (f"distillation loss form {form!r} ({FORM_LABELS.get(form, form)}); the slides' equation is "
                          f"{SLIDES_EQUATION}; departure: {FORM_DEPARTURE.get(form, 'unknown form')}")
        self.errs = interpolation_error(self.baseline)
        self.interp_note = (
            "baseline(γ): the student-baseline curve of the same seed (students trained alone with LS at α, "
            "placed at γ = α), linearly interpolated in α between its two neighbouring baseline alphas; no "
            "extrapolation (a γ outside the baseline alphas' range is not compared); interpolation error, "
            "leave-one-out on the interior baseline points (at twice the grid spacing, an upper-side estimate): "
            + (f"max |error| {max(abs(e) for e in self.errs):.3g} pp, mean |error| {np.mean(np.abs(self.errs)):.3g} pp "
               f"over {len(self.errs)} points" if self.errs else "not estimable (fewer than 3 baseline alphas)"))
        self.base_alphas = sorted({a for c in self.baseline.values() for a in c})
        self.range_key = (f"distillation[].baseline_alphas (now {', '.join(f'{a:g}' for a in self.base_alphas) or 'none'}: "
                          "extend them to cover the teachers' γ)")
        self.sys_err = max((abs(e) for e in self.errs), default=None)

    def gamma_of(self, talpha, s, temp):
        return self.gamma.get((fmt(talpha), s, fmt(temp)))

    def at_gamma(self, s, g):
        """The baseline curve of seed ``s`` at gamma ``g`` (None outside its range)."""
        return interpolate_baseline(self.baseline.get(s, {}), g) if g is not None else None

    def ls_at(self, statement: str) -> str:
        """``statement`` naming the LS teachers' temperature where distillation[].ls_temperature sets it (the toy)."""
        if any(t != 1.0 for t in self.ls_temp.values()):
            return statement.replace("at T = 1", "at T = " + "/".join(f"{t:g}" for t in sorted(set(self.ls_temp.values()))))
        return statement

    def versus_baseline(self, acc_by_seed, talpha, temp):
        """Per seed, a student's accuracy minus the baseline at its teacher's gamma, and those gammas."""
        values, gammas = {}, []
        for s, acc in acc_by_seed.items():
            g = self.gamma_of(talpha, s, temp)
            base = self.at_gamma(s, g)
            gammas += [g] if g is not None else []
            if base is not None:
                values[s] = acc - base
        return values, gammas


def _teacher_regime(d: _Distillation, cfg: dict) -> dict:
    """Regime: teacher accuracy rises with alpha (least-squares slope per seed)."""
    st = "teacher accuracy rises with α: least-squares slope of accuracy (pp) against α over the distilled teachers, per seed"
    teacher = d.teacher
    tseeds = sorted(set.intersection(*(set(v) for v in teacher.values()))) if teacher else []
    if len(teacher) < 2 or not tseeds:
        return not_run(4, d.scope, st, "distillation[].teacher_alphas (at least two)", REGIME)
    alphas = sorted(teacher)
    slopes = {s: float(np.polyfit(alphas, [teacher[a][s] for a in alphas], 1)[0]) for s in tseeds}
    nums = {f"teacher accuracy α={a:g} (%)": _mean(teacher[a][s] for s in tseeds) for a in alphas}
    return check(4, d.scope, st, slopes, kind="greater", bound=0.0, unit="pp per unit α", cfg=cfg, role=REGIME,
                 numbers=nums, sources=_sources(d.teacher_used, [f"{d.split}.accuracy"]))


def _primary_contrast(d: _Distillation, cfg: dict) -> dict:
    """The primary check: per seed, the hard teacher's students' mean gain over the baseline minus the LS teachers'."""
    st_a = d.ls_at("a hard-target teacher's students gain more over the baseline than LS teachers' students: per seed, "
                   "mean over the in-range T of [acc(student of the α = 0 teacher at T) − baseline(γ)] minus mean over "
                   "the in-range LS teachers of [acc(student of the LS teacher at T = 1) − baseline(γ)] > 0")
    kd_hard, kd_ls, ls_temp = d.kd_hard, d.kd_ls, d.ls_temp
    # a run missing in one seed drops its temperature (or LS teacher), named, not the seed
    seeds = sorted(set().union(*[set(v) for v in kd_hard.values()], *[set(v) for v in kd_ls.values()]))
    temps_missing = [t for t in sorted(kd_hard) if set(kd_hard[t]) != set(seeds)]
    ls_missing = [a for a in sorted(kd_ls) if set(kd_ls[a]) != set(seeds)]
    if (kd_hard and len(temps_missing) == len(kd_hard)) or (kd_ls and len(ls_missing) == len(kd_ls)):
        all_seeds = [set(v) for v in kd_hard.values()] + [set(v) for v in kd_ls.values()]
        seeds = sorted(set.intersection(*all_seeds))  # no complete family: the seeds that have every run
        temps_missing, ls_missing = [], []

    def in_range(talpha, temp):
        return bool(seeds) and all(d.at_gamma(s, d.gamma_of(talpha, s, temp)) is not None for s in seeds)

    temps_in = [t for t in sorted(kd_hard) if t not in temps_missing and in_range(0.0, t)]
    ls_in = [a for a in sorted(kd_ls) if a not in ls_missing and in_range(a, ls_temp[a])]
    temps_out = [t for t in sorted(kd_hard) if t not in temps_in and t not in temps_missing]
    ls_out = [a for a in sorted(kd_ls) if a not in ls_in and a not in ls_missing]
    gam = {f"γ of the α = 0 teacher at T = {t:g} (mean over seeds)": _mean(
        g for s in seeds if (g := d.gamma_of(0.0, s, t)) is not None) for t in sorted(kd_hard)}
    gam.update({f"γ of the LS teacher α = {a:g} at T = {ls_temp[a]:g}": _mean(
        g for s in seeds if (g := d.gamma_of(a, s, ls_temp[a])) is not None) for a in sorted(kd_ls)})
    range_nums = {"baseline alphas": ", ".join(f"{a:g}" for a in d.base_alphas),
                  "in-range temperatures": ", ".join(f"{t:g}" for t in temps_in) or "none",
                  "in-range LS teachers": ", ".join(f"{a:g}" for a in ls_in) or "none", **gam}
    notes = [d.form_note, d.interp_note]
    if d.sys_err is not None:
        notes.append(f"systematic term: the largest leave-one-out interpolation error, {d.sys_err:.3g} pp, is added to "
                     "each end of the interval (a bias shared by every seed, which more seeds do not shrink)")
    if temps_missing or ls_missing:
        notes.append("left out (a run missing in some seed; the seed is kept): " + ", ".join(
            [f"T = {t:g} (seeds {sorted(set(seeds) - set(kd_hard[t]))} missing)" for t in temps_missing]
            + [f"LS teacher α = {a:g} (seeds {sorted(set(seeds) - set(kd_ls[a]))} missing)" for a in ls_missing]))
    if temps_out or ls_out:
        notes.append("left out (γ outside the baseline alphas' range in some seed, or no baseline of a seed): "
                     + ", ".join([f"T = {t:g}" for t in temps_out] + [f"LS teacher α = {a:g}" for a in ls_out]))
    if not kd_hard or not kd_ls:
        return not_run(4, d.scope, st_a, "distillation[].temperatures" if not kd_hard
                       else "distillation[].teacher_alphas (a nonzero alpha)")
    if d.sys_err is None:
        return not_compared(4, d.scope, st_a, "fewer than 3 baseline alphas: the interpolation error of baseline(γ), "
                            "a bias shared by every seed, cannot be estimated", "distillation[].baseline_alphas (at "
                            "least 3, so that the leave-one-out interpolation error bounds the bias)",
                            numbers=range_nums, notes=notes, sources=d.src)
    if not temps_in or not ls_in:
        return not_compared(4, d.scope, st_a, "no " + ("temperature" if not temps_in else "LS teacher") +
                            " whose γ lies inside the baseline alphas' range in every seed", d.range_key,
                            numbers=range_nums, notes=notes, sources=d.src)
    values = {}
    for s in seeds:
        hard = np.mean([kd_hard[t][s] - d.at_gamma(s, d.gamma_of(0.0, s, t)) for t in temps_in])
        soft = np.mean([kd_ls[a][s] - d.at_gamma(s, d.gamma_of(a, s, ls_temp[a])) for a in ls_in])
        values[s] = float(hard - soft)
    return check(4, d.scope, st_a, values, kind="greater", bound=0.0, unit="pp", cfg=cfg, role=PRIMARY,
                 resolution=d.res, numbers=range_nums, notes=notes, sources=d.src, systematic=d.sys_err)


def _versus_baseline_checks(d: _Distillation, cfg: dict) -> list[dict]:
    """Descriptive: each temperature and each LS teacher against the baseline at its gamma."""
    st_b = "students of the hard-target teacher beat the student baseline at the same γ: acc(student) − baseline(γ) > 0"
    st_c = d.ls_at("students of LS teachers at T = 1 are no better than the student baseline at the same γ: "
                   "acc(student) − baseline(γ) < margin")
    out = [_versus_baseline(d, cfg, st_b, d.kd_hard[temp], 0.0, temp, f"T = {temp:g}") for temp in sorted(d.kd_hard)]
    return out + [_versus_baseline(d, cfg, st_c, d.kd_ls[a], a, d.ls_temp[a], f"teacher α = {a:g}") for a in sorted(d.kd_ls)]


def _versus_baseline(d: _Distillation, cfg: dict, statement: str, acc_by_seed: dict, talpha: float, temp: float,
                     label: str) -> dict:
    """One family member's students against the baseline at its teacher's gamma: the hard teacher's students
    above 0, an LS teacher's (``talpha`` > 0) below claim 1's margin."""
    values, gammas = d.versus_baseline(acc_by_seed, talpha, temp)
    nums = {"γ (mean over seeds)": _mean(gammas), "student accuracy (%)": _mean(acc_by_seed.values())}
    if not values:
        return not_compared(4, d.scope, statement, "γ outside the baseline alphas' range in every seed", d.range_key,
                            DESCRIPTIVE, label, numbers=nums, sources=d.src)
    if talpha == 0.0:
        kind, bound = "greater", 0.0
    else:
        kind, (bound, margin_src) = "at_most", accuracy_margin(cfg, _mean(c[0.0] for c in d.baseline.values() if 0.0 in c))
        nums["margin (pp)"] = f"{bound:.3g} ({margin_src.replace('α = 0 model', 'α = 0 student baseline')})"
    return check(4, d.scope, statement, values, kind=kind, bound=bound, unit="pp", cfg=cfg, label=label,
                 resolution=d.res, numbers=nums, sources=d.src, systematic=d.sys_err or 0.0)


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
    grids = by_grid(teacher_evals, "teacher evaluations") if toys else {}
    return [c for toy in toys for c in _toy_checks(toy, grids, student_evals, cfg, statement_a)]


def _toy_students(toy: dict, student_evals: Sequence[dict]) -> dict[str, dict[int, dict]]:
    """The toy's students by seed: ``hard`` and ``ls`` (distilled from the hard and the LS teacher at the toy's
    temperature) and ``alone`` (trained alone with hard targets)."""
    t, ls = float(toy["temperature"]), float(toy["ls_alpha"])
    student: dict[str, dict[int, dict]] = defaultdict(dict)
    for ev in student_evals:
        m = ev["model"]
        if (m["dataset"], m["arch"]) != (toy["dataset"], toy["student_arch"]):
            continue
        try:
            r = StudentRun.parse(m["run"])
        except ValueError:
            continue
        if r.distilled and r.teacher_arch == toy["teacher_arch"] and _close(r.temperature, t):
            if _close(r.teacher_alpha, 0.0):
                student["hard"][r.seed] = ev
            elif _close(r.teacher_alpha, ls):
                student["ls"][r.seed] = ev
        elif not r.distilled and _close(r.alpha, 0.0):
            student["alone"][r.seed] = ev
    return student


def _toy_checks(toy: dict, grids: dict, student_evals: Sequence[dict], cfg: dict, statement_a: str) -> list[dict]:
    """Claim 6's checks of one ``distillation_toy`` entry (:func:`toy_claims`); ``grids``: the teachers by grid."""
    out = []
    ds, tarch, sarch = toy["dataset"], toy["teacher_arch"], toy["student_arch"]
    t, ls, split = float(toy["temperature"]), float(toy["ls_alpha"]), toy["split"]
    scope = f"{ds}/{tarch} → {sarch}, T = {t:g}"
    statement_b = (f"the label-smoothed teacher's student is worse: accuracy(student of the α = 0 teacher) − "
                   f"accuracy(student of the LS teacher), both at T = {t:g}, paired by seed")
    by_obj = grids.get((ds, tarch), {})
    teacher = {want: by_obj[k] for want in (0.0, ls) for a, k in ls_alphas(by_obj).items() if _close(a, want)}
    student = _toy_students(toy, student_evals)

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
