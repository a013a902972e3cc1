"""Issue 33, items 1, 2, 7 and 10: one decoder for both data paths. Every image mode gives the same
pixels resident and streamed; the same refusals (NaN, out of range) and the same one-line errors
(unreadable, decompression bomb, with ``skip_unreadable`` honoured) apply to both; a file name that
is not UTF-8 is read by both; and a streamed tree small enough to be watched by content has an
index that changes when an image's bytes change, even with its size and modification time kept."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lspipe.base.errors import DataError
from lspipe.core import data as D
from lspipe.core import survey
from lspipe.core import source
from lspipe.core import index as IX
from lspipe.core import stream as S

SIDE = 8


def _grey(seed):
    return np.random.default_rng(seed).integers(0, 256, (SIDE, SIDE), dtype=np.uint8)


def _rgb(seed):
    return np.random.default_rng(seed).integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)


def _image(mode: str, seed: int) -> tuple[Image.Image, str]:
    """An 8 x 8 image of PIL mode ``mode`` with varied pixel values, and the file suffix it is saved as."""
    rng = np.random.default_rng(seed)
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65536, (SIDE, SIDE), dtype=np.uint16)), ".png"
    if mode == "I":  # 32-bit integer, values within 16 bits (scaled as 16-bit)
        return Image.fromarray(rng.integers(0, 65536, (SIDE, SIDE)).astype(np.int32)), ".tif"
    if mode == "F":
        return Image.fromarray(rng.random((SIDE, SIDE)).astype(np.float32)), ".tif"
    if mode == "1":
        return Image.fromarray(_grey(seed) > 127), ".png"
    if mode == "P":
        return Image.fromarray(_rgb(seed)).quantize(16), ".png"
    if mode == "CMYK":
        return Image.fromarray(np.concatenate([_rgb(seed), _grey(seed + 1)[..., None]], 2), "CMYK"), ".tif"
    if mode == "LA":
        return Image.fromarray(np.stack([_grey(seed), _grey(seed + 1)], 2), "LA"), ".png"
    if mode == "RGBA":
        return Image.fromarray(np.concatenate([_rgb(seed), _grey(seed + 1)[..., None]], 2), "RGBA"), ".png"
    if mode == "L":
        return Image.fromarray(_grey(seed)), ".png"
    if mode == "RGB":
        return Image.fromarray(_rgb(seed)), ".png"
    raise ValueError(mode)


MODES = ["1", "L", "P", "RGB", "RGBA", "LA", "CMYK", "I;16", "I", "F"]


def _tree(root: Path, test_images: dict[str, Image.Image], n_train=6) -> Path:
    """Two classes; train/ holds plain RGB images, test/a/ the given images (name -> image)."""
    for c in ("a", "b"):
        for split in ("train", "test"):
            (root / split / c).mkdir(parents=True, exist_ok=True)
        for i in range(n_train):
            Image.fromarray(_rgb(100 + i + 10 * (c == "b"))).save(root / "train" / c / f"{i}.png")
    for name, im in (test_images or {"0.png": Image.fromarray(_rgb(8))}).items():
        im.save(root / "test" / "a" / name)
    Image.fromarray(_rgb(7)).save(root / "test" / "b" / "0.png")
    return root


def _streamed_test_split(root: Path, channels: int) -> np.ndarray:
    """The test split as the streaming path decodes it (the evaluation view at the images' own size)."""
    idx = S.build_index(root, name="t", image_size=SIDE, channels=channels, val_size=2, stats_images=4,
                        eval_crop_fraction=1.0)
    return np.concatenate([x.numpy() for x, _, _ in source.eval_batches(idx, "test", 64, workers=0)])


@pytest.mark.parametrize("channels", [3, 1])
def test_every_image_mode_gives_the_same_pixels_on_both_paths(tmp_path, channels):
    images = {}
    for k, mode in enumerate(MODES):
        im, suffix = _image(mode, k)
        assert im.mode == mode
        images[f"{k:02d}_{mode.replace(';', '')}{suffix}"] = im
    root = _tree(tmp_path / "tree", images)
    for name in images:  # what was saved is of the mode meant
        assert Image.open(root / "test" / "a" / name).mode == images[name].mode
    resident = D.prepare("t", "imagefolder", tmp_path / "t.npz", root=str(root), image_size=SIDE,
                         channels=channels, val_size=2).x["test"]
    streamed = _streamed_test_split(root, channels)
    assert resident.shape == streamed.shape == (len(MODES) + 1, channels, SIDE, SIDE)
    for k, name in enumerate(sorted(images)):
        np.testing.assert_array_equal(streamed[k], resident[k], err_msg=name)
    # the conversions themselves: 16 bits / 257, float x 255 (a grey image keeps its values)
    if channels == 1:
        i16 = np.asarray(images[f"07_I16.png"], dtype=np.float64)
        np.testing.assert_array_equal(resident[7, 0], np.round(i16 / 257).astype(np.uint8))
        f = np.asarray(images[f"09_F.tif"], dtype=np.float64)
        np.testing.assert_array_equal(resident[9, 0], np.round(f * 255).astype(np.uint8))
        assert resident[7, 0].std() > 30 and resident[9, 0].std() > 30  # not saturated, not crushed to 0


@pytest.mark.parametrize("kind", ["nan", "inf", "int32 out of range", "float out of range"])
def test_the_same_refusals_on_both_paths_naming_the_file(tmp_path, kind):
    if kind in ("nan", "inf"):
        arr = np.random.default_rng(0).random((SIDE, SIDE)).astype(np.float32)
        arr[2, 3] = np.nan if kind == "nan" else np.inf
        im = Image.fromarray(arr)
    elif kind == "int32 out of range":
        im = Image.fromarray(np.full((SIDE, SIDE), 70000, np.int32))
    else:
        im = Image.fromarray(np.full((SIDE, SIDE), 2.5, np.float32))
    root = _tree(tmp_path / "tree", {"bad.tif": im})
    bad = re.escape(str(root / "test" / "a" / "bad.tif"))
    want = {"nan": r"1 of its 64 floating-point pixel values are NaN: the file is damaged",
            "inf": r"1 of its 64 floating-point pixel values are infinite: the file is damaged",
            "int32 out of range": r"its I pixel values span 70000\.\.70000, outside 0\.\.65535",
            "float out of range": r"its floating-point pixel values span 2\.5\.\.2\.5, not \[0, 1\]"}[kind]
    pattern = rf"^cannot convert image {bad} to 8 bits: {want}"
    with pytest.raises(DataError, match=pattern) as err:  # resident, even with skip_unreadable
        D.prepare("t", "imagefolder", tmp_path / "t.npz", root=str(root), image_size=SIDE, val_size=2,
                  skip_unreadable=True)
    assert "\n" not in str(err.value)
    with pytest.raises(DataError, match=pattern):  # streamed: when the split is read
        _streamed_test_split(root, 3)
    with pytest.raises(DataError, match=pattern):  # streamed, verified: when the index is built
        S.build_index(root, name="t", image_size=SIDE, val_size=2, verify=True, skip_unreadable=True)


def test_a_decompression_bomb_is_one_line_and_skippable_on_both_paths(tmp_path, monkeypatch, capsys):
    """More than twice PIL's MAX_IMAGE_PIXELS (a 400-megapixel image against the default limit):
    unreadable, one line; skipped under skip_unreadable, also while the streaming index is built."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 200)  # so the bomb is small: 32 x 32 = 1024 > 2 x 200
    root = _tree(tmp_path / "tree", {})
    bomb = root / "train" / "a" / "bomb.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(bomb)
    pattern = rf"^cannot read image {re.escape(str(bomb))} \(DecompressionBombError: .*skip_unreadable"
    with pytest.raises(DataError, match=pattern) as err:
        D.prepare("t", "imagefolder", tmp_path / "t.npz", root=str(root), image_size=SIDE, val_size=2)
    assert "\n" not in str(err.value)
    for verify in (False, True):  # the statistics sample decodes every training image here (stats_images None)
        with pytest.raises(DataError, match=pattern):
            S.build_index(root, name="t", image_size=SIDE, val_size=2, stats_images=None, verify=verify)
    capsys.readouterr()
    p = D.prepare("t", "imagefolder", tmp_path / "t.npz", root=str(root), image_size=SIDE, val_size=2,
                  skip_unreadable=True)
    assert sum(p.meta["sizes"][s] for s in ("train", "val")) == 12
    assert "bomb.png" in capsys.readouterr().err
    idx = S.build_index(root, name="t", image_size=SIDE, val_size=2, verify=True, skip_unreadable=True)
    assert sum(idx.meta["sizes"][s] for s in ("train", "val")) == 12 and idx.meta["skipped"] == ["train/a/bomb.png"]
    assert "bomb.png" in capsys.readouterr().err
    # unverified, the bomb is in a split; the statistics leave it out, with the warning
    idx = S.build_index(root, name="t", image_size=SIDE, val_size=2, stats_images=None, skip_unreadable=True)
    assert sum(idx.meta["sizes"][s] for s in ("train", "val")) == 13
    assert idx.meta["stats_images"] == idx.meta["sizes"]["train"] - (str(bomb) in idx.split_paths("train"))


def test_a_file_name_that_is_not_utf8_is_read_by_both_paths(tmp_path):
    root = _tree(tmp_path / "tree", {})
    raw = os.fsencode(root / "test" / "a") + b"/caf\xe9.png"  # Latin-1, not UTF-8
    Image.fromarray(_rgb(42)).save(raw.decode("utf-8", "surrogateescape"))
    assert os.path.exists(raw)
    p = D.prepare("t", "imagefolder", tmp_path / "t.npz", root=str(root), image_size=SIDE, val_size=2)
    assert survey.source_digest({"source": "imagefolder", "root": str(root)}).startswith("15 files, content")
    idx = S.build_index(root, name="t", image_size=SIDE, val_size=2, stats_images=4, eval_crop_fraction=1.0)
    IX.write_index(tmp_path / "i.npz", idx)
    idx = IX.load_index(tmp_path / "i.npz")
    assert os.fsencode(idx.split_paths("test")[1]) == raw  # after 0.png
    streamed = np.concatenate([x.numpy() for x, _, _ in source.eval_batches(idx, "test", 64, workers=0)])
    np.testing.assert_array_equal(streamed, p.x["test"])
    assert _current(idx)


def test_a_content_watched_index_changes_with_an_image_that_kept_size_and_mtime(tmp_path):
    root = _tree(tmp_path / "tree", {"x.png": Image.fromarray(_rgb(3))})
    a = S.build_index(root, name="t", image_size=SIDE, val_size=2, stats_images=4)
    assert a.meta["watch"] == "content"
    IX.write_index(tmp_path / "a.npz", a)
    f = root / "test" / "a" / "x.png"
    st = f.stat()
    data = bytearray(f.read_bytes())
    data[-20] ^= 0xFF  # inside the image data (PNG: before the IEND chunk)
    f.write_bytes(bytes(data))
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert f.stat().st_size == st.st_size and f.stat().st_mtime_ns == st.st_mtime_ns
    assert not _current(IX.load_index(tmp_path / "a.npz"))
    b = S.build_index(root, name="t", image_size=SIDE, val_size=2, stats_images=4)
    IX.write_index(tmp_path / "b.npz", b)
    assert b.meta["checksum"] != a.meta["checksum"]
    assert D.content_digest(tmp_path / "b.npz") != D.content_digest(tmp_path / "a.npz")
    # above the content-watch limit, the documented stat-watch: the same change goes unseen
    shutil.copy2(tmp_path / "a.npz", tmp_path / "keep.npz")
    old = survey.CONTENT_DIGEST_MAX_BYTES
    try:
        survey.CONTENT_DIGEST_MAX_BYTES = 10
        c = S.build_index(root, name="t", image_size=SIDE, val_size=2, stats_images=4)
        assert c.meta["watch"] == "stat"
        f.write_bytes(bytes(data[:-20]) + bytes([data[-20] ^ 0xFF]) + bytes(data[-19:]))
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert S.build_index(root, name="t", image_size=SIDE, val_size=2, stats_images=4).meta["checksum"] == \
            c.meta["checksum"]
    finally:
        survey.CONTENT_DIGEST_MAX_BYTES = old


def _current(idx) -> bool:
    """Whether the tree at ``idx.root`` still has the files it was indexed with (its checksum now)."""
    return IX.tree_checksum(idx.root, idx.meta.get("watch", "stat")) == idx.meta["checksum"]
