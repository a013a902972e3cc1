"""Lockstep students: the students of one seed that share a teacher train on one batch stream.

A student of seed s sees exactly the batches, in the same order and with the same augmentation,
as every other student of seed s (:func:`lspipe.engine.training.fit` draws them from a generator seeded by
s alone). So the students of the hard-target teacher at every temperature T of the grid, or the
student baselines (no teacher) at every alpha, can train *in lockstep*: one batch, one teacher
forward, every student's loss and SGD step from it. :func:`train_lockstep` does this with the
ordinary engine (:func:`lspipe.engine.training.fit`):

* **lockstep** (``fuse=False``): the G students stay G ordinary models
  (:class:`LockstepModels`, ``B x G x K`` logits); each student's objective is the ordinary one
  (:class:`lspipe.core.losses.Distillation` or :class:`lspipe.core.losses.SmoothedCE`), collected by
  :class:`PerMember`; the teacher is wrapped in :class:`SharedTeacher`, which runs its forward
  once per batch and hands the same logits to every student. Each student has its own
  parameters, gradients (the summed loss's gradient w.r.t. student g is exactly student g's),
  per-student gradient clipping, and SGD state; SGD acts per parameter, so the result is
  **bit-identical** to separate runs on the CPU in float32 (tested in tests/test_lockstep.py).
* **fused** (``fuse=True``): the G students run as one :class:`lspipe.engine.fused.FusedClassifier`
  (grouped kernels, one forward/backward per step) with :class:`lspipe.engine.fused.FusedDistillation`
  or :class:`lspipe.engine.fused.FusedSmoothedCE`; equal to separate runs up to floating-point rounding
  (grouped vs. dense kernels: within 1e-5 over the tested float32 runs; longer runs drift apart
  slowly, as the fused teachers do, docs/benchmarks.md). Meant for a GPU, where one small student
  leaves the chip idle.

Each student still gets its ordinary ``model.pt`` (the state dict and metadata of a separate
``lspipe train`` run, plus a ``lockstep`` record) and ``metrics.csv``. The job has one resumable
checkpoint (``<first model.pt>.lockstep.ckpt``: every student's weights and optimiser state, the
shared step and generator), so an interrupted lockstep job resumes exactly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch
import torch.nn as nn

from lspipe.base.defaults import default
from lspipe.base.errors import ConfigError
from lspipe.base.io import file_sha256, remove_stale_temps
from lspipe.core import data as data_mod
from lspipe.core import models as M
from lspipe.core.inference import resolve_device, setup_torch
from lspipe.core.losses import Distillation, SmoothedCE
from lspipe.core.models import build_model, check_teacher, load_model, model_spec, save_model
from lspipe.core.recipe import Recipe
from lspipe.engine import complete
from lspipe.engine.fused import FusedDistillation, FusedSmoothedCE
from lspipe.engine.fused import fuse as fuse_models
from lspipe.engine.training import fingerprint, fit


class SharedTeacher(nn.Module):
    """A teacher whose forward runs once per input batch however many students ask for it.

    The output of the last call is kept together with the input tensor it was computed from;
    a call with that very tensor (same object, not modified in place since) returns it again.
    """

    def __init__(self, teacher: nn.Module):
        super().__init__()
        self.teacher = teacher
        self._last: tuple | None = None  # (input tensor, its version counter, output)
        self.forwards = 0  # teacher forwards actually run (for tests and the benchmark)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = self._last
        if last is not None and last[0] is x and last[1] == x._version and not torch.is_grad_enabled():
            return last[2]
        out = self.teacher(x)
        self.forwards += 1
        self._last = (x, x._version, out) if not torch.is_grad_enabled() else None
        return out


class PerMember(nn.Module):
    """G ordinary objectives as one: logits ``B x G x K`` -> the G students' losses."""

    def __init__(self, objectives: Sequence[nn.Module]):
        super().__init__()
        self.objectives = nn.ModuleList(objectives)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        return torch.stack([obj(logits[:, g], labels, inputs) for g, obj in enumerate(self.objectives)])

    def uniform_loss(self, num_classes: int) -> torch.Tensor:
        """Each student's loss for a uniform prediction (its objective's ``uniform_loss``)."""
        return torch.stack([obj.uniform_loss(num_classes).reshape(()) for obj in self.objectives])


class LockstepModels(nn.Module):
    """G ordinary models side by side, with the interface :func:`lspipe.engine.training.fit` uses for fused models.

    ``forward(x)`` -> ``B x G x K`` (each model on the same ``x``); :meth:`clip_grad_norm_` clips
    each model's gradient as ``torch.nn.utils.clip_grad_norm_`` does for a separate run.
    """

    def __init__(self, models: Sequence[M.Classifier]):
        super().__init__()
        if not models:
            raise ValueError("lockstep training needs at least one model")
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
        return torch.stack([torch.nn.utils.clip_grad_norm_(m.parameters(), max_norm) for m in self.members])

    def member_state_dict(self, member: int) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.members[member].state_dict().items()}


