"""The training engine: schedule, objective, determinism and exact resume after interruption."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lspipe.core import data as D
from lspipe.core.inference import predict
from lspipe.core.models import build_model, load_model, model_spec, save_model
from lspipe.core.recipe import Recipe
from conftest import fit_one, one_loss
from lspipe.engine.training import Interrupted


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return D.prepare("digits", "digits", tmp_path_factory.mktemp("d") / "digits.npz", val_size=0.2, test_size=0.25)


RECIPE = {"steps": 40, "batch_size": 64, "lr": 0.05, "lr_milestones": [20, 30], "grad_clip": 1.0,
          "augment": {"pad": 1, "flip": False}, "checkpoint_every": 1}


def _train(digits, tmp, alpha=0.1, seed=0, stop_after_epochs=None, recipe=RECIPE):
    torch.manual_seed(seed)
    model = build_model("smallcnn", digits)
    summary = fit_one(model, digits, Recipe.from_dict(recipe), {"kind": "ls", "alpha": alpha}, seed=seed,
                      checkpoint_path=tmp / "m.ckpt", metrics_path=tmp / "metrics.csv", run_fingerprint="fp",
                  progress=False, stop_after_epochs=stop_after_epochs)
    return model, summary


def test_lr_schedule_is_step_based():
    r = Recipe.from_dict({"steps": 100, "lr": 0.1, "lr_milestones": [50, 75], "warmup_steps": 10})
    assert r.lr_at(0) == pytest.approx(0.01) and r.lr_at(9) == pytest.approx(0.1)
    assert r.lr_at(49) == pytest.approx(0.1) and r.lr_at(50) == pytest.approx(0.01) and r.lr_at(99) == pytest.approx(0.001)
    with pytest.raises(ValueError, match="unknown recipe key"):
        Recipe.from_dict({"steps": 1, "learning_rate": 0.1})


def _torch_schedule(make, steps, lr):
    """The learning rate torch's scheduler gives each of ``steps`` optimiser steps."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    sched, out = make(opt), []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return np.array(out)


def test_cosine_schedule_against_its_formula_and_torch():
    steps, lr = 97, 0.2
    r = Recipe.from_dict({"steps": steps, "lr": lr, "schedule": "cosine"})
    got = np.array([r.lr_at(s) for s in range(steps)])
    np.testing.assert_allclose(got, [lr * (1 + np.cos(np.pi * s / steps)) / 2 for s in range(steps)], rtol=1e-12)
    ref = _torch_schedule(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=steps), steps, lr)
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-12)
    assert got[0] == lr and np.all(np.diff(got) < 0) and got[-1] < 1e-3 * lr
    warm = Recipe.from_dict({"steps": steps, "lr": lr, "schedule": "cosine", "warmup_steps": 5})
    assert warm.lr_at(1) == pytest.approx(got[1] * 2 / 5) and warm.lr_at(5) == got[5]


@pytest.mark.parametrize("steps,pct", [(100, 0.3), (37, 0.25)])
def test_onecycle_schedule_against_torch(steps, pct):
    lr = 0.4
    r = Recipe.from_dict({"steps": steps, "lr": lr, "schedule": "onecycle", "onecycle_pct_start": pct})
    got = np.array([r.lr_at(s) for s in range(steps)])
    ref = _torch_schedule(lambda o: torch.optim.lr_scheduler.OneCycleLR(
        o, max_lr=lr, total_steps=steps, pct_start=pct, anneal_strategy="cos", cycle_momentum=False), steps, lr)
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-12)
    assert got[0] == pytest.approx(lr / 25) and 0.99 * lr <= got.max() <= lr and got[-1] == pytest.approx(lr / 25 / 1e4)


def test_schedule_settings_that_do_not_fit_are_refused():
    with pytest.raises(ValueError, match="lr_milestones \\[5\\] only apply to schedule 'milestones'"):
        Recipe.from_dict({"steps": 10, "schedule": "cosine", "lr_milestones": [5]})
    with pytest.raises(ValueError, match="set warmup_steps: 0"):
        Recipe.from_dict({"steps": 10, "schedule": "onecycle", "warmup_steps": 2})
    with pytest.raises(ValueError, match="allowed: milestones, cosine, onecycle"):
        Recipe.from_dict({"steps": 10, "schedule": "linear"})


