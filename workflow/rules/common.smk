# Helpers shared by every rules file: config validation, path builders, parameter lookups.

import json
import os
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

import lspipe.config

try:
    lspipe.config.validate(
        config, lspipe.config.load_schema(Path(workflow.basedir) / "workflow/schemas/config.schema.yaml")
    )
except lspipe.config.ConfigError as err:
    raise WorkflowError(str(err))

R = config["results"]
# conda envs (`--sdm conda`) install lspipe editable from ${LSPIPE_ROOT} (see envs/train.yaml)
os.environ.setdefault("LSPIPE_ROOT", str(Path(workflow.basedir).resolve()))
ENV_TRAIN = "../../envs/train.yaml"
ENV_PLOT = "../../envs/plot.yaml"
GPU = config["resources"]["gpus_per_job"]
# SLURM GPU type (`--gpus=<model>:<n>`); None (the default) is dropped from the resources.
GPU_MODEL = config["resources"]["gpu_model"] or None
# Every rule's target list for `rule all`; each rules file appends its final outputs.
ALL_TARGETS = []


wildcard_constraints:
    dataset=r"[A-Za-z0-9_]+",
    arch=r"[a-z0-9]+",
    role=r"teacher|student",
    run=r"[A-Za-z0-9_.-]+",
    alpha=r"[0-9.]+(e-?[0-9]+)?",
    seed=r"[0-9]+",


def fmt(x):
    """Canonical text of a number in paths: 0.1 -> '0.1', 0.0 -> '0', 2.0 -> '2'."""
    return f"{float(x):g}"


def teacher_run(alpha, seed):
    return f"a{fmt(alpha)}_s{seed}"


def model_dir(dataset, arch, role, run):
    return f"{R}/models/{dataset}/{arch}/{role}/{run}"


def model_path(dataset, arch, role, run):
    return f"{model_dir(dataset, arch, role, run)}/model.pt"


def dump_path(dataset, arch, role, run):
    return f"{R}/dumps/{dataset}/{arch}/{role}/{run}.h5"


def eval_path(dataset, arch, role, run):
    return f"{R}/eval/{dataset}/{arch}/{role}/{run}.json"


def data_path(dataset):
    return f"{R}/data/{dataset}.npz"


_VERIFIED_DATA = {}


def checked_data(dataset):
    """data_path(dataset), verified against the checksums recorded in it (lspipe.data.verify) when
    it exists: an input function, so a damaged prepared file stops the workflow while the DAG is
    built, before Snakemake plans (and deletes the outputs of) every job made from it."""
    path = data_path(dataset)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return path  # prepare_data makes it
    key = (path, st.st_size, st.st_mtime_ns)
    if key not in _VERIFIED_DATA:
        import lspipe.data

        try:
            lspipe.data.verify(path)
            _VERIFIED_DATA[key] = None
        except lspipe.data.DataError as err:
            _VERIFIED_DATA[key] = str(err)
    if _VERIFIED_DATA[key]:
        raise WorkflowError(_VERIFIED_DATA[key])
    return path


# A job whose data input is damaged cannot be planned (checked_data); Snakemake then keeps the
# existing outputs made from it as they are. Say so up front, also when nothing else needs doing.
for _name in config["datasets"]:
    try:
        checked_data(_name)
    except WorkflowError as err:
        print(f"warning: {err}", file=sys.stderr)


def teacher_group(dataset, arch):
    for t in config["teachers"]:
        if t["dataset"] == dataset and t["arch"] == arch:
            return t
    raise WorkflowError(f"no teacher grid for dataset {dataset!r} and arch {arch!r} under 'teachers' in the config")


def teacher_runs(group):
    """(dataset, arch, run) of every run of a teacher grid."""
    return [(group["dataset"], group["arch"], teacher_run(a, s)) for a in group["alphas"] for s in group["seeds"]]


def all_teacher_runs():
    return [r for g in config["teachers"] for r in teacher_runs(g)]


def recipe_json(name):
    return json.dumps(config["recipes"][name], sort_keys=True)


def training_runtime(recipe_name):
    """SLURM runtime request (minutes), scaled by the recipe's number of steps."""
    res = config["resources"]
    steps = config["recipes"][recipe_name]["steps"]
    return max(res["min_runtime"], int(round(steps / 1000 * res["minutes_per_1k_steps"])))


def figure_paths(stem):
    return [f"{R}/figures/{stem}.{ext}" for ext in config["figures"]["formats"]]


def _pairs_regex(pairs, negate):
    """Regex for the `dataset` wildcard matching (or, negated, not matching) dataset/arch pairs."""
    import re

    if not pairs:
        return r"[A-Za-z0-9_]+" if negate else r"(?!)"
    alt = "|".join(f"{re.escape(d)}/{re.escape(a)}" for d, a in pairs)
    return f"(?{'!' if negate else '='}(?:{alt})/)[A-Za-z0-9_]+"


PROBED = [(g["dataset"], g["arch"]) for g in config["teachers"] if g.get("probe")]
PROBED_DATASET = _pairs_regex(PROBED, negate=False)
UNPROBED_DATASET = _pairs_regex(PROBED, negate=True)


def teacher_params(wc):
    """The teacher grid (config entry) of a training job's wildcards."""
    return teacher_group(wc.dataset, wc.arch)


def probe_args(wc):
    """`lspipe train` arguments recording the mutual-information probe, if the grid has one.

    Every probe setting (with its defaults) is in the returned text and the function takes no
    `output`, so Snakemake's params rerun trigger sees it: changing a probe retrains its teachers.
    `lspipe train` writes the trace to probe.h5 next to model.pt (the rule's `probe` output)."""
    probe = teacher_params(wc).get("probe")
    if not probe:
        return ""
    return f"--probe {shlex.quote(json.dumps(probe, sort_keys=True))}"


def probe_settings(wc):
    """The probe settings of a teacher grid as JSON (checked against probe.h5 by `lspipe mi-curve`)."""
    return json.dumps(teacher_group(wc.dataset, wc.arch).get("probe"), sort_keys=True)
