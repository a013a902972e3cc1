"""One training step apart from the loop: what :func:`lspipe.engine.training.fit` calls per batch,
eager or as one CUDA graph, and the engine settings it runs with.

:func:`resolve_engine` turns a recipe, the device and the architecture into an :class:`Engine`: the
arithmetic (fp32, TF32 or bf16), the memory layout, the optimiser's implementation, whether bf16
weights are cast once per step (:class:`ShadowWeights`), whether resident data is augmented a whole
epoch at a time, and whether the step runs as a CUDA graph; each choice with the reason for it
(``Engine.why``), which the model's metadata records.

:class:`TrainStep` (:func:`make_step`) is the step itself, on tensors that stay where they are from one
step to the next: forward and objective (under bf16 autocast when chosen), backward of the members'
losses times ``loss_scale``, gradient clipping per member, the SGD step, and the metric accumulation
(the members' loss sums and correct counts, and each step's losses for the divergence checks at the
end of the epoch). On the CPU it runs eagerly and computes exactly what the loop computed before it
was split out (same operations in the same order: tested bit for bit). :class:`GraphedStep` captures
it as one CUDA graph after a few eager steps, after PyTorch's whole-network capture: warm-up on a
side stream, the learning rate a device tensor updated in place, the batch copied into static
buffers; no random generator runs inside the step (augmentation happens in the loader, before).
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn as nn

from lspipe.base.errors import ConfigError
from lspipe.core.recipe import Recipe
from lspipe.engine.fused import GroupedLinear

# The measured best (precision, channels_last) per architecture on CUDA, for precision / channels_last
# "auto", with the measurement each rests on. The one GPU run so far (NVIDIA H100 80GB HBM3, torch
# 2.11, 2026-12-06, docs/bench/h100-2026-12-06) timed the engine in bf16 + channels_last only (ResNet-56
# 7,760 images/s, AlexNet 25,581); bf16 is also the variant whose graphed step does least arithmetic
# per image on tensor cores. `benchmarks/gpu-check.sh` times fp32, fp32+cl, bf16, bf16+cl and +graph
# per architecture (bench-variants.json, "best"): a row here changes when those figures say so.
AUTO_CUDA: dict[str, tuple[str, bool]] = {
    "resnet56": ("bf16", True),
    "alexnet": ("bf16", True),
}
AUTO_CUDA_DEFAULT = ("bf16", True)
AUTO_SOURCE = ("H100 2026-12-06: only bf16 + channels_last was timed for the engine (docs/benchmarks.md); "
               "the variant figures of benchmarks/gpu-check.sh replace this when measured")

GRAPH_WARMUP = 3  # eager steps (on a side stream) before the capture
GRAPH_COMPARE = 2  # cuda_graph auto: graph steps compared with as many eager steps on the same batches
# cuda_graph auto: the largest relative difference ||update_graph - update_eager|| / ||update_eager|| of
# the weights over the compared steps. The same kernels in a graph and eagerly differ by rounding only
# (bf16: ~1e-3 of an update); a graph that replays a stale batch or drops an update differs by ~1.
GRAPH_TOLERANCE = 0.05


@dataclass
class Engine:
    """How :func:`lspipe.engine.training.fit` trains (:func:`resolve_engine`)."""

    device_type: str
    precision: str  # fp32 | tf32 | bf16
    channels_last: bool
    cuda_graph: str  # off | auto | on: what is asked; GraphedStep records what happened
    optimizer: str  # foreach | fused (torch.optim.SGD's implementation)
    shadows: bool  # bf16 copies of the conv / linear weights, refreshed once per step
    epoch_augment: bool  # resident data: crops and flips of a whole epoch (chunk) drawn at once
    why: dict[str, str] = field(default_factory=dict)

    @property
    def autocast(self) -> bool:
        return self.precision == "bf16"

    def describe(self) -> dict:
        """The settings and their reasons, for the log and the model's metadata (``meta["engine"]``)."""
        return {"precision": self.precision, "channels_last": self.channels_last,
                "cuda_graph": self.cuda_graph == "on", "optimizer": self.optimizer,
                "bf16_weights_once_per_step": self.shadows, "epoch_augment": self.epoch_augment,
                "why": dict(self.why)}


