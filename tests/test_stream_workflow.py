"""A streamed dataset inside the workflow and the engine: prepare_data writes the index, teachers (a built-in
net as a fused grid, and a timm net) train on the StreamLoader, each model's analysis dumps, evaluates and
calibrates from streamed splits, Table 2/3 and a Fig. 1 row by WordNet id build, and a changed tree
prepares again; fit on an index is deterministic and resumes exactly; a streamed dump equals the
dump of the same images decoded at once; what a streamed dataset cannot do is refused in one line.

One small DAG run (module-scoped) serves the workflow checks; the tree is a copy of the session's tiny
ImageNet-layout tree, so changing it here leaves the other tests' tree alone."""

from __future__ import annotations

import csv
import itertools
import json
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml

from conftest import fit_one, make_workdir, planned_jobs, snakemake
from lspipe.base.errors import ConfigError, DataError
from lspipe.core import data as D
from lspipe.core import source
from lspipe.core import index as IX
from lspipe.core import stream as S
from lspipe.core.models import build_model
from lspipe.core.recipe import Recipe
from lspipe.engine.dumpfile import Dump
from lspipe.engine.training import Interrupted

TENCH, MEERKAT, CLEAVER = "n01440764", "n02138441", "n03041632"


def _config(tree: Path) -> dict:
    return {
        "results": "results", "device": "cpu", "threads": 1, "progress": False,
        "datasets": {"tin": {"source": "imagefolder", "root": str(tree), "storage": "streaming", "image_size": 32,
                             "val_size": 0.2}},
        "streaming": {"workers": 0, "stats_images": 50},
        "recipes": {"tiny": {"steps": 8, "batch_size": 32, "lr": 0.05, "eval_batch_size": 64}},
        "teachers": [
            {"dataset": "tin", "arch": "smallcnn", "recipe": "tiny", "alphas": [0.0, 0.1], "seeds": [0], "fuse": True},
            {"dataset": "tin", "arch": "timm:resnet18", "recipe": "tiny", "alphas": [0.0], "seeds": [0]},
        ],
        "dump": {"max_train": 50},
        "figures": {"dpi": 50, "formats": ["png"]},
        "calibration": {"ls_alpha": None},
        "projections": {"per_class": 10, "ls_alpha": 0.1,
                        "rows": [{"dataset": "tin", "arch": "smallcnn", "classes": [TENCH, MEERKAT, CLEAVER]}]},
    }


@pytest.fixture(scope="module")
def streamed_run(tiny_imagenet, tmp_path_factory):
    """The DAG of :func:`_config` on a copy of the tiny tree, run once; returns (workdir, tree)."""
    root = tmp_path_factory.mktemp("stream_wf")
    tree = shutil.copytree(tiny_imagenet, root / "tree", copy_function=shutil.copy2)
    work = make_workdir(root / "work")
    (work / "config.yaml").write_text(yaml.safe_dump(_config(tree)))
    snakemake(work, "--cores", "2")
    return work, tree


def test_prepare_data_writes_the_index_and_models_record_its_digest(streamed_run):
    work, tree = streamed_run
    path = work / "results" / "data" / "tin.npz"
    assert source.is_index(path)
    idx = source.load(path)
    assert isinstance(idx, IX.StreamIndex) and idx.root == str(tree)
    assert idx.digest == D.content_digest(path) and len(idx.digest) == 16
    assert idx.meta["sizes"] == {"train": 192, "val": 48, "test": 60} and idx.meta["checksum"] == IX.tree_checksum(tree)
    # the views' settings are the index's (the training job reads them from there)
    assert idx.meta["crop_scale"] == [0.08, 1.0] and idx.meta["eval_crop_fraction"] == 0.875
    source.verify(path)  # the workflow's check of a prepared file takes an index
    for arch, run in (("smallcnn", "a0_s0"), ("smallcnn", "a0.1_s0"), ("timm:resnet18", "a0_s0")):
        meta = torch.load(work / "results" / "models" / "tin" / arch / "teacher" / run / "model.pt",
                          weights_only=False)["meta"]
        assert meta["data_digest"] == idx.digest and meta["data_meta"]["storage"] == "streaming"
        assert meta["summary"]["steps"] == 8


