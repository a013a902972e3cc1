"""Fig. 5: run names and the student grid, the smoothness index gamma, the table behind the figure,
a real distillation run on a tiny problem and the CLI (the DAG's checks: test_workflow_experiments.py)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import fit_one, one_loss, synthetic_data
from lspipe import cli
from lspipe.base import runs
from lspipe.base.errors import ConfigError
from lspipe.core.inference import predict
from lspipe.core.losses import smoothed_targets
from lspipe.core.models import build_model
from lspipe.core.recipe import Recipe
from lspipe.engine.activations import write_dump
from lspipe.engine.dumpfile import Dump
from lspipe.experiments import distill

ENTRY = {"dataset": "digits", "teacher_arch": "smallcnn", "student_arch": "mlp", "student_recipe": "digits",
         "teacher_alphas": [0.0, 0.1, 0.3], "temperatures": [1, 2, 4], "seeds": [0, 1], "baseline_alphas": None}


def test_ls_temperature_moves_the_ls_teachers_students():
    """distillation[].ls_temperature (default 1, the paper's Fig. 5): the LS teachers' students and the gamma
    table's temperatures follow it; the hard teacher's students keep the grid."""
    names = {r.name for r in distill.student_runs(ENTRY)}
    assert "kd-smallcnn-a0.1-T1_s0" in names and distill.gamma_temperatures(ENTRY) == [1.0, 2.0, 4.0]
    e = {**ENTRY, "ls_temperature": 20}
    kd_ls = sorted(r.name for r in distill.student_runs(e) if r.family == "kd_ls")
    assert kd_ls == [f"kd-smallcnn-a{a}-T20_s{s}" for a in ("0.1", "0.3") for s in (0, 1)]
    assert sorted(r.name for r in distill.student_runs(e) if r.family == "kd_hard") == \
        sorted(r.name for r in distill.student_runs(ENTRY) if r.family == "kd_hard")
    assert distill.gamma_temperatures(e) == [1.0, 2.0, 4.0, 20.0]


# --------------------------------------------------------------------------- smoothness index


def _gamma_loop(logits, labels, T):
    """The definition, term by term: mean_x sum_k (1 - y_k) p_k(T) K / (K - 1)."""
    n, k = logits.shape
    total = 0.0
    for i in range(n):
        z = logits[i] / T
        p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        y = np.zeros(k)
        y[labels[i]] = 1.0
        total += sum((1 - y[j]) * p[j] for j in range(k)) * k / (k - 1)
    return total / n


@pytest.mark.parametrize("k,alpha", [(10, 0.1), (10, 0.3), (100, 0.1), (3, 0.6)])
def test_gamma_of_exactly_smoothed_outputs_is_alpha(k, alpha):
    labels = torch.arange(50) % k
    logits = torch.log(smoothed_targets(labels, k, alpha).double()).numpy()
    assert distill.smoothness_index(logits, labels.numpy(), 1.0) == pytest.approx(alpha, rel=1e-6)  # float32 targets


@pytest.mark.parametrize("T", [1.0, 3.0, 0.5])
def test_gamma_matches_the_definition(T):
    rng = np.random.default_rng(int(T * 10))
    logits, labels = rng.normal(size=(40, 7)) * 3, rng.integers(0, 7, 40)
    assert distill.smoothness_index(logits, labels, T) == pytest.approx(_gamma_loop(logits, labels, T), rel=1e-10)


def test_gamma_limits():
    labels = np.arange(12) % 4
    uniform = np.zeros((12, 4))
    assert distill.smoothness_index(uniform, labels) == pytest.approx(1.0)
    confident = np.where(np.eye(4)[labels] > 0, 60.0, 0.0)  # p_true = 1 - 3 e^-60
    assert distill.smoothness_index(confident, labels) == pytest.approx(4 / 3 * 3 * np.exp(-60), rel=1e-6)
    rng = np.random.default_rng(0)
    z = rng.normal(size=(30, 5)) * 2
    y = z.argmax(1)
    gammas = [distill.smoothness_index(z, y, t) for t in (1, 2, 4, 16, 1e4)]
    assert all(a < b for a, b in zip(gammas, gammas[1:])) and gammas[-1] == pytest.approx(1.0, abs=1e-3)
    with pytest.raises(ValueError, match="temperature"):
        distill.smoothness_index(z, y, 0.0)


# --------------------------------------------------------------------------- run names and the grid


def test_run_names_round_trip():
    for run in distill.student_runs(ENTRY):
        assert distill.StudentRun.parse(run.name) == run
    assert runs.run_name(0.1, 3) == "a0.1_s3"
    assert runs.kd_run("resnet56", 0.0, 2.0, 0) == "kd-resnet56-a0-T2_s0"
    assert distill.StudentRun.parse("kd-resnet56-a0.15-T1_s4").family == "kd_ls"
    with pytest.raises(ValueError, match="not a student run name"):
        distill.StudentRun.parse("kd-a0-T1_s0")


def test_student_grid_of_an_entry():
    runs = distill.student_runs(ENTRY)
    by = {f: sorted(r.name for r in runs if r.family == f) for f in ("baseline", "kd_hard", "kd_ls")}
    assert by["baseline"] == ["a0.1_s0", "a0.1_s1", "a0.3_s0", "a0.3_s1", "a0_s0", "a0_s1"]
    assert by["kd_hard"] == sorted(f"kd-smallcnn-a0-T{t}_s{s}" for t in (1, 2, 4) for s in (0, 1))
    assert by["kd_ls"] == sorted(f"kd-smallcnn-a{a}-T1_s{s}" for a in (0.1, 0.3) for s in (0, 1))
    assert len(runs) == 16
    assert [r.alpha for r in distill.student_runs({**ENTRY, "baseline_alphas": [0.5]}) if not r.distilled] == [0.5, 0.5]
    assert distill.gamma_temperatures({**ENTRY, "temperatures": [4, 2]}) == [1.0, 2.0, 4.0]
    assert distill.teacher_alphas_needed({**ENTRY, "teacher_alphas": [0.3]}) == [0.0, 0.3]


def test_one_entry_per_dataset():
    distill.entries_by_dataset([ENTRY, {**ENTRY, "dataset": "cifar10"}])
    with pytest.raises(ConfigError, match=r"distillation\[1\].dataset 'digits' repeats distillation\[0\]"):
        distill.entries_by_dataset([ENTRY, {**ENTRY, "student_arch": "alexnet"}])


# --------------------------------------------------------------------------- the table behind Fig. 5


def _ev(arch, role, run, alpha, seed, acc):
    return {"model": {"dataset": "digits", "arch": arch, "role": role, "alpha": alpha, "seed": seed, "run": run},
            "val": {"accuracy": acc - 0.1, "nll": 1.0, "n": 10}, "test": {"accuracy": acc, "nll": 1.0, "n": 10}}


def _fixture_evals():
    teachers = [_ev("smallcnn", "teacher", f"a{a:g}_s{s}", a, s, acc)
                for (a, s, acc) in [(0.0, 0, 0.90), (0.0, 1, 0.92), (0.3, 0, 0.95), (0.3, 1, 0.94)]]
    students = [
        _ev("mlp", "student", "a0_s0", 0.0, 0, 0.80), _ev("mlp", "student", "a0_s1", 0.0, 1, 0.84),
        _ev("mlp", "student", "a0.3_s0", 0.3, 0, 0.81), _ev("mlp", "student", "a0.3_s1", 0.3, 1, 0.83),
        _ev("mlp", "student", "kd-smallcnn-a0-T2_s0", 0.0, 0, 0.86), _ev("mlp", "student", "kd-smallcnn-a0-T2_s1", 0.0, 1, 0.88),
        _ev("mlp", "student", "kd-smallcnn-a0.3-T1_s0", 0.0, 0, 0.79), _ev("mlp", "student", "kd-smallcnn-a0.3-T1_s1", 0.0, 1, 0.80),
    ]
    gamma = {("0", 0, "2"): 0.2, ("0", 1, "2"): 0.4, ("0.3", 0, "1"): 0.31, ("0.3", 1, "1"): 0.33}
    return teachers, students, gamma


def test_distillation_rows_aggregate_over_seeds():
    teachers, students, gamma = _fixture_evals()
    rows = distill.distillation_rows(teachers, students, gamma, split="test")
    got = {(r["family"], str(r["teacher_alpha"]), str(r["alpha"]), str(r["temperature"])): r for r in rows}
    assert [r["family"] for r in rows] == ["teacher", "teacher", "baseline", "baseline", "kd_hard", "kd_ls"]
    t0 = got[("teacher", "0.0", "0.0", "")]
    assert (t0["accuracy_pct_mean"], t0["accuracy_pct_min"], t0["accuracy_pct_max"]) == pytest.approx((91.0, 90.0, 92.0))
    assert t0["accuracy_pct_std"] == pytest.approx(np.std([90.0, 92.0], ddof=1), abs=1e-4) and t0["gamma_mean"] == 0.0
    b = got[("baseline", "", "0.3", "")]
    assert b["gamma_mean"] == pytest.approx(0.3) and b["accuracy_pct_mean"] == pytest.approx(82.0) and b["seeds"] == 2
    kd = got[("kd_hard", "0.0", "", "2.0")]
    assert (kd["gamma_mean"], kd["gamma_min"], kd["gamma_max"]) == pytest.approx((0.3, 0.2, 0.4))
    assert (kd["accuracy_pct_mean"], kd["accuracy_pct_min"], kd["accuracy_pct_max"]) == pytest.approx((87.0, 86.0, 88.0))
    ls = got[("kd_ls", "0.3", "", "1.0")]
    assert ls["gamma_mean"] == pytest.approx(0.32) and ls["accuracy_pct_mean"] == pytest.approx(79.5)
    assert all(r["student_arch"] == "mlp" and r["teacher_arch"] == "smallcnn" for r in rows)
    val = distill.distillation_rows(teachers, students, gamma, split="val")
    assert val[0]["accuracy_pct_mean"] == pytest.approx(81.0) and val[0]["split"] == "val"
    with pytest.raises(KeyError, match="no smoothness index for teacher alpha 0, seed 1, T 2"):
        distill.distillation_rows(teachers, students, {k: v for k, v in gamma.items() if k != ("0", 1, "2")})


def test_distillation_rows_record_the_form():
    teachers, students, gamma = _fixture_evals()
    for ev in students:
        if ev["model"]["run"].startswith("kd-"):
            ev["model"]["form"] = "slides"
    rows = distill.distillation_rows(teachers, students, gamma)
    assert {(r["family"], r["form"]) for r in rows} == {("teacher", ""), ("baseline", ""), ("kd_hard", "slides"),
                                                        ("kd_ls", "slides")}
    next(ev for ev in students if ev["model"]["run"].startswith("kd-"))["model"]["form"] = "hinton"
    with pytest.raises(ValueError, match="mix distillation forms \\['hinton', 'slides'\\]"):
        distill.distillation_rows(teachers, students, gamma)


def test_cli_gamma_table_and_figure(tmp_path):
    """distill-gamma on real dumps, then distill-figure: the CSVs and both figure files."""
    torch.set_num_threads(1)
    data = synthetic_data((120, 30, 30), side=5, name="tiny")
    dumps = []
    for alpha, seed in ((0.0, 0), (0.0, 1), (0.3, 0), (0.3, 1)):
        torch.manual_seed(seed)
        model = build_model("mlp", data, hidden=(8,))
        path = tmp_path / f"a{alpha:g}_s{seed}.h5"
        write_dump(path, model, data, attrs={"dataset": "digits", "arch": "smallcnn", "role": "teacher",
                                              "run": f"a{alpha:g}_s{seed}", "alpha": alpha, "seed": seed})
        dumps.append((path, model, alpha, seed))
    gamma_csv = tmp_path / "gamma.csv"
    assert cli.main(["distill-gamma", "--dumps", *[str(d[0]) for d in dumps], "--temperatures", "1", "2",
                     "--out", str(gamma_csv)]) == 0
    rows = list(csv.DictReader(open(gamma_csv)))
    assert len(rows) == 8 and set(rows[0]) == set(distill.GAMMA_FIELDS)
    path, model, _, _ = dumps[1]
    logits = predict(model, data.x["train"], "cpu").numpy()
    expect = distill.smoothness_index(logits, data.y["train"], 2.0)
    (row,) = [r for r in rows if r["run"] == "a0_s1" and float(r["temperature"]) == 2.0]
    assert float(row["gamma"]) == pytest.approx(expect, rel=1e-5) and int(row["n"]) == 120

    teachers, students, _ = _fixture_evals()
    paths = {"t": [], "s": []}
    for kind, evs in (("t", teachers), ("s", students)):
        for ev in evs:
            p = tmp_path / f"{kind}_{ev['model']['run']}.json"
            p.write_text(json.dumps(ev))
            paths[kind].append(str(p))
    out_csv, figs = tmp_path / "table.csv", [tmp_path / "fig5.pdf", tmp_path / "fig5.png"]
    assert cli.main(["distill-figure", "--gamma", str(gamma_csv), "--teacher-evals", *paths["t"], "--student-evals",
                     *paths["s"], "--csv", str(out_csv), "--figures", *map(str, figs), "--dpi", "50"]) == 0
    table = list(csv.DictReader(open(out_csv)))
    assert [r["family"] for r in table] == ["teacher", "teacher", "baseline", "baseline", "kd_hard", "kd_ls"]
    kd = table[4]
    g = distill.read_gamma_table(gamma_csv)
    assert float(kd["gamma_mean"]) == pytest.approx((g[("0", 0, "2")] + g[("0", 1, "2")]) / 2, abs=1e-6)
    assert figs[0].read_bytes()[:4] == b"%PDF" and figs[1].read_bytes()[:4] == b"\x89PNG"
    assert cli.main(["distill-figure", "--gamma", str(gamma_csv), "--teacher-evals", *paths["t"], "--student-evals",
                     *paths["s"], "--split", "train", "--csv", str(out_csv), "--figures", str(figs[1])]) == 2


def test_gamma_averages_over_the_whole_training_split(tmp_path):
    """A dump capped to 30 training examples still gives gamma over all 120 (one forward pass; T only
    rescales the logits), and the CSV and Fig. 5's label state the sample size."""
    torch.set_num_threads(1)
    data = synthetic_data((120, 30, 30), side=5, name="tiny")
    torch.manual_seed(0)
    model = build_model("mlp", data, hidden=(8,))
    with torch.no_grad():
        model.classifier.weight.mul_(5.0)
    path = tmp_path / "a0_s0.h5"
    write_dump(path, model, data, max_train=30, attrs={"dataset": "tiny", "arch": "mlp", "role": "teacher",
                                                        "run": "a0_s0", "alpha": 0.0, "seed": 0})
    out = tmp_path / "gamma.csv"
    assert cli.main(["distill-gamma", "--dumps", str(path), "--temperatures", "1", "3", "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out)))
    logits = predict(model, data.x["train"], "cpu").numpy()
    for r in rows:
        assert int(r["n"]) == int(r["train_size"]) == 120
        T = float(r["temperature"])
        assert float(r["gamma"]) == pytest.approx(distill.smoothness_index(logits, data.y["train"], T), rel=1e-5)
    capped = distill.smoothness_index(logits[Dump(path).split("train").index], Dump(path).split("train").labels, 3.0)
    assert capped != pytest.approx(float(rows[1]["gamma"]), rel=1e-4)  # the subset would have given another value
    assert distill.gamma_sample(out) == "whole training split, n = 120"


# --------------------------------------------------------------------------- a real distillation run


def _kl_and_loss(student, teacher, data, T):
    x, y = data.x["train"], torch.from_numpy(data.y["train"])
    zs, zt = predict(student, x, "cpu"), predict(teacher, x, "cpu")
    log_pt = F.log_softmax(zt / T, 1)
    kl = float((log_pt.exp() * (log_pt - F.log_softmax(zs, 1))).sum(1).mean())
    return kl, float(one_loss({"kind": "kd", "teacher": "t", "T": T}, zs, y, torch.from_numpy(x), {"t": teacher}))


def test_distilled_student_moves_towards_its_teacher(tmp_path):
    """The `teacher` form (teacher at T, student at T = 1, beta = 1; the slides' form is `slides`) on the real
    engine: KL(p_teacher(T) || p_student) and the loss fall."""
    torch.set_num_threads(1)
    data, T = synthetic_data((128, 30, 30), classes=4, side=5, name="tiny"), 2.0
    torch.manual_seed(1)
    teacher = build_model("mlp", data, hidden=(16,))
    with torch.no_grad():
        teacher.classifier.weight.mul_(8.0)  # a fixed, confident, arbitrary teacher
    torch.manual_seed(2)
    student = build_model("mlp", data, hidden=(64,))
    kl0, loss0 = _kl_and_loss(student, teacher, data, T)
    recipe = Recipe.from_dict({"steps": 120, "batch_size": 32, "lr": 0.05, "augment": {"pad": 0, "flip": False}})
    fit_one(student, data, recipe, {"kind": "kd", "teacher": "t", "T": T}, teachers={"t": teacher}, seed=0,
            checkpoint_path=tmp_path / "c.ckpt", metrics_path=tmp_path / "m.csv", progress=False)
    kl1, loss1 = _kl_and_loss(student, teacher, data, T)
    assert kl0 > 0.2 and kl1 < 0.3 * kl0, (kl0, kl1)
    assert loss1 < loss0 and loss0 - loss1 == pytest.approx(kl0 - kl1, rel=1e-4)  # H(pt, ps) = H(pt) + KL
    rows = list(csv.DictReader(open(tmp_path / "m.csv")))
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
