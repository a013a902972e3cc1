"""Cross-seed fusion, measured: one fused network of S seeds x A alphas (each seed's batch stacked along
channels) against the workflow's way, S separate same-seed fused groups of A alphas, one after another.

Both run the same step (:class:`lspipe.engine.cross_seed.CrossSeedTrainer`, which is ``fit``'s step:
with one seed it equals ``train_group(fuse=True)`` bit for bit, tests/test_cross_seed.py), eager, the
same architecture and the same recipe (the GPU quick preset's, ``workflow/presets/cifar10-gpu.yaml``,
without torch.compile), on random CIFAR-shaped images resident on the device. Every trainer is built
and warmed up first; then ``--repeats`` interleaved rounds each time ``--steps`` steps of every
baseline group and of the cross-seed network (CUDA synchronised around each timed window). The figure
is the ratio of the medians: baseline seconds (the S groups together) / cross-seed seconds, > 1 when
cross-seed fusion pays. Also printed: model-images/s of each, the operations one step of every
member dispatches each way (views excluded; the host's work, which sets a small model's step time on
a GPU) and on CUDA the peak memory of each.

    python benchmarks/cross_seed.py                       # GPU: resnet56, 7 alphas x 3 seeds, batch 128
    nice python benchmarks/cross_seed.py --arch resnet8 --batch-size 32 --steps 8 --threads 1   # CPU
    python benchmarks/cross_seed.py --smoke --out DIR     # tiny, on the CPU: the path, not a figure

``--out DIR`` writes ``DIR/cross_seed.json`` (``--out FILE.json``: that file; benchmarks/gpu-check.sh's way). A round that would start after ``--budget-s`` seconds is
left out (the rounds done are recorded), so the default run ends within about a minute on a GPU.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from torch.utils._python_dispatch import TorchDispatchMode

from lspipe.base.io import atomic_path
from lspipe.core.data import Prepared
from lspipe.core.inference import resolve_device
from lspipe.core.losses import Objective
from lspipe.core.recipe import Recipe
from lspipe.engine.cross_seed import CrossSeedTrainer, cross_seed_members
from lspipe.engine.fused import fuse

REPO = Path(__file__).resolve().parent.parent
PRESET = REPO / "workflow" / "presets" / "cifar10-gpu.yaml"
PAPER_ALPHAS = [0.0, 0.1, 0.15, 0.3, 0.45, 0.6, 0.75]


def random_data(n_train: int, image_size: int = 32, channels: int = 3, classes: int = 10) -> Prepared:
    rng = np.random.default_rng(0)
    x, y, idx = {}, {}, {}
    for split, n in (("train", n_train), ("val", 10), ("test", 10)):
        x[split] = rng.integers(0, 256, (n, channels, image_size, image_size), dtype=np.uint8)
        y[split] = (np.arange(n) % classes).astype(np.int64)
        idx[split] = np.arange(n)
    return Prepared(x, y, idx, [f"c{i}" for i in range(classes)], np.full(channels, 0.5), np.full(channels, 0.25),
                    {"name": "random"})


def preset_recipe(arch: str, batch_size: int) -> tuple[str, Recipe]:
    """The GPU quick preset's recipe of ``arch`` (its ResNet-56 recipe for other archs), eager, at ``batch_size``,
    with steps enough that the timed steps never reach a learning-rate milestone's end."""
    recipes = yaml.safe_load(PRESET.read_text())["recipes"]
    name = arch if arch in recipes else "resnet56"
    r = dict(recipes[name], compile=False, batch_size=batch_size, steps=10**6, lr_milestones=[])
    return name, Recipe.from_dict(r)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(trainer: CrossSeedTrainer, steps: int, device: torch.device) -> float:
    sync(device)
    t0 = time.perf_counter()
    trainer.run(steps)
    sync(device)
    return time.perf_counter() - t0


class _OpCount(TorchDispatchMode):
    """Counts the operations dispatched (views excluded), backward included."""

    def __init__(self):
        super().__init__()
        self.n = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.n += not func.is_view
        return func(*args, **(kwargs or {}))


def op_count(trainer: CrossSeedTrainer) -> int:
    """Operations one step of ``trainer`` dispatches: the host's work per step, which sets a small
    model's step time on a GPU (issue 28: 22-33 us each on an H100 host)."""
    with _OpCount() as c:
        trainer.step()
    return c.n


