"""Data preparation: every source becomes one ``.npz`` file with fixed splits.

A prepared file holds, for each split ``s`` in ``train``, ``val``, ``test``:
``x_<s>`` (uint8, N x C x H x W), ``y_<s>`` (int64 labels) and ``i_<s>`` (the example's index
in its source split, so any example can be traced back), plus ``classes`` (class names),
``mean``/``std`` (per-channel statistics of the training split, in [0, 1] units) and ``meta``
(a JSON string describing the source and split).

The validation split is carved, stratified and seeded, out of the source's training data (the
paper's 40k/10k CIFAR split); temperature scaling is fitted on it, numbers are reported on test.
Sources without a test split of their own (the bundled digits) have one carved the same way.
An ImageFolder tree with ``train/``, ``val/`` and ``test/`` takes its validation split from
``val/`` (nothing is carved, ``val_size`` is unused); with only ``train/`` and ``val/`` (the
ImageNet layout) ``val/`` is the test split and validation is carved from ``train/``; with
``train/`` alone the test split (``test_size``) and then the validation split are carved from it,
as for the digits.

What the workflow checks of a dataset's source while it plans (its folders and class names, the
digest of its files) is :mod:`lspipe.core.survey`'s.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

from lspipe.base.defaults import default
from lspipe.base.errors import DataError
from lspipe.base.io import atomic_path, remove_stale_temps

SPLITS = ("train", "val", "test")
SOURCES = ("digits", "cifar10", "cifar100", "mnist", "imagefolder")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


class ClassNames:
    """What a prepared dataset of either kind (:class:`Prepared`, :class:`lspipe.core.index.StreamIndex`) says of
    its classes: ``classes`` (names in label order), their number and the label of a name."""

    classes: list[str]
    meta: dict

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def class_index(self, name: str) -> int:
        try:
            return self.classes.index(name)
        except ValueError:
            raise DataError(
                f"unknown class name {name!r} for dataset {self.meta.get('name', '?')!r}; "
                f"its classes are: {', '.join(self.classes)}"
            ) from None


@dataclass
class Prepared(ClassNames):
    """A prepared dataset in memory (numpy arrays)."""

    x: dict[str, np.ndarray]
    y: dict[str, np.ndarray]
    index: dict[str, np.ndarray]
    classes: list[str]
    mean: np.ndarray
    std: np.ndarray
    meta: dict
    digest: str = ""  # content digest of the prepared file (:func:`content_digest`); "" when built in memory

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.x["train"].shape[1:])  # type: ignore[return-value]


def _split_count(value: float | int, n: int, what: str) -> int:
    """A split size given as a fraction (< 1) or an absolute count."""
    if float(value) >= 1 and float(value) != int(value):
        raise DataError(f"{what}={value} is neither a fraction (< 1) nor a whole count (>= 1); fix {what}")
    count = int(round(value * n)) if float(value) < 1 else int(value)
    if not 0 < count < n:
        raise DataError(f"{what}={value} leaves an empty split (out of {n} examples)")
    return count


def stratified_split(y: np.ndarray, size: float | int, seed: int, what: str = "val_size"):
    """Split indices ``0..len(y)-1`` into (rest, held_out), stratified by label and seeded."""
    from sklearn.model_selection import train_test_split

    n_held = _split_count(size, len(y), what)
    n_classes = len(np.unique(y))
    if min(n_held, len(y) - n_held) < n_classes:
        raise DataError(
            f"{what}={size} splits {len(y)} examples into {len(y) - n_held} + {n_held}, but a stratified split "
            f"needs at least one example of each of the {n_classes} classes on both sides; fix {what}"
        )
    idx = np.arange(len(y))
    rest, held = train_test_split(idx, test_size=n_held, stratify=y, random_state=seed, shuffle=True)
    return np.sort(rest), np.sort(held)


def _load_digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    # 8x8 images with values 0..16 -> uint8 0..255, one channel.
    x = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[:, None, :, :]
    classes = [str(c) for c in d.target_names]
    return x, d.target.astype(np.int64), classes


def _load_cifar(source: str, root: str | None, download: bool):
    from torchvision import datasets

    if not root:
        raise DataError(
            f"dataset source {source!r} needs a root folder: set datasets.<name>.root in the config "
            "(the folder holding or receiving the torchvision copy)"
        )
    cls = datasets.CIFAR10 if source == "cifar10" else datasets.CIFAR100
    out = {}
    for split, train in (("train", True), ("test", False)):
        try:
            ds = cls(root=root, train=train, download=download)
        except RuntimeError as err:  # torchvision: "Dataset not found or corrupted..."
            raise DataError(
                f"{source} not found under {root!r} ({err}). Either put the torchvision copy "
                f"(e.g. cifar-10-batches-py/) there, or set datasets.<name>.download: true in the "
                "config on a machine with internet access"
            ) from None
        x = np.ascontiguousarray(np.asarray(ds.data, dtype=np.uint8).transpose(0, 3, 1, 2))
        out[split] = (x, np.asarray(ds.targets, dtype=np.int64))
        classes = list(ds.classes)
    return out, classes


MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _load_mnist(root: str | None, download: bool):
    """torchvision's MNIST (``<root>/MNIST/raw/``, the four idx files :data:`MNIST_FILES`): 28 x 28 grey
    images as N x 1 x 28 x 28 uint8, classes named by their digit ("0" .. "9", as the bundled digits)."""
    from torchvision import datasets

    if not root:
        raise DataError("dataset source 'mnist' needs a root folder: set datasets.<name>.root in the config "
                        "(the folder holding or receiving torchvision's MNIST/raw/)")
    out = {}
    for split, train in (("train", True), ("test", False)):
        try:
            ds = datasets.MNIST(root=root, train=train, download=download)
        except (RuntimeError, ValueError, OSError, AssertionError) as err:  # not found; a damaged idx file (torchvision asserts)
            fix = ("the download failed (no internet access?): put torchvision's copy there" if download else
                   "either put torchvision's copy there") + f" (MNIST/raw/ with {', '.join(MNIST_FILES)})"
            raise DataError(
                f"mnist not found or unreadable under {root!r} ({type(err).__name__}: {' '.join(str(err).split())[:300]}); "
                f"{fix}"
                + ("" if download else ", or set datasets.<name>.download: true in the config on a machine with "
                   "internet access")
            ) from None
        out[split] = (np.ascontiguousarray(ds.data.numpy().astype(np.uint8)[:, None]), ds.targets.numpy().astype(np.int64))
    return out, [c.split(" - ")[0] for c in datasets.MNIST.classes]


def visible_entries(entries):
    """Entries whose names do not start with '.' (hidden files and folders such as .ipynb_checkpoints)."""
    return [e for e in entries if not e.name.startswith(".")]


REVISIT = ("skip", "refuse")


class ImageTree(NamedTuple):
    """What :func:`scan_tree` finds in an ImageFolder tree."""

    classes: list[str]
    #: split -> ``(path, label, size, mtime_ns)`` of each image file, in reading order; a broken link (a
    #: path that cannot be ``stat``-ed) has size and mtime -1. The splits are :func:`layout`'s folder
    #: splits: ``train``, ``test`` (the ImageNet layout's ``val/``) and, beside ``test/``, ``val``
    splits: dict[str, list[tuple[str, int, int, int]]]
    #: the broken links, in scan order (also in ``splits``, with size -1)
    missing: list[str]


def _key(path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


class _Walk:
    """Scanning state shared by the splits of one tree: folders and image files already met, by
    (device, inode), so that a loop, or one file reached twice, is found whatever links (symbolic
    or hard) lead there. ``on_revisit`` is :func:`scan_tree`'s."""

    def __init__(self, on_revisit: str, warn: bool):
        if on_revisit not in REVISIT:
            raise ValueError(f"on_revisit must be one of {REVISIT}, got {on_revisit!r}")
        self.refuse, self.warn = on_revisit == "refuse", warn
        self.dirs: dict[tuple[int, int], str] = {}  # "refuse": every folder of the tree met so far
        self.files: dict[tuple[int, int], str] = {}
        self.missing: list[str] = []

    def enter(self, path: str, visited: dict) -> bool:
        """Record folder ``path``; False if it is to be skipped (or DataError under "refuse")."""
        key = _key(path)
        if key in visited:
            if self.refuse:
                raise DataError(
                    f"folder {path} is the folder {visited[key]} again (a symlink loop or a second link to it): "
                    "every image must be reached once; remove the link"
                )
            return False
        visited[key] = path
        return True

    def _ancestor(self, dirpath: str, sub: str) -> bool:
        """Under "skip": whether folder ``sub`` of ``dirpath`` is a link to ``dirpath`` or one of its
        ancestors, also above the class folder (under "refuse" a link back into the tree meets a
        folder already recorded, and is refused there)."""
        if self.refuse or not os.path.islink(sub):
            return False
        here, target = os.path.realpath(dirpath), os.path.realpath(sub)
        return here == target or here.startswith(target.rstrip(os.sep) + os.sep)

    def image_files(self, top: Path) -> list[str]:
        """The image files under class folder ``top`` (recursively, hidden names skipped), ordered
        by folder path then name, following symbolic links to folders (see :func:`scan_tree`)."""
        visited = self.dirs if self.refuse else {}
        if self.refuse:
            self.enter(str(top), visited)
        else:
            visited[_key(top)] = str(top)
        skipped: list[str] = []
        walk = []
        for dirpath, dirnames, filenames in os.walk(top, followlinks=True):
            keep = []
            for d in sorted(dirnames):
                if d.startswith("."):
                    continue
                sub = os.path.join(dirpath, d)
                try:
                    if self._ancestor(dirpath, sub) or not self.enter(sub, visited):
                        skipped.append(sub)  # a loop, a link to an ancestor, or a second link to one folder
                        continue
                except OSError:  # dangling (or gone since the listing)
                    skipped.append(sub)
                    continue
                keep.append(d)
            dirnames[:] = keep
            walk.append((dirpath, filenames))
        if skipped and self.warn:
            print(f"warning: {top}: skipped {len(skipped)} linked folder(s) already visited (a link to an "
                  f"ancestor, a loop, or a second link to one folder) or dangling: {', '.join(skipped)}",
                  file=sys.stderr)
        return [os.path.join(dirpath, f) for dirpath, filenames in sorted(walk) for f in sorted(filenames)
                if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS)]

    def add_file(self, path: str) -> tuple[int, int]:
        """(size, mtime_ns) of an image file, or (-1, -1) for a broken link (recorded in ``missing``)."""
        try:
            st = os.stat(path)
        except OSError:
            self.missing.append(path)
            return -1, -1
        key = (st.st_dev, st.st_ino)
        if key in self.files:
            raise DataError(
                f"{path} and {self.files[key]} are the same file (linked, symbolically or hard): one image would "
                "be counted twice (or in two splits), and every image must be reached once: remove one of the two"
            )
        self.files[key] = path
        return st.st_size, st.st_mtime_ns


