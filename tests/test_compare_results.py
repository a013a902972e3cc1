"""benchmarks/compare_results.py: two results folders compare equal up to wall time, and every other
change of a number is found."""

from __future__ import annotations

import importlib.util
import json
import shutil

import h5py
import numpy as np
import pytest
import torch
from conftest import REPO

spec = importlib.util.spec_from_file_location("compare_results", REPO / "benchmarks" / "compare_results.py")
cr = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cr)


def _results(root, seconds=1.0, weight=0.5, logit=0.25, nll=0.125):
    (root / "eval").mkdir(parents=True)
    (root / "eval" / "m.json").write_text(json.dumps({"test": {"nll": nll, "accuracy": 0.5}, "seconds": seconds}))
    (root / "metrics.csv").write_text(f"epoch,val_loss,seconds\n1,{nll!r},{seconds!r}\n")
    with h5py.File(root / "dump.h5", "w") as f:
        f.attrs["meta"] = json.dumps({"summary": {"seconds": seconds, "steps": 3}})
        f.attrs["sha256"] = f"{seconds}"  # hashes a model file, which records its training time
        f["val/logits"] = np.full((2, 3), logit, dtype=np.float32)
    torch.save({"state_dict": {"w": torch.full((2,), weight)}, "meta": {"summary": {"seconds": seconds}}},
               root / "model.pt")
    (root / "t.md").write_text(f"| run | train time (s) | test NLL |\n|---|---|---|\n| a | {seconds} | {nll} |\n")
    (root / "logs").mkdir()
    (root / "logs" / "x.log").write_text(str(seconds))
    return root


def test_identical_up_to_wall_time(tmp_path):
    a, b = _results(tmp_path / "a"), _results(tmp_path / "b", seconds=7.5)
    diffs, counts = cr.compare(a, b)
    assert diffs == {} and counts == {".json": 1, ".csv": 1, ".h5": 1, ".pt": 1, ".md": 1}
    assert cr.main([str(a), str(b)]) == 0


@pytest.mark.parametrize("change, where", [
    ({"weight": 0.5000001}, "model.pt"), ({"logit": 0.2500001}, "dump.h5"), ({"nll": 0.1250001}, "eval/m.json"),
])
def test_every_other_change_is_found(tmp_path, change, where):
    a, b = _results(tmp_path / "a"), _results(tmp_path / "b", **change)
    diffs, _ = cr.compare(a, b)
    assert where in diffs, diffs
    if "nll" in change:  # the CSV and the Markdown hold it too
        assert {"metrics.csv", "t.md"} <= set(diffs)
    assert cr.main([str(a), str(b)]) == 1


def test_a_file_on_one_side_only_differs(tmp_path):
    a, b = _results(tmp_path / "a"), _results(tmp_path / "b")
    shutil.copy(a / "eval" / "m.json", a / "eval" / "n.json")
    diffs, _ = cr.compare(a, b)
    assert diffs == {"eval/n.json": ["only in A"]}
