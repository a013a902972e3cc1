"""A big tree's source digest is scanned once per digest (issue 30, ``lspipe.core.survey.cached_source_digest``):
planning trusts the digest recorded beside the prepared file while the tree's folders (root, split and
class folders) keep their stat, sees a new or deleted image (its folder's mtime changes), rescans on
``LSPIPE_RESCAN=1``, and leaves content-watched trees (up to 256 MiB) watched by content.

The walk is counted, not timed: calls of ``scan_tree`` (the per-image walk: one ``stat`` per file) and
of ``os.stat`` / ``os.scandir``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lspipe.core import survey

OLD_NS = 1_600_000_000 * 10**9  # 2020: the tree's folders were last changed long ago


def _tree(root: Path, classes=("a", "b", "c"), n=5) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in classes:
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (8, 8)).astype(np.uint8)).save(root / split / c / f"{i}.png")
    _age(root)
    return root


def _age(root: Path) -> None:
    """Every folder's mtime far in the past (as a tree copied long before the run)."""
    for d in [root, *[p for p in root.rglob("*") if p.is_dir()]]:
        os.utime(d, ns=(OLD_NS, OLD_NS))


class Counter:
    """Counts the per-image walks (``scan_tree``) and the ``os.stat`` / ``os.scandir`` calls."""

    def __init__(self, monkeypatch):
        self.walks = self.stats = self.scandirs = 0
        real_scan, real_stat, real_scandir = survey.scan_tree, os.stat, os.scandir

        def scan(*a, **k):
            self.walks += 1
            return real_scan(*a, **k)

        def stat(*a, **k):
            self.stats += 1
            return real_stat(*a, **k)

        def scandir(*a, **k):
            self.scandirs += 1
            return real_scandir(*a, **k)

        monkeypatch.setattr(survey, "scan_tree", scan)
        monkeypatch.setattr(os, "stat", stat)
        monkeypatch.setattr(os, "scandir", scandir)

    def reset(self):
        self.walks = self.stats = self.scandirs = 0


@pytest.fixture
def big(monkeypatch):
    """Every tree counts as big (watched by stat, as ImageNet above the 256 MiB bound)."""
    monkeypatch.setattr(survey, "CONTENT_DIGEST_MAX_BYTES", 0)


@pytest.mark.parametrize("n", [5, 40])
def test_an_unchanged_big_tree_is_not_walked_again(tmp_path, big, monkeypatch, n):
    root = _tree(tmp_path / "tree", n=n)
    opts, cache = {"source": "imagefolder", "root": str(root)}, tmp_path / "results" / "data" / ".t.source.json"
    count = Counter(monkeypatch)
    first = survey.cached_source_digest(opts, cache, environ={})
    assert first == survey.source_digest(opts) and first.startswith(f"{6 * n} files, stat ")
    assert json.loads(cache.read_text())["digest"] == first
    assert count.walks == 2 and count.stats > 6 * n  # the first planning: one stat per image
    count.reset()
    for _ in range(3):  # every later planning: the folders' stat only, whatever the number of images
        assert survey.cached_source_digest(opts, cache, environ={}) == first
    assert count.walks == 0
    # root, 2 split folders and 6 class folders, and the layout's 4 checks (root, train/, test/?, val/)
    assert count.stats == 3 * (9 + 4)
    assert count.scandirs == 3 * 2  # one listing per split folder
    count.reset()
    assert survey.cached_source_digest(opts, cache, environ={survey.RESCAN_ENV: "1"}) == first  # forced: walked again
    assert count.walks == 1


@pytest.mark.parametrize("change", ["add", "delete", "rename", "new class"])
def test_a_new_or_deleted_image_is_seen(tmp_path, big, monkeypatch, change):
    root = _tree(tmp_path / "tree")
    opts, cache = {"source": "imagefolder", "root": str(root)}, tmp_path / ".t.source.json"
    first = survey.cached_source_digest(opts, cache, environ={})
    img = root / "train" / "b" / "2.png"
    if change == "add":
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "train" / "b" / "new.png")
    elif change == "delete":
        img.unlink()
    elif change == "rename":
        img.rename(img.with_name("22.png"))
    else:
        for split in ("train", "val"):
            (root / split / "d").mkdir()
            Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / split / "d" / "0.png")
    count = Counter(monkeypatch)
    now = survey.cached_source_digest(opts, cache, environ={})
    assert count.walks == 1 and now != first and now == survey.source_digest(opts)


def test_an_image_rewritten_in_place_is_seen_only_on_a_rescan(tmp_path, big):
    """The trade-off: a file rewritten in place leaves its folder's mtime alone; LSPIPE_RESCAN=1 sees it."""
    root = _tree(tmp_path / "tree")
    opts, cache = {"source": "imagefolder", "root": str(root)}, tmp_path / ".t.source.json"
    first = survey.cached_source_digest(opts, cache, environ={})
    img = root / "train" / "a" / "0.png"
    img.write_bytes(img.read_bytes() + b"\0")  # another size and mtime, same folder
    assert survey.cached_source_digest(opts, cache, environ={}) == first
    assert survey.cached_source_digest(opts, cache, environ={survey.RESCAN_ENV: "1"}) != first
    assert survey.cached_source_digest(opts, cache, environ={}) == survey.source_digest(opts)  # the rescan's digest kept


def test_a_moved_tree_or_a_foreign_cache_is_scanned_again(tmp_path, big, monkeypatch):
    root = _tree(tmp_path / "tree")
    cache = tmp_path / ".t.source.json"
    first = survey.cached_source_digest({"source": "imagefolder", "root": str(root)}, cache, environ={})
    moved = tmp_path / "moved"
    root.rename(moved)
    count = Counter(monkeypatch)
    assert survey.cached_source_digest({"source": "imagefolder", "root": str(moved)}, cache, environ={}) == first
    assert count.walks == 1  # another root: scanned (the digest of relative paths is the same)
    cache.write_text("{not json")
    assert survey.cached_source_digest({"source": "imagefolder", "root": str(moved)}, cache, environ={}) == first
    assert count.walks == 2


def test_a_tree_changed_a_moment_ago_is_not_cached(tmp_path, big):
    """A folder modified within RACY_SECONDS of the scan may change again without a new mtime (a coarse
    file-system clock): its digest is not kept."""
    root = _tree(tmp_path / "tree")
    os.utime(root / "train" / "a")  # now
    cache = tmp_path / ".t.source.json"
    survey.cached_source_digest({"source": "imagefolder", "root": str(root)}, cache, environ={})
    assert not cache.exists()


def test_a_small_tree_keeps_its_content_watch(tmp_path, monkeypatch):
    """Up to the content bound the digest reads every file at each planning, and no cache is kept."""
    root = _tree(tmp_path / "tree")
    opts, cache = {"source": "imagefolder", "root": str(root)}, tmp_path / ".t.source.json"
    first = survey.cached_source_digest(opts, cache, environ={})
    assert first.startswith("30 files, content ") and not cache.exists()
    img = root / "train" / "a" / "0.png"
    data = bytearray(img.read_bytes())
    data[-20] ^= 1
    img.write_bytes(bytes(data))
    _age(root)
    count = Counter(monkeypatch)
    assert survey.cached_source_digest(opts, cache, environ={}) != first and count.walks == 1
    assert survey.cached_source_digest({"source": "digits"}, cache, environ={}) == "bundled"
