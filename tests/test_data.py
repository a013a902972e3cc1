"""Data preparation for every source: splits are fixed, seeded, stratified and disjoint."""

from __future__ import annotations

import json
import types

import numpy as np
import pytest
from PIL import Image

from lspipe.base.errors import DataError
from lspipe.core import data as D
from lspipe.core import survey


def _check_splits(p: D.Prepared):
    for s in D.SPLITS:
        assert p.x[s].dtype == np.uint8 and p.x[s].ndim == 4
        assert len(p.x[s]) == len(p.y[s]) == len(p.index[s]) > 0
    # train and val come from the same source split and must not overlap
    assert not set(p.index["train"]) & set(p.index["val"])
    assert p.mean.shape == p.std.shape == (p.image_shape[0],)


def test_digits_prepare_is_stratified_and_repeatable(tmp_path):
    a = D.prepare("digits", "digits", tmp_path / "a.npz", val_size=0.2, test_size=0.25, split_seed=3)
    b = D.prepare("digits", "digits", tmp_path / "b.npz", val_size=0.2, test_size=0.25, split_seed=3)
    _check_splits(a)
    assert a.image_shape == (1, 8, 8) and a.num_classes == 10 and a.classes[0] == "0"
    n = sum(len(a.y[s]) for s in D.SPLITS)
    assert n == 1797
    assert len(a.y["test"]) == round(0.25 * 1797)
    for s in D.SPLITS:
        np.testing.assert_array_equal(a.x[s], b.x[s])
        np.testing.assert_array_equal(a.index[s], b.index[s])
    # digits: train, val and test are all carved from one pool -> pairwise disjoint
    assert not set(a.index["test"]) & (set(a.index["train"]) | set(a.index["val"]))
    # stratified: class proportions of val match those of train within one example per class
    tr = np.bincount(a.y["train"], minlength=10) / len(a.y["train"])
    va = np.bincount(a.y["val"], minlength=10) / len(a.y["val"])
    assert np.abs(tr - va).max() < 1.5 / (len(a.y["val"]) / 10)
    c = D.prepare("digits", "digits", tmp_path / "c.npz", val_size=0.2, test_size=0.25, split_seed=4)
    assert not np.array_equal(a.index["val"], c.index["val"])


def test_prepared_file_is_written_atomically(tmp_path, monkeypatch):
    out = tmp_path / "d.npz"

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(D, "savez_deterministic", boom)
    with pytest.raises(RuntimeError):
        D.prepare("digits", "digits", out)
    assert list(tmp_path.iterdir()) == []


def _make_image_folder(root, classes=("cat", "dog", "eel"), n_train=12, n_test=4, size=40, splits=("train", "test"),
                       n_val=3):
    rng = np.random.default_rng(0)
    sizes = {"train": n_train, "test": n_test, "val": n_val}
    for split, n in ((s, sizes[s]) for s in splits):
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                arr = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                Image.fromarray(arr).save(root / split / c / f"{i}.png")


def test_imagefolder_prepare_resizes_and_splits(tmp_path):
    _make_image_folder(tmp_path / "tree")
    p = D.prepare("toy", "imagefolder", tmp_path / "toy.npz", root=str(tmp_path / "tree"), image_size=16, val_size=6)
    _check_splits(p)
    assert p.classes == ["cat", "dog", "eel"]
    assert p.image_shape == (3, 16, 16)
    assert len(p.y["val"]) == 6 and np.bincount(p.y["val"]).tolist() == [2, 2, 2]
    assert len(p.y["test"]) == 12
    assert p.meta["sizes"] == {"train": 30, "val": 6, "test": 12}


def _images_of(folder):
    """Every image of a split folder (class order, then file order as read), as uint8 C x H x W arrays."""
    from torchvision.datasets.folder import make_dataset

    classes = sorted(p.name for p in folder.iterdir())
    samples = make_dataset(str(folder), {c: i for i, c in enumerate(classes)}, extensions=D.IMAGE_EXTENSIONS)
    return np.stack([np.asarray(Image.open(p).convert("RGB").resize((16, 16), Image.BILINEAR)).transpose(2, 0, 1)
                     for p, _ in samples]), np.array([y for _, y in samples])


