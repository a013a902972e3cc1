"""Real training jobs end to end, and 1 vs 3 processes sharing one GPU (a step of benchmarks/gpu-check.sh).

    python benchmarks/gpu_jobs.py --out jobs.json [--device cuda] [--steps 400] [--figures bench.json]
    python benchmarks/gpu_jobs.py --smoke --out jobs.json        # the same on the CPU, tiny (the test suite)

* **teacher**: one fused teacher job as the workflow runs it (``lspipe train --fuse``): the 7 alphas of
  the GPU preset's ResNet-56 grid (workflow/presets/cifar10-gpu.yaml, its recipe at ``--steps`` steps,
  milestones scaled), on a CIFAR-10-sized random dataset (40,000 training, 10,000 validation images);
* **student**: one fused student job: the 7 temperatures of the hard teacher's AlexNet students
  (the preset's ``alexnet`` recipe), distilled from the teacher job's first model;
* **concurrency**: the same single-model job (ResNet-56, the preset's recipe, the engine's settings)
  timed alone and in 3 processes at once, each timing its steps after the others are ready.

Per job: wall seconds of the command, seconds to the end of its first step (from the engine's log
line ``engine: {...}``), its steady step time and rate (the engine's own figure, after its warm-up,
epoch ends left out). With ``--figures`` (the check's bench.json), the projected training time of the
teacher job from the bench's fused figure, against the measured one (wall minus the time to the first
step). Figures are written as JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
PRESET = REPO / "workflow" / "presets" / "cifar10-gpu.yaml"
ALPHAS = [0.0, 0.1, 0.15, 0.3, 0.45, 0.6, 0.75]
TEMPERATURES = [1, 2, 3, 4, 8, 12, 16]


def write_random_cifar(path: Path, sizes: dict[str, int], side: int = 32, seed: int = 0) -> None:
    """A prepared dataset file (lspipe.core.data's format) of random uint8 images and labels in 0..9."""
    sys.path.insert(0, str(REPO))
    from lspipe.core.data import savez_deterministic

    rng = np.random.default_rng(seed)
    arrays = {"classes": np.asarray([str(i) for i in range(10)]), "mean": np.full(3, 0.5, np.float32),
              "std": np.full(3, 0.29, np.float32),
              "meta": np.asarray(json.dumps({"name": "random-cifar", "image_shape": [3, side, side], "sizes": sizes}))}
    for split, n in sizes.items():
        arrays[f"x_{split}"] = rng.integers(0, 256, (n, 3, side, side), dtype=np.uint8)
        arrays[f"y_{split}"] = rng.integers(0, 10, n).astype(np.int64)
        arrays[f"i_{split}"] = np.arange(n, dtype=np.int64)
    with open(path, "wb") as fh:
        savez_deterministic(fh, arrays)


def _recipe(name: str, steps: int, batch: int) -> dict:
    r = dict(yaml.safe_load(PRESET.read_text())["recipes"][name])
    scale = steps / r["steps"]
    r.update(steps=steps, batch_size=batch, lr_milestones=sorted({max(1, int(m * scale)) for m in r.get("lr_milestones", [])}
                                                                 if steps > 2 else set()))
    r["lr_milestones"] = [m for m in r["lr_milestones"] if m < steps]
    return r


def _engine_line(stderr: str) -> dict:
    for line in reversed(stderr.splitlines()):
        if line.startswith("engine: {"):
            return json.loads(line[len("engine: "):])
    return {}


def run_job(name: str, work: Path, data: Path, arch: str, recipe: dict, objectives: list[dict], *, role: str,
            device: str, fuse: bool, log) -> dict:
    """One ``lspipe train`` job; its wall time, time to first step and steady pace."""
    outs = [work / name / f"m{i}" / "model.pt" for i in range(len(objectives))]
    cmd = [sys.executable, "-m", "lspipe.cli", "train", "--data", str(data), "--arch", arch, "--recipe",
           json.dumps(recipe), "--seed", "0", "--objectives", json.dumps(objectives), "--role", role,
           "--out", *map(str, outs), "--metrics", *[str(o.with_name("metrics.csv")) for o in outs],
           "--device", device, "--no-progress", "--fuse" if fuse else "--no-fuse"]
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    wall = time.time() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{name} job failed ({proc.returncode}): {proc.stderr[-2000:]}")
    eng = _engine_line(proc.stderr)
    first = None if eng.get("first_step_at") is None else eng["first_step_at"] - t0
    steady = eng.get("steady_step_ms")
    rate = None if not steady else len(objectives) * recipe["batch_size"] / (steady / 1000.0)
    res = {"arch": arch, "members": len(objectives), "fused": fuse, "steps": recipe["steps"],
           "batch_size": recipe["batch_size"], "wall_s": wall, "first_step_s": first, "steady_step_ms": steady,
           "steady_model_images_per_s": rate, "steady_steps": eng.get("steady_steps"), "engine": eng,
           "models": [str(o) for o in outs]}
    log(f"{name}: {arch} x{len(objectives)}{' fused' if fuse else ''}, {recipe['steps']} steps: wall {wall:.1f} s, "
        f"first step after {first if first is None else round(first, 1)} s, steady "
        f"{steady if steady is None else round(steady, 2)} ms/step "
        f"({rate if rate is None else round(rate)} model-images/s), graph {eng.get('cuda_graph')}")
    return res


def concurrency(work: Path, data: Path, arch: str, recipe: dict, device: str, procs: int, steps: int, log) -> dict:
    """Aggregate images/s of ``procs`` processes training at once (each times ``steps`` steps once all are ready)."""
    ready = work / f"ready{procs}"
    ready.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "worker", "--data", str(data), "--arch", arch, "--recipe",
           json.dumps(recipe), "--device", device, "--steps", str(steps), "--ready", str(ready), "--procs", str(procs),
           *(["--threads", "1"] if device == "cpu" else [])]
    ps = [subprocess.Popen(cmd + ["--rank", str(i)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           cwd=REPO) for i in range(procs)]
    outs = []
    for p in ps:
        out, err = p.communicate()
        if p.returncode != 0:
            raise RuntimeError(f"a worker failed ({p.returncode}): {err[-2000:]}")
        outs.append(json.loads(out.strip().splitlines()[-1]))
    agg = sum(o["images_per_s"] for o in outs)
    each = ", ".join(format(o["images_per_s"], ",.0f") for o in outs)
    log(f"concurrency: {procs} process(es) of {arch}: {agg:,.0f} images/s in all ({each})")
    return {"processes": procs, "images_per_s": agg, "per_process": outs}


def worker(a) -> int:
    """One process of :func:`concurrency`: warm up, signal ready, wait for the others, time its steps."""
    sys.path.insert(0, str(REPO))
    import torch

    from lspipe.bench import timing as bench
    from lspipe.core import source
    from lspipe.core.losses import Objective
    from lspipe.core.recipe import Recipe
    from lspipe.engine.training import train_group

    if a.threads:
        torch.set_num_threads(a.threads)
    data = source.load(a.data)
    recipe = json.loads(a.recipe)
    extra = 3 + bench._graph_warmup(recipe, torch.device(a.device))
    rec = Recipe.from_dict({**recipe, "steps": extra + a.steps, "lr_milestones": []})  # the pace, not the schedule

    class Barrier(bench._StepTimer):
        def on_step(self, model, step):
            if step == self.warmup:
                (Path(a.ready) / str(a.rank)).touch()
                while len(list(Path(a.ready).iterdir())) < a.procs:
                    time.sleep(0.005)
            super().on_step(model, step)

    timer = Barrier(extra, a.steps, torch.device(a.device))
    with tempfile.TemporaryDirectory(prefix="lspipe-jobs-") as tmp:
        train_group(a.arch, data, rec, Objective([{"kind": "ls", "alpha": 0.1}]), seed=a.rank,
                    device=a.device, checkpoint_path=Path(tmp) / "c", metrics_paths=[Path(tmp) / "m.csv"],
                    callbacks=[timer], progress=False)
    fig = bench._figures(timer.clock.step_seconds(), rec.batch_size, 1, timer.clock.cuda)
    print(json.dumps({"rank": a.rank, "images_per_s": fig["images_per_s"], "step_ms": fig["step_ms"]}))
    return 0


def projected(figures: Path, members: int, steps: int, batch: int) -> dict | None:
    """The teacher job's projected training seconds from the bench's fused figure nearest ``members``."""
    res = json.loads(Path(figures).read_text())
    r = next((r for r in res.get("results", []) if r["arch"] == "resnet56"), None)
    sizes = {int(k): v for k, v in (r or {}).get("fused_sizes", {}).items()}
    if not sizes:
        return None
    near = min(sizes, key=lambda s: abs(np.log(s / members)))
    return {"fused_size": near, "variant": sizes[near].get("variant"), "model_images_per_s": sizes[near]["images_per_s"],
            "training_s": members * steps * batch / sizes[near]["images_per_s"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd")
    w = sub.add_parser("worker")
    for k in ("--data", "--arch", "--recipe", "--device", "--ready"):
        w.add_argument(k, required=True)
    w.add_argument("--steps", type=int, required=True)
    w.add_argument("--procs", type=int, required=True)
    w.add_argument("--rank", type=int, required=True)
    w.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default=None)
    p.add_argument("--device", default="cuda")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--concurrency", type=int, default=3)
    p.add_argument("--figures", default=None, help="the check's bench.json: the teacher job's projection")
    p.add_argument("--smoke", action="store_true", help="the CPU, tiny models and sizes (the test suite)")
    a = p.parse_args(argv)
    if a.cmd == "worker":
        return worker(a)
    if not a.out:
        p.error("--out is required")
    log = lambda s: print(s, flush=True)  # noqa: E731
    smoke = a.smoke
    device = "cpu" if smoke else a.device
    steps, batch = (10, 16) if smoke else (a.steps, 128)
    tarch, sarch, g = ("resnet8", "smallcnn", 2) if smoke else ("resnet56", "alexnet", 7)
    out: dict = {"device": device, "smoke": smoke, "jobs": {}, "errors": {}}
    with tempfile.TemporaryDirectory(prefix="lspipe-jobs-") as tmp:
        work = Path(tmp)
        data = work / "random-cifar.npz"
        write_random_cifar(data, {"train": 256, "val": 64, "test": 16} if smoke else
                           {"train": 40000, "val": 10000, "test": 16})
        trec = {**_recipe("resnet56", steps, batch), **({"checkpoint_every": 100} if smoke else {})}
        try:
            out["jobs"]["teacher"] = run_job("teacher", work, data, tarch, trec,
                                             [{"kind": "ls", "alpha": x} for x in ALPHAS[:g]], role="teacher",
                                             device=device, fuse=True, log=log)
            if a.figures and Path(a.figures).exists():
                pr = projected(Path(a.figures), g, steps, batch)
                t = out["jobs"]["teacher"]
                if pr and t["first_step_s"] is not None:
                    pr["measured_training_s"] = t["wall_s"] - t["first_step_s"]
                    pr["measured_over_projected"] = pr["measured_training_s"] / pr["training_s"]
                    t["projection"] = pr
                    log(f"teacher job: training {pr['measured_training_s']:.1f} s measured, {pr['training_s']:.1f} s "
                        f"projected from the bench ({pr['variant']} fused x{pr['fused_size']}): "
                        f"{pr['measured_over_projected']:.2f}x")
            teacher = out["jobs"]["teacher"]["models"][0]
            out["jobs"]["student"] = run_job(
                "student", work, data, sarch, _recipe("alexnet", steps, batch),
                [{"kind": "kd", "teacher": teacher, "T": float(t), "beta": 1.0, "form": "teacher"}
                 for t in TEMPERATURES[:g]], role="student", device=device, fuse=True, log=log)
        except Exception as err:  # a figure, not the end of the check
            out["errors"]["jobs"] = f"{type(err).__name__}: {' '.join(str(err).split())[-600:]}"
            log(f"jobs FAILED: {out['errors']['jobs']}")
        try:
            single = {**_recipe("resnet56", steps, batch)}
            csteps, procs = (3, 2) if smoke else (200, a.concurrency)
            runs = [concurrency(work, data, tarch, single, device, n, csteps, log) for n in (1, procs)]
            out["concurrency"] = {"arch": tarch, "timed_steps": csteps, "runs": runs,
                                  "speedup": runs[1]["images_per_s"] / runs[0]["images_per_s"]}
        except Exception as err:
            out["errors"]["concurrency"] = f"{type(err).__name__}: {' '.join(str(err).split())[-600:]}"
            log(f"concurrency FAILED: {out['errors']['concurrency']}")
    Path(a.out).write_text(json.dumps(out, indent=2))
    return 0 if not out["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
