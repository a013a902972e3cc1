"""The training engine, shared by teachers and students.

It reads top to bottom like nanoGPT's loop, one flat loop over the optimiser steps (:class:`_Run`):
one loader object (:func:`training_batches`) gives the batches, the validation logits and its
position for checkpoints, and one step function (:func:`lspipe.engine.step.make_step`) trains on
each batch. For a resident dataset the whole training split lives on the device as uint8 and a
:class:`~lspipe.core.augment.DeviceLoader` draws each batch from a seeded permutation and augments it
on the device (:class:`ResidentBatches`; on CUDA a whole epoch's crops and flips at once); for a
streamed one DataLoader workers decode and augment this rank's share of each batch
(:class:`StreamedBatches`, :mod:`lspipe.core.stream`). The step computes the objective
(label-smoothed CE or distillation, :mod:`lspipe.core.losses`), clips gradients per member and
steps SGD with Nesterov momentum under a step-based learning-rate schedule, in the settings of
:func:`lspipe.engine.step.resolve_engine`: on CUDA the recipe's ``precision`` and ``channels_last``
(``auto``: the measured best per architecture) and the whole step as one CUDA graph
(``cuda_graph``); on the CPU channels_last (``cpu_channels_last``, on by default: +30% for ResNets
with oneDNN) and bf16 only when the recipe asks (``cpu_amp``), exactly the numbers of the loop before
the step was split out. Evaluation and dumps (:func:`~lspipe.core.inference.predict`) always run in
float32. After every epoch: validation accuracy/loss, a row in the metrics CSV and (every
``checkpoint_every`` epochs) an atomic checkpoint from which an interrupted run resumes exactly where
it stopped (model, optimiser, step, RNG state). A checkpoint is only resumed when its fingerprint
(recipe, architecture, objective, seed, data) matches the current run, so changed hyper-parameters
never continue a stale run. ``lspipe train`` also checkpoints on SLURM's warning signal (SIGTERM,
SIGUSR1: :mod:`lspipe.engine.preempt`) at the next step boundary, mid-epoch too (the loader's position,
the epoch's metrics so far), and stops with status 75; the resumed run ends bit for bit as one never
stopped.

The loop always trains a group of G members of one architecture on one batch stream
(:func:`train_group`; a single run is G = 1): G ordinary models side by side (:class:`Members`,
bit-identical to separate runs on the CPU) or one fused network (:mod:`lspipe.engine.fused`). Its
logits are B x G x K, its objective (:class:`lspipe.core.losses.Objective`) returns one loss per
member (their sum is minimised, so each member gets exactly its own gradient), gradients are
clipped per member (``model.clip_grad_norm_``) and each member gets its own metrics CSV. One
command runs it, ``lspipe train`` (:func:`cmd_train`; ``train-fused`` and ``train-lockstep`` are
its aliases), with the members' objectives as JSON; each model's metadata records the engine's
settings and why (``engine``).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn as nn

from lspipe.base.defaults import default
from lspipe.base.errors import ConfigError, Stopped, TrainingDiverged
from lspipe.base.io import atomic_path, file_sha256, remove_stale_temps, torch_save, zip_problem
from lspipe.base.progress import progress_bar
from lspipe.core import models as model_registry
from lspipe.core import source
from lspipe.core.data import Prepared
from lspipe.core.inference import evaluate_logits, resolve_device, setup_torch
from lspipe.core.losses import KINDS, Objective
from lspipe.core.losses import check as check_objective
from lspipe.core.models import build_model, check_teacher, load_model, model_spec, save_model
from lspipe.core.recipe import Recipe
from lspipe.core.recipe import identity as recipe_identity
from lspipe.core.index import StreamIndex
from lspipe.engine import complete
from lspipe.engine import distributed as dist_mod
from lspipe.engine import step as step_mod
from lspipe.engine.batches import training_batches
from lspipe.engine.distributed import SINGLE, World
from lspipe.engine.fused import clip_member_grads_
from lspipe.engine.fused import fuse as fuse_models
from lspipe.engine.preempt import SYNC_STEPS, Preempted, Preemption
from lspipe.engine.probe import ProbeRecorder
from lspipe.engine.probefile import write_probe_placeholder
from lspipe.engine.step import Engine
from lspipe.engine.tracking import TensorBoardLogger, require_tensorboard, run_dir

# Resident data on CUDA is augmented this many bytes of images at a time (a CIFAR epoch of 40,000
# images is 123 MB: one draw per epoch), not batch by batch: ~15 operations a step fewer.
METRIC_FIELDS = ["epoch", "step", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "seconds"]


def fingerprint(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def param_groups(model: model_registry.Classifier, recipe: Recipe) -> list[dict]:
    if recipe.dense_weight_decay is None:
        return [{"params": list(model.parameters()), "weight_decay": recipe.weight_decay}]
    dense = {id(p) for p in model.dense_parameters()}
    rest = [p for p in model.parameters() if id(p) not in dense]
    return [
        {"params": rest, "weight_decay": recipe.weight_decay},
        {"params": [p for p in model.parameters() if id(p) in dense], "weight_decay": recipe.dense_weight_decay},
    ]


class Callback:
    """Hooks into the loop (e.g. the mutual-information probe). All methods are optional.

    ``model`` is the group :func:`fit` trains (``num_members`` G, logits ``B x G x K``: lockstep
    :class:`Members` or a fused network), not a wrapper (DistributedDataParallel, torch.compile);
    a callback that follows one model picks its member's logits."""

    def on_start(self, model: nn.Module, step: int) -> None: ...
    def on_step(self, model: nn.Module, step: int) -> None: ...
    def on_epoch(self, rows: Sequence[dict]) -> None: ...  # each member's new metrics row (rank 0 only)
    def on_checkpoint(self, step: int) -> None: ...
    def on_end(self, model: nn.Module, step: int) -> None: ...


