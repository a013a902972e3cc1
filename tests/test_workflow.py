"""The whole DAG on the tiny config, then: nothing reruns; a table parameter reruns only its
step; the paper preset plans the paper's grid; the workflow lints clean."""

from __future__ import annotations

import json
import re

import pytest

from conftest import REPO, make_workdir, planned_jobs, snakemake

pytestmark = pytest.mark.slow


def _all_targets(work):
    proc = snakemake(work, "-n", "--forceall", "--quiet", "rules", "all")
    return proc


def test_every_target_is_built(tiny_run):
    results = tiny_run / "results"
    tables = sorted(p.name for p in (results / "tables").iterdir())
    assert "accuracy.csv" in tables and "accuracy.md" in tables
    md = (results / "tables" / "accuracy.md").read_text()
    # tiny.yaml trains one seed: the table says so instead of "± 0.0"
    cell = r"\d+\.\d \(1 seed: no spread\)"
    assert re.search(rf"\| digits \| smallcnn \| {cell} \| {cell} \|", md), md
    assert "± 0.0" not in md
    for run in ("a0_s0", "a0.3_s0"):
        d = results / "models" / "digits" / "smallcnn" / "teacher" / run
        assert (d / "model.pt").stat().st_size > 0 and (d / "metrics.csv").stat().st_size > 0
        assert not (d / "model.pt.ckpt").exists()  # the resumable checkpoint is removed when training completes
        ev = json.loads((results / "eval" / "digits" / "smallcnn" / "teacher" / f"{run}.json").read_text())
        assert 0.1 < ev["test"]["accuracy"] <= 1 and ev["model"]["alpha"] == float(run[1:].split("_")[0])
    # every figure of the DAG exists in every configured format, and no temp file was left behind
    figures = list((results / "figures").glob("*")) if (results / "figures").exists() else []
    assert all(f.stat().st_size > 0 for f in figures)
    assert not [p for p in results.rglob(".*.tmp")]
    # every log exists (one per job)
    assert (results / "logs" / "prepare_data" / "digits.log").exists()


def test_second_run_has_nothing_to_do(tiny_run):
    proc = snakemake(tiny_run, "-n")
    assert planned_jobs(proc) == {}, proc.stdout[-3000:]


def test_paper_preset_plans_the_papers_grid(tmp_path):
    work = make_workdir(tmp_path / "paper", REPO / "config.yaml")
    for folder in ("cifar-10-batches-py", "cifar-100-python"):  # torchvision's copies, checked while planning
        (tmp_path / folder).mkdir()
    proc = snakemake(work, "-n", "--configfile", str(REPO / "workflow/presets/paper.yaml"),
                     "--config", f"datasets={{cifar10: {{root: {tmp_path}}}, cifar100: {{root: {tmp_path}}}}}")
    jobs = planned_jobs(proc)
    # every grid fused: one job per seed of its 7 (CIFAR-10 ResNet-56, probed), 2 (AlexNet) or 3 alphas
    # (CIFAR-100 ResNet-56); tests/test_presets.py checks the jobs' commands
    fused = {r: n for r, n in jobs.items() if r.startswith("train_teacher_fused_")}
    assert len(fused) == 3 * 5 and set(fused.values()) == {1} and "train_teacher" not in jobs
    assert jobs["prepare_data"] == 2
    text = proc.stdout
    assert "--recipe" in text or "train_teacher" in text


def test_lint_is_clean():
    proc = snakemake(REPO, "--lint", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Lints for" not in out, out[-4000:]


def test_a_configfile_stands_alone(tmp_path):
    """With the digits demo's config.yaml in the working directory, a --configfile without a
    `distillation` section and without digits dry-runs cleanly: nothing of config.yaml leaks in
    (it used to fail with "distillation[0]: no teacher grid for dataset 'digits' ...")."""
    import yaml

    work = make_workdir(tmp_path / "alone", REPO / "config.yaml")
    for c in ("a", "b"):  # the tree's folders, which planning checks (listed, not read)
        (tmp_path / "tree" / "train" / c).mkdir(parents=True)
    alone = tmp_path / "alone.yaml"
    alone.write_text(yaml.safe_dump({
        "results": "out", "device": "cpu", "resources": {"gpus_per_job": 0},
        "datasets": {"toy": {"source": "imagefolder", "root": str(tmp_path / "tree"), "val_size": 2}},
        "recipes": {"quick": {"steps": 5, "batch_size": 4}},
        "teachers": [{"dataset": "toy", "arch": "smallcnn", "recipe": "quick", "alphas": [0.0, 0.1], "seeds": [0]}],
    }))
    proc = snakemake(work, "-n", "-p", "--configfile", str(alone))
    jobs = planned_jobs(proc)
    assert jobs["prepare_data"] == 1 and jobs["train_teacher"] == 2
    assert not any(r.startswith(("train_student", "distillation", "mi_", "projections")) for r in jobs), jobs
    text = proc.stdout + proc.stderr
    assert not re.search(r"digits\.npz|/digits/|smallcnn_digits|mlp", text)  # nothing of the demo's dataset or students
    assert "results/" not in text  # nor its results folder
    # without --configfile, config.yaml is the configuration (and --config still overrides it)
    proc = snakemake(work, "-n", "--config", "results=elsewhere")
    assert "digits" in proc.stdout and "elsewhere/models/digits" in proc.stdout
