"""End-to-end checks of each experiment's outputs and plans, moved out of the unit-test files
(``test_<module>.py`` holds a module's unit tests; DAG runs live in the workflow test files).

Every check reuses the session's finished ``tiny_run`` or makes dry runs; grouped by experiment
module (calibration, distill, fused, lockstep, mi, projection, teacher_projection).
"""

from __future__ import annotations

import csv
import math
import re

import pytest
import torch
import yaml

from conftest import REPO, make_workdir, planned_jobs, snakemake
from lspipe.base import runs
from lspipe.engine.probefile import ProbeTrace
from lspipe.experiments import calibration as C
from lspipe.experiments import distill
from lspipe.experiments.mi import mi_curve


# --------------------------------------------------------------------------- calibration


@pytest.mark.slow
def test_table3_and_fig2_built_by_the_workflow(tiny_run):
    import yaml
    from matplotlib.image import imread

    cfg = yaml.safe_load((tiny_run / "config.yaml").read_text())
    results = tiny_run / "results"
    with open(results / "tables" / "calibration.csv") as fh:
        rows = list(csv.DictReader(fh))
    t = cfg["teachers"][0]
    assert [(r["dataset"], r["arch"]) for r in rows] == [(t["dataset"], t["arch"])]
    r = rows[0]
    assert float(r["ls_alpha"]) == cfg["calibration"]["ls_alpha"] and int(r["hard_seeds"]) == len(t["seeds"])
    assert int(r["bins"]) == cfg["calibration"]["bins"] and r["split"] == "test"
    assert 0 <= float(r["ece_ts_frac_mean"]) <= 1 and float(r["temperature_mean"]) > 0
    assert "| digits | smallcnn |" in (results / "tables" / "calibration.md").read_text()
    # the table is the per-model JSONs aggregated; the JSON's ECE is the dump's logits re-evaluated
    js = C.calibrate_dump(results / "dumps" / "digits" / "smallcnn" / "teacher" / "a0_s0.h5", cfg["calibration"]["bins"])
    assert float(r["ece_hard_frac_mean"]) == pytest.approx(js["before"]["ece"], abs=1e-6)
    for ext in cfg["figures"]["formats"]:
        p = results / "figures" / f"fig2_reliability_digits_smallcnn.{ext}"
        assert p.stat().st_size > 1000
    assert imread(results / "figures" / "fig2_reliability_digits_smallcnn.png").ndim == 3
    assert math.isfinite(js["temperature"])


def test_every_table_names_its_units(tiny_run):
    """One unit per quantity, named in the column: accuracy in percent (``_pct``) in every CSV, the
    ECE a fraction (``_frac``); the experiment table's accuracy is the evaluation's, times 100."""
    import json

    tables = sorted((tiny_run / "results" / "tables").glob("*.csv"))
    assert len(tables) >= 6
    seen = set()
    for path in tables:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
        for col in rows[0]:
            if "acc" in col:
                assert "_pct" in col, (path.name, col)
                assert all(0 <= float(r[col]) <= 100 for r in rows if r[col]), (path.name, col)
            if "ece" in col:
                assert "_frac" in col, (path.name, col)
                assert all(0 <= float(r[col]) <= 1 for r in rows if r[col]), (path.name, col)
            seen.add(col)
    assert {"accuracy_pct_mean", "test_accuracy_pct", "ece_frac", "ece_hard_frac_mean", "accuracy_hard_pct_mean"} <= seen
    with open(tiny_run / "results" / "tables" / "experiments.csv", newline="") as fh:
        row = next(csv.DictReader(fh))
    ev = json.loads((tiny_run / "results" / "eval" / row["dataset"] / row["arch"] / row["role"] / f"{row['run']}.json")
                    .read_text())
    assert float(row["test_accuracy_pct"]) == pytest.approx(100 * ev["test"]["accuracy"])
    assert "ECE (fraction)" in (tiny_run / "results" / "tables" / "experiments.md").read_text()


