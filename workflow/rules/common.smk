# Helpers shared by every rules file: config validation and the plan, once (lspipe.workflow.plan: path
# helpers `P`, each experiment's plan, final targets), input and parameter functions, the training shell command.

import json
import os
import re
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

import lspipe.base.errors
import lspipe.base.runs
import lspipe.core.config
import lspipe.workflow.jobs
import lspipe.workflow.plan

# The configuration is validated once, here, and its plan built once: the config files refuse duplicate
# keys (Snakemake's YAML reader keeps the last silently), then the schema (defaults filled in), the
# references between sections, and every experiment's checks, which run as its plan is built
# (lspipe.workflow.plan.build). Every rules file reads its inputs through PLAN (each experiment's plan:
# PLAN.calibration, PLAN.distillation, ...; lspipe.workflow.plan.EXPERIMENTS), never through another
# rules file's globals, so the order of the includes after this file does not matter.
try:
    for _configfile in workflow.configfiles:
        lspipe.core.config.load_yaml(_configfile)
    # --config KEY=VALUE: Snakemake reads these itself, keeping a repeated key's last value silently
    lspipe.core.config.check_config_args(workflow.config_settings.config_args)
    PLAN = lspipe.workflow.plan.build(
        config, lspipe.core.config.load_schema(Path(workflow.basedir) / "workflow/schemas/config.schema.yaml")
    )
except lspipe.base.errors.ConfigError as err:
    raise WorkflowError(str(err))
# what planning noticed but does not stop for (images much larger than image_size, ...), said once, up front
if workflow.is_main_process:
    for _warning in PLAN.warnings:
        print(f"warning: {_warning}", file=sys.stderr)



def names_pattern(names):
    """A wildcard constraint matching exactly ``names`` (configured dataset or arch names)."""
    return "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True)) or r"(?!)"


# The line that ends an `lspipe` command (its one-line error: lspipe.cli) also goes to Snakemake's own stderr: every
# job's shell keeps that open on descriptor 3 before the rule sends stdout and stderr to the log (`> {log} 2>&1`),
# so the line survives a log that cannot be written (the results on a full disk). A shell prefix is no part of
# any rule's text: no finished job reruns for it.
shell.prefix("set -euo pipefail; exec 3>&2; export LSPIPE_ERROR_FD=3; ")

# path templates of the results folder (lspipe.base.paths.Paths)
P = PLAN.paths
# Completed-run records (lspipe.engine.complete) serve only the job Snakemake lost: when a workflow starts,
# the main process releases the record of every model that is absent (deleted: it retrains) or not
# marked incomplete by Snakemake (its job was recorded: a forced rebuild retrains). Job processes
# on a cluster parse this file too, and leave the records alone.
if workflow.is_main_process:
    import lspipe.engine.complete

    lspipe.engine.complete.release_accepted([P.model(*m) for m in PLAN.trained_models])


# One run at a time per results folder, from whatever working directory (lspipe.base.lock): the main
# process holds <results>/.lspipe.lock while it runs jobs (onstart runs only when jobs will run,
# not for dry runs); a second run stops before its first job, naming the first one's directory.
_RESULTS_LOCK = []


onstart:
    if workflow.is_main_process:
        import lspipe.base.lock

        try:
            _RESULTS_LOCK.append(lspipe.base.lock.hold(config["results"]))
        except lspipe.base.errors.UserError as err:  # in use by another run; a full disk
            raise WorkflowError(str(err))
        _damaged = damaged_models(workflow.dag_settings)  # a damaged model: no job runs (damaged_models)
        if _damaged:
            raise WorkflowError("\n".join(_damaged))


# conda envs (`--sdm conda`) install lspipe editable from ${LSPIPE_ROOT} (see envs/lspipe.yaml)
os.environ.setdefault("LSPIPE_ROOT", str(Path(workflow.basedir).resolve()))
ENV_TRAIN = ENV_PLOT = "../../envs/lspipe.yaml"  # one environment for every rule
GPU = config["resources"]["gpus_per_job"]
# SLURM GPU type (`--gpus=<model>:<n>`); None (the default) is dropped from the resources.
GPU_MODEL = config["resources"]["gpu_model"] or None
# the progress-bar flag of every training command
PROGRESS = "--progress" if config["progress"] else "--no-progress"
# tracking.tensorboard: a run option like the progress bars, passed with them (never compared: retrains nothing);
# the plan checked that its package is installed
if config["tracking"]["tensorboard"]:
    PROGRESS = f"{PROGRESS} --tensorboard {shlex.quote(os.path.join(config['results'], 'tensorboard'))}"


