"""Atomic file output: write to a temporary file beside the target, then rename.

A reader (or a rerun of the workflow) therefore never sees a half-written file: either the
old file, no file, or the complete new one. A write that fails for a reason the user can fix
(a full disk, a read-only folder, a file where a folder belongs) raises :class:`WriteError`,
one line naming the file and the fix. The temporary file of a writer that was killed
(SIGKILL) cannot be removed by it: :func:`remove_stale_temps` removes those of a job's outputs
when the job starts again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Iterator

from lspipe.base.errors import USER_ERRNOS, ReadError, WriteError, os_error_message


def _free_space(folder: Path) -> str:
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return ""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if free < 1024 or unit == "TiB":
            return f"{free:.0f} {unit}" if unit == "bytes" else f"{free:.1f} {unit}"
        free /= 1024
    return ""


def write_error(path: Path, err: BaseException) -> WriteError:
    if isinstance(err, OSError) and err.errno in USER_ERRNOS:
        return WriteError(os_error_message(err, path))
    why = " ".join(f"{type(err).__name__}: {err}".split())[:300]
    free = _free_space(path.parent)
    room = f"{free} free on its file system" if free else "its file system could not be queried"
    return WriteError(f"cannot write {path} ({why}); {room}: free space (or point `results:` to another disk) "
                      "or fix the folder's permissions, then rerun")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    On an exception the temporary file is removed and ``path`` is left untouched.
    ``suffix`` defaults to the target's suffix (some writers, e.g. ``np.savez``, care).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{path.name}.", suffix=(path.suffix if suffix is None else suffix) + ".tmp",
            dir=path.parent,
        )
    except OSError as err:  # a read-only folder, a file where a folder belongs, a full disk
        raise write_error(path, err) from None
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates 0600 files: give the result the permissions of a normally created file
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        if isinstance(err, OSError):  # the file system refused the data (full disk, ...)
            raise write_error(path, err) from None
        raise


def remove_stale_temps(*paths: str | os.PathLike) -> list[Path]:
    """Remove the temporary files (and folders) left beside ``paths`` by writers that were killed
    (``.<name>.*.tmp``: :func:`atomic_path`'s, the completed-run record's); returns what was removed.

    Call it when the job that owns these outputs starts: one job at a time writes an output
    (Snakemake's and the results lock), so a temporary file of that output's name is stale."""
    removed = []
    for path in map(Path, paths):
        prefix = f".{path.name}."
        try:
            entries = list(os.scandir(path.parent))
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith(prefix) and entry.name.endswith(".tmp"):
                target = Path(entry.path)
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(target, ignore_errors=True)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        target.unlink()
                removed.append(target)
    return removed


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        why = " ".join(f"{type(err).__name__}: {err}".split())[:200]
        raise ReadError(f"cannot read {path}: not a JSON file ({why}); pass the right file, or rebuild it with "
                        f"`snakemake -f {path}`") from None


def torch_save(obj: Any, path: str | os.PathLike) -> None:
    import torch

    with atomic_path(path) as tmp:
        try:
            torch.save(obj, tmp)
        except RuntimeError as err:  # PyTorch's zip writer reports a refused write (full disk, ...) as one
            raise write_error(Path(path), err) from None


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 (hex) of a file's content, read in blocks of 1 MiB."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def zip_problem(path: str | os.PathLike) -> str | None:
    """What is wrong with the zip archive at ``path`` (a ``model.pt`` or checkpoint: PyTorch saves a zip
    whose every member carries the CRC-32 of its bytes), or None when every member reads back with its
    recorded checksum. Reads the whole file once (CRC-32 runs at over 1 GB/s)."""
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError) as err:  # truncated, not a zip
        return " ".join(f"{type(err).__name__}: {err}".split())[:200]
    return f"checksum mismatch in its member {bad}: a flipped bit or a damaged copy" if bad is not None else None


class GuardedFile:
    """A binary file, written through by HDF5 (``h5py.File(GuardedFile(path), "w")``), whose writes never
    raise: the first refused write (a full disk, ``ulimit -f``) is kept in :attr:`error` and every later
    write is dropped. HDF5 meets a write error while it flushes metadata (object deallocation, closing)
    with a cascade of "Exception ignored" tracebacks and, at times, a segmentation fault; through this
    file it meets none, closes cleanly, and the writer raises :attr:`error` once, in one line."""

    def __init__(self, path: str | os.PathLike):
        self.file = open(path, "w+b", buffering=0)  # unbuffered: a seek never flushes (and fails) behind HDF5's back
        self.error: OSError | None = None

    def _guard(self, op, *args, default=None):
        if self.error is None:
            try:
                return op(*args)
            except OSError as err:
                self.error = err
        return default

    def _write_all(self, data) -> None:
        view = memoryview(data).cast("B")
        while view:  # an unbuffered write may write part of the data
            view = view[self.file.write(view):]

    def write(self, data) -> int:
        self._guard(self._write_all, data)
        return memoryview(data).nbytes

    def truncate(self, size=None):
        return self._guard(self.file.truncate, size, default=size)

    def flush(self) -> None:
        self._guard(self.file.flush)

    def read(self, size=-1):
        return self.file.read(size)

    def readinto(self, buffer):
        return self.file.readinto(buffer)

    def seek(self, offset, whence=0):
        return self.file.seek(offset, whence)

    def tell(self) -> int:
        return self.file.tell()

    def close(self) -> None:
        try:
            self.file.close()  # closes the descriptor even when the flush before it is refused
        except OSError as err:
            self.error = self.error or err