# --------------------------------------------------------------------------- distill


@pytest.mark.slow
def test_fig5_end_to_end(tiny_run):
    r = tiny_run / "results"
    for ext in ("pdf", "png"):
        f = r / "figures" / f"fig5_distillation_digits.{ext}"
        assert f.is_file() and f.stat().st_size > 1000
    rows = list(csv.DictReader(open(r / "tables" / "distillation_digits.csv")))
    got = {(x["family"], x["alpha"], x["teacher_alpha"], x["temperature"]) for x in rows}
    # tests/tiny.yaml: teacher_alphas [0, 0.3], temperatures [1, 4], one seed
    assert got == {("teacher", "0.0", "0.0", ""), ("teacher", "0.3", "0.3", ""),
                   ("baseline", "0.0", "", ""), ("baseline", "0.3", "", ""),
                   ("kd_hard", "", "0.0", "1.0"), ("kd_hard", "", "0.0", "4.0"), ("kd_ls", "", "0.3", "1.0")}
    gamma = distill.read_gamma_table(r / "tables" / "distillation_gamma_digits.csv")
    assert set(gamma) == {(a, 0, t) for a in ("0", "0.3") for t in ("1", "4")}
    for x in rows:
        assert x["split"] == "test" and x["seeds"] == "1" and 0 <= float(x["accuracy_pct_mean"]) <= 100
        if x["family"] in ("teacher", "baseline"):
            assert float(x["gamma_mean"]) == pytest.approx(float(x["alpha"]))
        else:
            assert float(x["gamma_mean"]) == pytest.approx(gamma[(runs.fmt(x["teacher_alpha"]), 0, runs.fmt(x["temperature"]))])
    meta = torch.load(r / "models/digits/mlp/student/kd-smallcnn-a0-T4_s0/model.pt", weights_only=False)["meta"]
    assert meta["teacher"].endswith("models/digits/smallcnn/teacher/a0_s0/model.pt")
    assert (meta["temperature"], meta["beta"], meta["form"], meta["role"]) == (4.0, 1.0, "teacher", "student")
    assert all(x["form"] == ("teacher" if x["family"].startswith("kd") else "") for x in rows)
    # tests/tiny.yaml trains in lockstep: the hard teacher's students (T 1, 4) in one job, the baselines
    # (alpha 0, 0.3) in another; the LS teacher's single student alone. Every student has its own files.
    for log in ("train_students_lockstep/digits/mlp/kd_hard_s0.log", "train_students_lockstep/digits/mlp/baseline_s0.log",
                "train_student_distilled/digits/mlp/kd-smallcnn-a0.3-T1_s0.log"):
        assert (r / "logs" / log).is_file()
    assert meta["lockstep"] == {"runs": ["kd-smallcnn-a0-T1_s0", "kd-smallcnn-a0-T4_s0"], "fused": False}
    assert meta["summary"]["final"] == {k: float(v) if k != "epoch" and k != "step" else int(v) for k, v in
                                        list(csv.DictReader(open(r / "models/digits/mlp/student/kd-smallcnn-a0-T4_s0/metrics.csv")))[-1].items()}
    base = torch.load(r / "models/digits/mlp/student/a0.3_s0/model.pt", weights_only=False)["meta"]
    assert (base["alpha"], base["run"], base["lockstep"]["runs"]) == (0.3, "a0.3_s0", ["a0_s0", "a0.3_s0"])


def _planned_outputs(proc, rule):
    """First output path of every job of ``rule`` in a dry run's job listing."""
    text = proc.stdout + proc.stderr
    return set(re.findall(rf"rule {rule}:\n(?:\s+input: .*\n)?\s+output: ([^,\s]+)", text))


def _force(tiny_run, teacher_run, *targets):
    teacher = f"results/models/digits/smallcnn/teacher/{teacher_run}/model.pt"
    return snakemake(tiny_run, "-n", *targets, "--forcerun", teacher)


