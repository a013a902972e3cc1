"""``lspipe dump-activations``: a trained model's penultimate activations and logits on every split,
written to one dump file (:mod:`lspipe.engine.dumpfile` holds the layout, the writer and the reader).

The dump holds a (capped, seeded) random subset of the training split, the whole validation and
test splits, and the logits of the whole training split (``/train_full``, for gamma of Fig. 5),
all computed in float32 (:func:`lspipe.core.inference.predict`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from lspipe.base.defaults import default
from lspipe.base.io import file_sha256, remove_stale_temps
from lspipe.core import data as data_mod
from lspipe.core.data import SPLITS, Prepared
from lspipe.core.inference import predict, resolve_device, setup_torch
from lspipe.core.models import check_identity, load_model
from lspipe.engine import complete
from lspipe.engine.dumpfile import write_h5


def write_dump(
    path: str | Path,
    model: torch.nn.Module,
    data: Prepared,
    *,
    device: torch.device | str = "cpu",
    attrs: dict | None = None,
    max_train: int | None = None,
    seed: int = 0,
    chunk_rows: int = default("dump.chunk_rows"),
    compression: str = default("dump.compression"),
) -> None:
    """Evaluate ``model`` on every split and write the dump atomically."""
    splits = {}
    for split in SPLITS:
        idx = np.arange(len(data.y[split]))
        if split == "train" and max_train and max_train < len(idx):
            idx = np.sort(np.random.default_rng(seed).choice(idx, size=max_train, replace=False))

        def rows(start: int, stop: int, split=split, idx=idx):
            logits, feats = predict(model, data.x[split][idx[start:stop]], device, batch_size=stop - start, features=True)
            return feats.numpy(), logits.numpy()

        splits[split] = (data.y[split][idx], idx.astype(np.int64), rows)

    def full_rows(start: int, stop: int):  # logits of the whole training split, no features
        return None, predict(model, data.x["train"][start:stop], device, batch_size=stop - start).numpy()

    n_train = len(data.y["train"])
    splits["train_full"] = (data.y["train"], np.arange(n_train, dtype=np.int64), full_rows)
    attrs = {**(attrs or {}), "train_size": n_train}
    write_h5(
        path, classes=data.classes, weight=model.classifier.weight.detach().float().cpu().numpy(),
        bias=model.classifier.bias.detach().float().cpu().numpy(), splits=splits, attrs=attrs,
        chunk_rows=chunk_rows, compression=compression,
    )


def cmd_dump(a):
    remove_stale_temps(a.out)  # left by a killed run (SIGKILL during the write)
    setup_torch(a.threads)
    device = resolve_device(a.device)
    data = data_mod.load(a.data)
    model, meta = load_model(a.model, device)
    check_identity(a.model, meta, data)  # the model its place (dataset, arch, role, run) and data say
    attrs = {
        "model": str(a.model), "sha256": file_sha256(a.model), "dataset": meta["dataset"], "arch": meta["arch"],
        "role": meta["role"], "run": meta["run"], "alpha": meta["alpha"], "seed": meta["seed"],
        "meta": json.dumps(meta, default=str),
    }
    for k in ("teacher_alpha", "temperature", "beta", "form", "data_digest"):
        if k in meta:
            attrs[k] = meta[k]
    write_dump(a.out, model, data, device=device, attrs=attrs, max_train=a.max_train, seed=a.seed,
               chunk_rows=a.chunk_rows, compression=a.compression)
    complete.release(a.model)  # the model is accepted (Snakemake ran a job reading it): a forced rebuild retrains
    print(f"dumped {a.model} -> {a.out}")