# A run diverged when an epoch's mean training loss exceeds this many times the loss of a uniform
# prediction (all logits equal: log K for cross-entropy and label smoothing, s log K for the
# soft term of distillation): the model then puts, on average, less than K^-10 of probability on
# the targets -- far worse than guessing. Applies when the recipe sets no max_loss.
DIVERGENCE_FACTOR = 10.0


def _divergence_error(run_names, step: int, losses: list[float], recipe: Recipe, checkpoint_path: Path) -> TrainingDiverged:
    names = list(run_names)
    bad = [i for i, v in enumerate(losses) if not math.isfinite(v) or (recipe.max_loss and v > recipe.max_loss)]
    what = ", ".join(f"{names[i] if i < len(names) else f'member {i}'} (loss {losses[i]:.4g})" for i in bad)
    kind = "is not finite" if not all(math.isfinite(v) for v in losses) else f"exceeds recipes.<name>.max_loss = {recipe.max_loss:g}"
    kept = _kept(checkpoint_path)
    return TrainingDiverged(
        f"training diverged at step {step}: the loss of run {what} {kind}; lower recipes.<name>.lr, set "
        f"recipes.<name>.grad_clip or warmup_steps, then rerun ({kept})"
    )


def _kept(checkpoint_path: Path) -> str:
    return (f"the last checkpoint {checkpoint_path} is kept for inspection" if checkpoint_path.exists()
            else "no checkpoint was written yet")


def _epoch_divergence_error(run_names, epoch: int, steps: tuple[int, int], means: list[float], chance: list[float],
                            checkpoint_path: Path) -> TrainingDiverged:
    names = list(run_names)
    bad = [i for i, (m, c) in enumerate(zip(means, chance)) if m > DIVERGENCE_FACTOR * c]
    what = ", ".join(f"{names[i] if i < len(names) else f'member {i}'} (mean loss {means[i]:.4g}, uniform "
                     f"prediction {chance[i]:.4g})" for i in bad)
    return TrainingDiverged(
        f"training diverged in epoch {epoch} (steps {steps[0]}-{steps[1]}): the mean training loss of run {what} "
        f"exceeds {DIVERGENCE_FACTOR:g} x the loss of a uniform prediction; lower recipes.<name>.lr, set "
        f"recipes.<name>.grad_clip or warmup_steps, then rerun (recipes.<name>.max_loss replaces this bound by a "
        f"per-step one; {_kept(checkpoint_path)})"
    )


class Interrupted(Stopped):
    """Raised when ``stop_after_epochs`` ends a run early (used to test and time-box resume); the command
    line prints its one line and exits with status 3 (:data:`lspipe.base.errors.EXIT_STOPPED`)."""


def _load_checkpoint(path: Path, device: torch.device) -> dict | None:
    """A checkpoint's content, or None (with a one-line warning naming it) if it cannot be read:
    the run then starts fresh and the file is replaced by its next checkpoint."""
    try:
        problem = zip_problem(path)  # every member's CRC-32 (torch.load checks none): a flipped bit is damage
        if problem:
            raise ValueError(problem)
        ck = torch.load(path, map_location=device, weights_only=False)
        if not isinstance(ck, dict):
            raise ValueError(f"not a checkpoint but a {type(ck).__name__}")
        return ck
    except Exception as err:  # truncated or garbled: zipfile, pickle, EOF and RuntimeError from torch
        why = " ".join(f"{type(err).__name__}: {err}".split())[:300]
        print(f"warning: ignoring the unreadable checkpoint {path} ({why}); training starts fresh and "
              "replaces it at the next checkpoint", file=sys.stderr)
        return None


def _write_metrics(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=METRIC_FIELDS)
    w.writeheader()
    w.writerows(rows)
    with atomic_path(path) as tmp:
        tmp.write_text(buf.getvalue())


def _rng_states(device: torch.device) -> dict:
    """The global random generators' states (torch's CPU generator, and the training device's on CUDA)."""
    return {"cpu": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}