def test_streamed_dumps_hold_the_splits_without_train_full(streamed_run):
    work, _ = streamed_run
    idx = source.load(work / "results" / "data" / "tin.npz")
    for arch in ("smallcnn", "timm:resnet18"):
        path = work / "results" / "dumps" / "tin" / arch / "teacher" / "a0_s0.h5"
        d = Dump(path)
        assert d.meta("storage") == "streaming" and d.meta("train_full") == "omitted"
        assert d.splits == ["train", "val", "test"] and d.classes == idx.classes
        with h5py.File(path) as f:
            assert "train_full" not in f
        for split in ("val", "test"):
            s = d.split(split)
            np.testing.assert_array_equal(s.index, np.arange(len(idx.y[split])))
            np.testing.assert_array_equal(s.labels, idx.y[split])
            assert s.logits.shape == (len(idx.y[split]), 10) and np.isfinite(s.features).all()
        assert len(d.split("train").labels) == 50  # dump.max_train
        assert json.loads(d.meta("class_names"))[TENCH] == "tench"
        with pytest.raises(DataError, match=r"dataset 'tin' is streamed.*datasets\.tin\.storage: resident"):
            d.full_train()
        ev = json.loads((work / "results" / "eval" / "tin" / arch / "teacher" / "a0_s0.json").read_text())
        assert ev["test"]["n"] == 60


def test_tables_and_fig1_by_wordnet_id_build(streamed_run):
    work, _ = streamed_run
    rows = list(csv.DictReader(open(work / "results" / "tables" / "accuracy.csv")))
    assert {r["arch"] for r in rows} == {"smallcnn", "timm:resnet18"}
    assert (work / "results" / "tables" / "calibration.csv").exists()
    assert (work / "results" / "figures" / "fig1_projections.png").stat().st_size > 0
    tight = list(csv.DictReader(open(work / "results" / "tables" / "tightness.csv")))
    assert any(r["classes"] == f"{TENCH}|{MEERKAT}|{CLEAVER}" for r in tight)


def test_nothing_to_redo_and_a_changed_tree_prepares_again(streamed_run):
    work, tree = streamed_run
    assert planned_jobs(snakemake(work, "-n")) == {}
    extra = tree / "train" / TENCH / "extra.JPEG"
    shutil.copy(next((tree / "train" / MEERKAT).glob("*.JPEG")), extra)
    try:
        jobs = planned_jobs(snakemake(work, "-n"))
    finally:
        extra.unlink()
    assert jobs.get("prepare_data_streamed") == 1 and jobs.get("train_teacher") == 1  # and what was trained on it


# `snakemake` with every tree above the content bound (as ImageNet), and with the per-image walk refused
_BIG_TREE_SNAKEMAKE = """
import os, sys
import lspipe.core.survey as survey
survey.CONTENT_DIGEST_MAX_BYTES = 0
if os.environ.get("NO_WALK"):
    def scan_tree(*args, **kwargs):
        raise AssertionError("the tree was walked")
    survey.scan_tree = scan_tree
from snakemake.cli import main
sys.argv[0] = "snakemake"
main()
"""


