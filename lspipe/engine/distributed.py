"""One model on many processes: torch.distributed for :func:`lspipe.engine.training.fit`.

``lspipe train`` launched by ``torchrun`` (the environment sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``, with ``WORLD_SIZE`` > 1) calls :func:`init`: it starts the process group (NCCL on
CUDA, gloo on the CPU; ``--dist-backend`` overrides) and returns a :class:`World`. Without torchrun
:func:`init` returns :data:`SINGLE` and nothing of this module runs.

How :func:`~lspipe.engine.training.fit` uses it:

* the model's forward and backward run through ``DistributedDataParallel`` (gradients averaged
  across ranks, overlapped with the backward pass); the state (``state_dict``, per-member clipping,
  the saved models) stays the plain model's;
* every rank draws the same GLOBAL batch of ``recipe.batch_size`` from the same seeded loader and
  trains on its own contiguous slice of ``batch_size / world_size`` rows (:meth:`World.shard`): the
  batches and augmentations are those of a one-process run, and the learning rate is the recipe's;
* each step's loss is averaged across ranks (:meth:`World.mean`) and the epoch's correct counts
  summed, so the divergence checks and the metrics are global and equal on every rank; buffers
  (BatchNorm running statistics) are broadcast from rank 0 before each validation, so every rank
  validates the same model;
* only rank 0 writes (checkpoints, metrics CSVs, model.pt, completion records), atomically as
  always, followed by :meth:`World.barrier`, so no rank reads a half-written file. A resumed run
  loads rank 0's checkpoint on every rank.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn

from lspipe.base.errors import ConfigError

BACKENDS = ("nccl", "gloo")
_OWNED = []  # the process group init() started (teardown() ends only that one, not a caller's)


@dataclass(frozen=True)
class World:
    """The processes that train one model: this one's ``rank`` of ``size``, ``local_rank`` on its node."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def shard(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """This rank's contiguous slice of a global batch (the batch size divides by ``size``)."""
        if not self.enabled:
            return tensors
        n = len(tensors[0]) // self.size
        return tuple(t[self.rank * n: (self.rank + 1) * n] for t in tensors)

    def part(self, n: int) -> tuple[int, int]:
        """``(start, stop)`` of this rank's contiguous part of ``n`` items (``numpy.array_split``'s
        parts: the first ``n % size`` ranks take one more); ``(0, n)`` in one process."""
        q, r = divmod(n, self.size)
        start = self.rank * q + min(self.rank, r)
        return start, start + q + (self.rank < r)

    def gather(self, t: torch.Tensor, n: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """The rows of ``n`` items on every rank, in order, from each rank's rows ``t`` of its
        :meth:`part` (a CPU tensor is returned; ``device``: where the collective runs, CUDA for NCCL)."""
        if not self.enabled:
            return t
        q, r = divmod(n, self.size)
        box = torch.zeros((q + (r > 0), *t.shape[1:]), dtype=t.dtype, device=device)
        box[:len(t)] = t.to(device)
        parts = [torch.empty_like(box) for _ in range(self.size)]
        dist.all_gather(parts, box)
        return torch.cat([p[:q + (i < r)] for i, p in enumerate(parts)]).cpu()

    def mean(self, t: torch.Tensor) -> torch.Tensor:
        """The mean of ``t`` over the ranks (every rank gets the same value)."""
        if not self.enabled:
            return t
        t = t.detach().float().clone()
        dist.all_reduce(t)
        return t / self.size

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        """The sum of ``t`` over the ranks (every rank gets the same value)."""
        if not self.enabled:
            return t
        t = t.detach().clone()
        dist.all_reduce(t)
        return t

    def broadcast_flag(self, flag: bool) -> bool:
        """Rank 0's ``flag`` on every rank."""
        if not self.enabled:
            return flag
        box = [flag]
        dist.broadcast_object_list(box, src=0)
        return bool(box[0])

    def broadcast_buffers(self, model: nn.Module) -> None:
        """Rank 0's buffers (BatchNorm running statistics) on every rank."""
        if self.enabled:
            for b in model.buffers():
                dist.broadcast(b.data, src=0)

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """``model`` for the forward and backward of training: DistributedDataParallel when distributed.

        Its gradient hook averages the gradients across ranks during the backward pass. The rank's
        model keeps its own state; DDP broadcasts rank 0's parameters and buffers at construction
        (equal anyway: every rank builds the model from the same seed or checkpoint)."""
        if not self.enabled:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def check_batch(self, batch_size: int) -> None:
        if self.enabled and batch_size % self.size:
            raise ConfigError(f"recipes.<name>.batch_size {batch_size} is the global batch and must divide by the "
                              f"{self.size} processes of torchrun; choose a batch size or a process count that fit")


SINGLE = World()


def from_env(environ=os.environ) -> World:
    """The world torchrun describes in the environment (:data:`SINGLE` without torchrun)."""
    try:
        size = int(environ.get("WORLD_SIZE", "1"))
        rank = int(environ.get("RANK", "0"))
        local = int(environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise ConfigError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (set by torchrun); launch with torchrun "
                          "or unset them") from None
    return World(rank, size, local) if size > 1 else SINGLE


def init(backend: str | None, device: torch.device) -> tuple[World, torch.device]:
    """Start the process group of a torchrun launch; returns the world and this rank's device
    (``cuda:LOCAL_RANK`` on CUDA). Without torchrun: :data:`SINGLE` and ``device`` unchanged."""
    world = from_env()
    if not world.enabled:
        return world, device
    if device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    backend = backend or ("nccl" if device.type == "cuda" else "gloo")
    if backend not in BACKENDS:
        raise ConfigError(f"--dist-backend {backend!r} is not one of {', '.join(BACKENDS)}")
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=world.rank, world_size=world.size,
                                timeout=datetime.timedelta(minutes=30))
        _OWNED.append(True)
    return world, device


def teardown(world: World) -> None:
    """End the process group :func:`init` started (one started by the caller stays)."""
    if world.enabled and _OWNED and dist.is_initialized():
        dist.destroy_process_group()
        _OWNED.clear()