def _set_rng_states(states: dict | None, device: torch.device) -> None:
    """Put back :func:`_rng_states` (a checkpoint without them, from before: nothing)."""
    if not states:
        return
    torch.set_rng_state(states["cpu"].cpu())
    if device.type == "cuda" and states.get("cuda") is not None:
        torch.cuda.set_rng_state(states["cuda"].cpu(), device)


def fit(
    model: nn.Module,
    data: Prepared | StreamIndex,
    recipe: Recipe,
    objective: nn.Module,
    *,
    seed: int,
    device: torch.device | str = "cpu",
    checkpoint_path: str | Path,
    metrics_paths: Sequence[str | Path],
    run_fingerprint: str = "",
    callbacks: Sequence[Callback] = (),
    progress: bool = default("progress"),
    stop_after_epochs: int | None = None,
    run_names: Sequence[str] = (),
    world: World = SINGLE,
    stream_loader: dict | None = None,
    arch: str | None = None,
    engine: Engine | None = None,
    preemption: Preemption | None = None,
) -> dict:
    """Train the G members of ``model`` in place; returns a summary (steps, epochs, seconds, and
    ``final``: the last metric row of each member).

    ``model`` is a group of ``model.num_members`` G members (:class:`Members`, or a
    :class:`lspipe.engine.fused.FusedClassifier`; a single run is G = 1): logits ``B x G x K``,
    ``clip_grad_norm_`` per member. ``objective`` (:class:`lspipe.core.losses.Objective`) returns
    the G losses, ``metrics_paths`` and ``run_names`` have one entry per member.

    A non-finite loss (or one above ``recipe.max_loss``) raises :class:`TrainingDiverged` at the
    end of that epoch, naming the member's run name, the first such step and its loss; so does, when the
    recipe sets no ``max_loss``, an epoch whose mean training loss exceeds
    :data:`DIVERGENCE_FACTOR` times the loss of a uniform prediction (``objective.uniform_loss``:
    one per member). Nothing is written for that
    epoch, so the last checkpoint stays for inspection. The checks keep the loss on the device (no
    synchronisation per step).

    Under torchrun (``world``, :mod:`lspipe.engine.distributed`) every rank draws the same global
    batch and trains on its slice through DistributedDataParallel; losses and counts are reduced
    across ranks, so every rank computes the same metrics, and only rank 0 writes files.

    ``data`` is resident (a :class:`Prepared`: the split on the device) or streamed (a
    :class:`StreamIndex`: decoded by DataLoader workers, ``stream_loader`` their settings
    ``workers``, ``prefetch_factor``, ``pin_memory``); :func:`training_batches` makes the one
    loader object the loop draws from, validates with and checkpoints the position of.

    Each batch goes through one step (:func:`lspipe.engine.step.make_step`: forward, objective,
    backward, clipping, SGD step, metrics; on CUDA a CUDA graph when the recipe's ``cuda_graph``
    allows), with the settings of :func:`lspipe.engine.step.resolve_engine` for ``arch`` on
    ``device`` (``engine`` replaces them: the operation count emulates a GPU's on the CPU so); the
    summary's ``engine`` records them and why.

    ``preemption`` (``lspipe train``: :mod:`lspipe.engine.preempt`): when it is raised (SIGTERM, SIGUSR1),
    the loop ends the step in progress, writes a checkpoint at that step boundary (mid-epoch too: the
    loader's position, the epoch's metrics so far, the RNG states) and raises :class:`Preempted`; the
    run resumed from it ends bit for bit as the uninterrupted one.
    """
    run = _Run(model, data, recipe, objective, seed=seed, device=torch.device(device), checkpoint_path=Path(checkpoint_path),
               metrics_paths=[Path(p) for p in metrics_paths], world=world, stream_loader=stream_loader, arch=arch,
               engine=engine)
    with step_mod.arithmetic(run.engine):
        return run.train(run_fingerprint, callbacks, progress, stop_after_epochs, run_names, preemption)


class _StepClock:
    """The job's pace, for the log (``engine: {...}`` on stderr, read by benchmarks/gpu_jobs.py): when the
    first step ended (wall clock; the device synchronised once) and the mean step time after the
    engine's warm-up (its eager steps and a graph's capture), the epochs' ends (validation,
    checkpoints) left out."""

    def __init__(self, device: torch.device, start_step: int):
        self.device, self.start, self.warm = device, start_step, start_step + step_mod.GRAPH_WARMUP + step_mod.GRAPH_COMPARE
        self.first_at, self.t0, self.n, self.aside_s = None, None, 0, 0.0

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def stepped(self, step: int) -> None:
        if step == self.start:
            self._sync()
            self.first_at = time.time()
        if step == self.warm:
            self._sync()
            self.t0, self.n, self.aside_s = time.perf_counter(), 0, 0.0
        elif self.t0 is not None:
            self.n += 1

    @contextlib.contextmanager
    def aside(self):
        t = time.perf_counter()
        try:
            yield
        finally:
            self.aside_s += time.perf_counter() - t

    def report(self, engine: Engine) -> None:
        steady = None
        if self.t0 is not None and self.n:
            self._sync()
            steady = 1000.0 * (time.perf_counter() - self.t0 - self.aside_s) / self.n
        print("engine: " + json.dumps({"first_step_at": self.first_at, "steady_step_ms": steady, "steady_steps": self.n,
                                       **engine.describe()}), file=sys.stderr)


