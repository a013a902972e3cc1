"""Issue 20, "results that are what they claim to be": content identity of the data, watched source
images, finite divergence, high-bit-depth images, symlink loops, models checked against their
place, refused configurations (empty results, duplicate YAML keys, late milestones, no figure
formats), forced rebuilds that retrain, one lock per results folder, one-line errors and stale
temporary files. One test (or a few) per item; the end-to-end one runs the smallest workflow that
shows it (one ImageFolder teacher), the rest are unit or CLI tests."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from conftest import REPO, TINY, planned_jobs, snakemake

from lspipe import cli
from lspipe.base.errors import ConfigError, DataError, ResultsLocked, WriteError
from lspipe.core import config as C
from lspipe.core import data as D
from lspipe.core import survey
from lspipe.engine import complete
from lspipe.workflow import plan

RECIPE = {"steps": 16, "batch_size": 64, "lr": 0.05, "augment": {"pad": 1, "flip": False}}


def _recipe(**kw) -> str:
    return json.dumps({**RECIPE, **kw})



def _train_argv(data, out, *, recipe=None, arch="mlp", seed=0, extra=()):
    out = Path(out)
    return ["train", "--data", str(data), "--arch", arch, "--recipe", recipe or _recipe(), "--seed", str(seed),
            "--threads", "1", "--no-progress", *extra, "--out", str(out), "--metrics", str(out.with_name("metrics.csv"))]


def _one_error_line(capsys, *needles):
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err
    return err


def _inverted(src: Path, dst: Path) -> Path:
    """The prepared file ``src`` with every image inverted (255 - x): other content, the same metadata."""
    with np.load(src, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    for s in D.SPLITS:
        arrays[f"x_{s}"] = 255 - arrays[f"x_{s}"]
    with open(dst, "wb") as fh:
        D.savez_deterministic(fh, arrays)
    return dst


def _gray_tree(root: Path, n_train=12, n_test=4, side=8, seed=0, classes=("a", "b")):
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        for label, c in enumerate(classes):
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                img = rng.integers(0, 128, (side, side)) + 100 * label
                Image.fromarray(img.astype(np.uint8)).save(root / split / c / f"{i}.png")
    return root


# --------------------------------------------------------------------------- items 1, 2, 10: end to end

MODEL = "results/models/img/mlp/teacher/a0_s0/model.pt"
NPZ = "results/data/img.npz"
LOG = "results/logs/train_teacher/img/mlp/a0_s0.log"


@pytest.mark.slow
def test_changed_images_are_seen_and_retrain_the_model(tmp_path):
    """The smallest workflow that trains on images from a folder: one MLP teacher.

    Item 2: changing a source image makes Snakemake plan `prepare_data` and the training again.
    Item 1: after the documented rebuild (`snakemake -f <npz>`), the model retrains on the new
    images (it was restored from its completed-run record before) and records the new content digest.
    Item 10: a forced rebuild of a trained, never dumped model retrains it (it was restored before)."""
    import torch

    root = _gray_tree(tmp_path / "images")
    work = tmp_path / "w"
    work.mkdir()
    cfg = {
        "results": "results", "device": "cpu", "threads": 1, "progress": False,
        "resources": {"gpus_per_job": 0},
        "datasets": {"img": {"source": "imagefolder", "root": str(root), "image_size": 8, "channels": 1,
                             "val_size": 0.25}},
        "recipes": {"r": {"steps": 6, "batch_size": 8, "lr": 0.05, "augment": {"pad": 0, "flip": False}}},
        "teachers": [{"dataset": "img", "arch": "mlp", "recipe": "r", "alphas": [0.0], "seeds": [0]}],
    }
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    snakemake(work, "--cores", "1", MODEL)
    model = work / MODEL
    first = torch.load(model, weights_only=False)
    assert first["meta"]["data_digest"] == D.content_digest(work / NPZ)

    # item 2: replaced images are seen (every training image of class a: some of them are in the training split)
    for img in (root / "train" / "a").glob("*.png"):
        Image.fromarray(np.full((8, 8), 7, np.uint8)).save(img)
    assert planned_jobs(snakemake(work, "-n", MODEL)) == {"prepare_data": 1, "train_teacher": 1}

    # item 1: the documented rebuild of the prepared file, then the model: trained anew on the new images
    snakemake(work, "--cores", "1", "-f", NPZ)
    snakemake(work, "--cores", "1", MODEL)
    log = (work / LOG).read_text()
    assert "restored" not in log and "trained mlp" in log, log
    second = torch.load(model, weights_only=False)
    assert second["meta"]["data_digest"] == D.content_digest(work / NPZ) != first["meta"]["data_digest"]
    assert not all(torch.equal(first["state_dict"][k], second["state_dict"][k]) for k in first["state_dict"])

    # item 10: the model was trained and never dumped (its completed-run record is there); forcing it retrains
    assert complete.record_dir(model).is_dir()
    snakemake(work, "--cores", "1", "-f", MODEL)
    log = (work / LOG).read_text()
    assert "restored" not in log and "trained mlp" in log, log


# --------------------------------------------------------------------------- item 1: the identity includes the content


def test_content_digest_follows_the_arrays_not_the_metadata(digits_npz, tmp_path):
    other = _inverted(digits_npz, tmp_path / "inverted.npz")
    a, b = D.load(digits_npz), D.load(other)
    assert a.meta == b.meta and a.digest != b.digest
    # the same arrays written again: the same digest
    again = _inverted(other, tmp_path / "again.npz")
    assert D.content_digest(again) == a.digest and again.read_bytes() == digits_npz.read_bytes()


def test_runs_on_other_images_with_the_same_metadata_are_not_restored_or_resumed(digits_npz, tmp_path, capsys):
    """A completed-run record and a checkpoint belong to the data's content, not to its metadata."""
    other = _inverted(digits_npz, tmp_path / "inverted.npz")
    out = tmp_path / "a0_s0" / "model.pt"
    argv = _train_argv(digits_npz, out, recipe=_recipe(checkpoint_every=1))
    assert cli.main(argv) == 0
    before = out.read_bytes()
    out.unlink()
    out.with_name("metrics.csv").unlink()
    capsys.readouterr()
    assert cli.main(_train_argv(other, out, recipe=_recipe(checkpoint_every=1))) == 0
    assert "restored" not in capsys.readouterr().err and out.read_bytes() != before
    # a checkpoint written on one file is not resumed on the other
    out2 = tmp_path / "b" / "a0_s0" / "model.pt"
    two_epochs = _recipe(steps=32, checkpoint_every=1)
    assert cli.main([*_train_argv(digits_npz, out2, recipe=two_epochs), "--stop-after-epochs", "1"]) == 3
    assert out2.with_name("model.pt.ckpt").exists()
    capsys.readouterr()
    assert cli.main(_train_argv(other, out2, recipe=two_epochs)) == 0
    err = capsys.readouterr().err
    assert "resumed" not in err and "belongs to a run with other settings" in err, err


