"""The workflow's plan of a configuration: where validation starts, each experiment's plan, the
multi-model training jobs and the final targets.

One module owns what the Snakemake rules and the tests both need to know about a (validated)
configuration, so nothing of it is spelled twice:

- the experiments: :data:`EXPERIMENTS`, one line each. Every experiment module of floor 3 exposes
  its plan as a class (``AccuracyPlan``, ``CalibrationPlan``, ...) with a ``name`` (its attribute on
  :class:`Plan`), a constructor taking the :class:`Plan` that checks the experiment's part of the
  config (raising :class:`~lspipe.base.errors.ConfigError`, each check written once, in its
  experiment), methods naming its input files (``PLAN.calibration.jsons(dataset, arch)``) and
  ``targets()``, its final outputs;
- validation: :func:`build` (and :func:`load` for a file) checks the schema and the references
  between sections (:func:`lspipe.core.config.validate`), then builds the :class:`Plan`, whose
  construction checks the teachers' data (:func:`lspipe.core.data.inspect_source`, cheap: folders
  listed, not walked; :attr:`Plan.sources`, :meth:`Plan.check_classes`, :attr:`Plan.warnings`) and
  runs every experiment's checks: the Plan the rules use is the one that was checked, built once;
- the trained models and the multi-model training jobs (fused teacher grids, lockstep students):
  :attr:`Plan.trained_models`, :attr:`Plan.grouped_jobs`;
- the final targets of ``rule all``: :meth:`Plan.final_targets`, every experiment's ``targets()``.

Run names are :mod:`lspipe.base.runs`' (``a<alpha>_s<seed>``, ``kd-<arch>-a<alpha>-T<T>_s<seed>``).
"""

from __future__ import annotations

import difflib
from functools import cached_property
from pathlib import Path

from lspipe.base.errors import ConfigError, DataError
from lspipe.base.paths import Paths
from lspipe.base.runs import objective_run, run_name
from lspipe.core import config as core_config
from lspipe.core.data import SourceInfo, inspect_source
from lspipe.experiments import (accuracy, calibration, claims, distill, distill_toy, experiment_table, learning_curves, mi,
                                projection, teacher_projection)

# The experiments of the workflow: each one's plan becomes the Plan attribute its ``name`` says, in
# this order (which is also the order of the final targets). A new experiment is one line here.
EXPERIMENTS = (
    accuracy.AccuracyPlan,  # Table 2
    calibration.CalibrationPlan,  # Table 3, Fig. 2
    projection.ProjectionPlan,  # Fig. 1
    mi.MIPlan,  # Fig. 6
    distill.DistillationPlan,  # Fig. 5
    distill_toy.DistillationToyPlan,  # the MNIST distillation toy's table (section 4)
    teacher_projection.TeacherProjectionPlan,  # the distillation teachers' projections
    claims.ClaimsPlan,  # the claims report (and claim 2's tightness table)
    experiment_table.ExperimentTablePlan,  # one row per trained model
    learning_curves.LearningCurvesPlan,  # training loss and validation accuracy over the steps, per teacher grid
)


def build(config: dict, schema: dict | None = None) -> Plan:
    """Validate ``config`` in place (filling the schema's defaults) and return its :class:`Plan`; raise
    :class:`~lspipe.base.errors.ConfigError` naming every problem and its fix.

    First the schema and the references between sections (:func:`lspipe.core.config.validate`),
    then, when those hold, every experiment's own checks (building the :class:`Plan`)."""
    core_config.validate(config, schema)
    return Plan(config)


def validate(config: dict, schema: dict | None = None) -> dict:
    """Validate ``config`` in place (:func:`build`) and return it."""
    build(config, schema)
    return config


def load(path: str | Path) -> dict:
    """Read (refusing duplicate keys) and validate (:func:`validate`) a YAML config file."""
    return validate(core_config.load_yaml(path) or {})


def canonical_order(objectives: list[dict]) -> list[dict]:
    """The members of a multi-model job in one order whatever the config's: label smoothing by alpha, then
    the other objectives by kind and parameters (the order of a grid's alphas means nothing, so reordering
    them changes no job and retrains nothing)."""
    def key(v):
        return (v["kind"] != "ls", v["kind"], float(v.get("alpha", 0.0)),
                sorted((k, str(x)) for k, x in v.items() if k != "kind"))

    return sorted(objectives, key=key)


def grid_objectives(grid: dict) -> list[dict]:
    """The objectives of a teacher grid (``teachers[]``), one teacher each per seed: label smoothing at
    each of ``alphas``, then ``objectives`` (lspipe.core.losses values)."""
    return [{"kind": "ls", "alpha": float(a)} for a in grid["alphas"]] + [dict(v) for v in grid.get("objectives") or []]


