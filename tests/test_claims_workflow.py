"""The claims report and the experiment table on the shared tiny end-to-end run."""

from __future__ import annotations

import csv
import json

import pytest
import yaml

from conftest import TINY
from lspipe import claims, distill, plan
from lspipe.config import validate

pytestmark = pytest.mark.slow


def test_claims_report_and_experiment_table(tiny_run):
    results = tiny_run / "results"
    cfg = yaml.safe_load(TINY.read_text())
    report = json.loads((results / "claims.json").read_text())
    assert {s["claim"] for s in report["summary"]} == {1, 2, 3, 4, 5}
    assert all(s["verdict"] in claims.VERDICTS for s in report["summary"])
    # every experiment of the paper runs in tiny.yaml, with one seed: nothing is "not run", nothing decided
    assert {c["verdict"] for c in report["checks"]} == {claims.INCONCLUSIVE}
    md = (results / "claims.md").read_text()
    assert "## Decision rule" in md and claims.NO_SPREAD in md and "± 0.0" not in md
    assert (results / "claims.rst").stat().st_size > 0
    tight = list(csv.DictReader(open(results / "tables" / "tightness.csv")))
    assert {r["kind"] for r in tight} == {"fig1", "random"} and all(float(r["ratio"]) > 0 for r in tight)

    # one row per trained model: every teacher of every grid and every student of every distillation entry
    models = {(g["dataset"], g["arch"], "teacher", f"a{a:g}_s{s}") for g in cfg["teachers"] for a in g["alphas"]
              for s in g["seeds"]}
    models |= {(d["dataset"], d["student_arch"], "student", r.name) for d in cfg["distillation"]
               for r in distill.student_runs({"baseline_alphas": None, **d})}
    rows = list(csv.DictReader(open(results / "tables" / "experiments.csv")))
    assert sorted((r["dataset"], r["arch"], r["role"], r["run"]) for r in rows) == sorted(models)
    # the models of a multi-model job (tiny.yaml: the lockstep students) share its training time
    grouped = {(j["dataset"], j["arch"], j["role"], run): len(j["runs"])
               for j in plan.Plan(validate(yaml.safe_load(TINY.read_text()))).grouped_jobs for run in j["runs"]}
    assert grouped
    for r in rows:
        n = grouped.get((r["dataset"], r["arch"], r["role"], r["run"]))
        assert float(r["train_seconds"] or 0) > 0 or n, r
        assert r["train_time_shared"] == (f"shared by {n} models" if n else ""), r
        assert int(r["steps"]) == cfg["recipes"]["tiny"]["steps"]
        assert 0 <= float(r["test_accuracy"]) <= 1 and float(r["temperature_fitted"]) > 0
        assert bool(r["teacher"]) == r["run"].startswith("kd-") == bool(r["form"])
    assert (results / "tables" / "experiments.md").read_text().count("\n| digits |") == len(models)