# What reruns a job. Snakemake's params trigger compares every `params:` value, except those a parameter
# function derives from the job's input, output, threads or resources (their changes show elsewhere:
# snakemake.rules.Rule._is_deriving_function). A setting that changes the speed or the look of a job, never
# what it makes, is passed as such a value (uncompared): the progress bars, the device alias (the device it
# resolves to is compared: device_type), the recipe's run settings (the rest of the recipe is compared:
# recipe_identity). So toggling one on a finished run retrains nothing (tests/test_rerun_triggers.py).
def uncompared(value):
    """A `params:` value Snakemake's params trigger does not compare (``value``, or ``value(wildcards)`` if callable)."""
    if callable(value):
        return lambda wildcards, threads: value(wildcards)
    return lambda wildcards, threads: value


def identity_json(recipe_name):
    """The recipe a model is made with (lspipe.core.recipe.identity: without the run settings) as JSON."""
    import lspipe.core.recipe

    return json.dumps(lspipe.core.recipe.identity(config["recipes"][recipe_name]), sort_keys=True)


_RECORDED_DEVICE = {}


def _recorded_device(path):
    """The device type a finished model was trained on (model.pt's meta `device_type`), or a dump made on
    (its attribute `device_type`); None without one. Read once per file version."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _RECORDED_DEVICE:
        value = None
        try:
            if str(path).endswith(".h5"):
                import h5py

                with h5py.File(path, "r") as f:
                    value = f.attrs.get("device_type")
            else:
                import torch

                value = torch.load(path, map_location="cpu", mmap=True, weights_only=False)["meta"].get("device_type")
        except Exception:  # damaged, foreign or older: the alias decides (a damaged model is refused elsewhere)
            value = None
        _RECORDED_DEVICE[key] = value.decode() if isinstance(value, bytes) else value
    return _RECORDED_DEVICE[key]


def device_type(made):
    """The device type ("cpu" or "cuda") the config's `device` resolves to for the job making the files `made`:
    compared by the params trigger instead of the alias. "cpu" and "cuda[:N]" say it; "auto" is the device the
    existing files were made on (a finished run stays finished whichever host plans it), else this host's."""
    alias = config["device"]
    if alias != "auto":
        return "cpu" if alias == "cpu" else "cuda"
    for path in made:
        recorded = _recorded_device(path)
        if recorded in ("cpu", "cuda"):
            return recorded
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def run_params(recipe_of, made_of):
    """The parameters of the training rules that are compared only for what changes the weights. The
    recipe, named by ``recipe_of(wildcards)``, is passed whole and compared without its run settings; the
    device is passed as configured and compared as the device type it resolves to for the models
    ``made_of(wildcards)``; the progress bars are never compared."""
    return dict(
        recipe=uncompared(lambda wc: recipe_json(recipe_of(wc))),
        recipe_identity=lambda wc: identity_json(recipe_of(wc)),
        device=uncompared(config["device"]),
        device_type=lambda wc: device_type(made_of(wc)),
        progress=uncompared(PROGRESS),
    )


# dataset and arch wildcards match only the configured names: both may hold underscores
# (inception_v4), so a file name that joins them (fig2_reliability_{dataset}_{arch}) splits one way only
wildcard_constraints:
    dataset=names_pattern(config["datasets"]),
    arch=names_pattern(PLAN.archs),
    role=r"teacher|student",
    run=r"[A-Za-z0-9_.-]+",
    alpha=r"[0-9.]+(e-?[0-9]+)?",
    seed=r"[0-9]+",


fmt = lspipe.base.runs.fmt


_VERIFIED_DATA = {}


