"""Checkpoint on SLURM's warning signal (issue 30, :mod:`lspipe.engine.preempt`): ``lspipe train``
turns SIGTERM / SIGUSR1 into a checkpoint at the next step boundary, mid-epoch too, and exit status
75; the run resumed from it ends bit for bit as the uninterrupted one (weights, metrics rows but their
seconds, probe traces), for a single run, a lockstep group and a fused group, resident and streamed.

The step is chosen with the test hook ``LSPIPE_TEST_PREEMPT_AT_STEP`` (as a signal arriving during
that step); one test sends a real SIGTERM to a running ``lspipe train`` (to its whole process group,
as SLURM signals every process of a job step).
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from conftest import fit_one
from lspipe import cli
from lspipe.base.errors import EXIT_PREEMPTED, Terminated
from lspipe.core import data as D
from lspipe.core import stream as S
from lspipe.core.augment import DeviceLoader
from lspipe.core.losses import Objective
from lspipe.core.models import build_model, load_model
from lspipe.core.recipe import Recipe
from lspipe.engine import preempt
from lspipe.engine.preempt import Preempted, Preemption
from lspipe.engine.step import resolve_engine
from lspipe.engine.training import train_group

REPO = Path(__file__).resolve().parents[1]
# digits: 1078 training images, 16 batches of 64 an epoch; 40 steps end mid-epoch 3
RECIPE = {"steps": 40, "batch_size": 64, "lr": 0.05, "lr_milestones": [20, 30], "grad_clip": 1.0,
          "augment": {"pad": 1, "flip": True}, "checkpoint_every": 1}


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Every test here runs with one torch thread (conftest's one_torch_thread)."""



def _hook(step: int) -> Preemption:
    return Preemption(environ={preempt.TEST_STEP_ENV: str(step)})


def _rows(path):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(open(path))]


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sb = b.state_dict()
    for k, v in a.state_dict().items():
        assert torch.equal(v, sb[k]), k


# --------------------------------------------------------------------------- the loader's position


