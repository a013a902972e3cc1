"""The workflow's plan: run names, path templates, multi-model training jobs and final targets.

One module owns what the Snakemake rules and the tests both need to know about a (validated)
configuration, so nothing of it is spelled twice:

- run names: :func:`run_name` (teachers and student baselines, ``a<alpha>_s<seed>``) and
  :func:`kd_run` (distilled students, ``kd-<teacher arch>-a<alpha>-T<T>_s<seed>``);
- path templates: :class:`Paths` (``model()``, ``dump()``, ``log()``, ``benchmark()``, ...); the
  rules pass either values or Snakemake wildcards (``"{dataset}"``) to them;
- the experiments' plans, computed once: :class:`Plan` (distillation entries, Table 3 grids, Fig. 1
  rows, Fig. 6 plan, teacher projections, claim 2's dumps, every trained model);
- the multi-model training jobs (fused teacher grids, lockstep students): :meth:`Plan.grouped_jobs`;
- the final targets of ``rule all``: :meth:`Plan.final_targets`.

The config's cross-checks run once, in :func:`lspipe.core.config.validate`, which calls :func:`check`.
"""

from __future__ import annotations

import re
from functools import cached_property
from typing import Sequence


def fmt(x) -> str:
    """Canonical text of a number in run names and paths: 0.1 -> '0.1', 0.0 -> '0', 2.0 -> '2'."""
    return f"{float(x):g}"


def run_name(alpha, seed) -> str:
    """A teacher's (and a student baseline's) run: ``a<alpha>_s<seed>``."""
    return f"a{fmt(alpha)}_s{int(seed)}"


def kd_run(teacher_arch: str, teacher_alpha, temperature, seed) -> str:
    """A distilled student's run: ``kd-<teacher arch>-a<teacher alpha>-T<T>_s<seed>``."""
    return f"kd-{teacher_arch}-a{fmt(teacher_alpha)}-T{fmt(temperature)}_s{int(seed)}"


# run-name templates of the training rules (Snakemake wildcards)
RUN = "a{alpha}_s{seed}"
KD_RUN = "kd-{tarch}-a{talpha}-T{T}_s{seed}"

_NUMBER = r"[0-9.]+(?:e[+-]?[0-9]+)?"
_RUN_RE = re.compile(rf"a(?P<alpha>{_NUMBER})_s(?P<seed>[0-9]+)")
_KD_RUN_RE = re.compile(rf"kd-(?P<teacher_arch>[a-z0-9]+)-a(?P<teacher_alpha>{_NUMBER})-T(?P<temperature>{_NUMBER})"
                        rf"_s(?P<seed>[0-9]+)")
_MODEL_PATH_RE = re.compile(r"(?:^|/)models/(?P<dataset>[^/]+)/(?P<arch>[^/]+)/(?P<role>teacher|student)/"
                            r"(?P<run>[^/]+)/model\.pt")


def parse_run(run: str) -> dict | None:
    """What a run name says (the inverse of :func:`run_name` and :func:`kd_run`): ``{"alpha", "seed"}``
    for ``a<alpha>_s<seed>``; ``{"teacher_arch", "teacher_alpha", "temperature", "seed"}`` for a
    distilled student's ``kd-...`` name; None for any other name."""
    if m := _RUN_RE.fullmatch(run):
        return {"alpha": float(m["alpha"]), "seed": int(m["seed"])}
    if m := _KD_RUN_RE.fullmatch(run):
        return {"teacher_arch": m["teacher_arch"], "teacher_alpha": float(m["teacher_alpha"]),
                "temperature": float(m["temperature"]), "seed": int(m["seed"])}
    return None


_EVAL_PATH_RE = re.compile(r"(?:^|/)eval/(?P<dataset>[^/]+)/(?P<arch>[^/]+)/(?P<role>teacher|student)/(?P<run>[^/]+)\.json")


def parse_eval_path(path) -> dict | None:
    """``{"dataset", "arch", "role", "run"}`` of a path laid out as :meth:`Paths.eval`; None otherwise."""
    text = str(path).replace("\\", "/")
    m = _EVAL_PATH_RE.search(text)
    return m.groupdict() if m and text.endswith(m.group(0)) else None


def parse_model_path(path) -> dict | None:
    """``{"dataset", "arch", "role", "run"}`` of a path laid out as :meth:`Paths.model`
    (``.../models/<dataset>/<arch>/<role>/<run>/model.pt``); None for a path of another layout."""
    m = _MODEL_PATH_RE.search(str(path).replace("\\", "/"))
    return m.groupdict() if m and str(path).replace("\\", "/").endswith(m.group(0)) else None