def checked_data(dataset):
    """P.data(dataset), verified against the checksums recorded in it (lspipe.core.source.verify) when
    it exists: an input function, so a damaged prepared file stops the workflow while the DAG is
    built, before Snakemake plans (and deletes the outputs of) every job made from it."""
    path = P.data(dataset)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return path  # prepare_data makes it
    key = (path, st.st_size, st.st_mtime_ns)
    if key not in _VERIFIED_DATA:
        import lspipe.core.source

        try:
            lspipe.core.source.verify(path)
            _VERIFIED_DATA[key] = None
        except lspipe.base.errors.DataError as err:
            _VERIFIED_DATA[key] = str(err)
    if _VERIFIED_DATA[key]:
        raise WorkflowError(_VERIFIED_DATA[key])
    return path


def damaged_models(dag=None):
    """One line per trained model that is damaged (a member whose bytes no longer match the CRC-32 torch.save
    recorded: lspipe.base.io.zip_problem) among those this run may read: present and newer than its analysis (the
    dump, evaluation and calibration made from it), or not analysed yet. With ``dag`` (the run's DAG settings),
    models a forced run rebuilds are left out."""
    import lspipe.base.io

    forced = set()
    if dag is not None:
        forced = {os.path.normpath(str(f)) for f in dag.forcerun} | (
            {os.path.normpath(str(f)) for f in dag.targets} if dag.forcetargets else set())
    problems = []
    for m in PLAN.trained_models:
        path = P.model(*m)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            continue  # its training job makes it
        if (dag is not None and dag.forceall) or os.path.normpath(path) in forced:
            continue
        made = [P.dump(*m), P.eval(*m), P.calibration(*m)]
        if all(os.path.exists(f) and os.stat(f).st_mtime_ns >= st.st_mtime_ns for f in made):
            continue  # not changed since it was analysed
        problem = lspipe.base.io.zip_problem(path)
        if problem:
            problems.append(f"cannot use model {path}: it is damaged ({problem}); delete it (the workflow then "
                            f"trains it again) or rebuild it with `snakemake -f {path}`")
    return problems


# A damaged model stops the workflow before its first job (onstart, below: before Snakemake deletes the outputs of
# the jobs that read it, its analysis and the students it teaches, and runs them on it), with one line naming it
# and the fix; a dry run names it as a warning.
if workflow.is_main_process:
    for _line in damaged_models():
        print(f"warning: {_line}", file=sys.stderr)


def model_expected(dataset, arch, role, run):
    """What the config trains the model (dataset, arch, role, run) with, as JSON: its recipe (without the run
    settings), objective and seed (lspipe.workflow.plan.Plan.model_identity). A model put in its place that
    records otherwise is refused, naming the key, by what reads it (lspipe.core.models.check_identity)."""
    import lspipe.core.recipe

    try:
        got = PLAN.model_identity(dataset, arch, role, run)
    except lspipe.base.errors.ConfigError as err:
        raise WorkflowError(str(err))
    return json.dumps({**got, "recipe": lspipe.core.recipe.identity(got["recipe"])}, sort_keys=True)


def teachers_expected(paths):
    """:func:`model_expected` of each teacher model.pt in ``paths``, as one JSON object keyed by path."""
    import lspipe.base.paths

    out = {}
    for path in paths:
        place = lspipe.base.paths.parse_model_path(path)
        out[path] = json.loads(model_expected(place["dataset"], place["arch"], place["role"], place["run"]))
    return json.dumps(out, sort_keys=True)


# A job whose data input is damaged cannot be planned (checked_data); Snakemake then keeps the
# existing outputs made from it as they are. Say so up front, also when nothing else needs doing.
for _name in config["datasets"]:
    try:
        checked_data(_name)
    except WorkflowError as err:
        print(f"warning: {err}", file=sys.stderr)


def recipe_json(name):
    return json.dumps(config["recipes"][name], sort_keys=True)


def training_runtime(recipe_name):
    """SLURM runtime request (minutes), scaled by the recipe's number of steps."""
    res = config["resources"]
    steps = config["recipes"][recipe_name]["steps"]
    return max(res["min_runtime"], int(round(steps / 1000 * res["minutes_per_1k_steps"])))


