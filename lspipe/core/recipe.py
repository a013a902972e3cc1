"""A training recipe: the optimisation hyper-parameters of the config's ``recipes.<name>`` section,
and the learning-rate schedules.

:meth:`Recipe.from_dict` fills every key left out from the schema's defaults
(:mod:`lspipe.base.defaults`, the one place they are written) and checks that the schedule settings
fit together; :meth:`Recipe.lr_at` is the learning rate of a step.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Sequence

from lspipe.base import defaults
from lspipe.base.errors import ConfigError


@dataclass
class Recipe:
    """Optimisation hyper-parameters (the config's ``recipes.<name>`` section).

    Build it with :meth:`from_dict`, which fills every key left out from the schema's defaults
    (:mod:`lspipe.base.defaults`, the one place they are written).
    """

    steps: int
    batch_size: int
    lr: float
    momentum: float
    nesterov: bool
    weight_decay: float
    dense_weight_decay: float | None
    schedule: str
    lr_milestones: Sequence[int]
    lr_decay: float
    onecycle_pct_start: float
    warmup_steps: int
    loss_scale: float
    grad_clip: float | None
    augment: dict
    eval_batch_size: int
    checkpoint_every: int
    precision: str
    channels_last: bool | str
    cuda_graph: bool | str
    compile: bool
    compile_mode: str | None
    cpu_amp: bool
    cpu_channels_last: bool
    max_loss: float | None

    @classmethod
    def from_dict(cls, d: dict) -> "Recipe":
        known = {f.name for f in dataclasses.fields(cls)}
        if "amp" in d:
            raise ConfigError("recipe key 'amp' was replaced by precision: write precision: bf16 for amp: true, "
                              "precision: tf32 (or fp32) for amp: false, or leave it out (auto)")
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown recipe key(s) {unknown}; allowed: {sorted(known)}")
        r = cls(**defaults.fill("recipes.*", d))
        r.lr_milestones = tuple(int(m) for m in r.lr_milestones)
        problem = r.schedule_problem()
        if problem:
            raise ConfigError(f"recipes.<name>: {problem}")
        return r

    def schedule_problem(self) -> str | None:
        """Why the schedule settings do not fit together (None when they do)."""
        if self.schedule not in SCHEDULES:
            return f"unknown schedule {self.schedule!r} (recipes.<name>.schedule); allowed: {', '.join(SCHEDULES)}"
        late = [m for m in self.lr_milestones if m >= self.steps]
        if late:
            return (f"lr_milestones {late} lie at or beyond the last step (steps: {self.steps}), so they never apply: "
                    "lower them below steps or raise steps")
        if self.schedule != "milestones" and self.lr_milestones:
            return (f"lr_milestones {list(self.lr_milestones)} only apply to schedule 'milestones', not "
                    f"{self.schedule!r}: remove them from the recipe")
        if self.schedule == "onecycle" and self.warmup_steps:
            return ("schedule 'onecycle' has its own warm-up (onecycle_pct_start); set warmup_steps: 0 in the recipe")
        if self.precision not in PRECISIONS:
            return f"unknown precision {self.precision!r} (recipes.<name>.precision); allowed: {', '.join(PRECISIONS)}"
        for key in ("channels_last", "cuda_graph"):
            if getattr(self, key) not in (True, False, "auto"):
                return f"{key} must be true, false or auto (recipes.<name>.{key}), got {getattr(self, key)!r}"
        if not 0.0 < self.onecycle_pct_start < 1.0:
            return f"onecycle_pct_start must be in (0, 1), got {self.onecycle_pct_start}"
        return None

    def lr_at(self, step: int) -> float:
        """Learning rate for optimiser step ``step`` (0-based) under :attr:`schedule`:

        * ``milestones``: ``lr * lr_decay ** (number of milestones <= step)``;
        * ``cosine``: ``lr * (1 + cos(pi * step / steps)) / 2`` (``CosineAnnealingLR`` with
          ``T_max = steps``, ``eta_min = 0``);
        * ``onecycle``: ``torch.optim.lr_scheduler.OneCycleLR`` (cosine annealing, ``max_lr = lr``,
          ``total_steps = steps``, ``pct_start = onecycle_pct_start``, ``div_factor = 25``,
          ``final_div_factor = 1e4``): cosine from ``lr / 25`` up to ``lr`` at step
          ``pct_start * steps - 1``, then cosine down to ``lr / 25 / 1e4`` at the last step.

        ``warmup_steps`` (milestones and cosine) multiplies by ``(step + 1) / warmup_steps`` first.
        """
        if self.schedule == "cosine":
            lr = self.lr * 0.5 * (1.0 + math.cos(math.pi * step / self.steps))
        elif self.schedule == "onecycle":
            lr = onecycle_lr(step, self.lr, self.steps, self.onecycle_pct_start)
        else:
            lr = self.lr * self.lr_decay ** sum(step >= m for m in self.lr_milestones)
        if self.warmup_steps and step < self.warmup_steps:
            lr *= (step + 1) / self.warmup_steps
        return lr


SCHEDULES = ("milestones", "cosine", "onecycle")
PRECISIONS = ("auto", "fp32", "tf32", "bf16")


def onecycle_lr(step: int, max_lr: float, total: int, pct_start: float = 0.3, div: float = 25.0,
                final_div: float = 1e4) -> float:
    """The one-cycle learning rate of ``OneCycleLR(anneal_strategy='cos')`` at ``step``."""
    initial, final = max_lr / div, max_lr / div / final_div
    peak = float(pct_start * total) - 1.0
    end = float(total - 1)

    def cos_anneal(start, stop, pct):
        return stop + (start - stop) / 2.0 * (math.cos(math.pi * pct) + 1.0)

    if step <= peak:
        return cos_anneal(initial, max_lr, step / peak if peak > 0 else 1.0)
    return cos_anneal(max_lr, final, (step - peak) / (end - peak) if end > peak else 1.0)