class _Run:
    """The state of one :func:`fit`: data, model, optimiser, step function, history; the loop
    (:meth:`train`), the start and end of an epoch, checkpoints."""

    def __init__(self, model, data, recipe: Recipe, objective, *, seed: int, device: torch.device, checkpoint_path: Path,
                 metrics_paths: list[Path], world: World, stream_loader: dict | None, arch: str | None,
                 engine: Engine | None):
        self.model, self.recipe, self.objective, self.device, self.world = model, recipe, objective, device, world
        self.checkpoint_path, self.metrics_paths = checkpoint_path, metrics_paths
        self.members = model.num_members
        if len(metrics_paths) != self.members:
            raise ValueError(f"a group of {self.members} members needs {self.members} metrics paths, got {len(metrics_paths)}")
        self.engine = engine or step_mod.resolve_engine(recipe, device.type, arch, distributed=world.enabled)

        # --- data: resident on the device as uint8, or streamed; either drawn by a seeded loader
        world.check_batch(recipe.batch_size)
        self.loader = training_batches(data, recipe, seed, device, world, stream_loader,
                                       epoch_augment=self.engine.epoch_augment,
                                       channels_last=self.engine.channels_last)
        if len(self.loader) == 0:  # the incomplete last batch is dropped, as in airbench
            raise ConfigError(f"recipes.<name>.batch_size {recipe.batch_size} exceeds the {self.loader.size} training "
                              f"examples of dataset {data.meta.get('name', '?')!r}; lower recipes.<name>.batch_size")

        # --- model, optimiser
        model.to(device)
        if self.engine.channels_last:
            model.to(memory_format=torch.channels_last)
        objective.to(device)
        self.opt = torch.optim.SGD(
            param_groups(model, recipe), lr=recipe.lr, momentum=recipe.momentum,
            nesterov=recipe.nesterov and recipe.momentum > 0,
            **({"fused": True} if self.engine.optimizer == "fused" else {"foreach": True}),
        )
        self.step, self.epoch, self.elapsed = 0, 0, 0.0
        self.history: list[list[dict]] = [[] for _ in metrics_paths]  # metric rows, one list per member

    def _resume(self, run_fingerprint: str) -> dict | None:
        """Resume from the last checkpoint of this very run, if any: at the end of an epoch, or within
        one (a checkpoint written on a signal: then the epoch's state so far is returned, else None)."""
        path = self.checkpoint_path
        ck = _load_checkpoint(path, self.device) if path.exists() else None
        if ck is None:
            return None
        if ck.get("fingerprint") != run_fingerprint:
            print(f"ignoring {path}: it belongs to a run with other settings", file=sys.stderr)
            return None
        self.model.load_state_dict(ck["model"])
        self.opt.load_state_dict(ck["optimizer"])
        self.loader.load_state_dict(ck["loader"] if "loader" in ck else {"generator": ck["generator"]})  # or older
        self.step, self.epoch, self.elapsed = ck["step"], ck["epoch"], ck["seconds"]
        self.history = ck["metrics"]
        _set_rng_states(ck.get("rng"), self.device)
        in_epoch = ck.get("in_epoch")
        where = f" (epoch {self.epoch + 1}, mid-epoch)" if in_epoch else f" (epoch {self.epoch})"
        print(f"resumed from {path} at step {self.step}{where}", file=sys.stderr)
        return in_epoch

    def _make_step(self):
        train_model = self.world.wrap(self.model, self.device)  # DistributedDataParallel under torchrun, else the model
        if self.recipe.compile:
            train_model = torch.compile(train_model, mode=self.recipe.compile_mode)
        # made after a resume: the step's tensors (learning rate, buffers, a CUDA graph) start from the loaded state
        return step_mod.make_step(self.model, train_model, self.objective, self.opt, self.recipe, self.engine,
                                  self.world, len(self.loader), self.device)

    def train(self, run_fingerprint: str, callbacks, progress: bool, stop_after_epochs: int | None, run_names,
              preemption: Preemption | None = None) -> dict:
        recipe, world = self.recipe, self.world
        in_epoch = self._resume(run_fingerprint)
        self.fingerprint, self.callbacks, self.run_names = run_fingerprint, callbacks, run_names
        self.saved_step = self.step  # the step of the checkpoint on disk (none newer needed)
        step_fn = self._make_step()
        for cb in callbacks:
            cb.on_start(self.model, self.step)
        self.bar = progress_bar(total=recipe.steps, initial=self.step, desc="train", unit="steps",
                                disable=not progress or not world.is_main, dynamic_ncols=True)
        start_step, epochs_this_run, last_of_epoch = self.step, 0, in_epoch is None  # else: within an epoch
        self.chance = None  # per member: the objective's loss for a uniform prediction (DIVERGENCE_FACTOR), first batch
        clock = _StepClock(self.device, start_step)
        if in_epoch is not None:  # the rest of the epoch a checkpoint written on a signal stopped in
            batches, t0, seen, first = self._continue_epoch(step_fn, in_epoch), time.perf_counter(), *in_epoch["at"]
        try:
            with preemption.loop() if preemption is not None else contextlib.nullcontext():
                for step in range(start_step, recipe.steps):
                    if last_of_epoch:  # a new epoch: a fresh pass of the loader
                        batches, t0, seen, first = self._start_epoch(step_fn), time.perf_counter(), 0, step
                    xb, yb = next(batches)
                    if self.engine.channels_last:  # resident batches come so already (no copy)
                        xb = xb.contiguous(memory_format=torch.channels_last)
                    step_fn.set_lr(recipe.lr_at(step))
                    logits, _ = step_fn(xb, yb)
                    if self.chance is None and not recipe.max_loss:
                        self.chance = self.objective.uniform_loss(logits.shape[-1]).to(
                            device=self.device, dtype=torch.float32).reshape(self.members)
                    seen += len(yb) * (world.size if world.enabled else 1)
                    self.bar.update(1)
                    for cb in callbacks:
                        cb.on_step(self.model, step + 1)
                    clock.stepped(step)
                    last_of_epoch = (step + 1) % len(self.loader) == 0
                    if last_of_epoch or step + 1 == recipe.steps:
                        with clock.aside():
                            self._end_epoch(step, step + 1 - first, step_fn.metrics, seen, t0)
                        epochs_this_run += 1
                        if (stop_after_epochs is not None and epochs_this_run >= stop_after_epochs
                                and step + 1 < recipe.steps):
                            raise Interrupted(f"stopped after {epochs_this_run} epoch(s) at step {step + 1}")
                    if step + 1 < recipe.steps and self._preempted(preemption, step + 1, last_of_epoch):
                        with clock.aside():
                            self._stop_on_signal(preemption, step, None if last_of_epoch else
                                                 {"metrics": self._epoch_metrics(step_fn.metrics), "at": (t0, seen, first)})
        finally:
            self.bar.close()
        clock.report(self.engine)
        step = max(start_step, recipe.steps)
        for cb in callbacks:
            cb.on_end(self.model, step)
        self.model.eval()
        finals = [rows[-1] if rows else {} for rows in self.history]
        return {"steps": step, "epochs": self.epoch, "seconds": self.elapsed, "final": finals,
                "engine": self.engine.describe()}

    def _start_epoch(self, step_fn):
        self.model.train()
        self.objective.train()
        step_fn.metrics.reset()
        return self.loader.epoch(self.epoch)  # this rank's share of each global batch

    def _epoch_metrics(self, metrics: step_mod.StepMetrics) -> dict:
        """The epoch's metrics so far, for a checkpoint (rank 0's): under torchrun the correct counts are
        each rank's own (summed at the epoch's end), so rank 0 keeps their sum; the losses are the global
        batches' on every rank already."""
        state = metrics.state_dict()
        if self.world.enabled:
            state["correct"] = self.world.sum(metrics.correct).cpu()
        return state

    def _continue_epoch(self, step_fn, in_epoch: dict):
        """The rest of the epoch a checkpoint written on a signal stopped in: its metrics so far, the
        loader from its position (:meth:`_resume` set it)."""
        self.model.train()
        self.objective.train()
        step_fn.metrics.load_state_dict(in_epoch["metrics"])
        if self.world.rank != 0:  # rank 0 holds the ranks' summed correct counts (_epoch_metrics)
            step_fn.metrics.correct.zero_()
        return self.loader.epoch(self.epoch)

    def _preempted(self, preemption: Preemption | None, steps: int, last_of_epoch: bool) -> bool:
        """Whether to stop after ``steps`` steps (:mod:`lspipe.engine.preempt`). Under torchrun the ranks
        agree every :data:`SYNC_STEPS` steps and at every epoch's end (one small all-reduce), so they stop
        at the same step; a single process reads its flag after every step."""
        if preemption is None:
            return False
        requested = preemption.requested(steps)
        if not self.world.enabled:
            return requested
        if steps % SYNC_STEPS and not last_of_epoch:
            return False
        return bool(self.world.sum(torch.tensor([float(requested)], device=self.device)).item() > 0)

    def _stop_on_signal(self, preemption: Preemption, step: int, in_epoch: dict | None) -> None:
        """The checkpoint of a run stopped on a signal after step ``step`` (0-based), then :class:`Preempted`.
        ``in_epoch`` (None at an epoch's end): the epoch's metrics so far and the loop's ``(t0, seen, first)``."""
        if in_epoch is not None:
            t0, seen, first = in_epoch["at"]
            in_epoch = {"metrics": in_epoch["metrics"], "at": (seen, first),
                        "seconds": self.elapsed + time.perf_counter() - t0}
        if self.saved_step != step + 1:  # else the epoch's checkpoint of this very step is on disk
            self._checkpoint(step, in_epoch)
        where = f"epoch {self.epoch + 1}, mid-epoch" if in_epoch is not None else f"the end of epoch {self.epoch}"
        raise Preempted(f"{preemption.why()} after step {step + 1} of {self.recipe.steps} ({where}): checkpoint "
                        f"{self.checkpoint_path} written")

    def _end_epoch(self, step: int, steps: int, metrics: step_mod.StepMetrics, seen: int, t0: float) -> None:
        """The end of an epoch (or of training; ``steps`` in this epoch): divergence checks, validation,
        metrics, checkpoint."""
        recipe, world = self.recipe, self.world
        bad = metrics.first_bad(steps, recipe.max_loss)
        if bad is not None:
            raise _divergence_error(self.run_names, step + 2 - steps + bad[0], bad[1], recipe, self.checkpoint_path)
        loss_sum = metrics.loss_sum
        if self.chance is not None and bool((loss_sum / max(seen, 1) > DIVERGENCE_FACTOR * self.chance).any()):
            raise _epoch_divergence_error(self.run_names, self.epoch + 1, (step + 2 - steps, step + 1),
                                          (loss_sum / max(seen, 1)).tolist(), self.chance.tolist(), self.checkpoint_path)
        self.epoch += 1
        correct = world.sum(metrics.correct)  # the global batches' correct counts
        world.broadcast_buffers(self.model)  # every rank validates rank 0's model (BatchNorm statistics)
        val_logits = self.loader.val_logits(self.model, self.device, recipe.eval_batch_size)
        self.elapsed += time.perf_counter() - t0
        for g, (rows, path) in enumerate(zip(self.history, self.metrics_paths)):
            val = evaluate_logits(val_logits[:, g], self.loader.val_labels)
            rows.append({
                "epoch": self.epoch, "step": step + 1, "lr": recipe.lr_at(step),
                "train_loss": float(loss_sum[g]) / max(seen, 1), "train_acc": float(correct[g]) / max(seen, 1),
                "val_loss": val["nll"], "val_acc": val["accuracy"], "seconds": round(self.elapsed, 3),
            })
            if world.is_main:
                _write_metrics(path, rows)
        if world.is_main:
            for cb in self.callbacks:
                if hasattr(cb, "on_epoch"):  # a tracker (lspipe.engine.tracking)
                    cb.on_epoch([rows[-1] for rows in self.history])
        self.bar.set_postfix(loss="/".join(f"{rows[-1]['train_loss']:.3f}" for rows in self.history),
                             val_acc="/".join(f"{rows[-1]['val_acc']:.3f}" for rows in self.history))
        if step + 1 < recipe.steps and self.epoch % recipe.checkpoint_every == 0:
            self._checkpoint(step)

    def _checkpoint(self, step: int, in_epoch: dict | None = None) -> None:
        """The checkpoint after step ``step`` (0-based): at an epoch's end, or within an epoch (``in_epoch``:
        its metrics so far, ``at`` = (images seen, its first step) and the seconds so far)."""
        if self.world.is_main:
            torch_save({
                "fingerprint": self.fingerprint, "model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                "loader": self.loader.state_dict(), "step": step + 1, "epoch": self.epoch,
                "metrics": self.history, "seconds": in_epoch["seconds"] if in_epoch else self.elapsed,
                "rng": _rng_states(self.device),
                **({"in_epoch": {"metrics": in_epoch["metrics"], "at": in_epoch["at"]}} if in_epoch else {}),
            }, self.checkpoint_path)
        self.saved_step = step + 1
        self.world.barrier()  # no rank goes on (or is stopped) before rank 0's checkpoint is complete
        for cb in self.callbacks:
            cb.on_checkpoint(step + 1)