# --------------------------------------------------------------------------- item 2: the source tree's digest


@pytest.mark.parametrize("kind", ["content", "stat"])
def test_source_digest_changes_when_an_image_is_added_replaced_or_removed(tmp_path, monkeypatch, kind):
    if kind == "stat":  # a tree above the content bound (ImageNet) is watched by stat
        monkeypatch.setattr(survey, "CONTENT_DIGEST_MAX_BYTES", 0)
    root = _gray_tree(tmp_path / "t")
    opts = {"source": "imagefolder", "root": str(root)}
    first = survey.source_digest(opts)
    assert first.startswith(f"32 files, {kind} ") and survey.source_digest(opts) == first
    img = root / "train" / "a" / "0.png"
    Image.fromarray(np.full((8, 8), 3, np.uint8)).save(img)
    os.utime(img, ns=(1, 1))  # even with an old timestamp: the content, size or time differs
    replaced = survey.source_digest(opts)
    assert replaced != first
    Image.fromarray(np.full((8, 8), 3, np.uint8)).save(root / "train" / "a" / "new.png")
    assert survey.source_digest(opts) not in (first, replaced)
    (root / "train" / "a" / "notes.txt").write_text("not an image")  # not read by prepare: not watched
    (root / "train" / "a" / "new.png").unlink()
    assert survey.source_digest(opts) == replaced
    assert survey.source_digest({"source": "digits"}) == "bundled"
    cifar = tmp_path / "cifar"
    (cifar / "cifar-10-batches-py").mkdir(parents=True)
    (cifar / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"x")
    assert survey.source_digest({"source": "cifar10", "root": str(cifar)}).startswith(f"1 files, {kind} ")