def test_imagefolder_val_folder_is_the_validation_split(tmp_path):
    """train/ + val/ + test/: val/ is validation (nothing carved from train/); train/ + val/ (the ImageNet
    layout): val/ stays the test split and validation is carved from train/."""
    root = tmp_path / "three"
    _make_image_folder(root, n_train=10, n_test=4, n_val=3, splits=("train", "val", "test"))
    p = D.prepare("toy", "imagefolder", tmp_path / "t.npz", root=str(root), image_size=16, val_size=6)
    assert p.meta["sizes"] == {"train": 30, "val": 9, "test": 12}
    assert p.meta["val_source"] == "folder" and p.meta["val_size"] is None
    for split in ("train", "val", "test"):
        x, y = _images_of(root / split)
        np.testing.assert_array_equal(p.x[split], x[p.index[split]])
        np.testing.assert_array_equal(p.y[split], y[p.index[split]])
    assert sorted(p.index["train"]) == list(range(30))  # every training image stays in train

    root2 = tmp_path / "imagenet"
    _make_image_folder(root2, n_train=10, n_val=4, splits=("train", "val"))
    q = D.prepare("toy", "imagefolder", tmp_path / "q.npz", root=str(root2), image_size=16, val_size=6)
    _check_splits(q)
    assert q.meta["sizes"] == {"train": 24, "val": 6, "test": 12} and q.meta["val_source"] == "carved"
    x, y = _images_of(root2 / "val")
    np.testing.assert_array_equal(q.x["test"], x)
    np.testing.assert_array_equal(q.y["test"], y)


def test_imagefolder_errors_name_the_fix(tmp_path):
    with pytest.raises(DataError, match="no train/ subfolder"):
        D.prepare("toy", "imagefolder", tmp_path / "x.npz", root=str(tmp_path))
    (tmp_path / "train" / "a").mkdir(parents=True)  # train/ alone is a tree (its test split is carved) ...
    with pytest.raises(DataError, match="class folder .*a holds no images"):  # ... but a class needs images
        D.prepare("toy", "imagefolder", tmp_path / "x.npz", root=str(tmp_path))
    assert not (tmp_path / "x.npz").exists()
    with pytest.raises(DataError, match=r"datasets\.toy\.root '.*nowhere' is not a folder"):
        D.prepare("toy", "imagefolder", tmp_path / "x.npz", root=str(tmp_path / "nowhere"))


def test_cifar_missing_names_root_and_download_flag(tmp_path):
    with pytest.raises(DataError) as err:
        D.prepare("cifar10", "cifar10", tmp_path / "c.npz", root=str(tmp_path / "nowhere"), download=False)
    msg = str(err.value)
    assert "nowhere" in msg and "download" in msg
    with pytest.raises(DataError, match="needs a root"):
        D.prepare("cifar10", "cifar10", tmp_path / "c.npz", root=None)


def test_cifar_conversion_with_a_fake_torchvision_dataset(tmp_path, monkeypatch):
    """The torchvision CIFAR object (N,H,W,C uint8 + targets) becomes NCHW splits (40k/10k-style)."""
    import torchvision.datasets

    rng = np.random.default_rng(1)

    class FakeCIFAR:
        classes = [f"c{i}" for i in range(10)]

        def __init__(self, root, train, download):
            n = 200 if train else 50
            self.data = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
            self.targets = list(np.arange(n) % 10)

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR)
    p = D.prepare("c10", "cifar10", tmp_path / "c.npz", root=str(tmp_path), val_size=40)
    _check_splits(p)
    assert p.image_shape == (3, 32, 32)
    assert p.meta["sizes"] == {"train": 160, "val": 40, "test": 50}
    assert np.bincount(p.y["val"]).tolist() == [4] * 10


