"""How much does the mutual-information probe (Fig. 6) slow teacher training down?

Trains the same model with the real :func:`lspipe.engine.training.fit` on random 32x32x3 images, with and
without a :class:`lspipe.engine.probe.ProbeRecorder`, alternating the two ``--repeats`` times, and reports
the median wall time and process CPU time of each and the overhead (on a busy machine the CPU
time, with one torch thread, is the meaningful one). It also times one probe record directly,
which gives the overhead with far less noise than the difference of two training times::

    predicted overhead = records x (time of one record) / (training time without the probe)

The probe is sized at the paper's ratio of probe cost to training cost unless ``--per-class`` is
given: the paper records N = 600 examples x L = 5 copies every 4000 steps of batch 128, i.e.
3000 / (4000 x 128) = 0.59 % as many forward passes (no backward pass) as training sees; here
``per_class = round(0.00586 x every x batch_size / (2 L))``.

    python benchmarks/probe_overhead.py                         # smallcnn, the paper's ratio
    python benchmarks/probe_overhead.py --arch resnet20 --steps 200 --every 100
    python benchmarks/probe_overhead.py --per-class 100 --every 25 --steps 100       # config.yaml's ratio
    python benchmarks/probe_overhead.py --image-size 8 --channels 1 --pad 1 --steps 300 --every 25 \
        --per-class 100 --repeats 2                                                  # config.yaml itself
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from lspipe.core.data import Prepared
from lspipe.core.losses import SmoothedCE
from lspipe.engine.probe import ProbeRecorder
from lspipe.core.models import build_model
from lspipe.core.recipe import Recipe
from lspipe.engine.training import fit

PAPER_RATIO = 600 * 5 / (4000 * 128)


def random_data(n_train: int, image_size: int = 32, channels: int = 3, classes: int = 10, seed: int = 0) -> Prepared:
    rng = np.random.default_rng(seed)
    x, y, idx = {}, {}, {}
    for split, n in (("train", n_train), ("val", 200), ("test", 10)):
        x[split] = rng.integers(0, 256, (n, channels, image_size, image_size), dtype=np.uint8)
        y[split] = (np.arange(n) % classes).astype(np.int64)
        idx[split] = np.arange(n)
    return Prepared(x, y, idx, [f"c{i}" for i in range(classes)], np.full(channels, 0.5), np.full(channels, 0.25),
                    {"name": "random"})


def run(args, data, recipe, probe: dict | None, work: Path) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one training run."""
    torch.manual_seed(0)
    model = build_model(args.arch, data)
    cbs = [ProbeRecorder(work / "probe.h5", data, device=args.device, recipe=recipe, **probe)] if probe else []
    for f in work.glob("*"):
        f.unlink()
    t0, c0 = time.perf_counter(), time.process_time()
    fit(model, data, recipe, SmoothedCE(0.1), seed=0, device=args.device, checkpoint_path=work / "ck",
        metrics_path=work / "metrics.csv", callbacks=cbs, progress=False)
    return time.perf_counter() - t0, time.process_time() - c0


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="smallcnn")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--every", type=int, default=200)
    p.add_argument("--copies", type=int, default=5)
    p.add_argument("--per-class", type=int, default=None, help="default: the paper's probe/training cost ratio")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--pad", type=int, default=4, help="augmentation padding (training and probe)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=None, help="also write the result as JSON here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    per_class = args.per_class or max(1, round(PAPER_RATIO * args.every * args.batch_size / (2 * args.copies)))
    n_images = 2 * per_class * args.copies
    data = random_data(max(20 * args.batch_size, 4 * per_class * 10), args.image_size, args.channels)
    recipe = Recipe.from_dict({"steps": args.steps, "batch_size": args.batch_size, "lr": 0.05,
                               "augment": {"pad": args.pad, "flip": True}, "eval_batch_size": 500})
    probe = {"classes": ["c0", "c1"], "per_class": per_class, "copies": args.copies, "every": args.every}
    records = len(range(0, args.steps + 1, args.every)) + (args.steps % args.every != 0)

    plain, probed = [], []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        run(args, data, Recipe.from_dict({**vars(recipe), "steps": 2 * args.every}), None, work)  # warm-up
        for _ in range(args.repeats):
            plain.append(run(args, data, recipe, None, work))
            probed.append(run(args, data, recipe, probe, work))
        # one record, timed directly (including the HDF5 append)
        torch.manual_seed(0)
        model = build_model(args.arch, data).to(args.device)
        rec = ProbeRecorder(work / "p.h5", data, device=args.device, recipe=recipe, **probe)
        rec.on_start(model, 0)
        t_rec, c_rec = [], []
        for s in range(1, 6):
            t0, c0 = time.perf_counter(), time.process_time()
            rec.record(model, s * args.every)
            t_rec.append(time.perf_counter() - t0)
            c_rec.append(time.process_time() - c0)

    med = statistics.median
    t_plain, t_probed = med(w for w, _ in plain), med(w for w, _ in probed)
    c_plain, c_probed = med(c for _, c in plain), med(c for _, c in probed)
    result = {
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip() + f", torch threads {args.threads}",
        "device": args.device, "arch": args.arch, "image": [args.channels, args.image_size, args.image_size],
        "steps": args.steps, "batch_size": args.batch_size,
        "every": args.every, "per_class": per_class, "copies": args.copies, "records": records,
        "probe_forward_per_training_example": n_images / (args.every * args.batch_size), "paper_ratio": PAPER_RATIO,
        "train_wall_cpu_s_plain": plain, "train_wall_cpu_s_probed": probed,
        "median_wall_s": [t_plain, t_probed], "median_cpu_s": [c_plain, c_probed],
        "overhead_wall_pct": 100 * (t_probed - t_plain) / t_plain,
        "overhead_cpu_pct": 100 * (c_probed - c_plain) / c_plain,
        "record_wall_s": med(t_rec), "record_cpu_s": med(c_rec),
        "overhead_predicted_cpu_pct": 100 * records * med(c_rec) / c_plain,
    }
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
