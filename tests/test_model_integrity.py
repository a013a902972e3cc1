"""Issue 33, items 3, 4, 6 and 7: a model is the whole of what made it, and a damaged file is never read
silently. A model put in place that was trained with another recipe, objective or seed is refused in one
line naming the differing key, by its dump and by a student distilled from it; a flipped bit in a model,
a checkpoint or a dump is found (zip CRC-32, HDF5 Fletcher-32, the dump's attribute digest) and named in
one line with the fix; a dump written past a file-size limit ends in one line and leaves nothing, never a
crash; `experiments-table` names a truncated dump. In the workflow, a damaged model stops the DAG before
anything made from it is touched, and a foreign model is never used downstream."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, planned_jobs, snakemake
from lspipe import cli
from lspipe.base.errors import DataError, ModelError

RECIPE = {"steps": 16, "batch_size": 64, "lr": 0.05, "augment": {"pad": 1, "flip": False}}



def _model_path(root: Path, run="a0_s0", role="teacher", arch="mlp") -> Path:
    return root / "results" / "models" / "digits" / arch / role / run / "model.pt"


def _train(data, out: Path, *, recipe=None, seed=0, objectives=None, role="teacher", extra=()) -> int:
    argv = ["train", "--data", str(data), "--arch", "mlp", "--recipe", json.dumps(recipe or RECIPE), "--seed", str(seed),
            "--threads", "1", "--no-progress", "--role", role, "--runs", out.parent.name, *extra,
            "--out", str(out), "--metrics", str(out.with_name("metrics.csv"))]
    if objectives is not None:
        argv += ["--objectives", json.dumps(objectives)]
    return cli.main(argv)


def _one_error_line(capsys, *needles) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err
    return err


def flip_tensor_bytes(path: Path, count: int = 3) -> None:
    """XOR ``count`` bytes in the middle of the largest tensor stored in the zip at ``path`` (a torch.save
    file), in place: the file stays a valid zip whose member no longer matches its recorded CRC-32."""
    with zipfile.ZipFile(path) as zf:
        info = max((i for i in zf.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    with open(path, "r+b") as fh:
        fh.seek(info.header_offset + 26)
        name_len, extra_len = struct.unpack("<HH", fh.read(4))
        start = info.header_offset + 30 + name_len + extra_len + info.file_size // 2
        fh.seek(start)
        data = bytearray(fh.read(count))
        fh.seek(start)
        fh.write(bytes(b ^ 0x5A for b in data))


def _dump_argv(model, data, out, expect=None):
    argv = ["dump-activations", "--model", str(model), "--data", str(data), "--out", str(out), "--threads", "1",
            "--max-train", "50"]
    return argv + (["--expect", json.dumps(expect)] if expect is not None else [])


# --------------------------------------------------------------------------- identity: recipe, objective, seed


def _expect(recipe=None, objective=None, seed=0):
    return {"recipe": recipe or RECIPE, "objective": objective or {"kind": "ls", "alpha": 0.0}, "seed": seed}


def test_a_model_trained_otherwise_is_refused_naming_the_differing_key(digits_npz, tmp_path, capsys):
    model = _model_path(tmp_path)
    assert _train(digits_npz, model, recipe={**RECIPE, "steps": 8}) == 0
    capsys.readouterr()
    out = tmp_path / "d.h5"
    assert cli.main(_dump_argv(model, digits_npz, out, _expect())) == 2
    _one_error_line(capsys, str(model), "recipe steps 8 where the config says 16", f"snakemake -f {model}")
    assert not out.exists()
    # the settings that change no weight are no part of it; what the config gives is compared as values
    same = _expect(recipe={**RECIPE, "steps": 8.0, "checkpoint_every": 5, "eval_batch_size": 7})
    assert cli.main(_dump_argv(model, digits_npz, out, same)) == 0 and out.exists()
    capsys.readouterr()
    assert cli.main(_dump_argv(model, digits_npz, out, {**same, "objective": {"kind": "ls", "alpha": 0.1}})) == 2
    _one_error_line(capsys, "objective alpha 0.0 where the config says 0.1")
    assert cli.main(_dump_argv(model, digits_npz, out, {**same, "seed": 3})) == 2
    _one_error_line(capsys, "seed 0 where the config says 3")


def test_a_teacher_trained_otherwise_is_refused_before_a_student_learns(digits_npz, tmp_path, capsys):
    teacher = _model_path(tmp_path)
    assert _train(digits_npz, teacher, recipe={**RECIPE, "steps": 8}) == 0
    student = _model_path(tmp_path, run="kd-mlp-a0-T4_s0", role="student")
    kd = [{"kind": "kd", "teacher": str(teacher), "T": 4.0, "beta": 1.0, "form": "teacher"}]
    capsys.readouterr()
    expect = {str(teacher): _expect()}
    assert _train(digits_npz, student, objectives=kd, role="student",
                  extra=("--expect-teachers", json.dumps(expect))) == 2
    _one_error_line(capsys, "this teacher is not the one", "recipe steps 8 where the config says 16")
    assert not student.exists()
    expect = {str(teacher): _expect(recipe={**RECIPE, "steps": 8})}
    assert _train(digits_npz, student, objectives=kd, role="student", extra=("--expect-teachers", json.dumps(expect))) == 0


def test_expectation_problems_compare_each_key():
    from lspipe.core.models import expectation_problems

    meta = {"recipe": {**RECIPE, "steps": 8}, "objective": {"kind": "kd", "teacher": "t.pt", "T": 4.0, "beta": 1.0,
                                                             "form": "teacher"}, "seed": 1}
    want = {"recipe": RECIPE, "objective": {"kind": "kd", "teacher": "t.pt", "T": 2, "beta": 1, "form": "teacher"},
            "seed": 1}
    assert expectation_problems(meta, want) == ["recipe steps 8 where the config says 16",
                                                "objective T 4.0 where the config says 2"]
    assert expectation_problems(meta, {**want, "recipe": {**RECIPE, "steps": 8}, "objective": meta["objective"]}) == []
    assert expectation_problems({"seed": 1}, want) == []  # an older model records no recipe or objective


# --------------------------------------------------------------------------- a flipped bit: model, checkpoint, dump


def test_a_model_with_flipped_bits_is_refused_in_one_line(digits_npz, tmp_path, capsys):
    import torch

    from lspipe.core.models import load_model

    model = _model_path(tmp_path)
    assert _train(digits_npz, model) == 0
    before = torch.load(model, weights_only=False)
    flip_tensor_bytes(model)
    after = torch.load(model, weights_only=False)  # torch itself reads it, silently
    assert not all(torch.equal(before["state_dict"][k], after["state_dict"][k]) for k in before["state_dict"])
    with pytest.raises(ModelError, match=r"it is damaged \(checksum mismatch in its member .*/data/\d+: a flipped bit"):
        load_model(model)
    capsys.readouterr()
    assert cli.main(_dump_argv(model, digits_npz, tmp_path / "d.h5")) == 2
    _one_error_line(capsys, f"cannot use model {model}: it is damaged", f"snakemake -f {model}")
    assert not (tmp_path / "d.h5").exists()


def test_a_checkpoint_with_flipped_bits_is_not_resumed(digits_npz, tmp_path, capsys):
    model = _model_path(tmp_path)
    two_epochs = {**RECIPE, "steps": 32, "checkpoint_every": 1}
    assert _train(digits_npz, model, recipe=two_epochs, extra=("--stop-after-epochs", "1")) == 3
    ckpt = model.with_name("model.pt.ckpt")
    flip_tensor_bytes(ckpt)
    capsys.readouterr()
    assert _train(digits_npz, model, recipe=two_epochs) == 0
    err = capsys.readouterr().err
    assert f"ignoring the unreadable checkpoint {ckpt}" in err and "checksum mismatch" in err and "resumed" not in err


@pytest.fixture
def dump(digits_npz, tmp_path):
    model = _model_path(tmp_path)
    assert _train(digits_npz, model, recipe={**RECIPE, "steps": 2}) == 0
    out = tmp_path / "d.h5"
    assert cli.main([*_dump_argv(model, digits_npz, out), "--compression", "none"]) == 0  # bytes as stored
    return out


def _flip_at(path: Path, needle: bytes) -> None:
    data = bytearray(path.read_bytes())
    at = data.find(needle)
    assert at >= 0 and data.find(needle, at + 1) < 0, needle
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_dump_with_a_flipped_bit_is_one_line_naming_it(dump, tmp_path, capsys):
    from lspipe.engine.dumpfile import Dump

    logits = Dump(dump).split("test").logits
    for what, needle in (("logits", logits[7].tobytes()[:8]), ("an attribute", b'"run": "a0_s0"')):
        bad = tmp_path / f"bad_{what[:4]}.h5"
        shutil.copy(dump, bad)
        _flip_at(bad, needle)
        capsys.readouterr()
        assert cli.main(["evaluate", "--dump", str(bad), "--out", str(tmp_path / "e.json")]) == 2
        _one_error_line(capsys, f"cannot read {bad}", f"snakemake -f {bad}")
        assert not (tmp_path / "e.json").exists()


def test_experiments_table_names_a_truncated_dump(dump, tmp_path, capsys):
    from lspipe.experiments.experiment_table import dump_meta

    bad = tmp_path / "truncated.h5"
    bad.write_bytes(dump.read_bytes()[: dump.stat().st_size // 2])
    with pytest.raises(DataError, match=rf"cannot read {bad} .*snakemake -f {bad}"):
        dump_meta(bad)
    ev, cal = tmp_path / "e.json", tmp_path / "c.json"
    assert cli.main(["evaluate", "--dump", str(dump), "--out", str(ev)]) == 0
    assert cli.main(["calibrate", "--dump", str(dump), "--out", str(cal)]) == 0
    capsys.readouterr()
    argv = ["experiments-table", "--evals", str(ev), "--calibrations", str(cal), "--dumps", str(bad),
            "--benchmarks", str(tmp_path / "none.tsv"), "--csv", str(tmp_path / "t.csv"), "--md", str(tmp_path / "t.md")]
    assert cli.main(argv) == 2
    _one_error_line(capsys, f"cannot read {bad}")


_LIMITED = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)      # as Python does: writes beyond the limit fail with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), int(sys.argv[1])))
from lspipe.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize("compression", ["gzip", "none"])
def test_a_dump_past_a_file_size_limit_is_one_line_and_leaves_nothing(digits_npz, tmp_path, compression):
    """`ulimit -f` of 1 to 50 blocks: HDF5 met the refused writes while it flushed its metadata, printed
    dozens of ignored tracebacks and crashed (rc 139); now one line, status 2, no file left."""
    model = _model_path(tmp_path)
    assert _train(digits_npz, model, recipe={**RECIPE, "steps": 2}) == 0
    out = tmp_path / "out" / "d.h5"
    out.parent.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for limit in (1024, 8 * 1024, 50 * 1024, 200 * 1024):
        argv = [*_dump_argv(model, digits_npz, out), "--compression", compression]
        proc = subprocess.run([sys.executable, "-c", _LIMITED, str(limit), *argv], capture_output=True, text=True,
                              env=env, timeout=300)
        # the one line, after the progress records (lspipe.base.progress, off a terminal)
        err = [line for line in proc.stderr.strip().splitlines() if " INFO lspipe.progress: " not in line]
        assert proc.returncode == 2 and len(err) == 1, (limit, proc.returncode, proc.stderr[-3000:])
        assert err[0].startswith(f"lspipe dump-activations: error: cannot write {out}: File too large"), err
        assert list(out.parent.iterdir()) == []  # no dump, no temporary file


# --------------------------------------------------------------------------- in the workflow


def _copy(tiny_run, tmp_path) -> Path:
    work = tmp_path / "copy"
    shutil.copytree(tiny_run, work, symlinks=True, ignore=shutil.ignore_patterns("log", "slurm_logs", "conda"))
    assert planned_jobs(snakemake(work, "-n")) == {}
    return work


def _made_from_it(work: Path) -> dict[str, bytes]:
    """The files made (directly or not) from the teacher a0_s0: its dump, the students and the tables."""
    res = work / "results"
    files = [res / "dumps/digits/smallcnn/teacher/a0_s0.h5", res / "eval/digits/smallcnn/teacher/a0_s0.json",
             *sorted((res / "models/digits/mlp/student").glob("kd-*/model.pt")), *sorted((res / "tables").glob("*"))]
    assert len(files) > 8
    return {str(f): f.read_bytes() for f in files}


@pytest.mark.slow
def test_a_model_with_flipped_bits_stops_the_workflow_before_anything_is_touched(tiny_run, tmp_path):
    work = _copy(tiny_run, tmp_path)
    before = _made_from_it(work)
    rel = "results/models/digits/smallcnn/teacher/a0_s0/model.pt"
    flip_tensor_bytes(work / rel)
    line = f"cannot use model {rel}: it is damaged (checksum mismatch in its member"
    proc = snakemake(work, "-n")  # a dry run says so
    assert f"warning: {line}" in proc.stderr, proc.stderr[-3000:]
    proc = snakemake(work, "--cores", "1", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and line in out and f"rebuild it with `snakemake -f {rel}`" in out, out[-3000:]
    assert "Finished jobid" not in out and "Execute" not in out, out[-3000:]
    assert _made_from_it(work) == before
    # the fix it names: the forced rebuild runs (the model is retrained, whole)
    snakemake(work, "--cores", "1", "-f", rel)
    assert zipfile.ZipFile(work / rel).testzip() is None


@pytest.mark.slow
def test_a_model_of_another_recipe_is_never_used_downstream(tiny_run, tmp_path):
    work = _copy(tiny_run, tmp_path)
    before = _made_from_it(work)
    cfg = __import__("yaml").safe_load((work / "config.yaml").read_text())
    foreign = tmp_path / "elsewhere" / "results/models/digits/smallcnn/teacher/a0_s0/model.pt"
    assert cli.main(["train", "--data", str(work / "results/data/digits.npz"), "--arch", "smallcnn", "--recipe",
                     json.dumps({**cfg["recipes"]["tiny"], "steps": 8, "lr_milestones": [4]}), "--seed", "0", "--threads", "1",
                     "--no-progress", "--objectives", '[{"kind": "ls", "alpha": 0.0}]', "--runs", "a0_s0",
                     "--out", str(foreign), "--metrics", str(foreign.with_name("metrics.csv"))]) == 0
    shutil.copy(foreign, work / "results/models/digits/smallcnn/teacher/a0_s0/model.pt")
    proc = snakemake(work, "--cores", "1", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "recipe steps 8 where the config says 24" in out, out[-4000:]
    # nothing was made from it: the students it would teach are as before (or deleted by Snakemake before their
    # job refused it), and no table, evaluation or dump holds its numbers
    after = {f: Path(f).read_bytes() for f in before if Path(f).exists()}
    assert all(after[f] == before[f] for f in after), [f for f in after if after[f] != before[f]]
    assert all(after.get(f) == before[f] for f in before if "/tables/" in f)