def test_source_digest_of_a_small_tree_ignores_copies_and_touches(tmp_path, monkeypatch):
    """A small tree is watched by content: re-copying it (new modification times) or touching a
    file prepares nothing again; a large one is watched by stat, where a touch counts (it cannot be
    told from an edit without reading the file)."""
    root = _gray_tree(tmp_path / "t")
    opts = {"source": "imagefolder", "root": str(root)}
    first = survey.source_digest(opts)
    shutil.rmtree(root)
    shutil.copytree(_gray_tree(tmp_path / "orig"), root, copy_function=shutil.copy)  # new mtimes
    os.utime(root / "train" / "a" / "0.png", ns=(5, 5))
    assert survey.source_digest(opts) == first
    monkeypatch.setattr(survey, "CONTENT_DIGEST_MAX_BYTES", 0)
    by_stat = survey.source_digest(opts)
    os.utime(root / "train" / "a" / "0.png", ns=(7, 7))
    assert survey.source_digest(opts) != by_stat


# --------------------------------------------------------------------------- item 3: finite divergence


def test_finite_divergence_stops_training_by_default(digits_npz, tmp_path, capsys):
    """lr 1e4 with clipping: the loss explodes to ~1e9 but stays finite. Without a max_loss, an epoch
    whose mean loss exceeds 10 x the uniform prediction's (log 10 here) stops the run."""
    out = tmp_path / "a0_s0" / "model.pt"
    argv = _train_argv(digits_npz, out, arch="smallcnn", recipe=_recipe(lr=1e4, grad_clip=1.0))
    assert cli.main(argv) == 2
    err = _one_error_line(capsys, "training diverged in epoch 1", "a0_s0", "10 x the loss of a uniform prediction")
    assert "uniform prediction 2.303" in err  # log K, K = 10
    assert not out.exists()
    # an explicit max_loss replaces the built-in bound
    assert cli.main(_train_argv(digits_npz, out, arch="smallcnn", recipe=_recipe(lr=1e4, grad_clip=1.0, max_loss=1e30))) == 0


def test_uniform_prediction_loss_of_each_objective(one_torch_thread):
    """The built-in bound's reference, ``uniform_loss(K)``, equals the objective evaluated at all-equal
    logits: log K for (smoothed) cross-entropy, ((1 - beta) + beta s) log K for distillation (s = T^2
    in the hinton form), per member of a group."""
    import math

    import torch

    from lspipe.core.losses import Objective

    torch.manual_seed(0)
    k, y, x = 7, torch.tensor([0, 3, 6]), torch.rand(3, 1, 2, 2)
    teacher = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, k))
    values = [{"kind": "ls"}, {"kind": "ls", "alpha": 0.3}, {"kind": "kd", "teacher": "t", "T": 4.0},
              {"kind": "kd", "teacher": "t", "T": 4.0, "form": "slides"},
              {"kind": "kd", "teacher": "t", "T": 4.0, "beta": 0.5, "form": "hinton"}]
    obj = Objective(values, {"t": teacher})
    torch.testing.assert_close(obj.uniform_loss(k), obj(torch.zeros(3, len(values), k), y, x).float(), rtol=1e-6,
                               atol=1e-6)
    assert float(obj.uniform_loss(k)[4]) == pytest.approx((0.5 + 0.5 * 16) * math.log(k))


# --------------------------------------------------------------------------- item 4: high bit depth