class Paths:
    """Every path under ``results``; arguments are values or Snakemake wildcards (``"{dataset}"``)."""

    def __init__(self, results: str, formats: Sequence[str] = ("pdf", "png")):
        self.results = str(results)
        self.formats = list(formats)

    def data(self, dataset):
        return f"{self.results}/data/{dataset}.npz"

    def model_dir(self, dataset, arch, role, run):
        return f"{self.results}/models/{dataset}/{arch}/{role}/{run}"

    def model(self, dataset, arch, role, run):
        return f"{self.model_dir(dataset, arch, role, run)}/model.pt"

    def metrics(self, dataset, arch, role, run):
        return f"{self.model_dir(dataset, arch, role, run)}/metrics.csv"

    def probe(self, dataset, arch, run):
        """A teacher's probe trace (a placeholder file when its grid records no probe)."""
        return f"{self.model_dir(dataset, arch, 'teacher', run)}/probe.h5"

    def dump(self, dataset, arch, role, run):
        return f"{self.results}/dumps/{dataset}/{arch}/{role}/{run}.h5"

    def eval(self, dataset, arch, role, run):
        return f"{self.results}/eval/{dataset}/{arch}/{role}/{run}.json"

    def calibration(self, dataset, arch, role, run):
        return f"{self.results}/calibration/{dataset}/{arch}/{role}/{run}.json"

    def mi_curve(self, dataset, arch, run):
        return f"{self.results}/mi/{dataset}/{arch}/{run}.csv"

    def table(self, name):
        """``tables/<name>`` (give the extension)."""
        return f"{self.results}/tables/{name}"

    def report(self, name):
        """A file directly under ``results`` (the claims report)."""
        return f"{self.results}/{name}"

    def figures(self, stem):
        """The figure ``stem`` in every configured format."""
        return [f"{self.results}/figures/{stem}.{ext}" for ext in self.formats]

    def log(self, *parts):
        """``logs/<part>/.../<last part>.log``: the rule's name first, then the job's wildcards."""
        return f"{self.results}/logs/{'/'.join(parts)}.log"

    def benchmark(self, *parts):
        """``benchmarks/<part>/.../<last part>.tsv``, as :meth:`log`."""
        return f"{self.results}/benchmarks/{'/'.join(parts)}.tsv"


def check(config: dict) -> list[str]:
    """The experiments' cross-checks the schema cannot express (each names the key and the fix);
    called by :func:`lspipe.core.config.validate` once the references between sections are known good."""
    from lspipe.core.config import ConfigError

    plan = Plan(config)
    problems = []
    for name in ("distill", "calibration_grids", "projection_models", "mi", "teacher_projections"):
        try:
            getattr(plan, name)
        except ConfigError as err:
            problems.append(str(err))
    return problems


