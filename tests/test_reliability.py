"""Issue 14, "nothing silently wrong, nothing lost": hidden folders, run-name collisions, clear
one-line errors for damaged inputs, divergence, probe settings, shell quoting, damaged prepared
data and interrupted workflows. The end-to-end checks reuse the shared `tiny_run` (copies or dry
runs) or the cheapest target that shows the behaviour."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import yaml
from PIL import Image

from conftest import planned_jobs

from lspipe.base.errors import ConfigError, DataError
from lspipe.core import config as C
from lspipe.core import data as D
from lspipe.workflow import plan


def _image_tree(root, classes=("cat", "dog"), n_train=8, n_test=3, size=12):
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        for c in classes:
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / split / c / f"{i}.jpg")
    return root


# --------------------------------------------------------------------------- item 3: hidden folders


def test_hidden_files_and_folders_are_not_classes_or_images(tmp_path):
    tree = _image_tree(tmp_path / "tree")
    ipynb = tree / "train" / ".ipynb_checkpoints"
    ipynb.mkdir()
    Image.fromarray(np.zeros((12, 12, 3), np.uint8)).save(ipynb / "x.jpg")
    (tree / "train" / "cat" / ".hidden").mkdir()
    Image.fromarray(np.zeros((12, 12, 3), np.uint8)).save(tree / "train" / "cat" / ".hidden" / "y.jpg")
    (tree / "train" / "dog" / "._0.jpg").write_bytes(b"\0\5\26\7 AppleDouble resource fork")
    p = D.prepare("toy", "imagefolder", tmp_path / "toy.npz", root=str(tree), image_size=8, val_size=4)
    assert p.classes == ["cat", "dog"]
    assert sum(p.meta["sizes"][s] for s in ("train", "val")) == 16 and p.meta["sizes"]["test"] == 6


# --------------------------------------------------------------------------- item 9: clear errors (data)


def _one_line(err) -> str:
    text = str(err.value)
    assert "\n" not in text, text
    return text


@pytest.mark.parametrize("content", [b"", b"this is not a JPEG", "truncated"])
def test_unreadable_images_are_named_with_the_fix(tmp_path, content):
    tree = _image_tree(tmp_path / "tree")
    bad = tree / "train" / "dog" / "3.jpg"
    if content == "truncated":
        Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(bad, quality=95)
        bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    else:
        bad.write_bytes(content)
    with pytest.raises(DataError) as err:
        D.prepare("toy", "imagefolder", tmp_path / "toy.npz", root=str(tree), image_size=8, val_size=4)
    text = _one_line(err)
    assert str(bad) in text and "datasets.toy.skip_unreadable" in text
    assert not (tmp_path / "toy.npz").exists()


def test_skip_unreadable_images_warns_with_the_list(tmp_path, capsys):
    tree = _image_tree(tmp_path / "tree")
    bad = [tree / "train" / "dog" / "3.jpg", tree / "test" / "cat" / "0.jpg"]
    for b in bad:
        b.write_bytes(b"")
    p = D.prepare("toy", "imagefolder", tmp_path / "toy.npz", root=str(tree), image_size=8, val_size=4,
                  skip_unreadable=True)
    assert p.meta["sizes"]["train"] + p.meta["sizes"]["val"] == 15 and p.meta["sizes"]["test"] == 5
    err = capsys.readouterr().err
    assert all(str(b) in err for b in bad) and "skip" in err
    schema = C.load_schema()
    assert schema["properties"]["datasets"]["additionalProperties"]["properties"]["skip_unreadable"]["default"] is False


def test_empty_class_folder_is_named(tmp_path):
    tree = _image_tree(tmp_path / "tree")
    (tree / "train" / "eel").mkdir()
    (tree / "test" / "eel").mkdir()
    with pytest.raises(DataError) as err:
        D.prepare("toy", "imagefolder", tmp_path / "toy.npz", root=str(tree), image_size=8, val_size=4)
    assert str(tree / "train" / "eel") in _one_line(err)


def test_val_size_above_one_but_not_whole_is_refused(tmp_path):
    with pytest.raises(DataError) as err:
        D.prepare("digits", "digits", tmp_path / "d.npz", val_size=1.5)
    assert "datasets.digits.val_size=1.5" in _one_line(err)
    with pytest.raises(DataError) as err:  # a whole count, but too few for stratification
        D.prepare("digits", "digits", tmp_path / "d.npz", val_size=3)
    assert "datasets.digits.val_size=3" in _one_line(err) and "10 classes" in str(err.value)
    cfg = {"datasets": {"digits": {"source": "digits", "val_size": 1.5}}, "recipes": {"r": {"steps": 1}},
           "teachers": [{"dataset": "digits", "arch": "mlp", "recipe": "r", "alphas": [0.0], "seeds": [0]}]}
    with pytest.raises(ConfigError, match=r"datasets\.digits\.val_size"):
        plan.validate(cfg)
    cfg["datasets"]["digits"]["val_size"] = 300
    plan.validate(cfg)


# --------------------------------------------------------------------------- item 4: run-name collisions


def _cfg(alphas, **distill):
    cfg = {"datasets": {"digits": {"source": "digits"}}, "recipes": {"r": {"steps": 1}},
           "teachers": [{"dataset": "digits", "arch": "mlp", "recipe": "r", "alphas": alphas, "seeds": [0]}]}
    if distill:
        cfg["distillation"] = [{"dataset": "digits", "teacher_arch": "mlp", "student_arch": "mlp",
                                "student_recipe": "r", "seeds": [0], **distill}]
    return cfg


def test_alphas_that_print_alike_are_refused():
    with pytest.raises(ConfigError) as err:
        plan.validate(_cfg([0.0, 0.3, 0.3000001]))
    text = str(err.value)
    assert "teachers[0].alphas[1] = 0.3" in text and "teachers[0].alphas[2] = 0.3000001" in text and "'0.3'" in text
    with pytest.raises(ConfigError, match=r"distillation\[0\]\.temperatures\[0\] = 4 and .*\[1\] = 4\.0000001"):
        plan.validate(_cfg([0.0, 0.3], teacher_alphas=[0.0], temperatures=[4, 4.0000001]))
    plan.validate(_cfg([0.0, 0.3, 0.30001]))  # different names: fine


# --------------------------------------------------------------------------- item 2: divergence


@pytest.fixture(scope="module")
def digits_npz(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "digits.npz"
    D.prepare("digits", "digits", path, val_size=0.2, test_size=0.25)
    return path


def _recipe(**kw):
    return json.dumps({"steps": 48, "batch_size": 64, "lr": 0.05, "augment": {"pad": 1, "flip": False}, **kw})


@pytest.mark.parametrize("fused", [False, True])
def test_non_finite_loss_stops_training_naming_run_step_and_loss(digits_npz, tmp_path, capsys, fused):
    from lspipe import cli

    out = tmp_path / "a0_s0" / "model.pt"
    common = ["--data", str(digits_npz), "--arch", "smallcnn", "--recipe", _recipe(lr=1e4), "--seed", "0",
              "--threads", "1", "--no-progress"]
    if fused:
        out2 = tmp_path / "a0.1_s0" / "model.pt"
        argv = ["train-fused", *common, "--objectives", '[{"kind": "ls"}, {"kind": "ls", "alpha": 0.1}]', "--fuse",
                "--runs", "a0_s0", "a0.1_s0",
                "--out", str(out), str(out2), "--metrics", str(out.with_name("metrics.csv")), str(out2.with_name("metrics.csv"))]
    else:
        argv = ["train", *common, "--run", "a0_s0", "--out", str(out), "--metrics", str(out.with_name("metrics.csv"))]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert re.search(r"diverged at step \d+: the loss of run a0_s0 \(loss (nan|inf|-inf)\).* is not finite", err[0]), err
    assert "recipes.<name>.lr" in err[0]
    assert not out.exists()


def test_exploding_loss_stops_at_the_configured_bound(digits_npz, tmp_path, capsys):
    from lspipe import cli

    out = tmp_path / "m" / "model.pt"
    argv = ["train", "--data", str(digits_npz), "--arch", "mlp", "--recipe", _recipe(max_loss=1.5, checkpoint_every=1),
            "--seed", "0", "--run", "a0_s0", "--threads", "1", "--no-progress", "--out", str(out),
            "--metrics", str(out.with_name("metrics.csv"))]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "diverged at step 1: the loss of run a0_s0 (loss 2.3" in err and "max_loss = 1.5" in err, err
    assert not out.exists()
    # a bound that is never reached changes nothing
    assert cli.main([*argv[:6], _recipe(max_loss=1e6), *argv[7:]]) == 0 and out.exists()


# --------------------------------------------------------------------------- item 9: damaged checkpoints and dumps


def test_corrupt_checkpoint_is_named_and_training_starts_fresh(digits_npz, tmp_path, capsys):
    from lspipe import cli

    out = tmp_path / "m" / "model.pt"
    ckpt = out.with_name("model.pt.ckpt")
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"PK\3\4 garbage, as left by a full disk")
    argv = ["train", "--data", str(digits_npz), "--arch", "mlp", "--recipe", _recipe(steps=16), "--seed", "0",
            "--threads", "1", "--no-progress", "--out", str(out), "--metrics", str(out.with_name("metrics.csv"))]
    assert cli.main(argv) == 0
    warning = [line for line in capsys.readouterr().err.splitlines() if str(ckpt) in line]
    assert len(warning) == 1 and "starts fresh" in warning[0], warning
    assert out.exists() and not ckpt.exists()


def test_truncated_dump_is_named_with_the_fix(digits_npz, tmp_path, capsys):
    import torch

    from lspipe import cli
    from lspipe.engine.activations import write_dump
    from lspipe.core.models import build_model

    data = D.load(digits_npz)
    torch.manual_seed(0)
    dump = tmp_path / "a0_s0.h5"
    write_dump(dump, build_model("mlp", data), data, device="cpu", attrs={"run": "a0_s0"}, max_train=100)
    dump.write_bytes(dump.read_bytes()[: dump.stat().st_size // 2])
    for argv in (["evaluate", "--dump", str(dump), "--out", str(tmp_path / "e.json")],
                 ["calibrate", "--dump", str(dump), "--out", str(tmp_path / "c.json")]):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(dump) in err[0] and f"snakemake -f {dump}" in err[0], err
    assert not (tmp_path / "e.json").exists()


# --------------------------------------------------------------------------- item 1: probe settings


def test_mi_curve_refuses_a_probe_recorded_with_other_settings(digits_npz, tmp_path, capsys):
    from lspipe import cli

    out = tmp_path / "a0_s0" / "model.pt"
    probe = {"classes": ["1", "7"], "per_class": 5, "copies": 2, "every": 8, "seed": 0}
    assert cli.main(["train", "--data", str(digits_npz), "--arch", "mlp", "--recipe", _recipe(steps=16), "--seed", "0",
                     "--threads", "1", "--no-progress", "--probe", json.dumps(probe), "--out", str(out),
                     "--metrics", str(out.with_name("metrics.csv"))]) == 0
    trace = out.with_name("probe.h5")  # the default --probe-out: next to model.pt
    assert trace.exists()
    curve = ["mi-curve", "--probe", str(trace), "--out", str(tmp_path / "mi.csv"), "--alpha", "0", "--seed", "0"]
    assert cli.main([*curve, "--expect-probe", json.dumps(probe)]) == 0
    for change in ({"classes": ["1", "2"]}, {"copies": 3}, {"every": 4}, {"per_class": 6}):
        capsys.readouterr()
        assert cli.main([*curve, "--expect-probe", json.dumps({**probe, **change})]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        (key, new), = change.items()
        assert len(err) == 1 and str(trace) in err[0] and f"{key} {probe[key]!r} (config: {new!r})" in err[0], err


@pytest.mark.slow
def test_changed_probe_settings_retrain_the_probed_teachers(tiny_run, tmp_path):
    from conftest import snakemake

    cfg = yaml.safe_load((tiny_run / "config.yaml").read_text())
    for change in ({"copies": 4},):  # every probe setting is in the same params value (unit test above)
        teachers = [dict(cfg["teachers"][0], probe={**cfg["teachers"][0]["probe"], **change})]
        overlay = tmp_path / "overlay.yaml"
        overlay.write_text(yaml.safe_dump({"teachers": teachers}))
        proc = snakemake(tiny_run, "-n", "--configfile", str(tiny_run / "config.yaml"), str(overlay))
        text = proc.stdout + proc.stderr
        jobs = planned_jobs(proc)
        # every teacher of the probed grid (alpha 0, 0.3, the confidence penalty); Fig. 6 draws the alphas
        assert jobs.get("train_teacher") == 3 and jobs.get("mi_curve") == 2, (change, jobs)
        assert "Params have changed" in text


# --------------------------------------------------------------------------- item 8: shell quoting

ODD_RESULTS = "r a;'b"  # a space, a semicolon and a quote


def _json_paths(value) -> list[str]:
    """The teacher paths in a JSON option: a list of objectives, an expectation, or expectations by path."""
    if isinstance(value, list):
        return [v["teacher"] for v in value if "teacher" in v]
    if "objective" in value:
        return _json_paths([value["objective"]])
    return [p for path, expect in value.items() for p in (path, *_json_paths(expect))]


@pytest.mark.slow
def test_every_shell_command_quotes_its_paths(tmp_path):
    import shlex

    from conftest import TINY, snakemake

    work = tmp_path / "w"
    work.mkdir()
    cfg = yaml.safe_load(TINY.read_text())
    cfg["results"] = ODD_RESULTS
    (work / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    proc = snakemake(work, "-n", "-p", "--forceall")
    commands = [line.split("Shell command: ", 1)[1] for line in proc.stdout.splitlines() if "Shell command: lspipe" in line]
    jobs = planned_jobs(proc)
    assert len(commands) == sum(jobs.values()) - jobs["all"] and len({c.split()[1] for c in commands}) >= 12, jobs
    for cmd in commands:
        tokens = shlex.split(cmd)
        odd = [t for t in tokens if "a;'b" in t]
        # a path is one whole token, or a value of a JSON option: the teacher of a distilled student's
        # --objectives, of its --expect-teachers (keyed by the teacher's path) or of an analysis' --expect
        # and ALPHA=PATH, the toy's students trained alone (--alone)
        odd = [re.sub(r"^[0-9.]+=", "", t) for t in odd]
        paths = [t for t in odd if not t.startswith(("[{", "{"))] + [
            p for t in odd if t.startswith(("[{", "{")) for p in _json_paths(json.loads(t))]
        assert odd and all(p.startswith(ODD_RESULTS + "/") for p in paths), cmd
        assert "r" not in tokens and not any(t.startswith("a;") for t in tokens), cmd
    # and for real: the data preparation runs and writes where it should, nothing else
    snakemake(work, "--cores", "1", f"{ODD_RESULTS}/data/digits.npz")
    assert (work / ODD_RESULTS / "data" / "digits.npz").stat().st_size > 0
    assert sorted(p.name for p in work.iterdir() if not p.name.startswith(".")) == ["config.yaml", ODD_RESULTS]


# --------------------------------------------------------------------------- item 5: documented force-rebuilds

TEACHER = "results/models/digits/smallcnn/teacher/a0_s0"


@pytest.mark.slow
def test_documented_force_rebuilds_do_what_the_docs_say(tiny_run):
    from conftest import REPO, snakemake

    docs = (REPO / "README.md").read_text() + (REPO / "docs" / "cluster.md").read_text()
    # `snakemake -f <model.pt>`: that one training job
    assert "snakemake -f results/models/<dataset>/<arch>/teacher/a<alpha>_s<seed>/model.pt" in docs
    assert planned_jobs(snakemake(tiny_run, "-n", "-f", f"{TEACHER}/model.pt")) == {"train_teacher": 1}
    # `-R train_teacher`: every teacher and all that depends on them
    assert "`-R train_teacher` retrains every teacher" in docs
    jobs = planned_jobs(snakemake(tiny_run, "-n", "-R", "train_teacher"))
    # the 3 distilled students: the LS teacher's alone, the hard-target teacher's (T = 1, 4) in lockstep
    assert jobs.get("train_teacher") == 3 and jobs.get("train_student_distilled") == 1, jobs
    assert jobs.get("train_students_lockstep_digits_kd_hard_s0") == 1, jobs
    assert {"analyse_model", "accuracy_table", "mi_curve"} <= set(jobs), jobs
    # `rm <file> && snakemake <file>` (name it), while a plain `snakemake` leaves it missing
    assert "rm <file> && snakemake <file>" in docs and "does **not** rebuild a deleted intermediate" in docs
    model = tiny_run / TEACHER / "model.pt"
    kept = model.with_name("model.pt.keep")
    model.rename(kept)
    try:
        assert planned_jobs(snakemake(tiny_run, "-n")) == {}
        assert planned_jobs(snakemake(tiny_run, "-n", f"{TEACHER}/model.pt")) == {"train_teacher": 1}
    finally:
        kept.rename(model)
    # `--config 'figures={dpi: ...}'` is accepted (nested numbers arrive as text and are converted)
    assert "--config 'figures={dpi: 300}'" in docs and "rejects" not in docs.split("figures={dpi: 300}")[1][:200]
    dpi = yaml.safe_load((tiny_run / "config.yaml").read_text())["figures"]["dpi"]
    jobs = planned_jobs(snakemake(tiny_run, "-n", "--config", f"figures={{dpi: {dpi + 1}}}"))
    assert jobs and not any(r.startswith(("train_", "dump_", "prepare_")) for r in jobs), jobs
    assert "available to the development sessions" not in docs and "not yet measured on a GPU" in docs


# --------------------------------------------------------------------------- item 6: damaged prepared data


def _copy(tiny_run, dest):
    import shutil

    shutil.copytree(tiny_run, dest, symlinks=True, ignore=shutil.ignore_patterns("log", "slurm_logs", "conda"))
    return dest


@pytest.mark.slow
def test_damaged_prepared_data_fails_before_anything_is_deleted(tiny_run, tmp_path):
    from conftest import snakemake

    work = _copy(tiny_run, tmp_path / "copy")
    npz = work / "results" / "data" / "digits.npz"
    kept = [work / TEACHER / f for f in ("model.pt", "metrics.csv", "probe.h5")]
    dump = work / "results" / "dumps" / "digits" / "smallcnn" / "teacher" / "a0_s0.h5"
    before = {p: p.stat().st_mtime_ns for p in [*kept, dump]}
    npz.write_bytes(npz.read_bytes()[: npz.stat().st_size // 2])  # truncated
    for args in (["--cores", "1", str(dump.relative_to(work)), "-f"], ["--cores", "1"]):
        proc = snakemake(work, *args, check=False)
        text = proc.stdout + proc.stderr
        # a job that reads the damaged file is refused (an explicit target: the run fails); the
        # outputs made from it stay as they are; the damage is reported either way
        assert proc.returncode != 0 or "-f" not in args, text[-3000:]
        assert "results/data/digits.npz is damaged" in text and "snakemake -f results/data/digits.npz" in text, text[-3000:]
        assert {p: p.stat().st_mtime_ns for p in before} == before  # nothing deleted or rewritten
    # the documented fix rebuilds an identical file: nothing made from it reruns
    snakemake(work, "--cores", "1", "-f", "results/data/digits.npz")
    assert planned_jobs(snakemake(work, "-n")) == {}


# --------------------------------------------------------------------------- item 7: interrupted Snakemake


def test_completed_run_record_restores_outputs_and_is_released_by_dump(digits_npz, tmp_path, capsys):
    """The unit behind the workflow test below: a finished `lspipe train` leaves a record from
    which the same command restores its outputs instead of retraining; `lspipe dump` releases it."""
    from lspipe import cli
    from lspipe.engine import complete

    out = tmp_path / "a0_s0" / "model.pt"
    probe = {"classes": ["1", "7"], "per_class": 5, "copies": 2, "every": 8, "seed": 0}
    argv = ["train", "--data", str(digits_npz), "--arch", "mlp", "--recipe", _recipe(steps=16), "--seed", "0",
            "--threads", "1", "--no-progress", "--probe", json.dumps(probe), "--out", str(out),
            "--metrics", str(out.with_name("metrics.csv"))]
    assert cli.main(argv) == 0
    files = [out, out.with_name("metrics.csv"), out.with_name("probe.h5")]
    content = [f.read_bytes() for f in files]
    assert complete.record_dir(out).is_dir()
    for f in files:  # what Snakemake does to the outputs of a job it reruns
        f.unlink()
    capsys.readouterr()
    assert cli.main(argv) == 0
    assert "restored" in capsys.readouterr().err and [f.read_bytes() for f in files] == content
    # other settings: the record is stale, the run trains
    assert cli.main([*argv[:6], _recipe(steps=32), *argv[7:]]) == 0
    assert "restored" not in capsys.readouterr().err and out.read_bytes() != content[0]
    assert cli.main(["dump", "--model", str(out), "--data", str(digits_npz), "--out", str(tmp_path / "d.h5"),
                     "--max-train", "50", "--threads", "1"]) == 0
    assert not complete.record_dir(out).exists()


@pytest.mark.slow
def test_sigint_to_snakemake_keeps_a_job_that_finishes_afterwards(tmp_path):
    """SIGINT to the Snakemake process alone: the running training job still finishes, but
    Snakemake does not record it; the next run (rerun-incomplete) restores it instead of
    training again from scratch."""
    import os
    import signal

    import torch

    from conftest import snakemake
    from test_rerun import TARGET, TRAIN_LOG, _long_workdir, _start, _wait_for_checkpoint

    work = _long_workdir(tmp_path / "w")
    proc = _start(work)
    _wait_for_checkpoint(work, proc)
    os.kill(proc.pid, signal.SIGINT)
    proc.wait(timeout=600)
    out = (work / "snakemake.out").read_text()
    model = work / TARGET
    snakemake(work, "--unlock")
    first_log = (work / TRAIN_LOG).read_text()
    finished = model.exists()
    before = torch.load(model, weights_only=False)["state_dict"] if finished else None
    rerun = snakemake(work, TARGET, "--cores", "1")
    log = (work / TRAIN_LOG).read_text()
    if finished:  # the job completed after the interrupt: kept (nothing to do) or restored, not retrained
        assert "trained smallcnn" in first_log, out[-3000:]
        assert "Nothing to be done" in rerun.stdout + rerun.stderr or ("restored" in log and "trained smallcnn" not in log), log
        after = torch.load(model, weights_only=False)["state_dict"]
        assert all(torch.equal(before[k], after[k]) for k in before)
    else:  # the job was stopped with Snakemake: it resumes from its checkpoint
        assert "resumed from" in log, log
    assert model.with_name("probe.h5").exists() and model.with_name("metrics.csv").exists()