def train_lockstep(
    arch: str,
    data,
    recipe,
    *,
    seed: int,
    alphas: Sequence[float] | None = None,
    teacher: nn.Module | None = None,
    temperatures: Sequence[float] | None = None,
    beta: float = default("distillation[].beta"),
    form: str = default("distillation[].form"),
    fuse: bool = default("distillation[].fuse_students"),
    device: torch.device | str = "cpu",
    checkpoint_path: str | Path,
    metrics_paths: Sequence[str | Path],
    run_fingerprint: str = "",
    progress: bool = default("progress"),
    stop_after_epochs: int | None = None,
    callbacks: Sequence = (),
    run_names: Sequence[str] = (),
) -> tuple[list[M.Classifier], dict]:
    """Train G students of seed ``seed`` in lockstep; returns the G single models and the summary.

    Either ``alphas`` (student baselines: label-smoothed cross-entropy, one student per alpha) or
    ``teacher`` and ``temperatures`` (students distilled from the one teacher, one per T; ``beta``
    and ``form`` as :class:`lspipe.core.losses.Distillation`). Every student is initialised as its
    separate run (``torch.manual_seed(seed); build_model(arch, data)``).
    """
    if (alphas is None) == (teacher is None):
        raise ValueError("lockstep students need either alphas (baselines) or a teacher and temperatures")
    if teacher is not None and not temperatures:
        raise ValueError("distilled lockstep students need one temperature each")
    g = len(alphas) if alphas is not None else len(temperatures)
    if g < 1 or len(metrics_paths) != g:
        raise ValueError(f"{g} students need {g} metrics paths, got {len(metrics_paths)}")
    singles = []
    for _ in range(g):
        torch.manual_seed(seed)
        singles.append(build_model(arch, data))
    if fuse:
        model = fuse_models(singles)
        objective = (FusedSmoothedCE(alphas) if alphas is not None
                     else FusedDistillation([teacher] * g, temperatures, beta, form=form))
    else:
        model = LockstepModels(singles)
        if alphas is not None:
            objective = PerMember([SmoothedCE(a) for a in alphas])
        else:
            shared = SharedTeacher(teacher)
            objective = PerMember([Distillation(shared, t, beta, form=form) for t in temperatures])
    summary = fit(
        model, data, recipe, objective, seed=seed, device=device, checkpoint_path=checkpoint_path,
        metrics_path=list(metrics_paths), run_fingerprint=run_fingerprint, progress=progress,
        stop_after_epochs=stop_after_epochs, callbacks=callbacks, run_name=list(run_names),
    )
    model.cpu()
    out = []
    for i in range(g):
        m = build_model(arch, data)
        m.load_state_dict(model.member_state_dict(i))
        out.append(m.eval())
    return out, summary


# --------------------------------------------------------------------------- CLI


def cmd_train_lockstep(a):
    setup_torch(a.threads)
    distilled = a.teacher is not None
    if distilled == (a.alphas is not None):
        raise ConfigError("give either --alphas (baselines) or --teacher and --temperatures")
    if distilled and not a.temperatures:
        raise ConfigError("--teacher needs --temperatures (one per student)")
    values = a.temperatures if distilled else a.alphas
    g = len(values)
    for what, vals in (("--out", a.out), ("--metrics", a.metrics), ("--runs", a.runs)):
        if vals is not None and len(vals) != g:
            raise ConfigError(f"{what} needs one value per student ({g}), got {len(vals)}")
    outs = [Path(p) for p in a.out]
    ckpt = Path(a.checkpoint) if a.checkpoint else outs[0].with_name(outs[0].name + ".lockstep.ckpt")
    remove_stale_temps(ckpt, *outs, *a.metrics)  # left by a killed run (SIGKILL during a write)
    device = resolve_device(a.device)
    data = data_mod.load(a.data)
    recipe = Recipe.from_dict(a.recipe)
    runs = a.runs or [p.parent.name for p in outs]
    # each student's metadata is that of its separate `lspipe train` run (lspipe.engine.training.cmd_train)
    base = {"dataset": data.meta["name"], "arch": a.arch, "role": "student", "seed": a.seed, "recipe": a.recipe,
            "data_meta": data.meta, "data_digest": data.digest}
    metas = []
    teacher = None
    if distilled:
        teacher, tmeta = load_model(a.teacher, device)
        check_teacher(a.teacher, tmeta, data, runs)  # the teacher its place, data and students' run names say
        tinfo = {"teacher": str(a.teacher), "teacher_sha256": file_sha256(a.teacher), "teacher_arch": tmeta.get("arch"),
                 "teacher_alpha": tmeta.get("alpha"), "beta": a.beta, "form": a.form}
        metas = [{**base, "run": r, "alpha": 0.0, **tinfo, "temperature": t} for r, t in zip(runs, values)]
    else:
        metas = [{**base, "run": r, "alpha": al} for r, al in zip(runs, values)]
    lock = {"runs": runs, "fused": bool(a.fuse)}
    fp = fingerprint({"members": [{k: v for k, v in m.items() if k != "run"} for m in metas], "lockstep": lock})
    member_outputs = [[out, Path(m)] for out, m in zip(outs, a.metrics)]
    if complete.restore_group(outs, member_outputs, fp):
        return  # finished before, but Snakemake did not record it (see lspipe.engine.complete)
    singles, summary = train_lockstep(
        a.arch, data, recipe, seed=a.seed, alphas=None if distilled else values, teacher=teacher,
        temperatures=values if distilled else None, beta=a.beta, form=a.form, fuse=a.fuse, device=device,
        checkpoint_path=ckpt, metrics_paths=a.metrics, run_fingerprint=fp, progress=a.progress,
        stop_after_epochs=a.stop_after_epochs, run_names=runs,
    )
    for i, (model, out, meta) in enumerate(zip(singles, outs, metas)):
        meta = {**meta, "summary": {**summary, "final": summary["final"][i]}, "lockstep": lock}
        save_model(out, model, model_spec(a.arch, data), meta)
        print(f"trained {a.arch} (student {i + 1}/{g} in lockstep{', fused' if a.fuse else ''}) -> {out}: "
              f"{json.dumps(meta['summary']['final'])}")
    complete.save_group(outs, member_outputs, fp)
    ckpt.unlink(missing_ok=True)
