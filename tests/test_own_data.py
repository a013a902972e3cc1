"""A user's own data, checked while the workflow plans (lspipe.core.survey.inspect_source, the Plan's
sources and the experiments' class names): a missing root, a tree without its folders and class
names the dataset does not have are one error each from `snakemake -n`, before any job runs; images
much larger than image_size are a warning; a tree with train/ alone has its test split carved."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from conftest import TINY, make_workdir, planned_jobs, snakemake
from lspipe.base.errors import ConfigError, DataError
from lspipe.core import data as D
from lspipe.core import survey
from lspipe.core import stream as S
from lspipe.workflow import plan

CLASSES = ("0", "1", "2", "7")  # tiny.yaml's probe (1, 7), Fig. 1 row and teacher projection (0, 1, 2)


def _tree(root: Path, splits=("train",), per_class=6, side=12, classes=CLASSES) -> Path:
    rng = np.random.default_rng(0)
    for split in splits:
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 256, (side, side + 3, 3), dtype=np.uint8)).save(root / split / c / f"{i}.png")
    return root


def _config(root, **dataset) -> dict:
    """tests/tiny.yaml with its dataset `digits` read from the ImageFolder tree at ``root``."""
    cfg = yaml.safe_load(TINY.read_text())
    cfg["datasets"]["digits"] = {"source": "imagefolder", "root": str(root), "image_size": 8, "val_size": 4,
                                 "test_size": 4, **dataset}
    return cfg


def _problems(cfg) -> str:
    with pytest.raises(ConfigError) as err:
        plan.build(copy.deepcopy(cfg))
    return str(err.value)


# --------------------------------------------------------------------------- plan.build


def test_a_missing_root_is_refused_while_planning(tmp_path):
    msg = _problems(_config(tmp_path / "nowhere"))
    assert f"datasets.digits.root '{tmp_path / 'nowhere'}' is not a folder" in msg and "train/<class>/<image>" in msg
    file = tmp_path / "a-file"
    file.write_text("")
    assert "is not a folder" in _problems(_config(file))
    cifar = yaml.safe_load(TINY.read_text())
    cifar["datasets"]["digits"] = {"source": "cifar10", "root": str(tmp_path / "nowhere")}
    assert "datasets.digits.root" in _problems(cifar) and "does not exist" in _problems(cifar)
    cifar["datasets"]["digits"]["root"] = str(tmp_path)  # there, but without torchvision's copy
    msg = _problems(cifar)
    assert "holds no cifar-10-batches-py/" in msg and "datasets.digits.download: true" in msg
    cifar["datasets"]["digits"]["download"] = True  # torchvision fetches it: nothing to check yet
    cifar["projections"]["rows"][0]["classes"] = ["cat", "dog", "ship"]
    cifar["distillation"][0]["teacher_projection"]["classes"] = ["cat", "dog", "ship"]
    cifar["teachers"][0]["probe"]["classes"] = ["cat", "dog"]
    assert plan.build(copy.deepcopy(cifar)).sources["digits"].classes == list(survey.CIFAR10_CLASSES)


def test_a_tree_without_its_folders_is_refused(tmp_path):
    (tmp_path / "t" / "training" / "0").mkdir(parents=True)
    msg = _problems(_config(tmp_path / "t"))
    assert "has no train/ subfolder (it has: training)" in msg and "fix datasets.digits.root" in msg
    flat = tmp_path / "flat" / "train"
    flat.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(flat / "x.png")
    assert "has no class folders (it holds the images directly)" in _problems(_config(tmp_path / "flat"))
    tree = _tree(tmp_path / "two", splits=("train",))
    _tree(tree, splits=("test",), classes=("0", "1", "2", "9"))
    msg = _problems(_config(tree))
    assert "class folders of" in msg and "missing 7" in msg and "not in train/: 9" in msg
    assert msg.count("\n  - ") == 1  # one problem, one line


def test_class_names_the_dataset_lacks_are_refused(tmp_path):
    tree = _tree(tmp_path / "t")
    assert plan.build(_config(tree)).sources["digits"].classes == list(CLASSES)
    cfg = _config(tree)
    cfg["projections"]["rows"][0]["classes"] = ["0", "1", "8"]
    cfg["distillation"][0]["teacher_projection"]["classes"] = ["0", "2", "Seven"]
    cfg["teachers"][0]["probe"]["classes"] = ["1", "77"]
    msg = _problems(cfg)
    assert "projections.rows[0].classes ['8'] are not classes of dataset 'digits' (its classes: 0, 1, 2, 7)" in msg
    assert "distillation[0].teacher_projection.classes ['Seven']" in msg
    assert "teachers[0].probe.classes ['77']" in msg and "'77': did you mean '7'?" in msg
    digits = yaml.safe_load(TINY.read_text())  # the digits' classes are 0..9
    digits["projections"]["rows"][0]["classes"] = ["0", "1", "ten"]
    assert "['ten'] are not classes of dataset 'digits' (its classes: 0, 1, 2, 3" in _problems(digits)


def test_images_much_larger_than_image_size_are_a_warning(tmp_path):
    tree = _tree(tmp_path / "t", side=40)
    (warning,) = plan.build(_config(tree, image_size=16)).warnings
    assert warning.startswith("datasets.digits: the images of") and "about 40 px on their shorter side" in warning
    assert "image_size is 16 (the default is 32)" in warning and "set datasets.digits.image_size" in warning
    photos = _config(_tree(tmp_path / "photos", side=80))
    del photos["datasets"]["digits"]["image_size"]  # the schema's default, 32
    (warning,) = plan.build(photos).warnings
    assert "about 80 px" in warning and "image_size is 32 (the default):" in warning

    assert plan.build(_config(tree, image_size=20)).warnings == []  # 40 px is not more than twice 20
    assert plan.build(yaml.safe_load(TINY.read_text())).warnings == []


def test_a_tree_with_train_alone_has_its_test_split_carved(tmp_path):
    tree = _tree(tmp_path / "t", per_class=10)
    p = D.prepare("t", "imagefolder", tmp_path / "t.npz", root=str(tree), image_size=8, val_size=8, test_size=0.2,
                  split_seed=3)
    assert p.meta["sizes"] == {"train": 24, "val": 8, "test": 8} and p.meta["test_size"] == 0.2
    assert [int(n) for n in np.bincount(p.y["test"])] == [2, 2, 2, 2]  # stratified
    every = np.concatenate([p.index[s] for s in D.SPLITS])
    assert sorted(every) == list(range(40))  # each image of train/ in exactly one split
    x = np.stack([D._read_image(f, "RGB", 8).transpose(2, 0, 1) for f, *_ in D.scan_tree(tree).splits["train"]])
    np.testing.assert_array_equal(p.x["test"], x[p.index["test"]])
    q = D.prepare("t", "imagefolder", tmp_path / "q.npz", root=str(tree), image_size=8, val_size=8, test_size=0.2,
                  split_seed=4)
    assert not np.array_equal(p.index["test"], q.index["test"])  # the carve is seeded by split_seed
    # the streaming index carves the same splits, also with a per-class cap
    for cap in (None, 5):
        r = D.prepare("t", "imagefolder", tmp_path / "r.npz", root=str(tree), image_size=8, val_size=4,
                      test_size=8, split_seed=3, train_per_class=cap)
        idx = S.build_index(tree, image_size=8, val_size=4, test_size=8, split_seed=3, train_per_class=cap,
                            stats_images=2)
        assert idx.meta["test_size"] == 8 and idx.meta["sizes"] == r.meta["sizes"]
        for s in D.SPLITS:
            np.testing.assert_array_equal(idx.index[s], r.index[s])
            np.testing.assert_array_equal(idx.y[s], r.y[s])
    with pytest.raises(DataError, match=r"datasets\.t\.test_size=0\.01 leaves an empty split"):
        D.prepare("t", "imagefolder", tmp_path / "e.npz", root=str(tree), image_size=8, test_size=0.01)


# --------------------------------------------------------------------------- snakemake -n


def _dry_run(tmp_path, cfg) -> tuple[int, str]:
    work = make_workdir(tmp_path / "work")
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    proc = snakemake(work, "-n", check=False)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.parametrize("mistake", ["missing root", "no train folder", "unknown class"])
def test_each_mistake_is_one_error_of_the_dry_run(tmp_path, mistake):
    tree = _tree(tmp_path / "t")
    cfg = _config(tree)
    if mistake == "missing root":
        cfg["datasets"]["digits"]["root"] = str(tmp_path / "nowhere")
        expected = f"datasets.digits.root '{tmp_path / 'nowhere'}' is not a folder"
    elif mistake == "no train folder":
        (tree / "train").rename(tree / "training")
        expected = "has no train/ subfolder (it has: training)"
    else:
        cfg["projections"]["rows"][0]["classes"] = ["0", "1", "8"]
        expected = "projections.rows[0].classes ['8'] are not classes of dataset 'digits'"
    code, out = _dry_run(tmp_path, cfg)
    assert code != 0 and expected in out, out[-3000:]
    problems = [line for line in out.splitlines() if line.startswith("  - ")]
    assert len(problems) == 1 and expected in problems[0], out[-3000:]
    assert "Job stats" not in out and not (tmp_path / "work" / "results").exists()


def test_the_dry_run_plans_a_train_only_tree_and_warns_of_large_images(tmp_path):
    tree = _tree(tmp_path / "t", side=40)
    code, out = _dry_run(tmp_path, _config(tree, image_size=16))
    assert code == 0, out[-3000:]
    assert "warning: datasets.digits: the images of" in out and "image_size is 16" in out
    assert out.count("warning: datasets.digits:") == 1
    assert planned_jobs(type("P", (), {"stdout": out, "stderr": ""})())["prepare_data"] == 1
