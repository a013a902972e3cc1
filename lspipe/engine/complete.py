"""Completed-run records: a training job's finished outputs survive an interrupted workflow.

When Snakemake itself is interrupted (SIGINT to the Snakemake process alone), a running training
job may still finish and write its ``model.pt``, but Snakemake no longer records the job as
complete: the next run (``rerun-incomplete``) deletes the outputs and reruns the job. The
resumable checkpoint is gone by then (training deletes it when it completes), so that rerun would
start over.

To prevent this, a training command that completes leaves a *completed-run record* beside each
model: a hidden folder ``.<model.pt>.complete/`` holding hard links (copies where the file system
has none) of its outputs (``model.pt``, ``metrics.csv``, ``probe.h5``) and the run's fingerprint
(settings, data, teacher). When the same command runs again with the same fingerprint and finds
the record, it restores the outputs from it instead of training (:func:`restore`). A record
whose fingerprint differs is removed, and the run trains as usual.

A record is used only for the job Snakemake lost. It is released (deleted) by the first job that
reads the model (``lspipe dump-activations``), and, when a workflow starts (the main Snakemake
process, :func:`release_accepted`), for every model that is absent (deleted: asking for it again
retrains it) or that Snakemake does not mark incomplete (its job was recorded as finished). So a
forced rebuild (``snakemake -f``, ``--forcerun``) or a deleted model retrains from scratch; only
a model whose job finished after Snakemake stopped (present, and marked incomplete) is restored.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import sys
from pathlib import Path
from typing import Iterable, Sequence

FINGERPRINT = "fingerprint"


def record_dir(model: str | os.PathLike) -> Path:
    model = Path(model)
    return model.with_name(f".{model.name}.complete")


def _link_or_copy(src: Path, dst: Path) -> None:
    """Place ``src``'s content at ``dst`` atomically (a hard link, or a copy across devices)."""
    tmp = dst.with_name(f".{dst.name}.restore.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def save(model: str | os.PathLike, outputs: Sequence[str | os.PathLike], fingerprint: str) -> None:
    """Record the finished ``outputs`` of the run that wrote ``model`` (call after writing them all)."""
    final = record_dir(model)
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for i, out in enumerate(outputs):
        out = Path(out)
        _link_or_copy(out, tmp / f"{i}-{out.name}")
    (tmp / FINGERPRINT).write_text(fingerprint)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)


def restore(model: str | os.PathLike, outputs: Sequence[str | os.PathLike], fingerprint: str) -> bool:
    """Restore ``outputs`` from the completed-run record of ``model`` if it has this fingerprint.

    Returns True when restored; False when there is no usable record (a stale one is removed)."""
    rec = record_dir(model)
    if not rec.is_dir():
        return False
    try:
        recorded = (rec / FINGERPRINT).read_text()
    except OSError:
        recorded = None
    sources = [rec / f"{i}-{Path(out).name}" for i, out in enumerate(outputs)]
    if recorded != fingerprint or not all(s.is_file() for s in sources):
        release(model)
        return False
    for src, out in zip(sources, outputs):
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        _link_or_copy(src, Path(out))
    print(f"restored {', '.join(map(str, outputs))} from the completed-run record {rec} (the run had finished, "
          "but its completion was not recorded, e.g. Snakemake was interrupted): not retrained", file=sys.stderr)
    return True


def release(model: str | os.PathLike) -> None:
    """Delete the completed-run record of ``model`` (a no-op without one)."""
    shutil.rmtree(record_dir(model), ignore_errors=True)


def restore_group(models: Sequence[str | os.PathLike], outputs: Sequence[Sequence[str | os.PathLike]],
                  fingerprint: str) -> bool:
    """:func:`restore` for a job that trains several models at once (fused grid, lockstep students):
    True only when every model has a record of this fingerprint and all were restored."""
    return all(record_dir(m).is_dir() for m in models) and all(
        restore(m, outs, fingerprint) for m, outs in zip(models, outputs))


def save_group(models: Sequence[str | os.PathLike], outputs: Sequence[Sequence[str | os.PathLike]],
               fingerprint: str) -> None:
    """:func:`save` for every model of a multi-model job (call after writing them all)."""
    for m, outs in zip(models, outputs):
        save(m, outs, fingerprint)


def _snakemake_marker(key: str, folder: Path) -> Path:
    """Where Snakemake 9's default (file) persistence keeps the marker of ``key`` under ``folder``:
    the URL-safe base64 of the path, cut into pieces of NAME_MAX - 1 characters, all but the last
    one prefixed with ``@`` (snakemake.persistence.file.FilePersistence._record_path)."""
    try:
        max_len = os.pathconf(folder, "PC_NAME_MAX") or 255
    except (OSError, ValueError):
        max_len = 255
    b64 = base64.urlsafe_b64encode(key.encode()).decode()
    parts = [b64[i:i + max_len - 1] for i in range(0, len(b64), max_len - 1)]
    return folder.joinpath(*["@" + p for p in parts[:-1]], parts[-1])


def marked_incomplete(path: str, persistence: str | os.PathLike = ".snakemake") -> bool:
    """Whether Snakemake marks the output ``path`` (as the rule writes it) incomplete: a job writing it
    started and Snakemake never recorded its end (it was interrupted, or is still running). Reads
    the default file persistence (``.snakemake/incomplete``); with another backend nothing is marked,
    and the records are released (the model retrains: correct, just slower)."""
    folder = Path(persistence) / "incomplete"
    if not folder.is_dir():
        return False
    return any(_snakemake_marker(k, folder).exists() for k in dict.fromkeys([str(path), os.path.normpath(path)]))


def release_accepted(models: Iterable[str | os.PathLike], persistence: str | os.PathLike = ".snakemake") -> list[Path]:
    """Release the completed-run record of every model in ``models`` whose job Snakemake did not lose:
    the model is absent (deleted, or never finished) or not marked incomplete (Snakemake recorded
    its job). Call it in the main Snakemake process before any job runs (workflow/rules/common.smk);
    returns the records released."""
    released = []
    for model in models:
        rec = record_dir(model)
        if not rec.is_dir():
            continue
        if Path(model).exists() and marked_incomplete(str(model), persistence):
            continue  # the job Snakemake lost: the rerun restores it
        release(model)
        released.append(rec)
    return released
