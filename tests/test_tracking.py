"""TensorBoard tracking (issue 30, ``lspipe.engine.tracking``): ``tracking.tensorboard`` makes every training
job write each member's per-epoch metrics as TensorBoard scalars under
``<results>/tensorboard/<dataset>/<arch>/<role>/<run>/``, the very numbers of its metrics CSV, each step
once also across an interruption; without the package the key is one line naming the install. (That
turning it on retrains nothing: tests/test_rerun_triggers.py.)"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

from conftest import REPO, TINY, make_workdir, snakemake
from lspipe import cli
from lspipe.engine import preempt, tracking

pytest.importorskip("tensorboard")  # the `test` extra installs it (pyproject.toml)
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

RECIPE = {"steps": 40, "batch_size": 64, "lr": 0.05, "lr_milestones": [20, 30], "grad_clip": 1.0,
          "augment": {"pad": 1, "flip": True}, "checkpoint_every": 2}
RUNS, ALPHAS = ["a0_s1", "a0.1_s1"], [0.0, 0.1]


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Every test here runs with one torch thread (conftest's one_torch_thread)."""



def _argv(data, root, *extra):
    return ["train", "--data", str(data), "--arch", "smallcnn", "--recipe", json.dumps(RECIPE), "--seed", "1",
            "--objectives", json.dumps([{"kind": "ls", "alpha": a} for a in ALPHAS]), "--fuse",
            "--out", *[str(root / r / "model.pt") for r in RUNS], "--metrics", *[str(root / r / "metrics.csv") for r in RUNS],
            "--device", "cpu", "--threads", "1", "--no-progress", "--tensorboard", str(root / "tb"), *extra]


def _scalars(folder) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _check_against_csv(root) -> None:
    for run in RUNS:
        rows = list(csv.DictReader(open(root / run / "metrics.csv")))
        got = _scalars(tracking.run_dir(root / "tb", "digits", "smallcnn", "teacher", run))
        assert set(got) == set(tracking.SCALARS.values())
        for column, tag in tracking.SCALARS.items():  # TensorBoard keeps float32
            assert got[tag] == [(int(r["step"]), float(np.float32(float(r[column])))) for r in rows], (run, tag)
        assert [s for s, _ in got["loss/train"]] == [16, 32, 40]


def test_every_member_gets_the_scalars_of_its_metrics_csv(digits_npz, tmp_path):
    assert cli.main(_argv(digits_npz, tmp_path)) == 0
    _check_against_csv(tmp_path)
    a, b = (_scalars(tracking.run_dir(tmp_path / "tb", "digits", "smallcnn", "teacher", r))["loss/train"] for r in RUNS)
    assert a != b  # two members, two curves


def test_an_interrupted_run_logs_each_step_once(digits_npz, tmp_path, monkeypatch):
    """Stopped after epoch 1 with no checkpoint yet (checkpoint_every 2: it starts again from step 0), then
    stopped on a signal mid-epoch 3 (the checkpoint of epoch 2 and the steps since), then finished: the
    events of each step once, equal to the metrics CSV."""
    assert cli.main(_argv(digits_npz, tmp_path, "--stop-after-epochs", "1")) == 3
    monkeypatch.setenv(preempt.TEST_STEP_ENV, "37")
    assert cli.main(_argv(digits_npz, tmp_path)) == preempt.EXIT_PREEMPTED
    monkeypatch.delenv(preempt.TEST_STEP_ENV)
    assert cli.main(_argv(digits_npz, tmp_path)) == 0
    _check_against_csv(tmp_path)


def test_without_the_package_the_key_is_one_line(digits_npz, tmp_path, monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    capsys.readouterr()
    assert cli.main(_argv(digits_npz, tmp_path)) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == ("lspipe train: error: tracking.tensorboard needs the tensorboard package, which is not installed: "
                    "run pip install -e '.[tracking]' (or set tracking.tensorboard: false)")
    assert not (tmp_path / RUNS[0] / "model.pt.ckpt").exists() and not (tmp_path / "tb").exists()


_NO_TENSORBOARD = """
import importlib.util, sys
real = importlib.util.find_spec
importlib.util.find_spec = lambda name, *a: None if name == "tensorboard" else real(name, *a)
from snakemake.cli import main
sys.argv[0] = "snakemake"
main()
"""


def test_the_key_reaches_every_training_job_and_is_checked_while_planning(tmp_path):
    work = make_workdir(tmp_path / "w", TINY)
    cfg = yaml.safe_load(TINY.read_text())
    cfg["tracking"] = {"tensorboard": True}
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    out = snakemake(work, "-n", "-p")
    text = out.stdout + out.stderr
    trainings = [line for line in text.splitlines() if "lspipe train " in line]
    assert trainings and all(f"--tensorboard {cfg['results']}/tensorboard " in line for line in trainings)
    path = f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ.get('PATH', '')}"
    proc = subprocess.run([sys.executable, "-c", _NO_TENSORBOARD, "-s", str(REPO / "Snakefile"), "-d", str(work), "-n"],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "PATH": path})
    assert proc.returncode != 0
    assert "tracking.tensorboard needs the tensorboard package, which is not installed: run pip install -e " \
           "'.[tracking]'" in proc.stdout + proc.stderr
