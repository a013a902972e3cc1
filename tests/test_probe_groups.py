"""The mutual-information probe inside a group (issue 28): every member of a lockstep group
(``Members``) or of a fused grid (``FusedClassifier``) gets its own probe trace, computed from the
group's logits, and it is the trace the same model writes in a probed run of its own — bit for bit
for lockstep members, within the fused network's rounding (grouped kernels) for fused ones.

References are single probed runs through the ordinary path (``train_group`` of one member, as
``lspipe train`` runs every single teacher), on the tests' synthetic data, CPU, float32.
"""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

from conftest import synthetic_data
from lspipe import cli
from lspipe.base.errors import DataError
from lspipe.core.losses import Objective
from lspipe.core.models import build_model
from lspipe.core.recipe import Recipe
from lspipe.engine import complete
from lspipe.engine.probe import ProbeRecorder
from lspipe.engine.probefile import ProbeTrace
from lspipe.engine.training import Interrupted, Members, train_group
from lspipe.experiments.mi import mi_curve

ALPHAS = [0.0, 0.1, 0.3]
SEED = 3
RECIPE = {"steps": 12, "batch_size": 32, "lr": 0.05, "grad_clip": 0.5, "augment": {"pad": 1, "flip": True},
          "checkpoint_every": 2}
PROBE = {"classes": ["zero", "two"], "per_class": 6, "copies": 3, "every": 2, "seed": 5}


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Every test here runs with one torch thread (conftest's one_torch_thread)."""


def _data(channels=1):
    return synthetic_data(signal=40, channels=channels, class_names=["zero", "one", "two"], index_offset=1000,
                          name="syn")


def _train(where, data, alphas, *, fuse=False, arch="smallcnn", members=None, **kw):
    """``train_group`` of ``alphas`` with the probe on (every member, or ``members``); the probe traces."""
    recipe = Recipe.from_dict(RECIPE)
    recorded = list(range(len(alphas))) if members is None else members
    paths = [where / f"m{i}" / "probe.h5" for i in recorded]
    rec = ProbeRecorder(paths, data, members=members, device="cpu", recipe=recipe, **PROBE)
    models, _ = train_group(arch, data, recipe, Objective([{"kind": "ls", "alpha": a} for a in alphas]), seed=SEED,
                            fuse=fuse, checkpoint_path=where / "group.ckpt", callbacks=[rec], progress=False,
                            metrics_paths=[where / f"m{i}.csv" for i in range(len(alphas))], **kw)
    return models, paths


def _single_traces(tmp_path, data, arch="smallcnn"):
    """Each alpha's probed run of its own (a group of one member)."""
    out = []
    for a in ALPHAS:
        _, (path,) = _train(tmp_path / f"single{a}", data, [a], arch=arch)
        out.append(ProbeTrace(path))
    return out


def test_lockstep_members_traces_equal_their_single_runs_bit_for_bit(tmp_path):
    data = _data()
    singles = _single_traces(tmp_path, data)
    _, paths = _train(tmp_path / "group", data, ALPHAS, fuse=False)
    for ref, path in zip(singles, paths, strict=True):
        tr = ProbeTrace(path)
        assert tr.complete and tr.steps.tolist() == ref.steps.tolist() == [0, 2, 4, 6, 8, 10, 12]
        assert np.array_equal(tr.logits, ref.logits) and np.array_equal(tr.logits_repeat, ref.logits_repeat)
        assert np.array_equal(tr.index, ref.index) and np.array_equal(tr.labels, ref.labels)
        with h5py.File(path) as f, h5py.File(ref.path) as g:
            assert f.attrs.keys() == g.attrs.keys()
            assert all(np.array_equal(f.attrs[k], g.attrs[k]) for k in f.attrs)
    # the members differ (different alphas), so the equalities are not trivial
    assert not np.allclose(singles[0].logits[-1], singles[2].logits[-1])


@pytest.mark.parametrize("arch,channels", [("smallcnn", 1), ("resnet8", 3)])
def test_fused_members_traces_equal_their_single_runs_within_rounding(arch, channels, tmp_path):
    data = _data(channels)
    singles = _single_traces(tmp_path, data, arch)
    _, paths = _train(tmp_path / "fused", data, ALPHAS, fuse=True, arch=arch)
    for ref, path in zip(singles, paths, strict=True):
        tr = ProbeTrace(path)
        assert tr.complete and tr.steps.tolist() == ref.steps.tolist()
        assert tr.logits.shape == ref.logits.shape == (7, 12, 3, 3)
        # step 0: the members' initial weights, exactly their single runs': only the grouped kernels' rounding
        # (measured: at most 1.5e-8 on logits of size ~2); later records add training's float32 rounding
        # (measured: at most 7.2e-7 after 12 steps)
        np.testing.assert_allclose(tr.logits[0], ref.logits[0], rtol=0, atol=1e-6)
        np.testing.assert_allclose(tr.logits, ref.logits, rtol=0, atol=5e-6)
        np.testing.assert_allclose(tr.logits_repeat, ref.logits_repeat, rtol=0, atol=5e-6)
        assert np.array_equal(tr.index, ref.index)
        # and so the Fig. 6 curve: I(X; Y) at every record
        for r, q in zip(mi_curve(tr), mi_curve(ref), strict=True):
            assert r["step"] == q["step"] and r["mi"] == pytest.approx(q["mi"], rel=1e-4, abs=1e-6)
    assert not np.allclose(singles[0].logits[-1], singles[2].logits[-1], atol=1e-3)


def test_a_named_member_is_recorded_alone(tmp_path):
    data = _data()
    _, every = _train(tmp_path / "all", data, ALPHAS, fuse=True)
    _, (one,) = _train(tmp_path / "one", data, ALPHAS, fuse=True, members=[1])
    a, b = ProbeTrace(every[1]), ProbeTrace(one)
    assert np.array_equal(a.logits, b.logits) and np.array_equal(a.logits_repeat, b.logits_repeat)
    assert not (tmp_path / "one" / "m0").exists()


def test_fused_probe_resumes_to_the_uninterrupted_traces(tmp_path):
    data = _data()
    _, whole = _train(tmp_path / "whole", data, ALPHAS, fuse=True)
    with pytest.raises(Interrupted):  # 3 steps per epoch: a record at step 8 newer than the checkpoint (step 6)
        _train(tmp_path / "parts", data, ALPHAS, fuse=True, stop_after_epochs=3)
    for i in range(len(ALPHAS)):
        with h5py.File(tmp_path / "parts" / f"m{i}" / "probe.h5.partial") as f:
            assert f["steps"][()].tolist() == [0, 2, 4, 6, 8]
    _, parts = _train(tmp_path / "parts", data, ALPHAS, fuse=True)
    for p, q in zip(whole, parts, strict=True):
        a, b = ProbeTrace(p), ProbeTrace(q)
        assert b.steps.tolist() == a.steps.tolist() == [0, 2, 4, 6, 8, 10, 12]
        assert np.array_equal(a.logits, b.logits) and np.array_equal(a.logits_repeat, b.logits_repeat)


def test_outputs_must_match_the_group():
    data = _data()
    recipe = Recipe.from_dict(RECIPE)
    torch.manual_seed(0)
    group = Members([build_model("smallcnn", data) for _ in range(3)])
    with pytest.raises(ValueError, match="2 probe output.*3 members"):
        ProbeRecorder(["a.h5", "b.h5"], data, recipe=recipe, **PROBE).on_start(group, 0)
    with pytest.raises(ValueError, match="members \\[3\\].*has 3"):
        ProbeRecorder(["a.h5"], data, members=[3], recipe=recipe, **PROBE).on_start(group, 0)
    with pytest.raises(ValueError, match="one probe output per recorded member"):
        ProbeRecorder(["a.h5", "b.h5"], data, members=[1], recipe=recipe, **PROBE)


def test_cli_fused_probe_writes_every_members_trace_and_records_it(tmp_path, capsys):
    """`lspipe train --fuse --probe`: each member's probe.h5 beside its model.pt, in its completed-run
    record, restored with it; without --probe, --probe-out gets one placeholder per member."""
    from lspipe.core import data as D

    data_path = tmp_path / "digits.npz"
    D.prepare("digits", "digits", data_path, val_size=0.2, test_size=0.25)
    recipe = json.dumps({"steps": 6, "batch_size": 64, "lr": 0.05, "augment": {"pad": 1, "flip": False}})
    runs = ["a0_s1", "a0.2_s1"]
    probe = json.dumps({"classes": ["0", "1"], "per_class": 4, "copies": 2, "every": 3})

    def argv(root):
        return ["train", "--data", str(data_path), "--arch", "smallcnn", "--recipe", recipe, "--seed", "1",
                "--objectives", '[{"kind": "ls", "alpha": 0}, {"kind": "ls", "alpha": 0.2}]', "--fuse",
                "--out", *[str(root / r / "model.pt") for r in runs],
                "--metrics", *[str(root / r / "metrics.csv") for r in runs],
                "--device", "cpu", "--threads", "1", "--no-progress"]

    assert cli.main([*argv(tmp_path), "--probe", probe]) == 0
    traces = [ProbeTrace(tmp_path / r / "probe.h5") for r in runs]
    assert all(t.complete and t.steps.tolist() == [0, 3, 6] for t in traces)
    assert not np.array_equal(traces[0].logits[-1], traces[1].logits[-1])
    for r in runs:
        assert "2-probe.h5" in {p.name for p in complete.record_dir(tmp_path / r / "model.pt").iterdir()}
    # Snakemake lost the job: a rerun restores every output, the traces included, without training
    for r in runs:
        (tmp_path / r / "probe.h5").unlink()
    assert cli.main([*argv(tmp_path), "--probe", probe]) == 0
    assert "not retrained" in capsys.readouterr().err
    for r, t in zip(runs, traces):
        assert np.array_equal(ProbeTrace(tmp_path / r / "probe.h5").logits, t.logits)
    assert cli.main([*argv(tmp_path / "bad"), "--probe", probe, "--probe-out", str(tmp_path / "only.h5")]) != 0
    assert "--probe-out needs one value per objective (2), got 1" in capsys.readouterr().err
    # no probe: a placeholder where each --probe-out says
    places = [str(tmp_path / "plain" / r / "placeholder.h5") for r in runs]
    assert cli.main([*argv(tmp_path / "plain"), "--probe-out", *places]) == 0
    for p in places:
        with pytest.raises(DataError, match="placeholder"):
            ProbeTrace(p)
