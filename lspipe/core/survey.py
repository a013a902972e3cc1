"""What the workflow learns of a dataset's source while it plans, before any job runs, without preparing it.

:func:`inspect_source`: the root and its split and class folders (top-level listings only, no walk of the
tree), the class names, and a warning when a few sampled images are much larger than ``image_size``.
:func:`source_digest`: a short text identifying the source files as they are now (a ``params:`` value of
``prepare_data``: a changed tree prepares the data again), with :func:`digest_files` reading the number of
files back out of it; :func:`cached_source_digest` keeps a big tree's digest while its class folders are
unchanged. The files are found as the resident path (:mod:`lspipe.core.data`) finds them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import time
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
from PIL import Image

from lspipe.base.defaults import default
from lspipe.base.errors import DataError
from lspipe.base.io import atomic_path
from lspipe.core.data import (CIFAR_FOLDERS, IMAGE_EXTENSIONS, MNIST_FILES, TORCHVISION_FOLDERS, visible_entries, layout,
                              scan_tree)


DIGITS_CLASSES = tuple(str(c) for c in range(10))  # scikit-learn's digits: target_names 0..9
# torchvision's CIFAR-10 class names (batches.meta), for a copy not downloaded yet; CIFAR-100's are read from its copy
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_CIFAR_META = {"cifar10": ("batches.meta", "label_names"), "cifar100": ("meta", "fine_label_names")}
SIZE_SAMPLE = 5  # images whose size inspect_source reads (the header only), one per sampled class folder
LARGE_IMAGES = 2.0  # inspect_source warns when the sampled images' median shorter side exceeds this x image_size


class SourceInfo(NamedTuple):
    """What :func:`inspect_source` finds of a dataset entry while the workflow plans."""

    classes: list[str] | None  # the class names, in label order; None when they cannot be known yet
    warnings: list[str]  # one line each


def _class_folders(folder: Path) -> list[str]:
    """The visible subfolders of ``folder``, sorted: an ImageFolder split's classes (no walk below them)."""
    with os.scandir(folder) as entries:
        return sorted(e.name for e in visible_entries(entries) if e.is_dir())


def _cifar_classes(source: str, folder: Path) -> list[str] | None:
    meta, key = _CIFAR_META[source]
    try:
        with open(folder / meta, "rb") as fh:
            return [str(c) for c in pickle.load(fh, encoding="latin1")[key]]
    except (OSError, KeyError, TypeError, EOFError, pickle.UnpicklingError):  # not there (yet): prepare reads it
        return list(CIFAR10_CLASSES) if source == "cifar10" else None