def test_16_bit_and_float_images_are_scaled_not_crushed(tmp_path):
    root = tmp_path / "t"
    ramp16 = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)  # 0 .. 63000
    ramp_f = (np.arange(64, dtype=np.float32).reshape(8, 8) / 63.0)  # 0 .. 1
    for split in ("train", "test"):
        for c in ("a", "b"):
            (root / split / c).mkdir(parents=True)
            for i in range(4):
                Image.fromarray(ramp16).save(root / split / c / f"{i}.png")
                Image.fromarray(ramp_f).save(root / split / c / f"{i}.tif")
    assert Image.open(root / "train" / "a" / "0.png").mode.startswith("I") and Image.open(root / "train" / "a" / "0.tif").mode == "F"
    p = D.prepare("t", "imagefolder", tmp_path / "t.npz", root=str(root), image_size=8, channels=1, val_size=2)
    want16 = np.round(ramp16 / 257.0).astype(np.uint8)
    want_f = np.round(ramp_f.astype(np.float64) * 255).astype(np.uint8)
    images = {tuple(x.ravel()) for x in p.x["test"][:, 0]}
    assert images == {tuple(want16.ravel()), tuple(want_f.ravel())}
    # a float image outside [0, 1] is refused, naming it
    bad = root / "test" / "b" / "9.tif"
    Image.fromarray(ramp_f * 40).save(bad)
    with pytest.raises(DataError, match=f"cannot convert image {re.escape(str(bad))} to 8 bits.*not \\[0, 1\\]"):
        D.prepare("t", "imagefolder", tmp_path / "u.npz", root=str(root), image_size=8, channels=1, val_size=2)


# --------------------------------------------------------------------------- item 5: symlink loops


def test_symlink_loops_are_skipped_and_shared_files_refused(tmp_path, capsys):
    root = _gray_tree(tmp_path / "t", n_train=6, n_test=2)
    (root / "train" / "a" / "again").symlink_to(".", target_is_directory=True)  # a loop
    (root / "train" / "b" / "up").symlink_to("..", target_is_directory=True)  # a link to an ancestor
    p = D.prepare("t", "imagefolder", tmp_path / "t.npz", root=str(root), image_size=8, channels=1, val_size=2)
    assert sum(len(p.y[s]) for s in ("train", "val")) == 12 and len(p.y["test"]) == 4
    err = capsys.readouterr().err
    assert "skipped" in err and str(root / "train" / "a" / "again") in err, err
    # one real file reached by two paths (here in two splits) is refused, naming both
    (root / "test" / "a" / "leak.png").symlink_to(root / "train" / "a" / "0.png")
    with pytest.raises(DataError, match="leak.png and .*0.png are the same file"):
        D.prepare("t", "imagefolder", tmp_path / "u.npz", root=str(root), image_size=8, channels=1, val_size=2)
    (root / "test" / "a" / "leak.png").unlink()  # a hard link is the same file too
    os.link(root / "train" / "a" / "0.png", root / "test" / "a" / "leak.png")
    with pytest.raises(DataError, match="leak.png and .*0.png are the same file"):
        D.prepare("t", "imagefolder", tmp_path / "u.npz", root=str(root), image_size=8, channels=1, val_size=2)


# --------------------------------------------------------------------------- item 6: a model checked against its place


def _place(tmp_path, src: Path, dataset, arch, role, run) -> Path:
    dst = tmp_path / "results" / "models" / dataset / arch / role / run / "model.pt"
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, dst)
    return dst


