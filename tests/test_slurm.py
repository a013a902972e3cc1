"""Scale-out: the profiles and conda environments, the SLURM requests a dry run of the paper preset
plans, and the tiny workflow on a real single-node SLURM cluster (started by the test, see
tests/slurm_cluster.py) giving the same numbers as a local run. The real-cluster test runs only with
LSPIPE_TEST_SLURM=1 (.ci/run sets it): as root it installs SLURM with apt-get and writes /etc/slurm."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import textwrap
import time
import tomllib
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import REPO, SLURM_ENV, TINY, make_workdir, slurm_tests_enabled, snakemake
from slurm_cluster import SingleNodeCluster, SlurmUnavailable, ensure_installed

PROFILES = REPO / "profiles"
PAPER = REPO / "workflow" / "presets" / "paper.yaml"


# --------------------------------------------------------------------------- dry-run parsing
def planned(text: str) -> list[dict]:
    """Jobs of a (dry) run's log: rule, output paths, reason, resources (as text), shell command."""
    jobs: list[dict] = []
    for line in text.splitlines():
        m = re.match(r"^(local)?rule (\w+):$", line)
        if m:
            jobs.append({"rule": m.group(2), "local": bool(m.group(1)), "output": [], "reason": "",
                         "resources": {}, "shell": ""})
        elif jobs and (m := re.match(r"^\s+output: (.*)$", line)):
            jobs[-1]["output"] = m.group(1).split(", ")
        elif jobs and (m := re.match(r"^\s+reason: (.*)$", line)):
            jobs[-1]["reason"] = m.group(1)
        elif jobs and (m := re.match(r"^\s+resources: (.*)$", line)):
            jobs[-1]["resources"] = dict(kv.split("=", 1) for kv in m.group(1).split(", "))
        elif jobs and line.startswith("Shell command: "):
            jobs[-1]["shell"] = line[len("Shell command: "):]
    return jobs


# A dry run prints every job as "rule X:" whatever its locality (the dry-run executor runs nothing
# remotely), so the local rules come from the parsed workflow itself (Snakemake's Python API).
_RULE_LOCALITY = """
import json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings

snakefile, workdir, configfiles, config = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
with SnakemakeApi(OutputSettings(quiet=None)) as api:
    wf = api.workflow(resource_settings=ResourceSettings(), snakefile=Path(snakefile), workdir=Path(workdir),
                      config_settings=ConfigSettings(configfiles=[Path(p) for p in configfiles], config=config))._workflow
    print(json.dumps({r.name: {"local": r.name in wf._localrules or r.norun, "group": r.group} for r in wf.rules}))
"""


