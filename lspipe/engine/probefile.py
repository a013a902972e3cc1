"""Probe traces: the HDF5 file the mutual-information probe writes during training (paper Fig. 6).

The layout is :class:`lspipe.engine.probe.ProbeRecorder`'s (who writes it); :class:`ProbeTrace`
reads a finished trace for the analyses (:mod:`lspipe.experiments.mi`), and
:func:`write_probe_placeholder` writes the file a teacher without a probe leaves in its place.
The file format only: h5py and numpy, no torch.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from lspipe.base.errors import DataError, damaged_file_error

FORMAT_VERSION = 2  # 2: the repeat draw (/logits_repeat)
PLACEHOLDER = "placeholder"


def write_probe_placeholder(path: str | os.PathLike) -> None:
    """The probe output of a teacher whose grid records no probe (every teacher job writes one, so
    one rule trains every teacher): an HDF5 file with no trace, which :class:`ProbeTrace` refuses."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with h5py.File(tmp, "w") as f:
        f.attrs[PLACEHOLDER] = ("this teacher's grid records no probe (teachers[].probe is null); "
                                "set teachers[].probe to record the Fig. 6 trace")
    os.replace(tmp, path)


class ProbeTrace:
    """Read access to a probe trace written by :class:`lspipe.engine.probe.ProbeRecorder`."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        try:
            self._read()
        except (OSError, KeyError) as err:
            raise damaged_file_error(self.path, err) from None

    def _read(self) -> None:
        with h5py.File(self.path, "r") as f:
            if f.attrs.get(PLACEHOLDER):
                raise DataError(f"{self.path} is a placeholder, not a probe trace: {f.attrs[PLACEHOLDER]}")
            if "logits" not in f or "steps" not in f:
                raise DataError(f"{self.path} is not a probe trace (no /logits or /steps); it is written by `lspipe train --probe`")
            self.steps = f["steps"][()]
            self.logits = f["logits"][()]
            # traces of format 1 have no repeat draw (the MI noise level is then unknown)
            self.logits_repeat = f["logits_repeat"][()] if "logits_repeat" in f else None
            self.labels = f["labels"][()]
            self.index = f["index"][()]
            self.classes = [c.decode() if isinstance(c, bytes) else str(c) for c in f["classes"][()]]
            self.probe_classes = [c.decode() if isinstance(c, bytes) else str(c) for c in f.attrs["probe_classes"]]
            self.probe_class_indices = [int(i) for i in f.attrs["probe_class_indices"]]
            self.complete = bool(f.attrs.get("complete", False))
            self.attrs = {k: (v.item() if hasattr(v, "item") and np.ndim(v) == 0 else v) for k, v in f.attrs.items()}

    @property
    def n(self) -> int:
        return int(self.logits.shape[1])

    @property
    def copies(self) -> int:
        return int(self.logits.shape[2])

    def differences(self, repeat: bool = False) -> np.ndarray | None:
        """``Y``: first probe class's logit minus the second's, ``(records, N, L)``, float64; of the
        repeat draw with ``repeat`` (None for a trace without one)."""
        logits = self.logits_repeat if repeat else self.logits
        if logits is None:
            return None
        a, b = self.probe_class_indices
        return logits[..., a].astype(np.float64) - logits[..., b].astype(np.float64)