@pytest.mark.slow
def test_retraining_a_teacher_retrains_exactly_its_students(tiny_run):
    """Dry runs on the finished tiny workflow: a forced teacher reruns its own students, no other."""
    students = "results/models/digits/mlp/student"
    targets = [f"{students}/{run}/model.pt" for run in
               ("a0_s0", "a0.3_s0", "kd-smallcnn-a0-T1_s0", "kd-smallcnn-a0-T4_s0", "kd-smallcnn-a0.3-T1_s0")]
    assert planned_jobs(snakemake(tiny_run, "-n", *targets)) == {}
    proc = _force(tiny_run, "a0_s0", *targets)
    # the hard teacher's students (T 1 and 4) train in one lockstep job (tests/tiny.yaml: lockstep on)
    assert planned_jobs(proc) == {"train_teacher": 1, "train_students_lockstep_digits_kd_hard_s0": 1}
    assert _planned_outputs(proc, "train_students_lockstep_digits_kd_hard_s0") == {f"{students}/kd-smallcnn-a0-T1_s0/model.pt"}
    proc = _force(tiny_run, "a0.3_s0", *targets)
    assert _planned_outputs(proc, "train_student_distilled") == {f"{students}/kd-smallcnn-a0.3-T1_s0/model.pt"}
    assert planned_jobs(proc) == {"train_teacher": 1, "train_student_distilled": 1}


@pytest.mark.slow
def test_retraining_a_teacher_refreshes_fig5(tiny_run):
    jobs = planned_jobs(_force(tiny_run, "a0.3_s0", "results/tables/distillation_digits.csv"))
    assert jobs.get("train_student_distilled") == 1
    assert jobs.get("distillation_gamma") == 1 and jobs.get("distillation_figure") == 1
    assert jobs.get("analyse_model") == 2  # the teacher's and its student's


# --------------------------------------------------------------------------- fused


@pytest.mark.slow
def test_workflow_plans_one_fused_job_per_seed(tmp_path):
    cfg = yaml.safe_load((REPO / "tests" / "tiny.yaml").read_text())
    cfg["teachers"][0].update(fuse=True, probe=None, seeds=[0, 1])
    cfg.pop("mi", None)
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    work = make_workdir(tmp_path / "w", tmp_path / "cfg.yaml")
    model = "results/models/digits/smallcnn/teacher/{}/model.pt"
    proc = snakemake(work, "-n", "-p", model.format("a0.3_s1"), model.format("a0_s0"), model.format("a0.3_s0"))
    assert planned_jobs(proc) == {"prepare_data": 1, "train_teacher_fused_digits_smallcnn_s0": 1,
                                  "train_teacher_fused_digits_smallcnn_s1": 1}
    # one `lspipe train --fuse` per seed, one objective per alpha and one for the grid's confidence penalty
    assert "--fuse" in proc.stdout and '[{"alpha": 0.0, "kind": "ls"}, {"alpha": 0.3, "kind": "ls"}, ' \
        '{"beta": 0.5, "kind": "confidence_penalty"}]' in proc.stdout


# --------------------------------------------------------------------------- lockstep


@pytest.mark.slow
def test_teacher_twin_trains_once_in_a_dry_run(tmp_path):
    """Self-distillation on tiny.yaml (student arch and recipe = the teacher grid's): the student baselines
    are the teachers' runs, so no baseline job is planned and Fig. 5 reads the teachers' evaluations."""
    cfg = yaml.safe_load((REPO / "tests" / "tiny.yaml").read_text())
    cfg["distillation"][0]["student_arch"] = "smallcnn"
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    work = make_workdir(tmp_path / "w", tmp_path / "cfg.yaml")
    proc = snakemake(work, "-n", "results/tables/distillation_digits.csv")
    jobs = planned_jobs(proc)
    assert jobs == {"prepare_data": 1, "train_teacher": 2, "train_students_lockstep_digits_kd_hard_s0": 1,
                    "train_student_distilled": 1, "analyse_model": 5, "distillation_gamma": 1,
                    "distillation_figure": 1}, jobs
    figure = re.search(r"rule distillation_figure:\n\s+input: (.*)\n", proc.stdout).group(1).split(", ")
    assert {"results/eval/digits/smallcnn/teacher/a0_s0.json", "results/eval/digits/smallcnn/teacher/a0.3_s0.json"} < set(figure)
    assert not [f for f in figure if "/student/a" in f]


