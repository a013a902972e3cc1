"""Augmentation on the training device, a whole batch at a time, on uint8 images.

``random_crop_flip`` zero-pads each image by ``pad`` pixels on every side, takes a random
``H x W`` crop per image (offsets uniform in ``0..2*pad``) and mirrors a random half of the
batch horizontally: the paper's "pad to 40x40, random 32x32 crop, horizontal flip" for CIFAR.
All randomness comes from the ``torch.Generator`` passed in, so a run is repeatable and its
state is saved in checkpoints.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop_flip(
    x: torch.Tensor, pad: int, flip: bool, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Augment a batch ``x`` (B x C x H x W, any dtype); returns a tensor of the same shape.

    Crop and flip are one ``gather`` over the flattened padded images (each output pixel's source
    index is computed per image), about 4x faster on a CPU than advanced indexing with four
    broadcast index tensors, and a single kernel on a GPU. Random draws, in order: the crops'
    row offsets, column offsets, then the flip mask.
    """
    if pad == 0 and not flip:
        return x
    b, c, h, w = x.shape
    dev = x.device
    hp, wp = h + 2 * pad, w + 2 * pad
    if pad > 0:
        padded = F.pad(x, (pad, pad, pad, pad))
        oy = torch.randint(0, 2 * pad + 1, (b,), device=dev, generator=generator)
        ox = torch.randint(0, 2 * pad + 1, (b,), device=dev, generator=generator)
    else:
        padded = x
        oy = ox = torch.zeros(b, dtype=torch.long, device=dev)
    cols = torch.arange(w, device=dev).expand(b, w)
    if flip:
        mask = torch.rand(b, device=dev, generator=generator) < 0.5
        cols = torch.where(mask[:, None], (w - 1) - cols, cols)
    rows = oy[:, None] + torch.arange(h, device=dev)  # B x H
    src = rows[:, :, None] * wp + (ox[:, None] + cols)[:, None, :]  # B x H x W, into the padded image
    src = src.view(b, 1, h * w).expand(b, c, h * w)
    return padded.reshape(b, c, hp * wp).gather(2, src).view(b, c, h, w)
