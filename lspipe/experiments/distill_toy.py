"""The paper's MNIST distillation toy (section 4): the better model is the worse teacher.

The paper opens its distillation section with four numbers: a fully connected teacher (two hidden
layers of 1200 units) and a student (two of 800) on MNIST, test error 0.67 % / 0.74 % (teacher / its
student) with hard targets and 0.59 % / 0.91 % with a label-smoothed teacher
(the paper, section 4). Its hard-teacher row is Hinton, Vinyals & Dean (2015, section 3)'s 67
and 74 test errors of 10,000.

This experiment reads the models of the dataset's ``distillation`` entry (:mod:`lspipe.experiments.distill`
trains them: the teachers at alpha 0 and ``ls_alpha``, each one's student at ``temperature``, the
students alone) and writes the toy's table, in the paper's layout: per teacher, its test error and its
student's, and their difference LS − hard paired by seed; the students trained alone beside them.
Every cell is the mean over seeds with its two-sided Student-t interval (``claims.confidence``, 95 %),
the interval the claims report decides by; claim 6 of the claims report
(:func:`lspipe.experiments.claims.student_checks.toy_claims`) checks "the LS teacher is at least as accurate, and its
student is worse" on the same pairs (:func:`pairs`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

from lspipe.base.defaults import default, fill
from lspipe.base.errors import ConfigError
from lspipe.base.io import read_json, write_text
from lspipe.base.runs import fmt, kd_run, run_name
from lspipe.core.tables import markdown_table, write_csv
from lspipe.experiments.distill import baseline_alphas, ls_temperature, trained_as

SETTINGS = "distillation_toy[]"
# The paper's toy, test error in % (teacher, student): the paper, section 4
PAPER = {"hard": (0.67, 0.74), "ls": (0.59, 0.91)}
# Hinton, Vinyals & Dean (2015, section 3): the 800-800 student trained alone, no regularisation: 146 test errors
PAPER_STUDENT_ALONE = 1.46
FIELDS = ["dataset", "row", "teacher_arch", "student_arch", "teacher_alpha", "baseline_alpha", "temperature", "form",
          "split", "seeds", "confidence",
          "teacher_error_pct_mean", "teacher_error_pct_lo", "teacher_error_pct_hi",
          "student_error_pct_mean", "student_error_pct_lo", "student_error_pct_hi",
          "paper_teacher_error_pct", "paper_student_error_pct"]


# --------------------------------------------------------------------------- the plan


def check_entry(toy: dict, distillation: dict[str, dict], where: str) -> dict:
    """A ``distillation_toy`` entry with its defaults, checked against the dataset's ``distillation``
    entry; raises :class:`ConfigError` naming the key to fix."""
    toy = fill(SETTINGS, toy)
    ds = toy["dataset"]
    d = distillation.get(ds)
    if d is None:
        raise ConfigError(f"{where}: dataset {ds!r} has no distillation entry, which trains the toy's teachers and "
                          f"students; add one (distillation[].dataset: {ds}) or remove {where}")
    alphas = [float(a) for a in d["teacher_alphas"]]
    if 0.0 not in alphas or not any(math.isclose(float(toy["ls_alpha"]), a) for a in alphas):
        raise ConfigError(f"{where}: the toy compares the teachers at alpha 0 and ls_alpha {toy['ls_alpha']:g}, but the "
                          f"distillation entry of {ds!r} has teacher_alphas {d['teacher_alphas']}; add them there")
    t = float(toy["temperature"])
    if not any(math.isclose(t, float(x)) for x in d["temperatures"]):
        raise ConfigError(f"{where}.temperature {t:g} is not in distillation[].temperatures {d['temperatures']} of "
                          f"{ds!r}: the hard-target teacher's student at T = {t:g} is not trained; add it there")
    if not math.isclose(t, ls_temperature(d)):
        raise ConfigError(f"{where}.temperature {t:g} differs from distillation[].ls_temperature "
                          f"{ls_temperature(d):g} of {ds!r}: both teachers' students must learn at one T; set "
                          f"ls_temperature: {t:g} there")
    if toy["split"] != d["split"]:
        raise ConfigError(f"{where}.split {toy['split']!r} differs from distillation[].split {d['split']!r} of {ds!r}; "
                          "use one split for both")
    return {**toy, "ls_alpha": float(toy["ls_alpha"]), "temperature": t, "teacher_arch": d["teacher_arch"],
            "student_arch": d["student_arch"], "seeds": [int(s) for s in d["seeds"]],
            "baseline_alphas": [float(a) for a in baseline_alphas(d)], "form": d["form"]}


def runs(toy: dict) -> dict[str, list[str]]:
    """The run names the toy reads, per role of the table: ``teacher_hard``, ``teacher_ls``,
    ``student_hard``, ``student_ls`` (seed order) and ``alone_<alpha>`` (the students trained alone)."""
    tarch, t, seeds = toy["teacher_arch"], toy["temperature"], toy["seeds"]
    out = {"teacher_hard": [run_name(0, s) for s in seeds], "teacher_ls": [run_name(toy["ls_alpha"], s) for s in seeds],
           "student_hard": [kd_run(tarch, 0, t, s) for s in seeds],
           "student_ls": [kd_run(tarch, toy["ls_alpha"], t, s) for s in seeds]}
    for a in toy["baseline_alphas"]:
        out[f"alone_{fmt(a)}"] = [run_name(a, s) for s in seeds]
    return out


class DistillationToyPlan:
    """The toy in a configuration's workflow (``Plan.distillation_toy``): the ``distillation_toy``
    entries by dataset (checked against the ``distillation`` entries, :func:`check_entry`) and the
    evaluations each table reads."""

    name = "distillation_toy"

    def __init__(self, plan):
        self._paths = plan.paths
        self.entries: dict[str, dict] = {}
        self.confidence = float(fill("claims", plan.config.get("claims"))["confidence"])
        distillation = getattr(plan, "distillation", None)
        if distillation is None:  # the distillation entries are invalid: the Plan reports why
            self._twins = {}
            return
        self._twins = distillation.twins
        for i, toy in enumerate(plan.config.get("distillation_toy") or []):
            where = f"distillation_toy[{i}]"
            if toy["dataset"] in self.entries:
                raise ConfigError(f"{where}.dataset {toy['dataset']!r} repeats an earlier entry; one toy per dataset")
            self.entries[toy["dataset"]] = check_entry(toy, distillation.entries, where)

    def evals(self, dataset: str) -> dict[str, list[str]]:
        """Evaluation JSONs per role (:func:`runs`); a student alone trained as a teacher is read from the
        teacher's files (:func:`lspipe.experiments.distill.trained_as`)."""
        toy, p = self.entries[dataset], self._paths
        out = {}
        for role, names in runs(toy).items():
            if role.startswith("teacher"):
                out[role] = [p.eval(dataset, toy["teacher_arch"], "teacher", r) for r in names]
            else:
                out[role] = [p.eval(dataset, toy["student_arch"], *trained_as(r, self._twins.get(dataset, {})))
                             for r in names]
        return out

    def tables(self, dataset: str) -> list[str]:
        return [self._paths.table(f"distillation_toy_{dataset}.csv"), self._paths.table(f"distillation_toy_{dataset}.md")]

    def settings(self) -> list[dict]:
        """What claim 6 needs of each entry (the claims report's ``toys``)."""
        return [{k: toy[k] for k in ("dataset", "ls_alpha", "temperature", "split", "teacher_arch", "student_arch")}
                for toy in self.entries.values()]

    def targets(self) -> list[str]:
        return [t for d in self.entries for t in self.tables(d)]


