"""DDP on the CPU: a check of correctness, not speed.

Trains one small model on the bundled digits (8x8, 1,078 training images) with the same recipe,
seed and **global** batch three ways, each a separate ``lspipe train`` process launched from this
script, one after the other:

* **1 process, 1 thread** (``--threads 1``): the baseline;
* **1 process, 2 threads** (``--threads 2``): the same cores as the two-process run, and the
  float-rounding reference (its reductions sum in another order, nothing else differs);
* **2 processes, 1 thread each**: ``python -m torch.distributed.run --standalone
  --nproc-per-node 2 -m lspipe train ...`` (gloo; each rank trains on its half of every global
  batch, DDP averages the gradients).

Each is run for each step count of ``--checkpoints`` (the recipe's learning rate is constant,
so a run of N steps is the first N steps of a longer one), and the longest ``--repeats`` times,
alternating, for the timing. Reported per model:

* ``d_ddp(N)``: the largest absolute difference between the final parameters (``model.pt``'s
  state dict; the BatchNorm running statistics apart) of the two-process run and the one-process,
  one-thread run after N steps; ``d_ref(N)``: the same between the two one-process runs (1 vs 2
  threads): how far float rounding alone moves the weights by step N;
* the wall time per step of the training loop of the longest runs (the ``seconds`` column of
  ``metrics.csv``: steps plus each epoch's validation, without start-up, process-group set-up or
  saving), median over the repeats, as a ratio to the 1-process, 1-thread baseline of the same
  invocation.

The decision rule: the two-process run **agrees** with one process when, at every N,
``d_ddp(N) <= max(atol, 10 * d_ref(N))`` (``atol`` 1e-5, the tolerance of
tests/test_distributed.py). Rounding differences grow chaotically over the steps (by step 64 two
one-process runs that differ only in their thread count are 1e-3 apart), so a fixed tolerance
holds only for the first steps; after one step a real error (a gradient summed instead of
averaged, a rank training on the wrong half) moves the weights by about ``lr x gradient``, orders
of magnitude above the rounding. A model without BatchNorm is expected to agree. A model with
BatchNorm is **expected to differ**, a positive control that the check can fail: each rank
normalises its own half batch (DDP's default, no SyncBatchNorm), so it trains as with a per-device
batch of half the size (docs/design.md, "One model on many processes").

    python benchmarks/ddp_check.py --out docs/bench/ddp-cpu.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
RECIPE = {"batch_size": 64, "lr": 0.05, "lr_milestones": [], "augment": {"pad": 1, "flip": True},
          "checkpoint_every": 1000}
OBJECTIVES = [{"kind": "ls", "alpha": 0.1}]
BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def _train(how: str, data: Path, arch: str, recipe: dict, out: Path) -> dict:
    """One ``lspipe train`` run (``how``: ``1x1``, ``1x2`` or ``2x1``, processes x threads)."""
    procs, threads = (int(v) for v in how.split("x"))
    args = ["train", "--data", str(data), "--arch", arch, "--recipe", json.dumps(recipe), "--seed", "3",
            "--objectives", json.dumps(OBJECTIVES), "--out", str(out / "model.pt"), "--metrics",
            str(out / "metrics.csv"), "--no-progress", "--device", "cpu", "--threads", str(threads)]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                             "MASTER_PORT")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["OMP_NUM_THREADS"] = str(threads)
    if procs == 1:
        cmd = [sys.executable, "-m", "lspipe", *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={procs}",
               "-m", "lspipe", *args]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    return {"loop_s": float(rows[-1]["seconds"]), "process_wall_s": wall, "val_acc": float(rows[-1]["val_acc"]),
            "train_loss": float(rows[-1]["train_loss"])}


def _state(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


def _max_diff(a: dict, b: dict) -> dict:
    """Largest |a - b| over the parameters and over the BatchNorm running statistics (None: none)."""
    assert a.keys() == b.keys()
    out = {"parameters": 0.0, "batchnorm_statistics": None}
    for k in a:
        d = float((a[k].double() - b[k].double()).abs().max()) if a[k].numel() else 0.0
        kind = "batchnorm_statistics" if k.endswith(BN_BUFFERS) else "parameters"
        out[kind] = max(out[kind] or 0.0, d)
    return out


def _machine() -> dict:
    m = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "torch": torch.__version__,
         "python": platform.python_version()}
    try:
        m["cpu"] = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return m


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--archs", nargs="+", default=["alexnet", "smallcnn"],
                   help="models (alexnet: no BatchNorm; smallcnn: BatchNorm)")
    p.add_argument("--checkpoints", type=int, nargs="+", default=[1, 8, 64], help="step counts to compare at")
    p.add_argument("--repeats", type=int, default=2, help="runs of the longest step count, for the timing")
    p.add_argument("--atol", type=float, default=1e-5)
    p.add_argument("--factor", type=float, default=10.0, help="allowed multiple of the rounding reference")
    p.add_argument("--out", type=Path)
    a = p.parse_args(argv)

    from lspipe.core import data as D

    longest = max(a.checkpoints)
    load_before = os.getloadavg()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        D.prepare("digits", "digits", tmp / "digits.npz", val_size=0.2, test_size=0.25)
        for arch in a.archs:
            ways = ("1x1", "1x2", "2x1")
            runs: dict[str, list[dict]] = {how: [] for how in ways}
            for r in range(a.repeats):  # the longest runs, alternating: timing and the last comparison
                for how in ways:
                    runs[how].append(_train(how, tmp / "digits.npz", arch, {**RECIPE, "steps": longest},
                                            tmp / arch / f"{how}-{longest}-{r}"))
            for n in sorted(set(a.checkpoints) - {longest}):
                for how in ways:
                    _train(how, tmp / "digits.npz", arch, {**RECIPE, "steps": n}, tmp / arch / f"{how}-{n}-0")
            repeatable = all(
                _max_diff(_state(tmp / arch / f"{how}-{longest}-0" / "model.pt"),
                          _state(tmp / arch / f"{how}-{longest}-{r}" / "model.pt"))["parameters"] == 0.0
                for how in ways for r in range(1, a.repeats))
            curve = []
            for n in sorted(set(a.checkpoints)):
                w = {how: _state(tmp / arch / f"{how}-{n}-0" / "model.pt") for how in ways}
                ddp, ref = _max_diff(w["2x1"], w["1x1"]), _max_diff(w["1x2"], w["1x1"])
                bound = max(a.atol, a.factor * ref["parameters"])
                curve.append({"steps": n, "d_ddp": ddp, "d_ddp_vs_2_threads": _max_diff(w["2x1"], w["1x2"]),
                              "d_ref": ref, "bound": bound, "agree": ddp["parameters"] <= bound})
            has_bn = any(k.endswith(BN_BUFFERS) for k in w["1x1"])
            per_step = {how: statistics.median(x["loop_s"] for x in v) / longest for how, v in runs.items()}
            expected = "differ" if has_bn else "agree"
            observed = "agree" if all(c["agree"] for c in curve) else "differ"
            row = {
                "arch": arch, "batchnorm": has_bn, "global_batch": RECIPE["batch_size"], "curve": curve,
                "atol": a.atol, "factor": a.factor, "expected": expected, "observed": observed,
                "as_expected": expected == observed, "each_run_repeatable_bit_for_bit": repeatable,
                "seconds_per_step": per_step,
                "ratio_to_1_process_1_thread": {how: s / per_step["1x1"] for how, s in per_step.items()},
                "val_acc": {how: [x["val_acc"] for x in v] for how, v in runs.items()},
                "runs": runs,
            }
            results.append(row)
            print(f"{arch}: " + "; ".join(f"step {c['steps']}: d_ddp {c['d_ddp']['parameters']:.2g} "
                                          f"d_ref {c['d_ref']['parameters']:.2g}" for c in curve)
                  + f"; expected {expected}, observed {observed}; s/step "
                  + ", ".join(f"{how} {s * 1e3:.1f} ms ({s / per_step['1x1']:.2f}x)" for how, s in per_step.items()),
                  flush=True)
    out = {"machine": {**_machine(), "load_before": load_before, "load_after": os.getloadavg()},
           "recipe": RECIPE, "objectives": OBJECTIVES, "checkpoints": sorted(set(a.checkpoints)), "data": "digits (8x8, sklearn), 1078 train / 270 val",
           "repeats": a.repeats, "results": results}
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
