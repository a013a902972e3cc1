"""Errors the user can fix: one base class, one line each.

Every error a user can fix by changing a setting, a file or a command line derives from
:class:`UserError`; its message is one line naming the problem and the fix. The command line
(:func:`lspipe.cli.main`) prints it as ``lspipe <command>: error: <message>`` and exits with
status 2; anything else is a bug and keeps its traceback. :func:`user_message` is that one
decision, and it also covers the operating-system errors a user can fix (a full disk, no
permission, a missing file).

Each class keeps a built-in base as well (``ValueError``, ``RuntimeError``), so code that
catches those still catches these.
"""

from __future__ import annotations

import errno
import os


class UserError(Exception):
    """A problem the user can fix; the message names it and the fix, on one line."""


class ConfigError(UserError, ValueError):
    """The configuration (or a command-line option standing for a config key) is invalid; the message
    names the key and the fix."""


class DataError(UserError, RuntimeError):
    """A dataset, model, dump or other input file cannot be prepared or read; the message says what to change."""


class ModelError(DataError):
    """A model file cannot be used (missing, damaged, foreign, or not the model its place says)."""


class ReadError(UserError, RuntimeError):
    """An input file is not what it should be (not JSON, damaged); the message names it and the fix."""


class WriteError(UserError, RuntimeError):
    """An output cannot be written (full disk, no permission, a file in the way); the message
    names the file and the fix."""


class TrainingDiverged(UserError, RuntimeError):
    """The training loss became non-finite, exceeded ``recipe.max_loss``, or (without a
    ``max_loss``) averaged over an epoch more than :data:`lspipe.engine.training.DIVERGENCE_FACTOR`
    times the loss of a uniform prediction; the message names the run, the step or epoch and the
    loss, and the checkpoint left for inspection."""


class ResultsLocked(UserError, RuntimeError):
    """The results folder is in use by another run; the message names it and what to do."""


class Stopped(Exception):
    """A run that stopped on purpose before its end (``lspipe train --stop-after-epochs``), resumable:
    no error. The command line prints its one line and exits with ``exit_status`` (:data:`EXIT_STOPPED`)."""

    exit_status = 3  # EXIT_STOPPED


class Terminated(BaseException):
    """The process was asked to stop (SIGTERM: Snakemake or SLURM cancelling the job). A
    ``BaseException``, like ``KeyboardInterrupt``, so no ``except Exception`` swallows it and every
    atomic write on the way out removes its temporary file. The command line exits with
    :data:`EXIT_TERMINATED`."""


EXIT_USER_ERROR = 2  # a UserError (one line)
EXIT_STOPPED = 3  # a Stopped run (one line; rerun the command to resume)
EXIT_TERMINATED = 143  # SIGTERM (128 + 15, as a shell reports a process it killed)
# `lspipe train` wrote its checkpoint on SIGTERM/SIGUSR1 and stopped (lspipe.engine.preempt): EX_TEMPFAIL of
# sysexits.h ("temporary failure; retry"): a failed attempt for Snakemake and SLURM, which run it again
EXIT_PREEMPTED = 75


def damaged_file_error(path: str | os.PathLike, err: Exception, make: str | None = None) -> DataError:
    """One line naming a damaged (truncated, incomplete) output file and how to rebuild it; for a
    file that does not exist, one saying so and how to make it (``make``: a command, else Snakemake)."""
    if not os.path.lexists(path):
        how = f"`{make}` or `snakemake {path}`" if make else f"`snakemake {path}`"
        return DataError(f"no such file: {path}; make it first with {how}")
    why = " ".join(f"{type(err).__name__}: {err}".split())
    return DataError(f"cannot read {path} ({why}); the file is damaged or incomplete: delete it or rebuild it "
                     f"with `snakemake -f {path}`")


# errno values of failures the user can fix, with the fix
_FIXES = {
    errno.ENOSPC: "free space on that file system (or point `results:` to another disk), then rerun",
    errno.EDQUOT: "free space within your quota (or point `results:` elsewhere), then rerun",
    errno.EFBIG: "the file exceeds the size limit of the file system or process (ulimit -f): raise it, then rerun",
    errno.EACCES: "make the folder writable for you (or point `results:` elsewhere), then rerun",
    errno.EPERM: "make the folder writable for you (or point `results:` elsewhere), then rerun",
    errno.EROFS: "the file system is read-only: point `results:` to a writable folder, then rerun",
    errno.ENOTDIR: "a file is where a folder belongs: move that file away, then rerun",
    errno.EEXIST: "a file is where a folder belongs: move that file away, then rerun",
    errno.EISDIR: "a folder is where a file belongs: move that folder away, then rerun",
    errno.ENAMETOOLONG: "the path is too long for the file system: use shorter names or a shorter `results:`",
}
USER_ERRNOS = frozenset(_FIXES)


def os_error_message(err: OSError, path: str | os.PathLike | None = None, what: str = "write") -> str:
    """One line for an OSError the user can fix: the file, the reason, the fix."""
    where = err.filename if getattr(err, "filename", None) else path
    if where is None:  # a write to stdout or stderr: the job's log
        where = "the output or log"
    reason = err.strerror or str(err)
    fix = _FIXES.get(err.errno, "fix the cause, then rerun")
    return f"cannot {what} {where}: {reason}; {fix}"


def user_message(err: BaseException) -> str | None:
    """The one-line message of an error the user can fix, or None for a bug (shown with its traceback).

    User errors: every :class:`UserError`, and an operating-system error the user can fix
    (:data:`USER_ERRNOS`, or a missing file)."""
    if isinstance(err, UserError):
        return str(err)
    if isinstance(err, OSError) and (err.errno in USER_ERRNOS or err.errno == errno.ENOENT):
        if err.errno == errno.ENOENT:
            return f"{err.filename or err}: no such file or folder; check the path (or build it first: snakemake <file>)"
        written = err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS)  # refused writes
        return os_error_message(err, what="write" if written else "use")
    return None