# --------------------------------------------------------------------------- the numbers


def t_interval(values: Sequence[float], confidence: float) -> tuple[float, float | None, float | None]:
    """Mean and two-sided Student-t interval ``mean ± t(n−1) sd / √n`` (sd with ddof 1); no interval
    for fewer than 2 values (the claims report's interval, :func:`lspipe.experiments.claims.statistics.effect_stats`)."""
    from scipy.stats import t as student_t

    v = np.asarray(values, dtype=float)
    if len(v) == 0:
        raise ValueError("no values")
    mean = float(v.mean())
    if len(v) < 2:
        return mean, None, None
    half = float(student_t.ppf(0.5 + confidence / 2, len(v) - 1)) * float(v.std(ddof=1)) / math.sqrt(len(v))
    return mean, mean - half, mean + half


def errors(records: Sequence[dict], split: str) -> dict[int, float]:
    """Test error in % by seed from evaluation JSONs (one per seed; a repeated seed is refused)."""
    out: dict[int, float] = {}
    for ev in records:
        seed = int(ev["model"]["seed"])
        if seed in out:
            raise ValueError(f"two evaluations of seed {seed} among {[r['model'].get('run') for r in records]}")
        out[seed] = 100.0 * (1.0 - float(ev[split]["accuracy"]))
    return out


