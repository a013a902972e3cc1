"""Shared fixtures: the tiny end-to-end workflow run (once per session) and helpers.

Environment variables the suite reads (``.ci/run`` sets both):

* ``LSPIPE_CIFAR_SUBSET``: the real CIFAR-10 JPEG subset (an ImageFolder tree ``train/<class>/*.jpg``,
  ``test/<class>/*.jpg``); the tests that need it skip without it. Default: ``../shared/data/
  cifar10-jpg-subset`` beside the checkout, where the development machines keep it.
* ``LSPIPE_TEST_SLURM=1``: run the tests marked ``slurm``, which start a real single-node SLURM
  cluster (as root they ``apt-get install`` munge and SLURM and write ``/etc/slurm``:
  tests/slurm_cluster.py); without it they skip, changing nothing outside the repository and the
  temporary folder.

With pytest-xdist (``make test``: ``-n 2 --dist loadgroup``) every test that uses ``tiny_run`` is put in
one group, so one worker runs the end-to-end fixture once and all its users; a test using another
module-scoped fixture is grouped with its module, so that fixture too is made once.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "tests" / "tiny.yaml"
CIFAR_SUBSET = Path(os.environ.get("LSPIPE_CIFAR_SUBSET") or REPO.parent / "shared" / "data" / "cifar10-jpg-subset")
if CIFAR_SUBSET.is_dir():  # lspipe.tiny_imagenet and the benchmarks read it too (also in subprocesses)
    os.environ["LSPIPE_CIFAR_SUBSET"] = str(CIFAR_SUBSET)
SLURM_ENV = "LSPIPE_TEST_SLURM"


def slurm_tests_enabled() -> bool:
    return os.environ.get(SLURM_ENV, "") not in ("", "0")


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own hook reads the groups
def pytest_collection_modifyitems(config, items):
    skip_slurm = pytest.mark.skip(reason=f"real SLURM cluster: set {SLURM_ENV}=1 to run (as root it installs "
                                         "SLURM with apt-get and writes /etc/slurm)")
    for item in items:
        if item.get_closest_marker("slurm") and not slurm_tests_enabled():
            item.add_marker(skip_slurm)
        if item.get_closest_marker("xdist_group"):
            continue
        names = getattr(item, "fixturenames", ())
        if "tiny_run" in names:
            item.add_marker(pytest.mark.xdist_group("tiny_run"))
            continue
        defs = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
        if any(d and d[-1].scope == "module" for n, d in defs.items() if n in names):
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))


def snakemake(workdir: Path, *args: str, timeout: int = 900, check: bool = True) -> subprocess.CompletedProcess:
    """Run the repository's workflow in ``workdir`` (its config.yaml is the one used)."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir), *args]
    # the rules call the `lspipe` console script: put this interpreter's bin folder on PATH
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PATH": path}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-5000:]}\n{proc.stderr[-8000:]}")
    return proc


def planned_jobs(proc: subprocess.CompletedProcess) -> dict[str, int]:
    """Rule -> job count from a (dry) run's "Job stats" table; {} when there is nothing to do."""
    text = proc.stdout + proc.stderr
    if "Nothing to be done" in text:
        return {}
    m = re.search(r"Job stats:\n(?:job\s+count\n)?-+\s+-+\n(.*?)\ntotal", text, re.S)
    assert m, f"no job stats in snakemake output:\n{text[-3000:]}"
    return {name: int(n) for name, n in re.findall(r"^(\S+)\s+(\d+)$", m.group(1), re.M)}


def make_workdir(root: Path, config: Path = TINY) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(config, root / "config.yaml")
    return root


def synthetic_data(sizes=(96, 30, 30), *, channels: int = 1, side: int = 8, classes: int = 3, seed: int = 0,
                   signal: int = 0, class_names=None, index_offset: int = 0, name: str = "synthetic"):
    """The tests' synthetic dataset: a :class:`lspipe.core.data.Prepared` of random uint8 images.

    ``sizes`` are the train/val/test sizes. Labels are random; with ``signal`` > 0 they cycle
    through the classes instead and each image is brightened by ``signal`` x its class, so a
    model can learn them. Draws, per split in order: the images, then the labels. Random images
    give continuous activations (no ReLU/max-pool ties that would amplify rounding).
    """
    import numpy as np

    from lspipe.core.data import Prepared

    rng = np.random.default_rng(seed)
    x, y, index = {}, {}, {}
    for split, n in zip(("train", "val", "test"), sizes):
        if signal:
            y[split] = (np.arange(n) % classes).astype(np.int64)
            top = 256 - signal * (classes - 1)
            x[split] = (rng.integers(0, top, (n, channels, side, side)) + signal * y[split][:, None, None, None]
                        ).astype(np.uint8)
        else:
            x[split] = rng.integers(0, 256, (n, channels, side, side), dtype=np.uint8)
            y[split] = rng.integers(0, classes, n).astype(np.int64)
        index[split] = np.arange(n) + index_offset
    names = list(class_names) if class_names is not None else [str(c) for c in range(classes)]
    return Prepared(x, y, index, names, np.full(channels, 0.5), np.full(channels, 0.25), {"name": name})