# --------------------------------------------------------------------------- a group of members


class Members(nn.Module):
    """G ordinary models side by side, trained as one group by :func:`fit` (a single run is G = 1).

    ``forward(x)`` -> ``B x G x K`` (each model on the same ``x``); :meth:`clip_grad_norm_` clips
    each model's gradient as ``torch.nn.utils.clip_grad_norm_`` does for a run of its own. Each
    model keeps its own parameters, gradients and SGD state, and SGD acts per parameter, so every
    member's result is bit-identical to its separate run on the CPU in float32.
    """

    def __init__(self, models: Sequence[model_registry.Classifier]):
        super().__init__()
        if not models:
            raise ValueError("a group needs at least one model")
        self.members = nn.ModuleList(models)
        self.num_members = len(models)

    def forward(self, x: torch.Tensor, features: bool = False):
        outs = [m(x, features=features) if features else m(x) for m in self.members]
        if features:
            return torch.stack([o[0] for o in outs], 1), torch.stack([o[1] for o in outs], 1)
        return torch.stack(outs, 1)

    def dense_parameters(self) -> list[nn.Parameter]:
        return [p for m in self.members for p in m.dense_parameters()]

    @torch.no_grad()
    def clip_grad_norm_(self, max_norm: float) -> torch.Tensor:
        """``torch.nn.utils.clip_grad_norm_`` per member, in one pass (:func:`lspipe.engine.fused.clip_member_grads_`:
        the same numbers, bit for bit on the CPU); returns the G norms."""
        return clip_member_grads_([[p.grad for p in m.parameters() if p.grad is not None] for m in self.members],
                                  max_norm)

    def member_state_dict(self, member: int) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.members[member].state_dict().items()}


