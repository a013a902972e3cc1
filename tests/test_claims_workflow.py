"""The claims report and the experiment table on the shared tiny end-to-end run."""

from __future__ import annotations

import csv
import json

import pytest
import yaml

from conftest import TINY
from lspipe.base import runs
from lspipe.experiments import claims, distill
from lspipe.workflow import jobs, plan
from lspipe.workflow.plan import validate

pytestmark = pytest.mark.slow


def test_claims_report_and_experiment_table(tiny_run, tmp_path, monkeypatch):
    results = tiny_run / "results"
    cfg = yaml.safe_load(TINY.read_text())
    report = json.loads((results / "claims.json").read_text())
    assert {s["claim"] for s in report["summary"]} == {1, 2, 3, 4, 5, 6}
    assert all(s["verdict"] in claims.statistics.VERDICTS for s in report["summary"])
    # every experiment of the paper runs in tiny.yaml, with one seed: nothing is "not run", nothing decided;
    # only distillation may be "not compared" (a 24-step teacher's gamma lies beyond the baseline alphas 0 and 0.3)
    verdicts = {(c["claim"], c["verdict"]) for c in report["checks"]}
    assert {v for _, v in verdicts} <= {claims.statistics.INCONCLUSIVE, claims.statistics.NOT_COMPARED, claims.statistics.REPORTED}, verdicts
    # (and claim 1's regime flag: the paper reports no accuracy for digits)
    assert {(c["claim"], c["role"]) for c in report["checks"] if c["verdict"] == claims.statistics.NOT_COMPARED} <= \
        {(4, claims.statistics.PRIMARY), (4, claims.statistics.DESCRIPTIVE), (1, claims.statistics.REGIME)}
    for c in report["checks"]:
        if c["verdict"] == claims.statistics.NOT_COMPARED and c["claim"] == 1:
            continue
        assert c["sources"]["files"] and all((tiny_run / f).exists() for f in c["sources"]["files"]), c["id"]
        if c["verdict"] == claims.statistics.NOT_COMPARED:
            assert "distillation[].baseline_alphas" in c["config_key"]
    # tiny.yaml's grid has a confidence-penalty teacher (alpha 0 in its metadata): no check of the hard arm reads it,
    # claim 1 gives it a row of its own, and each check records the files it used
    cp = "confidence_penalty-beta0.5_s0"
    by_id = {c["id"]: c for c in report["checks"]}
    for c in report["checks"]:
        own = c["claim"] == 1 and "confidence_penalty" in (c["label"] or "")
        assert own == any(cp in f for f in c["sources"]["files"]), (c["id"], c["sources"]["files"])
    ev = "results/eval/digits/smallcnn/teacher"
    assert sorted(by_id["1a"]["sources"]["files"]) == [f"{ev}/a0.3_s0.json", f"{ev}/a0_s0.json"]
    cp_row = next(c for c in report["checks"] if "confidence_penalty" in (c["label"] or ""))
    assert sorted(cp_row["sources"]["files"]) == [f"{ev}/a0_s0.json", f"{ev}/{cp}.json"]
    cal = "results/calibration/digits/smallcnn/teacher"
    assert sorted(by_id["3a"]["sources"]["files"]) == [f"{cal}/a0.3_s0.json", f"{cal}/a0_s0.json"]
    hard = json.loads((tiny_run / ev / "a0_s0.json").read_text())["test"]["accuracy"]
    assert by_id["1a"]["numbers"]["accuracy α=0 (%, test)"] == pytest.approx(100 * hard)
    assert report["rules_version"] == claims.statistics.RULES_VERSION and report["marking"]["marking"] == "confirmatory"
    assert all((results / "figures" / f"claims_forest.{ext}").exists() for ext in ("pdf", "png"))
    roles = {(s["claim"], s["primary"]) for s in report["summary"]}
    assert roles == {(k, f"{k}a") for k in range(1, 6)} | {(6, "6a, 6b")}  # claim 6: two primary checks
    toy = list(csv.DictReader(open(results / "tables" / "distillation_toy_digits.csv")))
    assert [r["row"] for r in toy] == ["teacher_hard", "teacher_ls", "ls_minus_hard", "alone_0", "alone_0.3"]
    assert float(toy[0]["teacher_error_pct_mean"]) == pytest.approx(100 * (1 - hard))
    assert sorted(by_id["6b"]["sources"]["files"]) == [
        f"results/eval/digits/mlp/student/kd-smallcnn-a{a}-T1_s0.json" for a in ("0", "0.3")]
    md = (results / "claims.md").read_text()
    assert "## Decision rule" in md and claims.statistics.NO_SPREAD in md and "± 0.0" not in md
    assert "ECE floor" in md and "α* = 0.3" in md and "MI noise" in md and "Sources:" in md
    assert (results / "claims.rst").stat().st_size > 0
    # the banner: within the first 15 lines, seeds trained against needed and each claim's direction beside its verdict
    top = md.splitlines()[:15]
    assert any("**What this run found.** Seeds trained: 1. A verdict needs at least 3" in x for x in top)
    assert sorted(x.split()[1] for x in top if x.startswith("| ") and x.split()[1].isdigit()) == list("1234566")  # claim 6: a row per primary (6a, 6b)
    # (tiny.yaml's claim 6 adds two banner rows, 6a and 6b: the pointer to what you came for follows them)
    assert report["banner"]["seeds_trained"] == [1] and any("digits: not among the paper's" in x
                                                            for x in md.splitlines()[:17])
    # digits is not one of the paper's datasets: the report ends with what a user came for, from the files it read
    (own,) = report["what_you_came_for"]
    assert own["scope"] == "digits/smallcnn" and md.rstrip().splitlines()[-1].startswith("- **Distil from")
    assert md.index("## What you came for") > md.index("#### 5a")
    vals = {a: json.loads((tiny_run / ev / f"a{a}_s0.json").read_text())["val"]["accuracy"] for a in ("0", "0.3")}
    assert own["accuracy"]["alpha"] == (0.3 if vals["0.3"] > vals["0"] else 0.0)
    assert own["accuracy"]["gain_pp"]["ci"] is None and own["accuracy"]["gain_pp"]["n"] == 1  # one seed: no interval
    assert own["calibration"]["alpha"] == by_id["3a"]["numbers"]["α*"] == 0.3
    t0 = json.loads((tiny_run / cal / "a0_s0.json").read_text())
    assert own["temperature"]["0.0"]["mean"] == pytest.approx(t0["temperature"]) or t0["fit"]["at_bound"]
    assert [d["check"] for d in own["distillation"]] == ["4a"]
    assert "**What you came for: digits/smallcnn**" in (results / "claims.rst").read_text()
    tight = list(csv.DictReader(open(results / "tables" / "tightness.csv")))
    assert {r["kind"] for r in tight} == {"fig1", "random"} and all(float(r["ratio"]) > 0 for r in tight)
    assert {r["split"] for r in tight} == {"train", "val"}
    assert len({r["classes"] for r in tight if r["kind"] == "random"}) == 120  # all triples of 10 classes
    # the calibration JSONs hold validation metrics at T = 1 and the ECE floors
    cal = json.loads(next((results / "calibration").rglob("a0.3_s0.json")).read_text())
    assert cal["format_version"] == 2 and {"ece", "nll", "ece_floor"} <= set(cal["val"])
    assert 0 < cal["before"]["ece_floor"] < 1
    # the claims CLI outside Snakemake, given the config, reads what the rule read and agrees with it
    from lspipe.cli import main

    monkeypatch.chdir(tiny_run)  # the config's results path is relative to the working directory
    assert main(["claims", "--config", "config.yaml", "--md", str(tmp_path / "c.md"),
                 "--json", str(tmp_path / "c.json")]) == 0
    again = json.loads((tmp_path / "c.json").read_text())
    assert [(c["id"], c["verdict"], c["effect"] and c["effect"]["values"]) for c in again["checks"]] == \
        [(c["id"], c["verdict"], c["effect"] and c["effect"]["values"]) for c in report["checks"]]

    # one row per trained model: every teacher of every grid and every student of every distillation entry
    models = {(g["dataset"], g["arch"], "teacher", runs.objective_run(v, s)) for g in cfg["teachers"]
              for v in jobs.grid_objectives(g) for s in g["seeds"]}
    models |= {(d["dataset"], d["student_arch"], "student", r.name) for d in cfg["distillation"]
               for r in distill.student_runs({"baseline_alphas": None, **d})}
    rows = list(csv.DictReader(open(results / "tables" / "experiments.csv")))
    assert sorted((r["dataset"], r["arch"], r["role"], r["run"]) for r in rows) == sorted(models)
    # the models of a multi-model job (tiny.yaml: the lockstep students) share its training time
    grouped = {(j.dataset, j.arch, j.role, run): len(j.runs)
               for j in plan.Plan(validate(yaml.safe_load(TINY.read_text()))).training_jobs if j.grouped for run in j.runs}
    assert grouped
    for r in rows:
        n = grouped.get((r["dataset"], r["arch"], r["role"], r["run"]))
        assert float(r["train_seconds"] or 0) > 0 or n, r
        assert r["train_time_shared"] == (f"shared by {n} models" if n else ""), r
        assert int(r["steps"]) == cfg["recipes"]["tiny"]["steps"]
        assert 0 <= float(r["test_accuracy_pct"]) <= 100 and float(r["temperature_fitted"]) > 0
        assert bool(r["teacher"]) == r["run"].startswith("kd-") == bool(r["form"])
    assert (results / "tables" / "experiments.md").read_text().count("\n| digits |") == len(models)