def resolve_engine(recipe: Recipe, device_type: str, arch: str | None = None, *, distributed: bool = False) -> Engine:
    """The :class:`Engine` of a run of ``arch`` with ``recipe`` on a ``device_type`` device.

    On the CPU: ``cpu_amp`` and ``cpu_channels_last`` as set, the ``foreach`` SGD (the same numbers as
    the default loop over parameters), per-batch augmentation and no graph: today's numbers bit for bit.
    On CUDA: ``precision`` and ``channels_last`` (``auto``: :data:`AUTO_CUDA`), the fused SGD (one
    kernel, the learning rate a tensor), whole-epoch augmentation, and ``cuda_graph`` unless the model
    is compiled or trained under torchrun. bf16 weights are cast once per step unless compiled or
    distributed (DistributedDataParallel hooks the parameters themselves).
    """
    why: dict[str, str] = {}
    if device_type != "cuda":
        precision = "bf16" if recipe.cpu_amp else "fp32"
        why["precision"] = f"cpu_amp: {str(recipe.cpu_amp).lower()}"
        channels_last = bool(recipe.cpu_channels_last)
        why["cuda_graph"] = "not on CUDA"
        shadows = precision == "bf16" and not (distributed or recipe.compile)
        return Engine(device_type, precision, channels_last, "off", "foreach", shadows, False, why)
    best = AUTO_CUDA.get(arch or "", AUTO_CUDA_DEFAULT)
    precision = recipe.precision
    if precision == "auto":
        precision = best[0]
        why["precision"] = f"auto for {arch or 'this architecture'}: {AUTO_SOURCE}"
    channels_last = recipe.channels_last
    if channels_last == "auto":
        channels_last = best[1]
        why["channels_last"] = f"auto for {arch or 'this architecture'}"
    graph = {True: "on", False: "off", "auto": "auto"}[recipe.cuda_graph]
    if graph != "off" and (recipe.compile or distributed):
        reason = "the model is compiled (recipes.<name>.compile)" if recipe.compile else "trained under torchrun"
        if graph == "on":
            raise ConfigError(f"cuda_graph: true cannot be combined with a model {reason}: set "
                              "recipes.<name>.cuda_graph: auto or false")
        graph, why["cuda_graph"] = "off", reason
    shadows = precision == "bf16" and not (distributed or recipe.compile)
    return Engine("cuda", precision, bool(channels_last), graph, "fused", shadows, True, why)


@contextlib.contextmanager
def arithmetic(engine: Engine):
    """TF32 on or off for the run (CUDA: fp32 turns it off, tf32 and bf16 on); restores the flags."""
    flags = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    if engine.device_type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = engine.precision != "fp32"
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags


# --------------------------------------------------------------------------- bf16 weights once per step


SHADOWED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, GroupedLinear)  # exactly these types: what autocast casts


class ShadowWeights:
    """bf16 copies of the weights and biases of a module's convolutions and linear layers, put in
    their place for the forward (:meth:`swapped`): one ``_foreach_copy_`` per step casts them all
    (:meth:`refresh`) and one copies their gradients back to the float32 parameters
    (:meth:`grads_to_masters`), where bf16 autocast casts each weight in the forward and each
    gradient in the backward, two operations per tensor. The numbers are autocast's: the same
    roundings of the same values (tested bit for bit on the CPU). The optimiser keeps the float32
    parameters; nothing outside the step sees the copies. ``trainable=False`` (a frozen teacher):
    copied once, no gradients."""

    def __init__(self, module: nn.Module, dtype: torch.dtype = torch.bfloat16, trainable: bool = True):
        self.slots: list[tuple[nn.Module, str]] = []
        self.masters: list[nn.Parameter] = []
        seen: set[int] = set()
        for mod in module.modules():
            if type(mod) not in SHADOWED:
                continue
            for name, p in mod._parameters.items():
                if p is None or id(p) in seen or not p.is_floating_point():
                    continue
                seen.add(id(p))
                self.slots.append((mod, name))
                self.masters.append(p)
        with torch.no_grad():
            self.shadows = [nn.Parameter(torch.empty_like(p, dtype=dtype), requires_grad=trainable and p.requires_grad)
                            for p in self.masters]
        self.trainable = trainable
        self.master_grads = [torch.zeros_like(p) if s.requires_grad else None for p, s in zip(self.masters, self.shadows)]
        self.refresh()

    def __len__(self) -> int:
        return len(self.masters)

    @torch.no_grad()
    def refresh(self) -> None:
        if self.masters:
            torch._foreach_copy_(self.shadows, self.masters)

    @contextlib.contextmanager
    def swapped(self):
        for (mod, name), s in zip(self.slots, self.shadows):
            mod._parameters[name] = s
        try:
            yield
        finally:
            for (mod, name), p in zip(self.slots, self.masters):
                mod._parameters[name] = p

    def zero_grad(self) -> None:
        for s, p, g in zip(self.shadows, self.masters, self.master_grads):
            s.grad = None
            if g is not None and p.grad is not g:
                p.grad = g

    @torch.no_grad()
    def grads_to_masters(self) -> None:
        pairs = [(g, s.grad) for g, s in zip(self.master_grads, self.shadows) if s.grad is not None]
        if pairs:
            torch._foreach_copy_([g for g, _ in pairs], [s for _, s in pairs])