def pairs(by_role: dict[str, Sequence[dict]], split: str) -> dict[str, dict[int, float]]:
    """Error in % by seed for every role of :func:`runs`, from the parsed evaluation JSONs."""
    return {role: errors(recs, split) for role, recs in by_role.items()}


def toy_rows(by_role: dict[str, Sequence[dict]], toy: dict, confidence: float = default("claims.confidence")) -> list[dict]:
    """The table's rows: hard-target teacher, LS teacher, LS − hard (paired by seed), then each student alone."""
    split = toy.get("split", default("distillation_toy[].split"))
    err = pairs(by_role, split)
    base = {"dataset": toy["dataset"], "teacher_arch": toy["teacher_arch"], "student_arch": toy["student_arch"],
            "temperature": toy["temperature"], "form": toy.get("form", ""), "split": split, "confidence": confidence}

    def cells(prefix: str, values: dict[int, float]) -> dict:
        m, lo, hi = t_interval(list(values.values()), confidence)
        return {f"{prefix}_mean": round(m, 4), f"{prefix}_lo": "" if lo is None else round(lo, 4),
                f"{prefix}_hi": "" if hi is None else round(hi, 4)}

    rows = []
    for key, alpha in (("hard", 0.0), ("ls", toy["ls_alpha"])):
        teacher, student = err[f"teacher_{key}"], err[f"student_{key}"]
        if set(teacher) != set(student):
            raise ValueError(f"teachers of seeds {sorted(teacher)} but students of seeds {sorted(student)}")
        rows.append({**base, "row": f"teacher_{key}", "teacher_alpha": alpha, "baseline_alpha": "",
                     "seeds": len(teacher), **cells("teacher_error_pct", teacher), **cells("student_error_pct", student),
                     "paper_teacher_error_pct": PAPER[key][0], "paper_student_error_pct": PAPER[key][1]})
    seeds = sorted(set(err["teacher_hard"]) & set(err["teacher_ls"]))
    rows.append({**base, "row": "ls_minus_hard", "teacher_alpha": "", "baseline_alpha": "", "seeds": len(seeds),
                 **cells("teacher_error_pct", {s: err["teacher_ls"][s] - err["teacher_hard"][s] for s in seeds}),
                 **cells("student_error_pct", {s: err["student_ls"][s] - err["student_hard"][s] for s in seeds}),
                 "paper_teacher_error_pct": round(PAPER["ls"][0] - PAPER["hard"][0], 4),
                 "paper_student_error_pct": round(PAPER["ls"][1] - PAPER["hard"][1], 4)})
    for role in sorted(r for r in err if r.startswith("alone_")):
        a = float(role[len("alone_"):])
        rows.append({**base, "row": role, "teacher_alpha": "", "baseline_alpha": a, "temperature": "", "form": "",
                     "seeds": len(err[role]), "teacher_error_pct_mean": "", "teacher_error_pct_lo": "", "teacher_error_pct_hi": "",
                     **cells("student_error_pct", err[role]), "paper_teacher_error_pct": "",
                     "paper_student_error_pct": PAPER_STUDENT_ALONE if a == 0.0 else ""})
    return rows


def _cell(r: dict, prefix: str, digits: int, signed: bool = False) -> str:
    if r[f"{prefix}_mean"] == "":
        return "—"
    f = f"{{:{'+' if signed else ''}.{digits}f}}"
    text = f.format(r[f"{prefix}_mean"])
    if r[f"{prefix}_lo"] == "":
        return f"{text} (1 seed: no interval)"
    return f"{text} [{f.format(r[f'{prefix}_lo'])}, {f.format(r[f'{prefix}_hi'])}]"


def _paper(r: dict, signed: bool = False) -> str:
    f = "{:+.2f}" if signed else "{:.2f}"
    t = "—" if r["paper_teacher_error_pct"] == "" else f.format(r["paper_teacher_error_pct"])
    s = "—" if r["paper_student_error_pct"] == "" else f.format(r["paper_student_error_pct"])
    return f"{t} / {s}"


