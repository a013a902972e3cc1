"""The streaming data path's loader: the images of an indexed ImageFolder tree (:mod:`lspipe.core.index`)
decoded as they are needed, and the index built (:func:`build_index`: the tree scanned, split, and a sample
of its images decoded for the channel statistics).

**The loader** (:class:`StreamLoader`) is a :class:`torch.utils.data.DataLoader` with worker
processes, pinned memory and prefetching over a :class:`StreamDataset`; augmentation is
torchvision's transforms v2: ``RandomResizedCrop`` + ``RandomHorizontalFlip`` for training,
``Resize`` + ``CenterCrop`` for evaluation. Images stay uint8 until the model: the model
normalises them on the device (:meth:`lspipe.core.models.Classifier.normalize`), so a batch crosses
to the device at a quarter of the float32 size.

It has the iteration interface of the resident :class:`lspipe.core.augment.DeviceLoader`, so the
training engine can take either:

* ``len(loader)``: batches per pass (an epoch);
* ``iter(loader)``: batches ``(x, y)`` on ``loader.device``, ``x`` uint8 ``B x C x S x S``
  (``S = image_size``), ``y`` int64 labels;

and adds the position that makes a mid-epoch resume exact (the resident loader's position is the
state of its ``torch.Generator``, saved at the end of an epoch):

* ``loader.state_dict()`` is ``{"epoch": e, "batch": b}``, the next batch to be yielded;
  ``loader.load_state_dict(state)`` moves there; ``iter(loader)`` yields the rest of the current
  pass (batches ``b, b+1, ...`` of epoch ``e``), then moves to batch 0 of epoch ``e + 1``.

Determinism does not depend on workers, their number or their order: the permutation of epoch
``e`` is drawn from a generator seeded by ``(seed, e)``, and the augmentation of the image at
position ``k`` of the split from one seeded by ``(seed, e, k)``. So the same seed gives the same
batches, a resumed run skips the consumed batches of its epoch without decoding them, and
``world_size`` ranks (``rank`` = 0..world_size-1, one share of each global batch each) together
see exactly the batches of one process. :func:`eval_batches` iterates a split (or some of its
positions) in order, without augmentation, a batch at a time: dumps of the 50,000 ImageNet
validation images never hold the split in memory.

**Unreadable images** (empty, truncated, not an image) stop the loader with the resident path's
one-line error naming the file and the fix; with ``datasets.<name>.skip_unreadable`` they are left
out of their batch with a warning naming them (the batch is one image shorter). Index building
decodes only a sample (``streaming.stats_images``, for the mean and standard deviation); with
``streaming.verify`` it decodes every image once, finds every unreadable one before the split
(error, or skipped as the resident path skips it), and computes the statistics over the whole
training split.

Not here, and why (measured or reasoned in ``docs/benchmarks.md``): GPU JPEG decoding
(``torchvision.io.decode_jpeg(device="cuda")``) and WebDataset shards.
"""

from __future__ import annotations

import hashlib
import math
import os
import signal
import sys
from typing import Iterator, NamedTuple, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from lspipe.base import defaults
from lspipe.base.errors import DataError
from lspipe.core.data import (SPLITS, UnreadableImage, UnsupportedImage, decode_image, unreadable_message,
                              unsupported_message)
from lspipe.core.index import (INDEX_FORMAT, StreamIndex, pack_paths, read_tree, rel_path, split_rows,
                               synset_names)