# --------------------------------------------------------------------------- the step


class StepMetrics:
    """The metric accumulators of one epoch, on the device: each member's sum of batch loss x batch
    size and correct count (as the loop kept them), and each step's losses (for the divergence checks
    at the epoch's end, :meth:`first_bad`) at a position counted on the device (graph-safe)."""

    def __init__(self, members: int, steps_per_epoch: int, device: torch.device):
        self.loss_sum = torch.zeros(members, device=device)
        self.correct = torch.zeros(members, device=device, dtype=torch.long)
        self.losses = torch.zeros(steps_per_epoch, members, device=device)
        self.pos = torch.zeros(1, device=device, dtype=torch.long)

    def tensors(self) -> list[torch.Tensor]:
        return [self.loss_sum, self.correct, self.losses, self.pos]

    def reset(self) -> None:
        for t in self.tensors():
            t.zero_()

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The epoch's accumulators so far (CPU copies): what a checkpoint written mid-epoch keeps."""
        return {"loss_sum": self.loss_sum.cpu().clone(), "correct": self.correct.cpu().clone(),
                "losses": self.losses.cpu().clone(), "pos": self.pos.cpu().clone()}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Copy ``state`` into the accumulators in place (a captured CUDA graph keeps its tensors)."""
        for name, t in zip(("loss_sum", "correct", "losses", "pos"), self.tensors()):
            value = state[name]
            if value.shape != t.shape:
                raise ValueError(f"metrics {name}: shape {tuple(value.shape)} where the run has {tuple(t.shape)}")
            t.copy_(value)

    def first_bad(self, steps: int, max_loss: float | None) -> tuple[int, list[float]] | None:
        """The first of this epoch's ``steps`` steps whose loss is not finite (or above ``max_loss``):
        (its 0-based position in the epoch, its losses), or None."""
        rows = self.losses[:steps]
        bad = ~torch.isfinite(rows).all(1)
        if max_loss:
            bad |= (rows > max_loss).any(1)
        if not bool(bad.any()):
            return None
        i = int(bad.nonzero()[0, 0])
        return i, rows[i].tolist()


class TrainStep:
    """One optimiser step of a group of members on a batch (:func:`make_step`); ``step(xb, yb)``
    returns ``(logits, losses)``. The order of the operations is the loop's before it was split out:
    forward and objective, gradients set to None, backward of ``sum(losses) * loss_scale`` (as the
    members' losses times a constant vector: the same gradients, two operations fewer), clipping,
    the SGD step, metrics."""

    def __init__(self, model: nn.Module, train_model: Callable, objective: nn.Module, opt: torch.optim.Optimizer,
                 recipe: Recipe, engine: Engine, world, steps_per_epoch: int, device: torch.device):
        self.model, self.train_model, self.objective, self.opt = model, train_model, objective, opt
        self.recipe, self.engine, self.world, self.device = recipe, engine, world, device
        members = model.num_members
        self.scale = torch.full((members,), float(recipe.loss_scale), device=device)
        self.metrics = StepMetrics(members, steps_per_epoch, device)
        self.shadows = ShadowWeights(model) if engine.shadows else None
        teachers = getattr(objective, "teachers", None)
        self.teacher_shadows = (ShadowWeights(teachers, trainable=False)
                                if engine.shadows and teachers is not None and len(teachers) else None)
        shadowed = {id(p) for p in self.shadows.masters} if self.shadows else set()
        self.plain = [p for p in model.parameters() if id(p) not in shadowed]
        self.lr = None
        if engine.optimizer == "fused":  # the learning rate as one device tensor, updated in place
            self.lr = torch.tensor(float(opt.param_groups[0]["lr"]), device=device)
            for g in opt.param_groups:
                g["lr"] = self.lr

    def set_lr(self, lr: float) -> None:
        if self.lr is None:
            for g in self.opt.param_groups:
                g["lr"] = lr
        else:
            self.lr.fill_(lr)

    def _zero_grad(self) -> None:
        if self.shadows is None:
            self.opt.zero_grad(set_to_none=True)
            return
        for p in self.plain:
            p.grad = None
        self.shadows.zero_grad()

    def _forward(self, xb, yb):
        if self.shadows is not None:
            self.shadows.refresh()
        swaps = [s.swapped() for s in (self.shadows, self.teacher_shadows) if s is not None]
        with contextlib.ExitStack() as stack:
            for s in swaps:
                stack.enter_context(s)
            stack.enter_context(torch.autocast(device_type=self.device.type, dtype=torch.bfloat16,
                                               enabled=self.engine.autocast))
            logits = self.train_model(xb)
            loss = self.objective(logits, yb, xb)  # one loss per member
        return logits, loss

    def __call__(self, xb: torch.Tensor, yb: torch.Tensor):
        logits, loss = self._forward(xb, yb)
        self._zero_grad()
        torch.autograd.backward(loss, self.scale)  # = (loss.sum() * recipe.loss_scale).backward()
        if self.shadows is not None:
            self.shadows.grads_to_masters()
        if self.recipe.grad_clip:
            self.model.clip_grad_norm_(self.recipe.grad_clip)
        self.opt.step()
        self._accumulate(logits, loss, yb)
        return logits, loss

    def _accumulate(self, logits, loss, yb) -> None:
        m, bs = self.metrics, len(yb)
        lv = loss.detach().float()
        if self.world.enabled:  # the global batch's loss: the mean of the ranks' equal slices
            lv, bs = self.world.mean(lv), bs * self.world.size
        m.losses.index_copy_(0, m.pos, lv[None])
        m.pos += 1
        m.loss_sum += (lv if self.world.enabled else loss.detach()) * bs
        m.correct += (logits.detach().argmax(-1) == yb[:, None]).sum(0)

    def state_tensors(self) -> list[torch.Tensor]:
        """Every tensor a step changes (weights, buffers, optimiser state, metrics): what a comparison
        of graph and eager steps saves and restores."""
        opt_state = [v for s in self.opt.state.values() for v in s.values() if isinstance(v, torch.Tensor)]
        return [*self.model.parameters(), *self.model.buffers(), *opt_state, *self.metrics.tensors()]


def make_step(model: nn.Module, train_model: Callable, objective: nn.Module, opt: torch.optim.Optimizer,
              recipe: Recipe, engine: Engine, world, steps_per_epoch: int, device: torch.device, log=None):
    """The step :func:`lspipe.engine.training.fit` calls per batch: a :class:`TrainStep`, wrapped in a
    :class:`GraphedStep` when ``engine.cuda_graph`` asks for a graph."""
    step = TrainStep(model, train_model, objective, opt, recipe, engine, world, steps_per_epoch, device)
    if engine.cuda_graph == "off":
        return step
    return GraphedStep(step, log=log)


# --------------------------------------------------------------------------- the step as one CUDA graph


def _one_line(err: BaseException) -> str:
    return f"{type(err).__name__}: {' '.join(str(err).split())[:300]}"


class GraphedStep:
    """A :class:`TrainStep` replayed as one CUDA graph after :data:`GRAPH_WARMUP` eager steps on a side
    stream. ``cuda_graph: auto`` first runs :data:`GRAPH_COMPARE` steps eagerly, restores the state,
    captures, replays the same batches and compares the weights' updates (:data:`GRAPH_TOLERANCE`);
    a capture that fails or disagrees leaves the eager result in place and the run eager, and
    ``engine.why["cuda_graph"]`` (the log, the model's metadata) says why. A batch of another shape
    than the captured one (a streamed batch that lost unreadable images) runs eagerly."""

    def __init__(self, step: TrainStep, log=None):
        self.step, self.engine, self.log = step, step.engine, log or (lambda s: print(s, file=sys.stderr))
        self.auto = self.engine.cuda_graph == "auto"
        self.graph: torch.cuda.CUDAGraph | None = None
        self.eager_only, self.calls = False, 0
        self.side = torch.cuda.Stream(device=step.device)
        self.saved: list[torch.Tensor] | None = None
        self.batches: list[tuple[torch.Tensor, torch.Tensor, float]] = []  # compared: batch and learning rate
        self.lr = None
        self.metrics = step.metrics

    def set_lr(self, lr: float) -> None:
        self.lr = lr
        self.step.set_lr(lr)

    def _eager(self, xb, yb):
        self.side.wait_stream(torch.cuda.current_stream(self.step.device))
        with torch.cuda.stream(self.side):
            out = self.step(xb, yb)
        torch.cuda.current_stream(self.step.device).wait_stream(self.side)
        return out

    def __call__(self, xb: torch.Tensor, yb: torch.Tensor):
        self.calls += 1
        if self.eager_only:
            return self.step(xb, yb)
        if self.graph is not None:
            if xb.shape != self.static_x.shape or yb.shape != self.static_y.shape:
                return self.step(xb, yb)
            self.static_x.copy_(xb)
            self.static_y.copy_(yb)
            self.graph.replay()
            return self.static_out
        if self.calls <= GRAPH_WARMUP:
            return self._eager(xb, yb)
        if not self.auto:
            try:
                self._capture(xb, yb)
            except Exception as err:
                raise ConfigError(f"the training step could not be captured as a CUDA graph ({_one_line(err)}); set "
                                  "recipes.<name>.cuda_graph: auto (trains eager when the capture fails) or false") from err
            return self._replay(xb, yb)
        return self._compare_then_capture(xb, yb)

    def _snapshot(self) -> list[torch.Tensor]:
        return [t.detach().clone() for t in self.step.state_tensors()]

    @torch.no_grad()
    def _restore(self, saved: list[torch.Tensor]) -> None:
        for t, s in zip(self.step.state_tensors(), saved):
            t.copy_(s)

    def _compare_then_capture(self, xb, yb):
        if self.saved is None:
            self.saved = self._snapshot()
        self.batches.append((xb.clone(), yb.clone(), self.lr))
        out = self._eager(xb, yb)
        if len(self.batches) < GRAPH_COMPARE:
            return out
        eager = self._snapshot()
        self._restore(self.saved)
        try:
            self._capture(*self.batches[0][:2])
            for bx, by, lr in self.batches:  # each with its own learning rate, as the eager steps had
                self.step.set_lr(lr)
                out = self._replay(bx, by)
            self.step.set_lr(self.lr)
            torch.cuda.synchronize(self.step.device)
            rel = self._update_difference(self.saved, eager)
        except Exception as err:  # a capture PyTorch or the driver refuses: train eager, say why
            return self._give_up(eager, out, f"the capture failed ({_one_line(err)})")
        if not rel <= GRAPH_TOLERANCE:
            return self._give_up(eager, out, f"{GRAPH_COMPARE} graph steps differ from eager ones by {rel:.3g} of "
                                             f"the weights' update (tolerance {GRAPH_TOLERANCE})")
        self.engine.why["cuda_graph"] = (f"captured after {GRAPH_WARMUP + GRAPH_COMPARE} eager steps; {GRAPH_COMPARE} "
                                         f"graph steps matched eager ones to {rel:.2g} of the weights' update")
        self.log(f"engine: CUDA graph on: {self.engine.why['cuda_graph']}")
        self.saved, self.batches = None, []
        return out

    def _give_up(self, eager: list[torch.Tensor], out, why: str):
        """Back to the state after the eager steps, eager from now on."""
        self.graph, self.eager_only = None, True
        self._restore(eager)
        self.step._zero_grad()
        self.engine.cuda_graph = "off"
        self.engine.why["cuda_graph"] = f"auto: trained eager: {why}"
        self.log(f"engine: CUDA graph off: {why}")
        self.saved, self.batches = None, []
        return out

    def _update_difference(self, before: list[torch.Tensor], eager: list[torch.Tensor]) -> float:
        n = sum(1 for _ in self.step.model.parameters())
        graph = [p.detach() for p in self.step.model.parameters()]
        diff = sum(float(((g.double() - e.double()) ** 2).sum()) for g, e in zip(graph, eager[:n]))
        upd = sum(float(((e.double() - b.double()) ** 2).sum()) for e, b in zip(eager[:n], before[:n]))
        return (diff ** 0.5) / max(upd ** 0.5, 1e-30)

    def _capture(self, xb, yb) -> None:
        self.static_x, self.static_y = xb.clone(), yb.clone()
        self.step._zero_grad()
        torch.cuda.synchronize(self.step.device)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            self.static_out = self.step(self.static_x, self.static_y)
        self.graph = graph
        self.engine.cuda_graph = "on"
        if not self.auto:
            self.engine.why["cuda_graph"] = f"captured after {GRAPH_WARMUP} eager steps (cuda_graph: true)"
            self.log(f"engine: CUDA graph on: {self.engine.why['cuda_graph']}")

    def _replay(self, xb, yb):
        self.static_x.copy_(xb)
        self.static_y.copy_(yb)
        self.graph.replay()
        return self.static_out
