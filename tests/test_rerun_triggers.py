"""Issue 33, item 8: settings that cannot change a trained weight retrain nothing. On the finished tiny
run (the shared `tiny_run`, dry runs only): the progress bars, TensorBoard tracking, the device alias resolving to the same
device, the recipe's validation batch size and checkpoint interval, and the order of a grid (the
teachers' alphas, the lockstep students' temperatures and alphas) each plan no training job, and all
of them at once neither; a setting that does change the weights still retrains. The streamed tree
moved to another folder is tests/test_stream_workflow.py's."""

from __future__ import annotations

import copy

import pytest
import yaml

from conftest import TINY, planned_jobs, snakemake

pytestmark = pytest.mark.slow

TRAINING = ("train_", "prepare_data")


def _changed(tiny_run, tmp_path, change) -> dict[str, int]:
    cfg = yaml.safe_load((tiny_run / "config.yaml").read_text())
    change(cfg)
    path = tmp_path / "changed.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return planned_jobs(snakemake(tiny_run, "-n", "--configfile", str(path)))


def _progress(cfg):
    cfg["progress"] = not cfg["progress"]


def _device(cfg):  # tiny.yaml trains on the CPU; this machine has no CUDA (CI neither), so auto is the CPU too
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: device auto is another device than cpu here")
    assert cfg["device"] == "cpu"
    cfg["device"] = "auto"


def _eval_batch_size(cfg):
    cfg["recipes"]["tiny"]["eval_batch_size"] = 500


def _checkpoint_every(cfg):
    cfg["recipes"]["tiny"]["checkpoint_every"] = 3


def _grid_order(cfg):
    cfg["teachers"][0]["alphas"] = list(reversed(cfg["teachers"][0]["alphas"]))
    d = cfg["distillation"][0]
    d["temperatures"] = list(reversed(d["temperatures"]))  # the hard teacher's lockstep students
    d["teacher_alphas"] = list(reversed(d["teacher_alphas"]))  # and the baselines' (baseline_alphas: null)
    assert d["lockstep"]


def _tracking(cfg):  # TensorBoard scalars (issue 30): a run option, like the progress bars
    assert not cfg.get("tracking", {}).get("tensorboard")
    cfg["tracking"] = {"tensorboard": True}


def _all(cfg):
    for change in (_progress, _device, _eval_batch_size, _checkpoint_every, _grid_order, _tracking):
        change(cfg)


@pytest.mark.parametrize("change", [_progress, _device, _eval_batch_size, _checkpoint_every, _grid_order, _tracking,
                                    _all],
                         ids=lambda f: f.__name__.strip("_"))
def test_a_setting_that_changes_no_weight_retrains_nothing(tiny_run, tmp_path, change):
    jobs = _changed(tiny_run, tmp_path, change)
    assert not [rule for rule in jobs if rule.startswith(TRAINING)], jobs
    assert "analyse_model" not in jobs, jobs


def test_a_setting_that_changes_the_weights_still_retrains(tiny_run, tmp_path):
    def lr(cfg):
        cfg["recipes"]["tiny"]["lr"] = 0.04

    jobs = _changed(tiny_run, tmp_path, lr)
    assert jobs.get("train_teacher") == 3 and jobs.get("train_students_lockstep_digits_kd_hard_s0") == 1, jobs

    def device_cuda(cfg):  # another device: the dry run plans the retraining (it would fail here, without CUDA)
        cfg["device"] = "cuda"

    jobs = _changed(tiny_run, tmp_path, device_cuda)
    assert jobs.get("train_teacher") == 3, jobs