def train_group(
    arch: str,
    data: Prepared | StreamIndex,
    recipe: Recipe,
    objective: Objective,
    *,
    seed: int,
    fuse: bool = default("teachers[].fuse"),
    device: torch.device | str = "cpu",
    checkpoint_path: str | Path,
    metrics_paths: Sequence[str | Path],
    run_fingerprint: str = "",
    callbacks: Sequence[Callback] = (),
    progress: bool = default("progress"),
    stop_after_epochs: int | None = None,
    run_names: Sequence[str] = (),
    world: World = SINGLE,
    stream_loader: dict | None = None,
    engine: Engine | None = None,
    preemption: Preemption | None = None,
) -> tuple[list[model_registry.Classifier], dict]:
    """Train G models of ``arch`` on one batch stream, one per member of ``objective``; returns the
    G trained models and the summary of :func:`fit`.

    Every member is initialised as a run of its own (``torch.manual_seed(seed); build_model(arch,
    data)``) and sees the batches of ``seed``. The members train side by side (:class:`Members`:
    bit-identical to separate runs on the CPU) or, with ``fuse``, as one
    :class:`lspipe.engine.fused.FusedClassifier` (grouped kernels; equal to separate runs up to
    floating-point rounding). This is every training job: a single run (G = 1), the alphas of a
    teacher grid, lockstep and fused students.
    """
    singles = []
    for _ in range(len(objective)):
        torch.manual_seed(seed)
        singles.append(build_model(arch, data))
    model = fuse_models(singles) if fuse else Members(singles)
    summary = fit(
        model, data, recipe, objective, seed=seed, device=device, checkpoint_path=checkpoint_path,
        metrics_paths=metrics_paths, run_fingerprint=run_fingerprint, callbacks=callbacks, progress=progress,
        stop_after_epochs=stop_after_epochs, run_names=run_names, world=world, stream_loader=stream_loader,
        arch=arch, engine=engine, preemption=preemption,
    )
    model.cpu()
    out = []
    for i in range(len(objective)):
        m = build_model(arch, data)
        m.load_state_dict(model.member_state_dict(i))
        out.append(m.eval())
    return out, summary


