"""The training jobs of a configuration, each one value, and the rules that run them.

A :class:`TrainingJob` is everything one ``lspipe train`` job needs: the dataset, architecture, role
and seed of its models, its recipe, one objective per model (:mod:`lspipe.core.losses` values, the
canonical order of :func:`canonical_order`), their run names (:mod:`lspipe.base.runs`) and output
files, the teachers it reads, whether its models train as one fused network, the probe it records
and the GPU layout of each model (:class:`Layout`). :func:`training_jobs` lists every job of a
configuration, once: the single-model jobs (a teacher, a student baseline, a distilled student) and
the multi-model ones (a fused teacher grid per seed, the lockstep students of a seed). The workflow's
training rules, the benchmark's projection (``lspipe bench --project``) and the plan's model lookups
(:meth:`lspipe.workflow.plan.Plan.job`) all read this one list.

The builders take the plan (:class:`lspipe.workflow.plan.Plan`, which imports this module and passes
itself in). A :class:`TrainingRule` is a rule of the workflow that runs jobs: the wildcard rules ``train_teacher``,
``train_student_baseline`` and ``train_student_distilled`` (one single-model job per match), and one
rule per multi-model job, named after it. Every training rule is one skeleton
(``workflow/rules/train.smk``); a rule differs from the others only in its name, its jobs and its own
options (:attr:`TrainingRule.options`).

The GPU layout of a model (``resources.gpus_per_model``, ``teachers[].gpus_per_model``) is checked
here, as the plan is built: whole nodes (:func:`layout`), a global batch that divides by the GPUs
(:func:`check_batch`), no probe on several processes. :func:`rule_resources` turns a layout into the
``resources:`` of a training rule (what the Snakemake SLURM executor plugin turns into ``sbatch``
options); ``lspipe launch`` (:mod:`lspipe.launch`) starts the processes inside the job.
"""

from __future__ import annotations

from dataclasses import dataclass
from lspipe.base.errors import ConfigError
from lspipe.base.runs import objective_run
from lspipe.experiments import distill

AUTO = "auto"


# --------------------------------------------------------------------------- the GPU layout of a model


@dataclass(frozen=True)
class Layout:
    """How one model's training processes are laid out: ``gpus`` in all (or ``"auto"``) on ``nodes`` nodes,
    ``per_node`` processes (one per GPU) on each (None for auto: known only on the job's machine)."""

    gpus: int | str
    nodes: int
    per_node: int | None

    @property
    def single(self) -> bool:
        """One process, no torchrun: today's ``lspipe train`` command."""
        return self.gpus == 1

    @property
    def multi_node(self) -> bool:
        return self.nodes > 1

    def args(self) -> str:
        """The ``lspipe launch`` options describing this layout."""
        if self.gpus == AUTO:
            return "--gpus auto"
        return f"--gpus {self.gpus} --nodes {self.nodes}"