def test_smoothed_ce_matches_hand_computation():
    torch.manual_seed(0)
    logits, labels, k, alpha = torch.randn(5, 7), torch.tensor([0, 3, 6, 2, 2]), 7, 0.2
    target = np.full((5, k), alpha / k)
    target[np.arange(5), labels.numpy()] += 1 - alpha
    logp = torch.log_softmax(logits.double(), 1).numpy()
    expected = -(target * logp).sum(1).mean()
    assert float(one_loss({"kind": "ls", "alpha": alpha}, logits, labels)) == pytest.approx(expected, rel=1e-6)
    assert float(one_loss({"kind": "ls"}, logits, labels)) == pytest.approx(float(F.cross_entropy(logits, labels)))


def test_training_learns_and_writes_metrics(digits, tmp_path):
    model, summary = _train(digits, tmp_path)
    assert summary["steps"] == 40 and summary["final"]["val_acc"] > 0.3  # chance is 0.1
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == list(range(1, len(rows) + 1))
    assert int(rows[-1]["step"]) == 40
    assert set(rows[0]) == {"epoch", "step", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "seconds"}


def test_same_seed_same_weights_other_seed_differs(digits, tmp_path):
    a, _ = _train(digits, tmp_path / "a")
    b, _ = _train(digits, tmp_path / "b")
    c, _ = _train(digits, tmp_path / "c", seed=1)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    assert not torch.equal(a.classifier.weight, c.classifier.weight)


def test_interrupted_and_resumed_equals_uninterrupted(digits, tmp_path):
    ref, ref_summary = _train(digits, tmp_path / "ref")
    work = tmp_path / "resumed"
    with pytest.raises(Interrupted):
        _train(digits, work, stop_after_epochs=1)
    assert (work / "m.ckpt").exists()
    with pytest.raises(Interrupted):
        _train(digits, work, stop_after_epochs=1)  # a second interruption, resumed again
    model, summary = _train(digits, work)
    for k, v in ref.state_dict().items():
        assert torch.equal(v, model.state_dict()[k]), k
    ref_rows = list(csv.DictReader(open(tmp_path / "ref" / "metrics.csv")))
    rows = list(csv.DictReader(open(work / "metrics.csv")))
    strip = lambda rs: [{k: v for k, v in r.items() if k != "seconds"} for r in rs]  # noqa: E731
    assert strip(rows) == strip(ref_rows)


def test_checkpoint_of_other_settings_is_not_resumed(digits, tmp_path):
    with pytest.raises(Interrupted):
        _train(digits, tmp_path, stop_after_epochs=1)
    torch.manual_seed(0)
    model = build_model("smallcnn", digits)
    summary = fit_one(model, digits, Recipe.from_dict(RECIPE), {"kind": "ls", "alpha": 0.1}, seed=0,
                      checkpoint_path=tmp_path / "m.ckpt", metrics_path=tmp_path / "metrics.csv",
                  run_fingerprint="other settings", progress=False)
    assert summary["epochs"] == len(list(csv.DictReader(open(tmp_path / "metrics.csv"))))
    ref, _ = _train(digits, tmp_path / "ref")
    assert torch.equal(ref.classifier.weight, model.classifier.weight)


def test_saved_model_round_trip(digits, tmp_path):
    model, _ = _train(digits, tmp_path)
    save_model(tmp_path / "model.pt", model, model_spec("smallcnn", digits), {"alpha": 0.1})
    loaded, meta = load_model(tmp_path / "model.pt")
    assert meta == {"alpha": 0.1}
    x = digits.x["test"][:50]
    torch.testing.assert_close(predict(loaded, x, "cpu"), predict(model, x, "cpu"))


def test_batch_larger_than_data_is_a_clear_error(digits, tmp_path):
    with pytest.raises(ValueError, match="batch_size"):
        _train(digits, tmp_path, recipe={**RECIPE, "batch_size": 100000})