# --------------------------------------------------------------------------- command line


def member_meta(value: dict, teachers: dict[str, dict]) -> dict:
    """What a model's metadata says of its objective: ``objective`` (the value), ``alpha`` (its label
    smoothing; 0 for other kinds) and, for a distilled student, its teacher (path, content hash,
    arch, alpha) and the distillation settings (temperature, beta, form)."""
    meta = {"objective": value, "alpha": value["alpha"] if value["kind"] == "ls" else 0.0}
    if value["kind"] == "kd":
        t = teachers[value["teacher"]]
        meta.update(teacher=value["teacher"], teacher_sha256=t["sha256"], teacher_arch=t["arch"],
                    teacher_alpha=t["alpha"], temperature=value["T"], beta=value["beta"], form=value["form"])
    return meta


def cmd_train(a):
    """``lspipe train`` (aliases ``train-fused``, ``train-lockstep``): G models of one architecture on
    one batch stream, one per objective of ``--objectives``; each gets its ordinary model.pt and
    metrics CSV. The job's skeleton: threads, stale temporaries, device, data, recipe, teachers and
    their identity checks, fingerprint, completed-run record, training (resumable), saving."""
    setup_torch(a.threads)
    world = dist_mod.from_env()
    # SIGTERM / SIGUSR1: a checkpoint at the next step boundary and status 75 while the loop runs
    # (lspipe.engine.preempt); before and after it, as any command (Terminated, status 143)
    with Preemption().watching() as preemption:
        try:
            _train_job(a, world, preemption)
        finally:
            dist_mod.teardown(world)


