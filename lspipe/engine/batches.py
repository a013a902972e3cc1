"""Where a training run's batches come from: the training split of a resident dataset drawn on the device
(:class:`ResidentBatches`), or of a streamed one decoded by workers (:class:`StreamedBatches`), each with
its position for an exact resume and its validation logits; :func:`training_batches` picks one for the
prepared file. The training loop (:mod:`lspipe.engine.training`) takes either."""

from __future__ import annotations

import torch
import torch.nn as nn

from lspipe.base.errors import DataError
from lspipe.core import source
from lspipe.core.augment import DeviceLoader
from lspipe.core.data import Prepared
from lspipe.core.index import StreamIndex
from lspipe.core.inference import predict
from lspipe.core.recipe import Recipe
from lspipe.core.stream import StreamLoader
from lspipe.engine.distributed import World

# Resident data on CUDA is augmented this many bytes of images at a time (a CIFAR epoch of 40,000
# images is 123 MB: one draw per epoch), not batch by batch: ~15 operations a step fewer.
EPOCH_AUGMENT_BYTES = 2**28


class ResidentBatches:
    """The training data of a resident dataset: the training split on the device as uint8, drawn by a
    seeded :class:`~lspipe.core.augment.DeviceLoader` (the recipe's pad-crop and flip on the device).
    Under torchrun every rank draws the same global batch and keeps its slice (:meth:`World.shard`);
    validation predicts the whole validation split on every rank. The position is the generator's state
    at the start of the pass and the batches of it done (:meth:`state_dict`; a pass resumed mid-way draws
    the random numbers of the batches before its start again, and applies none)."""

    def __init__(self, data: Prepared, recipe: Recipe, seed: int, device: torch.device, world: World,
                 epoch_augment: bool = False, channels_last: bool = False):
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(seed + 1)
        self.loader = DeviceLoader(torch.from_numpy(data.x["train"]).to(device),
                                   torch.from_numpy(data.y["train"]).to(device), recipe.batch_size,
                                   pad=recipe.augment["pad"], flip=recipe.augment["flip"], generator=self.generator,
                                   chunk_bytes=EPOCH_AUGMENT_BYTES if epoch_augment else None,
                                   memory_format=torch.channels_last if channels_last else None)
        self.world, self.val_x, self.val_labels, self.size = world, data.x["val"], data.y["val"], len(data.y["train"])
        self.pass_state = self.generator.get_state()  # the generator at the start of the present pass
        self.batch = 0  # batches of the present pass given out
        self.start = 0  # a resumed pass starts at this batch

    def __len__(self) -> int:
        return len(self.loader)

    def epoch(self, epoch: int):
        """This rank's ``(x, y)`` of each batch of the next pass (``epoch``: the generator knows it), or of
        the rest of the pass a mid-epoch checkpoint stopped in."""
        start, self.start = self.start, 0
        if start:
            self.generator.set_state(self.pass_state)
        else:
            self.pass_state = self.generator.get_state()
        self.batch = start
        for xb, yb in self.loader.batches(start):
            self.batch += 1
            yield self.world.shard(xb, yb)

    def val_logits(self, model: nn.Module, device: torch.device, batch_size: int) -> torch.Tensor:
        return predict(model, self.val_x, device, batch_size)

    def state_dict(self) -> dict:
        if 0 < self.batch < len(self):  # mid-pass: where the pass started, and how far it came
            return {"generator": self.pass_state, "batch": self.batch}
        return {"generator": self.generator.get_state()}  # between passes: where the next one starts

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"].cpu())
        self.pass_state = self.generator.get_state()
        self.batch = self.start = int(state.get("batch", 0))


class StreamedBatches:
    """The training data of a streamed dataset: a :class:`~lspipe.core.stream.StreamLoader` over the
    training split (the index's training view, RandomResizedCrop + flip, seeded by the run's seed;
    ``recipe.augment`` is the resident view and unused here) that decodes only this rank's share of
    each global batch. Validation streams the validation split, each rank its contiguous part of
    it, gathered in order (:meth:`World.gather`). The position is the loader's (epoch, batch)."""

    def __init__(self, idx: StreamIndex, recipe: Recipe, seed: int, device: torch.device, world: World,
                 options: dict | None = None):
        self.options = source.loader_settings(options)
        self.loader = StreamLoader(idx, "train", recipe.batch_size, seed=seed, device=device, rank=world.rank,
                                   world_size=world.size, **self.options)
        self.index, self.world, self.val_labels, self.size = idx, world, idx.y["val"], len(idx.y["train"])
        self.resumed = False  # a loaded position: the next pass goes on from it

    def __len__(self) -> int:
        return len(self.loader)

    def epoch(self, epoch: int):
        """This rank's ``(x, y)`` of each batch of epoch ``epoch``; with ``skip_unreadable`` a batch
        lacks its unreadable images, and one with none readable is an error (the loop's steps are
        counted in batches)."""
        if not (self.resumed and self.loader.epoch == epoch):  # else: the rest of a pass a checkpoint stopped in
            self.loader.set_epoch(epoch)
        self.resumed = False
        yield from self.loader
        name = self.index.meta.get("name", "<name>")
        raise DataError(f"a training batch of dataset {name!r} (epoch {epoch + 1}) has no readable image left: set "
                        f"streaming.verify: true, so that the index leaves the unreadable images out "
                        f"(datasets.{name}.skip_unreadable), or replace them")

    def val_logits(self, model: nn.Module, device: torch.device, batch_size: int) -> torch.Tensor:
        n = len(self.val_labels)
        lo, hi = self.world.part(n)
        outs = [predict(model, x, device, batch_size)
                for x, _, _ in source.eval_batches(self.index, "val", batch_size, positions=range(lo, hi), device=device,
                                                   **self.options)]
        return self.world.gather(torch.cat(outs), n, device)

    def state_dict(self) -> dict:
        return {"stream": self.loader.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.loader.load_state_dict(state["stream"])
        self.resumed = True


def training_batches(data: Prepared | StreamIndex, recipe: Recipe, seed: int, device: torch.device, world: World,
                     stream_loader: dict | None = None, epoch_augment: bool = False,
                     channels_last: bool = False) -> ResidentBatches | StreamedBatches:
    """The training data of :func:`lspipe.engine.training.fit`: resident or streamed, as the prepared file is. ``epoch_augment``
    (resident data, :class:`lspipe.engine.step.Engine`): the crops and flips of up to
    :data:`EPOCH_AUGMENT_BYTES` of images at a time, in ``channels_last`` when the model is."""
    if source.is_streamed(data):
        return StreamedBatches(data, recipe, seed, device, world, stream_loader)
    return ResidentBatches(data, recipe, seed, device, world, epoch_augment, channels_last)
