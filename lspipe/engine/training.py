"""The training engine, shared by teachers and students.

It reads top to bottom like nanoGPT's loop, one flat loop over the optimiser steps: the whole
training split lives on the device as uint8 and a :class:`~lspipe.core.augment.DeviceLoader` draws
each batch from a seeded permutation and augments it on the device; each step computes the objective (label-smoothed CE or distillation, :mod:`lspipe.core.losses`), step SGD with
Nesterov momentum under a step-based learning-rate schedule, clip gradients. On CUDA the model
runs in bf16 autocast and channels_last (evaluation and dumps, :func:`~lspipe.core.inference.predict`, always run in
float32); on the CPU in channels_last (``cpu_channels_last``, on by
default: +30% for ResNets with oneDNN) and in bf16 only when the recipe asks (``cpu_amp``). After every epoch: validation accuracy/loss, a row in
the metrics CSV and (every ``checkpoint_every`` epochs) an atomic checkpoint from which an
interrupted run resumes exactly where it stopped (model, optimiser, step, RNG state). A
checkpoint is only resumed when its fingerprint (recipe, architecture, objective, seed, data)
matches the current run, so changed hyper-parameters never continue a stale run.

The same loop trains a *fused* model (:mod:`lspipe.engine.fused`: G same-architecture members in one
network, ``model.num_members == G``): its logits are B x G x K, its objective returns one loss per
member (their sum is minimised, so each member gets exactly its own gradient), gradients are
clipped per member (``model.clip_grad_norm_``) and each member gets its own metrics CSV. The
loop does not branch on it: an ordinary model is one member (B x 1 x K logits, one loss).
"""

from __future__ import annotations

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
from tqdm.auto import tqdm

from lspipe.base.defaults import default
from lspipe.base.errors import ConfigError, TrainingDiverged
from lspipe.base.io import atomic_path, file_sha256, remove_stale_temps, torch_save
from lspipe.core import data as data_mod
from lspipe.core import models as model_registry
from lspipe.core.augment import DeviceLoader
from lspipe.core.data import Prepared
from lspipe.core.inference import evaluate_logits, predict, resolve_device, setup_torch
from lspipe.core.losses import Distillation, SmoothedCE
from lspipe.core.models import build_model, check_teacher, load_model, model_spec, save_model
from lspipe.core.recipe import Recipe
from lspipe.engine import complete
from lspipe.engine.probe import ProbeRecorder
from lspipe.engine.probefile import write_probe_placeholder

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
    """Hooks into the loop (e.g. the mutual-information probe). All methods are optional."""

    def on_start(self, model: nn.Module, step: int) -> None: ...
    def on_step(self, model: nn.Module, step: int) -> None: ...
    def on_checkpoint(self, step: int) -> None: ...
    def on_end(self, model: nn.Module, step: int) -> None: ...


# A run diverged when an epoch's mean training loss exceeds this many times the loss of a uniform
# prediction (all logits equal: log K for cross-entropy and label smoothing, s log K for the
# soft term of distillation): the model then puts, on average, less than K^-10 of probability on
# the targets -- far worse than guessing. Applies when the recipe sets no max_loss.
DIVERGENCE_FACTOR = 10.0


def _divergence_error(run_name, step: int, losses: list[float], recipe: Recipe, checkpoint_path: Path) -> TrainingDiverged:
    names = list(run_name) if isinstance(run_name, (list, tuple)) else [run_name or "?"]
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


def _epoch_divergence_error(run_name, epoch: int, steps: tuple[int, int], means: list[float], chance: list[float],
                            checkpoint_path: Path) -> TrainingDiverged:
    names = list(run_name) if isinstance(run_name, (list, tuple)) else [run_name or "?"]
    bad = [i for i, (m, c) in enumerate(zip(means, chance)) if m > DIVERGENCE_FACTOR * c]
    what = ", ".join(f"{names[i] if i < len(names) else f'member {i}'} (mean loss {means[i]:.4g}, uniform "
                     f"prediction {chance[i]:.4g})" for i in bad)
    return TrainingDiverged(
        f"training diverged in epoch {epoch} (steps {steps[0]}-{steps[1]}): the mean training loss of run {what} "
        f"exceeds {DIVERGENCE_FACTOR:g} x the loss of a uniform prediction; lower recipes.<name>.lr, set "
        f"recipes.<name>.grad_clip or warmup_steps, then rerun (recipes.<name>.max_loss replaces this bound by a "
        f"per-step one; {_kept(checkpoint_path)})"
    )