def test_planning_walks_a_big_tree_once_per_digest(tiny_imagenet, tmp_path, monkeypatch):
    """A dry run records the source digest of a big tree beside the prepared file; the next dry runs take it
    from there without walking the tree (the walk is made to fail); an added image changes a class folder's
    mtime and is walked again; LSPIPE_RESCAN=1 walks in any case."""
    import subprocess
    import sys

    tree = shutil.copytree(tiny_imagenet, tmp_path / "tree")
    old = 1_600_000_000 * 10**9
    for d in [tree, *[p for p in tree.rglob("*") if p.is_dir()]]:
        os.utime(d, ns=(old, old))
    work = make_workdir(tmp_path / "work")
    (work / "config.yaml").write_text(yaml.safe_dump(_config(tree)))
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"

    def dry(**env):
        proc = subprocess.run([sys.executable, "-c", _BIG_TREE_SNAKEMAKE, "-s", str(Path(D.__file__).parents[2] / "Snakefile"),
                               "-d", str(work), "-n"], capture_output=True, text=True, timeout=600,
                              env={**os.environ, "PATH": path, "LSPIPE_RESCAN": "", **env})
        return proc.returncode, proc.stdout + proc.stderr

    rc, out = dry()
    assert rc == 0, out[-3000:]
    cache = work / "results" / "data" / ".tin.source.json"
    first = json.loads(cache.read_text())["digest"]
    assert " files, stat " in first
    rc, out = dry(NO_WALK="1")
    assert rc == 0, out[-3000:]  # planned from the recorded digest
    rc, out = dry(NO_WALK="1", LSPIPE_RESCAN="1")
    assert rc != 0 and "the tree was walked" in out
    shutil.copy(next((tree / "train" / MEERKAT).glob("*.JPEG")), tree / "train" / TENCH / "extra.JPEG")
    rc, out = dry(NO_WALK="1")
    assert rc != 0 and "the tree was walked" in out
    assert dry()[0] == 0
    # the new digest is recorded, unless the folder changed too recently to trust its mtime (RACY_SECONDS)
    assert not cache.exists() or json.loads(cache.read_text())["digest"] != first


def test_what_a_streamed_dataset_cannot_do_is_refused_by_the_plan(tiny_imagenet):
    from lspipe.workflow import plan

    cfg = _config(tiny_imagenet)
    cfg["teachers"][0].update(probe={"classes": [TENCH, MEERKAT], "per_class": 4}, fuse=False)
    with pytest.raises(ConfigError, match=r"probe.*'tin' is streamed; set datasets\.tin\.storage: resident"):
        plan.validate(cfg)
    cfg = _config(tiny_imagenet)
    cfg["distillation"] = [{"dataset": "tin", "teacher_arch": "smallcnn", "student_arch": "mlp",
                            "student_recipe": "tiny", "teacher_alphas": [0.0, 0.1], "temperatures": [1], "seeds": [0]}]
    with pytest.raises(ConfigError, match=r"gamma of Fig\. 5.*'tin' is streamed; set datasets\.tin\.storage: resident"):
        plan.validate(cfg)
    cfg["datasets"]["tin"]["storage"] = "auto"  # decided when the data are prepared: refused at run time then
    plan.validate(cfg)


# --------------------------------------------------------------------------- the engine on an index


@pytest.fixture(scope="module")
def index(tiny_imagenet):
    return S.build_index(tiny_imagenet, name="tin", val_size=0.2, image_size=16, stats_images=20)


RECIPE = {"steps": 12, "batch_size": 32, "lr": 0.05, "grad_clip": 1.0, "checkpoint_every": 1, "eval_batch_size": 20}


def _fit(index, tmp, seed=0, stop_after_epochs=None):
    torch.manual_seed(seed)
    model = build_model("smallcnn", index)
    fit_one(model, index, Recipe.from_dict(RECIPE), {"kind": "ls", "alpha": 0.1}, seed=seed,
            checkpoint_path=tmp / "m.ckpt", metrics_path=tmp / "metrics.csv", run_fingerprint="fp", progress=False,
            stop_after_epochs=stop_after_epochs, stream_loader={"workers": 0})
    return model


def test_fit_on_an_index_is_deterministic_and_resumes_exactly(index, tmp_path, one_torch_thread):
    a = _fit(index, tmp_path / "a")  # 192 images: 6 batches an epoch, 2 epochs
    b = _fit(index, tmp_path / "b")
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    with pytest.raises(Interrupted, match="stopped after 1 epoch"):
        _fit(index, tmp_path / "r", stop_after_epochs=1)
    assert torch.load(tmp_path / "r" / "m.ckpt", weights_only=False)["loader"] == {"stream": {"epoch": 1, "batch": 0}}
    r = _fit(index, tmp_path / "r")
    for k, v in a.state_dict().items():
        assert torch.equal(v, r.state_dict()[k]), k
    rows = list(csv.DictReader(open(tmp_path / "a" / "metrics.csv")))
    strip = lambda rs: [{k: v for k, v in x.items() if k != "seconds"} for x in rs]  # noqa: E731
    assert len(rows) == 2 and strip(rows) == strip(csv.DictReader(open(tmp_path / "r" / "metrics.csv")))
    c = _fit(index, tmp_path / "c", seed=1)
    assert not torch.equal(a.classifier.weight, c.classifier.weight)


