"""lspipe analyse-model (rule analyse_model): one model's dump, evaluation and calibration in one job,
the very files the three sub-commands dump-activations, evaluate and calibrate write one after the other."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

from lspipe import cli

pytestmark = pytest.mark.slow

MODEL = ("digits", "smallcnn", "teacher", "a0.3_s0")


def _h5(path) -> dict:
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
        out["attrs"] = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
    return out


def test_analyse_model_writes_what_the_three_commands_write(tiny_run, tmp_path, monkeypatch):
    """The workflow's analyse_model files of a model equal, value for value, those of dump-activations,
    evaluate and calibrate run one by one on the same model (the calibration records the dump's path)."""
    d, a, role, run = MODEL
    res = tiny_run / "results"
    made = {"dump": res / "dumps" / d / a / role / f"{run}.h5", "eval": res / "eval" / d / a / role / f"{run}.json",
            "calibration": res / "calibration" / d / a / role / f"{run}.json"}
    assert all(p.is_file() for p in made.values()), made
    monkeypatch.chdir(tiny_run)  # the workflow's relative paths (the calibration JSON records the dump's)
    dump = tmp_path / "dump.h5"
    model, data = f"results/models/{d}/{a}/{role}/{run}/model.pt", "results/data/digits.npz"
    assert cli.main(["dump-activations", "--model", model, "--data", data, "--out", str(dump), "--threads", "1",
                     "--max-train", "300"]) == 0
    assert cli.main(["evaluate", "--dump", str(dump), "--out", str(tmp_path / "e.json")]) == 0
    assert cli.main(["calibrate", "--dump", str(dump), "--out", str(tmp_path / "c.json")]) == 0

    ours, theirs = _h5(made["dump"]), _h5(dump)
    assert ours.keys() == theirs.keys() and len(ours) > 10
    for k in ours:
        if k != "attrs":
            np.testing.assert_array_equal(ours[k], theirs[k], err_msg=k)
    assert ours["attrs"] == theirs["attrs"]
    assert json.loads(made["eval"].read_text()) == json.loads((tmp_path / "e.json").read_text())
    cal = json.loads((tmp_path / "c.json").read_text())
    assert cal.pop("dump") == str(dump)
    expected = json.loads(made["calibration"].read_text())
    assert expected.pop("dump") == str(made["dump"].relative_to(tiny_run)) and cal == expected


def test_analyse_model_fails_without_leaving_its_outputs(tiny_run, tmp_path):
    """A model that cannot be read: exit status 2, one line naming it, and none of the three files."""
    model = tmp_path / "models" / "digits" / "mlp" / "teacher" / "a0_s0" / "model.pt"
    model.parent.mkdir(parents=True)
    model.write_bytes(b"not a model")
    outs = [tmp_path / n for n in ("d.h5", "e.json", "c.json")]
    path = f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ.get('PATH', '')}"
    proc = subprocess.run(["lspipe", "analyse-model", "--model", str(model), "--data", str(tiny_run / "results/data/digits.npz"),
                           "--out", str(outs[0]), "--eval-out", str(outs[1]), "--calibration-out", str(outs[2])],
                          capture_output=True, text=True, env={**os.environ, "PATH": path})
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith("lspipe analyse-model: error:") and str(model) in proc.stderr
    assert not any(p.exists() for p in outs)