def _train_job(a, world: World, preemption: Preemption | None = None) -> None:
    """The body of :func:`cmd_train` (``world``: the processes of a torchrun launch, or one)."""
    if not isinstance(a.objectives, list) or not a.objectives:
        raise ConfigError(f"--objectives must be a JSON list of objective values, got {a.objectives!r}")
    values = [check_objective(v, f"--objectives[{i}]") for i, v in enumerate(a.objectives)]
    g = len(values)
    for what, vals in (("--out", a.out), ("--metrics", a.metrics), ("--runs", a.runs)):
        if vals is not None and len(vals) != g:
            raise ConfigError(f"{what} needs one value per objective ({g}), got {len(vals)}")
    if a.probe and world.enabled:
        raise ConfigError("--probe records in one process: launch a probed run without torchrun")
    if getattr(a, "tensorboard", None):
        require_tensorboard()
    outs = [Path(p) for p in a.out]
    ckpt = Path(a.checkpoint) if a.checkpoint else outs[0].with_name(outs[0].name + ".ckpt")
    # one probe trace per member (a placeholder without --probe): --probe-out, or probe.h5 beside each model
    probe_outs = ([Path(p) for p in a.probe_out] if a.probe_out else
                  [o.with_name("probe.h5") for o in outs] if a.probe else [])
    if probe_outs and len(probe_outs) != g:
        raise ConfigError(f"--probe-out needs one value per objective ({g}), got {len(probe_outs)}")
    # temporary files of this job's outputs left by a killed run (SIGKILL during a write)
    device = resolve_device(a.device)
    world, device = dist_mod.init(getattr(a, "dist_backend", None), device)
    if world.is_main:
        remove_stale_temps(ckpt, *outs, *a.metrics, *probe_outs)
    world.barrier()
    data = source.load(a.data)
    recipe = Recipe.from_dict(a.recipe)
    runs = a.runs or [p.parent.name for p in outs]
    teachers, teacher_models = {}, {}
    expect_teachers = getattr(a, "expect_teachers", None) or {}
    for path in dict.fromkeys(v["teacher"] for v in values if KINDS[v["kind"]].teacher):
        model, tmeta = load_model(path, device)
        # the teacher its place, data, config (recipe, objective, seed) and its students' run names say
        check_teacher(path, tmeta, data, [r for r, v in zip(runs, values) if v.get("teacher") == path],
                      expect_teachers.get(path))
        teacher_models[path] = model
        # the teacher's content (not just its path) enters the fingerprint, so a student checkpoint left
        # over from before its teacher was retrained is never resumed
        teachers[path] = {"sha256": file_sha256(path), "arch": tmeta.get("arch"), "alpha": tmeta.get("alpha")}
    objective = Objective(values, teacher_models)
    base = {"dataset": data.meta["name"], "arch": a.arch, "role": a.role, "seed": a.seed, "recipe": a.recipe,
            "data_meta": data.meta, "data_digest": data.digest}
    metas = [{**base, "run": r, **member_meta(v, teachers)} for r, v in zip(runs, values)]
    group = {"runs": runs, "fused": bool(a.fuse)} if g > 1 or a.fuse else None  # a job of several models
    callbacks = []
    if a.probe:
        source.require_resident(data, "the mutual-information probe (teachers[].probe)")
        callbacks.append(ProbeRecorder(probe_outs, data, device=device, recipe=recipe, **a.probe))  # every member
    elif world.is_main:  # a teacher of a grid without a probe: its probe output is a placeholder
        for path in probe_outs:
            write_probe_placeholder(path)
    if getattr(a, "tensorboard", None) and world.is_main:  # tracking.tensorboard: scalars of every member
        callbacks.append(TensorBoardLogger([run_dir(a.tensorboard, data.meta["name"], a.arch, a.role, r) for r in runs]))
    # the job's identity: every member's settings (the recipe without the settings that change no weight:
    # lspipe.core.recipe.RUN_SETTINGS), objective, seed, teacher and the data's content digest
    fp = fingerprint({"members": [{k: (recipe_identity(v) if k == "recipe" else v) for k, v in m.items() if k != "run"}
                                  for m in metas], "probe": a.probe, "group": group and group["fused"]})
    member_outputs = [[out, Path(m)] for out, m in zip(outs, a.metrics)]
    if a.probe:
        for outputs, path in zip(member_outputs, probe_outs):
            outputs.append(path)
    if world.broadcast_flag(world.is_main and complete.restore_group(outs, member_outputs, fp)):
        world.barrier()
        return  # finished before, but Snakemake did not record it (see lspipe.engine.complete)
    models, summary = train_group(
        a.arch, data, recipe, objective, seed=a.seed, fuse=a.fuse, device=device, checkpoint_path=ckpt,
        metrics_paths=a.metrics, run_fingerprint=fp, callbacks=callbacks, progress=a.progress,
        stop_after_epochs=a.stop_after_epochs, run_names=runs, world=world, stream_loader=a.stream_loader,
        preemption=preemption,
    )
    if not world.is_main:  # rank 0 writes the models, records and removes the checkpoint
        world.barrier()
        return
    for i, (model, out, meta) in enumerate(zip(models, outs, metas)):
        # the device type it trained on: the workflow compares it, not the `device` alias (auto, cuda:1, ...)
        meta = {**meta, "engine": summary["engine"], "device_type": device.type,
                "summary": {**{k: v for k, v in summary.items() if k != "engine"}, "final": summary["final"][i]}}
        if group:
            meta["lockstep"] = group
        save_model(out, model, model_spec(a.arch, data), meta)
        print(f"trained {a.arch} ({a.role}{f', member {i + 1}/{g}' if g > 1 else ''}"
              f"{', fused' if a.fuse else ''}) -> {out}: {json.dumps(meta['summary']['final'])}")
    complete.save_group(outs, member_outputs, fp)
    ckpt.unlink(missing_ok=True)
    world.barrier()
