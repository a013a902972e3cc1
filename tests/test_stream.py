"""Streaming data path (lspipe.core.stream) on the tiny ImageNet-layout tree: the index and its splits
(equal to the resident path's), determinism, exact mid-epoch resume, rank shares, unreadable
images, the evaluation iterator, the resident-or-streaming choice, and a timm model trained on it."""

from __future__ import annotations

import argparse
import hashlib
import itertools
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from lspipe.base.errors import ConfigError, DataError
from lspipe.core import data as D
from lspipe.core import survey
from lspipe.core import index as IX
from lspipe.core import stream as S
from lspipe.tiny_imagenet import WNIDS

PAPER_WNIDS = {"n01440764", "n02138441", "n03041632", "n02113624", "n02113712"}  # tench, meerkat, cleaver, 2 poodles


@pytest.fixture(scope="module")
def index(tiny_imagenet):
    return S.build_index(tiny_imagenet, name="tiny", val_size=0.2, split_seed=0, image_size=32, stats_images=None)


def _image(path: Path, size=(20, 16), value=0, mode="RGB"):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB").convert(mode).save(path)


def _batches(loader, n=None):
    """The next ``n`` batches (all of the pass if None), taken without drawing one more."""
    return [(x.clone(), y.clone()) for x, y in itertools.islice(loader, n)]