def peak_memory(make, device: torch.device, steps: int) -> float | None:
    """Peak CUDA memory (GiB) of a trainer made by ``make()`` over ``steps`` steps; None on the CPU."""
    if device.type != "cuda":
        return None
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    trainer = make()
    trainer.run(steps)
    sync(device)
    peak = torch.cuda.max_memory_allocated(device) / 2**30
    del trainer
    torch.cuda.empty_cache()
    return peak


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="resnet56")
    p.add_argument("--alphas", type=int, default=len(PAPER_ALPHAS), help="members per seed (the paper's alphas, first N)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=30, help="timed steps per round, of each group")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps of each trainer first")
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds")
    p.add_argument("--budget-s", type=float, default=45.0, help="start no round after this many seconds")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None, help="torch threads on the CPU")
    p.add_argument("--out", type=Path, default=None, help="a .json file, or a folder for cross_seed.json")
    p.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU (the path, not a figure)")
    a = p.parse_args(argv)
    if a.smoke:
        a.arch, a.alphas, a.seeds, a.batch_size, a.steps, a.warmup, a.repeats = "smallcnn", 2, 3, 16, 2, 1, 1
        a.device = "cpu" if a.device == "auto" else a.device
    if a.threads:
        torch.set_num_threads(a.threads)
    t_start = time.perf_counter()
    device = resolve_device(a.device)
    if not 1 <= a.alphas <= len(PAPER_ALPHAS) or a.seeds < 2:
        p.error(f"--alphas must be 1..{len(PAPER_ALPHAS)} and --seeds at least 2")
    alphas, seeds = PAPER_ALPHAS[:a.alphas], list(range(a.seeds))
    recipe_name, recipe = preset_recipe(a.arch, a.batch_size)
    data = random_data(a.batch_size * 8)
    objective = Objective([{"kind": "ls", "alpha": x} for x in alphas])

    def make(group_seeds):
        torch.manual_seed(0)
        model = fuse(cross_seed_members(a.arch, data, group_seeds, len(alphas)))
        return CrossSeedTrainer(model, data, recipe, objective, group_seeds, device=device)

    baseline = [make([s]) for s in seeds]  # the workflow's way: one same-seed fused group per seed
    cross = make(seeds)
    for t in [*baseline, cross]:
        t.run(a.warmup)
    ops = {"baseline": sum(op_count(t) for t in baseline), "cross_seed": op_count(cross)}
    sync(device)
    rounds = []
    for r in range(a.repeats):
        if r and time.perf_counter() - t_start > a.budget_s:
            print(f"budget of {a.budget_s:g} s reached: {r} of {a.repeats} rounds", file=sys.stderr)
            break
        base_s = sum(timed(t, a.steps, device) for t in baseline)
        cross_s = timed(cross, a.steps, device)
        rounds.append({"baseline_s": base_s, "cross_seed_s": cross_s})
    del baseline, cross
    mem = {"baseline_gib": peak_memory(lambda: make([0]), device, 2),
           "cross_seed_gib": peak_memory(lambda: make(seeds), device, 2)}
    base, cr = statistics.median(x["baseline_s"] for x in rounds), statistics.median(x["cross_seed_s"] for x in rounds)
    images = len(seeds) * len(alphas) * a.batch_size * a.steps  # model-images per round, each way
    result = {
        "benchmark": "cross_seed",
        "machine": {"platform": platform.platform(), "cpu": platform.processor() or platform.machine(),
                    "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                    "torch": torch.__version__, "threads": torch.get_num_threads()},
        "smoke": a.smoke, "device": str(device), "arch": a.arch, "recipe": f"cifar10-gpu.yaml:{recipe_name} (eager)",
        "amp": recipe.amp if device.type == "cuda" else recipe.cpu_amp,
        "channels_last": recipe.channels_last if device.type == "cuda" else recipe.cpu_channels_last,
        "grad_clip": recipe.grad_clip, "alphas": alphas, "seeds": seeds, "batch_size": a.batch_size,
        "steps": a.steps, "warmup": a.warmup, "rounds": rounds,
        "baseline": {"what": f"{len(seeds)} same-seed fused groups of {len(alphas)}, one after another",
                     "median_s": base, "model_images_per_s": images / base},
        "cross_seed": {"what": f"one fused network of {len(seeds)} seeds x {len(alphas)} alphas",
                       "median_s": cr, "model_images_per_s": images / cr},
        "speedup": base / cr, "ops_per_step": ops, "peak_memory": mem, "seconds": time.perf_counter() - t_start,
    }
    print(f"cross-seed fusion, {a.arch} x {len(alphas)} alphas x {len(seeds)} seeds, batch {a.batch_size}, "
          f"{device}: baseline {images / base:,.0f} model-images/s ({len(seeds)} same-seed groups), cross-seed "
          f"{images / cr:,.0f} -> {base / cr:.2f}x ({len(rounds)} rounds of {a.steps} steps); operations per step "
          f"of all members: {ops['baseline']} vs {ops['cross_seed']}")
    if a.out:
        path = a.out if a.out.suffix == ".json" else a.out / "cross_seed.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
