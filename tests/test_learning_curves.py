"""The learning-curve figure of each teacher grid, from the metrics.csv files training writes: its
numbers against a hand computation, its place in the plan, and a workflow that draws it from
finished models without training anything again."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import yaml

from conftest import TINY, planned_jobs, snakemake
from lspipe.base.errors import DataError
from lspipe.experiments import learning_curves as LC
from lspipe.workflow import plan


def _metrics(path, steps, loss, acc):
    path.parent.mkdir(parents=True)
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["epoch", "step", "lr", "train_loss", "train_acc", "val_loss", "val_acc",
                                           "seconds"])
        w.writeheader()
        for e, (s, l, a) in enumerate(zip(steps, loss, acc)):
            w.writerow({"epoch": e + 1, "step": s, "lr": 0.1, "train_loss": l, "train_acc": 0.5, "val_loss": 1.0,
                        "val_acc": a, "seconds": e})
    return path


def test_curves_are_means_and_ranges_over_seeds(tmp_path):
    m = tmp_path / "models" / "d" / "a" / "teacher"
    paths = [_metrics(m / "a0_s0" / "metrics.csv", [10, 20, 30], [2.0, 1.0, 0.5], [0.5, 0.8, 0.9]),
             _metrics(m / "a0_s1" / "metrics.csv", [10, 20, 30], [2.2, 1.4, 0.7], [0.4, 0.7, 0.95]),
             _metrics(m / "a0.1_s0" / "metrics.csv", [10, 20, 30], [2.1, 1.2, 0.9], [0.45, 0.85, 0.9]),
             _metrics(m / "confidence_penalty-beta0.5_s0" / "metrics.csv", [10, 20], [2.5, 2.0], [0.3, 0.6])]
    out = [tmp_path / "lc.png", tmp_path / "lc.pdf"]
    lines = LC.learning_curves_figure(paths, out, title="d / a", dpi=40)
    assert [c["label"] for c in lines] == ["α = 0", "α = 0.1", "confidence_penalty beta = 0.5"]
    hard = lines[0]
    assert hard["seeds"] == [0, 1] and list(hard["step"]) == [10, 20, 30]
    np.testing.assert_allclose(hard["train_loss"]["mean"], [2.1, 1.2, 0.6])
    np.testing.assert_allclose(hard["val_acc_pct"]["min"], [40.0, 70.0, 90.0])  # percent, from the fractions
    np.testing.assert_allclose(hard["val_acc_pct"]["max"], [50.0, 80.0, 95.0])
    assert lines[2]["objective"] == {"kind": "confidence_penalty", "beta": 0.5} and list(lines[2]["step"]) == [10, 20]
    assert all(p.stat().st_size > 1000 for p in out)
    bad = _metrics(tmp_path / "x" / "model" / "metrics.csv", [1], [1.0], [0.5])
    with pytest.raises(DataError, match="is not a teacher's run name"):
        LC.read_metrics(bad)


def test_plan_reads_every_teachers_metrics():
    p = plan.build(yaml.safe_load(TINY.read_text()))
    files = p.learning_curves.metrics("digits", "smallcnn")
    runs = {f.split("/")[-2] for f in files}
    assert runs == {r for _, _, r in p.teacher_runs} and all(f.endswith("/metrics.csv") for f in files)
    assert p.learning_curves.targets() == p.paths.figures("learning_curves_digits_smallcnn")
    assert set(p.learning_curves.targets()) <= set(p.final_targets())


@pytest.mark.slow
def test_the_workflow_draws_them_from_finished_models_without_training(tiny_run):
    figures = tiny_run / "results" / "figures"
    png = figures / "learning_curves_digits_smallcnn.png"
    assert png.stat().st_size > 1000 and (figures / "learning_curves_digits_smallcnn.pdf").is_file()
    # the figure is made from the training jobs' metrics.csv: deleting it redraws it, and nothing else
    (tiny_run / "deleted.png").write_bytes(png.read_bytes())
    png.unlink()
    try:
        jobs = planned_jobs(snakemake(tiny_run, "-n"))
        assert {rule: n for rule, n in jobs.items() if rule != "all"} == {"learning_curves_figure": 1}, jobs
    finally:
        png.write_bytes((tiny_run / "deleted.png").read_bytes())