class Plan:
    """What a validated configuration makes: each experiment's plan (an attribute per entry of
    :data:`EXPERIMENTS`), the trained models and the multi-model training jobs, computed once.

    Building it runs every experiment's checks of the config; a ``ConfigError`` lists every problem
    found, one per line."""

    def __init__(self, config: dict):
        self.config = config
        self.paths = Paths(config["results"], config["figures"]["formats"])
        problems = []
        # the data the teachers train on, checked before any job runs (lspipe.core.data.inspect_source: the
        # root and its folders, listed, not walked); the experiments check their class names against them
        self.sources: dict[str, SourceInfo] = {}
        self.warnings: list[str] = []  # printed by the workflow while it plans (common.smk)
        for name in dict.fromkeys(g["dataset"] for g in config["teachers"]):
            try:
                self.sources[name] = inspect_source(name, config["datasets"][name])
                self.warnings += self.sources[name].warnings
            except DataError as err:
                problems.append(str(err))
        try:
            self.teacher_runs  # every teacher named once
        except ConfigError as err:
            problems.append(str(err))
        for experiment in EXPERIMENTS:
            try:
                setattr(self, experiment.name, experiment(self))
            except ConfigError as err:
                problems.append(str(err))
        if problems:
            raise ConfigError("invalid lspipe config:\n  - " + "\n  - ".join(problems))

    def check_classes(self, dataset: str, names, where: str) -> None:
        """Raise :class:`ConfigError` when class ``names`` (config key ``where``) are not classes of
        ``dataset`` (:attr:`sources`: the tree's class folders, digits' or CIFAR's names); nothing to
        check when those are not known (a dataset whose check failed, CIFAR-100 still to be downloaded)."""
        classes = self.sources[dataset].classes if dataset in self.sources else None
        unknown = [n for n in names if classes is not None and n not in classes]
        if unknown:
            near = {n: difflib.get_close_matches(n, classes, 1) for n in unknown}
            hint = "; ".join(f"{n!r}: did you mean {m[0]!r}?" for n, m in near.items() if m)
            shown = ", ".join(classes[:12]) + (f", ... ({len(classes)} in all)" if len(classes) > 12 else "")
            raise ConfigError(f"{where} {unknown} are not classes of dataset {dataset!r} (its classes: {shown})"
                              + (f" ({hint})" if hint else "") + f"; fix {where}")

    # ------------------------------------------------------------------ the distillation entries (training needs them)

    @property
    def distill(self) -> dict[str, dict]:
        """The ``distillation`` entries by dataset (Fig. 5; ``self.distillation.entries``)."""
        return self.distillation.entries

    @property
    def twins(self) -> dict[str, dict[str, str]]:
        """Per distillation dataset: student baselines trained as a teacher (lspipe.experiments.distill.teacher_twins)."""
        return self.distillation.twins

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
    def archs(self) -> list[str]:
        """Every architecture the config names (teacher grids and students), sorted."""
        names = {arch for _, arch, _ in self.teacher_runs}
        for entry in self.distill.values():
            names |= {entry["teacher_arch"], entry["student_arch"]}
        return sorted(names)

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
        ``"single"`` would write, and, when ``"probe"`` holds the grid's probe settings
        (``teachers[].probe``), each model's probe trace ``probe.h5``.
        """

        p, jobs = self.paths, []
        for g in self.config["teachers"]:
            if not g.get("fuse"):
                continue
            ds, arch = g["dataset"], g["arch"]
            members = canonical_order(grid_objectives(g))  # the config's order of alphas has no meaning
            for s in g["seeds"]:
                jobs.append({
                    "name": f"train_teacher_fused_{ds}_{arch}_s{int(s)}", "single": "train_teacher",
                    "dataset": ds, "arch": arch, "role": "teacher", "seed": int(s), "recipe": g["recipe"],
                    "runs": [objective_run(v, s) for v in members], "teacher": [], "fuse": True,
                    "objectives": members, "probe": g.get("probe"),
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
                    "objectives": objectives, "probe": None,
                    "log": ("train_students_lockstep", ds, arch, f"{grp['family']}_s{s}"),
                })
        return jobs

    def model_identity(self, dataset: str, arch: str, role: str, run: str) -> dict:
        """What made the model ``(dataset, arch, role, run)`` as this config trains it: ``recipe`` (the
        ``recipes.<name>`` entry, as the training rules pass it), ``objective`` (the value its training job
        gets, :mod:`lspipe.core.losses`) and ``seed``. A model put in its place is checked against it before
        it is dumped or distilled from (:func:`lspipe.core.models.identity_problems`); :class:`ConfigError`
        for a model the config does not train."""
        if role == "teacher":
            if (dataset, arch, run) not in self.teacher_runs:
                raise ConfigError(f"no teacher {run} of {dataset}/{arch} in the config's teacher grids (teachers)")
            grid = next(g for g in self.config["teachers"] if (g["dataset"], g["arch"]) == (dataset, arch))
            got = self.teacher_runs[(dataset, arch, run)]
            return {"recipe": self.config["recipes"][grid["recipe"]], "objective": got["objective"], "seed": got["seed"]}
        entry = distill.entry_for(self.distill, dataset, arch)
        try:
            r = distill.parse_student_run(run)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        if r.distilled:
            teacher = self.paths.model(dataset, r.teacher_arch, "teacher", run_name(r.teacher_alpha, r.seed))
            objective = {"kind": "kd", "teacher": teacher, "T": float(r.temperature), "beta": float(entry["beta"]),
                         "form": entry["form"]}
        else:
            objective = {"kind": "ls", "alpha": float(r.alpha)}
        return {"recipe": self.config["recipes"][entry["student_recipe"]], "objective": objective, "seed": int(r.seed)}

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
        """Every final output of the workflow (``rule all``): each experiment's targets."""
        return [t for experiment in EXPERIMENTS for t in getattr(self, experiment.name).targets()]