def _scan_split(folder: Path, classes: Sequence[str] | None, walk: _Walk):
    """(class names, [(path, label, size, mtime_ns)]) of one split folder of an ImageFolder tree."""
    if walk.refuse:
        walk.enter(str(folder), walk.dirs)
    found = sorted(e.name for e in visible_entries(folder.iterdir()) if e.is_dir())
    if not found:
        raise DataError(f"image folder {folder} has no class folders: the layout is {folder}/<class>/<image>")
    if classes is None:
        classes = found
    elif sorted(found) != sorted(classes):
        raise DataError(
            f"class folders of {folder} ({', '.join(found)}) differ from those of the train split "
            f"({', '.join(classes)})"
        )
    samples = []
    for label, c in enumerate(classes):
        files = walk.image_files(folder / c)
        if not files:
            raise DataError(
                f"class folder {folder / c} holds no images ({', '.join(IMAGE_EXTENSIONS)}): add images "
                "or remove the folder (from every split)"
            )
        samples += [(f, label, *walk.add_file(f)) for f in files]
    return list(classes), samples


def scan_tree(root: str | os.PathLike, *, on_revisit: str = "skip", warn: bool = True) -> ImageTree:
    """The image files of the ImageFolder tree at ``root`` (split folders as :func:`layout` finds
    them), as the resident path (:func:`prepare`, :func:`source_manifest`) and the streaming path
    (:mod:`lspipe.core.index`) read them: one ``stat`` per file, no file opened.

    - Classes are the train split's visible class folders, sorted by name; every other split must
      have the same ones. A class's label is its position in that order.
    - A class folder is read recursively; its image files are ordered by folder path, then name.
      Names starting with ``.`` (files and folders) are ignored, and so are files whose extension
      is not in :data:`IMAGE_EXTENSIONS` (any case).
    - Symbolic links to folders are followed. A folder reached a second time (a loop, a link to an
      ancestor, a second link to one folder) is, with ``on_revisit="skip"`` (the resident path),
      skipped with a warning (``warn``) when met again inside one class folder; with
      ``"refuse"`` (the streaming path) it is an error naming both paths, anywhere in the tree.
    - One file reached by two paths (a symbolic or hard link, in one split or two) is an error
      naming both: the image would count twice, or leak from one split into another.
    - A link to a file that is not there is listed, with size -1, and in ``missing``: readers
      report it (or skip it under ``datasets.<name>.skip_unreadable``) as an unreadable image.
    """
    folders = layout(root)
    walk = _Walk(on_revisit, warn)
    classes, splits = None, {}
    for split in ("train", "test", "val"):
        if split in folders:
            classes, splits[split] = _scan_split(folders[split], classes, walk)
    return ImageTree(list(classes), splits, walk.missing)


