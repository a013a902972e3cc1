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
    """Augment a batch ``x`` (B x C x H x W, any dtype); returns a new tensor of the same shape."""
    b, c, h, w = x.shape
    dev = x.device
    if pad > 0:
        padded = F.pad(x, (pad, pad, pad, pad))
        oy = torch.randint(0, 2 * pad + 1, (b,), device=dev, generator=generator)
        ox = torch.randint(0, 2 * pad + 1, (b,), device=dev, generator=generator)
        rows = (oy[:, None] + torch.arange(h, device=dev))[:, None, :, None]  # B,1,H,1
        cols = (ox[:, None] + torch.arange(w, device=dev))[:, None, None, :]  # B,1,1,W
        bidx = torch.arange(b, device=dev)[:, None, None, None]
        cidx = torch.arange(c, device=dev)[None, :, None, None]
        x = padded[bidx, cidx, rows, cols]
    if flip:
        mask = torch.rand(b, device=dev, generator=generator) < 0.5
        x = torch.where(mask[:, None, None, None], x.flip(-1), x)
    return x