def _same(a, b):
    assert len(a) == len(b)
    for (xa, ya), (xb, yb) in zip(a, b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


# --------------------------------------------------------------------------- the tree and the index


def test_tiny_tree_has_the_imagenet_layout(tiny_imagenet):
    from PIL import Image

    assert sorted(p.name for p in (tiny_imagenet / "train").iterdir()) == sorted(w for w, _ in WNIDS.values())
    assert PAPER_WNIDS <= {p.name for p in (tiny_imagenet / "val").iterdir()}
    train = sorted((tiny_imagenet / "train").glob("*/*.JPEG"))
    val = sorted((tiny_imagenet / "val").glob("*/*.JPEG"))
    assert len(train) == 240 and len(val) == 60
    sizes, modes = set(), set()
    for f in train[:40]:
        with Image.open(f) as im:
            sizes.add(im.size)
            modes.add(im.mode)
    assert len(sizes) > 1 and min(min(s) for s in sizes) >= 64  # upscaled, of several shapes
    assert {"L", "CMYK"} <= {Image.open(f).mode for f in train if f.name.endswith("_0.JPEG")}
    assert "n01440764 tench" in (tiny_imagenet / "LOC_synset_mapping.txt").read_text()


def test_index_splits_equal_the_resident_paths(index, tiny_imagenet, tmp_path):
    p = D.prepare("tiny", "imagefolder", tmp_path / "r.npz", root=str(tiny_imagenet), image_size=16, val_size=0.2)
    assert index.classes == p.classes and index.meta["val_source"] == "carved"
    for s in D.SPLITS:
        np.testing.assert_array_equal(index.index[s], p.index[s])
        np.testing.assert_array_equal(index.y[s], p.y[s])
    assert index.meta["sizes"] == {"train": 192, "val": 48, "test": 60}
    assert index.meta["class_names"]["n02113624"] == "toy poodle"
    # the pixels agree too: the evaluation view vs the resident path's squashed image, same file
    assert np.allclose(index.mean, p.mean, atol=0.03) and np.allclose(index.std, p.std, atol=0.03)
    # with a per-class cap the carved split is still the resident one
    q = D.prepare("tiny", "imagefolder", tmp_path / "q.npz", root=str(tiny_imagenet), image_size=16, val_size=30,
                  split_seed=4, train_per_class=12)
    j = S.build_index(tiny_imagenet, val_size=30, split_seed=4, train_per_class=12, image_size=16, stats_images=2)
    for s in D.SPLITS:
        np.testing.assert_array_equal(j.index[s], q.index[s])
        np.testing.assert_array_equal(j.y[s], q.y[s])


def test_index_with_its_own_validation_folder(tmp_path):
    """train/, val/ and test/: val/ is the validation split, nothing is carved (as the resident path)."""
    for split, n in (("train", 4), ("val", 2), ("test", 3)):
        for c in ("b", "a"):
            for k in range(n):
                _image(tmp_path / "t" / split / c / f"{k}.png", value=hash((split, c, k)) % 1000)
    idx = S.build_index(tmp_path / "t", image_size=8, stats_images=None)
    p = D.prepare("t", "imagefolder", tmp_path / "t.npz", root=str(tmp_path / "t"), image_size=8)
    assert idx.meta["val_source"] == "folder" and idx.meta["sizes"] == {"train": 8, "val": 4, "test": 6}
    for s in D.SPLITS:
        np.testing.assert_array_equal(idx.y[s], p.y[s])
        np.testing.assert_array_equal(idx.index[s], p.index[s])
    assert idx.split_paths("val")[0].endswith(os.path.join("val", "a", "0.png"))


def test_scan_order_and_rules_are_the_resident_paths(tmp_path):
    outside = tmp_path / "elsewhere"
    _image(outside / "o1.jpg", value=1)
    _image(outside / "deeper" / "o2.jpg", value=2)
    root = tmp_path / "t"
    for rel in ("a/z.jpg", "a/B.JPG", "a/sub/x.png", "a/sub-2/y.jpeg", "a/sub/deep/w.jpg", "c/q.jpg"):
        _image(root / "train" / rel, value=len(rel))
    _image(root / "train" / "a" / ".hidden.jpg")
    _image(root / "train" / "a" / ".ipynb_checkpoints" / "h.jpg")
    _image(root / "train" / ".cache" / "h.jpg")
    (root / "train" / "a" / "notes.txt").write_text("not an image")
    (root / "train" / "b").symlink_to(outside, target_is_directory=True)  # a linked class folder: followed
    _image(root / "val" / "a" / "v.jpg")
    _image(root / "val" / "b" / "v.jpg", value=5)
    _image(root / "val" / "c" / "v.jpg", value=6)
    (root / "val" / "c" / "gone.jpg").symlink_to(root / "nowhere.jpg")  # a broken link
    resident = D.scan_tree(root)
    got_classes, got, missing = IX.scan(root)
    assert got_classes == resident.classes == ["a", "b", "c"] and missing == resident.missing
    train = [os.path.relpath(p, root / "train") for p, *_ in got["train"]]
    # by folder path, then name; no hidden names, no .txt; the linked class folder b read through its link
    assert train == ["a/B.JPG", "a/z.jpg", "a/sub/x.png", "a/sub-2/y.jpeg", "a/sub/deep/w.jpg",
                     "b/o1.jpg", "b/deeper/o2.jpg", "c/q.jpg"]
    assert [y for _, y, *_ in got["train"]] == [0] * 5 + [1] * 2 + [2]
    assert [r[:2] for r in resident.splits["train"]] == [r[:2] for r in got["train"]]
    st = os.stat(root / "train" / "a" / "z.jpg")
    assert got["train"][1][2:] == (st.st_size, st.st_mtime_ns)
    # the broken link: in the resident listing in place (size -1, its reader reports it), apart in the stream's
    assert missing == [str(root / "val" / "c" / "gone.jpg")]
    assert resident.splits["test"][2] == (missing[0], 2, -1, -1) and len(got["test"]) == 3  # val/ is the test split
    # the source digest watches exactly these files (an image outside the class folders is not read)
    _image(root / "train" / "stray.jpg")
    manifest = survey.source_manifest({"source": "imagefolder", "root": str(root)})
    assert [m[0] for m in manifest] == sorted(os.path.relpath(p, root) for s in got.values() for p, *_ in s)


def test_links_that_loop_or_repeat_are_refused(tmp_path):
    root = tmp_path / "t"
    for c in ("a", "b"):
        _image(root / "train" / c / "1.jpg", value=ord(c))
        _image(root / "val" / c / "1.jpg", value=ord(c) + 10)
    (root / "train" / "a" / "loop").symlink_to(root / "train" / "a", target_is_directory=True)
    with pytest.raises(DataError, match=r"a/loop is the folder \S*a again \(a symlink loop"):
        S.build_index(root, image_size=8)
    (root / "train" / "a" / "loop").unlink()
    (root / "train" / "b" / "again.jpg").symlink_to(root / "train" / "a" / "1.jpg")
    with pytest.raises(DataError, match=r"again\.jpg and .*1\.jpg are the same file"):
        S.build_index(root, image_size=8)
    (root / "train" / "b" / "again.jpg").unlink()
    os.link(root / "train" / "a" / "1.jpg", root / "val" / "a" / "2.jpg")  # the same image in train and test
    with pytest.raises(DataError, match="reached once"):
        S.build_index(root, image_size=8)


def test_index_file_roundtrip_checksum_and_determinism(tiny_imagenet, tmp_path):
    tree = shutil.copytree(tiny_imagenet, tmp_path / "tree", copy_function=shutil.copy2)
    a = S.build_index(tree, image_size=16, stats_images=20)
    b = S.build_index(tree, image_size=16, stats_images=20)
    IX.write_index(tmp_path / "a.npz", a)
    IX.write_index(tmp_path / "b.npz", b)
    sha = [hashlib.sha256((tmp_path / f).read_bytes()).hexdigest() for f in ("a.npz", "b.npz")]
    assert sha[0] == sha[1]  # the same tree and settings give the same bytes
    c = IX.load_index(tmp_path / "a.npz")
    for s in D.SPLITS:
        np.testing.assert_array_equal(c.rows[s], a.rows[s])
        assert c.split_paths(s) == a.split_paths(s)
    assert c.meta == a.meta and np.array_equal(c.mean, a.mean) and _current(c)
    assert a.meta["checksum"] == IX.tree_checksum(tree)
    # copied with times kept, the tree has the same checksum where it lies (paths are relative)
    assert a.meta["checksum"] == IX.tree_checksum(tiny_imagenet)
    # a touched image (new mtime), or a new one, changes the checksum
    f = Path(a.split_paths("train")[3])
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert not _current(c)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert _current(c)
    shutil.copy(f, f.with_name("extra.JPEG"))
    assert IX.tree_checksum(tree) != a.meta["checksum"]
    # loading elsewhere, and damage
    moved = IX.load_index(tmp_path / "a.npz", root=tiny_imagenet)
    assert moved.split_paths("test")[0].startswith(str(tiny_imagenet))
    (tmp_path / "bad.npz").write_bytes((tmp_path / "a.npz").read_bytes()[:500])
    with pytest.raises(DataError, match=r"bad\.npz is damaged.*snakemake -f"):
        IX.load_index(tmp_path / "bad.npz")
    with pytest.raises(DataError, match="does not exist"):
        IX.load_index(tmp_path / "none.npz")


def test_a_model_builds_from_an_index(index):
    from lspipe.core import models

    m = models.build_model("smallcnn", index)
    assert m.classifier.out_features == 10 and m.mean.shape == (1, 3, 1, 1)
    torch.testing.assert_close(m.mean.flatten(), torch.from_numpy(index.mean))
    assert models.model_spec("smallcnn", index)["image_size"] == 32


# --------------------------------------------------------------------------- the loader


def test_loader_has_the_device_loaders_interface_and_is_deterministic(index):
    a = S.StreamLoader(index, "train", 16, seed=3, workers=0)
    assert len(a) == 192 // 16
    first = _batches(a)
    assert len(first) == 12 and a.state_dict() == {"epoch": 1, "batch": 0}
    x, y = first[0]
    assert x.dtype == torch.uint8 and x.shape == (16, 3, 32, 32) and y.dtype == torch.int64
    # one pass is a permutation of the split
    seen = torch.cat([y for _, y in first]).numpy()
    assert sorted(seen) == sorted(index.y["train"])
    second = _batches(a)  # the next epoch: another order, other crops
    assert not torch.equal(torch.cat([y for _, y in first]), torch.cat([y for _, y in second]))
    b = S.StreamLoader(index, "train", 16, seed=3, workers=0)
    _same(_batches(b), first)
    _same(_batches(b), second)
    c = S.StreamLoader(index, "train", 16, seed=4, workers=0)
    assert not torch.equal(_batches(c, 1)[0][0], first[0][0])
    # the caller's global RNG is not touched by the loader (dropout, ... stay reproducible)
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    _batches(S.StreamLoader(index, "train", 16, seed=3, workers=0), 2)
    assert torch.equal(torch.rand(3), expected)


def test_workers_do_not_change_the_batches(index):
    ref = _batches(S.StreamLoader(index, "train", 32, seed=5, workers=0), 4)
    loader = S.StreamLoader(index, "train", 32, seed=5, workers=2, prefetch_factor=2)
    _same(_batches(loader, 4), ref)
    # stopped early (prefetched batches are dropped): the next iteration goes on at batch 4
    _same(_batches(loader), _batches(_resume(index, 32, 5, {"epoch": 0, "batch": 4})))


def _resume(index, bs, seed, state):
    loader = S.StreamLoader(index, "train", bs, seed=seed, workers=0)
    loader.load_state_dict(state)
    return loader


def test_the_augmentation_is_seeded_by_seed_epoch_and_position(index):
    """A reference built by hand from torchvision's v2 pieces and the documented seeds."""
    from torchvision.transforms import v2
    from torchvision.transforms.v2 import functional as TF

    loader = S.StreamLoader(index, "train", 8, seed=11, workers=0)
    loader.load_state_dict({"epoch": 2, "batch": 3})
    x, y, pos = next(loader.batches())
    expected_pos = S.permutation(192, 11, 2)[3 * 8:4 * 8]
    np.testing.assert_array_equal(pos.numpy(), expected_pos)
    paths = index.split_paths("train")
    rrc = v2.RandomResizedCrop(32, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), antialias=True)
    flips = 0
    for i, k in enumerate(expected_pos):
        img = S._decode(paths[k], 3)
        torch.manual_seed(S.sample_seed(11, 2, int(k)))
        params = rrc.make_params([img])
        out = TF.resized_crop(img, params["top"], params["left"], params["height"], params["width"], [32, 32],
                              antialias=True)
        if torch.rand(1) < 0.5:
            out, flips = TF.horizontal_flip(out), flips + 1
        assert torch.equal(x[i], out)
        assert y[i] == index.y["train"][k]
    assert 0 < flips < 8