class UnsupportedImage(ValueError):
    """An image whose pixel values cannot be mapped to 8 bits without guessing (its message says why)."""


class UnreadableImage(OSError):
    """An image file that cannot be decoded (empty, truncated, not an image, more pixels than PIL's
    decompression-bomb limit); its message names the cause, and ``skip_unreadable`` may skip it."""


def _to_8bit(im):
    """``im`` with 8-bit channels: 16-bit and 32-bit integer images scaled (value / 257, so 65535
    becomes 255; values outside 0..65535 refused), float images with values in [0, 1] mapped to
    0..255 (NaN, infinite and other values refused); every other mode has 8-bit channels already."""
    from PIL import Image

    if im.mode.startswith("I;16") or im.mode == "I":
        arr = np.asarray(im)
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise UnsupportedImage(f"its {im.mode} pixel values span {arr.min()}..{arr.max()}, outside 0..65535 "
                                   "(16 bits): convert it to 8 or 16 bits per channel")
        return Image.fromarray(np.round(arr.astype(np.float64) / 257.0).astype(np.uint8))
    if im.mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        bad = ~np.isfinite(arr)
        if bad.any():
            nan = int(np.isnan(arr).sum())
            what = "NaN" if nan == bad.sum() else ("infinite" if not nan else "NaN or infinite")
            raise UnsupportedImage(f"{int(bad.sum())} of its {arr.size} floating-point pixel values are {what}: the "
                                   "file is damaged or was written unfinished; replace it with a good copy or delete it")
        if arr.size and (arr.min() < 0.0 or arr.max() > 1.0):
            raise UnsupportedImage(f"its floating-point pixel values span {arr.min():g}..{arr.max():g}, "
                                   "not [0, 1]: rescale it to [0, 1] or convert it to 8 bits")
        return Image.fromarray(np.round(arr * 255.0).astype(np.uint8))
    return im


