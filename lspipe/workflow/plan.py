"""The workflow's plan of a configuration: where validation starts, each experiment's plan, the
multi-model training jobs and the final targets.

One module owns what the Snakemake rules and the tests both need to know about a (validated)
configuration, so nothing of it is spelled twice:

- validation: :func:`validate` (and :func:`load` for a file) checks the schema and the references
  between sections (:func:`lspipe.core.config.validate`), then every experiment's own
  cross-checks (:func:`check`), once;
- the experiments' plans, computed once: :class:`Plan` (distillation entries, Table 3 grids, Fig. 1
  rows, Fig. 6 plan, teacher projections, claim 2's dumps, every trained model), with the path
  templates of the results folder (:attr:`Plan.paths`, :class:`lspipe.base.paths.Paths`);
- the multi-model training jobs (fused teacher grids, lockstep students): :meth:`Plan.grouped_jobs`;
- the final targets of ``rule all``: :meth:`Plan.final_targets`.

Run names are :mod:`lspipe.base.runs`' (``a<alpha>_s<seed>``, ``kd-<arch>-a<alpha>-T<T>_s<seed>``).
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from lspipe.base.errors import ConfigError
from lspipe.base.paths import Paths
from lspipe.base.runs import objective_run, run_name
from lspipe.core import config as core_config
from lspipe.experiments import calibration, claims, distill, mi, projection, teacher_projection


def validate(config: dict, schema: dict | None = None) -> dict:
    """Validate ``config`` in place (filling the schema's defaults) and return it; raise
    :class:`~lspipe.base.errors.ConfigError` naming every problem and its fix.

    First the schema and the references between sections (:func:`lspipe.core.config.validate`),
    then, when those hold, the experiments' own cross-checks (:func:`check`)."""
    core_config.validate(config, schema)
    problems = check(config)
    if problems:
        raise ConfigError("invalid lspipe config:\n  - " + "\n  - ".join(problems))
    return config


def load(path: str | Path) -> dict:
    """Read (refusing duplicate keys) and validate (:func:`validate`) a YAML config file."""
    return validate(core_config.load_yaml(path) or {})


def check(config: dict) -> list[str]:
    """The experiments' cross-checks the schema cannot express (each names the key and the fix), of
    a config whose schema and references are known good (:func:`validate` runs them)."""
    plan = Plan(config)
    problems = []
    for name in ("teacher_runs", "distill", "calibration_grids", "projection_models", "mi", "teacher_projections"):
        try:
            getattr(plan, name)
        except ConfigError as err:
            problems.append(str(err))
    return problems


def grid_objectives(grid: dict) -> list[dict]:
    """The objectives of a teacher grid (``teachers[]``), one teacher each per seed: label smoothing at
    each of ``alphas``, then ``objectives`` (lspipe.core.losses values)."""
    return [{"kind": "ls", "alpha": float(a)} for a in grid["alphas"]] + [dict(v) for v in grid.get("objectives") or []]


class Plan:
    """What a validated configuration makes: each experiment's plan, computed once."""

    def __init__(self, config: dict):
        self.config = config
        self.paths = Paths(config["results"], config["figures"]["formats"])

    # ------------------------------------------------------------------ the experiments' plans

    @cached_property
    def distill(self) -> dict[str, dict]:
        """The ``distillation`` entries by dataset (Fig. 5)."""
        return distill.entries_by_dataset(self.config.get("distillation", []))

    @cached_property
    def twins(self) -> dict[str, dict[str, str]]:
        """Per distillation dataset: student baselines trained as a teacher (lspipe.experiments.distill.teacher_twins)."""
        return {ds: distill.teacher_twins(d, self.config["teachers"], self.config.get("recipes", {}))
                for ds, d in self.distill.items()}

    @cached_property
    def calibration_grids(self) -> list[tuple[str, str, float, list[int]]]:
        """Teacher grids in Table 3 / Fig. 2: (dataset, arch, LS alpha, seeds)."""
        return calibration.table3_grids(self.config)

    @cached_property
    def projection_models(self) -> list[tuple[str, str, int]]:
        """(dataset, arch, seed) of each Fig. 1 row."""
        return projection.projection_models(self.config)

    @cached_property
    def mi(self) -> dict[tuple[str, str], dict]:
        """Fig. 6: (dataset, arch) -> alphas, seeds, title (lspipe.experiments.mi.fig6_plan)."""
        return mi.fig6_plan(self.config)

    @cached_property
    def teacher_projections(self) -> dict[str, dict]:
        """Per distillation dataset with a ``teacher_projection``: its settings (lspipe.experiments.teacher_projection.plan)."""
        return {d["dataset"]: p for i, d in enumerate(self.config.get("distillation", []))
                if (p := teacher_projection.plan(d, f"distillation[{i}]")) is not None}

    @cached_property
    def tightness_models(self) -> list[tuple[str, str, float, int]]:
        """(dataset, arch, alpha, seed) of the teacher dumps of claim 2 (lspipe.experiments.claims.tightness_models)."""
        return claims.tightness_models(self.config)

    @cached_property
    def teacher_runs(self) -> dict[tuple[str, str, str], dict]:
        """``(dataset, arch, run)`` of every teacher -> its objective value and seed (run names from
        :func:`lspipe.base.runs.objective_run`); a run named twice is a :class:`ConfigError`."""
        out = {}
        for i, g in enumerate(self.config["teachers"]):
            for v in grid_objectives(g):
                for s in g["seeds"]:
                    key = (g["dataset"], g["arch"], objective_run(v, s))
                    if key in out:
                        raise ConfigError(f"teachers[{i}]: the teacher {key[2]} of {key[0]}/{key[1]} is listed twice "
                                          "(an objective repeats one of alphas, or two grids overlap); list it once")
                    out[key] = {"objective": v, "seed": int(s)}
        return out

    @cached_property
    def trained_models(self) -> list[tuple[str, str, str, str]]:
        """``(dataset, arch, role, run)`` of every model the config trains: teachers, then students."""
        models = [(ds, arch, "teacher", run) for ds, arch, run in self.teacher_runs]
        for d, entry in self.distill.items():
            # a student baseline that is a teacher's very run is trained once, as that teacher (its row)
            models += [(d, entry["student_arch"], "student", r.name) for r in distill.student_runs(entry)
                       if r.name not in self.twins[d]]
        return models

    # ------------------------------------------------------------------ multi-model training jobs

    @cached_property
    def grouped_jobs(self) -> list[dict]:
        """The training jobs that train several models at once, one dict per job (one generated rule each).

        Fused teacher grids (``teachers[].fuse``): per seed, every alpha of the grid as one fused
        network. Lockstep students (``distillation[].lockstep``, groups from
        lspipe.experiments.distill.lockstep_groups): per seed, the hard-target teacher's students at every T, and
        the student baselines not trained as a teacher. Each is one ``lspipe train`` job whose
        ``"objectives"`` (one value per model, :mod:`lspipe.core.losses`) hold every hyper-parameter
        of the members and ``"fuse"`` whether they run as one fused network; it writes the ordinary
        ``model.pt`` and ``metrics.csv`` of its models, the files the single-run rule named by
        ``"single"`` would write.
        """

        p, jobs = self.paths, []
        for g in self.config["teachers"]:
            if not g.get("fuse"):
                continue
            ds, arch = g["dataset"], g["arch"]
            for s in g["seeds"]:
                jobs.append({
                    "name": f"train_teacher_fused_{ds}_{arch}_s{int(s)}", "single": "train_teacher",
                    "dataset": ds, "arch": arch, "role": "teacher", "seed": int(s), "recipe": g["recipe"],
                    "runs": [objective_run(v, s) for v in grid_objectives(g)], "teacher": [], "fuse": True,
                    "objectives": grid_objectives(g),
                    "log": ("train_teacher_fused", ds, arch, f"s{int(s)}"),
                })
        for ds, d in self.distill.items():
            arch = d["student_arch"]
            for grp in distill.lockstep_groups(d, self.twins[ds]):
                kd, s = grp["family"] == "kd_hard", grp["seed"]
                teacher = p.model(ds, d["teacher_arch"], "teacher", run_name(0, s))
                if kd:
                    objectives = [{"kind": "kd", "teacher": teacher, "T": float(t), "beta": float(d["beta"]),
                                   "form": d["form"]} for t in grp["temperatures"]]
                else:
                    objectives = [{"kind": "ls", "alpha": float(a)} for a in grp["alphas"]]
                jobs.append({
                    "name": f"train_students_lockstep_{ds}_{grp['family']}_s{s}",
                    "single": "train_student_distilled" if kd else "train_student_baseline",
                    "dataset": ds, "arch": arch, "role": "student", "seed": s, "recipe": d["student_recipe"],
                    "runs": list(grp["runs"]), "teacher": [teacher] if kd else [], "fuse": bool(d["fuse_students"]),
                    "objectives": objectives, "log": ("train_students_lockstep", ds, arch, f"{grp['family']}_s{s}"),
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

        for d in self.teacher_projections:
            out += p.figures(teacher_projection.FIGURE_STEM.format(dataset=d))
        out += [p.report("claims.md"), p.report("claims.json"), p.report("claims.rst"),
                p.table("experiments.csv"), p.table("experiments.md")]
        if self.tightness_models:
            out.append(p.table("tightness.csv"))
        return out