def test_resume_mid_epoch_is_exact_and_skips_without_decoding(index, monkeypatch):
    full = S.StreamLoader(index, "train", 16, seed=7, workers=0)
    epoch0 = _batches(full)
    epoch1 = _batches(full)
    # a run stopped after 5 batches of epoch 1 saved this position
    interrupted = S.StreamLoader(index, "train", 16, seed=7, workers=0)
    _batches(interrupted)
    _same(_batches(interrupted, 5), epoch1[:5])
    assert interrupted.state_dict() == {"epoch": 1, "batch": 5}
    decoded = []
    real = S._decode
    monkeypatch.setattr(S, "_decode", lambda path, channels: decoded.append(path) or real(path, channels))
    resumed = _resume(index, 16, 7, interrupted.state_dict())
    _same(_batches(resumed), epoch1[5:])
    assert len(decoded) == 7 * 16  # the 5 consumed batches were not read
    assert resumed.state_dict() == {"epoch": 2, "batch": 0}
    # a state at the end of a pass is the start of the next
    end = _resume(index, 16, 7, {"epoch": 0, "batch": 12})
    assert end.state_dict() == {"epoch": 1, "batch": 0}
    with pytest.raises(ValueError, match="outside"):
        end.load_state_dict({"epoch": 0, "batch": 13})
    assert len(epoch0) == 12