class Plan:
    """What a validated configuration makes: each experiment's plan, computed once."""

    def __init__(self, config: dict):
        self.config = config
        self.paths = Paths(config["results"], config.get("figures", {}).get("formats", ("pdf", "png")))

    # ------------------------------------------------------------------ the experiments' plans

    @cached_property
    def distill(self) -> dict[str, dict]:
        """The ``distillation`` entries by dataset (Fig. 5)."""
        from lspipe.experiments.distill import entries_by_dataset

        return entries_by_dataset(self.config.get("distillation", []))

    @cached_property
    def twins(self) -> dict[str, dict[str, str]]:
        """Per distillation dataset: student baselines trained as a teacher (lspipe.experiments.distill.teacher_twins)."""
        from lspipe.experiments.distill import teacher_twins

        return {ds: teacher_twins(d, self.config["teachers"], self.config.get("recipes", {}))
                for ds, d in self.distill.items()}

    @cached_property
    def calibration_grids(self) -> list[tuple[str, str, float, list[int]]]:
        """Teacher grids in Table 3 / Fig. 2: (dataset, arch, LS alpha, seeds)."""
        from lspipe.experiments.calibration import table3_grids

        return table3_grids(self.config)

    @cached_property
    def projection_models(self) -> list[tuple[str, str, int]]:
        """(dataset, arch, seed) of each Fig. 1 row."""
        from lspipe.experiments.projection import projection_models

        return projection_models(self.config)

    @cached_property
    def mi(self) -> dict[tuple[str, str], dict]:
        """Fig. 6: (dataset, arch) -> alphas, seeds, title (lspipe.experiments.mi.fig6_plan)."""
        from lspipe.experiments.mi import fig6_plan

        return fig6_plan(self.config)

    @cached_property
    def teacher_projections(self) -> dict[str, dict]:
        """Per distillation dataset with a ``teacher_projection``: its settings (lspipe.experiments.teacher_projection.plan)."""
        from lspipe.experiments.teacher_projection import plan

        return {d["dataset"]: p for i, d in enumerate(self.config.get("distillation", []))
                if (p := plan(d, f"distillation[{i}]")) is not None}

    @cached_property
    def tightness_models(self) -> list[tuple[str, str, float, int]]:
        """(dataset, arch, alpha, seed) of the teacher dumps of claim 2 (lspipe.experiments.claims.tightness_models)."""
        from lspipe.experiments.claims import tightness_models

        return tightness_models(self.config)

    @cached_property
    def trained_models(self) -> list[tuple[str, str, str, str]]:
        """``(dataset, arch, role, run)`` of every model the config trains: teachers, then students."""
        from lspipe.experiments.distill import student_runs

        models = [(g["dataset"], g["arch"], "teacher", run_name(a, s)) for g in self.config["teachers"]
                  for a in g["alphas"] for s in g["seeds"]]
        for d, entry in self.distill.items():
            # a student baseline that is a teacher's very run is trained once, as that teacher (its row)
            models += [(d, entry["student_arch"], "student", r.name) for r in student_runs(entry)
                       if r.name not in self.twins[d]]
        return models

    # ------------------------------------------------------------------ multi-model training jobs

    @cached_property
    def grouped_jobs(self) -> list[dict]:
        """The training jobs that train several models at once, one dict per job (one generated rule each).

        Fused teacher grids (``teachers[].fuse``): per seed, every alpha of the grid as one fused
        network (``lspipe train-fused``). Lockstep students (``distillation[].lockstep``, groups from
        lspipe.experiments.distill.lockstep_groups): per seed, the hard-target teacher's students at every T, and
        the student baselines not trained as a teacher (``lspipe train-lockstep``). Each job writes the
        ordinary ``model.pt`` and ``metrics.csv`` of its models, the files the single-run rule named
        by ``"single"`` would write; ``"members"`` holds every hyper-parameter of the members.
        """
        from lspipe.experiments.distill import lockstep_groups

        p, jobs = self.paths, []
        for g in self.config["teachers"]:
            if not g.get("fuse"):
                continue
            ds, arch = g["dataset"], g["arch"]
            for s in g["seeds"]:
                jobs.append({
                    "name": f"train_teacher_fused_{ds}_{arch}_s{int(s)}", "single": "train_teacher",
                    "command": "train-fused", "dataset": ds, "arch": arch, "role": "teacher", "seed": int(s),
                    "recipe": g["recipe"], "runs": [run_name(a, s) for a in g["alphas"]], "teacher": [],
                    "members": f"--alphas {' '.join(fmt(a) for a in g['alphas'])} --role teacher",
                    "log": ("train_teacher_fused", ds, arch, f"s{int(s)}"),
                })
        for ds, d in self.distill.items():
            arch = d["student_arch"]
            for grp in lockstep_groups(d, self.twins[ds]):
                kd, s = grp["family"] == "kd_hard", grp["seed"]
                teacher = p.model(ds, d["teacher_arch"], "teacher", run_name(0, s))
                if kd:
                    members = (f"--teacher {_quote(teacher)} --temperatures {' '.join(fmt(t) for t in grp['temperatures'])} "
                               f"--beta {float(d['beta'])} --form {d['form']}")
                else:
                    members = f"--alphas {' '.join(fmt(a) for a in grp['alphas'])}"
                members += " --fuse" if d["fuse_students"] else " --no-fuse"
                jobs.append({
                    "name": f"train_students_lockstep_{ds}_{grp['family']}_s{s}",
                    "single": "train_student_distilled" if kd else "train_student_baseline",
                    "command": "train-lockstep", "dataset": ds, "arch": arch, "role": "student", "seed": s,
                    "recipe": d["student_recipe"], "runs": list(grp["runs"]), "teacher": [teacher] if kd else [],
                    "members": members, "log": ("train_students_lockstep", ds, arch, f"{grp['family']}_s{s}"),
                })
        return jobs

    def training_benchmark(self, dataset: str, arch: str, role: str, run: str) -> str:
        """Benchmark TSV of the job that trains a model, as the training rules name it; the models
        of one multi-model job (:attr:`grouped_jobs`) share its file."""
        for job in self.grouped_jobs:
            if (job["dataset"], job["arch"], job["role"]) == (dataset, arch, role) and run in job["runs"]:
                return self.paths.benchmark(*job["log"])
        rule = "train_teacher" if role == "teacher" else (
            "train_student_distilled" if run.startswith("kd-") else "train_student_baseline")
        return self.paths.benchmark(rule, dataset, arch, run)

    # ------------------------------------------------------------------ final targets

    def final_targets(self) -> list[str]:
        """Every final output of the workflow (``rule all``): tables, figures, the claims report."""
        p, out = self.paths, []
        out += [p.table("accuracy.csv"), p.table("accuracy.md")]
        if self.calibration_grids:
            out += [p.table("calibration.csv"), p.table("calibration.md")]
            out += [f for d, a, *_ in self.calibration_grids for f in p.figures(f"fig2_reliability_{d}_{a}")]
        if self.config.get("projections", {}).get("rows"):
            out += p.figures("fig1_projections")
        for d, a in self.mi:
            out += p.figures(f"fig6_mi_{d}_{a}") + [p.table(f"mi_{d}_{a}.csv")]
        for d in self.distill:
            out += [p.table(f"distillation_gamma_{d}.csv"), p.table(f"distillation_{d}.csv")]
            out += p.figures(f"fig5_distillation_{d}")
        from lspipe.experiments.teacher_projection import FIGURE_STEM

        for d in self.teacher_projections:
            out += p.figures(FIGURE_STEM.format(dataset=d))
        out += [p.report("claims.md"), p.report("claims.json"), p.report("claims.rst"),
                p.table("experiments.csv"), p.table("experiments.md")]
        if self.tightness_models:
            out.append(p.table("tightness.csv"))
        return out


def _quote(s: str) -> str:
    import shlex

    return shlex.quote(s)