def _decoded_at_once(idx: IX.StreamIndex) -> D.Prepared:
    """The index's splits decoded into arrays in one go (the evaluation view, one image at a time)."""
    x = {}
    for split in D.SPLITS:
        ds = S.StreamDataset(idx.split_paths(split), idx.y[split], mode="eval", image_size=idx.image_shape[1],
                             crop_fraction=idx.meta["eval_crop_fraction"])
        x[split] = torch.stack([ds[k][0] for k in range(len(ds))]).numpy()
    return D.Prepared(x, idx.y, idx.index, idx.classes, idx.mean, idx.std, dict(idx.meta), idx.digest)


def test_a_streamed_dump_equals_the_dump_of_the_images_decoded_at_once(index, tmp_path, one_torch_thread):
    from lspipe.engine.activations import StreamedRows, write_dump

    torch.manual_seed(0)
    model = build_model("smallcnn", index).eval()
    write_dump(tmp_path / "s.h5", model, index, max_train=40, seed=3, eval_batch_size=7,
               stream_loader={"workers": 0})
    write_dump(tmp_path / "r.h5", model, _decoded_at_once(index), max_train=40, seed=3)
    s, r = Dump(tmp_path / "s.h5"), Dump(tmp_path / "r.h5")
    for split in D.SPLITS:
        a, b = s.split(split), r.split(split)
        np.testing.assert_array_equal(a.index, b.index)
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_allclose(a.features, b.features, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(a.logits, b.logits, rtol=1e-5, atol=1e-5)
    assert r.full_train()[0].shape == (192, 10)
    # rows asked for in blocks that cut through the loader's batches come out the same, in order
    rows = StreamedRows(model, index, "test", np.arange(60), "cpu", 7, {"workers": 0})
    parts = [rows(0, 10), rows(10, 11), rows(11, 60)]
    np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), s.split("test").logits)
    with pytest.raises(ValueError, match="in order"):
        StreamedRows(model, index, "test", np.arange(60), "cpu", 7)(5, 10)


def test_an_unreadable_image_in_a_dump_names_it_and_the_fixes(index, tmp_path):
    from lspipe.engine.activations import StreamedRows

    tree = Path(index.root)
    copy = shutil.copytree(tree, tmp_path / "tree")
    idx = S.build_index(copy, name="tin", image_size=16, stats_images=2)
    bad = Path(idx.split_paths("test")[2])
    bad.write_bytes(b"not a jpeg")
    model = build_model("smallcnn", idx).eval()
    with pytest.raises(DataError, match=rf"cannot read image {bad}.*streaming\.verify: true finds"):
        StreamedRows(model, idx, "test", np.arange(60), "cpu", 8, {"workers": 0})(0, 60)


def test_the_probe_refuses_a_streamed_dataset(index):
    with pytest.raises(DataError, match=r"probe.*dataset 'tin'.*datasets\.tin\.storage: resident"):
        source.require_resident(index, "the mutual-information probe (teachers[].probe)")
    source.require_resident(_decoded_at_once(index), "the probe")  # resident data pass


def test_loader_settings_come_from_the_option_else_the_workflows_environment():
    env = {source.LOADER_ENV: '{"workers": 3, "pin_memory": false}'}
    assert source.loader_settings(None, env) == {"workers": 3, "pin_memory": False}
    assert source.loader_settings({"workers": 0}, env) == {"workers": 0}  # --stream-loader wins
    assert source.loader_settings(None, {}) == {}  # the schema's defaults
    with pytest.raises(DataError, match="unknown streaming loader setting"):
        source.loader_settings({"threads": 2})
    with pytest.raises(DataError, match=r"LSPIPE_STREAM_LOADER is not JSON"):
        source.loader_settings(None, {source.LOADER_ENV: "{"})