def build_index(
    root: str | os.PathLike,
    *,
    name: str = "<name>",
    val_size: float | int = defaults.default("datasets.*.val_size"),
    test_size: float | int = defaults.default("datasets.*.test_size"),
    split_seed: int = defaults.default("datasets.*.split_seed"),
    image_size: int = defaults.default("datasets.*.image_size"),
    channels: int = defaults.default("datasets.*.channels"),
    train_per_class: int | None = defaults.default("datasets.*.train_per_class"),
    skip_unreadable: bool = defaults.default("datasets.*.skip_unreadable"),
    verify: bool | None = None,
    stats_images: int | None = -1,
    eval_crop_fraction: float | None = None,
    crop_scale: Sequence[float] | None = None,
    crop_ratio: Sequence[float] | None = None,
    workers: int | None = 0,
) -> StreamIndex:
    """Index the ImageFolder tree at ``root`` (the keys of ``datasets.<name>``; ``verify``,
    ``stats_images`` (-1; None decodes all), ``eval_crop_fraction`` and the training view's
    ``crop_scale`` and ``crop_ratio`` default to the ``streaming.*`` keys of the schema, ``workers``
    to 0: decode in this process). The views' settings are recorded in the index's meta: the
    loaders read them from there, and a changed setting changes the index's content digest.

    The splits are those :func:`lspipe.core.data.prepare` makes of the same tree. Without ``verify``
    only ``stats_images`` training images (a seeded sample) are decoded, for the mean and
    standard deviation; with it, every image is, and unreadable ones are dropped (or reported)
    before the split, as the resident path drops them.
    """
    verify = defaults.default("streaming.verify") if verify is None else verify
    stats_images = defaults.default("streaming.stats_images") if stats_images == -1 else stats_images
    if eval_crop_fraction is None:
        eval_crop_fraction = defaults.default("streaming.eval_crop_fraction")
    crop_scale = [float(v) for v in (defaults.default("streaming.crop_scale") if crop_scale is None else crop_scale)]
    crop_ratio = [float(v) for v in (defaults.default("streaming.crop_ratio") if crop_ratio is None else crop_ratio)]
    root_s = os.path.abspath(root)
    classes, found, missing, watch, checksum = read_tree(root_s, name, skip_unreadable)
    table = [(split, *rec) for split in ("train", "test", "val") for rec in found.get(split, [])]
    skipped = list(missing)
    sums = None
    if verify:  # decode everything once: readability before the split, statistics over all of train
        paths = [t[1] for t in table]
        ok, sums = image_sums(paths, image_size, channels, eval_crop_fraction, skip_unreadable, name, workers)
        skipped += [p for p, good in zip(paths, ok) if not good]
        table, sums = [t for t, good in zip(table, ok) if good], sums[ok]
    if skipped:
        print(f"warning: skipped {len(skipped)} unreadable image(s) of {root_s} "
              f"(datasets.{name}.skip_unreadable): {', '.join(skipped)}", file=sys.stderr)
    labels = np.array([t[2] for t in table], dtype=np.int64)
    rows, index, has_val, carved = split_rows(np.array([t[0] for t in table]), labels, classes, root_s, list(found),
                                              name=name, val_size=val_size, test_size=test_size, split_seed=split_seed,
                                              train_per_class=train_per_class)
    packed, offsets = pack_paths([t[1] for t in table], root_s)
    meta = {
        "format": INDEX_FORMAT, "name": name, "source": "imagefolder", "storage": "streaming", "root": root_s,
        "split_seed": split_seed, "val_size": None if has_val else val_size,
        "val_source": "folder" if has_val else "carved", "train_per_class": train_per_class,
        "image_size": int(image_size), "channels": int(channels), "eval_crop_fraction": eval_crop_fraction,
        "crop_scale": crop_scale, "crop_ratio": crop_ratio,
        "sizes": {s: int(len(rows[s])) for s in SPLITS}, "checksum": checksum, "watch": watch,
        "verified": bool(verify),
        "skip_unreadable": bool(skip_unreadable),
        "skipped": [rel_path(p, root_s) for p in skipped], "class_names": synset_names(root_s, classes),
        # only for a carved test split: the index of a tree with test/ or val/ stays byte for byte what it was
        **({"test_size": test_size} if carved else {}),
    }
    idx = StreamIndex(root_s, packed, offsets, labels, np.array([t[3] for t in table], dtype=np.int64),
                      np.array([t[4] for t in table], dtype=np.int64), rows, index, list(classes),
                      np.zeros(channels, np.float32), np.ones(channels, np.float32), meta)
    _channel_statistics(idx, sums, stats_images, eval_crop_fraction, workers)
    return idx


