"""What reruns, and what does not: plotting parameters rerun only plotting rules; timestamps rerun
nothing; every figure and table rebuilds alone; forced rebuilds; and training interrupted (its job
killed, or the whole workflow) resumes from its checkpoint when Snakemake runs it again.

All checks on the shared `tiny_run` are dry runs, or run on a copy of it."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import REPO, TINY, planned_jobs, snakemake
from test_slurm import is_plot_or_table, planned

pytestmark = pytest.mark.slow

COMPUTE_RULES = ("prepare_data", "train_", "analyse_model")


def draws(job: dict) -> bool:
    """A job that only draws figures or writes tables; the claims report draws its forest plot."""
    return is_plot_or_table(job) or job["rule"] == "claims"


def _products(work: Path) -> list[str]:
    """Every figure and table the tiny run made (paths relative to the workdir)."""
    res = work / "results"
    return sorted(str(p.relative_to(work)) for d in ("figures", "tables") for p in (res / d).rglob("*") if p.is_file())


def _overlay(tmp_path: Path, cfg: dict) -> str:
    path = tmp_path / "overlay.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def test_plotting_parameters_rerun_only_plotting_rules(tiny_run, tmp_path):
    dpi = yaml.safe_load(TINY.read_text())["figures"]["dpi"]
    # (--config would pass the number as a string: Snakemake parses nested --config values as text)
    proc = snakemake(tiny_run, "-n", "--configfile", str(tiny_run / "config.yaml"),
                     _overlay(tmp_path, {"figures": {"dpi": dpi + 1}}))
    jobs = [j for j in planned(proc.stdout + proc.stderr) if j["rule"] != "all"]
    assert jobs, proc.stdout[-3000:]
    for j in jobs:
        assert draws(j) and not j["rule"].startswith(COMPUTE_RULES), j
        assert "Params have changed" in j["reason"], j
    # every figure is redrawn: each figure rule passes the dpi through `params:`
    redrawn = {o for j in jobs for o in j["output"]}
    figures = [p for p in _products(tiny_run) if p.startswith("results/figures/")]
    assert figures and set(figures) <= redrawn, sorted(set(figures) - redrawn)


def test_table_parameter_reruns_only_that_table(tiny_run, tmp_path):
    digits = yaml.safe_load(TINY.read_text()).get("accuracy_table", {}).get("digits", 1)
    proc = snakemake(tiny_run, "-n", "--configfile", str(tiny_run / "config.yaml"),
                     _overlay(tmp_path, {"accuracy_table": {"digits": digits + 2}}))
    assert planned_jobs(proc) == {"accuracy_table": 1, "all": 1}


def test_timestamps_trigger_nothing(tiny_run, tmp_path):
    """Make every file newer than the files made from it (data newest, figures oldest): no
    job reruns -- data, trained weights, probes, dumps and evaluations are safe from timestamps,
    because Snakemake finds their checksums unchanged (up to the profiles' max-checksum-file-size;
    without checksums, the same timestamps would retrain the distilled students and redo the
    analyses)."""
    work = tmp_path / "copy"
    shutil.copytree(tiny_run, work, symlinks=True, ignore=shutil.ignore_patterns("log", "slurm_logs", "conda"))
    assert planned_jobs(snakemake(work, "-n")) == {}  # the copy is up to date
    now = time.time()
    age = {"data": 500, "models": 400, "dumps": 300, "eval": 200}
    touched = 0
    for p in (work / "results").rglob("*"):
        if p.is_file():
            t = now + age.get(p.relative_to(work / "results").parts[0], 100)
            os.utime(p, (t, t))
            touched += 1
    assert touched > 10
    proc = snakemake(work, "-n")
    assert planned_jobs(proc) == {}, [(j["rule"], j["reason"]) for j in planned(proc.stdout)][:10]
    # the timestamps alone would trigger reruns: checksums are what keeps them from doing so
    unchecked = planned_jobs(snakemake(work, "-n", "--max-checksum-file-size", "0"))
    assert unchecked.get("train_student_distilled") and unchecked.get("accuracy_table"), unchecked


def test_every_figure_and_table_builds_alone(tiny_run):
    """`snakemake -f <path>` rebuilds exactly the jobs drawing the named figures/tables."""
    products = _products(tiny_run)
    assert any(p.endswith(".png") for p in products) and any(p.endswith(".csv") for p in products)
    proc = snakemake(tiny_run, "-n", "-f", *products)
    jobs = planned(proc.stdout + proc.stderr)
    assert jobs and all(draws(j) and not j["rule"].startswith(COMPUTE_RULES) for j in jobs), \
        [(j["rule"], j["output"]) for j in jobs]
    assert set(products) <= {o for j in jobs for o in j["output"]}


def test_forcing_a_table_rule_reruns_only_it(tiny_run):
    proc = snakemake(tiny_run, "-n", "--forcerun", "accuracy_table")
    assert planned_jobs(proc) == {"accuracy_table": 1, "all": 1}


def test_forced_training_rebuilds_everything_made_from_it(tiny_run):
    proc = snakemake(tiny_run, "-n", "--forcerun", "train_teacher")
    jobs = planned_jobs(proc)
    assert jobs.get("train_teacher") == 3  # tiny.yaml: alpha 0, 0.3 and the confidence penalty
    assert {"analyse_model", "accuracy_table"} <= set(jobs), jobs


# --------------------------------------------------------------------------- interrupted training
TARGET = "results/models/digits/smallcnn/teacher/a0_s0/model.pt"
TRAIN_LOG = "results/logs/train_teacher/digits/smallcnn/a0_s0.log"
STEPS = 320


def _long_workdir(root: Path) -> Path:
    """tiny.yaml with 320 training steps (20 epochs, a checkpoint after each)."""
    cfg = yaml.safe_load(TINY.read_text())
    cfg["recipes"]["tiny"].update(steps=STEPS, lr_milestones=[STEPS // 2], checkpoint_every=1)
    root.mkdir(parents=True)
    (root / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return root


def _start(work: Path, *args: str) -> subprocess.Popen:
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    cmd = [sys.executable, "-m", "snakemake", TARGET, "-s", str(REPO / "Snakefile"), "-d", str(work), "--cores", "1", *args]
    return subprocess.Popen(cmd, stdout=open(work / "snakemake.out", "w"), stderr=subprocess.STDOUT,
                            start_new_session=True, env={**os.environ, "PATH": path, "PYTHONUNBUFFERED": "1"})


def _wait_for_checkpoint(work: Path, proc: subprocess.Popen, timeout: float = 300) -> Path:
    ckpt = work / (TARGET + ".ckpt")
    deadline = time.monotonic() + timeout
    while not ckpt.exists():
        if proc.poll() is not None:
            pytest.fail(f"snakemake ended ({proc.returncode}) before a checkpoint:\n{(work / 'snakemake.out').read_text()[-3000:]}")
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail("no checkpoint within the time limit")
        time.sleep(0.05)
    return ckpt


def _descendants(pid: int) -> list[int]:
    parent = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent[int(stat.parent.name)] = int(fields[1])
    out, frontier = [], [pid]
    while frontier:
        kids = [c for c, p in parent.items() if p in frontier]
        out += kids
        frontier = kids
    return out


def _training_process(root_pid: int) -> int:
    for pid in _descendants(root_pid):
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        args = [a.decode() for a in args if a]
        if "train" in args and any(a == "lspipe" or a.endswith("/lspipe") for a in args) \
                and not Path(args[0]).name.endswith("sh"):
            return pid
    raise AssertionError("no `lspipe train` process under snakemake")


def _assert_resumed_and_complete(work: Path) -> None:
    log = (work / TRAIN_LOG).read_text()
    assert "resumed from" in log and "model.pt.ckpt at step" in log, log[-2000:]
    rows = list(csv.DictReader((work / TARGET).with_name("metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == list(range(1, len(rows) + 1))  # epochs before the kill kept
    assert int(rows[-1]["step"]) == STEPS
    assert (work / TARGET).stat().st_size > 0 and not (work / (TARGET + ".ckpt")).exists()
    assert (work / TARGET).with_name("probe.h5").exists()


def test_training_killed_in_its_job_is_retried_and_resumes(tmp_path):
    """What a SLURM time limit or preemption does: the training process dies; Snakemake (the
    slurm profile sets `retries`) reruns the job, which resumes from the last checkpoint."""
    work = _long_workdir(tmp_path / "w")
    proc = _start(work, "--retries", "1")
    _wait_for_checkpoint(work, proc)
    os.kill(_training_process(proc.pid), signal.SIGKILL)
    assert proc.wait(timeout=600) == 0, (work / "snakemake.out").read_text()[-4000:]
    assert "Trying to restart job" in (work / "snakemake.out").read_text()
    _assert_resumed_and_complete(work)


def test_interrupted_workflow_resumes_training_with_rerun_incomplete(tmp_path):
    """Snakemake itself killed (login node lost): after `--unlock`, the next run redoes the
    incomplete job (the profiles set `rerun-incomplete`) and training resumes; the checkpoint is
    not a declared output, so Snakemake never deletes it."""
    work = _long_workdir(tmp_path / "w")
    proc = _start(work)
    _wait_for_checkpoint(work, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert (work / (TARGET + ".ckpt")).exists() and not (work / TARGET).exists()
    snakemake(work, "--unlock")
    snakemake(work, TARGET, "--cores", "1")
    _assert_resumed_and_complete(work)
