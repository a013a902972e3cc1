"""One workflow at a time per results folder, whatever its working directory.

Snakemake locks its working directory (``.snakemake/locks``), not the files a run writes: two
runs started from different working directories with the same ``results:`` folder would write,
delete and rerun each other's outputs. The main Snakemake process of a run therefore holds an
exclusive ``flock`` on ``<results>/.lspipe.lock`` from the moment it starts executing jobs
(``onstart`` in ``workflow/rules/common.smk``) until it exits (the operating system releases the
lock with the process, also when it is killed). The file names the holder (working directory,
host, process id, start time); a second run finds the lock taken and stops before running any
job, naming the other run's working directory. Cluster job processes do not take it: they run on
behalf of the main process that holds it.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import socket
from pathlib import Path

from lspipe.base.errors import ResultsLocked, WriteError, os_error_message

LOCK_NAME = ".lspipe.lock"


def holder_text(path: Path) -> dict:
    with contextlib.suppress(OSError, ValueError):
        return json.loads(path.read_text() or "{}")
    return {}


def hold(results: str | os.PathLike, workdir: str | os.PathLike | None = None) -> int:
    """Take the lock of the folder ``results`` for this process and return its file descriptor
    (keep it open: closing it, or the process ending, releases the lock). Raise
    :class:`ResultsLocked` naming the holder's working directory when another process holds it.
    A file system without ``flock`` support gives a warning and no lock."""
    results = Path(results)
    workdir = Path(workdir or os.getcwd()).resolve()
    results.mkdir(parents=True, exist_ok=True)
    path = results / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        other = holder_text(path)
        who = other.get("workdir", "an unknown working directory")
        where = f" (host {other.get('host')}, process {other.get('pid')}, since {other.get('started')})" if other else ""
        same = " -- this same working directory" if str(who) == str(workdir) else ""
        raise ResultsLocked(
            f"the results folder {results.resolve()} is in use by another Snakemake run in {who}{where}{same}; "
            f"wait until it ends, or give this run its own folder (config key `results:`)"
        ) from None
    except OSError as err:  # no flock on this file system (some network file systems)
        os.close(fd)
        import sys

        print(f"warning: cannot lock {path} ({err.strerror}); make sure no other run uses {results} at the same time",
              file=sys.stderr)
        return -1
    info = {"workdir": str(workdir), "host": socket.gethostname(), "pid": os.getpid(),
            "started": datetime.datetime.now().isoformat(timespec="seconds")}
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
    except OSError as err:  # a full disk: every job would fail; say so in one line
        os.close(fd)
        raise WriteError(os_error_message(err, path)) from None
    return fd