@pytest.mark.slow
def test_misplaced_models_are_refused_by_their_consumers(tiny_run, tmp_path, capsys):
    models = tiny_run / "results" / "models" / "digits"
    npz = tiny_run / "results" / "data" / "digits.npz"
    ls = models / "smallcnn" / "teacher" / "a0.3_s0" / "model.pt"
    # an alpha = 0.3 teacher copied into the alpha = 0 folder: the dump refuses it
    wrong = _place(tmp_path, ls, "digits", "smallcnn", "teacher", "a0_s0")
    dump = ["dump-activations", "--data", str(npz), "--out", str(tmp_path / "d.h5"), "--threads", "1"]
    assert cli.main([*dump, "--model", str(wrong)]) == 2
    _one_error_line(capsys, str(wrong), "run 'a0.3_s0' where its place says 'a0_s0'", "alpha 0.3", "snakemake -f")
    assert not (tmp_path / "d.h5").exists()
    # an MLP student in a smallcnn teacher's folder
    student = next((models / "mlp" / "student").glob("a0_s0/model.pt"))
    wrong = _place(tmp_path, student, "digits", "smallcnn", "teacher", "a0.3_s0")
    assert cli.main([*dump, "--model", str(wrong)]) == 2
    _one_error_line(capsys, "arch 'mlp' where its place says 'smallcnn'", "role 'student'")
    # a student distilled from the wrong teacher: refused before training
    wrong = _place(tmp_path, ls, "digits", "smallcnn", "teacher", "a0_s0")
    out = tmp_path / "results" / "models" / "digits" / "mlp" / "student" / "kd-smallcnn-a0-T4_s0" / "model.pt"
    kd = json.dumps([{"kind": "kd", "teacher": str(wrong), "T": 4}])
    argv = _train_argv(npz, out, extra=("--objectives", kd, "--role", "student", "--run", "kd-smallcnn-a0-T4_s0"))
    assert cli.main(argv) == 2
    _one_error_line(capsys, "this teacher is not the one", "alpha 0.3")
    assert not out.exists()
    # a model on other data (same metadata, other pixels): refused by its dump
    other = _inverted(npz, tmp_path / "inverted.npz")
    right = _place(tmp_path / "ok", ls, "digits", "smallcnn", "teacher", "a0.3_s0")
    assert cli.main([*dump, "--model", str(right), "--data", str(other)]) == 2
    _one_error_line(capsys, "data digest", "trained on other images")
    # Table 2 refuses an evaluation that is not of the model its place says, and one model counted twice
    evals = tiny_run / "results" / "eval" / "digits" / "smallcnn" / "teacher"
    moved = tmp_path / "results" / "eval" / "digits" / "smallcnn" / "teacher" / "a0_s1.json"
    moved.parent.mkdir(parents=True)
    shutil.copy(evals / "a0_s0.json", moved)
    table = ["accuracy-table", "--csv", str(tmp_path / "t.csv"), "--md", str(tmp_path / "t.md")]
    assert cli.main([*table, "--evals", str(evals / "a0_s0.json"), str(moved)]) == 2
    _one_error_line(capsys, "run 'a0_s0' where its place says 'a0_s1'")
    twice = tmp_path / "elsewhere.json"
    shutil.copy(evals / "a0_s0.json", twice)
    assert cli.main([*table, "--evals", str(evals / "a0_s0.json"), str(twice)]) == 2
    _one_error_line(capsys, "evaluate one model", "two seeds")
    assert cli.main([*table, "--evals", str(evals / "a0_s0.json"), str(evals / "a0.3_s0.json")]) == 0


def test_identity_problems_name_each_disagreement():
    from lspipe.core.models import identity_problems

    meta = {"dataset": "d", "arch": "resnet20", "role": "student", "run": "kd-alexnet-a0.1-T2_s1", "seed": 1,
            "alpha": 0.0, "teacher": "r/models/d/alexnet/teacher/a0.1_s1/model.pt", "teacher_alpha": 0.1,
            "temperature": 2.0}
    path = "r/models/d/resnet20/student/kd-alexnet-a0.1-T2_s1/model.pt"
    assert identity_problems(path, meta) == []
    assert identity_problems("elsewhere/model.pt", meta) == []  # another layout: nothing to compare
    bad = identity_problems("r/models/d/resnet20/student/kd-alexnet-a0-T4_s2/model.pt", meta)
    assert len(bad) == 4 and any("teacher alpha" in b for b in bad) and any("temperature" in b for b in bad)


# --------------------------------------------------------------------------- items 7, 9, 12: refused configurations


def _config(**changes):
    cfg = yaml.safe_load(TINY.read_text())
    cfg.update(changes)
    return cfg


@pytest.mark.parametrize("results", ["", " ", "/", "//", "/./"])
def test_empty_or_root_results_folder_is_refused(results):
    with pytest.raises(ConfigError, match="results"):
        plan.validate(_config(results=results))


def test_no_figure_format_is_refused():
    with pytest.raises(ConfigError, match="figures.formats"):
        plan.validate(_config(figures={"formats": []}))


