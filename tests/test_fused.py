"""Grid-fused training (lspipe.engine.fused): G models in one network behave exactly as G separate models.

References are the separate single models run through the ordinary code path
(``models.create`` / ``lspipe.engine.training.fit``), and ``F.cross_entropy`` / ``clip_grad_norm_``.
"""

from __future__ import annotations

import copy
import csv
import json

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml

from conftest import REPO, fit_one, one_loss, synthetic_data
from lspipe import cli
from lspipe.base.errors import ConfigError
from lspipe.core import data as D
from lspipe.core import models as M
from lspipe.core.losses import Objective
from lspipe.core.models import build_model, load_model
from lspipe.core.recipe import Recipe
from lspipe.engine.fused import FusedClassifier, FuseError, fuse
from lspipe.engine.training import fit, train_group
from lspipe.workflow.plan import validate

ALPHAS = [0.0, 0.1, 0.3]


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Every test here runs with one torch thread (conftest's one_torch_thread)."""


def members(arch, data, seeds, dtype=torch.float32):
    out = []
    for s in seeds:
        torch.manual_seed(s)
        out.append(build_model(arch, data).to(dtype))
    return out


@pytest.mark.parametrize("arch,channels", [("resnet8", 3), ("alexnet", 3), ("smallcnn", 1), ("mlp", 1)])
def test_fused_forward_equals_each_member(arch, channels):
    data = synthetic_data((256, 64, 64), channels=channels, classes=5)
    singles = members(arch, data, [0, 1, 2])
    fused = fuse(singles)
    # splitting gives back each member exactly, with the keys and shapes of a single model
    for i, m in enumerate(singles):
        state = fused.member_state_dict(i)
        ref = m.state_dict()
        assert list(state) == list(ref)
        for k in ref:
            assert state[k].shape == ref[k].shape and torch.equal(state[k], ref[k]), k
    assert len(fused.dense_parameters()) == len(singles[0].dense_parameters())
    x = torch.from_numpy(data.x["val"][:7])
    for train in (False, True):  # eval: running statistics; train: per-member batch statistics
        for m in [fused, *singles]:
            m.train(train)
        logits, feats = fused(x, features=True)
        ref = [m(x, features=True) for m in singles]
        assert logits.shape == (7, 3, 5)
        torch.testing.assert_close(logits, torch.stack([r[0] for r in ref], 1), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(feats, torch.stack([r[1] for r in ref], 1), atol=1e-5, rtol=1e-5)
    for i, m in enumerate(singles):  # BatchNorm's running statistics were updated per member
        for k, v in m.state_dict().items():
            torch.testing.assert_close(fused.member_state_dict(i)[k], v, atol=1e-6, rtol=1e-5)


def test_lrn_does_not_mix_members():
    """AlexNet's LRN normalises across neighbouring channels: member 1's output must not depend
    on member 0's weights."""
    data = synthetic_data((256, 64, 64), channels=3, classes=5)
    a, b = members("alexnet", data, [0, 1])
    x = torch.from_numpy(data.x["val"][:4])
    out = fuse([a, b]).eval()(x)[:, 1]
    with torch.no_grad():
        for p in a.parameters():
            p.mul_(10.0)
    torch.testing.assert_close(fuse([a, b]).eval()(x)[:, 1], out)


def LS(alphas):
    return Objective([{"kind": "ls", "alpha": a} for a in alphas])


def test_group_objective_is_each_members_label_smoothed_ce():
    torch.manual_seed(0)
    logits, labels, k = torch.randn(6, 3, 7), torch.tensor([0, 3, 6, 2, 2, 1]), 7
    loss = LS(ALPHAS)(logits, labels)
    assert loss.shape == (3,)
    for g, a in enumerate(ALPHAS):
        target = np.full((6, k), a / k)
        target[np.arange(6), labels.numpy()] += 1 - a
        by_hand = -(target * torch.log_softmax(logits[:, g].double(), 1).numpy()).sum(1).mean()
        assert float(loss[g]) == pytest.approx(by_hand, rel=1e-6)
    with pytest.raises(ConfigError, match=r"objectives\[1\]\.alpha"):
        LS([0.1, 1.0])


def test_gradient_clipping_is_per_member():
    data = synthetic_data((256, 64, 64), channels=3, classes=5)
    singles = members("resnet8", data, [0, 1, 2])
    fused = fuse(singles)
    x, y = torch.from_numpy(data.x["train"][:16]), torch.from_numpy(data.y["train"][:16])
    scale = torch.tensor([0.01, 1.0, 100.0])  # so that one member is clipped hard and one not at all
    (LS(ALPHAS)(fused(x), y) * scale).sum().backward()
    norms_ref = []
    for m, a, s in zip(singles, ALPHAS, scale):
        (one_loss({"kind": "ls", "alpha": a}, m(x), y) * s).backward()
        norms_ref.append(float(torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)))
    assert norms_ref[0] < 1.0 < norms_ref[2]
    norms = fused.clip_grad_norm_(1.0)
    np.testing.assert_allclose(norms.numpy(), norms_ref, rtol=1e-4)
    for i, m in enumerate(singles):
        for name, p in fused.named_parameters():
            grad_i = fused._member_view(name, p.grad)[i]
            torch.testing.assert_close(grad_i, m.get_parameter(name).grad, rtol=1e-4, atol=1e-7)


def _separate_and_fused(arch, data, recipe, dtype, tmp_path):
    singles = members(arch, data, [0] * len(ALPHAS), dtype)
    fused = fuse(singles)
    fsum = fit(fused, data, recipe, LS(ALPHAS), seed=0, checkpoint_path=tmp_path / "f.ckpt",
               metrics_paths=[tmp_path / f"f{i}.csv" for i in range(len(ALPHAS))], progress=False)
    sums = []
    for i, (m, a) in enumerate(zip(singles, ALPHAS)):
        sums.append(fit_one(m, data, recipe, {"kind": "ls", "alpha": a}, seed=0, checkpoint_path=tmp_path / f"s{i}.ckpt",
                            metrics_path=tmp_path / f"s{i}.csv", progress=False))
    return singles, fused, sums, fsum


def _rows(path):
    return [{k: float(v) for k, v in r.items() if k != "seconds"} for r in csv.DictReader(open(path))]


@pytest.mark.parametrize("arch,channels", [("smallcnn", 1), ("resnet8", 3)])
def test_fused_training_equals_separate_runs(arch, channels, tmp_path):
    """Same seed, three alphas, clipping (per member) and dense weight decay active: fit() on the fused
    model equals three separate fit() runs. In float64 the only differences are float32 rounding in
    the loss, so the tolerance can be tight."""
    data = synthetic_data((256, 64, 64), channels=channels, classes=5)
    recipe = Recipe.from_dict({"steps": 14, "batch_size": 32, "lr": 0.05, "lr_milestones": [10], "grad_clip": 0.1,
                               "dense_weight_decay": 0.01, "augment": {"pad": 1, "flip": True}})
    singles, fused, sums, fsum = _separate_and_fused(arch, data, recipe, torch.float64, tmp_path)
    for i, m in enumerate(singles):
        state, ref = fused.member_state_dict(i), m.state_dict()
        for k in ref:
            torch.testing.assert_close(state[k], ref[k], atol=1e-7, rtol=1e-6, msg=f"member {i} {k}")
        rows, ref_rows = _rows(tmp_path / f"f{i}.csv"), _rows(tmp_path / f"s{i}.csv")
        assert len(rows) == len(ref_rows) == 2  # 256 // 32 = 8 steps per epoch
        for r, q in zip(rows, ref_rows):
            assert r == pytest.approx(q, rel=1e-6)
        assert fsum["final"][i]["val_acc"] == sums[i]["final"]["val_acc"]
    # the members really differ (different alphas), so equality above is not trivial
    assert not torch.allclose(fused.member_state_dict(0)["classifier.weight"], fused.member_state_dict(2)["classifier.weight"])


def test_train_group_fused_float32(tmp_path):
    """The production path in float32: train_group(fuse=True) equals separate runs within 1e-5."""
    data = synthetic_data((256, 64, 64), channels=1, classes=5)
    recipe = Recipe.from_dict({"steps": 12, "batch_size": 32, "lr": 0.05, "grad_clip": 0.5,
                               "augment": {"pad": 1, "flip": True}})
    alphas = [0.0, 0.2, 0.1]
    trained, summary = train_group("smallcnn", data, recipe, LS(alphas), seed=0, fuse=True,
                                   checkpoint_path=tmp_path / "f.ckpt",
                                   metrics_paths=[tmp_path / f"f{i}.csv" for i in range(3)], progress=False)
    assert [type(m) for m in trained] == [M.Classifier] * 3 and summary["steps"] == 12
    for i, a in enumerate(alphas):
        torch.manual_seed(0)
        ref = build_model("smallcnn", data)
        fit_one(ref, data, recipe, {"kind": "ls", "alpha": a}, seed=0, checkpoint_path=tmp_path / f"s{i}.ckpt",
                metrics_path=tmp_path / f"s{i}.csv", progress=False)
        for k, v in ref.state_dict().items():
            torch.testing.assert_close(trained[i].state_dict()[k], v, atol=1e-5, rtol=1e-4, msg=f"member {i} {k}")
        for r, q in zip(_rows(tmp_path / f"f{i}.csv"), _rows(tmp_path / f"s{i}.csv"), strict=True):
            assert r == pytest.approx(q, rel=1e-5)


def test_train_fused_cli_writes_ordinary_checkpoints_and_resumes(tmp_path):
    data_path = tmp_path / "digits.npz"
    D.prepare("digits", "digits", data_path, val_size=0.2, test_size=0.25)
    recipe = json.dumps({"steps": 20, "batch_size": 64, "lr": 0.05, "grad_clip": 1.0,
                         "augment": {"pad": 1, "flip": False}})

    def run(where, *extra):
        outs = [str(where / f"a{a}_s3" / "model.pt") for a in (0, 0.3)]
        mets = [str(where / f"a{a}_s3" / "metrics.csv") for a in (0, 0.3)]
        argv = ["train-fused", "--data", str(data_path), "--arch", "smallcnn", "--recipe", recipe, "--seed", "3",
                "--objectives", '[{"kind": "ls", "alpha": 0}, {"kind": "ls", "alpha": 0.3}]', "--fuse",
                "--out", *outs, "--metrics", *mets, "--device", "cpu", "--threads", "1", "--no-progress", *extra]
        return cli.main(argv), outs, mets

    assert run(tmp_path / "resumed", "--stop-after-epochs", "1")[0] == 3  # stopped, resumable (one line)
    assert (tmp_path / "resumed" / "a0_s3" / "model.pt.ckpt").exists()
    rc, outs, mets = run(tmp_path / "resumed")
    assert rc == 0 and not (tmp_path / "resumed" / "a0_s3" / "model.pt.ckpt").exists()
    _, ref_outs, ref_mets = run(tmp_path / "straight")
    data = D.load(data_path)
    for i, alpha in enumerate((0.0, 0.3)):
        model, meta = load_model(outs[i])  # an ordinary checkpoint
        ref, _ = load_model(ref_outs[i])
        assert list(model.state_dict()) == list(M.create("smallcnn", 10, 1, 8).state_dict())
        assert meta["alpha"] == alpha and meta["seed"] == 3 and meta["run"] == f"a{alpha:g}_s3"
        assert meta["arch"] == "smallcnn" and meta["role"] == "teacher"
        assert meta["lockstep"] == {"runs": ["a0_s3", "a0.3_s3"], "fused": True}
        assert meta["objective"] == {"kind": "ls", "alpha": alpha}
        assert meta["summary"]["steps"] == 20 and meta["summary"]["final"]["step"] == 20
        for k, v in ref.state_dict().items():  # resumed after an interruption == uninterrupted
            assert torch.equal(model.state_dict()[k], v), k
        assert _rows(mets[i]) == _rows(ref_mets[i]) and len(_rows(mets[i])) == 2
    # and a member equals the single run `lspipe train` makes of it (CLI to CLI)
    single = tmp_path / "single" / "model.pt"
    assert cli.main(["train", "--data", str(data_path), "--arch", "smallcnn", "--recipe", recipe, "--seed", "3",
                     "--objectives", '[{"kind": "ls", "alpha": 0.3}]', "--out", str(single), "--metrics", str(single.with_name("metrics.csv")),
                     "--device", "cpu", "--threads", "1", "--no-progress"]) == 0
    ref, _ = load_model(single)
    member, _ = load_model(outs[1])
    for k, v in ref.state_dict().items():
        torch.testing.assert_close(member.state_dict()[k], v, atol=1e-5, rtol=1e-4, msg=k)
    x = data.x["test"][:100]
    assert torch.equal(ref(torch.from_numpy(x)).argmax(1), member(torch.from_numpy(x)).argmax(1))


def test_what_cannot_be_fused_is_refused():
    data = synthetic_data((256, 64, 64), channels=1, classes=5)
    odd = M.Classifier(nn.Sequential(nn.Flatten(), nn.Dropout(0.1), nn.Linear(64, 8)), 8, 5, [0.5], [0.25])
    with pytest.raises(FuseError, match="Dropout"):
        FusedClassifier(odd, 2)
    with pytest.raises(FuseError, match="another architecture"):
        fuse([build_model("smallcnn", data), build_model("mlp", data)])
    with pytest.raises(FuseError, match="nothing"):
        fuse([])


def _tiny_config():
    cfg = yaml.safe_load((REPO / "tests" / "tiny.yaml").read_text())
    return cfg


def test_config_fuse_key_with_and_without_a_probe():
    cfg = _tiny_config()
    assert validate(copy.deepcopy(cfg))["teachers"][0]["fuse"] is False
    probed = copy.deepcopy(cfg)
    probed["teachers"][0]["fuse"] = True  # tiny.yaml's grid records a probe: every fused member records it
    assert validate(probed)["teachers"][0]["fuse"] is True
    ok = copy.deepcopy(cfg)
    ok["teachers"][0].update(fuse=True, probe=None)
    assert validate(ok)["teachers"][0]["fuse"] is True