# GPUs per model: the layout of every training job (lspipe.workflow.jobs: whole nodes, a global batch that divides
# by the GPUs, no probe under torchrun), checked as the plan is built. Only when some model has more than one GPU
# (or `auto`) do the training rules get the `launch` parameter and the `lspipe launch ... --` prefix: a one-GPU
# config's training commands stay as they were, and no finished model reruns for a changed rule text.
MULTI_GPU = not all(job.layout.single for job in PLAN.training_jobs)


def training_job(rule, wc):
    """The job (lspipe.workflow.jobs.TrainingJob) a training rule runs for the wildcards ``wc``."""
    if rule.grouped:
        return rule.jobs[0]
    try:
        return PLAN.job(wc.dataset, wc.arch, rule.role, wc.run)
    except lspipe.base.errors.ConfigError as err:
        raise WorkflowError(str(err))


def train_resources(layout_of):
    """The GPU, node, task and CPU resources of a training rule (lspipe.workflow.jobs.rule_resources) from
    ``layout_of(wildcards)``: keyword arguments of the rule's `resources:` (None values are dropped)."""
    def one(key):
        return lambda wc: lspipe.workflow.jobs.rule_resources(
            layout_of(wc), gpus_per_job=GPU, gpu_model=GPU_MODEL, threads=config["threads"])[key]

    return {k: one(k) for k in ("gpu", "gpu_model", "nodes", "tasks", "mpi", "slurm_extra", "cpus_per_task")}


def launch_params(layout_of):
    """The `launch` parameter of the training rules, when some model has several GPUs (`lspipe launch <layout> -- `
    before `lspipe train` for a multi-GPU model, empty for a one-GPU one), none at all otherwise. A parameter,
    so a changed GPU count retrains (BatchNorm normalises each GPU's slice of the batch)."""
    if not MULTI_GPU:
        return {}

    def launch(wc):
        lay = layout_of(wc)
        return "" if lay.single else f"lspipe launch {lay.args()} -- "

    return {"launch": launch}


def objectives_json(values):
    """The `--objectives` JSON of a training job (lspipe.core.losses), keys sorted: a `params:` value,
    so Snakemake's params rerun trigger sees every parameter of every member's objective."""
    return json.dumps(list(values), sort_keys=True)


def train_shell(args=""):
    """The shell command of every training rule: `lspipe train` with the inputs and options all
    training jobs share (data, arch, recipe, seed, objectives, role, run names, device, threads,
    progress, outputs, log) and the rule's own arguments `args` (probe, fuse). Every training rule
    has `input.data`, `params.arch / recipe / seed / objectives / role / runs / device / progress`,
    `output.model / metrics` (one path each, or a list for a multi-model job) and a log; with a multi-GPU
    model in the config also `params.launch` (launch_params), the `lspipe launch ... --` prefix or nothing."""
    return (
        ("{params.launch}" if MULTI_GPU else "")
        + "lspipe train --data {input.data:q} --arch {params.arch} --recipe {params.recipe:q} "
        "--seed {params.seed} --objectives {params.objectives:q} --role {params.role} --runs {params.runs} "
        f"{args} --device {{params.device}} --threads {{threads}} {{params.progress}} "
        "--out {output.model:q} --metrics {output.metrics:q} > {log:q} 2>&1"
    )


def probe_option(probe):
    """`--probe '<settings JSON>'` for a grid's probe settings (teachers[].probe), or "" for none."""
    if not probe:
        return ""
    return f"--probe {shlex.quote(json.dumps(probe, sort_keys=True))}"


def probe_settings(wc):
    """The probe settings of a teacher's grid as JSON (checked against probe.h5 by `lspipe mi-curve`)."""
    try:
        job = PLAN.job(wc.dataset, wc.arch, "teacher", lspipe.base.runs.run_name(wc.alpha, wc.seed))
    except lspipe.base.errors.ConfigError as err:
        raise WorkflowError(str(err))
    return json.dumps(job.probe, sort_keys=True)