class Interrupted(Exception):
    """Raised when ``stop_after_epochs`` ends a run early (used to test and time-box resume)."""


def _load_checkpoint(path: Path, device: torch.device) -> dict | None:
    """A checkpoint's content, or None (with a one-line warning naming it) if it cannot be read:
    the run then starts fresh and the file is replaced by its next checkpoint."""
    try:
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


def fit(
    model: model_registry.Classifier,
    data: Prepared,
    recipe: Recipe,
    objective: nn.Module,
    *,
    seed: int,
    device: torch.device | str = "cpu",
    checkpoint_path: str | Path,
    metrics_path: str | Path | Sequence[str | Path],
    run_fingerprint: str = "",
    callbacks: Sequence[Callback] = (),
    progress: bool = default("progress"),
    stop_after_epochs: int | None = None,
    run_name: str | Sequence[str] = "",
) -> dict:
    """Train ``model`` in place; returns a summary (steps, epochs, final metrics, seconds).

    For a fused model (``num_members`` G), ``metrics_path`` is a list of G paths and the summary's
    ``final`` a list of G metric rows.

    A non-finite loss (or one above ``recipe.max_loss``) raises :class:`TrainingDiverged` at the
    end of that epoch, naming ``run_name``, the first such step and its loss; so does, when the
    recipe sets no ``max_loss``, an epoch whose mean training loss exceeds
    :data:`DIVERGENCE_FACTOR` times the loss of a uniform prediction (``objective.uniform_loss``:
    log K for cross-entropy; else the objective at all-equal logits on the first batch). Nothing is written for that
    epoch, so the last checkpoint stays for inspection. The checks keep the loss on the device (no
    synchronisation per step).
    """
    device = torch.device(device)
    on_cuda = device.type == "cuda"
    use_amp = recipe.amp if on_cuda else recipe.cpu_amp
    channels_last = recipe.channels_last if on_cuda else recipe.cpu_channels_last
    # one code path for both: an ordinary model is handled as one member (its B x K logits seen as
    # B x 1 x K, its scalar loss as one loss); only the arguments and the summary keep their shapes
    fused = hasattr(model, "num_members")
    members = model.num_members if fused else 1
    checkpoint_path = Path(checkpoint_path)
    metrics_paths = [Path(p) for p in (metrics_path if fused else [metrics_path])]
    if len(metrics_paths) != members:
        raise ValueError(f"a fused model of {members} members needs {members} metrics paths, got {len(metrics_paths)}")

    # --- data, resident on the device as uint8, drawn by a seeded loader
    gen = torch.Generator(device=device)
    gen.manual_seed(seed + 1)
    loader = DeviceLoader(torch.from_numpy(data.x["train"]).to(device), torch.from_numpy(data.y["train"]).to(device),
                          recipe.batch_size, pad=recipe.augment["pad"], flip=recipe.augment["flip"], generator=gen)
    if len(loader) == 0:  # the incomplete last batch is dropped, as in airbench
        raise ConfigError(f"recipes.<name>.batch_size {recipe.batch_size} exceeds the {len(loader.x)} training "
                          f"examples of dataset {data.meta.get('name', '?')!r}; lower recipes.<name>.batch_size")

    # --- model, optimiser
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    objective.to(device)
    opt = torch.optim.SGD(
        param_groups(model, recipe), lr=recipe.lr, momentum=recipe.momentum,
        nesterov=recipe.nesterov and recipe.momentum > 0,
    )
    step, epoch, elapsed = 0, 0, 0.0
    history: list[list[dict]] = [[] for _ in metrics_paths]  # metric rows, one list per member

    # --- resume from the last checkpoint of this very run (always at the end of an epoch), if any
    ck = _load_checkpoint(checkpoint_path, device) if checkpoint_path.exists() else None
    if ck is not None:
        if ck.get("fingerprint") == run_fingerprint:
            model.load_state_dict(ck["model"])
            opt.load_state_dict(ck["optimizer"])
            gen.set_state(ck["generator"].cpu())
            step, epoch, elapsed = ck["step"], ck["epoch"], ck["seconds"]
            history = ck["metrics"] if fused else [ck["metrics"]]
            print(f"resumed from {checkpoint_path} at step {step} (epoch {epoch})", file=sys.stderr)
        else:
            print(f"ignoring {checkpoint_path}: it belongs to a run with other settings", file=sys.stderr)

    train_model = torch.compile(model, mode=recipe.compile_mode) if recipe.compile else model
    for cb in callbacks:
        cb.on_start(model, step)

    bar = tqdm(total=recipe.steps, initial=step, desc="train", disable=not progress, dynamic_ncols=True,
               mininterval=0.5 if sys.stderr.isatty() else 30.0)
    start_step, epochs_this_run, last_of_epoch = step, 0, True  # a resumed run starts at an epoch's start
    chance = None  # per member: the objective's loss for a uniform prediction (DIVERGENCE_FACTOR), first batch
    for step in range(start_step, recipe.steps):
        if last_of_epoch:  # a new epoch: a fresh pass of the loader
            t0 = time.perf_counter()
            model.train()
            objective.train()
            batches = iter(loader)
            loss_sum = torch.zeros(members, device=device)
            correct = torch.zeros(members, device=device, dtype=torch.long)
            seen = 0
            bad_step = torch.full((), -1, dtype=torch.long, device=device)  # first diverged step of this epoch
            bad_loss = torch.zeros(members, device=device)
        xb, yb = next(batches)
        if channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        lr = recipe.lr_at(step)
        for g in opt.param_groups:
            g["lr"] = lr
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp):
            logits = train_model(xb)
            loss = objective(logits, yb, xb)  # a scalar, or one loss per member of a fused model
        opt.zero_grad(set_to_none=True)
        (loss.sum() * recipe.loss_scale).backward()
        if recipe.grad_clip:
            model.clip_grad_norm_(recipe.grad_clip)
        opt.step()
        if chance is None and not recipe.max_loss:
            k = logits.shape[-1]
            chance = (objective.uniform_loss(k) if hasattr(objective, "uniform_loss") else
                      objective(torch.zeros_like(logits, dtype=torch.float32), yb, xb).detach())
            chance = torch.as_tensor(chance, dtype=torch.float32).to(device).reshape(members)
        lv = loss.detach().float().reshape(members)
        diverged = ~torch.isfinite(lv).all()
        if recipe.max_loss:
            diverged = diverged | (lv > recipe.max_loss).any()
        first = diverged & (bad_step < 0)
        bad_step = torch.where(first, step + 1, bad_step)
        bad_loss = torch.where(first, lv, bad_loss)
        loss_sum += loss.detach().reshape(members) * len(yb)
        correct += (logits.detach().reshape(len(yb), members, -1).argmax(-1) == yb[:, None]).sum(0)
        seen += len(yb)
        bar.update(1)
        for cb in callbacks:
            cb.on_step(model, step + 1)
        last_of_epoch = (step + 1) % len(loader) == 0
        if not (last_of_epoch or step + 1 == recipe.steps):
            continue

        # --- end of an epoch (or of training): divergence check, validation, metrics, checkpoint
        if int(bad_step) >= 0:
            bar.close()
            raise _divergence_error(run_name, int(bad_step), bad_loss.tolist(), recipe, checkpoint_path)
        if chance is not None and bool((loss_sum / max(seen, 1) > DIVERGENCE_FACTOR * chance).any()):
            bar.close()
            raise _epoch_divergence_error(run_name, epoch + 1, (step + 2 - seen // len(yb), step + 1),
                                          (loss_sum / max(seen, 1)).tolist(), chance.tolist(), checkpoint_path)
        epoch += 1
        epochs_this_run += 1
        val_logits = predict(model, data.x["val"], device, recipe.eval_batch_size)
        val_logits = val_logits.reshape(len(val_logits), members, -1)
        elapsed += time.perf_counter() - t0
        for g, (rows, path) in enumerate(zip(history, metrics_paths)):
            val = evaluate_logits(val_logits[:, g], data.y["val"])
            rows.append({
                "epoch": epoch, "step": step + 1, "lr": recipe.lr_at(step),
                "train_loss": float(loss_sum[g]) / max(seen, 1), "train_acc": float(correct[g]) / max(seen, 1),
                "val_loss": val["nll"], "val_acc": val["accuracy"], "seconds": round(elapsed, 3),
            })
            _write_metrics(path, rows)
        bar.set_postfix(loss="/".join(f"{rows[-1]['train_loss']:.3f}" for rows in history),
                        val_acc="/".join(f"{rows[-1]['val_acc']:.3f}" for rows in history))
        if step + 1 < recipe.steps and epoch % recipe.checkpoint_every == 0:
            torch_save({
                "fingerprint": run_fingerprint, "model": model.state_dict(), "optimizer": opt.state_dict(),
                "generator": gen.get_state(), "step": step + 1, "epoch": epoch,
                "metrics": history if fused else history[0], "seconds": elapsed,
            }, checkpoint_path)
            for cb in callbacks:
                cb.on_checkpoint(step + 1)
        if stop_after_epochs is not None and epochs_this_run >= stop_after_epochs and step + 1 < recipe.steps:
            bar.close()
            raise Interrupted(f"stopped after {epochs_this_run} epoch(s) at step {step + 1}")
    step = max(start_step, recipe.steps)
    bar.close()
    for cb in callbacks:
        cb.on_end(model, step)
    model.eval()
    finals = [rows[-1] if rows else {} for rows in history]
    return {"steps": step, "epochs": epoch, "seconds": elapsed, "final": finals if fused else finals[0]}


# --------------------------------------------------------------------------- command line


def cmd_train(a):
    setup_torch(a.threads)
    out = Path(a.out)
    ckpt = out.with_name(out.name + ".ckpt")
    # temporary files of this job's outputs left by a killed run (SIGKILL during a write)
    remove_stale_temps(out, ckpt, a.metrics, *([a.probe_out] if a.probe_out else [out.with_name("probe.h5")]))
    device = resolve_device(a.device)
    data = data_mod.load(a.data)
    recipe = Recipe.from_dict(a.recipe)
    meta = {
        "dataset": data.meta["name"], "arch": a.arch, "role": a.role, "run": a.run or out.parent.name,
        "alpha": a.alpha, "seed": a.seed, "recipe": a.recipe, "data_meta": data.meta, "data_digest": data.digest,
    }
    if a.teacher:
        teacher, tmeta = load_model(a.teacher, device)
        check_teacher(a.teacher, tmeta, data, [meta["run"]])  # the teacher its place, data and the student's run name say
        objective = Distillation(teacher, a.temperature, a.beta, form=a.form)
        # the teacher's content (not just its path) enters the checkpoint fingerprint, so a student
        # checkpoint left over from before its teacher was retrained is never resumed
        meta.update(teacher=str(a.teacher), teacher_sha256=file_sha256(a.teacher), teacher_arch=tmeta.get("arch"),
                    teacher_alpha=tmeta.get("alpha"), temperature=a.temperature, beta=a.beta, form=a.form)
    else:
        objective = SmoothedCE(a.alpha)
    torch.manual_seed(a.seed)
    model = build_model(a.arch, data)
    callbacks = []
    if a.probe:
        probe_out = a.probe_out or out.with_name("probe.h5")
        callbacks.append(ProbeRecorder(probe_out, data, device=device, recipe=recipe, **a.probe))
    elif a.probe_out:  # a teacher of a grid without a probe: its probe output is a placeholder
        write_probe_placeholder(a.probe_out)
    # the run's identity: settings, objective, seed, teacher and the data's content digest
    fp = fingerprint({k: v for k, v in meta.items() if k != "run"} | {"probe": a.probe})
    outputs = [out, Path(a.metrics)] + ([callbacks[0].path] if a.probe else [])
    if complete.restore(out, outputs, fp):  # finished before, but Snakemake did not record it
        return
    summary = fit(
        model, data, recipe, objective, seed=a.seed, device=device, checkpoint_path=ckpt,
        metrics_path=a.metrics, run_fingerprint=fp, callbacks=callbacks, progress=a.progress,
        stop_after_epochs=a.stop_after_epochs, run_name=meta["run"],
    )
    meta["summary"] = summary
    save_model(out, model, model_spec(a.arch, data), meta)
    complete.save(out, outputs, fp)
    ckpt.unlink(missing_ok=True)
    print(f"trained {a.arch} ({a.role}) -> {out}: {json.dumps(summary['final'])}")