def markdown(rows: Sequence[dict], digits: int = default("distillation_toy[].digits")) -> str:
    """The paper's layout: teacher, teacher test error, student test error (the paper's beside them)."""
    first = rows[0]
    n = max(int(r["seeds"]) for r in rows)
    conf = f"{100 * float(first['confidence']):g} %"
    labels = {"teacher_hard": "hard targets (α = 0)", "ls_minus_hard": "LS − hard (paired by seed)"}
    body = []
    for r in rows:
        if r["row"] == "teacher_ls":
            label = f"label smoothing (α = {fmt(r['teacher_alpha'])})"
        elif r["row"].startswith("alone_"):
            label = f"none: the student alone, α = {fmt(r['baseline_alpha'])}"
        else:
            label = labels[r["row"]]
        signed = r["row"] == "ls_minus_hard"
        paper = _paper(r, signed) + (" (Hinton et al. 2015)" if r["row"] == "alone_0" else "")
        body.append([label, _cell(r, "teacher_error_pct", digits, signed), _cell(r, "student_error_pct", digits, signed), paper])
    title = (f"The MNIST distillation toy on {first['dataset']} ({first['teacher_arch']} teachers → "
             f"{first['student_arch']} students at T = {fmt(first['temperature'])}, loss form {first['form']}): "
             f"{first['split']} error (%), mean [{conf} interval] over {n} seeds. The paper: section 4 "
             f"(students alone: Hinton et al. 2015, section 3).\n\n")
    return title + markdown_table(["teacher", f"teacher {first['split']} error (%)", f"student {first['split']} error (%)",
                                   "the paper: teacher / student (%)"], body)


def write_table(by_role: dict[str, Sequence[dict]], toy: dict, csv_path, md_path,
                confidence: float = default("claims.confidence"), digits: int = default("distillation_toy[].digits")) -> list[dict]:
    rows = toy_rows(by_role, toy, confidence)
    write_csv(csv_path, rows, FIELDS)
    write_text(md_path, markdown(rows, digits))
    return rows


# --------------------------------------------------------------------------- command line


ROLES = ("teacher_hard", "teacher_ls", "student_hard", "student_ls")


def cmd_table(a) -> None:
    by_role = {role: [read_json(p) for p in getattr(a, role)] for role in ROLES}
    for item in a.alone or []:
        alpha, _, path = item.partition("=")
        by_role.setdefault(f"alone_{fmt(alpha)}", []).append(read_json(path))
    first = by_role["teacher_hard"][0]["model"]
    student = by_role["student_hard"][0]["model"]
    toy = {"dataset": first["dataset"], "teacher_arch": first["arch"], "student_arch": student["arch"],
           "ls_alpha": a.ls_alpha, "temperature": a.temperature, "form": student.get("form") or "", "split": a.split}
    write_table(by_role, toy, a.csv, a.md, confidence=a.confidence, digits=a.digits)
    print(Path(a.md).read_text())


def add_cli(sub) -> None:
    s = sub.add_parser("distillation-toy-table", aliases=["toy-table"],
                       help="the MNIST distillation toy's table: teacher and student error, hard vs LS teacher",
                       description="The paper's MNIST distillation toy (section 4): test error of the hard-target and "
                                   "the label-smoothed teacher, each one's distilled student, their difference paired "
                                   "by seed, and the students trained alone, as a CSV and a Markdown table. The "
                                   "workflow's distillation_toy_table rule runs it.")
    for role in ROLES:
        s.add_argument(f"--{role.replace('_', '-')}", dest=role, nargs="+", required=True,
                       help=f"evaluation JSONs of the {role.replace('_', ' ')} models, one per seed")
    s.add_argument("--alone", nargs="*", default=[], help="ALPHA=EVAL_JSON of each student trained alone")
    s.add_argument("--ls-alpha", type=float, required=True, help="alpha of the label-smoothed teacher")
    s.add_argument("--temperature", type=float, required=True, help="temperature of both teachers' students")
    s.add_argument("--split", default=default("distillation_toy[].split"), help="the evaluated split the JSONs hold")
    s.add_argument("--confidence", type=float, default=default("claims.confidence"),
                   help="confidence level of the Student-t intervals over seeds")
    s.add_argument("--digits", type=int, default=default("distillation_toy[].digits"), help="decimals in the Markdown table")
    s.add_argument("--csv", required=True, help="the table as CSV (error in %%)")
    s.add_argument("--md", required=True, help="the table as Markdown")
    s.set_defaults(func=cmd_table)