def test_ranks_share_each_global_batch(index):
    one = S.StreamLoader(index, "train", 16, seed=2, workers=0)
    ranks = [S.StreamLoader(index, "train", 16, seed=2, workers=0, rank=r, world_size=2) for r in range(2)]
    assert len(ranks[0]) == len(one)
    for (x, y), (x0, y0), (x1, y1) in zip(_batches(one, 3), _batches(ranks[0], 3), _batches(ranks[1], 3)):
        assert len(x0) == len(x1) == 8
        assert torch.equal(torch.cat([x0, x1]), x) and torch.equal(torch.cat([y0, y1]), y)
    with pytest.raises(ValueError, match="multiple"):
        S.StreamLoader(index, "train", 15, workers=0, world_size=2)


def test_eval_batches_are_ordered_unaugmented_and_chunked(index):
    from PIL import Image

    chunks = list(S.eval_batches(index, "test", 25, workers=0))
    assert [len(x) for x, _, _ in chunks] == [25, 25, 10]
    np.testing.assert_array_equal(torch.cat([p for *_, p in chunks]).numpy(), np.arange(60))
    np.testing.assert_array_equal(torch.cat([y for _, y, _ in chunks]).numpy(), index.y["test"])
    again = list(S.eval_batches(index, "test", 25, workers=0))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(chunks, again))
    # a subset of positions, in the given order
    sub = list(S.eval_batches(index, "test", 4, positions=[7, 3, 59], workers=0))
    assert len(sub) == 1 and sub[0][2].tolist() == [7, 3, 59] and torch.equal(sub[0][0][1], chunks[0][0][3])
    # the evaluation view against PIL: shorter side to floor(32 / 0.875) = 36, central 32 x 32
    path = index.split_paths("test")[3]
    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        short, long = (w, h) if w <= h else (h, w)
        new_long = int(36 * long / short)
        im = im.resize((36, new_long) if w <= h else (new_long, 36), Image.BILINEAR)
        top, left = int(round((im.size[1] - 32) / 2)), int(round((im.size[0] - 32) / 2))
        ref = np.asarray(im.crop((left, top, left + 32, top + 32))).transpose(2, 0, 1).astype(int)
    got = chunks[0][0][3].numpy().astype(int)
    assert np.abs(got - ref).max() <= 3 and np.abs(got - ref).mean() < 0.5


