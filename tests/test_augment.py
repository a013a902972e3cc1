"""On-device augmentation: crops stay within the padding, flips flip, labels stay aligned."""

import torch
import torch.nn.functional as F

from lspipe.core.augment import random_crop_flip


def _offsets(out_i, padded_i, h, w, pad):
    return [
        (dy, dx)
        for dy in range(2 * pad + 1)
        for dx in range(2 * pad + 1)
        if torch.equal(padded_i[:, dy : dy + h, dx : dx + w], out_i)
    ]


def test_crops_come_from_the_padded_image_within_the_padding():
    b, c, h, w, pad = 64, 3, 8, 8, 2
    # every pixel of every image is unique, so a crop identifies its offset
    x = torch.arange(b * c * h * w, dtype=torch.float64).view(b, c, h, w) + 1
    g = torch.Generator().manual_seed(0)
    out = random_crop_flip(x, pad, flip=False, generator=g)
    assert out.shape == x.shape and out.dtype == x.dtype
    padded = F.pad(x, (pad,) * 4)
    seen = set()
    for i in range(b):
        offs = _offsets(out[i], padded[i], h, w, pad)
        assert len(offs) == 1, f"image {i} is not a crop of its own padded image"
        seen.add(offs[0])
    assert len(seen) > 10  # offsets vary over the batch (25 possible)


def test_uint8_padding_is_zero_and_dtype_kept():
    x = torch.full((16, 1, 4, 4), 200, dtype=torch.uint8)
    out = random_crop_flip(x, 4, False, torch.Generator().manual_seed(1))
    assert out.dtype == torch.uint8
    assert set(out.unique().tolist()) <= {0, 200}
    assert (out == 0).any()


def test_flips_flip_about_half_and_keep_alignment():
    b = 400
    x = torch.randn(b, 2, 5, 7)
    out = random_crop_flip(x, 0, True, torch.Generator().manual_seed(2))
    flipped = torch.tensor([torch.equal(out[i], x[i].flip(-1)) for i in range(b)])
    same = torch.tensor([torch.equal(out[i], x[i]) for i in range(b)])
    assert torch.all(flipped ^ same)  # each image is itself or its own mirror: never another image
    assert 150 < int(flipped.sum()) < 250


def test_seeded_generator_repeats():
    x = torch.randint(0, 255, (32, 3, 8, 8), dtype=torch.uint8)
    a = random_crop_flip(x, 4, True, torch.Generator().manual_seed(5))
    b = random_crop_flip(x, 4, True, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_device_loader_draws_a_permutation_then_each_batchs_augmentation():
    from lspipe.core.augment import DeviceLoader

    x = torch.arange(10 * 2 * 4 * 4, dtype=torch.uint8).view(10, 2, 4, 4)
    y = torch.arange(10)
    loader = DeviceLoader(x, y, 4, pad=1, flip=True, generator=torch.Generator().manual_seed(3))
    assert len(loader) == 2  # the incomplete last batch is dropped
    passes = [list(loader), list(loader)]
    # the reference: the same draws made by hand, in the documented order
    gen = torch.Generator().manual_seed(3)
    for batches in passes:
        perm = torch.randperm(10, generator=gen)
        assert len(batches) == 2
        for b, (xb, yb) in enumerate(batches):
            rows = perm[4 * b : 4 * b + 4]
            assert torch.equal(yb, rows) and torch.equal(xb, random_crop_flip(x[rows], 1, True, gen))
    assert not torch.equal(passes[0][0][1], passes[1][0][1])  # each pass its own permutation


def test_device_loader_in_order_keeps_every_row():
    from lspipe.core.augment import DeviceLoader

    x = torch.arange(5 * 1 * 3 * 3, dtype=torch.uint8).view(5, 1, 3, 3)
    loader = DeviceLoader(x, None, 2, shuffle=False, drop_last=False)
    assert len(loader) == 3 and torch.equal(torch.cat(list(loader)), x)  # no augmentation: the images as they are
