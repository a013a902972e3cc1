"""Benchmark the HDF5 compression filters of the activation dumps: lzf, gzip (level 4 + shuffle), none.

A realistic dump is built once per architecture: a CIFAR-size model (resnet20: 64-d penultimate
features; alexnet: 192-d) is briefly trained on real CIFAR-10 images (the ImageFolder subset at
--images), then its penultimate features and logits are computed for --rows-per-split rows in each
of the train / val / test splits (the split's real images, topped up with random crop + flip copies
of them to reach the row count). For every compression the script then times

* write: ``lspipe.engine.dumpfile.write_h5``, the writer ``write_dump`` uses (same chunking, same
  chunk-aligned block writes), from in-memory arrays, so the model's forward pass is excluded;
* read: ``lspipe.engine.dumpfile.Dump(path)`` + every split's arrays, as the analyses read them
  (page cache warm: the file was just written; dropping caches needs root);

and records the file size. Each timing is the median of --repeats runs.

    python benchmarks/h5_compression.py --md /tmp/h5-table.md --json /tmp/bench.json
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

import numpy as np
import torch

from lspipe.core import data as data_mod
from lspipe.engine.dumpfile import COMPRESSIONS, Dump, write_h5
from lspipe.core.augment import random_crop_flip
from lspipe.core.losses import SmoothedCE
from lspipe.core.inference import predict
from lspipe.core.models import build_model
from lspipe.core.recipe import Recipe
from lspipe.engine.training import fit

DEFAULT_IMAGES = os.environ.get("LSPIPE_CIFAR_SUBSET")  # the CIFAR-10 JPEG subset, if the environment names it


def realistic_arrays(arch: str, data: data_mod.Prepared, rows_per_split: int, steps: int, seed: int,
                     workdir: Path) -> dict:
    torch.manual_seed(seed)
    model = build_model(arch, data)
    recipe = Recipe.from_dict({"steps": steps, "batch_size": 128, "lr": 0.05, "amp": False, "channels_last": False,
                               "augment": {"pad": 4, "flip": True}, "weight_decay": 5e-4})
    t0 = time.perf_counter()
    summary = fit(model, data, recipe, SmoothedCE(0.0), seed=seed, device="cpu", checkpoint_path=workdir / f"{arch}.ckpt",
                  metrics_path=workdir / f"{arch}.csv", progress=False)
    train_s = time.perf_counter() - t0
    gen = torch.Generator().manual_seed(seed)
    out = {"classes": data.classes, "weight": model.classifier.weight.detach().numpy().copy(),
           "bias": model.classifier.bias.detach().numpy().copy(), "splits": {}, "train_seconds": train_s,
           "final": summary.get("final")}
    t0 = time.perf_counter()
    for split in data_mod.SPLITS:
        x = torch.from_numpy(data.x[split])
        y = data.y[split]
        extra = max(0, rows_per_split - len(y))
        pick = torch.randint(0, len(y), (extra,), generator=gen)
        xs = torch.cat([x[: rows_per_split], random_crop_flip(x[pick], 4, True, gen)])
        ys = np.concatenate([y[: rows_per_split], y[pick.numpy()]])
        logits, feats = predict(model, xs, "cpu", batch_size=1000, features=True)
        out["splits"][split] = {"features": feats.numpy(), "logits": logits.numpy(), "labels": ys.astype(np.int64),
                                "index": np.arange(len(ys), dtype=np.int64)}
    out["forward_seconds"] = time.perf_counter() - t0
    return out


def measure(arrays: dict, path: Path, compression: str, chunk_rows: int, repeats: int) -> dict:
    def rows_of(split):
        s = arrays["splits"][split]
        return lambda a, b: (s["features"][a:b], s["logits"][a:b])

    splits = {k: (v["labels"], v["index"], rows_of(k)) for k, v in arrays["splits"].items()}
    writes, reads = [], []
    for _ in range(repeats):
        path.unlink(missing_ok=True)
        t0 = time.perf_counter()
        write_h5(path, classes=arrays["classes"], weight=arrays["weight"], bias=arrays["bias"], splits=splits,
                 chunk_rows=chunk_rows, compression=compression)
        writes.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        d = Dump(path)
        got = {s: d.split(s) for s in d.splits}
        reads.append(time.perf_counter() - t0)
        for s, v in arrays["splits"].items():  # the filter is lossless
            assert np.array_equal(got[s].features, v["features"]) and np.array_equal(got[s].logits, v["logits"])
    raw = sum(v[k].nbytes for v in arrays["splits"].values() for k in v)
    return {"compression": compression, "write_s": statistics.median(writes), "read_s": statistics.median(reads),
            "bytes": path.stat().st_size, "raw_bytes": raw}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=Path, default=DEFAULT_IMAGES, required=DEFAULT_IMAGES is None,
                   help="CIFAR-10 ImageFolder subset (train/, test/; default: $LSPIPE_CIFAR_SUBSET)")
    p.add_argument("--archs", nargs="+", default=["resnet20", "alexnet"])
    p.add_argument("--rows-per-split", type=int, default=10000)
    p.add_argument("--train-steps", type=int, default=100)
    p.add_argument("--chunk-rows", type=int, default=1024)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not args.images.is_dir():
        p.error(f"--images {args.images} is not a folder (an ImageFolder tree with train/ and test/)")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = data_mod.prepare("cifar10_subset", "imagefolder", tmp / "data.npz", root=str(args.images),
                                val_size=0.2, image_size=32, channels=3)
        for arch in args.archs:
            arrays = realistic_arrays(arch, data, args.rows_per_split, args.train_steps, args.seed, tmp)
            feats = arrays["splits"]["train"]["features"]
            info = {"arch": arch, "rows": sum(len(v["labels"]) for v in arrays["splits"].values()),
                    "feature_dim": int(feats.shape[1]), "classes": len(arrays["classes"]),
                    "zero_fraction": float((feats == 0).mean()), "train_seconds": arrays["train_seconds"],
                    "forward_seconds": arrays["forward_seconds"], "final": arrays["final"]}
            print(json.dumps(info), flush=True)
            for c in COMPRESSIONS:
                r = {**info, **measure(arrays, tmp / f"{arch}_{c}.h5", c, args.chunk_rows, args.repeats)}
                print(json.dumps({k: r[k] for k in ("arch", "compression", "write_s", "read_s", "bytes", "raw_bytes")}),
                      flush=True)
                results.append(r)
    machine = f"{platform.machine()}, {torch.get_num_threads()} torch threads, h5py {__import__('h5py').__version__}"
    print(f"\n{machine}; chunk_rows {args.chunk_rows}; median of {args.repeats}\n")
    print("| arch | rows x (features + logits) | compression | write (s) | read (s) | size (MB) | ratio |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['arch']} | {r['rows']} x ({r['feature_dim']} + {r['classes']}) | {r['compression']} | "
              f"{r['write_s']:.3f} | {r['read_s']:.3f} | {r['bytes'] / 1e6:.2f} | {r['raw_bytes'] / r['bytes']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "args": {k: str(v) for k, v in vars(args).items()},
                                         "results": results}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