# --------------------------------------------------------------------------- unreadable images


@pytest.fixture
def damaged_tree(tiny_imagenet, tmp_path):
    tree = shutil.copytree(tiny_imagenet, tmp_path / "tree")
    truncated = tree / "train" / "n02138441" / "n02138441_5.JPEG"
    truncated.write_bytes(truncated.read_bytes()[:300])
    garbage = tree / "val" / "n01440764" / sorted(os.listdir(tree / "val" / "n01440764"))[1]
    garbage.write_bytes(b"<html>not an image</html>")
    return tree, truncated, garbage


def test_unreadable_images_are_named_or_skipped_by_the_loader(damaged_tree, capsys):
    tree, truncated, garbage = damaged_tree
    idx = S.build_index(tree, name="tiny", image_size=16, stats_images=2, skip_unreadable=False)
    with pytest.raises(DataError, match=rf"cannot read image {garbage}.*datasets\.tiny\.skip_unreadable: true"):
        list(S.eval_batches(idx, "test", 16, workers=0))
    split = "train" if str(truncated) in idx.split_paths("train") else "val"
    with pytest.raises(DataError, match=rf"cannot read image {truncated}"):  # found by a worker, raised here
        list(S.StreamLoader(idx, split, 64, workers=1, drop_last=False))
    chunks = list(S.eval_batches(idx, "test", 16, workers=0, skip_unreadable=True))
    got = torch.cat([p for *_, p in chunks]).numpy()
    assert len(got) == 59 and idx.split_paths("test").index(str(garbage)) not in got
    assert f"skipped unreadable image {garbage}" in capsys.readouterr().err


def test_verify_finds_unreadable_images_before_the_split_as_the_resident_path(damaged_tree, tmp_path, capsys):
    tree, truncated, garbage = damaged_tree
    with pytest.raises(DataError, match=rf"cannot read image ({truncated}|{garbage})"):
        S.build_index(tree, name="tiny", image_size=16, verify=True)
    idx = S.build_index(tree, name="tiny", image_size=16, verify=True, skip_unreadable=True, workers=2)
    assert "skipped 2 unreadable image(s)" in capsys.readouterr().err
    p = D.prepare("tiny", "imagefolder", tmp_path / "r.npz", root=str(tree), image_size=16, skip_unreadable=True)
    for s in D.SPLITS:
        np.testing.assert_array_equal(idx.index[s], p.index[s])
        np.testing.assert_array_equal(idx.y[s], p.y[s])
    assert sorted(idx.meta["skipped"]) == sorted(os.path.relpath(f, tree) for f in (truncated, garbage))
    assert idx.meta["stats_images"] == 191 and idx.meta["verified"]