def _channel_statistics(idx: StreamIndex, sums: np.ndarray | None, stats_images: int | None, crop_fraction: float,
                        workers: int | None) -> None:
    """Set the training split's per-channel mean and standard deviation (in [0, 1] units) of ``idx``: from the
    sums of every image (``sums``, a verified tree), else from ``stats_images`` training images (a seeded sample;
    None: all) decoded now."""
    meta, train_rows = idx.meta, idx.rows["train"]
    if sums is None:
        sample = np.arange(len(train_rows))
        if stats_images and stats_images < len(sample):
            sample = np.sort(np.random.default_rng(meta["split_seed"]).choice(sample, size=stats_images, replace=False))
        ok, sums = image_sums([idx.path(r) for r in train_rows[sample]], meta["image_size"], meta["channels"],
                              crop_fraction, meta["skip_unreadable"], meta["name"], workers)
        sums = sums[ok]
        meta["stats_images"] = int(ok.sum())
    else:
        sums = sums[train_rows]
        meta["stats_images"] = int(len(sums))
    total = sums.sum(axis=0)  # per channel: sum, sum of squares, count
    if not total[0, 2]:
        raise DataError(f"none of the training images of {idx.root} decoded for the channel statistics could be "
                        "read; raise streaming.stats_images (null decodes all) or fix the images")
    mean = total[:, 0] / total[:, 2]
    idx.mean = mean.astype(np.float32)
    idx.std = np.sqrt(np.maximum(total[:, 1] / total[:, 2] - mean**2, 0.0)).astype(np.float32)


# --------------------------------------------------------------------------- decoding and augmentation


def _decode(path: str, channels: int):
    """The image at ``path`` as a uint8 ``C x H x W`` tensor, decoded by the resident path's decoder
    (:func:`lspipe.core.data.decode_image`: the same pixels, conversions and refusals)."""
    return TF.pil_to_tensor(decode_image(path, channels))


def eval_transform(image_size: int, crop_fraction: float):
    """Resize the shorter side to ``floor(image_size / crop_fraction)``, then take the central
    ``image_size`` square (224 of 256 at 0.875, the ImageNet convention; timm's arithmetic)."""
    return v2.Compose([v2.Resize(int(math.floor(image_size / crop_fraction)), antialias=True),
                       v2.CenterCrop(image_size)])


def train_transform(image_size: int, scale: Sequence[float], ratio: Sequence[float]):
    """``RandomResizedCrop`` (area fraction ``scale``, aspect ``ratio``) + ``RandomHorizontalFlip``."""
    return v2.Compose([v2.RandomResizedCrop(image_size, scale=tuple(scale), ratio=tuple(ratio), antialias=True),
                       v2.RandomHorizontalFlip()])


