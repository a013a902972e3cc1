"""Activation dumps: one HDF5 file per trained model.

Layout::

    /                      attrs: model, dataset, arch, role, alpha, seed, checkpoint, sha256, ...
    /classes               class names (UTF-8 strings)
    /classifier/weight     K x D last-layer weights     /classifier/bias   K
    /<split>/features      N x D penultimate activations (float32)
    /<split>/logits        N x K logits (float32)
    /<split>/labels        N (int64)        /<split>/index   N (index into the prepared split)

for the splits ``train`` (optionally capped, seeded, stratified-free random subset), ``val`` and
``test``, plus::

    /train_full/logits     N_train x K logits of the *whole* training split (float32)
    /train_full/labels     N_train          /train_full/index   N_train

(logits only, no features: one more forward pass over the training split, so that the smoothness
index gamma of Fig. 5 averages over the whole training set, not the capped subset; the root
attribute ``train_size`` is N_train). Datasets are chunked by rows and written one whole chunk-aligned block at a time; the
compression filter is configurable (see ``docs/benchmarks.md`` for the measured trade-off).
:class:`Dump` reads a file once into numpy arrays for the analyses.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import h5py
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from lspipe.core.data import SPLITS, DataError, Prepared
from lspipe.base.io import atomic_path

COMPRESSIONS = ("lzf", "gzip", "none")


# --------------------------------------------------------------------------- inference


@contextlib.contextmanager
def full_float32(device_type: str = "cpu"):
    """Plain float32 arithmetic inside the block: no autocast, and no TF32 in CUDA matmuls and
    convolutions (PyTorch allows TF32 in cuDNN convolutions by default); restores the flags."""
    flags = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        with torch.autocast(device_type=device_type, enabled=False):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags


@torch.no_grad()
def predict(
    model: nn.Module, x: np.ndarray | torch.Tensor, device: torch.device | str, batch_size: int = 1000,
    features: bool = False,
):
    """Logits (and penultimate features) for ``x`` in eval mode, batched, as float32 CPU tensors.

    Always in float32 on every device (:func:`full_float32`: no bf16 autocast, no TF32), whatever
    precision training used: the dumps feed ECE, temperature scaling, gamma and the projections,
    and the per-epoch validation metrics use the same path.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    xt = torch.as_tensor(x)
    outs, feats = [], []
    for s in range(0, len(xt), batch_size):
        xb = xt[s : s + batch_size].to(device, non_blocking=True)
        with full_float32(device.type):
            out = model(xb, features=True) if features else model(xb)
        if features:
            outs.append(out[0].float().cpu())
            feats.append(out[1].float().cpu())
        else:
            outs.append(out.float().cpu())
    model.train(was_training)
    logits = torch.cat(outs) if outs else torch.empty(0)
    return (logits, torch.cat(feats)) if features else logits


def evaluate_logits(logits: torch.Tensor, labels: torch.Tensor | np.ndarray) -> dict:
    labels = torch.as_tensor(labels)
    return {
        "accuracy": float((logits.argmax(1) == labels).float().mean()),
        "nll": float(F.cross_entropy(logits, labels)),
        "n": int(len(labels)),
    }


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _filter(compression: str) -> dict:
    if compression not in COMPRESSIONS:
        raise ValueError(f"unknown HDF5 compression {compression!r}; allowed: {', '.join(COMPRESSIONS)}")
    if compression == "none":
        return {}
    if compression == "gzip":
        return {"compression": "gzip", "compression_opts": 4, "shuffle": True}
    return {"compression": "lzf", "shuffle": True}