def _shorter_sides(train: Path, classes: Sequence[str], count: int = SIZE_SAMPLE) -> list[int]:
    """Shorter sides (px) of ``count`` images, the first image file met in each of ``count`` class
    folders spread over ``classes``; only the files' headers are read, unreadable files are passed over."""
    step = max(1, len(classes) // count)
    sides = []
    for c in list(classes)[::step][:count]:
        with os.scandir(train / c) as entries:
            for e in entries:
                if e.name.startswith(".") or not e.name.lower().endswith(IMAGE_EXTENSIONS):
                    continue
                try:
                    with Image.open(e.path) as im:
                        sides.append(min(im.size))
                except (OSError, ValueError, SyntaxError):  # unreadable: prepare_data reports it
                    continue
                break
    return sides


def inspect_source(name: str, options: dict) -> SourceInfo:
    """Check ``datasets.<name>`` (``options``, the schema's defaults filled in) as far as that is
    cheap, before any job runs: the class names and warnings (:class:`SourceInfo`), or a
    :class:`DataError` naming the problem and the key that fixes it.

    - digits: classes ``0`` .. ``9``;
    - CIFAR: ``root`` holds torchvision's copy (``cifar-10-batches-py/``), unless ``download``;
      classes from the copy's meta file (CIFAR-10's built in when it is still to be downloaded);
    - MNIST: ``root`` holds ``MNIST/raw/`` with the four idx files (:data:`MNIST_FILES`), unless
      ``download``; classes ``0`` .. ``9``;
    - an ImageFolder tree: ``root`` is a folder with ``train/`` (:func:`layout`), ``train/`` has class
      folders, and ``test/`` or ``val/``, if there, the same ones; the classes are the train split's
      folders. Only these folders are listed, no folder below them. When the median shorter side of
      :data:`SIZE_SAMPLE` images (one per sampled class folder, headers only) exceeds
      :data:`LARGE_IMAGES` x ``image_size``, a warning says that they are shrunk to ``image_size``.
    """
    source = options["source"]
    if source == "digits":
        return SourceInfo(list(DIGITS_CLASSES), [])
    root = options.get("root")
    if source in CIFAR_FOLDERS:
        folder = Path(root) / CIFAR_FOLDERS[source]
        if folder.is_dir():
            return SourceInfo(_cifar_classes(source, folder), [])
        if options.get("download"):
            return SourceInfo(list(CIFAR10_CLASSES) if source == "cifar10" else None, [])
        where = (f"datasets.{name}.root {root!r} does not exist" if not Path(root).is_dir() else
                 f"datasets.{name}.root {root!r} holds no {CIFAR_FOLDERS[source]}/ (torchvision's copy of {source})")
        raise DataError(f"{where}: set it to the folder holding {CIFAR_FOLDERS[source]}/, or set "
                        f"datasets.{name}.download: true to let torchvision fetch it there")
    if source == "mnist":
        raw = Path(root) / TORCHVISION_FOLDERS["mnist"]
        missing = [f for f in MNIST_FILES if not (raw / f).is_file()]
        if not missing or options.get("download"):
            return SourceInfo(list(DIGITS_CLASSES), [])
        where = (f"datasets.{name}.root {root!r} does not exist" if not Path(root).is_dir() else
                 f"datasets.{name}.root {root!r} holds no {', '.join(missing)} in MNIST/raw/ (torchvision's copy of MNIST)")
        raise DataError(f"{where}: set it to the folder holding MNIST/raw/, or set datasets.{name}.download: true to let "
                        "torchvision fetch it there")
    folders = layout(root, name)
    classes = _class_folders(folders["train"])
    if not classes:
        with os.scandir(folders["train"]) as entries:
            flat = any(e.name.lower().endswith(IMAGE_EXTENSIONS) for e in visible_entries(entries))
        raise DataError(f"{folders['train']} has no class folders{' (it holds the images directly)' if flat else ''}: "
                        f"the layout is <root>/train/<class>/<image>, one folder per class; fix datasets.{name}.root")
    for split, folder in folders.items():
        other = _class_folders(folder) if split != "train" else classes
        if other != classes:
            missing, extra = sorted(set(classes) - set(other)), sorted(set(other) - set(classes))
            raise DataError(f"the class folders of {folder} differ from those of {folders['train']}: "
                            + "; ".join(t for t in (f"missing {', '.join(missing[:5])}" if missing else "",
                                                    f"not in train/: {', '.join(extra[:5])}" if extra else "") if t)
                            + "; every split needs the same class folders")
    warnings = []
    size = int(options.get("image_size") or default("datasets.*.image_size"))
    sides = _shorter_sides(folders["train"], classes)
    if sides and float(np.median(sides)) > LARGE_IMAGES * size:
        given = default("datasets.*.image_size")
        warnings.append(
            f"datasets.{name}: the images of {root} are about {int(np.median(sides))} px on their shorter side (median "
            f"of {len(sides)} sampled), but image_size is {size} "
            + ("(the default)" if size == given else f"(the default is {given})")
            + f": they train shrunk to {size}x{size} px; set datasets.{name}.image_size (e.g. 224) if that is not intended")
    return SourceInfo(classes, warnings)


def source_manifest(options: dict) -> list[tuple[str, int, int]]:
    """``(path relative to the root, size, mtime in ns)`` of every source file a dataset entry
    (the config's ``datasets.<name>``) reads, sorted: the images of an ImageFolder tree as
    :func:`scan_tree` finds them (and both data paths read them), or the files of a torchvision
    CIFAR folder under ``root``; empty for the bundled digits, and for a tree :func:`scan_tree`
    refuses (prepare then names the problem). One ``stat`` per file, no file is opened."""
    source, root = options.get("source"), options.get("root")
    if source not in ("imagefolder", *TORCHVISION_FOLDERS) or not root:
        return []
    top = Path(root) / TORCHVISION_FOLDERS[source] if source in TORCHVISION_FOLDERS else Path(root)
    if not top.is_dir():
        return []
    if source == "imagefolder":
        try:
            tree = scan_tree(top, warn=False)
        except (DataError, OSError):  # not a valid tree (yet): prepare reports why
            return []
        return sorted((os.path.relpath(p, top), size, mtime) for recs in tree.splits.values()
                      for p, _, size, mtime in recs if size >= 0)  # a broken link: prepare reports it
    out = []
    for f in sorted(os.listdir(top)):  # a torchvision CIFAR or MNIST folder: flat
        p = top / f
        if not f.startswith(".") and p.is_file():
            st = p.stat()
            out.append((f, st.st_size, st.st_mtime_ns))
    return out


# Source trees up to this many bytes are watched by content (one SHA-256 per file, about half a second for
# CIFAR-10's 12,000-image subset); larger ones (ImageNet: 140 GB) by paths, sizes and modification times.
# The same bound as the profiles' `max-checksum-file-size` for results files.
CONTENT_DIGEST_MAX_BYTES = 256 * 2**20


def source_digest(options: dict) -> str:
    """A short text identifying the source files of a dataset entry as they are now. The workflow
    passes it to ``prepare_data`` as a parameter, so a changed source tree prepares the data again.

    - up to :data:`CONTENT_DIGEST_MAX_BYTES` in all: ``"12000 files, content 3fa2c1d09e8b7a65"``, a
      digest of every file's path and content, so copying, restoring or touching the tree changes
      nothing, while adding, replacing or deleting an image does;
    - larger trees: ``"1281167 files, stat 3fa2c1d09e8b7a65"``, a digest of paths, sizes and
      modification times (:func:`source_manifest`; one ``stat`` per file, no file read), so a touched
      or re-copied image counts as changed too.
    """
    source, root = options.get("source"), options.get("root")
    if source not in ("imagefolder", *TORCHVISION_FOLDERS):
        return "bundled"
    manifest = source_manifest(options)
    if not manifest:
        return f"no files under {root}"
    if sum(size for _, size, _ in manifest) <= CONTENT_DIGEST_MAX_BYTES:
        top = Path(root) / TORCHVISION_FOLDERS[source] if source in TORCHVISION_FOLDERS else Path(root)
        lines = []
        for rel, _, _ in manifest:
            try:
                with open(top / rel, "rb") as f:
                    lines.append(f"{rel}\t{hashlib.file_digest(f, 'sha256').hexdigest()}")
            except OSError:  # removed or unreadable since the scan: prepare reports it
                lines.append(f"{rel}\tunreadable")
        kind = "content"
    else:
        lines = [f"{p}\t{size}\t{mtime}" for p, size, mtime in manifest]
        kind = "stat"
    text = chr(10).join(lines).encode("utf-8", "surrogateescape")  # a file name need not be UTF-8
    return f"{len(manifest)} files, {kind} {hashlib.sha256(text).hexdigest()[:16]}"


def digest_files(digest: str) -> int:
    """The number of source files a digest of :func:`source_digest` counts (``"12000 files, content ..."`` ->
    12000; ``"no files under ..."`` and ``"bundled"`` -> 0): the image count an ``auto`` tree's storage choice
    needs, read back from the digest the workflow computes anyway (counting ImageNet's files again takes minutes)."""
    head, _, rest = digest.partition(" files, ")
    return int(head) if rest and head.isdigit() else 0


# --------------------------------------------------------------------------- a big tree's digest, cached

RESCAN_ENV = "LSPIPE_RESCAN"  # set (to anything but "" or "0"): recompute every cached source digest
SOURCE_CACHE_VERSION = 1
# A folder modified this recently when its state is taken may change again within its file system's
# timestamp resolution without its mtime changing (1-2 s on some network file systems): no cache then.
RACY_SECONDS = 2.0


def folder_state(root: str | os.PathLike) -> list[list]:
    """The stat of an ImageFolder tree's folders down to its class folders: the root, each split folder
    (:func:`layout`) and each visible class folder in it (links followed), as ``[path relative to the root,
    device, inode, size, mtime in ns]``, sorted. One ``scandir`` per split folder and one ``stat`` per
    class folder (about 2,000 for ImageNet), no file. A file added, removed or renamed in a class folder
    changes that folder's mtime; a file rewritten in place, or one in a folder below a class folder,
    does not."""
    top = Path(root)
    paths = [top]
    for _, folder in sorted(layout(top).items()):
        paths.append(folder)
        with os.scandir(folder) as entries:
            paths += sorted(Path(e.path) for e in entries if not e.name.startswith(".") and e.is_dir())
    out = []
    for p in paths:
        st = os.stat(p)
        out.append([os.path.relpath(p, top), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns])
    return out


def rescan_requested(environ=os.environ) -> bool:
    return environ.get(RESCAN_ENV, "").strip() not in ("", "0")


def cached_source_digest(options: dict, cache: str | os.PathLike, environ=os.environ) -> str:
    """:func:`source_digest`, but for a stat-watched ImageFolder tree (above :data:`CONTENT_DIGEST_MAX_BYTES`:
    ImageNet's 1.28 M files, one ``stat`` each) the digest recorded in the JSON file ``cache`` as long as
    the tree's :func:`folder_state` (and ``root``) is what it was when that digest was computed: planning
    then costs a stat per class folder, not one per image. :data:`RESCAN_ENV` (``LSPIPE_RESCAN=1``)
    recomputes it. Content-watched trees, CIFAR folders and the digits are computed as before."""
    source, root = options.get("source"), options.get("root")
    if source != "imagefolder" or not root:
        return source_digest(options)
    try:
        t0 = time.time()
        state = folder_state(root)
    except (DataError, OSError):  # no valid tree: source_digest (and then prepare) says what it is
        return source_digest(options)
    key = {"version": SOURCE_CACHE_VERSION, "root": os.path.abspath(root), "folders": state}
    if not rescan_requested(environ):
        try:
            cached = json.loads(Path(cache).read_text())
            if {k: cached.get(k) for k in key} == key and isinstance(cached.get("digest"), str):
                return cached["digest"]
        except (OSError, ValueError, AttributeError):
            pass  # none yet, or unreadable: compute it
    digest = source_digest(options)
    racy = max(mtime for *_, mtime in state) / 1e9 >= t0 - RACY_SECONDS
    if " stat " in digest and not racy:
        try:
            Path(cache).parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(cache) as tmp:
                tmp.write_text(json.dumps({**key, "digest": digest}))
        except OSError:
            pass  # a cache that cannot be written: the next planning scans again
    else:
        with contextlib.suppress(OSError):
            Path(cache).unlink(missing_ok=True)
    return digest