@pytest.mark.slow
def test_paper_preset_trains_the_alexnet_alpha0_runs_once_and_students_in_lockstep(tmp_path):
    work = make_workdir(tmp_path / "paper", REPO / "config.yaml")
    for folder in ("cifar-10-batches-py", "cifar-100-python"):  # torchvision's copies, checked while planning
        (tmp_path / folder).mkdir()
    proc = snakemake(work, "-n", "--configfile", str(REPO / "workflow/presets/paper.yaml"),
                     "--config", f"datasets={{cifar10: {{root: {tmp_path}}}, cifar100: {{root: {tmp_path}}}}}")
    jobs = planned_jobs(proc)
    for s in range(5):
        assert jobs[f"train_students_lockstep_cifar10_kd_hard_s{s}"] == 1
        assert jobs[f"train_students_lockstep_cifar10_baseline_s{s}"] == 1
    assert "train_student_baseline" not in jobs and jobs["train_student_distilled"] == 25  # LS teachers' students
    # every teacher grid fused, one job per seed: the probed CIFAR-10 ResNet-56 (7 alphas), the AlexNet
    # (alpha 0 trained once, as the teacher) and the CIFAR-100 ResNet-56 teachers
    assert "train_teacher" not in jobs
    for grid in ("cifar10_resnet56", "cifar10_alexnet", "cifar100_resnet56"):
        assert all(jobs[f"train_teacher_fused_{grid}_s{s}"] == 1 for s in range(5)), jobs
    outs = re.findall(r"rule train_students_lockstep_cifar10_baseline_s0:\n(?:\s+input: .*\n)?\s+output: (.*)\n", proc.stdout)
    # every baseline alpha but 0 (trained once, as the AlexNet teacher) in the lockstep job
    baselines = yaml.safe_load((REPO / "workflow/presets/paper.yaml").read_text())["distillation"][0]["baseline_alphas"]
    assert outs and "student/a0_s0/" not in outs[0] and outs[0].count("model.pt") == len(baselines) - 1 == 7
    assert "results/eval/cifar10/alexnet/teacher/a0_s3.json" in proc.stdout


# --------------------------------------------------------------------------- mi


@pytest.mark.slow
def test_fig6_built_by_the_workflow(tiny_run):
    import yaml

    cfg = yaml.safe_load((tiny_run / "config.yaml").read_text())
    t = cfg["teachers"][0]
    n = 2 * t["probe"]["per_class"]
    for ext in cfg["figures"]["formats"]:
        assert (tiny_run / "results" / "figures" / f"fig6_mi_digits_smallcnn.{ext}").stat().st_size > 1000
    with open(tiny_run / "results" / "tables" / "mi_digits_smallcnn.csv") as fh:
        table = list(csv.DictReader(fh))
    steps = list(range(0, cfg["recipes"][t["recipe"]]["steps"] + 1, t["probe"]["every"]))
    assert {float(r["alpha"]) for r in table} == set(t["alphas"])
    for a in t["alphas"]:
        assert [int(r["step"]) for r in table if float(r["alpha"]) == a] == steps
    for r in table:
        assert int(r["n"]) == n and int(r["seeds"]) == len(t["seeds"])
        assert 0.0 <= float(r["mi_min"]) <= float(r["mi_mean"]) <= float(r["mi_max"]) <= math.log(n)
    # the per-teacher curve is the estimator applied to the recorded trace
    run = f"a{t['alphas'][-1]:g}_s{t['seeds'][0]}"
    tr = ProbeTrace(tiny_run / "results" / "models" / "digits" / "smallcnn" / "teacher" / run / "probe.h5")
    assert tr.probe_classes == t["probe"]["classes"] and tr.logits.shape[1:3] == (n, t["probe"]["copies"])
    with open(tiny_run / "results" / "mi" / "digits" / "smallcnn" / f"{run}.csv") as fh:
        curve = list(csv.DictReader(fh))
    assert [float(r["mi"]) for r in curve] == pytest.approx([r["mi"] for r in mi_curve(tr)])