def layout(gpus_per_model, gpus_per_node: int, where: str = "resources.gpus_per_model") -> Layout:
    """The layout of a model trained on ``gpus_per_model`` GPUs (an int >= 1 or ``"auto"``) on nodes of
    ``gpus_per_node`` GPUs. More GPUs than a node has must fill whole nodes."""
    if gpus_per_model == AUTO:
        return Layout(AUTO, 1, None)
    if isinstance(gpus_per_model, bool) or not isinstance(gpus_per_model, int) or gpus_per_model < 1:
        raise ConfigError(f"{where} must be a whole number >= 1 or 'auto', got {gpus_per_model!r}")
    if gpus_per_node < 1:
        raise ConfigError(f"resources.gpus_per_node must be >= 1, got {gpus_per_node!r}")
    if gpus_per_model <= gpus_per_node:
        return Layout(gpus_per_model, 1, gpus_per_model)
    if gpus_per_model % gpus_per_node:
        raise ConfigError(
            f"{where} {gpus_per_model} spans several nodes of resources.gpus_per_node {gpus_per_node} GPUs and must "
            f"fill whole nodes: use a multiple of {gpus_per_node}, or at most {gpus_per_node}")
    return Layout(gpus_per_model, gpus_per_model // gpus_per_node, gpus_per_node)


def check_batch(lay: Layout, batch_size: int, recipe: str, where: str) -> None:
    """The recipe's batch is global and is split evenly over the processes (lspipe.engine.distributed)."""
    if isinstance(lay.gpus, int) and batch_size % lay.gpus:
        raise ConfigError(
            f"recipes.{recipe}.batch_size {batch_size} is the global batch of a model trained on {lay.gpus} GPUs "
            f"({where}) and must divide by {lay.gpus}: choose a batch size or GPU count that fit")


def rule_resources(lay: Layout, *, gpus_per_job: int, gpu_model: str | None, threads: int) -> dict:
    """A training rule's GPU, node, task and CPU resources for the Snakemake SLURM executor plugin.

    Keys whose value is None are left out of the job (Snakemake drops None resources), so a one-GPU
    model's job asks for exactly what it asked for before GPUs per model existed."""
    res = {"gpu": None, "gpu_model": gpu_model or None, "nodes": None, "tasks": None, "mpi": None,
           "slurm_extra": None, "cpus_per_task": None}
    if lay.single or lay.gpus == AUTO:
        res["gpu"] = gpus_per_job
        return res
    if not lay.multi_node:
        res["gpu"] = lay.gpus
        res["cpus_per_task"] = threads * lay.per_node
        return res
    # several nodes: one task (one torchrun) per node, G GPUs on each. The plugin's `gpu` asks for the job's
    # total (--gpus), which SLURM may spread unevenly, and turns `tasks` of a GPU job into --ntasks-per-gpu:
    # so the GPUs go through slurm_extra, and `mpi` makes the plugin run the command in the batch script
    # (where srun can start one process per node) instead of inside a one-task srun.
    res.update(gpu_model=None, nodes=lay.nodes, tasks=lay.nodes, mpi="srun",
               slurm_extra=f"--gpus-per-node={gpu_model + ':' if gpu_model else ''}{lay.per_node}",
               cpus_per_task=threads * lay.per_node)
    return res


def checked_layout(config: dict, gpus, where: str, recipe: str, probe=None, grid: str = "") -> Layout:
    """The layout of the models of a teacher grid (``grid``: ``teachers[i]``, with its ``probe``) or of the
    students (``recipe``: their recipe's name), checked: whole nodes, a batch that divides by the GPUs, no
    probe on several processes (it records in one)."""
    lay = layout(gpus, config["resources"]["gpus_per_node"], where)
    check_batch(lay, config["recipes"][recipe]["batch_size"], recipe, where)
    if probe and not lay.single:
        raise ConfigError(f"{where} is {gpus}, but {grid} records the MI probe ({grid}.probe), which trains in one "
                          f"process: set {grid}.gpus_per_model: 1 or {grid}.probe: null")
    return lay


# --------------------------------------------------------------------------- the jobs


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


@dataclass(frozen=True)
class TrainingJob:
    """One ``lspipe train`` job: G >= 1 models of one dataset, architecture, role, seed and recipe, one per
    objective. ``rule`` is the rule that runs it (``train_teacher``, ``train_student_baseline``,
    ``train_student_distilled`` for one model; a multi-model job's own, ``grouped``); ``recipe`` names a
    ``recipes`` entry; ``models``, ``metrics`` and ``probes`` are its output files (a probe trace or
    placeholder per single teacher, a trace per member of a probed fused grid); ``teachers`` the teachers'
    model.pt it reads; ``probe`` the grid's probe settings (None for none); ``log`` the parts of its log
    and benchmark paths (:meth:`lspipe.base.paths.Paths.log`)."""

    rule: str
    dataset: str
    arch: str
    role: str
    seed: int
    recipe: str
    objectives: tuple[dict, ...]
    runs: tuple[str, ...]
    models: tuple[str, ...]
    metrics: tuple[str, ...]
    probes: tuple[str, ...]
    teachers: tuple[str, ...]
    fuse: bool
    probe: dict | None
    layout: Layout
    log: tuple[str, ...]
    grouped: bool

    def objective(self, run: str) -> dict:
        """The objective of the model named ``run``."""
        return self.objectives[self.runs.index(run)]


def _job(plan, rule: str, dataset: str, arch: str, role: str, seed: int, recipe: str, objectives, runs, *,
         teachers=(), fuse: bool, probe=None, probes=False, lay: Layout, grouped=False, log=None) -> TrainingJob:
    p = plan.paths
    models = [(dataset, arch, role, r) for r in runs]
    return TrainingJob(
        rule=rule, dataset=dataset, arch=arch, role=role, seed=int(seed), recipe=recipe, objectives=tuple(objectives),
        runs=tuple(runs), models=tuple(p.model(*m) for m in models), metrics=tuple(p.metrics(*m) for m in models),
        probes=tuple(p.probe(dataset, arch, r) for r in runs) if probes else (), teachers=tuple(teachers),
        fuse=bool(fuse), probe=probe or None, layout=lay, log=tuple(log or (rule, dataset, arch, runs[0])), grouped=grouped)


def teacher_jobs(plan, layouts: dict) -> list[TrainingJob]:
    """Every teacher's job: per fused grid (``teachers[].fuse``) and seed one job of all its objectives, one
    fused network; every other teacher alone (rule ``train_teacher``, which writes a probe trace, or a
    placeholder for a grid without a probe)."""
    jobs = []
    for g in plan.config["teachers"]:
        ds, arch = g["dataset"], g["arch"]
        lay = layouts[("teacher", ds, arch)]
        members = canonical_order(grid_objectives(g))  # the config's order of alphas has no meaning
        for s in g["seeds"]:
            if g.get("fuse"):
                jobs.append(_job(plan, f"train_teacher_fused_{ds}_{arch}_s{int(s)}", ds, arch, "teacher", s, g["recipe"],
                                 members, [objective_run(v, s) for v in members], fuse=True, probe=g.get("probe"),
                                 probes=bool(g.get("probe")), lay=lay, grouped=True,
                                 log=("train_teacher_fused", ds, arch, f"s{int(s)}")))
            else:
                jobs += [_job(plan, "train_teacher", ds, arch, "teacher", s, g["recipe"], [v], [objective_run(v, s)],
                              fuse=False, probe=g.get("probe"), probes=True, lay=lay) for v in members]
    return jobs


def student_jobs(plan, layouts: dict) -> list[TrainingJob]:
    """Every student's job (``distillation``): per lockstep group (:func:`lspipe.experiments.distill.lockstep_groups`)
    one job, every other student alone (rules ``train_student_baseline``, ``train_student_distilled``);
    none for a baseline trained as a teacher (:func:`lspipe.experiments.distill.teacher_twins`)."""
    jobs = []
    for ds, d in plan.distillation.entries.items():
        arch, lay, twins = d["student_arch"], layouts[("student", ds, d["student_arch"])], plan.distillation.twins[ds]

        def teacher(r):
            return plan.paths.model(ds, d["teacher_arch"], "teacher", r.teacher_run)

        grouped = set()
        for grp in distill.lockstep_groups(d, twins):
            runs, s = grp["runs"], grp["seed"]
            teachers = list(dict.fromkeys(teacher(r) for r in runs if r.distilled))
            jobs.append(_job(plan, f"train_students_lockstep_{ds}_{grp['family']}_s{s}", ds, arch, "student", s,
                             d["student_recipe"], [distill.objective(d, r, teacher(r)) for r in runs],
                             [r.name for r in runs], teachers=teachers, fuse=d["fuse_students"], lay=lay, grouped=True,
                             log=("train_students_lockstep", ds, arch, f"{grp['family']}_s{s}")))
            grouped |= {r.name for r in runs}
        for r in distill.student_runs(d):
            if r.name in twins or r.name in grouped:
                continue
            jobs.append(_job(plan, "train_student_distilled" if r.distilled else "train_student_baseline", ds, arch,
                             "student", r.seed, d["student_recipe"], [distill.objective(d, r, teacher(r))], [r.name],
                             teachers=[teacher(r)] if r.distilled else [], fuse=False, lay=lay))
    return jobs


def layouts(plan, problems: list[str]) -> dict[tuple[str, str, str], Layout]:
    """``(role, dataset, arch)`` -> the checked layout (:func:`checked_layout`) of every teacher grid and of
    every distillation entry's students; each problem is appended to ``problems`` (its layout is then one GPU,
    so that planning goes on and every problem is named)."""
    cfg, out = plan.config, {}
    default = cfg["resources"]["gpus_per_model"]
    wanted = [(("teacher", t["dataset"], t["arch"]), default if t.get("gpus_per_model") is None else t["gpus_per_model"],
               f"teachers[{i}].gpus_per_model" if t.get("gpus_per_model") is not None else "resources.gpus_per_model",
               t["recipe"], t.get("probe"), f"teachers[{i}]") for i, t in enumerate(cfg["teachers"])]
    wanted += [(("student", ds, d["student_arch"]), default, "resources.gpus_per_model", d["student_recipe"], None, "")
               for ds, d in plan.distillation.entries.items()]
    for key, gpus, where, recipe, probe, grid in wanted:
        try:
            out[key] = checked_layout(cfg, gpus, where, recipe, probe, grid)
        except ConfigError as err:
            if str(err) not in problems:
                problems.append(str(err))
            out[key] = Layout(1, 1, 1)
    return out


def training_jobs(plan, problems: list[str]) -> list[TrainingJob]:
    """Every training job of the plan's configuration: the teachers' (:func:`teacher_jobs`), then the
    students' (:func:`student_jobs`). Layout problems are appended to ``problems``."""
    lays = layouts(plan, problems)
    return teacher_jobs(plan, lays) + student_jobs(plan, lays)


# --------------------------------------------------------------------------- the rules that run them


@dataclass(frozen=True)
class TrainingRule:
    """A training rule of the workflow: a wildcard rule running one single-model job per match (``jobs``: all
    of them, maybe none), or a multi-model job's own rule (``grouped``; ``jobs``: that one). ``options`` are
    the rule's own ``lspipe train`` options beside those of every training job: ``probe`` (a single teacher:
    its probe settings and probe output), ``expect_teachers`` (what the config trains each teacher with),
    ``fuse`` (a multi-model job: fused or not, and a probed grid's probe outputs)."""

    name: str
    role: str
    jobs: tuple[TrainingJob, ...]
    options: tuple[str, ...]
    grouped: bool = False

    WILDCARDS = ("{dataset}", "{arch}", "{run}")

    @property
    def log(self) -> tuple[str, ...]:
        """The parts of the rule's log and benchmark paths: its jobs' (:attr:`TrainingJob.log`), with wildcards."""
        return self.jobs[0].log if self.grouped else (self.name, *self.WILDCARDS)

    def outputs(self, paths) -> dict:
        """The rule's outputs (``model``, ``metrics`` and, where it writes probe traces, ``probe``): its job's
        files, or the templates of a wildcard rule's (``paths``: :class:`lspipe.base.paths.Paths`)."""
        if self.grouped:
            job = self.jobs[0]
            out = {"model": list(job.models), "metrics": list(job.metrics)}
            return {**out, "probe": list(job.probes)} if job.probes else out
        ds, arch, run = self.WILDCARDS
        out = {"model": paths.model(ds, arch, self.role, run), "metrics": paths.metrics(ds, arch, self.role, run)}
        return {**out, "probe": paths.probe(ds, arch, run)} if "probe" in self.options else out

    def matches(self) -> dict[str, list[str]]:
        """The values each wildcard of a wildcard rule takes: exactly its jobs' datasets, archs and runs."""
        if self.grouped:
            return {}
        return {"dataset": sorted({j.dataset for j in self.jobs}), "arch": sorted({j.arch for j in self.jobs}),
                "run": sorted({r for j in self.jobs for r in j.runs})}


# the wildcard rules: name -> (role, options)
SINGLE_RULES = {
    "train_teacher": ("teacher", ("probe",)),
    "train_student_baseline": ("student", ()),
    "train_student_distilled": ("student", ("expect_teachers",)),
}


def training_rules(jobs: list[TrainingJob]) -> list[TrainingRule]:
    """The rules running ``jobs``: the wildcard rules (:data:`SINGLE_RULES`, each with its single-model jobs),
    then one per multi-model job."""
    rules = [TrainingRule(name, role, tuple(j for j in jobs if j.rule == name), options)
             for name, (role, options) in SINGLE_RULES.items()]
    return rules + [TrainingRule(j.rule, j.role, (j,), ("fuse", "expect_teachers"), grouped=True)
                    for j in jobs if j.grouped]
