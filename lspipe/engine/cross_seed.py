"""Cross-seed fusion: one fused network whose members have different seeds (measured, not yet adopted).

A fused teacher grid (:mod:`lspipe.engine.fused`, ``teachers[].fuse``) trains the alphas of ONE seed
as one network: they share the seed's batch stream, so one batch, repeated along channels, feeds
every member. Here the members of several seeds train as one network: S seeds x A objectives =
G members, seed-major (member ``i * A + a`` is seed ``seeds[i]``, objective ``a``). Each member is
initialised as its own run (``torch.manual_seed(seed); build_model(...)``) and each seed keeps its
own batch stream (the very loader :func:`lspipe.engine.training.fit` draws from with that seed:
:func:`~lspipe.engine.batches.training_batches`); at every step the S batches are stacked along
channels, ``B x (G*C) x H x W`` (:func:`lspipe.engine.fused.stack_batches`), into the grouped
first convolution, and each seed's members get that seed's labels. So every member trains exactly
as in its separate run (:func:`~lspipe.engine.training.train_group` with its seed), up to the
grouped kernels' rounding; with one seed it is the same-seed fused group of the workflow.

The step is :func:`~lspipe.engine.training.fit`'s (learning rate schedule, autocast and
channels_last as the recipe says for the device, the objective's per-member losses summed and
scaled, per-member clipping, SGD with the recipe's parameter groups). What this module leaves out
is the rest of ``fit``: validation, metrics files, checkpoints and resume, the probe. It is an
engine feature measured by ``benchmarks/cross_seed.py`` (3 seeds fused vs. 3 same-seed fused groups)
and not wired into the workflow: no config key selects it until GPU figures show that it pays
(docs/benchmarks.md, "Cross-seed fusion").
"""

from __future__ import annotations

import time
from typing import Sequence

import torch

from lspipe.core import source
from lspipe.core.data import Prepared
from lspipe.core.losses import Objective
from lspipe.core.models import Classifier, build_model
from lspipe.core.recipe import Recipe
from lspipe.engine.distributed import SINGLE
from lspipe.engine.fused import FusedClassifier, FuseError, fuse, stack_batches
from lspipe.engine.batches import training_batches
from lspipe.engine.training import param_groups


class CrossSeedTrainer:
    """Train ``model`` (a :class:`FusedClassifier` of ``len(seeds) * len(objective)`` members,
    seed-major) one step at a time, each seed's members on that seed's batch stream.

    ``objective`` is the objective of one seed's members (A values; every seed trains the same A).
    :meth:`step` runs one optimiser step and returns the G losses (on the device, not synchronised).
    """

    def __init__(self, model: FusedClassifier, data: Prepared, recipe: Recipe, objective: Objective,
                 seeds: Sequence[int], *, device: torch.device | str = "cpu"):
        seeds = [int(s) for s in seeds]
        if not seeds or len(set(seeds)) != len(seeds):
            raise FuseError(f"cross-seed fusion needs distinct seeds, got {seeds}")
        if model.num_members != len(seeds) * len(objective):
            raise FuseError(f"{len(seeds)} seeds x {len(objective)} objectives need {len(seeds) * len(objective)} "
                            f"members, the model has {model.num_members}")
        if any(k.teacher for k in objective.kinds):
            raise FuseError("cross-seed fusion trains objectives without a teacher (each seed's batch differs)")
        source.require_resident(data, "cross-seed fusion")
        self.device = torch.device(device)
        on_cuda = self.device.type == "cuda"
        self.use_amp = recipe.amp if on_cuda else recipe.cpu_amp
        self.channels_last = recipe.channels_last if on_cuda else recipe.cpu_channels_last
        self.model, self.recipe, self.objective, self.seeds = model, recipe, objective, seeds
        self.loaders = [training_batches(data, recipe, s, self.device, SINGLE) for s in seeds]
        model.to(self.device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        objective.to(self.device)
        self.opt = torch.optim.SGD(param_groups(model, recipe), lr=recipe.lr, momentum=recipe.momentum,
                                   nesterov=recipe.nesterov and recipe.momentum > 0)
        self.train_model = torch.compile(model, mode=recipe.compile_mode) if recipe.compile else model
        self.steps_per_epoch = len(self.loaders[0])
        self.step_count, self.batches = 0, None

    def _next_batches(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        if self.step_count % self.steps_per_epoch == 0:  # a new epoch: a fresh pass of every loader
            epoch = self.step_count // self.steps_per_epoch
            self.model.train()
            self.objective.train()
            self.batches = [loader.epoch(epoch) for loader in self.loaders]
        return [next(b) for b in self.batches]

    def step(self) -> torch.Tensor:
        """One optimiser step of every member; returns the G losses."""
        pairs = self._next_batches()
        a = len(self.objective)
        # one seed: its batch feeds every member (the same-seed fused group); several: stacked along channels
        xb = pairs[0][0] if len(pairs) == 1 else stack_batches([x for x, _ in pairs], repeats=a)
        if self.channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        lr = self.recipe.lr_at(self.step_count)
        for g in self.opt.param_groups:
            g["lr"] = lr
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.use_amp):
            logits = self.train_model(xb)
            loss = torch.cat([self.objective(logits[:, i * a:(i + 1) * a], y, x) for i, (x, y) in enumerate(pairs)])
        self.opt.zero_grad(set_to_none=True)
        (loss.sum() * self.recipe.loss_scale).backward()
        if self.recipe.grad_clip:
            self.model.clip_grad_norm_(self.recipe.grad_clip)
        self.opt.step()
        self.step_count += 1
        return loss.detach()

    def run(self, steps: int) -> torch.Tensor:
        """``steps`` steps; the last step's losses."""
        loss = None
        for _ in range(steps):
            loss = self.step()
        return loss


def cross_seed_members(arch: str, data: Prepared, seeds: Sequence[int], per_seed: int) -> list[Classifier]:
    """The members of a cross-seed group, seed-major, each initialised as its own run."""
    out = []
    for s in seeds:
        for _ in range(per_seed):
            torch.manual_seed(int(s))
            out.append(build_model(arch, data))
    return out


def train_cross_seed(arch: str, data: Prepared, recipe: Recipe, objective: Objective, seeds: Sequence[int], *,
                     device: torch.device | str = "cpu", steps: int | None = None) -> tuple[list[Classifier], dict]:
    """Train ``len(seeds) x len(objective)`` models of ``arch`` as one fused network (seed-major), each
    seed's members on that seed's batches, for ``steps`` (default ``recipe.steps``) steps; returns the
    trained models (ordinary classifiers, seed-major) and ``{"steps", "seconds"}``."""
    model = fuse(cross_seed_members(arch, data, seeds, len(objective)))
    trainer = CrossSeedTrainer(model, data, recipe, objective, seeds, device=device)
    n = recipe.steps if steps is None else int(steps)
    t0 = time.perf_counter()
    trainer.run(n)
    seconds = time.perf_counter() - t0
    model.cpu().eval()
    out = []
    for i in range(model.num_members):
        m = build_model(arch, data)
        m.load_state_dict(model.member_state_dict(i))
        out.append(m.eval())
    return out, {"steps": n, "seconds": seconds}
