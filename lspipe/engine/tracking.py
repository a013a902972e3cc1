"""Optional loggers of the training metrics (issue 30): TensorBoard through ``torch.utils.tensorboard``.

The config key ``tracking.tensorboard`` (off by default) makes the training rules pass ``lspipe train
--tensorboard <results>/tensorboard``; every member of the job then gets a :class:`TensorBoardLogger`
writing, at the end of each epoch, the row its metrics CSV gets as scalars at the row's step:
``loss/train``, ``accuracy/train``, ``loss/val``, ``accuracy/val`` (fractions) and ``lr``, in
``<dir>/<dataset>/<arch>/<role>/<run>/`` (:func:`run_dir`). A resumed run drops the events its first
attempt logged after the checkpoint it resumes from (``SummaryWriter(purge_step=...)``), so every step
is shown once. Like the progress bars the key changes no weight: it is never compared, and turning it
on or off retrains nothing.

:func:`require_tensorboard` (no torch) refuses the key without the ``tensorboard`` package in one line.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Sequence

from lspipe.base.errors import ConfigError

INSTALL_HINT = "pip install -e '.[tracking]'"
SCALARS = {"train_loss": "loss/train", "train_acc": "accuracy/train", "val_loss": "loss/val", "val_acc": "accuracy/val",
           "lr": "lr"}  # metrics CSV column -> TensorBoard tag


def require_tensorboard() -> None:
    """Raise a one-line :class:`ConfigError` when the ``tensorboard`` package (which
    ``torch.utils.tensorboard`` needs) is not installed."""
    if importlib.util.find_spec("tensorboard") is None:
        raise ConfigError(f"tracking.tensorboard needs the tensorboard package, which is not installed: run "
                          f"{INSTALL_HINT} (or set tracking.tensorboard: false)")


def run_dir(root: str | Path, dataset: str, arch: str, role: str, run: str) -> Path:
    """Where the events of one model's run go: ``<root>/<dataset>/<arch>/<role>/<run>``."""
    return Path(root) / dataset / arch / role / run


class TensorBoardLogger:
    """The per-epoch metrics of each member of a training group as TensorBoard scalars (one event
    folder per member, ``dirs``); a hook of :func:`lspipe.engine.training.fit` (``on_start``,
    ``on_epoch``, ``on_end``)."""

    def __init__(self, dirs: Sequence[str | Path]):
        require_tensorboard()
        self.dirs = [Path(d) for d in dirs]
        self.writers: list = []

    def on_start(self, model, step: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        for d in self.dirs:
            d.mkdir(parents=True, exist_ok=True)
        # started at `step` (0, or a checkpoint's): what an earlier attempt logged from there on is hidden
        self.writers = [SummaryWriter(str(d), purge_step=step) for d in self.dirs]

    def on_step(self, model, step: int) -> None: ...

    def on_checkpoint(self, step: int) -> None: ...

    def on_epoch(self, rows: Sequence[dict]) -> None:
        """The epoch's metric row of each member (its ``step`` is the scalars' step)."""
        for writer, row in zip(self.writers, rows, strict=True):
            for column, tag in SCALARS.items():
                writer.add_scalar(tag, float(row[column]), int(row["step"]))
            writer.flush()

    def on_end(self, model, step: int) -> None:
        self.close()

    def close(self) -> None:
        for writer in self.writers:
            writer.close()
        self.writers = []
