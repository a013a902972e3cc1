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
attribute ``train_size`` is N_train). A streamed dataset's dump has no ``/train_full`` (root
attributes ``storage: streaming``, ``train_full: omitted``; :meth:`Dump.full_train` says why), and
``class_names`` (JSON, class -> display name) when its index names WordNet-id classes. Datasets are chunked by rows and written one whole chunk-aligned block at a time; the
compression filter is configurable (see ``docs/benchmarks.md`` for the measured trade-off).
:func:`write_h5` writes a file, :class:`Dump` reads one once into numpy arrays for the analyses.
This module is the file format only (h5py and numpy, no torch); running a model over the splits
into a dump is :mod:`lspipe.engine.activations`.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import h5py
import numpy as np

from lspipe.base.defaults import default
from lspipe.base.errors import DataError, damaged_file_error
from lspipe.base.io import GuardedFile, atomic_path, write_error
from lspipe.base.runs import record_objective
from lspipe.core.data import SPLITS

COMPRESSIONS = ("lzf", "gzip", "none")


def _filter(compression: str) -> dict:
    if compression not in COMPRESSIONS:
        raise ValueError(f"unknown HDF5 compression {compression!r}; allowed: {', '.join(COMPRESSIONS)}")
    if compression == "none":
        return {}
    if compression == "gzip":
        return {"compression": "gzip", "compression_opts": 4, "shuffle": True}
    return {"compression": "lzf", "shuffle": True}


RowSource = Callable[[int, int], tuple[np.ndarray, np.ndarray]]


@contextlib.contextmanager
def _h5_write_errors(path):
    """HDF5 reports a refused write (full disk, ...) as an OSError, and closing the file after it as a
    RuntimeError naming the errno: both become one :class:`lspipe.base.errors.WriteError` naming ``path``."""
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
    chunk_rows: int = default("dump.chunk_rows"),
    compression: str = default("dump.compression"),
) -> None:
    """Write a dump file atomically (the layout in the module docstring).

    ``splits[name] = (labels, index, rows)`` where ``rows(start, stop)`` returns the
    ``(features, logits)`` of rows ``start:stop`` (features None: a logits-only group); it is called once per block of whole chunks,
    so every write is chunk-aligned and at most one block is held in memory.
    """
    flt = {**_filter(compression), "fletcher32": True}  # every chunk checksummed, verified on every read
    with atomic_path(path) as tmp, _h5_write_errors(path):
        out = GuardedFile(tmp)  # a refused write (full disk, ulimit -f): one error, a clean close, no crash
        try:
            with h5py.File(out, "w") as f:
                _write(f, out, path, classes, weight, bias, splits, attrs, chunk_rows, flt)
        except Exception:
            if out.error is None:
                raise  # not a refused write
            # else HDF5 tripped over the writes it lost (an address past the end): the refused write is the cause
        finally:
            out.close()
        if out.error is not None:
            raise write_error(Path(path), out.error)


def _write(f, out: GuardedFile, path, classes, weight, bias, splits, attrs, chunk_rows: int, flt: dict) -> None:
    def check():  # stop at the first refused write (the file is discarded)
        if out.error is not None:
            raise write_error(Path(path), out.error)

    for k, v in (attrs or {}).items():
        f.attrs[k] = v if v is not None else "none"
    f.create_dataset("classes", data=np.asarray(list(classes), dtype=object), dtype=h5py.string_dtype())
    f.attrs[INTEGRITY] = _integrity(f)
    f.create_dataset("classifier/weight", data=np.asarray(weight, dtype=np.float32), chunks=True, fletcher32=True)
    f.create_dataset("classifier/bias", data=np.asarray(bias, dtype=np.float32), chunks=True, fletcher32=True)
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
            f.flush()
            check()


# The root attribute holding the SHA-256 of the other root attributes and the class names (as read back:
# HDF5 checksums no attribute and no variable-length string; the arrays carry Fletcher-32 checksums).
INTEGRITY = "integrity"


def _plain(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    return value.item() if hasattr(value, "item") else value


def _integrity(f) -> str:
    """The SHA-256 of an open dump's root attributes (but :data:`INTEGRITY`) and class names."""
    import hashlib
    import json

    attrs = {k: _plain(v) for k, v in f.attrs.items() if k != INTEGRITY}
    classes = [_plain(c) for c in f["classes"][()]]
    return hashlib.sha256(json.dumps([attrs, classes], sort_keys=True).encode()).hexdigest()


@dataclass
class SplitArrays:
    features: np.ndarray
    logits: np.ndarray
    labels: np.ndarray
    index: np.ndarray


#: how a missing dump is made by hand (besides `snakemake <dump>`)
MAKE_DUMP = "lspipe dump-activations --model <model.pt> --data <data.npz> --out {path}"


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
                recorded = _plain(f.attrs[INTEGRITY]) if INTEGRITY in f.attrs else None  # None: an older dump
                if recorded is not None and recorded != _integrity(f):
                    raise OSError("its attributes or class names do not match their recorded checksum: a flipped bit "
                                  "or a damaged copy")
        except (OSError, KeyError) as err:
            raise damaged_file_error(self.path, err, make=MAKE_DUMP.format(path=self.path)) from None
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
        if self.meta("train_full") == "omitted":  # a streamed dataset's dump (lspipe.engine.activations)
            name = self.meta("dataset", "<name>")
            raise DataError(f"dump {self.path} has no logits of the whole training split: dataset {name!r} is streamed, "
                            "and a streamed dataset's dump leaves them out (ImageNet's would take 5 GB); gamma of "
                            f"Fig. 5 averages over them: set datasets.{name}.storage: resident for it")
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

    def objective(self) -> dict | None:
        """The objective the model was trained with: its metadata's ``objective`` (the ``meta`` attribute holds
        the model's metadata whole), for an older model the one its run name says
        (:func:`lspipe.base.runs.record_objective`)."""
        model = json.loads(self.meta("meta") or "{}")
        return record_objective({"run": self.meta("run"), "alpha": self.meta("alpha"), **model})
