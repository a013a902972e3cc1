"""The paper's MNIST distillation toy: the toy nets, the toy's table (against intervals computed by
scipy's own t interval), claim 6 (two primary checks and their conjunction), the config checks, and the
preset (workflow/presets/mnist-toy.yaml): a dry run on a small MNIST-format file set written by the
tests, and a tiny version of it end to end."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
import yaml

from conftest import REPO, planned_jobs, snakemake, write_mnist
from lspipe.base.errors import ConfigError
from lspipe.core import models
from lspipe.experiments import claims
from lspipe.experiments import distill
from lspipe.experiments import distill_toy as toy_mod
from lspipe.workflow.plan import build

PRESET = REPO / "workflow" / "presets" / "mnist-toy.yaml"
TOY = {"dataset": "mn", "teacher_arch": "mlp1200_dropout", "student_arch": "mlp800", "ls_alpha": 0.1,
       "temperature": 20.0, "split": "test", "form": "hinton"}


# --------------------------------------------------------------------------- the nets


def test_toy_nets_are_the_papers_fully_connected_nets():
    t = models.create("mlp1200_dropout", 10, 1, 28)
    s = models.create("mlp800", 10, 1, 28)
    dense = lambda m: [(l.in_features, l.out_features) for l in m.modules() if isinstance(l, torch.nn.Linear)]  # noqa: E731
    assert dense(t) == [(784, 1200), (1200, 1200), (1200, 10)] and dense(s) == [(784, 800), (800, 800), (800, 10)]
    drops = [l.p for l in t.modules() if isinstance(l, torch.nn.Dropout)]
    assert drops == [0.2, 0.5, 0.5]  # Hinton et al. 2012's MNIST rates: inputs, then each hidden layer
    assert not [l for l in s.modules() if isinstance(l, torch.nn.Dropout)]
    assert all(isinstance(l, (torch.nn.ReLU, torch.nn.Linear, torch.nn.Flatten)) for l in s.body)


def test_toy_teacher_parameter_count_and_dropout_only_in_training():
    t = models.create("mlp1200_dropout", 10, 1, 28)
    assert models.count_parameters(t) == 784 * 1200 + 1200 + 1200 * 1200 + 1200 + 1200 * 10 + 10
    x = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    t.eval()
    logits, h = t(x, features=True)
    assert h.shape == (4, 1200) and torch.equal(t.classifier(h), logits)
    torch.testing.assert_close(t(x), logits)  # eval: deterministic, no unit dropped
    # eval mode equals the net with its dropout layers removed (the full activations are the features)
    plain = torch.nn.Sequential(*[l for l in t.body if not isinstance(l, torch.nn.Dropout)])
    torch.testing.assert_close(plain(t.normalize(x)), h)
    t.train()
    torch.manual_seed(0)
    _, h1 = t(x, features=True)
    _, h2 = t(x, features=True)
    # in training, units are dropped (ReLU zeros about half in both modes; dropout adds about half of the rest)
    assert (h1 == 0).float().mean() > (h == 0).float().mean() + 0.15 and not torch.equal(h1, h2)


# --------------------------------------------------------------------------- the table


def _ev(arch, role, run, seed, acc, alpha=0.0, form=None):
    m = {"dataset": "mn", "arch": arch, "role": role, "run": run, "alpha": alpha, "seed": seed}
    if form:
        m["form"] = form
    return {"model": m, "val": {"accuracy": acc, "nll": 0.1, "n": 1000}, "test": {"accuracy": acc, "nll": 0.1, "n": 10000}}


def _by_role(th, tl, sh, sl, alone):
    """Evaluations per role of the toy from per-seed accuracies (fractions)."""
    T, tarch = "mlp1200_dropout", "mlp800"
    out = {"teacher_hard": [_ev(T, "teacher", f"a0_s{s}", s, a) for s, a in enumerate(th)],
           "teacher_ls": [_ev(T, "teacher", f"a0.1_s{s}", s, a, 0.1) for s, a in enumerate(tl)],
           "student_hard": [_ev(tarch, "student", f"kd-{T}-a0-T20_s{s}", s, a, form="hinton") for s, a in enumerate(sh)],
           "student_ls": [_ev(tarch, "student", f"kd-{T}-a0.1-T20_s{s}", s, a, form="hinton") for s, a in enumerate(sl)],
           "alone_0": [_ev(tarch, "student", f"a0_s{s}", s, a) for s, a in enumerate(alone)]}
    return out


def test_toy_rows_are_error_rates_with_scipys_t_interval():
    from scipy import stats

    th, tl = [0.9880, 0.9874, 0.9891], [0.9885, 0.9890, 0.9893]
    sh, sl, alone = [0.9850, 0.9860, 0.9845], [0.9821, 0.9830, 0.9815], [0.9812, 0.9808, 0.9820]
    rows = {r["row"]: r for r in toy_mod.toy_rows(_by_role(th, tl, sh, sl, alone), TOY, confidence=0.95)}
    assert list(rows) == ["teacher_hard", "teacher_ls", "ls_minus_hard", "alone_0"]

    def ref(values):  # scipy's t interval of the mean (not the module's formula)
        v = np.asarray(values) * 100
        lo, hi = stats.t.interval(0.95, len(v) - 1, loc=v.mean(), scale=stats.sem(v))
        return v.mean(), lo, hi

    err = lambda accs: [1 - a for a in accs]  # noqa: E731
    cases = [("teacher_hard", "teacher_error_pct", err(th)), ("teacher_hard", "student_error_pct", err(sh)),
             ("teacher_ls", "teacher_error_pct", err(tl)), ("teacher_ls", "student_error_pct", err(sl)),
             ("ls_minus_hard", "teacher_error_pct", [b - a for a, b in zip(err(th), err(tl))]),
             ("ls_minus_hard", "student_error_pct", [b - a for a, b in zip(err(sh), err(sl))]),
             ("alone_0", "student_error_pct", err(alone))]
    for row, prefix, values in cases:
        m, lo, hi = ref(values)
        r = rows[row]
        assert (r[f"{prefix}_mean"], r[f"{prefix}_lo"], r[f"{prefix}_hi"]) == pytest.approx((m, lo, hi), abs=1e-4), (row, prefix)
    assert rows["teacher_hard"]["paper_teacher_error_pct"] == 0.67 and rows["teacher_ls"]["paper_student_error_pct"] == 0.91
    assert rows["ls_minus_hard"]["paper_student_error_pct"] == pytest.approx(0.17)
    assert rows["alone_0"]["teacher_error_pct_mean"] == "" and rows["alone_0"]["paper_student_error_pct"] == 1.46
    md = toy_mod.markdown(list(rows.values()), digits=2)
    assert "| hard targets (α = 0) | 1.18 [" in md and "| LS − hard (paired by seed) | -0.08 [" in md
    assert "label smoothing (α = 0.1)" in md and "0.67 / 0.74" in md and "+0.17" in md and "95 % interval" in md


def test_toy_rows_refuse_unpaired_seeds_and_say_one_seed():
    by = _by_role([0.98, 0.98], [0.98, 0.98], [0.97], [0.97], [0.96])
    with pytest.raises(ValueError, match="seeds"):
        toy_mod.toy_rows(by, TOY)
    one = toy_mod.toy_rows(_by_role([0.98], [0.981], [0.97], [0.969], [0.96]), TOY)
    assert one[0]["teacher_error_pct_lo"] == "" and "1 seed: no interval" in toy_mod.markdown(one)


# --------------------------------------------------------------------------- claim 6


def _claim6(th, tl, sh, sl, alone, cfg=None):
    by = _by_role(th, tl, sh, sl, alone)
    evals = [e for recs in by.values() for e in recs]
    teachers = [e for e in evals if e["model"]["role"] == "teacher"]
    students = [e for e in evals if e["model"]["role"] == "student"]
    settings = {k: TOY[k] for k in ("dataset", "ls_alpha", "temperature", "split", "teacher_arch", "student_arch")}
    checks = claims.statistics._assign_ids(claims.student_checks.toy_claims(teachers, students, [settings], cfg or claims.statistics.settings()))
    return {c["id"]: c for c in checks}, claims.rendering.summarise(checks)


def test_claim6_supported_when_ls_teacher_is_as_accurate_and_its_student_worse():
    by, summary = _claim6([0.9880, 0.9874, 0.9891], [0.9890, 0.9886, 0.9902], [0.9850, 0.9860, 0.9845],
                          [0.9821, 0.9830, 0.9815], [0.9812, 0.9808, 0.9820])
    assert set(by) == {"6a", "6b", "6c", "6d"}
    assert by["6a"]["role"] == by["6b"]["role"] == claims.statistics.PRIMARY and by["6c"]["role"] == claims.statistics.DESCRIPTIVE
    # 6a: LS - hard teacher accuracy in pp, against claim 1's relative margin (0.05 x the hard teacher's error)
    assert by["6a"]["effect"]["values"] == pytest.approx([0.10, 0.12, 0.11])
    assert by["6a"]["bound"] == pytest.approx(0.05 * (100 - np.mean([98.80, 98.74, 98.91])))
    assert by["6b"]["effect"]["values"] == pytest.approx([0.29, 0.30, 0.30])
    assert by["6a"]["verdict"] == by["6b"]["verdict"] == claims.statistics.SUPPORTED
    assert by["6b"]["paper"]["value"] == pytest.approx(0.17) and by["6a"]["paper"]["value"] == pytest.approx(0.08)
    (s,) = summary
    assert s["claim"] == 6 and s["verdict"] == claims.statistics.SUPPORTED and s["primary"] == "6a, 6b"
    assert s["sensitivity"]["95"] == claims.statistics.SUPPORTED


def test_claim6_is_the_conjunction_of_its_two_checks():
    # the LS teacher's student is better: 6b contradicted, so the claim is, whatever 6a says
    by, summary = _claim6([0.9880, 0.9874, 0.9891], [0.9890, 0.9886, 0.9902], [0.9821, 0.9830, 0.9815],
                          [0.9850, 0.9860, 0.9845], [0.9812, 0.9808, 0.9820])
    assert by["6a"]["verdict"] == claims.statistics.SUPPORTED and by["6b"]["verdict"] == claims.statistics.CONTRADICTED
    assert summary[0]["verdict"] == claims.statistics.CONTRADICTED
    # an undecided 6b (its interval straddles 0) leaves the claim inconclusive
    by, summary = _claim6([0.9880, 0.9874, 0.9891], [0.9890, 0.9886, 0.9902], [0.9850, 0.9830, 0.9845],
                          [0.9840, 0.9840, 0.9840], [0.9812, 0.9808, 0.9820])
    assert by["6b"]["verdict"] == claims.statistics.INCONCLUSIVE and summary[0]["verdict"] == claims.statistics.INCONCLUSIVE
    assert [claims.statistics.conjunction(v) for v in (["supported", "supported"], ["supported", "not run"],
                                            ["contradicted", "not compared"], ["inconclusive", "contradicted"])] == \
        ["supported", "not run", "not compared", "contradicted"]


def test_claim6_only_with_a_toy_and_not_run_without_its_models():
    assert not [c for c in claims.build_checks(cfg=claims.statistics.settings()) if c["claim"] == 6]  # no distillation_toy
    settings = {k: TOY[k] for k in ("dataset", "ls_alpha", "temperature", "split", "teacher_arch", "student_arch")}
    six = claims.statistics._assign_ids(claims.student_checks.toy_claims([], [], [settings], claims.statistics.settings()))
    assert [c["verdict"] for c in six if c["role"] == claims.statistics.PRIMARY] == [claims.statistics.NOT_RUN] * 2
    assert "teachers[].alphas" in six[0]["config_key"] and "ls_temperature" in six[1]["config_key"]
    assert claims.rendering.summarise(six)[0]["verdict"] == claims.statistics.NOT_RUN


# --------------------------------------------------------------------------- config and preset


def _preset(root) -> dict:
    cfg = yaml.safe_load(PRESET.read_text())
    cfg["datasets"]["mnist"]["root"] = str(root)
    return cfg


def test_preset_validates_and_its_toy_checks_name_the_key(tmp_path):
    plan = build(_preset(tmp_path))
    toy = plan.distillation_toy.entries["mnist"]
    assert (toy["ls_alpha"], toy["temperature"], toy["teacher_arch"], toy["student_arch"]) == \
        (0.1, 20.0, "mlp1200_dropout", "mlp800")
    runs = {r.name for r in distill.student_runs(plan.distillation.entries["mnist"])}
    assert {"kd-mlp1200_dropout-a0-T20_s0", "kd-mlp1200_dropout-a0.1-T20_s0"} <= runs  # both teachers at T = 20
    assert plan.distillation.gamma_temperatures("mnist") == [1.0, 20.0]
    bad = _preset(tmp_path)
    bad["distillation"][0]["ls_temperature"] = 1
    with pytest.raises(ConfigError, match="ls_temperature"):
        build(bad)
    bad = _preset(tmp_path)
    bad["distillation_toy"][0]["temperature"] = 4
    with pytest.raises(ConfigError, match=r"distillation_toy\[0\]\.temperature 4 is not in distillation\[\]\.temperatures"):
        build(bad)
    bad = _preset(tmp_path)
    bad["distillation_toy"][0]["ls_alpha"] = 0.3
    with pytest.raises(ConfigError, match="teacher_alphas"):
        build(bad)
    bad = _preset(tmp_path)
    bad["distillation"] = []
    with pytest.raises(ConfigError, match="no distillation entry"):
        build(bad)


@pytest.mark.slow
def test_preset_dry_runs_on_an_mnist_file_set(tmp_path):
    write_mnist(tmp_path / "mnist")
    work = tmp_path / "work"
    work.mkdir()
    proc = snakemake(work, "-n", "--configfile", str(PRESET), "--config", f"datasets={{mnist: {{root: {tmp_path / 'mnist'}}}}}")
    jobs = planned_jobs(proc)
    cfg = yaml.safe_load(PRESET.read_text())
    seeds = len(cfg["teachers"][0]["seeds"])
    assert seeds >= 3 and cfg["device"] == "cpu"
    assert jobs["train_teacher"] == 2 * seeds  # alpha 0 and the LS alpha
    assert jobs["train_student_distilled"] == 2 * seeds  # each teacher's student at T = 20
    assert all(jobs[f"train_students_lockstep_mnist_baseline_s{s}"] == 1 for s in range(seeds))
    for rule in ("distillation_toy_table", "claims", "accuracy_table", "distillation_figure"):
        assert jobs[rule] == 1, rule


def tiny_toy_preset(root) -> dict:
    """The preset with tiny sizes: the same nets, experiments and rules, a few steps on 300 images."""
    cfg = _preset(root)
    cfg["results"] = "results"
    cfg["datasets"]["mnist"].update(val_size=60, download=False)
    for rec in cfg["recipes"].values():
        rec.update(steps=6, batch_size=32, checkpoint_every=1, eval_batch_size=100)
    for section in (cfg["teachers"][0], cfg["distillation"][0]):
        section["seeds"] = [0, 1]
    cfg["dump"]["max_train"] = 50
    cfg["claims"].update(min_seeds=2, tightness_triples=3)
    cfg["figures"] = {"dpi": 50, "formats": ["png"]}
    return cfg


@pytest.mark.slow
def test_tiny_toy_runs_end_to_end_on_the_mnist_file_set(tmp_path):
    write_mnist(tmp_path / "mnist")
    work = tmp_path / "work"
    work.mkdir()
    (work / "preset.yaml").write_text(yaml.safe_dump(tiny_toy_preset(tmp_path / "mnist")))
    snakemake(work, "--cores", "2", "--configfile", str(work / "preset.yaml"), timeout=600)
    res = work / "results"
    rows = {r["row"]: r for r in csv.DictReader(open(res / "tables" / "distillation_toy_mnist.csv"))}
    assert list(rows) == ["teacher_hard", "teacher_ls", "ls_minus_hard", "alone_0", "alone_0.1"]
    assert all(r["seeds"] == "2" for r in rows.values())
    # the table's cells are the evaluations' error rates
    ev = json.loads((res / "eval/mnist/mlp1200_dropout/teacher/a0_s1.json").read_text())
    ev0 = json.loads((res / "eval/mnist/mlp1200_dropout/teacher/a0_s0.json").read_text())
    mean = 100 * (1 - (ev["test"]["accuracy"] + ev0["test"]["accuracy"]) / 2)
    assert float(rows["teacher_hard"]["teacher_error_pct_mean"]) == pytest.approx(mean, abs=1e-3)
    assert ev["test"]["n"] == 100  # the t10k file set's 100 images
    md = (res / "tables" / "distillation_toy_mnist.md").read_text()
    assert "T = 20" in md and "loss form hinton" in md
    report = json.loads((res / "claims.json").read_text())
    six = {c["id"]: c for c in report["checks"] if c["claim"] == 6}
    assert {"6a", "6b"} <= set(six) and six["6b"]["effect"]["n"] == 2
    assert next(s for s in report["summary"] if s["claim"] == 6)["primary"] == "6a, 6b"
    student = json.loads((res / "eval/mnist/mlp800/student/kd-mlp1200_dropout-a0.1-T20_s0.json").read_text())
    assert student["model"]["form"] == "hinton"
