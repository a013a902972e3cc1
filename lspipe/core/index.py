"""The index of a streamed dataset: an ImageFolder tree read where it lies, listed once (torch-free).

The resident path (:mod:`lspipe.core.data`) decodes a whole dataset into one uint8 array; ImageNet at
224 px would be about 190 GB. A streamed dataset is prepared into an index instead, and read image by
image by the loader (:mod:`lspipe.core.stream`, which builds the index: :func:`lspipe.core.stream.build_index`
decodes a sample of images for the channel statistics).

**The index** (:class:`StreamIndex`, :func:`write_index`, :func:`load_index`) is the prepared artefact: one
small file listing every image (path relative to the root, class label, size, modification time), the
splits as rows of that list (:func:`split_rows`), the training split's per-channel mean and standard
deviation, and a checksum over (relative path, size, mtime) of every image file under the root and, for a
tree small enough to be watched by content (:func:`watch_kind`, the workflow's limit), over each file's
SHA-256 too, so a changed tree (a changed image, even one that kept its size and modification time) changes
the index, and everything made from it reruns. The tree is read by the resident path's scanner
(:func:`lspipe.core.data.scan_tree`: class order, hidden-file rules, links), and the seeded, stratified
validation split carved from ``train/`` (and the test split carved from a tree with ``train/`` alone) is the
resident path's too: on the same tree, with the same settings, the splits hold the same images in the same
order as the resident path's ``.npz`` (its ``y_<split>`` and ``i_<split>``). The one difference: a folder
reached twice (a symlink loop, a second link to it), which the resident path skips with a warning, is
refused here with an error naming both paths; a file reached twice (a symbolic or hard link) is refused by
both.

**Resident or streaming** (:func:`choose_storage`): ``datasets.<name>.storage`` is ``resident``,
``streaming`` or ``auto``; ``auto`` streams an ImageFolder tree whose uint8 array at ``image_size`` (all
splits, as the resident ``.npz`` holds them) would exceed ``streaming.resident_max_gb``.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from lspipe.base import defaults
from lspipe.base.errors import DataError
from lspipe.base.io import atomic_path, file_sha256
from lspipe.core import survey
from lspipe.core.data import (SPLITS, ClassNames, content_digest, limit_per_class, savez_deterministic, scan_tree,
                              stratified_split)


INDEX_FORMAT = 1
STORAGE = ("auto", "resident", "streaming")
SYNSET_FILES = ("LOC_synset_mapping.txt",)  # ImageNet's "n01440764 tench, Tinca tinca" lines


# --------------------------------------------------------------------------- scanning a tree


def scan(root: str | os.PathLike) -> tuple[list[str], dict[str, list[tuple[str, int, int, int]]], list[str]]:
    """(classes, {folder split: [(path, label, size, mtime_ns)]}, broken links) of the tree at ``root``:
    :func:`lspipe.core.data.scan_tree`, the resident path's scanner, with the streaming path's rule
    that a folder reached twice is refused; broken links are listed apart."""
    tree = scan_tree(root, on_revisit="refuse")
    return tree.classes, {s: [r for r in recs if r[2] >= 0] for s, recs in tree.splits.items()}, tree.missing


def rel_path(path: str, root: str) -> str:
    """``path`` relative to ``root`` (the scan joins paths onto the root: a slice, not os.path.relpath)."""
    prefix = root.rstrip(os.sep) + os.sep
    return path[len(prefix):] if path.startswith(prefix) else os.path.relpath(path, root)


def _checksum(records: Sequence[tuple[str, int, int]], root: str, hashes: Sequence[str] | None = None) -> str:
    h = hashlib.sha256()
    for i, (path, size, mtime) in enumerate(records):
        line = f"{rel_path(path, root)}\t{size}\t{mtime}" + (f"\t{hashes[i]}" if hashes is not None else "")
        h.update((line + "\n").encode("utf-8", "surrogateescape"))  # a file name need not be UTF-8
    return h.hexdigest()


def watch_kind(records: Sequence[tuple[str, int, int]]) -> str:
    """How an index watches its tree: "content" (each file's SHA-256 enters its checksum) when the tree's
    image files take at most :data:`lspipe.core.survey.CONTENT_DIGEST_MAX_BYTES`, as the workflow's
    source digest does, else "stat" (paths, sizes and modification times only)."""
    return "content" if sum(max(size, 0) for _, size, _ in records) <= survey.CONTENT_DIGEST_MAX_BYTES else "stat"


def _content_hashes(records: Sequence[tuple[str, int, int]]) -> list[str]:
    out = []
    for path, size, _ in records:
        try:
            out.append(file_sha256(path) if size >= 0 else "missing")
        except OSError:  # removed or unreadable since the scan: the decoder reports it
            out.append("unreadable")
    return out


def _tree_checksum(found: dict, missing: Sequence[str], root: str, watch: str | None) -> str:
    records = _checksum_records(found, missing)
    watch = watch_kind(records) if watch is None else watch
    return _checksum(records, root, _content_hashes(records) if watch == "content" else None)


def tree_checksum(root: str | os.PathLike, watch: str | None = None) -> str:
    """sha256 over (relative path, size, mtime in ns) of every image file of the tree, in scan
    order, broken links included (as size -1), and with ``watch`` "content" each file's SHA-256
    too (None: :func:`watch_kind` decides by the tree's size): the ``checksum`` an index of this tree
    records (its ``meta["watch"]`` says which kind)."""
    _, found, missing = scan(root)
    return _tree_checksum(found, missing, str(root), watch)


def _checksum_records(found: dict, missing: Sequence[str]) -> list[tuple[str, int, int]]:
    recs = [(p, size, mtime) for split in ("train", "test", "val") for p, _, size, mtime in found.get(split, [])]
    return recs + [(p, -1, -1) for p in missing]


# --------------------------------------------------------------------------- the index


@dataclass
class StreamIndex(ClassNames):
    """A streamed dataset: the image list of a tree and its splits (the ``.npz`` of the resident
    path without the pixels). ``classes``, ``mean``, ``std``, ``meta``, ``num_classes``,
    ``image_shape``, ``y[split]``, ``index[split]`` and ``class_index`` are those of
    :class:`lspipe.core.data.Prepared`, so code that builds a model or reads labels takes either.

    The image list is one table (rows): ``paths`` (UTF-8 paths relative to ``root``, joined, cut
    at ``offsets``), ``labels``, ``sizes``, ``mtimes`` (ns). ``rows[split]`` are the rows of a
    split in order; ``index[split]`` each image's position in its source split (as ``i_<split>``
    of the resident file).
    """

    root: str
    paths: np.ndarray
    offsets: np.ndarray
    labels: np.ndarray
    sizes: np.ndarray
    mtimes: np.ndarray
    rows: dict[str, np.ndarray]
    index: dict[str, np.ndarray]
    classes: list[str]
    mean: np.ndarray
    std: np.ndarray
    meta: dict
    y: dict[str, np.ndarray] = field(init=False)
    digest: str = ""  # content digest of the index file (:func:`lspipe.core.data.content_digest`); "" when built in memory

    def __post_init__(self):
        self.y = {s: self.labels[r].astype(np.int64) for s, r in self.rows.items()}

    @property
    def image_shape(self) -> tuple[int, int, int]:
        s = int(self.meta["image_size"])
        return (int(self.meta["channels"]), s, s)

    def path(self, row: int) -> str:
        """The absolute path of table row ``row``."""
        rel = os.fsdecode(self.paths[self.offsets[row]:self.offsets[row + 1]].tobytes())
        return os.path.join(self.root, rel)

    def split_paths(self, split: str) -> list[str]:
        return [self.path(r) for r in self.rows[split]]


def pack_paths(paths: Sequence[str], root: str) -> tuple[np.ndarray, np.ndarray]:
    enc = [os.fsencode(rel_path(p, root)) for p in paths]  # a file name need not be UTF-8 (surrogate escapes kept)
    offsets = np.zeros(len(enc) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(e) for e in enc])
    return np.frombuffer(b"".join(enc), dtype=np.uint8).copy(), offsets


def read_tree(root: str, name: str, skip_unreadable: bool) -> tuple[list[str], dict, list[str], str, str]:
    """The tree at ``root`` (absolute) scanned (:func:`scan`): ``(classes, found, missing, watch, checksum)``; a
    broken link is an error unless ``skip_unreadable`` (``datasets.<name>.skip_unreadable``)."""
    classes, found, missing = scan(root)
    watch = watch_kind(_checksum_records(found, missing))
    checksum = _tree_checksum(found, missing, root, watch)
    if missing and not skip_unreadable:
        raise DataError(
            f"cannot read image {missing[0]} (a broken link); replace or delete it, or set "
            f"datasets.{name}.skip_unreadable: true to skip unreadable images with a warning"
        )
    return classes, found, missing, watch, checksum


def split_rows(split_of: np.ndarray, labels: np.ndarray, classes: Sequence[str], root: str, folders: Sequence[str], *,
               name: str, val_size, test_size, split_seed: int, train_per_class: int | None):
    """The splits of an indexed tree, as :func:`lspipe.core.data.prepare` makes them of the same tree: each
    table row's folder (``split_of``: train, test, val; ``folders``: the tree's) and label in, ``(rows, index,
    has_val, carved)`` out:
    ``rows[split]`` the table rows of a split in order, ``index[split]`` each image's position in its source
    split; ``has_val`` whether the tree has a ``val/`` folder of its own, ``carved`` whether the test split was
    carved from ``train/`` (a tree without ``test/``). A class folder left without a readable image is an error."""
    for split in folders:
        counts = np.bincount(labels[split_of == split], minlength=len(classes))
        if not counts.all():
            raise DataError(f"no readable images left in class folder(s) "
                            f"{', '.join(os.path.join(root, split, c) for c, n in zip(classes, counts) if not n)}")
    folder_rows = {s: np.flatnonzero(split_of == s) for s in ("train", "test", "val") if s in folders}
    ytr = labels[folder_rows["train"]]
    carved = "test" not in folder_rows
    if carved:  # train/ alone: the test split carved from it first, as the resident path carves it
        base, test_pos = stratified_split(ytr, test_size, split_seed, f"datasets.{name}.test_size")
    else:
        base, test_pos = np.arange(len(ytr)), np.arange(len(folder_rows["test"]))
    keep = base[limit_per_class(ytr[base], train_per_class, split_seed)]
    if "val" in folder_rows:  # a validation split of its own (val/ beside test/): nothing carved
        pos = {"train": keep, "val": np.arange(len(folder_rows["val"])), "test": test_pos}
        src = {"train": "train", "val": "val", "test": "test"}
    else:
        tr, va = stratified_split(ytr[keep], val_size, split_seed, f"datasets.{name}.val_size")
        pos = {"train": keep[tr], "val": keep[va], "test": test_pos}
        src = {"train": "train", "val": "train", "test": "train" if carved else "test"}
    rows = {s: folder_rows[src[s]][pos[s]].astype(np.int64) for s in SPLITS}
    index = {s: pos[s].astype(np.int64) for s in SPLITS}
    return rows, index, "val" in folder_rows, carved


def synset_names(root: str, classes: Sequence[str]) -> dict[str, str] | None:
    """Display names of WordNet-id class folders from ``LOC_synset_mapping.txt`` at the root
    (ImageNet's "n01440764 tench, Tinca tinca" lines: the first name is kept), if it is there."""
    for fname in SYNSET_FILES:
        p = Path(root) / fname
        if p.is_file():
            names = {}
            for line in p.read_text().splitlines():
                wnid, _, rest = line.strip().partition(" ")
                if wnid in classes:
                    names[wnid] = rest.split(",")[0].strip()
            return names
    return None


def write_index(path: str | os.PathLike, idx: StreamIndex) -> None:
    """Write ``idx`` atomically (a deterministic, deflated ``.npz``: the same index gives the same
    bytes; ImageNet's 1.33M images take about 25 MB)."""
    arrays = {
        "paths": idx.paths, "offsets": idx.offsets, "labels": idx.labels, "sizes": idx.sizes, "mtimes": idx.mtimes,
        "classes": np.asarray(idx.classes), "mean": idx.mean, "std": idx.std, "meta": np.asarray(json.dumps(idx.meta)),
    }
    for s in SPLITS:
        arrays[f"rows_{s}"] = idx.rows[s]
        arrays[f"i_{s}"] = idx.index[s]
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        savez_deterministic(fh, arrays, compress=True)


def load_index(path: str | os.PathLike, root: str | os.PathLike | None = None) -> StreamIndex:
    """Read an index written by :func:`write_index`. ``root`` overrides the recorded root (a tree
    moved, or mounted elsewhere on a cluster's nodes)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"dataset index {path} does not exist; build it with `snakemake {path}`")
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if meta.get("format") != INDEX_FORMAT:
                raise ValueError(f"index format {meta.get('format')!r}, expected {INDEX_FORMAT}")
            return StreamIndex(
                str(root) if root is not None else meta["root"], z["paths"], z["offsets"], z["labels"], z["sizes"],
                z["mtimes"], {s: z[f"rows_{s}"] for s in SPLITS}, {s: z[f"i_{s}"] for s in SPLITS},
                [str(c) for c in z["classes"]], z["mean"], z["std"], meta, digest=content_digest(path),
            )
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, KeyError) as err:
        raise DataError(
            f"dataset index {path} is damaged ({' '.join(f'{type(err).__name__}: {err}'.split())}); "
            f"rebuild it with `snakemake -f {path}`"
        ) from None


# --------------------------------------------------------------------------- resident or streaming


def resident_bytes(images: int, channels: int, image_size: int) -> int:
    """Bytes of the resident path's uint8 array of ``images`` images at ``image_size``."""
    return int(images) * int(channels) * int(image_size) ** 2


def count_images(root: str | os.PathLike) -> int:
    """Image files of an ImageFolder tree, every split (the files the resident path would decode)."""
    _, found, missing = scan(root)
    return sum(len(v) for v in found.values()) + len(missing)


def choose_storage(name: str, dataset: dict, resident_max_gb: float | None = None,
                   images: int | None = None) -> tuple[str, str]:
    """("resident" or "streaming", why) for ``datasets.<name>`` (its config entry, defaults filled or
    not). ``storage: auto`` streams an ImageFolder tree whose resident uint8 array would exceed
    ``resident_max_gb`` (default: the schema's ``streaming.resident_max_gb``); ``images`` saves
    counting the tree's files."""
    storage = dataset.get("storage", defaults.default("datasets.*.storage"))
    source = dataset["source"]
    if storage not in STORAGE:
        raise DataError(f"datasets.{name}.storage is {storage!r}; allowed: {', '.join(STORAGE)}")
    if source != "imagefolder":
        if storage == "streaming":
            raise DataError(f"datasets.{name}.storage: streaming needs source imagefolder (a tree of image files), "
                            f"not {source!r}; set storage: resident or auto")
        return "resident", f"source {source} is always resident"
    if storage != "auto":
        return storage, f"datasets.{name}.storage is {storage}"
    limit = defaults.default("streaming.resident_max_gb") if resident_max_gb is None else resident_max_gb
    size = dataset.get("image_size", defaults.default("datasets.*.image_size"))
    channels = dataset.get("channels", defaults.default("datasets.*.channels"))
    n = count_images(dataset.get("root")) if images is None else images
    gb = resident_bytes(n, channels, size) / 1e9
    choice = "streaming" if gb > limit else "resident"
    return choice, (f"{n} images at {channels}x{size}x{size} are {gb:.3g} GB as uint8, "
                    f"{'above' if choice == 'streaming' else 'within'} streaming.resident_max_gb = {limit:g}")