def test_learning_rate_milestones_beyond_the_last_step_are_refused():
    cfg = _config()
    cfg["recipes"]["tiny"]["lr_milestones"] = [16, 24]
    with pytest.raises(ConfigError, match=r"recipes.tiny: lr_milestones \[24\] lie at or beyond the last step \(steps: 24\)"):
        plan.validate(cfg)


def test_seeds_beyond_32_bits_are_refused():
    cfg = _config()
    cfg["teachers"][0]["seeds"] = [2**63]
    with pytest.raises(ConfigError, match="teachers\\[0\\].seeds\\[0\\]"):
        plan.validate(cfg)


def test_duplicate_yaml_keys_are_refused(tmp_path):
    text = TINY.read_text() + "\nrecipes:\n  other: {steps: 5}\n"
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    assert yaml.safe_load(text)["recipes"] == {"other": {"steps": 5}}  # what plain YAML does
    with pytest.raises(ConfigError, match=r"duplicate key 'recipes' in .*dup.yaml, line \d+ \(first at line \d+\)"):
        plan.load(path)
    # merge keys may still be overridden
    (tmp_path / "merge.yaml").write_text("base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  y: 3\n")
    assert C.load_yaml(tmp_path / "merge.yaml")["other"] == {"x": 1, "y": 3}


@pytest.mark.slow
def test_the_workflow_refuses_a_config_file_with_duplicate_keys(tmp_path):
    work = tmp_path / "w"
    work.mkdir()
    (work / "config.yaml").write_text(TINY.read_text() + "\nteachers:\n  - {dataset: digits, arch: mlp, recipe: tiny, "
                                      "alphas: [0.0], seeds: [0]}\n")
    proc = snakemake(work, "-n", check=False)
    assert proc.returncode != 0 and "duplicate key 'teachers'" in proc.stdout + proc.stderr


# --------------------------------------------------------------------------- item 10: which records are kept


def test_records_are_kept_only_for_the_job_snakemake_lost(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    models = [f"results/models/d/mlp/teacher/a{a}_s0/model.pt" for a in (0, 0.1, 0.2)]
    for m in models:
        Path(m).parent.mkdir(parents=True)
        Path(m).write_bytes(b"model")
        complete.save(m, [m], "fp")
    Path(models[2]).unlink()  # deleted: asking for it again retrains it
    # Snakemake marks the outputs of a job it started and never recorded (here: the first model)
    marker = complete._snakemake_marker(models[0], Path(".snakemake/incomplete"))
    marker.parent.mkdir(parents=True)
    marker.write_text("{}")
    assert complete.marked_incomplete(models[0]) and not complete.marked_incomplete(models[1])
    released = complete.release_accepted(models)
    assert released == [complete.record_dir(models[1]), complete.record_dir(models[2])]
    assert complete.record_dir(models[0]).is_dir()


# --------------------------------------------------------------------------- item 11: one run per results folder


_HOLD = """
import sys, time
from lspipe.base import lock
lock.hold(sys.argv[1], sys.argv[2])
print("held", flush=True)
time.sleep(60)
"""


def _holder(results: Path, workdir: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(results), str(workdir)], stdout=subprocess.PIPE,
                            text=True, env=env)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_results_lock_names_the_other_working_directory(tmp_path):
    from lspipe.base import lock

    holder = _holder(tmp_path / "results", tmp_path / "first")
    try:
        with pytest.raises(ResultsLocked, match=f"in use by another Snakemake run in {tmp_path / 'first'}"):
            lock.hold(tmp_path / "results", tmp_path / "second")
    finally:
        holder.kill()
        holder.wait()
    fd = lock.hold(tmp_path / "results", tmp_path / "second")  # released with the process
    assert json.loads((tmp_path / "results" / lock.LOCK_NAME).read_text())["workdir"] == str(tmp_path / "second")
    os.close(fd)


