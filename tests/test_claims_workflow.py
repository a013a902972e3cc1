"""The claims report and the experiment table on the shared tiny end-to-end run."""

from __future__ import annotations

import csv
import json

import pytest
import yaml

from conftest import TINY
from lspipe import claims, distill

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
    # tiny.yaml fuses no teachers but trains students in lockstep: a lockstep job's time is given once,
    # on its first student, and every student of the job is marked shared
    for r in rows:
        if r["role"] == "teacher":
            assert float(r["train_seconds"]) > 0 and not r["train_time_shared"]
    for entry in cfg["distillation"]:
        for grp in distill.lockstep_groups({"baseline_alphas": None, **entry}):
            shared = [r for r in rows if r["role"] == "student" and r["run"] in grp["runs"]]
            assert [r["train_time_shared"] for r in shared] == [f"shared by {len(grp['runs'])} models"] * len(shared)
            assert sum(bool(r["train_seconds"]) for r in shared) == 1
    for r in rows:
        assert int(r["steps"]) == cfg["recipes"]["tiny"]["steps"]
        assert 0 <= float(r["test_accuracy"]) <= 1 and float(r["temperature_fitted"]) > 0
        assert bool(r["teacher"]) == r["run"].startswith("kd-") == bool(r["form"])
    assert (results / "tables" / "experiments.md").read_text().count("\n| digits |") == len(models)
