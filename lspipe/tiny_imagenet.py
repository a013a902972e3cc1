"""A tiny ImageNet-layout tree for tests and CI: ``train/<wnid>/*.JPEG``, ``val/<wnid>/*.JPEG``.

Made from a CIFAR-10 JPEG subset (an ImageFolder tree ``train/<class>/*.jpg`` and
``test/<class>/*.jpg``, named by ``--source`` or the environment variable ``LSPIPE_CIFAR_SUBSET``), each CIFAR class renamed to an ImageNet WordNet
id (:data:`WNIDS`: the paper's Fig. 1 classes tench, meerkat, cleaver, toy poodle and miniature
poodle among them; the pictures stay CIFAR's), upscaled from 32 px to sizes and aspect ratios of
their own (64 to 96 px, as ImageNet's vary), re-encoded as JPEG. ``train/`` is taken from the
subset's ``train/``, ``val/`` from its ``test/``, the first files by name. Without the subset,
the images are synthetic (seeded noise around a colour per class, learnable). One training image
is grey and one CMYK, as a few of ImageNet's are. ``LOC_synset_mapping.txt`` names the classes,
as in ImageNet's distribution.

``python -m lspipe.tiny_imagenet OUT [--source DIR] [--train-per-class N] [--val-per-class N]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

#: environment variable naming the CIFAR-10 JPEG subset the tree is made from (synthetic images without it)
SOURCE_ENV = "LSPIPE_CIFAR_SUBSET"

# CIFAR-10 class -> (WordNet id, ImageNet class name); the last five are the paper's Fig. 1 classes
WNIDS = {
    "airplane": ("n02690373", "airliner"),
    "automobile": ("n02814533", "beach wagon"),
    "bird": ("n01530575", "brambling"),
    "horse": ("n02389026", "sorrel"),
    "ship": ("n03095699", "container ship"),
    "frog": ("n01440764", "tench"),
    "deer": ("n02138441", "meerkat"),
    "truck": ("n03041632", "cleaver"),
    "dog": ("n02113624", "toy poodle"),
    "cat": ("n02113712", "miniature poodle"),
}
SIZES = ((64, 64), (80, 64), (64, 96), (96, 72))  # (width, height), cycled through


def _source_images(source: Path | None, folder: str, cifar_class: str, n: int, seed: int):
    """``n`` PIL images of ``cifar_class`` from ``source/folder/<class>/`` (the first by name), or synthetic."""
    from PIL import Image

    if source is not None:
        files = sorted((source / folder / cifar_class).glob("*.jpg"))[:n]
        if len(files) < n:
            raise FileNotFoundError(f"{source / folder / cifar_class} has {len(files)} images, {n} wanted")
        for f in files:
            with Image.open(f) as im:
                yield im.convert("RGB")
        return
    k = list(WNIDS).index(cifar_class)
    rng = np.random.default_rng([seed, k, 0 if folder == "train" else 1])
    colour = np.array([(k * 67) % 256, (k * 131 + 40) % 256, (k * 29 + 90) % 256], dtype=np.float64)
    for _ in range(n):
        img = colour + rng.normal(0, 40, (32, 32, 3))
        yield Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def make_tree(out: str | os.PathLike, source: str | os.PathLike | None = None, *, train_per_class: int = 24,
              val_per_class: int = 6, seed: int = 0, quality: int = 90, sizes=SIZES) -> Path:
    """Write the tree to ``out`` (built beside it, then renamed: never half-written) and return it.

    ``source`` defaults to ``$LSPIPE_CIFAR_SUBSET``; without it, or with a folder that has no ``train/``,
    the images are synthetic. ``sizes`` are the
    (width, height) cycled through (the benchmark uses ImageNet's typical 500 x 375). An existing
    ``out`` is replaced.
    """
    from PIL import Image

    out = Path(out)
    source = source if source is not None else os.environ.get(SOURCE_ENV) or None
    src = Path(source) if source is not None and Path(source, "train").is_dir() else None
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        val_no = 0
        for cifar_class, (wnid, _) in WNIDS.items():
            for split, folder, n in (("train", "train", train_per_class), ("val", "test", val_per_class)):
                d = tmp / split / wnid
                d.mkdir(parents=True)
                for k, im in enumerate(_source_images(src, folder, cifar_class, n, seed)):
                    w, h = sizes[(k + len(wnid) + val_no) % len(sizes)]
                    im = im.resize((w, h), Image.BICUBIC)
                    if split == "train" and k == 0 and cifar_class == "cat":
                        im = im.convert("L")  # ImageNet has grey JPEGs ...
                    elif split == "train" and k == 0 and cifar_class == "dog":
                        im = im.convert("CMYK")  # ... and CMYK ones
                    if split == "train":
                        name = f"{wnid}_{k}.JPEG"
                    else:
                        val_no += 1
                        name = f"ILSVRC2012_val_{val_no:08d}.JPEG"
                    im.save(d / name, "JPEG", quality=quality)
        (tmp / "LOC_synset_mapping.txt").write_text("".join(f"{w} {n}\n" for w, n in sorted(WNIDS.values())))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m lspipe.tiny_imagenet", description=__doc__.split("\n\n")[0])
    p.add_argument("out")
    p.add_argument("--source", default=None, help=f"the CIFAR-10 JPEG subset (default: ${SOURCE_ENV}; synthetic "
                                                  "images without it, or if the folder has no train/)")
    p.add_argument("--train-per-class", type=int, default=24)
    p.add_argument("--val-per-class", type=int, default=6)
    a = p.parse_args(argv)
    out = make_tree(a.out, a.source, train_per_class=a.train_per_class, val_per_class=a.val_per_class)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