def source_digest(dataset):
    """The source files of a dataset as they are now (lspipe.core.survey.source_digest: the number of files
    and a digest of their contents, or of their sizes and modification times above 256 MiB; "bundled"
    for the digits): a `params:` value of prepare_data, so a changed ImageFolder tree or CIFAR folder
    prepares the data again. Computed each time the workflow is planned; a tree above 256 MiB (ImageNet:
    1.3M files) is scanned once per digest: its digest is kept in `.<dataset>.source.json` beside the
    prepared file while its class folders' stat is unchanged (lspipe.core.survey.cached_source_digest;
    LSPIPE_RESCAN=1 scans again)."""
    import lspipe.core.survey

    if dataset not in _SOURCE_DIGESTS:  # once per workflow run
        cache = os.path.join(os.path.dirname(P.data(dataset)), f".{dataset}.source.json")
        _SOURCE_DIGESTS[dataset] = lspipe.core.survey.cached_source_digest(config["datasets"][dataset], cache)
    return _SOURCE_DIGESTS[dataset]


_SOURCE_DIGESTS = {}


def prepared_by(streamed):
    """The `dataset` wildcard's regex of prepare_data_streamed (streamed=True: the datasets with `source:
    imagefolder` and `storage: streaming`, decided from the config alone) or of prepare_data (the others)."""
    names = [n for n, o in config["datasets"].items()
             if (o.get("source") == "imagefolder" and o.get("storage") == "streaming") == streamed]
    return "|".join(re.escape(n) for n in names) or "(?!)"  # (?!): matches nothing


_STORAGE = {}


def data_storage(dataset):
    """"resident" or "streaming": how dataset `dataset` is prepared and read (lspipe.core.source.storage:
    datasets.<name>.storage, and for `auto` the size of its images against streaming.resident_max_gb).
    A `params:` value of prepare_data, so a changed choice prepares the data again. Decided once per
    dataset and workflow run; the image count of an `auto` ImageFolder tree is source_digest's."""
    import lspipe.core.source
    import lspipe.core.survey

    options = config["datasets"][dataset]
    if dataset not in _STORAGE:
        auto_tree = options.get("storage") == "auto" and options.get("source") == "imagefolder"
        try:
            images = lspipe.core.survey.digest_files(source_digest(dataset)) if auto_tree else None
            _STORAGE[dataset] = lspipe.core.source.storage(dataset, options, config["streaming"], images)[0]
        except lspipe.base.errors.DataError as err:
            raise WorkflowError(str(err))
    return _STORAGE[dataset]


def index_settings(dataset):
    """The streaming settings the index of `dataset` records (lspipe.core.source.INDEX_SETTINGS) as JSON,
    "{}" for a resident dataset: a `params:` value of prepare_data, so changing one rebuilds an index only."""
    import lspipe.core.source

    if data_storage(dataset) != "streaming":
        return "{}"
    return json.dumps(lspipe.core.source.index_settings(config["streaming"]), sort_keys=True)


# The streamed datasets' loader settings (DataLoader workers, prefetching, pinned memory) reach the training
# and analysis jobs through the environment (LSPIPE_STREAM_LOADER, read by lspipe.core.source.loader_settings;
# a job on a cluster parses this file too and sets it again). They change the speed, not the batches, so
# they are no `params:` value: changing them reruns nothing.
os.environ.update(
    LSPIPE_STREAM_LOADER=json.dumps({k: config["streaming"][k] for k in ("workers", "prefetch_factor", "pin_memory")},
                                    sort_keys=True)
)
# Where each dataset's source lies (datasets.<name>.root), for prepare_data and for the jobs reading a streamed
# dataset's tree (LSPIPE_DATA_ROOTS, read by lspipe.core.source.data_root), likewise through the environment: a
# prepared file stands for the content of its source (prepare_data's `sources` parameter), not for its folder,
# so moving a tree (and changing `root` to match) reruns nothing.
os.environ.update(LSPIPE_DATA_ROOTS=json.dumps({name: d["root"] for name, d in config["datasets"].items() if d.get("root")},
                                               sort_keys=True))


def dataset_options(dataset):
    """The config's datasets.<name> entry as prepare_data's `options` parameter: without `root` (see above)."""
    return json.dumps({k: v for k, v in config["datasets"][dataset].items() if k != "root"}, sort_keys=True)