def write_dump(
    path: str | Path,
    model: torch.nn.Module,
    data: Prepared,
    *,
    device: torch.device | str = "cpu",
    attrs: dict | None = None,
    max_train: int | None = None,
    seed: int = 0,
    chunk_rows: int = 1024,
    compression: str = "gzip",
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


RowSource = Callable[[int, int], tuple[np.ndarray, np.ndarray]]


@contextlib.contextmanager
def _h5_write_errors(path):
    """HDF5 reports a refused write (full disk, ...) as an OSError, and closing the file after it as a
    RuntimeError naming the errno: both become one :class:`lspipe.base.io.WriteError` naming ``path``."""
    from lspipe.base.io import write_error

    try:
        yield
    except RuntimeError as err:
        if isinstance(err.__context__, OSError) or "errno =" in str(err):
            raise write_error(Path(path), err.__context__ if isinstance(err.__context__, OSError) else err) from None
        raise


def write_h5(
    path: str | Path,
    *,
    classes: Sequence[str],
    weight: np.ndarray,
    bias: np.ndarray,
    splits: dict[str, tuple[np.ndarray, np.ndarray, RowSource]],
    attrs: dict | None = None,
    chunk_rows: int = 1024,
    compression: str = "gzip",
) -> None:
    """Write a dump file atomically (the layout in the module docstring).

    ``splits[name] = (labels, index, rows)`` where ``rows(start, stop)`` returns the
    ``(features, logits)`` of rows ``start:stop`` (features None: a logits-only group); it is called once per block of whole chunks,
    so every write is chunk-aligned and at most one block is held in memory.
    """
    flt = _filter(compression)
    with atomic_path(path) as tmp, _h5_write_errors(path), h5py.File(tmp, "w") as f:
        for k, v in (attrs or {}).items():
            f.attrs[k] = v if v is not None else "none"
        f.create_dataset("classes", data=np.asarray(list(classes), dtype=object), dtype=h5py.string_dtype())
        f["classifier/weight"] = np.asarray(weight, dtype=np.float32)
        f["classifier/bias"] = np.asarray(bias, dtype=np.float32)
        for split, (labels, idx, rows_of) in splits.items():
            n = len(idx)
            rows = max(1, min(chunk_rows, n))
            g = f.create_group(split)
            feat_ds = logit_ds = None
            g.create_dataset("labels", data=np.asarray(labels, dtype=np.int64), chunks=(rows,), **flt)
            g.create_dataset("index", data=np.asarray(idx, dtype=np.int64), chunks=(rows,), **flt)
            block = rows * max(1, 8192 // rows)  # a whole number of chunks per write
            for s in range(0, n, block):
                e = min(n, s + block)
                feats, logits = rows_of(s, e)
                if logit_ds is None:
                    if feats is not None:
                        feat_ds = g.create_dataset("features", (n, feats.shape[1]), "f4", chunks=(rows, feats.shape[1]), **flt)
                    logit_ds = g.create_dataset("logits", (n, logits.shape[1]), "f4", chunks=(rows, logits.shape[1]), **flt)
                if feat_ds is not None:
                    feat_ds[s:e] = feats
                logit_ds[s:e] = logits


@dataclass
class SplitArrays:
    features: np.ndarray
    logits: np.ndarray
    labels: np.ndarray
    index: np.ndarray


def damaged_file_error(path: str | Path, err: Exception) -> DataError:
    """One line naming a damaged (truncated, incomplete) output file and how to rebuild it."""
    why = " ".join(f"{type(err).__name__}: {err}".split())
    return DataError(f"cannot read {path} ({why}); the file is damaged or incomplete: delete it or rebuild it "
                     f"with `snakemake -f {path}`")


class Dump:
    """Read access to a dump file: ``Dump(path).split("val").logits`` etc. (each split read once)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            with h5py.File(self.path, "r") as f:
                self.attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
                self.classes = [c.decode() if isinstance(c, bytes) else str(c) for c in f["classes"][()]]
                self.weight = f["classifier/weight"][()]
                self.bias = f["classifier/bias"][()]
                self.splits = [s for s in SPLITS if s in f]
        except (OSError, KeyError) as err:
            raise damaged_file_error(self.path, err) from None
        self._cache: dict[str, SplitArrays] = {}

    def split(self, name: str) -> SplitArrays:
        if name not in self._cache:
            if name not in self.splits:
                raise DataError(f"dump {self.path} has no split {name!r} (it has {', '.join(self.splits) or 'none'}): "
                                f"it is incomplete or not a dump of this version; rebuild it with `snakemake -f {self.path}`")
            try:
                with h5py.File(self.path, "r") as f:
                    g = f[name]
                    self._cache[name] = SplitArrays(
                        g["features"][()], g["logits"][()], g["labels"][()], g["index"][()]
                    )
            except (OSError, KeyError) as err:
                raise damaged_file_error(self.path, err) from None
        return self._cache[name]

    def full_train(self) -> tuple[np.ndarray, np.ndarray, int]:
        """``(logits, labels, train_size)`` of the whole training split (``/train_full``); a dump
        from before that group existed gives its (possibly capped) ``train`` split instead, and
        ``train_size`` then tells how many examples the split really has (0: unknown)."""
        try:
            with h5py.File(self.path, "r") as f:
                if "train_full" in f:
                    g = f["train_full"]
                    logits, labels = g["logits"][()], g["labels"][()]
                    return logits, labels, int(self.attrs.get("train_size", len(labels)))
        except (OSError, KeyError) as err:
            raise damaged_file_error(self.path, err) from None
        if "train_size" in self.attrs:  # written by a version that always writes /train_full: the group was lost
            raise DataError(f"dump {self.path} has no /train_full group although it records train_size: it is "
                            f"incomplete; rebuild it with `snakemake -f {self.path}`")
        s = self.split("train")
        return s.logits, s.labels, int(self.attrs.get("train_size", 0))

    def class_index(self, name: str) -> int:
        if name not in self.classes:
            raise KeyError(f"unknown class {name!r} in {self.path}; classes are: {', '.join(self.classes)}")
        return self.classes.index(name)

    def meta(self, key: str, default=None):
        v = self.attrs.get(key, default)
        if isinstance(v, bytes):
            v = v.decode()
        return v


def evaluation(dump: Dump) -> dict:
    """Accuracy and NLL on the validation and test splits of a dump."""
    out = {"model": {k: dump.meta(k) for k in ("dataset", "arch", "role", "alpha", "seed", "run")}}
    if "form" in dump.attrs:  # a distilled student: its distillation form (lspipe.core.losses.FORMS)
        out["model"]["form"] = dump.meta("form")
    for split in ("val", "test"):
        s = dump.split(split)
        out[split] = evaluate_logits(torch.from_numpy(s.logits), torch.from_numpy(s.labels))
    return out


# --------------------------------------------------------------------------- command line


def cmd_dump(a):
    from lspipe.core import data as data_mod
    from lspipe.cli import setup_torch
    from lspipe.base.io import remove_stale_temps
    from lspipe.core.models import check_identity, load_model
    from lspipe.engine.training import resolve_device

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
    from lspipe.engine import complete

    complete.release(a.model)  # the model is accepted (Snakemake ran a job reading it): a forced rebuild retrains
    print(f"dumped {a.model} -> {a.out}")


def cmd_evaluate(a):
    from lspipe.base.io import write_json

    ev = evaluation(Dump(a.dump))
    write_json(a.out, ev)
    print(json.dumps(ev))


def add_cli(sub) -> None:
    """``lspipe dump-activations`` (activations and logits to HDF5) and ``lspipe evaluate`` (accuracy and NLL of a dump)."""
    from lspipe.base.defaults import default

    s = sub.add_parser("dump-activations", aliases=["dump"], help="dump penultimate activations and logits to HDF5")
    s.add_argument("--model", required=True)
    s.add_argument("--data", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--max-train", type=int, default=default("dump.max_train"), help="0: all")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--chunk-rows", type=int, default=default("dump.chunk_rows"))
    s.add_argument("--compression", default=default("dump.compression"))
    s.add_argument("--device", default=default("device"))
    s.add_argument("--threads", type=int, default=None)
    s.set_defaults(func=cmd_dump)

    s = sub.add_parser("evaluate", help="accuracy and NLL on val/test from a dump")
    s.add_argument("--dump", required=True)
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_evaluate)
