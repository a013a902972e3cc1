"""One model on two processes (torch.distributed, gloo on the CPU) against one process.

The two ranks are spawned once (torch.multiprocessing) and each runs ``lspipe train`` three times in
the same process group: an uninterrupted run, a run stopped after one epoch, and its resume. The
model is the MLP (no BatchNorm: see docs/design.md on BatchNorm under torchrun), two members (a group of
two objectives), gradient clipping on. A fourth run trains on a streamed dataset (the tiny
ImageNet-layout tree's index): each rank decodes only its share of each global batch and of the
validation split.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import time

import pytest
import torch
import torch.multiprocessing as mp

from lspipe.core import data as D
from lspipe.engine import distributed as dist_mod

RECIPE = {"steps": 32, "batch_size": 64, "lr": 0.05, "lr_milestones": [20], "grad_clip": 1.0,
          "augment": {"pad": 1, "flip": True}, "checkpoint_every": 1}
OBJECTIVES = [{"kind": "ls", "alpha": 0.0}, {"kind": "ls", "alpha": 0.1}]
# Two ranks average two half-batch gradients where one process takes the mean of the whole batch:
# the same sum in another order, so the weights agree to float32 rounding, which grows a little
# over the steps (observed: max |difference| 2.2e-8 after 32 steps); 1e-5 is far below what one
# wrong step would change (lr 0.05 x a gradient; a rank training on the other's half fails).
ATOL = 1e-5


STREAM_RECIPE = {**RECIPE, "steps": 6, "lr_milestones": [4], "eval_batch_size": 16}  # 192 images: 3 global batches an epoch, 2 epochs


def _args(data, out: os.PathLike, recipe=RECIPE, **extra):
    import argparse

    from lspipe.engine.commands import add_cli

    parser = argparse.ArgumentParser()
    add_cli(parser.add_subparsers())
    argv = ["train", "--data", str(data), "--arch", "mlp", "--recipe", json.dumps(recipe), "--seed", "3",
            "--objectives", json.dumps(OBJECTIVES), "--out", f"{out}/a/model.pt", f"{out}/b/model.pt",
            "--metrics", f"{out}/a/metrics.csv", f"{out}/b/metrics.csv", "--no-progress", "--device", "cpu"]
    for k, v in extra.items():
        argv += [f"--{k.replace('_', '-')}", str(v)]
    return parser.parse_args(argv)


def _worker(rank: int, world_size: int, port: int, data: str, tmp: str, index: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    from lspipe.engine import complete, training

    log = {"writes": [], "summaries": {}}
    # record every file write of the engine and every group's summary on this rank
    for mod, name in ((training, "_write_metrics"), (training, "torch_save"), (training, "save_model"),
                      (complete, "save_group")):
        orig = getattr(mod, name)

        def spy(*a, _orig=orig, _name=name, **k):
            log["writes"].append(_name)
            return _orig(*a, **k)
        setattr(mod, name, spy)
    shard = dist_mod.World.shard

    def sharding(self, *t):  # the batch sizes this rank trains on
        out = shard(self, *t)
        log.setdefault("shards", []).append([len(t[0]), len(out[0])])
        return out
    dist_mod.World.shard = sharding
    train_group = training.train_group

    def recording(*a, **k):
        models, summary = train_group(*a, **k)
        log["summaries"][str(k["checkpoint_path"])] = summary["final"]
        return models, summary
    training.train_group = recording

    # one process group for the three runs (cmd_train leaves a caller's group alone)
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world_size)
    torch.set_num_threads(1)
    training.cmd_train(_args(data, f"{tmp}/full"))
    try:
        training.cmd_train(_args(data, f"{tmp}/resumed", stop_after_epochs=1))
        raise AssertionError("the run did not stop after one epoch")
    except training.Interrupted:
        log["stopped"] = os.path.exists(f"{tmp}/resumed/a/model.pt.ckpt")
    training.cmd_train(_args(data, f"{tmp}/resumed"))
    # SLURM's warning signal seen by rank 1 alone during step 21 (the test hook): the ranks agree at step 24
    # (lspipe.engine.preempt.SYNC_STEPS), mid-epoch 2, both checkpoint there and stop; then the resume
    from lspipe.engine import preempt

    os.environ[preempt.TEST_STEP_ENV] = "21" if rank == 1 else ""
    try:
        training.cmd_train(_args(data, f"{tmp}/preempted"))
        raise AssertionError("the run did not stop on the signal")
    except preempt.Preempted as err:
        log["preempted"] = str(err)
    del os.environ[preempt.TEST_STEP_ENV]
    training.cmd_train(_args(data, f"{tmp}/preempted"))
    from lspipe.core import stream

    getitem = stream.StreamDataset.__getitem__

    def decoding(self, key):  # the images this rank decodes: (mode, epoch, position)
        epoch, k = key if isinstance(key, tuple) else (0, key)
        log.setdefault("decoded", []).append([self.mode, int(epoch), int(k)])
        return getitem(self, key)
    stream.StreamDataset.__getitem__ = decoding
    training.cmd_train(_args(index, f"{tmp}/streamed", STREAM_RECIPE, stream_loader='{"workers": 0}'))
    torch.distributed.destroy_process_group()
    with open(f"{tmp}/rank{rank}.json", "w") as f:
        json.dump(log, f)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_imagenet):
    """The digits data, a one-process run and the two-process runs (see the module's docstring)."""
    tmp = tmp_path_factory.mktemp("ddp")
    D.prepare("digits", "digits", tmp / "digits.npz", val_size=0.2, test_size=0.25)
    from lspipe.core import index, stream
    from lspipe.engine.training import cmd_train

    index.write_index(tmp / "tin.npz", stream.build_index(tiny_imagenet, name="tin", image_size=16, stats_images=20))
    cmd_train(_args(tmp / "digits.npz", tmp / "single"))
    cmd_train(_args(tmp / "tin.npz", tmp / "streamed_single", STREAM_RECIPE, stream_loader='{"workers": 0}'))
    t0 = time.perf_counter()
    mp.spawn(_worker, args=(2, _free_port(), str(tmp / "digits.npz"), str(tmp), str(tmp / "tin.npz")), nprocs=2,
             join=True)
    print(f"two-process runs: {time.perf_counter() - t0:.1f} s")
    logs = [json.loads((tmp / f"rank{r}.json").read_text()) for r in range(2)]
    return tmp, logs


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


def _max_diff(p, q):
    a, b = _weights(p), _weights(q)
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


def test_two_processes_equal_one_process_with_the_same_global_batch(runs):
    tmp, _ = runs
    for m in "ab":
        diff = _max_diff(tmp / "single" / m / "model.pt", tmp / "full" / m / "model.pt")
        print(f"member {m}: max |weight difference| 1 vs 2 processes = {diff:.3g}")
        assert diff < ATOL
        # the two members differ (alpha 0 and 0.1): the comparison is not of two equal defaults
    assert _max_diff(tmp / "full" / "a" / "model.pt", tmp / "full" / "b" / "model.pt") > 1e-3


def test_each_rank_trains_on_its_half_of_the_global_batch(runs):
    _, logs = runs
    for log in logs:
        assert {tuple(s) for s in log["shards"]} == {(64, 32)}
    x = torch.arange(12).view(6, 2)
    halves = [dist_mod.World(r, 2, r).shard(x, x[:, 0]) for r in range(2)]
    assert torch.equal(torch.cat([h[0] for h in halves]), x) and torch.equal(halves[1][1], x[3:, 0])


def test_metrics_equal_on_every_rank_and_only_rank_0_writes(runs):
    tmp, logs = runs
    assert logs[1]["writes"] == [], "a rank other than 0 wrote a file"
    assert {"_write_metrics", "torch_save", "save_model", "save_group"} <= set(logs[0]["writes"])
    for key, finals in logs[0]["summaries"].items():
        other = logs[1]["summaries"][key]
        for f0, f1 in zip(finals, other):
            assert {k: v for k, v in f0.items() if k != "seconds"} == {k: v for k, v in f1.items() if k != "seconds"}
    # the CSV (rank 0's) holds the reduced metrics: the global batch's mean, close to one process's
    for m in "ab":
        one = list(csv.DictReader(open(tmp / "single" / m / "metrics.csv")))
        two = list(csv.DictReader(open(tmp / "full" / m / "metrics.csv")))
        assert len(one) == len(two) == 2
        for r1, r2 in zip(one, two):
            assert r1["step"] == r2["step"]
            assert float(r1["train_acc"]) == pytest.approx(float(r2["train_acc"]), abs=0.01)
            assert float(r1["train_loss"]) == pytest.approx(float(r2["train_loss"]), rel=1e-5)
            assert float(r1["val_loss"]) == pytest.approx(float(r2["val_loss"]), rel=1e-4)


def test_stopped_and_resumed_two_processes_equal_uninterrupted(runs):
    tmp, logs = runs
    assert logs[0]["stopped"] and logs[1]["stopped"]  # the checkpoint existed for both ranks at the stop
    assert not (tmp / "resumed" / "a" / "model.pt.ckpt").exists()
    for m in "ab":
        a, b = _weights(tmp / "full" / m / "model.pt"), _weights(tmp / "resumed" / m / "model.pt")
        assert all(torch.equal(a[k], b[k]) for k in a), "resume in two processes is not exact"


def test_a_signal_to_one_rank_stops_both_at_one_step_and_the_resume_is_exact(runs):
    """Rank 1 alone got the signal (during step 21): both ranks stop after step 24 with a mid-epoch checkpoint
    (the correct counts of both ranks' shares kept), and the resumed run equals the uninterrupted one: weights
    and every metrics row (the epoch's training accuracy included) but the seconds."""
    tmp, logs = runs
    for log in logs:
        assert "after step 24 of 32 (epoch 2, mid-epoch)" in log["preempted"], log["preempted"]
    for m in "ab":
        a, b = _weights(tmp / "full" / m / "model.pt"), _weights(tmp / "preempted" / m / "model.pt")
        assert all(torch.equal(a[k], b[k]) for k in a), "a resume in two processes after a signal is not exact"
        rows = [[{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(open(tmp / d / m / "metrics.csv"))]
                for d in ("full", "preempted")]
        assert rows[0] == rows[1] and len(rows[0]) == 2


def test_streamed_two_processes_equal_one_and_each_rank_decodes_its_share(runs):
    tmp, logs = runs
    for m in "ab":
        diff = _max_diff(tmp / "streamed_single" / m / "model.pt", tmp / "streamed" / m / "model.pt")
        print(f"streamed, member {m}: max |weight difference| 1 vs 2 processes = {diff:.3g}")
        assert diff < ATOL
    train = [{(e, k) for mode, e, k in log["decoded"] if mode == "train"} for log in logs]
    assert all(len(t) == sum(mode == "train" for mode, _, _ in log["decoded"]) for t, log in zip(train, logs))
    assert not train[0] & train[1] and len(train[0]) == len(train[1]) == 192  # half of 2 epochs x 192 images
    assert train[0] | train[1] == {(e, k) for e in range(2) for k in range(192)}
    val = [sorted({k for mode, _, k in log["decoded"] if mode == "eval"}) for log in logs]
    assert val == [list(range(24)), list(range(24, 48))]  # each rank validates its half of the 48 images
    for m in "ab":  # the gathered validation metrics are the whole split's
        one = list(csv.DictReader(open(tmp / "streamed_single" / m / "metrics.csv")))
        two = list(csv.DictReader(open(tmp / "streamed" / m / "metrics.csv")))
        assert [float(r["val_loss"]) for r in one] == pytest.approx([float(r["val_loss"]) for r in two], rel=1e-4)


def test_world_parts_and_gather_follow_array_split():
    import numpy as np

    for n, size in ((48, 2), (7, 3), (2, 4)):
        parts = [dist_mod.World(r, size, r).part(n) for r in range(size)]
        assert [hi - lo for lo, hi in parts] == [len(p) for p in np.array_split(np.arange(n), size)]
        assert parts[0][0] == 0 and parts[-1][1] == n and all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
    assert dist_mod.SINGLE.part(5) == (0, 5)
    t = torch.ones(3, 2)
    assert dist_mod.SINGLE.gather(t, 3) is t


def test_without_torchrun_one_process_and_a_clear_batch_error(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    assert dist_mod.from_env() is dist_mod.SINGLE
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "2")
    w = dist_mod.from_env()
    assert (w.rank, w.size, w.local_rank, w.is_main) == (2, 3, 2, False)
    from lspipe.base.errors import ConfigError

    with pytest.raises(ConfigError, match="batch_size 64 is the global batch"):
        w.check_batch(64)
    w.check_batch(63)