def decode_image(path: str, channels: int):
    """The image file at ``path`` decoded with 8 bits per channel, a PIL image of mode ``RGB``
    (``channels`` 3) or ``L`` (1): the one decoder of both data paths (the resident :func:`prepare`
    and the streaming :mod:`lspipe.core.stream`), so a file gives the same pixels either way.
    16-bit, 32-bit integer and float images are scaled (:func:`_to_8bit`); palette, CMYK, grey,
    LA and RGBA images are converted by PIL (alpha is dropped, not composited). EXIF orientation
    is not applied (as in torchvision's loaders): pixels are read as stored.

    Raises :class:`UnreadableImage` for a file PIL cannot decode (empty, truncated, not an image,
    more than twice PIL's ``Image.MAX_IMAGE_PIXELS``: a decompression bomb) and
    :class:`UnsupportedImage` for pixel values that do not map to 8 bits without guessing."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()  # decodes the whole image: a truncated file fails here
            return _to_8bit(im).convert("RGB" if channels == 3 else "L")
    except UnsupportedImage:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        # PIL: UnidentifiedImageError, "image file is truncated", more pixels than PIL decodes
        raise UnreadableImage(" ".join(f"{type(err).__name__}: {err}".split())[:300]) from None


def unreadable_message(path: str, err: BaseException, name: str) -> str:
    """The one line of an image file that cannot be read (both data paths; ``skip_unreadable`` skips it)."""
    return (f"cannot read image {path} ({err}); replace or delete it, or set datasets.{name}.skip_unreadable: true "
            "to skip unreadable images with a warning")


def unsupported_message(path: str, err: BaseException) -> str:
    """The one line of an image whose pixel values are refused (both data paths; never skipped)."""
    return f"cannot convert image {path} to 8 bits: {err}"


def _read_image(path: str, mode: str, image_size: int) -> np.ndarray:
    """The resident path's image (``mode`` "RGB" or "L"): :func:`decode_image`, resized (bilinear) to
    ``image_size`` squared."""
    from PIL import Image

    im = decode_image(path, 3 if mode == "RGB" else 1)
    if im.size != (image_size, image_size):
        im = im.resize((image_size, image_size), Image.BILINEAR)
    return np.asarray(im, dtype=np.uint8)


def _read_image_folder(folder: Path, samples: Sequence[tuple], classes: Sequence[str], image_size: int,
                       channels: int, skip_unreadable: bool, name: str):
    """The images ``samples`` (:func:`scan_tree`'s records of split folder ``folder``) decoded."""
    x = np.empty((len(samples), channels, image_size, image_size), dtype=np.uint8)
    y = np.empty(len(samples), dtype=np.int64)
    keep, skipped = [], []
    for k, (path, label, *_) in enumerate(samples):
        try:
            arr = _read_image(path, "RGB" if channels == 3 else "L", image_size)
        except UnsupportedImage as err:  # readable, but its pixel range is not one we convert without guessing
            raise DataError(unsupported_message(path, err)) from None
        except UnreadableImage as err:
            if not skip_unreadable:
                raise DataError(unreadable_message(path, err, name)) from None
            skipped.append(path)
            continue
        x[k] = arr.reshape(image_size, image_size, channels).transpose(2, 0, 1)
        y[k] = label
        keep.append(k)
    if skipped:
        print(f"warning: skipped {len(skipped)} unreadable image(s) of {folder} "
              f"(datasets.{name}.skip_unreadable): {', '.join(skipped)}", file=sys.stderr)
        x, y = x[keep], y[keep]
        empty = [c for i, c in enumerate(classes) if not np.any(y == i)]
        if empty:
            raise DataError(f"no readable images left in class folder(s) {', '.join(str(folder / c) for c in empty)}")
    return x, y, list(classes)


def layout(root: str | os.PathLike | None, name: str = "<name>") -> dict[str, Path]:
    """The split folders of an ImageFolder tree, as this module and :mod:`lspipe.core.index` read
    them: ``train`` always; ``test`` when the tree has test/ or val/ (with only train/ and val/, the
    ImageNet layout, val/ is the test split); ``val`` when it has its own validation split (train/,
    val/ and test/). A tree with train/ alone has its test split carved (``test_size``)."""
    if not root:
        raise DataError(f"dataset source 'imagefolder' needs datasets.{name}.root (a folder holding "
                        "train/<class>/<image>)")
    root_p = Path(root)
    if not root_p.is_dir():
        raise DataError(f"datasets.{name}.root {str(root)!r} is not a folder (it does not exist, or is a file); set it "
                        "to the folder holding train/<class>/<image> (and optionally test/ or val/)")
    train_dir = root_p / "train"
    if not train_dir.is_dir():
        found = sorted(e.name for e in visible_entries(root_p.iterdir()) if e.is_dir())[:8]
        raise DataError(
            f"image folder {root_p} has no train/ subfolder (it has: {', '.join(found) or 'no folders'}): the layout "
            f"is <root>/train/<class>/<image>, optionally with <root>/test/ (or val/) laid out alike; "
            f"fix datasets.{name}.root"
        )
    test_dir = next((root_p / s for s in ("test", "val") if (root_p / s).is_dir()), None)
    out = {"train": train_dir}
    if test_dir is None:
        return out  # train/ alone: the test split is carved from it (test_size)
    out["test"] = test_dir
    if test_dir.name == "test" and (root_p / "val").is_dir():
        out["val"] = root_p / "val"
    return out


def _load_imagefolder(root: str | None, image_size: int, channels: int, skip_unreadable: bool, name: str):
    folders = layout(root, name)
    tree = scan_tree(root)
    out = {}
    for split, samples in tree.splits.items():
        out[split] = _read_image_folder(folders[split], samples, tree.classes, image_size, channels,
                                        skip_unreadable, name)[:2]
    return out, tree.classes


CIFAR_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
TORCHVISION_FOLDERS = {**CIFAR_FOLDERS, "mnist": "MNIST/raw"}  # flat folders of the torchvision copies under root


def limit_per_class(y: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    """Indices keeping at most ``limit`` examples per class (seeded), all if ``limit`` is None."""
    idx = np.arange(len(y))
    if not limit:
        return idx
    rng = np.random.default_rng(seed)
    keep = [rng.permutation(idx[y == c])[:limit] for c in np.unique(y)]
    return np.sort(np.concatenate(keep))


def prepare(
    name: str,
    source: str,
    out: str | Path,
    *,
    root: str | None = None,
    download: bool = default("datasets.*.download"),
    val_size: float | int = default("datasets.*.val_size"),
    test_size: float | int = default("datasets.*.test_size"),
    split_seed: int = default("datasets.*.split_seed"),
    image_size: int = default("datasets.*.image_size"),
    channels: int = default("datasets.*.channels"),
    train_per_class: int | None = default("datasets.*.train_per_class"),
    skip_unreadable: bool = default("datasets.*.skip_unreadable"),
) -> Prepared:
    """Prepare dataset ``name`` from ``source`` into ``out`` (written atomically)."""
    if source == "digits":
        x, y, classes = _load_digits()
        parts = {"train": (x, y, np.arange(len(y)))}
    elif source in ("cifar10", "cifar100"):
        raw, classes = _load_cifar(source, root, download)
        parts = {s: (xs, ys, np.arange(len(ys))) for s, (xs, ys) in raw.items()}
    elif source == "mnist":
        raw, classes = _load_mnist(root, download)
        parts = {s: (xs, ys, np.arange(len(ys))) for s, (xs, ys) in raw.items()}
    elif source == "imagefolder":
        raw, classes = _load_imagefolder(root, image_size, channels, skip_unreadable, name)
        parts = {s: (xs, ys, np.arange(len(ys))) for s, (xs, ys) in raw.items()}
    else:
        raise DataError(f"unknown dataset source {source!r}; allowed: {', '.join(SOURCES)}")
    carved = "test" not in parts
    if carved:  # no test split of its own (the digits, a tree with train/ alone): carved, stratified and seeded
        x0, y0, i0 = parts["train"]
        rest, test = stratified_split(y0, test_size, split_seed, f"datasets.{name}.test_size")
        parts["train"], parts["test"] = (x0[rest], y0[rest], i0[rest]), (x0[test], y0[test], i0[test])

    xtr, ytr, itr = parts["train"]
    keep = limit_per_class(ytr, train_per_class, split_seed)
    xtr, ytr, itr = xtr[keep], ytr[keep], itr[keep]
    if "val" in parts:  # a validation split of its own (ImageFolder val/ beside test/): nothing carved
        splits = {"train": (xtr, ytr, itr), "val": parts["val"], "test": parts["test"]}
    else:
        tr, va = stratified_split(ytr, val_size, split_seed, f"datasets.{name}.val_size")
        splits = {
            "train": (xtr[tr], ytr[tr], itr[tr]),
            "val": (xtr[va], ytr[va], itr[va]),
            "test": parts["test"],
        }
    x_train = splits["train"][0].astype(np.float64) / 255.0
    mean = x_train.mean(axis=(0, 2, 3)).astype(np.float32)
    std = x_train.std(axis=(0, 2, 3)).astype(np.float32)
    meta = {
        "name": name, "source": source, "split_seed": split_seed,
        "val_size": None if "val" in parts else val_size, "val_source": "folder" if "val" in parts else "carved",
        "test_size": test_size if carved else None, "train_per_class": train_per_class,
        "image_shape": list(xtr.shape[1:]), "sizes": {s: int(len(v[1])) for s, v in splits.items()},
    }
    arrays = {"classes": np.asarray(classes), "mean": mean, "std": std, "meta": np.asarray(json.dumps(meta))}
    for s, (xs, ys, is_) in splits.items():
        arrays[f"x_{s}"] = np.ascontiguousarray(xs, dtype=np.uint8)
        arrays[f"y_{s}"] = ys.astype(np.int64)
        arrays[f"i_{s}"] = is_.astype(np.int64)
    with atomic_path(out) as tmp, open(tmp, "wb") as fh:
        savez_deterministic(fh, arrays)
    return load(out)


def savez_deterministic(fh, arrays: dict[str, np.ndarray], compress: bool = False) -> None:
    """``np.savez`` with fixed zip timestamps, so the same data gives the same bytes.

    Rebuilding a prepared file (``snakemake -f <file>.npz``) thus yields an identical file, and
    Snakemake's checksums keep everything made from it (trained models) up to date. Every array
    is a zip member with its CRC-32 recorded at write time; :func:`verify` checks them.
    ``compress`` deflates the members (``np.savez_compressed``; ``np.load`` reads either).
    """
    import zipfile

    mode = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(fh, mode="w", compression=mode, allowZip64=True) as zf:
        for key, val in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o600 << 16
            info.compress_type = mode
            with zf.open(info, "w", force_zip64=True) as fid:
                np.lib.format.write_array(fid, np.asanyarray(val), allow_pickle=False)


def _damaged(path: Path, why: str) -> DataError:
    return DataError(
        f"prepared dataset {path} is damaged ({why}); rebuild it with `snakemake -f {path}` "
        "(the rebuilt file is identical, so the models trained on it are kept; deleting it instead retrains them)"
    )


def verify(path: str | Path, members: Sequence[str] | None = None) -> None:
    """Check a prepared file against the CRC-32 checksums recorded in it at write time (every
    array is a zip member) and for its ``members`` (default: a resident file's ``classes``,
    ``meta``, ``x_``, ``y_`` and ``i_`` of every split); raise :class:`DataError` naming the file
    and the fix if it is truncated or damaged."""
    import zipfile

    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
            names = set(zf.namelist())
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
        raise _damaged(path, " ".join(f"{type(err).__name__}: {err}".split())) from None
    if bad is not None:
        raise _damaged(path, f"checksum mismatch in {bad}")
    if members is None:
        members = ["classes", "meta", *(f"{k}_{s}" for k in "xyi" for s in SPLITS)]
    missing = sorted({f"{m}.npy" for m in members} - names)
    if missing:
        raise _damaged(path, f"missing {', '.join(missing)}")


def content_digest(path: str | Path) -> str:
    """A digest of a prepared file's content: SHA-256 (16 hex digits) over every array's name,
    size and CRC-32, as recorded in the zip directory when the file was written (reads only the
    directory, not the arrays). Two files with the same arrays have the same digest; changing
    any pixel, label or split changes it. Models record it (``data_digest``), and it is part of
    the identity of every training run (checkpoint fingerprint, completed-run record)."""
    import hashlib
    import zipfile

    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            members = sorted((i.filename, i.file_size, i.CRC) for i in zf.infolist())
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
        raise _damaged(path, " ".join(f"{type(err).__name__}: {err}".split())) from None
    text = "\n".join(f"{name} {size} {crc:08x}" for name, size, crc in members)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def load(path: str | Path) -> Prepared:
    path = Path(path)
    if not path.exists():
        raise DataError(f"prepared dataset {path} does not exist; build it with `snakemake {path}`")
    import zipfile

    digest = content_digest(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            return Prepared(
                x={s: z[f"x_{s}"] for s in SPLITS},
                y={s: z[f"y_{s}"] for s in SPLITS},
                index={s: z[f"i_{s}"] for s in SPLITS},
                classes=[str(c) for c in z["classes"]],
                mean=z["mean"],
                std=z["std"],
                meta=json.loads(str(z["meta"])),
                digest=digest,
            )
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, KeyError) as err:  # zip CRCs are checked on read
        raise _damaged(path, " ".join(f"{type(err).__name__}: {err}".split())) from None


# --------------------------------------------------------------------------- command line


def cmd_prepare(a):
    """The resident path of ``lspipe prepare-data`` (:func:`lspipe.core.source.cmd_prepare` chooses it)."""
    remove_stale_temps(a.out)
    opts = dict(a.options or {})
    opts.pop("storage", None)  # resident or streaming (lspipe.core.index.choose_storage): this is the resident path
    p = prepare(a.name, opts.pop("source"), a.out, **opts)
    print(f"prepared {a.name}: {p.meta['sizes']} {p.image_shape} {p.num_classes} classes -> {a.out}")