def _seed(*entropy: int) -> int:
    """A 63-bit seed from integers: BLAKE2b of their decimal text, so nearby inputs give unrelated
    seeds (and in ~1 us: it runs once per image)."""
    digest = hashlib.blake2b(":".join(str(int(e)) for e in entropy).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def sample_seed(seed: int, epoch: int, position: int) -> int:
    """The seed of the augmentation of the image at ``position`` of the split in ``epoch``."""
    return _seed(seed, 1, epoch, position)


def permutation(n: int, seed: int, epoch: int):
    """The order of epoch ``epoch``: a permutation of ``0..n-1`` drawn from ``(seed, epoch)`` alone."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(_seed(seed, 0, epoch))).numpy()


class Unreadable(NamedTuple):
    """What a worker returns for an image it cannot read (the loader decides: error, or skip when
    ``skippable`` and ``skip_unreadable``); an image whose pixel values are refused is not skippable."""

    position: int
    path: str
    message: str
    skippable: bool = True


class StreamDataset:
    """Map-style dataset over one split of an index; an item is keyed ``(epoch, position)``.

    ``mode`` is ``train`` (RandomResizedCrop + flip, seeded by ``(seed, epoch, position)``),
    ``eval`` (resize + center crop) or ``sums`` (per-channel sum, sum of squares and pixel count
    of the evaluation view, float64 ``C x 3``, for the index's statistics). An item is
    ``(image, label, position)``, or an :class:`Unreadable`.
    """

    def __init__(self, paths: Sequence[str] | np.ndarray, labels: np.ndarray, *, mode: str, image_size: int,
                 channels: int = defaults.default("datasets.*.channels"), seed: int = 0, crop_scale=None,
                 crop_ratio=None, crop_fraction=None, name: str = "<name>"):
        if mode not in ("train", "eval", "sums"):
            raise ValueError(f"mode must be train, eval or sums, got {mode!r}")
        # one numpy array of bytes, not a list of str: forked workers then share it without copying
        self.paths = np.asarray([os.fsencode(p) for p in paths])
        self.labels = np.asarray(labels, dtype=np.int64)
        self.mode, self.channels, self.seed, self.name = mode, int(channels), int(seed), name
        crop_scale = defaults.default("streaming.crop_scale") if crop_scale is None else crop_scale
        crop_ratio = defaults.default("streaming.crop_ratio") if crop_ratio is None else crop_ratio
        crop_fraction = defaults.default("streaming.eval_crop_fraction") if crop_fraction is None else crop_fraction
        self.transform = (train_transform(image_size, crop_scale, crop_ratio) if mode == "train"
                          else eval_transform(image_size, crop_fraction))

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key):
        epoch, k = key if isinstance(key, tuple) else (0, key)
        path = os.fsdecode(self.paths[k])
        try:
            img = _decode(path, self.channels)
        except UnreadableImage as err:
            return Unreadable(int(k), path, unreadable_message(path, err, self.name))
        except UnsupportedImage as err:
            return Unreadable(int(k), path, unsupported_message(path, err), False)
        if self.mode == "train":
            fork = torch.utils.data.get_worker_info() is None  # in the main process: keep its RNG untouched
            with torch.random.fork_rng(devices=[], enabled=fork):  # transforms v2 draw from the CPU RNG
                torch.default_generator.manual_seed(sample_seed(self.seed, epoch, k))
                img = self.transform(img)
        else:
            img = self.transform(img)
        if self.mode == "sums":
            v = img.reshape(img.shape[0], -1).double() / 255.0
            img = torch.stack([v.sum(1), (v * v).sum(1), torch.full((len(v),), float(v.shape[1]),
                                                                      dtype=torch.float64)], 1)
        return img, int(self.labels[k]), int(k)


def collate(samples):
    """``(x, y, positions, unreadable)``: the readable images stacked (None if there are none),
    their labels and positions (int64 tensors), and the :class:`Unreadable` items."""
    good = [s for s in samples if not isinstance(s, Unreadable)]
    bad = [tuple(s) for s in samples if isinstance(s, Unreadable)]
    if not good:
        return None, torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long), bad
    return (torch.stack([s[0] for s in good]), torch.tensor([s[1] for s in good], dtype=torch.long),
            torch.tensor([s[2] for s in good], dtype=torch.long), bad)


class BatchSampler:
    """The batches of one pass as lists of ``(epoch, position)`` keys, from batch ``start`` on.

    A pass is ``positions`` (all of the split by default) in the order of :func:`permutation`
    (``shuffle``) or as given, cut into global batches of ``batch_size``; rank ``rank`` of
    ``world_size`` takes its contiguous share of each (``numpy.array_split``). ``epoch`` and
    ``start`` are set before each pass; batches before ``start`` are never produced, so nothing
    of them is read or decoded.
    """

    def __init__(self, positions: np.ndarray, batch_size: int, *, seed: int, shuffle: bool, drop_last: bool,
                 rank: int = 0, world_size: int = 1):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
        self.positions, self.batch_size, self.seed = np.asarray(positions, dtype=np.int64), int(batch_size), seed
        self.shuffle, self.drop_last, self.rank, self.world_size = shuffle, drop_last, rank, world_size
        self.epoch, self.start = 0, 0

    def passes(self) -> int:
        n, bs = len(self.positions), self.batch_size
        return n // bs if self.drop_last else -(-n // bs)

    def global_batch(self, epoch: int, b: int) -> np.ndarray:
        order = self.positions[permutation(len(self.positions), self.seed, epoch)] if self.shuffle else self.positions
        return order[b * self.batch_size:(b + 1) * self.batch_size]

    def __len__(self) -> int:
        return max(0, self.passes() - self.start)

    def __iter__(self):
        order = self.positions[permutation(len(self.positions), self.seed, self.epoch)] if self.shuffle else self.positions
        bs = self.batch_size
        for b in range(self.start, self.passes()):
            share = np.array_split(order[b * bs:(b + 1) * bs], self.world_size)[self.rank]
            yield [(self.epoch, int(k)) for k in share]


def _cores() -> int:
    """The CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _workers(workers: int | None) -> int:
    """DataLoader worker processes: ``workers``, at most one per core this process may use (each is a
    process holding its prefetched batches: more only fill the memory; a warning says so), or None:
    one per core, at most 16."""
    cores = _cores()
    if workers is None:
        return min(cores, 16)
    if int(workers) > cores:
        if (int(workers), cores) not in _WARNED:  # once: a loader is made per pass of validation
            _WARNED.add((int(workers), cores))
            print(f"warning: {int(workers)} streaming loader workers (streaming.workers) for {cores} CPU core(s): "
                  f"using {cores}", file=sys.stderr)
        return cores
    return int(workers)


_WARNED: set = set()


def _worker_signals(worker_id: int) -> None:
    """A DataLoader worker ignores SIGTERM and SIGUSR1. SLURM signals every process of a job step, and a
    worker ended so would fail its loader's next batch (PyTorch raises in the main process at once); the
    main process decides what a signal means (``lspipe train`` checkpoints: :mod:`lspipe.engine.preempt`),
    and its loader ends the workers when it ends (or they see it gone)."""
    for sig in (signal.SIGTERM, signal.SIGUSR1):
        signal.signal(sig, signal.SIG_IGN)


class StreamLoader:
    """Batches of one split of a :class:`StreamIndex` (the interface is in the module docstring).

    ``augment`` picks the training view (RandomResizedCrop + flip) or the evaluation view (resize
    + center crop); ``positions`` restricts a pass to some positions of the split (in the given
    order unless ``shuffle``). ``workers`` (None: one per available CPU core, at most 16; 0:
    decode in this process), ``prefetch_factor`` and ``pin_memory`` (used when ``device`` is a
    CUDA device) default to the schema's ``streaming.*`` keys, ``skip_unreadable`` to the
    index's dataset setting.
    """

    def __init__(self, idx: StreamIndex, split: str, batch_size: int, *, seed: int = 0, augment: bool = True,
                 shuffle: bool = True, drop_last: bool = True, positions: Sequence[int] | None = None,
                 device="cpu", workers: int | None = -1, prefetch_factor: int | None = None,
                 pin_memory: bool | None = None, rank: int = 0, world_size: int = 1,
                 skip_unreadable: bool | None = None, crop_scale=None, crop_ratio=None, crop_fraction=None):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.index, self.split, self.device = idx, split, torch.device(device)
        if skip_unreadable is None:
            skip_unreadable = idx.meta.get("skip_unreadable", defaults.default("datasets.*.skip_unreadable"))
        self.skip_unreadable = bool(skip_unreadable)
        if crop_fraction is None:
            crop_fraction = idx.meta.get("eval_crop_fraction") or defaults.default("streaming.eval_crop_fraction")
        crop_scale = idx.meta.get("crop_scale") if crop_scale is None else crop_scale  # the index's training view
        crop_ratio = idx.meta.get("crop_ratio") if crop_ratio is None else crop_ratio
        self.dataset = StreamDataset(
            idx.split_paths(split), idx.y[split], mode="train" if augment else "eval",
            image_size=idx.image_shape[1], channels=idx.image_shape[0], seed=seed, crop_scale=crop_scale,
            crop_ratio=crop_ratio, crop_fraction=crop_fraction, name=idx.meta.get("name", "<name>"),
        )
        pos = np.arange(len(self.dataset)) if positions is None else np.asarray(positions, dtype=np.int64)
        self.sampler = BatchSampler(pos, batch_size, seed=seed, shuffle=shuffle, drop_last=drop_last, rank=rank,
                                    world_size=world_size)
        if batch_size % world_size:
            raise ValueError(f"the global batch size {batch_size} is not a multiple of the {world_size} ranks")
        workers = _workers(defaults.default("streaming.workers") if workers == -1 else workers)
        pin = defaults.default("streaming.pin_memory") if pin_memory is None else pin_memory
        prefetch = defaults.default("streaming.prefetch_factor") if prefetch_factor is None else prefetch_factor
        self.loader = DataLoader(
            self.dataset, batch_sampler=self.sampler, num_workers=workers, collate_fn=collate,
            pin_memory=bool(pin) and self.device.type == "cuda",
            prefetch_factor=prefetch if workers else None, persistent_workers=workers > 0,
            worker_init_fn=_worker_signals if workers else None,
            # the loader's own seed draw must not consume the caller's global RNG (dropout, ...)
            generator=torch.Generator().manual_seed(_seed(seed, 2)),
        )
        self.epoch, self.batch = 0, 0
        self.warned: set[str] = set()

    def __len__(self) -> int:
        return self.sampler.passes()

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "batch": self.batch}

    def load_state_dict(self, state: dict) -> None:
        epoch, batch = int(state["epoch"]), int(state["batch"])
        if not 0 <= batch <= len(self):
            raise ValueError(f"batch {batch} is outside 0..{len(self)} (batches per pass)")
        self.epoch, self.batch = (epoch + 1, 0) if batch == len(self) else (epoch, batch)

    def set_epoch(self, epoch: int) -> None:
        """Start epoch ``epoch`` at its first batch."""
        self.epoch, self.batch = int(epoch), 0

    def batches(self) -> Iterator[tuple]:
        """Like ``iter(loader)`` but yields ``(x, y, positions)``, positions into the split (CPU
        int64): with ``skip_unreadable`` they say which images a batch lacks."""
        epoch, n = self.epoch, len(self)
        self.sampler.epoch, self.sampler.start = epoch, self.batch
        nb = self.device.type == "cuda"
        for b, (x, y, pos, bad) in enumerate(self.loader, self.batch):
            for _, path, message, skippable in bad:
                if not (self.skip_unreadable and skippable):
                    raise DataError(message)
                if path not in self.warned:
                    self.warned.add(path)
                    print(f"warning: skipped unreadable image {path} "
                          f"(datasets.{self.index.meta.get('name', '<name>')}.skip_unreadable)", file=sys.stderr)
            self.epoch, self.batch = (epoch, b + 1) if b + 1 < n else (epoch + 1, 0)
            if x is None:  # every image of the batch unreadable (and skipped)
                continue
            yield x.to(self.device, non_blocking=nb), y.to(self.device, non_blocking=nb), pos

    def __iter__(self):
        for x, y, _ in self.batches():
            yield x, y


def eval_batches(idx: StreamIndex, split: str, batch_size: int, *, positions: Sequence[int] | None = None,
                 device="cpu", workers: int | None = -1, **kwargs) -> Iterator[tuple]:
    """``(x, y, positions)`` of ``split`` (or of ``positions`` of it, in that order), evaluation
    view, no augmentation, ``batch_size`` images at a time: at most the prefetched batches are in
    memory, never the split."""
    loader = StreamLoader(idx, split, batch_size, augment=False, shuffle=False, drop_last=False, positions=positions,
                          device=device, workers=workers, **kwargs)
    yield from loader.batches()


def image_sums(paths: Sequence[str], image_size: int, channels: int, crop_fraction: float, skip_unreadable: bool,
                name: str, workers: int | None):
    """(readable mask, per-image ``C x 3`` sums) of ``paths`` (evaluation view), decoded by
    ``workers`` DataLoader workers; an unreadable image is an error unless ``skip_unreadable``."""
    ds = StreamDataset(paths, np.zeros(len(paths), np.int64), mode="sums", image_size=image_size, channels=channels,
                       crop_fraction=crop_fraction, name=name)
    ok = np.zeros(len(paths), dtype=bool)
    sums = np.zeros((len(paths), channels, 3), dtype=np.float64)
    workers = _workers(workers)
    batches = [list(range(s, min(s + 64, len(paths)))) for s in range(0, len(paths), 64)]
    dl = DataLoader(ds, batch_sampler=batches, num_workers=workers, collate_fn=collate,
                    generator=torch.Generator().manual_seed(0))
    for x, _, pos, bad in dl:
        for _, _, message, skippable in bad:
            if not (skip_unreadable and skippable):
                raise DataError(message)
        if x is not None:
            ok[pos.numpy()] = True
            sums[pos.numpy()] = x.numpy()
    return ok, sums