@pytest.mark.parametrize("chunk_bytes", [None, 64 * 64 * 5, 2**28])  # per batch, 5 batches a draw, one draw a pass
@pytest.mark.parametrize("start", [0, 1, 4, 5, 7, 16])
def test_a_pass_from_a_batch_on_is_the_rest_of_the_whole_pass(start, chunk_bytes):
    """``DeviceLoader.batches(start)`` gives the whole pass's batches from ``start`` on, and leaves the
    generator where the whole pass leaves it (so the next pass draws the same permutation)."""
    x = torch.randint(0, 256, (1100, 1, 8, 8), dtype=torch.uint8)
    y = torch.arange(1100)

    def loader():
        g = torch.Generator().manual_seed(7)
        return DeviceLoader(x, y, 64, pad=1, flip=True, generator=g, chunk_bytes=chunk_bytes), g

    whole, g1 = loader()
    part, g2 = loader()
    full = list(whole)
    rest = list(part.batches(start))
    assert len(full) == 17 and len(rest) == 17 - start
    for (xa, ya), (xb, yb) in zip(full[start:], rest, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert torch.equal(g1.get_state(), g2.get_state())
    assert torch.equal(next(iter(whole))[0], next(iter(part))[0])  # the next pass


# --------------------------------------------------------------------------- library: fit / train_group


def _fit(data, where, preemption=None, recipe=RECIPE, engine=None):
    torch.manual_seed(0)
    model = build_model("smallcnn", data)
    fit_one(model, data, Recipe.from_dict(recipe), {"kind": "ls", "alpha": 0.1}, seed=0,
            checkpoint_path=where / "m.ckpt", metrics_path=where / "metrics.csv", run_fingerprint="fp",
            progress=False, preemption=preemption, engine=engine)
    return model


@pytest.mark.parametrize("epoch_augment", [False, True])
def test_a_signal_mid_epoch_then_a_resume_equals_the_uninterrupted_run(digits_npz, tmp_path, epoch_augment):
    """Stopped at steps 21 (mid-epoch 2), 32 (an epoch's end, no epoch checkpoint: checkpoint_every 3) and
    35 (mid-epoch 3), resumed each time: the weights and the metrics rows equal the uninterrupted run's.
    ``epoch_augment``: the crops and flips of a whole epoch drawn at once (the CUDA engine's loader)."""
    data = D.load(digits_npz)
    recipe = {**RECIPE, "checkpoint_every": 3}
    engine = resolve_engine(Recipe.from_dict(recipe), "cpu", "smallcnn")
    engine.epoch_augment = epoch_augment
    ref = _fit(data, tmp_path / "ref", recipe=recipe, engine=engine)
    work = tmp_path / "work"
    for k, where in ((21, "mid-epoch"), (32, "the end of epoch 2"), (35, "mid-epoch")):
        with pytest.raises(Preempted, match=f"after step {k} of 40 .*{where}"):
            _fit(data, work, _hook(k), recipe=recipe, engine=engine)
        ck = torch.load(work / "m.ckpt", weights_only=False)
        assert ck["step"] == k and ("in_epoch" in ck) == (where == "mid-epoch")
        assert ck["loader"].get("batch", 0) == k % 16
    model = _fit(data, work, recipe=recipe, engine=engine)
    _same_weights(ref, model)
    assert _rows(work / "metrics.csv") == _rows(tmp_path / "ref" / "metrics.csv")
    assert len(_rows(work / "metrics.csv")) == 3


def test_a_resume_without_the_epochs_metrics_would_differ(digits_npz, tmp_path):
    """The epoch's metrics so far are part of the checkpoint: dropped, the epoch's training loss differs
    (this test fails if the resume did not need them)."""
    data = D.load(digits_npz)
    _fit(data, tmp_path / "ref")
    work = tmp_path / "work"
    with pytest.raises(Preempted):
        _fit(data, work, _hook(21))
    ck = torch.load(work / "m.ckpt", weights_only=False)
    for t in ck["in_epoch"]["metrics"].values():
        t.zero_()
    torch.save(ck, work / "m.ckpt")
    _fit(data, work)
    ref, got = _rows(tmp_path / "ref" / "metrics.csv"), _rows(work / "metrics.csv")
    assert ref[0] == got[0] and ref[1]["train_loss"] != got[1]["train_loss"] and ref[1]["val_acc"] == got[1]["val_acc"]


def test_a_streamed_run_resumes_mid_epoch_exactly(tiny_imagenet, tmp_path):
    """A streamed dataset (DataLoader workers, RandomResizedCrop): the StreamLoader's position mid-epoch."""
    idx = S.build_index(tiny_imagenet, name="tiny", val_size=0.2, split_seed=0, image_size=16, stats_images=None)
    recipe = Recipe.from_dict({"steps": 14, "batch_size": 32, "lr": 0.05, "checkpoint_every": 1})  # 6 batches an epoch
    loader = {"workers": 1, "prefetch_factor": 2}

    def run(where, preemption=None):
        (model,), _ = train_group("smallcnn", idx, recipe, Objective([{"kind": "ls", "alpha": 0.1}]), seed=2,
                                  checkpoint_path=where / "m.ckpt", metrics_paths=[where / "metrics.csv"],
                                  run_fingerprint="fp", progress=False, stream_loader=loader, preemption=preemption)
        return model

    ref = run(tmp_path / "ref")
    for k in (4, 9):
        with pytest.raises(Preempted, match="mid-epoch"):
            run(tmp_path / "work", _hook(k))
        assert torch.load(tmp_path / "work" / "m.ckpt", weights_only=False)["loader"]["stream"]["batch"] == k % 6
    _same_weights(ref, run(tmp_path / "work"))
    assert _rows(tmp_path / "work" / "metrics.csv") == _rows(tmp_path / "ref" / "metrics.csv")


# --------------------------------------------------------------------------- the flag


def test_signals_raise_the_flag_in_the_loop_and_terminate_outside_it():
    """Real signals to this process: in the loop SIGTERM and SIGUSR1 set the flag (repeated signals change
    nothing); outside it a signal raises Terminated as in every command; the handlers are restored."""
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGUSR1)
    p = Preemption(environ={})
    with p.watching():
        assert not p.requested(5)
        with p.loop():
            os.kill(os.getpid(), signal.SIGUSR1)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.01)  # the handler runs between bytecodes of the main thread
        assert p.requested(5) and p.why() == "SIGUSR1"
        with pytest.raises(Terminated):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.01)
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGUSR1)) == before
    assert _hook(3).requested(3) and not _hook(3).requested(4) and not Preemption(environ={}).requested(3)
    hook = _hook(3)
    assert [hook.requested(s) for s in (2, 3, 4, 9)] == [False, True, True, True]  # up from then on, as a signal


# --------------------------------------------------------------------------- lspipe train