def test_a_training_batch_without_a_readable_image_is_a_clear_error(index, tmp_path):
    from lspipe.engine.distributed import SINGLE
    from lspipe.engine.batches import StreamedBatches

    copy = shutil.copytree(Path(index.root), tmp_path / "tree")
    idx = S.build_index(copy, name="tin", image_size=16, stats_images=2, skip_unreadable=True)
    Path(idx.split_paths("train")[5]).write_bytes(b"not a jpeg")
    batches = StreamedBatches(idx, Recipe.from_dict({"steps": 1, "batch_size": 96}), 0, torch.device("cpu"), SINGLE,
                              {"workers": 0})
    got = [len(y) for _, y in itertools.islice(batches.epoch(0), len(batches))]  # as fit takes them: len() steps
    assert sorted(got) == [95, 96]  # skipped, with a warning: a batch is shorter
    one = StreamedBatches(idx, Recipe.from_dict({"steps": 1, "batch_size": 1}), 0, torch.device("cpu"), SINGLE,
                          {"workers": 0})
    steps = one.epoch(0)
    with pytest.raises(DataError, match=r"no readable image left: set streaming\.verify: true"):
        for _ in range(len(one)):  # as fit counts its steps: one per batch of the pass
            next(steps)


# --------------------------------------------------------------------------- issue 33: a moved tree, a changed image


def test_a_moved_tree_reruns_nothing_and_a_changed_image_reruns_its_dumps(streamed_run, tmp_path):
    """Moving the tree (and `root` with it) reruns nothing, and the jobs read the images where they lie now.
    Then, the tree being small enough to be watched by content: a test image whose bytes change, its size and
    modification time kept, prepares the data again; and once the index is rebuilt (here alone, as a run
    that stopped after prepare_data leaves it), the dumps and evaluations made from the old index rerun."""
    work, tree = streamed_run
    copy = tmp_path / "work"
    shutil.copytree(work, copy, symlinks=True, ignore=shutil.ignore_patterns("log", "slurm_logs", "conda"))
    moved = shutil.copytree(tree, tmp_path / "elsewhere" / "tree", copy_function=shutil.copy2)  # as `mv` keeps them
    cfg = yaml.safe_load((copy / "config.yaml").read_text())
    cfg["datasets"]["tin"]["root"] = str(moved)
    (copy / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert planned_jobs(snakemake(copy, "-n")) == {}
    # a forced analysis reads the moved tree (the tree the index was built from is away meanwhile)
    evaluation = "results/eval/tin/smallcnn/teacher/a0_s0.json"
    before = json.loads((copy / evaluation).read_text())
    away = tree.with_name("tree.away")
    tree.rename(away)
    try:
        snakemake(copy, "--cores", "1", "-f", evaluation)
    finally:
        away.rename(tree)
    assert json.loads((copy / evaluation).read_text()) == before

    image = sorted((moved / "val" / TENCH).glob("*.JPEG"))[0]  # the ImageNet layout's val/: the test split
    st = image.stat()
    data = bytearray(image.read_bytes())
    data[len(data) // 2] ^= 0xFF
    image.write_bytes(bytes(data))
    os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert image.stat().st_size == st.st_size and image.stat().st_mtime_ns == st.st_mtime_ns
    assert planned_jobs(snakemake(copy, "-n")).get("prepare_data_streamed") == 1  # the source digest watches content
    snakemake(copy, "--cores", "1", "results/data/tin.npz")
    assert source.load(copy / "results" / "data" / "tin.npz").meta["watch"] == "content"
    jobs = planned_jobs(snakemake(copy, "-n"))
    assert jobs.get("analyse_model") == 3 and jobs.get("accuracy_table") == 1, jobs