# --------------------------------------------------------------------------- projection


@pytest.mark.slow
def test_fig1_built_by_the_workflow(tiny_run):
    import yaml
    from matplotlib.image import imread

    cfg = yaml.safe_load((tiny_run / "config.yaml").read_text())
    for ext in cfg["figures"]["formats"]:
        assert (tiny_run / "results" / "figures" / f"fig1_projections.{ext}").stat().st_size > 1000
    img = imread(tiny_run / "results" / "figures" / "fig1_projections.png")
    assert img.ndim == 3 and img.shape[1] > img.shape[0]  # one row of four panels


# --------------------------------------------------------------------------- teacher_projection


@pytest.mark.slow
def test_fig5_teacher_projections_built_by_the_workflow(tiny_run):
    for ext in ("pdf", "png"):
        assert (tiny_run / "results" / "figures" / f"fig5_teacher_projections_digits.{ext}").stat().st_size > 1000


def test_a_grid_with_ls_and_the_confidence_penalty(tiny_run):
    """tiny.yaml's teacher grid holds alpha 0, 0.3 and the confidence penalty (beta 0.5): the CP teacher
    trains in the grid under its own run name, with its objective in its metadata, and Table 2, its
    calibration and the experiment table show it beside the label-smoothed teachers. Its predictions have a higher entropy than the alpha-0 teacher's, trained on the
    same batches from the same initialisation: the penalty rewards entropy."""
    import json

    import numpy as np

    from lspipe.core.models import load_model
    from lspipe.engine.dumpfile import Dump

    results, cp = tiny_run / "results", {"kind": "confidence_penalty", "beta": 0.5}
    run = runs.objective_run(cp, 0)
    assert run == "confidence_penalty-beta0.5_s0"
    _, meta = load_model(results / "models" / "digits" / "smallcnn" / "teacher" / run / "model.pt")
    assert meta["objective"] == cp and meta["run"] == run and meta["seed"] == 0
    rows = list(csv.DictReader(open(results / "tables" / "accuracy.csv")))
    assert [r["alpha"] for r in rows] == ["0.0", "0.3", "confidence_penalty beta = 0.5"]
    assert "| α = 0 | α = 0.3 | confidence_penalty beta = 0.5 |" in (results / "tables" / "accuracy.md").read_text()
    cal = json.loads((results / "calibration" / "digits" / "smallcnn" / "teacher" / f"{run}.json").read_text())
    assert 0 <= cal["before"]["ece"] <= 1 and cal["temperature"] > 0
    table = {r["run"]: r for r in csv.DictReader(open(results / "tables" / "experiments.csv"))}
    assert table[run]["alpha"] == "confidence_penalty beta = 0.5" and float(table[run]["ece_frac"]) == cal["before"]["ece"]
    assert table["a0.3_s0"]["alpha"] == "0.3"

    def entropy(r):
        z = Dump(results / "dumps" / "digits" / "smallcnn" / "teacher" / f"{r}.h5").split("test").logits.astype(np.float64)
        logp = z - z.max(1, keepdims=True)
        logp -= np.log(np.exp(logp).sum(1, keepdims=True))
        return float(-(np.exp(logp) * logp).sum(1).mean())

    assert entropy(run) > entropy("a0_s0")
