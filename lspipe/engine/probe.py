"""The mutual-information probe: a training callback recording the logits of augmented copies of
probe examples (paper Fig. 6, "erasure of information").

:class:`ProbeRecorder` implements the hooks of :class:`lspipe.engine.training.Callback`; it writes
a probe trace (:mod:`lspipe.engine.probefile`, read by :class:`~lspipe.engine.probefile.ProbeTrace`),
which :mod:`lspipe.experiments.mi` turns into the mutual information over training.

It records one model or any members of a group trained together (:func:`lspipe.engine.training.train_group`:
lockstep :class:`~lspipe.engine.training.Members` or a fused
:class:`~lspipe.engine.fused.FusedClassifier`, logits ``B x G x K``): one forward pass of the group
per batch of probe images gives every member's logits, and each recorded member gets its own trace,
the very trace its run of its own would write (bit for bit for lockstep members; up to the grouped
kernels' rounding for fused ones).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np
import torch
import torch.nn as nn

from lspipe.base import defaults
from lspipe.base.errors import DataError
from lspipe.core.augment import DeviceLoader
from lspipe.core.data import Prepared
from lspipe.core.recipe import Recipe
from lspipe.engine.probefile import FORMAT_VERSION


def select_probe(data: Prepared, classes: Sequence[str], per_class: int, seed: int) -> np.ndarray:
    """Sorted positions in the training split: ``per_class`` random examples of each class.

    Drawn with ``numpy.random.default_rng(seed)``, independent of any training randomness.
    """
    if len(classes) != 2 or classes[0] == classes[1]:
        raise DataError(f"teachers[].probe.classes must name two different classes; got {list(classes)}")
    rng = np.random.default_rng(seed)
    picks = []
    for name in classes:
        k = data.class_index(name)
        pool = np.flatnonzero(data.y["train"] == k)
        if len(pool) < per_class:
            raise DataError(
                f"teachers[].probe.per_class={per_class} exceeds the {len(pool)} training examples of class "
                f"{name!r} in dataset {data.meta.get('name', '?')!r}; lower per_class"
            )
        picks.append(rng.choice(pool, size=per_class, replace=False))
    return np.sort(np.concatenate(picks)).astype(np.int64)


def _step_seed(seed: int, step: int, draw: int = 0) -> int:
    """Seed of the augmentation draws of the record at ``step`` (independent of the history);
    ``draw`` 1 is the repeat draw, independent of draw 0."""
    key = [seed, step] if draw == 0 else [seed, step, draw]
    return int(np.random.SeedSequence(key).generate_state(1, dtype=np.uint64)[0])


class ProbeRecorder:
    """Record probe logits during training (implements :class:`~lspipe.engine.training.Callback`'s hooks).

    At step 0 and every ``every`` optimiser steps (and at the last step), the model's logits for
    ``copies`` augmented copies of each probe example are appended to an HDF5 trace, one trace per
    recorded member: ``probe_out`` is one path (a single model, or a group of one member) or one
    path per member of ``members`` (default: every member of the group, in order). The model the
    hooks get is a plain classifier (logits ``B x K``) or a group (``num_members`` G, logits
    ``B x G x K``); every member sees the same augmented copies, drawn once per record.

    ``/logits``  float32, ``(records, N, L, K)`` (all K classes' logits)
    ``/logits_repeat`` the same for a second, independent augmentation draw at each record
    (the repeat draw: the MI noise level, :func:`lspipe.experiments.mi.mi_noise`)
    ``/steps``   int64, ``(records,)``
    ``/index``   int64, ``(N,)`` positions in the prepared training split (sorted)
    ``/source_index`` int64, ``(N,)`` the examples' indices in their source split
    ``/labels``  int64, ``(N,)`` class indices     ``/classes`` every class name of the dataset
    attrs: ``probe_classes`` (the two names), ``probe_class_indices``, ``per_class``, ``copies``,
    ``every``, ``seed``, ``pad``, ``flip``, ``dataset``, ``settings`` (JSON), ``complete``.

    Recording never changes training: the examples are chosen with their own numpy generator,
    the augmentation (``recipe.augment`` pad/flip, as in training) draws from the probe's own
    ``torch.Generator`` reseeded from ``(seed, step)`` at each record (``(seed, step, 1)`` for the
    repeat draw), the model runs in eval
    mode (BatchNorm uses, and does not update, its running statistics) under ``torch.no_grad``
    in float32 (no autocast, so the logit differences are not rounded to bf16), and its
    train/eval mode is restored. Each trace is written to ``<probe_out>.partial`` (opened,
    appended, flushed and closed at each record) and renamed onto ``probe_out`` when training
    ends. A resumed run (``on_start`` with ``step > 0``) truncates the partial traces to the records
    at or before the resumed step and continues, so its traces equal an uninterrupted run's.
    """

    def __init__(
        self,
        probe_out: str | os.PathLike | Sequence[str | os.PathLike],
        data: Prepared,
        *,
        members: Sequence[int] | None = None,
        device: torch.device | str = "cpu",
        recipe: Recipe | None = None,
        classes: Sequence[str],
        per_class: int | None = None,
        copies: int | None = None,
        every: int | None = None,
        seed: int | None = None,
        batch_size: int | None = None,
    ):
        # settings left out (None) take the schema's defaults (teachers[].probe, recipes.<name>)
        given = {"classes": classes, "per_class": per_class, "copies": copies, "every": every, "seed": seed}
        probe = defaults.fill("teachers[].probe", {k: v for k, v in given.items() if v is not None})
        per_class, copies, every, seed = probe["per_class"], probe["copies"], probe["every"], probe["seed"]
        r = defaults.fill("recipes.*") if recipe is None else vars(recipe)
        augment, eval_batch_size = r["augment"], r["eval_batch_size"]
        outs = [probe_out] if isinstance(probe_out, (str, os.PathLike)) else list(probe_out or [])
        if not outs:
            raise DataError("lspipe train --probe needs --probe-out (where the probe trace is written)")
        if int(every) < 1 or int(copies) < 2 or int(per_class) < 1:
            raise DataError(f"teachers[].probe needs every >= 1, copies >= 2 (to pool the variance) and per_class >= 1; "
                            f"got every={every}, copies={copies}, per_class={per_class}")
        self.members_named = members is not None
        self.members = list(range(len(outs))) if members is None else [int(m) for m in members]
        if len(self.members) != len(outs) or len(set(self.members)) != len(self.members) or min(self.members) < 0:
            raise ValueError(f"one probe output per recorded member: {len(outs)} outputs for members {self.members}")
        self.paths = [Path(p) for p in outs]
        self.partials = [p.with_name(p.name + ".partial") for p in self.paths]
        self.device = torch.device(device)
        self.classes = [str(c) for c in classes]
        self.per_class, self.copies, self.every, self.seed = int(per_class), int(copies), int(every), int(seed)
        self.pad, self.flip = int(augment["pad"]), bool(augment["flip"])
        self.batch_size = int(batch_size or eval_batch_size)
        self.class_indices = [data.class_index(c) for c in self.classes]
        self.index = select_probe(data, self.classes, self.per_class, self.seed)
        self.labels = data.y["train"][self.index].astype(np.int64)
        self.source_index = np.asarray(data.index["train"])[self.index].astype(np.int64)
        self.all_classes = list(data.classes)
        self.dataset = str(data.meta.get("name", ""))
        self.x = torch.from_numpy(np.ascontiguousarray(data.x["train"][self.index])).to(self.device)
        self.settings = {
            "version": FORMAT_VERSION, "dataset": self.dataset, "classes": self.classes, "per_class": self.per_class,
            "copies": self.copies, "every": self.every, "seed": self.seed, "pad": self.pad, "flip": self.flip,
            "index": self.index.tolist(),
        }
        self.gen = torch.Generator(device=self.device)
        self.last_step: int | None = None

    # ----------------------------------------------------------------- recording

    @torch.no_grad()
    def logits(self, model: nn.Module, step: int, draw: int = 0) -> np.ndarray:
        """Logits ``(M, N, L, K)`` of the ``L`` augmented copies of every probe example at ``step``,
        for each of the ``M`` recorded members (``draw`` 1: the repeat draw's copies)."""
        groups = getattr(model, "num_members", None)
        if groups is not None and max(self.members) >= groups:
            raise ValueError(f"the probe records members {self.members}, but the model has {groups}")
        was_training = model.training
        model.eval()
        try:
            self.gen.manual_seed(_step_seed(self.seed, step, draw))
            n = len(self.index)
            xs = self.x.repeat(self.copies, 1, 1, 1)  # copy-major: row c * N + i is copy c of example i
            copies = DeviceLoader(xs, None, self.batch_size, pad=self.pad, flip=self.flip, generator=self.gen,
                                  shuffle=False, drop_last=False)
            outs = []
            for xb in copies:
                out = model(xb)  # B x K (one model) or B x G x K (a group)
                out = out[:, self.members] if out.dim() == 3 else out[:, None]
                outs.append(out.float().cpu())
            out = torch.cat(outs).reshape(self.copies, n, len(self.members), -1).permute(2, 1, 0, 3)
        finally:
            model.train(was_training)
        return out.contiguous().numpy()

    def record(self, model: nn.Module, step: int) -> None:
        draws = {"logits": self.logits(model, step), "logits_repeat": self.logits(model, step, draw=1)}
        for m, partial in enumerate(self.partials):
            with h5py.File(partial, "a") as f:
                steps = f["steps"]
                r = steps.shape[0]
                for name, logits in draws.items():
                    shape = logits.shape[1:]
                    if name not in f:
                        f.create_dataset(name, (0, *shape), "f4", maxshape=(None, *shape), chunks=(1, *shape))
                    f[name].resize(r + 1, axis=0)
                    f[name][r] = logits[m]
                steps.resize(r + 1, axis=0)
                steps[r] = step
                f.flush()
        self.last_step = step

    # ----------------------------------------------------------------- file handling

    def _create(self) -> None:
        for partial in self.partials:
            partial.parent.mkdir(parents=True, exist_ok=True)
            with h5py.File(partial, "w") as f:
                f.create_dataset("steps", (0,), "i8", maxshape=(None,), chunks=(256,))
                f["index"] = self.index
                f["source_index"] = self.source_index
                f["labels"] = self.labels
                f.create_dataset("classes", data=np.asarray(self.all_classes, dtype=object), dtype=h5py.string_dtype())
                f.attrs.update({
                    "probe_classes": self.classes, "probe_class_indices": self.class_indices,
                    "per_class": self.per_class, "copies": self.copies, "every": self.every, "seed": self.seed,
                    "pad": self.pad, "flip": self.flip, "dataset": self.dataset, "settings": json.dumps(self.settings),
                    "complete": False, "format_version": FORMAT_VERSION,
                })

    def _truncate(self, step: int) -> None:
        """Keep the records at steps <= ``step`` of every partial trace (a resumed run)."""
        expected = list(range(0, step + 1, self.every))
        for partial in self.partials:  # check every trace before changing any
            self._check_partial(partial, step, expected)
        for partial in self.partials:
            with h5py.File(partial, "r+") as f:
                keep = len(expected)
                for name in ("logits", "logits_repeat"):
                    if name in f:
                        f[name].resize(keep, axis=0)
                f["steps"].resize(keep, axis=0)
                f.flush()
        self.last_step = expected[-1]

    def _check_partial(self, partial: Path, step: int, expected: list[int]) -> None:
        fix = f"delete {partial} and the run's checkpoint (model.pt.ckpt) to retrain from scratch"
        if not partial.exists():
            raise DataError(f"resuming at step {step}, but the probe trace {partial} is missing; {fix}")
        try:
            with h5py.File(partial, "r") as f:
                if json.loads(f.attrs["settings"]) != self.settings:
                    raise DataError(f"the probe trace {partial} was recorded with other probe settings; {fix}")
                steps = f["steps"][()]
                keep = int(np.sum(steps <= step))
                if steps[:keep].tolist() != expected:
                    raise DataError(
                        f"the probe trace {partial} holds steps {steps.tolist()}, not the records "
                        f"{expected} of a run resumed at step {step}; {fix}"
                    )
        except OSError as err:
            raise DataError(f"cannot read the probe trace {partial} ({err}); {fix}") from None

    # ----------------------------------------------------------------- Callback

    def on_start(self, model: nn.Module, step: int) -> None:
        groups = getattr(model, "num_members", 1)
        if max(self.members) >= groups:
            raise ValueError(f"the probe records members {self.members}, but the model has {groups}")
        if not self.members_named and len(self.members) != groups:
            raise ValueError(f"{len(self.paths)} probe output(s) for a group of {groups} members: give one per member, "
                             "or name the members recorded (members=...)")
        if step == 0:
            self._create()
            self.record(model, 0)
        else:
            self._truncate(step)

    def on_step(self, model: nn.Module, step: int) -> None:
        if step % self.every == 0:
            self.record(model, step)

    def on_checkpoint(self, step: int) -> None: ...

    def on_end(self, model: nn.Module, step: int) -> None:
        if self.last_step != step:
            self.record(model, step)
        for partial, path in zip(self.partials, self.paths):
            with h5py.File(partial, "r+") as f:
                f.attrs["complete"] = True
            os.replace(partial, path)