def test_mnist_idx_files_round_trip_through_the_source(tmp_path):
    """A small idx file set written by the tests (conftest.write_mnist, byte by byte) comes back from
    ``source: mnist`` unchanged: the test split is the t10k files in order, train + val are the train
    files (traced by their index), the validation split is carved stratified and seeded, and the
    classes are the digits."""
    from conftest import write_mnist

    arrays = write_mnist(tmp_path / "m", train=(300,), test=(100,))
    p = D.prepare("mn", "mnist", tmp_path / "m.npz", root=str(tmp_path / "m"), val_size=50, split_seed=3)
    _check_splits(p)
    assert p.classes == [str(c) for c in range(10)] and p.image_shape == (1, 28, 28)
    assert p.meta["sizes"] == {"train": 250, "val": 50, "test": 100} and p.meta["source"] == "mnist"
    np.testing.assert_array_equal(p.x["test"][:, 0], arrays["x_test"])
    np.testing.assert_array_equal(p.y["test"], arrays["y_test"])
    np.testing.assert_array_equal(p.index["test"], np.arange(100))
    for split in ("train", "val"):  # every carved image is the training file's image at its index
        np.testing.assert_array_equal(p.x[split][:, 0], arrays["x_train"][p.index[split]])
        np.testing.assert_array_equal(p.y[split], arrays["y_train"][p.index[split]])
    assert sorted(np.concatenate([p.index["train"], p.index["val"]]).tolist()) == list(range(300))
    # the same carve as every source: stratified_split of the training labels with the split seed
    _, held = D.stratified_split(arrays["y_train"].astype(np.int64), 50, 3)
    np.testing.assert_array_equal(p.index["val"], held)
    # mean / std of the training split, in [0, 1] units
    x = arrays["x_train"][p.index["train"]].astype(np.float64) / 255
    np.testing.assert_allclose(p.mean, [x.mean()], rtol=1e-5)
    np.testing.assert_allclose(p.std, [x.std()], rtol=1e-5)


def test_mnist_missing_or_damaged_names_root_and_download(tmp_path):
    from conftest import write_mnist

    with pytest.raises(DataError) as err:
        D.prepare("mn", "mnist", tmp_path / "m.npz", root=str(tmp_path / "nowhere"), download=False)
    msg = str(err.value)
    assert "nowhere" in msg and "download: true" in msg and "train-images-idx3-ubyte" in msg
    with pytest.raises(DataError, match="needs a root"):
        D.prepare("mn", "mnist", tmp_path / "m.npz", root=None)
    write_mnist(tmp_path / "m")
    (tmp_path / "m" / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08")  # truncated
    with pytest.raises(DataError, match="unreadable"):
        D.prepare("mn", "mnist", tmp_path / "m.npz", root=str(tmp_path / "m"))
    assert not (tmp_path / "m.npz").exists()


def test_mnist_source_digest_follows_the_idx_files(tmp_path):
    from conftest import write_mnist

    write_mnist(tmp_path / "m")
    opts = {"source": "mnist", "root": str(tmp_path / "m")}
    before = survey.source_digest(opts)
    assert before.startswith("4 files, content ") and survey.digest_files(before) == 4  # the count read back
    assert survey.digest_files(survey.source_digest({"source": "digits"})) == 0  # "bundled"
    assert survey.digest_files(f"no files under {tmp_path}") == 0
    assert [f for f, _, _ in survey.source_manifest(opts)] == sorted(
        ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", "train-images-idx3-ubyte", "train-labels-idx1-ubyte"])
    write_mnist(tmp_path / "m", seed=1)  # other images
    assert survey.source_digest(opts) != before


def test_real_cifar10_subset(tmp_path, cifar_subset):
    p = D.prepare("c10sub", "imagefolder", tmp_path / "s.npz", root=str(cifar_subset), image_size=32, val_size=0.2,
                  train_per_class=200)
    _check_splits(p)
    assert p.classes[:3] == ["airplane", "automobile", "bird"] and p.num_classes == 10
    assert p.meta["sizes"]["train"] + p.meta["sizes"]["val"] == 2000
    assert p.meta["sizes"]["test"] == 2000
    # real photographs: per-channel statistics are in the usual CIFAR range
    assert np.all((p.mean > 0.3) & (p.mean < 0.6)) and np.all((p.std > 0.15) & (p.std < 0.35))
    assert json.loads(json.dumps(p.meta))["source"] == "imagefolder"


def test_unknown_class_name_lists_classes(tmp_path):
    p = D.prepare("digits", "digits", tmp_path / "d.npz")
    with pytest.raises(DataError, match="its classes are: 0, 1, 2"):
        p.class_index("eleven")