def _train_argv(data_path, root, runs, alphas, *extra):
    recipe = json.dumps(RECIPE)
    return ["train", "--data", str(data_path), "--arch", "smallcnn", "--recipe", recipe, "--seed", "1",
            "--objectives", json.dumps([{"kind": "ls", "alpha": a} for a in alphas]),
            "--out", *[str(root / r / "model.pt") for r in runs],
            "--metrics", *[str(root / r / "metrics.csv") for r in runs],
            "--device", "cpu", "--threads", "1", "--no-progress", *extra]


@pytest.mark.parametrize("group", ["single", "lockstep", "fused"])
def test_lspipe_train_checkpoints_on_the_signal_and_resumes_exactly(digits_npz, tmp_path, monkeypatch, capsys, group):
    """``lspipe train`` stopped at step 21 (mid-epoch) with status 75 and one line, then run again: every
    member's model, metrics and probe trace equal the uninterrupted run's."""
    alphas = [0.1] if group == "single" else [0.0, 0.1]
    runs = [f"a{a:g}_s1" for a in alphas]
    probe = json.dumps({"classes": ["0", "1"], "per_class": 4, "copies": 2, "every": 5})
    extra = ["--probe", probe, *(["--fuse"] if group == "fused" else [])]
    assert cli.main(_train_argv(digits_npz, tmp_path / "ref", runs, alphas, *extra)) == 0
    work = tmp_path / "work"
    monkeypatch.setenv(preempt.TEST_STEP_ENV, "21")
    capsys.readouterr()
    assert cli.main(_train_argv(digits_npz, work, runs, alphas, *extra)) == EXIT_PREEMPTED
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (f"lspipe train: stopped: {preempt.TEST_STEP_ENV}=21 after step 21 of 40 (epoch 2, mid-epoch): "
                       f"checkpoint {work / runs[0] / 'model.pt.ckpt'} written (run the same command again to resume)")
    assert not (work / runs[0] / "model.pt").exists()
    with h5py.File(work / runs[-1] / "probe.h5.partial") as f:
        assert f["steps"][()].tolist() == [0, 5, 10, 15, 20]
    monkeypatch.delenv(preempt.TEST_STEP_ENV)
    assert cli.main(_train_argv(digits_npz, work, runs, alphas, *extra)) == 0
    assert "resumed from" in capsys.readouterr().err and not (work / runs[0] / "model.pt.ckpt").exists()
    for r in runs:
        _same_weights(load_model(tmp_path / "ref" / r / "model.pt")[0], load_model(work / r / "model.pt")[0])
        assert _rows(work / r / "metrics.csv") == _rows(tmp_path / "ref" / r / "metrics.csv")
        with h5py.File(tmp_path / "ref" / r / "probe.h5") as f, h5py.File(work / r / "probe.h5") as g:
            assert g["steps"][()].tolist() == f["steps"][()].tolist() == [0, 5, 10, 15, 20, 25, 30, 35, 40]
            assert np.array_equal(f["logits"][()], g["logits"][()])
            assert np.array_equal(f["logits_repeat"][()], g["logits_repeat"][()])


def test_a_real_sigterm_to_a_running_train_then_a_resume(digits_npz, tmp_path):
    """SIGTERM to the process group of a running ``lspipe train`` once its first epoch is written (as
    SLURM signals every process of a job step): status 75, a checkpoint past that epoch, and the resumed
    run ends as the uninterrupted one."""
    recipe = {**RECIPE, "steps": 400, "lr_milestones": [200, 300], "checkpoint_every": 100}
    runs, work, ref = ["a0.1_s1"], tmp_path / "work", tmp_path / "ref"

    def argv(root):
        a = _train_argv(digits_npz, root, runs, [0.1])
        a[a.index("--recipe") + 1] = json.dumps(recipe)
        return ["lspipe", *a]

    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    env.pop(preempt.TEST_STEP_ENV, None)
    proc = subprocess.Popen(argv(work), env=env, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 300
    while not (work / runs[0] / "metrics.csv").exists():  # the first epoch (16 steps) is done
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGTERM)
    rc, err = proc.wait(timeout=300), proc.stderr.read()
    assert rc == EXIT_PREEMPTED, err
    assert "lspipe train: stopped: SIGTERM after step" in err and "Traceback" not in err
    ck = torch.load(work / runs[0] / "model.pt.ckpt", weights_only=False)
    assert 16 <= ck["step"] < 400 and ck["rng"]["cpu"] is not None
    for root in (work, ref):
        done = subprocess.run(argv(root), env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
    _same_weights(load_model(ref / runs[0] / "model.pt")[0], load_model(work / runs[0] / "model.pt")[0])
    assert _rows(work / runs[0] / "metrics.csv") == _rows(ref / runs[0] / "metrics.csv")
