"""FLOPs of one training image of an architecture, counted by ``torch.utils.flop_counter`` (the projection
prices the architectures a benchmark does not measure from them: :mod:`lspipe.bench.projection`)."""

from __future__ import annotations

import functools

import torch
from torch.utils.flop_counter import FlopCounterMode

from lspipe.core import models


def flops_per_image(arch: str, image_size: int, num_classes: int, in_channels: int = 3) -> dict:
    return dict(_flops_per_image(arch, image_size, num_classes, in_channels))


@functools.lru_cache(maxsize=None)
def _flops_per_image(arch: str, image_size: int, num_classes: int, in_channels: int) -> dict:
    """FLOPs of one training image (forward + backward) and of its forward alone, counted by
    ``torch.utils.flop_counter`` on the model itself at ``image_size`` (matrix multiplications and
    convolutions, 2 FLOPs per multiply-add; element-wise work is not counted). The model and the batch
    of two (BatchNorm trains on more than one value per channel) live on the ``meta`` device: shapes
    only, no arithmetic, so Inception-v4 at 299 px is counted in a fraction of a second."""
    with torch.device("meta"):
        model = models.create(arch, num_classes, in_channels, image_size).train()
        x = torch.zeros(2, in_channels, image_size, image_size, dtype=torch.uint8)
    with FlopCounterMode(display=False) as fwd:
        model(x)
    with FlopCounterMode(display=False) as both:
        model(x).float().sum().backward()
    return {"forward": fwd.get_total_flops() / 2, "train": both.get_total_flops() / 2}
