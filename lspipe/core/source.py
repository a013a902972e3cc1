"""One reader of prepared data, and the ``prepare-data`` command that writes it.

A dataset's prepared artefact, ``<results>/data/<name>.npz``, is one of two kinds, chosen per
dataset by :func:`lspipe.core.index.choose_storage` (``datasets.<name>.storage``):

* **resident** (:mod:`lspipe.core.data`): every image decoded into uint8 arrays, a
  :class:`~lspipe.core.data.Prepared` in memory;
* **streaming** (:mod:`lspipe.core.stream`): an index of an ImageFolder tree read where it lies,
  a :class:`~lspipe.core.index.StreamIndex` (its file has ``rows_<split>`` instead of ``x_<split>``).

:func:`load` reads either, by what the file holds, so every command that reads prepared data
(training, dumps) takes one path and gets one of the two; both carry ``classes``, ``mean``,
``std``, ``meta``, ``y``, ``index``, ``image_shape`` and ``digest`` (the file's content digest),
so model building, fingerprints and identity checks take either. What needs the pixels of a
whole split at once (the mutual-information probe's images) asks :func:`require_resident`.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

from lspipe.base.args import json_arg
from lspipe.base.defaults import fill, node
from lspipe.base.errors import DataError
from lspipe.base.io import remove_stale_temps
from lspipe.core import data, index
from lspipe.core.data import SPLITS, Prepared
from lspipe.core.index import StreamIndex

# The `streaming` settings an index depends on (recorded in its meta): the workflow passes them to
# prepare_data as a parameter, so changing one rebuilds the index (and retrains what was trained on it).
INDEX_SETTINGS = ("verify", "stats_images", "eval_crop_fraction", "crop_scale", "crop_ratio")
# the members of an index file (lspipe.core.index.write_index), checked by verify()
INDEX_MEMBERS = ("paths", "offsets", "labels", "sizes", "mtimes", "classes", "mean", "std", "meta",
                 *(f"{k}_{s}" for k in ("rows", "i") for s in SPLITS))
# the options of datasets.<name> that build_index takes
_INDEX_OPTIONS = ("val_size", "test_size", "split_seed", "image_size", "channels", "train_per_class", "skip_unreadable")


def is_index(path: str | os.PathLike) -> bool:
    """Whether the prepared file at ``path`` is a streaming index (it has ``rows_train``)."""
    try:
        with zipfile.ZipFile(path) as zf:
            return "rows_train.npy" in zf.namelist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        return False  # a damaged file: the resident reader names it


ROOTS_ENV = "LSPIPE_DATA_ROOTS"  # the workflow's datasets.<name>.root of every dataset (workflow/rules/common.smk)


def data_root(name: str, environ=os.environ) -> str | None:
    """Where dataset ``name``'s source lies now, as the workflow says (:data:`ROOTS_ENV`, JSON name -> folder);
    None outside the workflow (or for a dataset without a folder)."""
    try:
        roots = json.loads(environ.get(ROOTS_ENV) or "{}")
    except json.JSONDecodeError:
        raise DataError(f"the environment variable {ROOTS_ENV} is not JSON: unset it") from None
    return roots.get(name) if isinstance(roots, dict) else None


def load(path: str | os.PathLike) -> Prepared | StreamIndex:
    """The prepared dataset at ``path``: a :class:`Prepared` (resident) or a :class:`StreamIndex`. A streamed
    dataset's images are read where the workflow says its tree lies now (:func:`data_root`: a tree moved, with
    ``root`` changed to match, needs no new index), else where it was indexed."""
    if Path(path).exists() and is_index(path):
        idx = index.load_index(path)
        idx.root = data_root(idx.meta.get("name", ""), os.environ) or idx.root
        return idx
    return data.load(path)


def verify(path: str | os.PathLike) -> None:
    """:func:`lspipe.core.data.verify` for either kind of prepared file."""
    data.verify(path, INDEX_MEMBERS if is_index(path) else None)


def is_streamed(prepared) -> bool:
    return isinstance(prepared, StreamIndex)


def require_resident(prepared, what: str) -> None:
    """Refuse a streamed dataset for ``what`` (something that needs a split's pixels in memory),
    naming the dataset and the fix."""
    if is_streamed(prepared):
        name = prepared.meta.get("name", "<name>")
        raise DataError(f"{what} needs the images of dataset {name!r} in memory, but it is streamed; "
                        f"set datasets.{name}.storage: resident (or leave {what} out for it)")


def eval_batches(idx: StreamIndex, split: str, batch_size: int, **kwargs):
    """:func:`lspipe.core.stream.eval_batches` for evaluations and dumps, whose rows must be every
    image of their positions: an unreadable image is an error (never skipped), naming the image and
    both fixes (``kwargs``: the loader's settings)."""
    kwargs["skip_unreadable"] = False
    try:
        from lspipe.core import stream  # torch: only when a streamed split is read

        yield from stream.eval_batches(idx, split, batch_size, **kwargs)
    except DataError as err:
        raise DataError(f"{err} (an evaluation or dump needs every image of its split; streaming.verify: true "
                        "finds the unreadable ones when the index is built, and with skip_unreadable leaves them out "
                        "of it)") from None


LOADER_ENV = "LSPIPE_STREAM_LOADER"  # the workflow's streaming loader settings (workflow/rules/common.smk)
LOADER_SETTINGS = ("workers", "prefetch_factor", "pin_memory")


def loader_settings(given: dict | None = None, environ=os.environ) -> dict:
    """The DataLoader settings of a streamed dataset's loader (:data:`LOADER_SETTINGS`): ``given``
    (a command's ``--stream-loader``), else the JSON in the environment variable
    :data:`LOADER_ENV` (which the workflow sets from the config's ``streaming`` section), else none
    (the schema's defaults). They change the speed, never the batches."""
    if given is None:
        try:
            given = json.loads(environ.get(LOADER_ENV) or "{}")
        except json.JSONDecodeError:
            raise DataError(f"the environment variable {LOADER_ENV} is not JSON: unset it, or give --stream-loader") \
                from None
    if not isinstance(given, dict):
        raise DataError(f"the streaming loader settings must be a JSON object, got {str(given)[:80]!r}")
    unknown = sorted(set(given) - set(LOADER_SETTINGS))
    if unknown:
        raise DataError(f"unknown streaming loader setting(s) {unknown}; allowed: {', '.join(LOADER_SETTINGS)}")
    for key, value in given.items():  # the schema's rule of streaming.<key>
        rule = node(f"streaming.{key}")
        types = rule["type"] if isinstance(rule["type"], list) else [rule["type"]]
        ok = (value is None and "null" in types) or (isinstance(value, bool) and "boolean" in types) or (
            isinstance(value, int) and not isinstance(value, bool) and "integer" in types
            and rule.get("minimum", value) <= value <= rule.get("maximum", value))
        if not ok:
            allowed = " or ".join(
                f"an integer {rule.get('minimum', '')}..{rule.get('maximum', '')}" if t == "integer" else t for t in types)
            raise DataError(f"streaming loader setting {key}={str(value)[:40]} is not allowed ({allowed}); fix "
                            f"streaming.{key} in the config (or {LOADER_ENV} / --stream-loader)")
    return dict(given)


def index_settings(streaming: dict | None) -> dict:
    """The :data:`INDEX_SETTINGS` of a ``streaming`` config section (the schema's defaults filled in)."""
    full = fill("streaming", dict(streaming or {}))
    return {k: full[k] for k in INDEX_SETTINGS}


def storage(name: str, options: dict, streaming: dict | None = None, images: int | None = None) -> tuple[str, str]:
    """("resident" or "streaming", why) of ``datasets.<name>`` (:func:`lspipe.core.index.choose_storage`
    with ``streaming.resident_max_gb``)."""
    limit = fill("streaming", dict(streaming or {}))["resident_max_gb"]
    return index.choose_storage(name, options, resident_max_gb=limit, images=images)


def prepare(name: str, options: dict, out: str | os.PathLike, streaming: dict | None = None,
            workers: int | None = 0, choice: str | None = None) -> Prepared | StreamIndex:
    """Prepare ``datasets.<name>`` (``options``) into ``out``, atomically: the resident ``.npz``, or
    the index of its tree (``streaming``: the config's section, for :data:`INDEX_SETTINGS` and
    ``resident_max_gb``; ``workers`` decode the images the index needs). ``choice`` ("resident" or
    "streaming") is the workflow's choice; None asks :func:`storage`."""
    if choice is None:
        choice, _ = storage(name, options, streaming)
    elif choice not in ("resident", "streaming"):
        raise DataError(f"--storage must be resident or streaming, got {choice!r}")
    opts = dict(options)
    opts.pop("storage", None)
    if choice == "resident":
        return data.prepare(name, opts.pop("source"), out, **opts)
    settings = index_settings(streaming)
    from lspipe.core import stream  # torch: only when an index is built

    idx = stream.build_index(opts["root"], name=name, **{k: opts[k] for k in _INDEX_OPTIONS if k in opts},
                             **settings, workers=workers)
    index.write_index(out, idx)
    return load(out)


# --------------------------------------------------------------------------- command line


def cmd_prepare(a):
    remove_stale_temps(a.out)
    workers = a.workers if a.workers > 1 else 0  # one thread: decode in this process
    options = dict(a.options or {})
    if options.get("root") is None and data_root(a.name):  # the workflow passes the folder apart (common.smk)
        options["root"] = data_root(a.name)
    p = prepare(a.name, options, a.out, a.streaming, workers, a.storage)
    kind = "index of " + p.root if is_streamed(p) else "resident"
    print(f"prepared {a.name} ({kind}): {p.meta['sizes']} {p.image_shape} {p.num_classes} classes -> {a.out}")


def add_cli(sub) -> None:
    """``lspipe prepare-data``: one dataset into one prepared ``.npz`` with fixed splits (resident or an index)."""
    s = sub.add_parser("prepare-data", aliases=["prepare"],
                       help="prepare a dataset into one .npz with train/val/test splits (images, or an index of a tree)",
                       description="Prepare one dataset (the config's datasets.<name> entry) into one .npz with fixed "
                                   "train/val/test splits: the images themselves, or, for a streamed dataset, an index "
                                   "of the image tree. The workflow's prepare_data rule runs it.")
    s.add_argument("--name", required=True, help="the dataset's name (its key under datasets:)")
    s.add_argument("--options", type=json_arg, required=True, help="the config's datasets.<name> entry as JSON")
    s.add_argument("--streaming", type=json_arg, default=None,
                   help="the config's streaming section as JSON (the index's settings, resident_max_gb)")
    s.add_argument("--storage", choices=["resident", "streaming"], default=None,
                   help="resident or streaming (default: lspipe.core.index.choose_storage decides, as the workflow does)")
    s.add_argument("--workers", type=int, default=0,
                   help="DataLoader workers decoding the images an index needs (0 or 1: in this process)")
    s.add_argument("--out", required=True, help="the prepared .npz (written atomically)")
    s.set_defaults(func=cmd_prepare)
