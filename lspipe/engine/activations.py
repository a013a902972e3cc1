"""``lspipe dump-activations``: a trained model's penultimate activations and logits on every split,
written to one dump file (:mod:`lspipe.engine.dumpfile` holds the layout, the writer and the reader).

The dump holds a (capped, seeded) random subset of the training split, the whole validation and
test splits, and the logits of the whole training split (``/train_full``, for gamma of Fig. 5),
all computed in float32 (:func:`lspipe.core.inference.predict`).

A streamed dataset (:class:`lspipe.core.index.StreamIndex`) is decoded a batch at a time (the
evaluation view, :func:`lspipe.core.source.eval_batches`) while the dump is written, so no split is
ever in memory (ImageNet's 50,000 validation images); its dump leaves out ``/train_full`` (ImageNet's
1.28M x 1000 logits would be 5 GB, for gamma of Fig. 5 only) and says so in its attributes
(``train_full: omitted``), and :meth:`lspipe.engine.dumpfile.Dump.full_train` refuses it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from lspipe.base.defaults import default
from lspipe.base.io import file_sha256, remove_stale_temps
from lspipe.base.progress import progress_bar
from lspipe.core import source
from lspipe.core.data import SPLITS, Prepared
from lspipe.core.inference import predict, resolve_device, setup_torch
from lspipe.core.models import check_identity, load_model
from lspipe.core.index import StreamIndex
from lspipe.engine import complete
from lspipe.engine.dumpfile import write_h5


class StreamedRows:
    """The ``rows(start, stop)`` of one split of a streamed dataset for :func:`write_h5`: the features
    and logits of ``positions[start:stop]``, taken in order from one pass of evaluation batches
    (each call consumes the batches it needs; a batch straddling two calls is split)."""

    def __init__(self, model, idx: StreamIndex, split: str, positions: np.ndarray, device, batch_size: int,
                 loader: dict | None = None):
        self.model, self.device, self.done, self.total = model, device, 0, len(positions)
        self.batches = source.eval_batches(idx, split, batch_size, positions=positions, device=device,
                                           **source.loader_settings(loader))
        self.feats: list[np.ndarray] = []
        self.logits: list[np.ndarray] = []

    def __call__(self, start: int, stop: int):
        if start != self.done:
            raise ValueError(f"rows are read in order: expected rows from {self.done}, asked for {start}")
        while sum(len(v) for v in self.logits) < stop - start:
            x, _, _ = next(self.batches)
            logits, feats = predict(self.model, x, self.device, batch_size=len(x), features=True)
            self.logits.append(logits.numpy())
            self.feats.append(feats.numpy())
        logits, feats = np.concatenate(self.logits), np.concatenate(self.feats)
        n = stop - start
        self.logits, self.feats, self.done = [logits[n:]], [feats[n:]], stop
        if stop == self.total:
            self.batches.close()  # the split is done: its loader's workers end now
        return feats[:n], logits[:n]


def write_dump(
    path: str | Path,
    model: torch.nn.Module,
    data: Prepared | StreamIndex,
    *,
    device: torch.device | str = "cpu",
    attrs: dict | None = None,
    max_train: int | None = None,
    seed: int = 0,
    chunk_rows: int = default("dump.chunk_rows"),
    compression: str = default("dump.compression"),
    eval_batch_size: int = default("streaming.eval_batch_size"),
    stream_loader: dict | None = None,
    progress: bool = False,
) -> None:
    """Evaluate ``model`` on every split and write the dump atomically (a streamed dataset: batches of
    ``eval_batch_size`` images decoded by the loader ``stream_loader`` describes, no ``/train_full``);
    ``progress``: report the rows written (lspipe.base.progress)."""
    streamed = source.is_streamed(data)
    splits = {}
    for split in SPLITS:
        idx = np.arange(len(data.y[split]))
        if split == "train" and max_train and max_train < len(idx):
            idx = np.sort(np.random.default_rng(seed).choice(idx, size=max_train, replace=False))

        def rows(start: int, stop: int, split=split, idx=idx):
            logits, feats = predict(model, data.x[split][idx[start:stop]], device, batch_size=stop - start, features=True)
            return feats.numpy(), logits.numpy()

        if streamed:
            rows = StreamedRows(model, data, split, idx, device, eval_batch_size, stream_loader)
        splits[split] = (data.y[split][idx], idx.astype(np.int64), rows)

    def full_rows(start: int, stop: int):  # logits of the whole training split, no features
        return None, predict(model, data.x["train"][start:stop], device, batch_size=stop - start).numpy()

    n_train = len(data.y["train"])
    attrs = {**(attrs or {}), "train_size": n_train, "storage": "streaming" if streamed else "resident"}
    if streamed:
        attrs["train_full"] = "omitted"  # see the module's docstring
    else:
        splits["train_full"] = (data.y["train"], np.arange(n_train, dtype=np.int64), full_rows)
    names = (data.meta.get("class_names") or {}) if streamed else {}
    if names:  # display names of WordNet-id classes (the index's LOC_synset_mapping.txt)
        attrs["class_names"] = json.dumps(names, sort_keys=True)
    bar = progress_bar(total=sum(len(s[1]) for s in splits.values()), desc="dump", unit="rows", disable=not progress)

    def counted(rows_of):
        def rows(start: int, stop: int):
            out = rows_of(start, stop)
            bar.update(stop - start)
            return out
        return rows

    with bar:
        write_h5(
            path, classes=data.classes, weight=model.classifier.weight.detach().float().cpu().numpy(),
            bias=model.classifier.bias.detach().float().cpu().numpy(),
            splits={k: (y, i, counted(r)) for k, (y, i, r) in splits.items()}, attrs=attrs,
            chunk_rows=chunk_rows, compression=compression,
        )


def cmd_dump(a):
    remove_stale_temps(a.out)  # left by a killed run (SIGKILL during the write)
    setup_torch(a.threads)
    device = resolve_device(a.device)
    data = source.load(a.data)
    model, meta = load_model(a.model, device)
    # the model its place (dataset, arch, role, run), data and config (recipe, objective, seed) say
    check_identity(a.model, meta, data, expect=getattr(a, "expect", None))
    attrs = {
        "model": str(a.model), "sha256": file_sha256(a.model), "dataset": meta["dataset"], "arch": meta["arch"],
        "role": meta["role"], "run": meta["run"], "alpha": meta["alpha"], "seed": meta["seed"],
        "meta": json.dumps(meta, default=str), "device_type": device.type,
    }
    for k in ("teacher_alpha", "temperature", "beta", "form", "data_digest"):
        if k in meta:
            attrs[k] = meta[k]
    write_dump(a.out, model, data, device=device, attrs=attrs, max_train=a.max_train, seed=a.seed,
               chunk_rows=a.chunk_rows, compression=a.compression,
               eval_batch_size=getattr(a, "eval_batch_size", default("streaming.eval_batch_size")),
               stream_loader=getattr(a, "stream_loader", None), progress=getattr(a, "progress", False))
    complete.release(a.model)  # the model is accepted (Snakemake ran a job reading it): a forced rebuild retrains
    print(f"dumped {a.model} -> {a.out}")