# --------------------------------------------------------------------------- resident or streaming; schema


def test_choose_storage(tiny_imagenet):
    assert IX.resident_bytes(1_281_167, 3, 224) == pytest.approx(192.9e9, rel=1e-3)  # ImageNet's train split
    d = {"source": "imagefolder", "root": str(tiny_imagenet), "image_size": 64}
    assert IX.count_images(tiny_imagenet) == 300
    # 300 x 3 x 64 x 64 = 3.69 MB
    assert IX.choose_storage("t", d, resident_max_gb=0.004)[0] == "resident"
    choice, why = IX.choose_storage("t", d, resident_max_gb=0.003)
    assert choice == "streaming" and "0.00369 GB" in why and "above" in why
    assert IX.choose_storage("t", {**d, "storage": "resident"}, resident_max_gb=1e-9)[0] == "resident"
    assert IX.choose_storage("t", {**d, "storage": "streaming"})[0] == "streaming"
    small = {"source": "imagefolder", "root": "/nowhere", "image_size": 16}  # downsampled ImageNet: 1 GB
    assert IX.choose_storage("imagenet", small, images=1_331_167)[0] == "resident"
    big = {"source": "imagefolder", "root": "/nowhere", "image_size": 224}
    assert IX.choose_storage("imagenet", big, images=1_331_167)[0] == "streaming"
    assert IX.choose_storage("c", {"source": "cifar10"})[0] == "resident"
    with pytest.raises(DataError, match="storage: streaming needs source imagefolder"):
        IX.choose_storage("c", {"source": "cifar10", "storage": "streaming"})
    with pytest.raises(DataError, match="allowed: auto, resident, streaming"):
        IX.choose_storage("c", {"source": "cifar10", "storage": "ram"})


def test_schema_keys_and_the_resident_prepare_step(tmp_path):
    import yaml

    from lspipe.workflow import plan
    from lspipe.base import defaults

    assert defaults.default("streaming.resident_max_gb") == 4 and defaults.default("datasets.*.storage") == "auto"
    assert defaults.default("streaming.crop_ratio")[1] == pytest.approx(4 / 3)
    cfg = yaml.safe_load((Path(__file__).parent / "tiny.yaml").read_text())
    name = next(iter(cfg["datasets"]))
    cfg["datasets"][name]["storage"] = "resident"
    plan.validate(cfg)
    assert cfg["streaming"]["workers"] is None and cfg["streaming"]["verify"] is False
    cfg["datasets"][name]["storage"] = "disk"
    with pytest.raises(ConfigError, match="storage"):
        plan.validate(cfg)
    # the resident prepare step takes the dataset's entry as the workflow passes it (storage included)
    opts = {"source": "digits", "storage": "auto", "val_size": 0.2, "test_size": 0.25}
    D.cmd_prepare(argparse.Namespace(name="digits", options=opts, out=str(tmp_path / "d.npz")))
    assert sum(D.load(tmp_path / "d.npz").meta["sizes"].values()) == 1797


# --------------------------------------------------------------------------- a timm model trained on the stream


def test_a_timm_model_trains_on_the_streamed_tree(index, one_torch_thread):
    from lspipe.core import models

    torch.manual_seed(0)
    model = models.build_model("timm:resnet18", index).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loader = S.StreamLoader(index, "train", 16, seed=0, workers=0)
    losses = []
    for step, (x, y) in enumerate(loader):
        if step == 4:
            break
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    model.eval()
    x, y, _ = next(S.eval_batches(index, "val", 8, workers=0))
    logits, h = model(x, features=True)
    torch.testing.assert_close(logits, h @ model.classifier.weight.T + model.classifier.bias)


def _current(idx) -> bool:
    """Whether the tree at ``idx.root`` still has the files it was indexed with (its checksum now)."""
    return IX.tree_checksum(idx.root, idx.meta.get("watch", "stat")) == idx.meta["checksum"]
