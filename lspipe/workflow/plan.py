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
  construction checks the teachers' data (:func:`lspipe.core.survey.inspect_source`, cheap: folders
  listed, not walked; :attr:`Plan.sources`, :meth:`Plan.check_classes`, :attr:`Plan.warnings`) and
  runs every experiment's checks: the Plan the rules use is the one that was checked, built once;
- the trained models and every training job, each one value (:mod:`lspipe.workflow.jobs`): single
  runs, fused teacher grids, lockstep students, with their GPU layouts, checked as the plan is built:
  :attr:`Plan.trained_models`, :attr:`Plan.training_jobs`, :meth:`Plan.job`, :attr:`Plan.training_rules`;
- the final targets of ``rule all``: :meth:`Plan.final_targets`, every experiment's ``targets()``.

Run names are :mod:`lspipe.base.runs`' (``a<alpha>_s<seed>``, ``kd-<arch>-a<alpha>-T<T>_s<seed>``).
"""

from __future__ import annotations

import difflib
from functools import cached_property
from pathlib import Path

from lspipe.base.errors import ConfigError, DataError
from lspipe.base.paths import Paths
from lspipe.base.runs import objective_run
from lspipe.core import config as core_config
from lspipe.core.index import choose_storage
from lspipe.core.survey import SourceInfo, inspect_source
from lspipe.engine.tracking import require_tensorboard
from lspipe.experiments import (accuracy, calibration, claims, distill, distill_toy, experiment_table, learning_curves, mi,
                                 projection, teacher_projection)
from lspipe.workflow import jobs as jobs_mod
from lspipe.workflow.jobs import TrainingJob, TrainingRule, grid_objectives

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
    claims.inputs.ClaimsPlan,  # the claims report (and claim 2's tightness table)
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


class Plan:
    """What a validated configuration makes: each experiment's plan (an attribute per entry of
    :data:`EXPERIMENTS`), the trained models and the multi-model training jobs, computed once.

    Building it runs every experiment's checks of the config; a ``ConfigError`` lists every problem
    found, one per line."""

    def __init__(self, config: dict, inspect_data: bool = True):
        self.config = config
        self.paths = Paths(config["results"], config["figures"]["formats"])
        problems = []
        # the data the teachers train on, checked before any job runs (lspipe.core.survey.inspect_source: the
        # root and its folders, listed, not walked); the experiments check their class names against them.
        # inspect_data=False (lspipe bench --project: a config's jobs, on a machine without its data) skips it.
        self.sources: dict[str, SourceInfo] = {}
        self.warnings: list[str] = []  # printed by the workflow while it plans (common.smk)
        for name in dict.fromkeys(g["dataset"] for g in config["teachers"]) if inspect_data else ():
            try:
                self.sources[name] = inspect_source(name, config["datasets"][name])
                self.warnings += self.sources[name].warnings
            except DataError as err:
                problems.append(str(err))
        for name, options in config["datasets"].items():
            if options.get("storage") != "auto" or options.get("source") != "imagefolder":  # auto counts the images
                try:  # the storage a source can have (lspipe.core.index.choose_storage), as prepare_data decides it
                    choose_storage(name, options)
                except DataError as err:
                    problems.append(str(err))
        if config["tracking"]["tensorboard"]:  # the logger's package, checked before any job runs
            try:
                require_tensorboard()
            except ConfigError as err:
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
        if not problems:  # the jobs (and their GPU layouts: whole nodes, batch, probe) of a config checked so far
            self.training_jobs: list[TrainingJob] = jobs_mod.training_jobs(self, problems)
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

    # ------------------------------------------------------------------ the trained models and their jobs

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
        for entry in self.distillation.entries.values():
            names |= {entry["teacher_arch"], entry["student_arch"]}
        return sorted(names)

    @cached_property
    def trained_models(self) -> list[tuple[str, str, str, str]]:
        """``(dataset, arch, role, run)`` of every model the config trains: teachers, then students."""
        models = [(ds, arch, "teacher", run) for ds, arch, run in self.teacher_runs]
        for d, entry in self.distillation.entries.items():
            # a student baseline that is a teacher's very run is trained once, as that teacher (its row)
            models += [(d, entry["student_arch"], "student", r.name) for r in distill.student_runs(entry)
                       if r.name not in self.distillation.twins[d]]
        return models

    @cached_property
    def _jobs_by_model(self) -> dict[tuple[str, str, str, str], TrainingJob]:
        return {(j.dataset, j.arch, j.role, run): j for j in self.training_jobs for run in j.runs}

    def job(self, dataset: str, arch: str, role: str, run: str) -> TrainingJob:
        """The training job that makes the model ``(dataset, arch, role, run)`` (:class:`lspipe.workflow.jobs.TrainingJob`:
        its own, or the multi-model job it is a member of); :class:`ConfigError` for a model the config does not
        train (a student baseline trained as a teacher is that teacher's)."""
        try:
            return self._jobs_by_model[(dataset, arch, role, run)]
        except KeyError:
            where = "teacher grids (teachers)" if role == "teacher" else "distillation entries (distillation)"
            raise ConfigError(f"no {role} {run} of {dataset}/{arch} in the config's {where}") from None

    @cached_property
    def training_rules(self) -> list[TrainingRule]:
        """The workflow's training rules (:func:`lspipe.workflow.jobs.training_rules`), one skeleton in
        ``workflow/rules/train.smk``."""
        return jobs_mod.training_rules(self.training_jobs)

    def model_identity(self, dataset: str, arch: str, role: str, run: str) -> dict:
        """What made the model ``(dataset, arch, role, run)`` as this config trains it (:meth:`job`): ``recipe``
        (the ``recipes.<name>`` entry, as the training rules pass it), ``objective`` (the value its training job
        gets, :mod:`lspipe.core.losses`) and ``seed``. A model put in its place is checked against it before
        it is dumped or distilled from (:func:`lspipe.core.models.identity_problems`); :class:`ConfigError`
        for a model the config does not train."""
        job = self.job(dataset, arch, role, run)
        return {"recipe": self.config["recipes"][job.recipe], "objective": job.objective(run), "seed": job.seed}

    def training_benchmark(self, dataset: str, arch: str, role: str, run: str) -> str:
        """Benchmark TSV of the job that trains a model (:meth:`job`); the models of one multi-model job
        share its file."""
        return self.paths.benchmark(*self.job(dataset, arch, role, run).log)

    # ------------------------------------------------------------------ final targets

    def final_targets(self) -> list[str]:
        """Every final output of the workflow (``rule all``): each experiment's targets."""
        return [t for experiment in EXPERIMENTS for t in getattr(self, experiment.name).targets()]
