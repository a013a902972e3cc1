"""How fast does the streaming loader (lspipe.core.stream) decode and augment, against plain torchvision?

Builds the tiny ImageNet-layout tree (lspipe.tiny_imagenet) twice: as the tests use it (64-96 px
images) and with ImageNet's typical 500 x 375 px images, then times, in one process, alternating
``--repeats`` times:

* **stream**: :class:`lspipe.core.stream.StreamLoader`, training view (PIL decode, RandomResizedCrop +
  flip from torchvision's transforms v2 on the uint8 tensor, each image seeded by (seed, epoch,
  position)), and :func:`lspipe.core.stream.eval_batches`, evaluation view (resize + center crop);
* **baseline**: ``torchvision.datasets.ImageFolder`` (its PIL loader) with the same v2
  transforms on the PIL image, then ``PILToTensor``, in a shuffling ``DataLoader``: the textbook
  pipeline, unseeded.

Both yield uint8 batches (normalisation is the model's, on the device); same batch size, same
number of worker processes. Reported: images/s, images/s per worker process (0 workers: decoding
in the main process, one core), and stream / baseline. The development machine is shared with
other jobs, so the ratios, not the absolute rates, are what counts; the JSON (``--out``) records
the load average before and after.

    python benchmarks/stream_loader.py --out docs/bench/stream-loader-cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch


def _baseline(root: Path, image_size: int, batch_size: int, workers: int, train: bool):
    from torchvision import datasets
    from torchvision.transforms import v2

    from lspipe.core.stream import eval_transform, train_transform

    view = train_transform(image_size, (0.08, 1.0), (3 / 4, 4 / 3)) if train else eval_transform(image_size, 0.875)
    ds = datasets.ImageFolder(str(root / "train"), transform=v2.Compose([view, v2.PILToTensor()]))
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=train, drop_last=train, num_workers=workers,
                                       persistent_workers=workers > 0)


def _stream(idx, batch_size: int, workers: int, train: bool):
    from lspipe.core.stream import StreamLoader

    return StreamLoader(idx, "train", batch_size, seed=0, augment=train, shuffle=train, drop_last=train,
                        workers=workers)


def _rate(loader, passes: int) -> float:
    """Images per second over ``passes`` passes, after one warm-up pass (worker start-up)."""
    for _ in loader:
        pass
    n, t = 0, time.perf_counter()
    for _ in range(passes):
        for x, _ in loader:
            n += len(x)
    return n / (time.perf_counter() - t)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--passes", type=int, default=2)
    p.add_argument("--out", type=Path)
    a = p.parse_args(argv)

    from lspipe.core.stream import build_index
    from lspipe.tiny_imagenet import make_tree

    torch.set_num_threads(1)
    load_before = os.getloadavg()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        trees = {
            "tiny tree (64-96 px), 32 px crops": (make_tree(Path(tmp) / "tiny"), 32),
            "ImageNet-sized (500x375 px), 224 px crops": (
                make_tree(Path(tmp) / "big", train_per_class=16, val_per_class=1, sizes=((500, 375), (375, 500))), 224),
        }
        for tree_name, (root, size) in trees.items():
            idx = build_index(root, image_size=size, stats_images=8, val_size=10)
            # the baseline reads all of train/; the stream reads its train split (the rest is validation)
            for view in ("train", "eval"):
                for w in a.workers:
                    rates = {"stream": [], "baseline": []}
                    loaders = {"stream": _stream(idx, a.batch_size, w, view == "train"),
                               "baseline": _baseline(root, size, a.batch_size, w, view == "train")}
                    for _ in range(a.repeats):
                        for k, loader in loaders.items():
                            rates[k].append(_rate(loader, a.passes))
                    med = {k: statistics.median(v) for k, v in rates.items()}
                    row = {"tree": tree_name, "view": view, "workers": w, "batch_size": a.batch_size,
                           "stream_img_s": med["stream"], "baseline_img_s": med["baseline"],
                           "ratio": med["stream"] / med["baseline"],
                           "stream_img_s_per_process": med["stream"] / max(w, 1),
                           "baseline_img_s_per_process": med["baseline"] / max(w, 1), "all": rates}
                    results.append(row)
                    print(f"{tree_name:45s} {view:5s} workers={w}: stream {med['stream']:8.1f} img/s, "
                          f"baseline {med['baseline']:8.1f} img/s, ratio {row['ratio']:.2f}", flush=True)
    out = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "torch": torch.__version__, "load_before": load_before, "load_after": os.getloadavg()},
        "results": results,
    }
    try:
        out["machine"]["cpu"] = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                                     if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