def write_idx(path: Path, array) -> None:
    """An idx file (LeCun's MNIST format, which torchvision's MNIST reads): the magic number (two zero
    bytes, the type code 0x08 for unsigned bytes, the number of dimensions), each dimension as a
    big-endian int32, then the uint8 data in C order. Written here, byte by byte, not by torchvision."""
    import struct

    import numpy as np

    a = np.ascontiguousarray(array, dtype=np.uint8)
    with open(path, "wb") as fh:
        fh.write(struct.pack(">BBBB", 0, 0, 0x08, a.ndim))
        fh.write(struct.pack(f">{a.ndim}i", *a.shape))
        fh.write(a.tobytes())


MNIST_RAW = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def write_mnist(root: Path, train=(300,), test=(100,), seed: int = 0) -> dict:
    """A small MNIST-format file set under ``root/MNIST/raw/`` (the layout torchvision's MNIST reads, no
    download): 28 x 28 grey digits made from scikit-learn's bundled 8 x 8 digits (each scaled 3x to
    24 x 24, zero-padded by 2, then shifted by a random pixel or two), labels 0..9. Returns the arrays
    written: ``{"x_train", "y_train", "x_test", "y_test"}`` (images N x 28 x 28 uint8)."""
    import numpy as np
    from sklearn.datasets import load_digits

    d = load_digits()
    rng = np.random.default_rng(seed)
    big = np.kron(np.round(d.images * (255.0 / 16.0)), np.ones((3, 3))).astype(np.uint8)  # N x 24 x 24
    order = rng.permutation(len(big))
    n_train, n_test = int(train[0]), int(test[0])
    assert n_train + n_test <= len(big), "the bundled digits hold 1,797 images"

    def images(idx):
        out = np.zeros((len(idx), 28, 28), np.uint8)
        for k, i in enumerate(idx):
            dy, dx = rng.integers(0, 5, 2)
            out[k, dy:dy + 24, dx:dx + 24] = big[i]
        return out

    tr, te = order[:n_train], order[n_train:n_train + n_test]
    arrays = {"x_train": images(tr), "y_train": d.target[tr].astype(np.uint8),
              "x_test": images(te), "y_test": d.target[te].astype(np.uint8)}
    raw = Path(root) / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name, key in zip(MNIST_RAW, ("x_train", "y_train", "x_test", "y_test")):
        write_idx(raw / name, arrays[key])
    return arrays


@pytest.fixture
def mnist_root(tmp_path) -> Path:
    """A folder holding a small MNIST-format file set (:func:`write_mnist`: 300 training, 100 test images)."""
    write_mnist(tmp_path / "mnist")
    return tmp_path / "mnist"


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """The whole DAG on tests/tiny.yaml, run once; returns the working directory."""
    work = make_workdir(tmp_path_factory.mktemp("tiny"))
    snakemake(work, "--cores", "2")
    return work


@pytest.fixture(scope="session")
def cifar_subset() -> Path:
    if not CIFAR_SUBSET.is_dir():
        pytest.skip(f"the real CIFAR-10 subset is absent ({CIFAR_SUBSET})")
    return CIFAR_SUBSET


@pytest.fixture(scope="session")
def tiny_imagenet(tmp_path_factory) -> Path:
    """A tiny ImageNet-layout tree (train/<wnid>/*.JPEG, val/<wnid>/*.JPEG; 10 classes, 24 + 6
    images each, 64-96 px), made once from the CIFAR-10 JPEG subset, or synthetic without it."""
    from lspipe.tiny_imagenet import make_tree

    return make_tree(tmp_path_factory.mktemp("tiny_imagenet") / "tree", CIFAR_SUBSET)


@pytest.fixture(scope="module")
def digits_npz(tmp_path_factory):
    """The bundled digits prepared once per test module (val 0.2, test 0.25), as the training tests use them."""
    from lspipe.core import data as D

    path = tmp_path_factory.mktemp("data") / "digits.npz"
    D.prepare("digits", "digits", path, val_size=0.2, test_size=0.25)
    return path


@pytest.fixture
def one_torch_thread():
    """Run a test with one torch thread (small models: less overhead, less contention)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def fit_one(model, data, recipe, value: dict, *, teachers=None, metrics_path, **kw) -> dict:
    """``lspipe.engine.training.fit`` of one model (a group of one member) with one objective value;
    the model trains in place, the summary's ``final`` is its metric row."""
    from lspipe.core.losses import Objective
    from lspipe.engine.training import Members, fit

    summary = fit(Members([model]), data, recipe, Objective([value], teachers), metrics_paths=[metrics_path], **kw)
    return {**summary, "final": summary["final"][0]}


def one_loss(value: dict, logits, labels, inputs=None, teachers=None):
    """The loss of one objective value on ``B x K`` logits (a group of one member)."""
    from lspipe.core.losses import Objective

    return Objective([value], teachers)(logits[:, None], labels, inputs)[0]