def rule_locality(work: Path, configfiles: list[Path], config: dict) -> dict[str, dict]:
    """rule -> {"local": a local rule (runs where Snakemake runs), "group": its job group}."""
    proc = subprocess.run([sys.executable, "-c", _RULE_LOCALITY, str(REPO / "Snakefile"), str(work),
                           json.dumps([str(p) for p in configfiles]), json.dumps(config)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def is_plot_or_table(job: dict, results: str = "results") -> bool:
    return bool(job["output"]) and all(
        o.startswith((f"{results}/figures/", f"{results}/tables/")) for o in job["output"]
    )


# --------------------------------------------------------------------------- profiles and envs
def test_default_profile_is_applied_automatically(tmp_path):
    work = make_workdir(tmp_path / "w")
    proc = snakemake(work, "-n")
    m = re.search(r"Using workflow specific profile (\S+) for", proc.stderr + proc.stdout)
    assert m and Path(m.group(1)).resolve() == (PROFILES / "default").resolve(), proc.stderr[-2000:]


def test_local_profile_caps_gpu_jobs():
    prof = yaml.safe_load((PROFILES / "default" / "config.yaml").read_text())
    assert prof["resources"] == ["gpu=1"]  # one GPU job at a time; `--resources gpu=N` for N slots
    assert prof["rerun-incomplete"] is True


def test_checksum_limit_covers_the_papers_data_models_and_dumps():
    """Snakemake ignores a newer input whose checksum is unchanged only up to
    `max-checksum-file-size`: both profiles must cover the paper's prepared data and its largest
    model and dump."""
    import io

    import torch

    from lspipe.core import models

    limit = min(yaml.safe_load((PROFILES / p / "config.yaml").read_text())["max-checksum-file-size"]
                for p in ("default", "slurm"))
    paper = yaml.safe_load(PAPER.read_text())
    classes = {"cifar10": 10, "cifar100": 100}
    # prepared CIFAR: all 60k 3x32x32 uint8 images (train, validation and test) in one .npz
    assert 60_000 * 3 * 32 * 32 * 1.05 < limit
    nets = {(t["dataset"], t["arch"]) for t in paper["teachers"]}
    nets |= {(d["dataset"], d["student_arch"]) for d in paper.get("distillation", [])}
    for dataset, arch in sorted(nets):
        k = classes[paper["datasets"][dataset]["source"]]
        model = models.create(arch, num_classes=k, in_channels=3, image_size=32)
        buf = io.BytesIO()
        torch.save(model.state_dict(), buf)
        # dump: capped train split + validation + the 10k CIFAR test split; float32 features and
        # logits, int64 labels and index, uncompressed (an upper bound)
        rows = paper["dump"]["max_train"] + paper["datasets"][dataset]["val_size"] + 10_000
        dump = rows * ((model.classifier.in_features + k) * 4 + 16)
        dump += (50_000 - paper["datasets"][dataset]["val_size"]) * (k * 4 + 16)  # /train_full: logits of all training images
        assert max(len(buf.getvalue()), dump) < limit, (dataset, arch, len(buf.getvalue()), dump, limit)


def test_slurm_profile_settings():
    text = (PROFILES / "slurm" / "config.yaml").read_text()
    prof = yaml.safe_load(text)
    assert prof["executor"] == "slurm"
    assert prof["retries"] >= 1 and prof["rerun-incomplete"] is True
    # no default-resources: Snakemake merges a personal --profile under the workflow profile per top-level
    # key, so an entry here would drop the user's partition and account (test_personal_profile_...)
    assert "default-resources" not in prof
    # partition and account: the profile's comment shows where they go
    assert re.search(r"^#\s+slurm_partition: ", text, re.M) and re.search(r"^#\s+slurm_account: ", text, re.M)
    # the plugin on this machine satisfies the version the profile (and pyproject) require
    plugin = [d for d in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
              if d.startswith("snakemake-executor-plugin-slurm")]
    assert plugin == ["snakemake-executor-plugin-slurm>=2.7.1"]
    assert tuple(int(x) for x in version("snakemake-executor-plugin-slurm").split(".")[:3]) >= (2, 7, 1)


def _personal_profile_from_docs() -> dict:
    """The personal profile docs/cluster.md shows (the YAML block that starts with its path)."""
    doc = (REPO / "docs" / "cluster.md").read_text()
    block = re.search(r"```yaml\n( *# ~/.config/snakemake/mycluster/config.yaml.*?\n) *```", doc, re.S)
    assert block, "docs/cluster.md: no personal profile example"
    return yaml.safe_load(textwrap.dedent(block.group(1)))


def test_personal_profile_layers_under_the_workflow_profile(tmp_path):
    """docs/cluster.md's personal profile, given with --profile beside --workflow-profile profiles/slurm:
    every job gets its partition and account, and the jobs keep the requests the config gives them."""
    personal = _personal_profile_from_docs()
    assert personal["default-resources"] == {"slurm_partition": "gpu", "slurm_account": "my_project"}
    prof = tmp_path / "mycluster"
    prof.mkdir()
    (prof / "config.yaml").write_text(yaml.safe_dump(personal))
    work = make_workdir(tmp_path / "w")
    proc = snakemake(work, "-n", "--profile", str(prof), "--workflow-profile", str(PROFILES / "slurm"))
    out = proc.stdout + proc.stderr
    assert re.search(r"Using profiles? \S*mycluster and workflow specific profile \S*slurm", out), out[-2000:]
    jobs = planned(out)
    submitted = [j for j in jobs if j["rule"] == "analyse_model" or any(o.endswith("/model.pt") for o in j["output"])]
    assert submitted and len(submitted) < len(jobs)
    for j in jobs:
        if j["rule"] == "all":
            continue
        assert j["resources"]["slurm_partition"] == "gpu" and j["resources"]["slurm_account"] == "my_project", j
    cfg = yaml.safe_load(TINY.read_text())
    for j in submitted:
        assert j["resources"]["gpu"] == str(cfg.get("resources", {}).get("gpus_per_job", 1)), j
        assert "runtime" in j["resources"] and j["resources"]["mem_mb"] == "8000", j  # schema default mem_mb


def test_conda_env_mirrors_pyproject():
    """One environment file per real environment: every rule runs in envs/lspipe.yaml."""
    assert sorted(p.name for p in (REPO / "envs").iterdir()) == ["lspipe.yaml"]
    env = yaml.safe_load((REPO / "envs" / "lspipe.yaml").read_text())
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    deps = env["dependencies"]
    python = next(d for d in deps if isinstance(d, str) and d.startswith("python="))
    minimum = project["requires-python"].removeprefix(">=")
    assert tuple(map(int, python.split("=")[1].split("."))) >= tuple(map(int, minimum.split(".")))
    pip = next(d["pip"] for d in deps if isinstance(d, dict))
    editable = [p for p in pip if p.startswith("-e")]
    assert sorted(p for p in pip if not p.startswith("-e")) == sorted(project["dependencies"])
    # Snakemake copies the env file to .snakemake/conda/ before `conda env create`, and conda runs
    # pip beside that copy: the checkout must be named by an absolute path, here ${LSPIPE_ROOT}
    # (set by workflow/rules/common.smk), never a relative one.
    assert editable == ["-e ${LSPIPE_ROOT}"]
    root = Path(editable[0].split()[1].replace("${LSPIPE_ROOT}", str(REPO)))
    assert tomllib.loads((root / "pyproject.toml").read_text())["project"]["name"] == "lspipe"
    assert "LSPIPE_ROOT" in (REPO / "workflow" / "rules" / "common.smk").read_text()


# --------------------------------------------------------------------------- paper preset, dry run
def test_paper_preset_slurm_requests(tmp_path):
    """GPU (and GPU model), memory and a steps-scaled time limit on every training and dump job;
    no GPU on any table or figure job; only training and dump jobs are submitted to SLURM, every
    other job (data preparation, evaluation, calibration, analyses, tables, figures) is local."""
    work = make_workdir(tmp_path / "paper", REPO / "config.yaml")
    for folder in ("cifar-10-batches-py", "cifar-100-python"):  # torchvision's copies, checked while planning
        (tmp_path / folder).mkdir()
    proc = snakemake(
        work, "-n", "--workflow-profile", str(PROFILES / "slurm"), "--configfile", str(PAPER),
        "--config", f"datasets={{cifar10: {{root: {tmp_path}}}, cifar100: {{root: {tmp_path}}}}}",
        "resources={gpu_model: a100}",
    )
    res = yaml.safe_load(PAPER.read_text())["resources"]
    jobs = planned(proc.stdout + proc.stderr)
    assert len(jobs) > 200, (proc.stdout + proc.stderr)[-3000:]  # 244: 155 models (fused grids), each analysed in one job
    training = [j for j in jobs if any(o.endswith("/model.pt") for o in j["output"])]
    dumps = [j for j in jobs if j["rule"] == "analyse_model"]  # dump, evaluation and calibration of a model
    plots = [j for j in jobs if is_plot_or_table(j)]
    assert "train_student_distilled" in {j["rule"] for j in training}  # the LS teachers' students, one each
    assert any(j["rule"].startswith("train_teacher_fused_") for j in training)  # the paper preset fuses its grids
    assert len(dumps) >= len(training) and plots
    for j in training + dumps:
        r = j["resources"]
        assert r.get("gpu") == str(res["gpus_per_job"]) and r.get("gpu_model") == "a100", j
        assert r["mem_mb"] == str(res["mem_mb"]), j
        # one GPU per model (resources.gpus_per_model 1, the default): no torchrun, no nodes or tasks
        assert not {"nodes", "tasks", "mpi", "slurm_extra", "cpus_per_task"} & set(r), j
    recipe_steps = set()
    for j in training:
        assert j["shell"].startswith("lspipe train --data "), j["shell"]
        args = shlex.split(j["shell"])
        steps = json.loads(args[args.index("--recipe") + 1])["steps"]
        recipe_steps.add(steps)
        expected = max(res["min_runtime"], math.floor(steps / 1000 * res["minutes_per_1k_steps"] + 0.5))
        expected *= sum(o.endswith("/model.pt") for o in j["output"])  # a lockstep or fused job: one run's per model
        assert j["resources"]["runtime"] == str(expected), (j["rule"], steps, j["resources"])
    assert recipe_steps >= {64000, 390000}  # ResNet-56 and AlexNet recipes
    for j in plots:
        assert "gpu" not in j["resources"] and "gpu_model" not in j["resources"], j
    # the cluster gets exactly the training and per-model analysis jobs; every other job is local (none grouped)
    rules = rule_locality(work, [PAPER], {"datasets": {"cifar10": {"root": str(tmp_path)},
                                                       "cifar100": {"root": str(tmp_path)}}})
    assert all(r["group"] is None for r in rules.values()), rules
    submitted = [j for j in jobs if not rules[j["rule"]]["local"]]
    assert len(submitted) == len(training) + len(dumps) and {j["rule"] for j in submitted} == (
        {j["rule"] for j in training} | {"analyse_model"}), sorted({j["rule"] for j in submitted})
    local_jobs = [j for j in jobs if rules[j["rule"]]["local"]]
    assert {"prepare_data", "accuracy_table", "calibration_table", "distillation_gamma"} <= {j["rule"] for j in local_jobs}
    for j in local_jobs:
        assert "gpu" not in j["resources"] and "gpu_model" not in j["resources"], j


def test_a_streamed_dataset_is_prepared_as_a_cluster_job(tmp_path):
    """The ImageNet preset's dataset (storage: streaming) is prepared by `prepare_data_streamed`, a submitted
    CPU job with resources.prepare's cores, memory and time limit (not on the login node); the paper preset's
    CIFAR stays with the local `prepare_data` (test_paper_preset_slurm_requests)."""
    from lspipe import tiny_imagenet

    tree = tmp_path / "tree"
    tiny_imagenet.main([str(tree), "--train-per-class", "4", "--val-per-class", "2"])
    imagenet = REPO / "workflow" / "presets" / "imagenet.yaml"
    work = make_workdir(tmp_path / "w", REPO / "config.yaml")
    override = {"datasets": {"imagenet": {"root": str(tree), "val_size": 10}},
                "resources": {"prepare": {"threads": 6, "mem_mb": 24000, "runtime": 90}}}
    proc = snakemake(work, "results/data/imagenet.npz", "-n", "--workflow-profile", str(PROFILES / "slurm"),
                     "--configfile", str(imagenet), "--config", f"datasets={json.dumps(override['datasets'])}",
                     f"resources={json.dumps(override['resources'])}")
    (job,) = planned(proc.stdout + proc.stderr)
    assert job["rule"] == "prepare_data_streamed" and job["output"] == ["results/data/imagenet.npz"], job
    assert job["resources"]["mem_mb"] == "24000" and job["resources"]["runtime"] == "90", job
    assert job["resources"]["cpus_per_task"] == "6" and "gpu" not in job["resources"], job
    rules = rule_locality(work, [imagenet], override)
    assert not rules["prepare_data_streamed"]["local"] and rules["prepare_data"]["local"]


# --------------------------------------------------------------------------- a real SLURM cluster
@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory, request):
    """A single-node SLURM cluster with two fake GPUs of type `fakegpu`, stopped by its PIDs; only with
    LSPIPE_TEST_SLURM=1 (tests/conftest.py skips the `slurm` tests without it)."""
    if not slurm_tests_enabled():
        pytest.skip(f"real SLURM cluster: set {SLURM_ENV}=1 to run")
    try:
        ensure_installed(install=True, timeout=300)
    except SlurmUnavailable as err:
        pytest.skip(f"SLURM unavailable: {err}")
    cluster = SingleNodeCluster(tmp_path_factory.mktemp("slurm-cluster"), gpus=2, gpu_type="fakegpu")
    request.addfinalizer(cluster.stop)
    try:
        cluster.start(timeout=120)
    except SlurmUnavailable as err:
        pytest.skip(f"SLURM could not start: {err}")
    return cluster


def _scontrol_jobs() -> list[dict]:
    out = subprocess.run(["scontrol", "show", "job", "-o"], capture_output=True, text=True, timeout=30).stdout
    jobs = []
    for line in out.splitlines():
        if line.startswith("JobId="):
            jobs.append(dict(tok.split("=", 1) for tok in line.split() if "=" in tok))
    return jobs


def _assert_same_numbers(a, b, where=""):
    if isinstance(a, dict):
        assert set(a) == set(b), where
        for k in a:
            _assert_same_numbers(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, float):
        assert math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9), (where, a, b)
    else:
        assert a == b, (where, a, b)