@pytest.mark.slow
def test_a_second_working_directory_on_the_same_results_is_refused(tmp_path):
    results = tmp_path / "shared-results"
    work = tmp_path / "second"
    work.mkdir()
    cfg = yaml.safe_load(TINY.read_text())
    cfg["results"] = str(results)
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    holder = _holder(results, tmp_path / "first")
    try:
        proc = snakemake(work, "--cores", "1", f"{results}/data/digits.npz", check=False)
    finally:
        holder.kill()
        holder.wait()
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0 and f"in use by another Snakemake run in {tmp_path / 'first'}" in text, text[-3000:]
    assert not (results / "data").exists()  # no job ran
    assert planned_jobs(snakemake(work, "-n", f"{results}/data/digits.npz")) == {"prepare_data": 1}  # dry runs still plan


# --------------------------------------------------------------------------- item 13: one line for each failure


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG that declares width x height pixels (and holds none): PIL refuses it at open when the
    pixel count exceeds twice Image.MAX_IMAGE_PIXELS, as a real 400-megapixel image."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IEND", b""))


def test_a_400_megapixel_image_is_unreadable_and_skippable(tmp_path, capsys):
    root = _gray_tree(tmp_path / "t", n_train=6, n_test=2)
    huge = root / "train" / "a" / "huge.png"
    _png_header_only(huge, 20000, 20000)
    with pytest.raises(DataError, match=f"cannot read image {re.escape(str(huge))} .*DecompressionBomb.*skip_unreadable"):
        D.prepare("t", "imagefolder", tmp_path / "t.npz", root=str(root), image_size=8, channels=1, val_size=2)
    p = D.prepare("t", "imagefolder", tmp_path / "t.npz", root=str(root), image_size=8, channels=1, val_size=2,
                  skip_unreadable=True)
    assert sum(len(p.y[s]) for s in ("train", "val")) == 12 and str(huge) in capsys.readouterr().err


def test_damaged_or_foreign_models_and_incomplete_dumps_give_one_line(digits_npz, tmp_path, capsys):
    import h5py

    out = tmp_path / "m" / "model.pt"
    assert cli.main(_train_argv(digits_npz, out, recipe=_recipe(steps=2))) == 0
    dump = ["dump-activations", "--data", str(digits_npz), "--out", str(tmp_path / "d.h5"), "--threads", "1",
            "--max-train", "50"]
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(out.read_bytes()[:1000])
    capsys.readouterr()
    for bad in (truncated, digits_npz, out.with_name("metrics.csv"), tmp_path / "absent.pt"):
        assert cli.main([*dump, "--model", str(bad)]) == 2
        _one_error_line(capsys, str(bad))
    assert cli.main([*dump, "--model", str(out)]) == 0
    capsys.readouterr()
    for group, command in (("val", ["evaluate", "--out", str(tmp_path / "e.json")]),
                           ("train_full", ["distillation-gamma", "--temperatures", "1", "--out", str(tmp_path / "g.csv")])):
        damaged = tmp_path / f"no_{group}.h5"
        shutil.copy(tmp_path / "d.h5", damaged)
        with h5py.File(damaged, "a") as f:
            del f[group]
        flag = "--dump" if command[0] == "evaluate" else "--dumps"
        assert cli.main([command[0], flag, str(damaged), *command[1:]]) == 2
        _one_error_line(capsys, str(damaged), group, "snakemake -f")


_FULL_DISK = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)      # writes beyond the limit fail with EFBIG instead
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), int(sys.argv[1])))
from lspipe.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize("what", ["checkpoint", "dump"])
def test_a_full_disk_during_a_write_gives_one_line(digits_npz, tmp_path, what):
    """A file-size limit (RLIMIT_FSIZE) makes every write beyond it fail, as a full disk does."""
    out = tmp_path / "m" / "model.pt"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if what == "checkpoint":  # the MLP's checkpoint after epoch 1 (~12 MB) cannot be written
        argv = _train_argv(digits_npz, out, recipe=_recipe(steps=32, checkpoint_every=1))
        limit = 2_000_000
    else:
        assert cli.main(_train_argv(digits_npz, out, recipe=_recipe(steps=2))) == 0
        argv = ["dump-activations", "--model", str(out), "--data", str(digits_npz), "--out", str(tmp_path / "d.h5"),
                "--threads", "1", "--compression", "none"]
        limit = 100_000
    proc = subprocess.run([sys.executable, "-c", _FULL_DISK, str(limit), *argv], capture_output=True, text=True,
                          env=env, timeout=300)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert err[-1].startswith(f"lspipe {argv[0]}: error: cannot write") and "then rerun" in err[-1], err
    target = out.with_name("model.pt.ckpt") if what == "checkpoint" else tmp_path / "d.h5"
    assert str(target) in err[-1] and not target.exists()
    assert not [p for p in target.parent.iterdir() if p.name.endswith(".tmp")]  # no temporary file left