def _metrics(path: Path) -> list[dict]:
    rows = list(csv.DictReader(path.open()))
    return [{k: float(v) for k, v in r.items() if k != "seconds"} for r in rows]


LONG_RUN = "results/models/digits/mlp/teacher/a0_s0/model.pt"


def _slurm_workdir(root: Path) -> Path:
    """tests/tiny.yaml, plus: GPU requests of the fake GPUs' type, and one more teacher grid
    (digits MLP, 320 steps = 20 epochs with a checkpoint after each) long enough to preempt."""
    cfg = yaml.safe_load(TINY.read_text())
    cfg["resources"] = {**cfg.get("resources", {}), "gpus_per_job": 1, "gpu_model": "fakegpu"}
    cfg["recipes"]["long"] = {**cfg["recipes"]["tiny"], "steps": 320, "lr_milestones": [160], "checkpoint_every": 1}
    cfg["teachers"].append({"dataset": "digits", "arch": "mlp", "recipe": "long", "alphas": [0.0], "seeds": [0]})
    cfg.setdefault("calibration", {})["ls_alpha"] = None  # the MLP grid has no smoothed model
    root.mkdir(parents=True)
    (root / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return root


def _preempt_when_checkpointed(work: Path, proc: subprocess.Popen, comment: str, timeout: float) -> str:
    """scancel the SLURM job whose comment is ``comment`` once its checkpoint exists."""
    ckpt = work / (LONG_RUN + ".ckpt")
    deadline = time.monotonic() + timeout
    while not ckpt.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            return ""
        time.sleep(0.05)
    out = subprocess.run(["squeue", "-h", "-o", "%i %k"], capture_output=True, text=True, timeout=30).stdout
    ids = [line.split()[0] for line in out.splitlines() if line.split()[1:] == [comment]]
    if ids:
        subprocess.run(["scancel", *ids], check=True, timeout=30)
    return ",".join(ids)


@pytest.mark.slow
@pytest.mark.slurm
def test_tiny_workflow_on_slurm_survives_preemption_and_matches_local_run(slurm_cluster, tiny_run, tmp_path):
    """Table 2 of the tiny config through profiles/slurm on a real (single-node) SLURM: the jobs
    get the configured requests, the table rule stays local, a training job cancelled mid-way
    (as by preemption) is resubmitted and resumes from its checkpoint, and the numbers equal
    the local run's."""
    work = _slurm_workdir(tmp_path / "slurm")
    limit = 540
    cmd = [
        "timeout", "-k", "15", str(limit),
        sys.executable, "-m", "snakemake", "accuracy_table",
        "-s", str(REPO / "Snakefile"), "-d", str(work),
        "--workflow-profile", str(PROFILES / "slurm"),
        # no accounting database on the test cluster: sacct cannot answer, squeue can
        "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "3",
        "--slurm-keep-successful-logs",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    with open(work / "snakemake.out", "w") as out:
        proc = subprocess.Popen(cmd, cwd=work, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            cancelled = _preempt_when_checkpointed(
                work, proc, "rule_train_teacher_wildcards_digits_mlp_a0_s0", timeout=limit)
            rc = proc.wait(timeout=limit + 60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    log = (work / "snakemake.out").read_text()
    slurm_logs = "\n".join(f"--- {p}\n{p.read_text(errors='replace')[-2000:]}"
                           for p in sorted((work / ".snakemake" / "slurm_logs").rglob("*.log")))
    assert rc == 0, (
        f"rc={rc}\n{log[-6000:]}\n{slurm_logs[-6000:]}\n"
        f"--- slurmctld\n{slurm_cluster.logs('slurmctld')}\n--- slurmd\n{slurm_cluster.logs('slurmd')}"
    )
    assert cancelled, f"the MLP training job was not found running with a checkpoint:\n{log[-4000:]}"

    # what SLURM ran: every compute job, with the requests the config and profile ask for
    jobs = [j for j in _scontrol_jobs() if j.get("Comment", "").startswith("rule_")]
    by_rule: dict[str, list[dict]] = {}
    for j in jobs:
        rule = re.match(r"rule_(\w+?)(?:_wildcards_.*)?$", j["Comment"]).group(1)
        by_rule.setdefault(rule, []).append(j)
    counts = {r: len(v) for r, v in by_rule.items()}
    # only training and per-model analysis (dump, evaluation, calibration) are cluster jobs (data preparation
    # and the tables are local rules) (tiny.yaml's grid: alpha 0, 0.3 and the confidence penalty; here one
    # more mlp teacher, alpha 0)
    assert counts == {"train_teacher": 5, "analyse_model": 4}, counts
    # the cancelled job was resubmitted (retries in the profile) and resumed from its checkpoint
    assert sorted(j["JobState"] for j in by_rule["train_teacher"]) == ["CANCELLED"] + ["COMPLETED"] * 4
    assert [j["JobId"] for j in by_rule["train_teacher"] if j["JobState"] == "CANCELLED"] == [cancelled]
    assert all(j["JobState"] == "COMPLETED" for r, js in by_rule.items() if r != "train_teacher" for j in js), jobs
    assert "resumed from" in (work / "results/logs/train_teacher/digits/mlp/a0_s0.log").read_text()
    assert not (work / (LONG_RUN + ".ckpt")).exists() and (work / LONG_RUN).exists()
    for j in by_rule["train_teacher"] + by_rule["analyse_model"]:
        assert j.get("TresPerJob") == "gres:gpu:fakegpu:1", j  # --gpus=<gpu_model>:<gpus_per_job>
        assert j["MinMemoryNode"] == "8000M", j  # resources.mem_mb (schema default)
        assert j["TimeLimit"] == "00:10:00", j  # 24 or 320 steps -> resources.min_runtime
    # data preparation and the tables ran on the submitting machine, not on the cluster
    for rule in ("prepare_data", "accuracy_table"):
        assert re.search(rf"^localrule {rule}:$", log, re.M), (rule, log[-3000:])

    # same numbers as the local run of the same config (CPU, one thread, same seeds)
    from lspipe.engine.dumpfile import Dump

    here, there = work / "results", tiny_run / "results"
    for run in ("a0_s0", "a0.3_s0"):
        ev = f"eval/digits/smallcnn/teacher/{run}.json"
        _assert_same_numbers(json.loads((here / ev).read_text()), json.loads((there / ev).read_text()), ev)
        m = f"models/digits/smallcnn/teacher/{run}/metrics.csv"
        rows_here, rows_there = _metrics(here / m), _metrics(there / m)
        assert len(rows_here) == len(rows_there) > 0, m
        for r1, r2 in zip(rows_here, rows_there):
            assert r1 == pytest.approx(r2, rel=1e-6), m
        a = Dump(here / f"dumps/digits/smallcnn/teacher/{run}.h5").split("test")
        b = Dump(there / f"dumps/digits/smallcnn/teacher/{run}.h5").split("test")
        np.testing.assert_allclose(a.logits, b.logits, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(a.index, b.index)
    table = {(r["arch"], r["alpha"]): r for r in csv.DictReader((here / "tables/accuracy.csv").open())}
    local = {(r["arch"], r["alpha"]): r for r in csv.DictReader((there / "tables/accuracy.csv").open())}
    assert set(table) == set(local) | {("mlp", "0.0")}
    assert all(table[k] == local[k] for k in local)