def test_a_file_where_a_folder_belongs_gives_one_line(digits_npz, tmp_path, capsys):
    (tmp_path / "m").write_text("a file, not a folder")
    assert cli.main(_train_argv(digits_npz, tmp_path / "m" / "a0_s0" / "model.pt")) == 2
    _one_error_line(capsys, "a file is where a folder belongs")


def test_a_read_only_folder_gives_one_line(tmp_path, monkeypatch):
    """(Permissions do not bind root, who runs the tests: the refusal is simulated where atomic_path
    creates its temporary file.)"""
    import errno
    import tempfile

    from lspipe.base import io as lio

    def refuse(*a, dir=None, **k):
        raise PermissionError(errno.EACCES, "Permission denied", str(dir))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(WriteError, match=f"cannot write {re.escape(str(tmp_path))}: Permission denied; make the "
                                             "folder writable"):
        lio.write_text(tmp_path / "x.txt", "x")


@pytest.mark.parametrize("argv,needles", [
    (["--seed", str(2**63)], ["argument --seed", "maximum of 4294967295"]),
    (["--objectives", '[{"kind": "ls", "alpha": 1.5}]'], ["--objectives[0].alpha must be a number in [0, 1), got 1.5"]),
    (["--recipe", '{"steps": 0}'], ["argument --recipe", "recipes.<name>.steps"]),
    (["--recipe", json.dumps({**RECIPE, "batch_size": 5000})], ["batch_size 5000 exceeds the 1078 training examples"]),
    (["--arch", "resnet9"], ["unknown architecture 'resnet9'"]),
    (["--device", "tpu"], ["argument --device", "device"]),
])
def test_bad_values_of_a_hand_called_command_give_one_line(digits_npz, tmp_path, capsys, argv, needles):
    base = _train_argv(digits_npz, tmp_path / "m" / "model.pt")
    for flag, value in zip(argv[::2], argv[1::2]):
        if flag in base:
            base[base.index(flag) + 1] = value
        else:
            base += [flag, value]
    try:
        rc = cli.main(base)
    except SystemExit as exit_:  # argparse
        rc = exit_.code
    assert rc == 2
    _one_error_line(capsys, *needles)


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA")
def test_device_cuda_without_cuda_gives_one_line(digits_npz, tmp_path, capsys):
    assert cli.main([*_train_argv(digits_npz, tmp_path / "m" / "model.pt"), "--device", "cuda"]) == 2
    _one_error_line(capsys, "CUDA is not available", "device: auto")


# --------------------------------------------------------------------------- item 14: stale temporary files


def test_a_job_removes_the_temporary_files_a_killed_run_left(digits_npz, tmp_path):
    out = tmp_path / "a0_s0" / "model.pt"
    out.parent.mkdir()
    stale = [out.with_name(n) for n in (".model.pt.ckpt.k3j2l1.ckpt.tmp", ".model.pt.x8y9.pt.tmp", ".metrics.csv.q1.csv.tmp")]
    for p in stale:
        p.write_bytes(b"half a checkpoint")
    (out.with_name(".model.pt.complete.tmp")).mkdir()
    keep = [out.with_name("notes.tmp"), out.with_name(".other.pt.z.pt.tmp")]  # not this job's outputs
    for p in keep:
        p.write_text("x")
    assert cli.main(_train_argv(digits_npz, out, recipe=_recipe(steps=2))) == 0
    assert not any(p.exists() for p in stale) and not out.with_name(".model.pt.complete.tmp").exists()
    assert all(p.exists() for p in keep)
