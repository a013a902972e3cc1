"""Training objectives against direct numpy computations: label-smoothed targets, smoothed
cross-entropy and the distillation loss in its three forms (`teacher`, the slides' `slides`,
Hinton's T^2 `hinton`), and the teacher's treatment inside the real training loop (eval mode, the
student's exact augmented batch)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from conftest import fit_one, one_loss, synthetic_data
from lspipe.base.errors import ConfigError
from lspipe.core import losses
from lspipe.core.losses import Objective, distillation_loss, smoothed_targets
from lspipe.core.models import build_model
from lspipe.core.recipe import Recipe


def np_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


# --------------------------------------------------------------------------- smoothed targets


def test_smoothed_targets_hand_computed():
    t = smoothed_targets(torch.tensor([0, 2, 1]), 3, 0.3).numpy()
    expected = np.array([[0.8, 0.1, 0.1], [0.1, 0.1, 0.8], [0.1, 0.8, 0.1]])
    np.testing.assert_allclose(t, expected, atol=1e-7)


def test_smoothed_targets_alpha_zero_is_one_hot():
    labels = torch.tensor([3, 0, 9, 9])
    t = smoothed_targets(labels, 10, 0.0).numpy()
    expected = np.zeros((4, 10))
    expected[np.arange(4), labels.numpy()] = 1.0
    np.testing.assert_array_equal(t, expected)


def test_smoothed_targets_k100_puts_alpha_over_k_on_every_class():
    labels = torch.tensor([0, 57, 99])
    t = smoothed_targets(labels, 100, 0.1).numpy().astype(np.float64)
    assert t.shape == (3, 100)
    # true class: 1 - alpha + alpha/K = 0.901; every other class alpha/K = 0.001 (not alpha/(K-1))
    np.testing.assert_allclose(t[np.arange(3), labels.numpy()], 0.901, rtol=1e-6)
    off = np.ones_like(t, dtype=bool)
    off[np.arange(3), labels.numpy()] = False
    np.testing.assert_allclose(t[off], 0.001, rtol=1e-5)
    np.testing.assert_allclose(t.sum(1), 1.0, rtol=1e-6)


def test_smoothed_ce_k100_matches_numpy():
    rng = np.random.default_rng(1)
    logits, labels, alpha = rng.normal(size=(6, 100)) * 3, rng.integers(0, 100, 6), 0.1
    target = np.full((6, 100), alpha / 100)
    target[np.arange(6), labels] += 1 - alpha
    expected = -(target * np.log(np_softmax(logits))).sum(1).mean()
    got = one_loss({"kind": "ls", "alpha": alpha}, torch.tensor(logits, dtype=torch.float32), torch.tensor(labels))
    assert float(got) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ConfigError, match=r"objectives\[0\]\.alpha must be a number in \[0, 1\)"):
        Objective([{"kind": "ls", "alpha": 1.0}])


# --------------------------------------------------------------------------- distillation loss


# the three forms written out from softmax probabilities: (student temperature, soft-term scale)
FORM_REFERENCE = {"teacher": lambda T: (1.0, 1.0), "slides": lambda T: (T, 1.0), "hinton": lambda T: (T, T**2)}


def _reference(student, teacher, labels, T, beta, form):
    """(1 - beta) H(y, softmax(s)) + beta * scale * H(softmax(t / T), softmax(s / T_s)) in numpy."""
    pt = np_softmax(teacher / T)
    ts, scale = FORM_REFERENCE[form](T)
    soft = -(pt * np.log(np_softmax(student / ts))).sum(1).mean()
    hard = -np.log(np_softmax(student)[np.arange(len(labels)), labels]).mean()
    return (1 - beta) * hard + beta * scale * soft


@pytest.mark.parametrize("T", [1.0, 2.5, 50.0])
@pytest.mark.parametrize("beta", [1.0, 0.3])
@pytest.mark.parametrize("form", ["teacher", "slides", "hinton"])
def test_distillation_loss_matches_numpy(T, beta, form):
    rng = np.random.default_rng(int(T * 10) + int(beta * 7) + len(form))
    s, t = rng.normal(size=(8, 10)) * 4, rng.normal(size=(8, 10)) * 4
    y = rng.integers(0, 10, 8)
    pt = torch.tensor(np_softmax(t / T), dtype=torch.float32)
    got = distillation_loss(torch.tensor(s, dtype=torch.float32), torch.tensor(y), pt, T, beta, form)
    assert float(got) == pytest.approx(_reference(s, t, y, T, beta, form), rel=1e-5)


def test_distillation_forms_by_hand_and_their_relations():
    """Two examples, three classes, T = 2, written out term by term; hinton = T^2 x slides; at T = 1
    the three forms coincide; the default is "teacher"; an unknown form is refused."""
    T = 2.0
    zs = np.array([[1.0, 0.0, -1.0], [0.5, 2.0, 0.0]])
    zt = np.array([[3.0, 1.0, 0.0], [0.0, 0.0, 4.0]])
    pt = np.exp(zt / T) / np.exp(zt / T).sum(1, keepdims=True)
    log_q1 = zs - np.log(np.exp(zs).sum(1, keepdims=True))  # student at T = 1
    log_qT = zs / T - np.log(np.exp(zs / T).sum(1, keepdims=True))  # student at T
    expected = {"teacher": -(pt * log_q1).sum(1).mean(), "slides": -(pt * log_qT).sum(1).mean(),
                "hinton": T**2 * -(pt * log_qT).sum(1).mean()}
    s, y, p = torch.tensor(zs), torch.tensor([0, 1]), torch.tensor(pt)
    for form, value in expected.items():
        assert float(distillation_loss(s, y, p, T, 1.0, form)) == pytest.approx(value, rel=1e-6)
    assert float(distillation_loss(s, y, p, T, 1.0)) == pytest.approx(expected["teacher"], rel=1e-6)
    assert expected["hinton"] == pytest.approx(4.0 * expected["slides"])
    p1 = torch.tensor(np_softmax(zt))
    at_one = {f: float(distillation_loss(s, y, p1, 1.0, 1.0, f)) for f in FORM_REFERENCE}
    assert at_one["teacher"] == pytest.approx(at_one["slides"]) == pytest.approx(at_one["hinton"])
    with pytest.raises(ValueError, match="distillation\\[\\]\\.form"):
        distillation_loss(s, y, p, T, 1.0, "student")


def test_beta_zero_is_plain_cross_entropy():
    rng = np.random.default_rng(0)
    s, y = torch.tensor(rng.normal(size=(5, 7)), dtype=torch.float32), torch.tensor(rng.integers(0, 7, 5))
    for teacher_probs in (torch.full((5, 7), 1 / 7), F.one_hot((y + 1) % 7, 7).float()):
        for form in ("teacher", "slides", "hinton"):
            got = distillation_loss(s, y, teacher_probs, 4.0, 0.0, form)
            assert float(got) == pytest.approx(float(F.cross_entropy(s, y)), rel=1e-6)


def test_hinton_t2_keeps_gradient_scale_at_large_t():
    """With T^2 the soft-term gradient is (T / N) (softmax(z_s / T) - softmax(z_t / T)), which tends to
    ((z_s - mean z_s) - (z_t - mean z_t)) / (K N) as T grows (Hinton et al.'s logit-matching limit):
    the T^2 factor keeps it finite and nonzero. The `teacher` form's gradient is (softmax(z_s) - p_t(T)) / N."""
    rng = np.random.default_rng(3)
    n, k, T = 4, 6, 100.0
    zs, zt = rng.normal(size=(n, k)), rng.normal(size=(n, k))
    s = torch.tensor(zs, dtype=torch.float64, requires_grad=True)
    pt = torch.tensor(np_softmax(zt / T))
    distillation_loss(s, torch.zeros(n, dtype=torch.long), pt, T, 1.0, form="hinton").backward()
    exact = T / n * (np_softmax(zs / T) - pt.numpy())
    np.testing.assert_allclose(s.grad.numpy(), exact, atol=1e-5)  # the loss computes in float32
    limit = ((zs - zs.mean(1, keepdims=True)) - (zt - zt.mean(1, keepdims=True))) / (k * n)
    np.testing.assert_allclose(s.grad.numpy(), limit, atol=2e-3)
    assert np.abs(limit).max() > 0.05
    s.grad = None
    distillation_loss(s, torch.zeros(n, dtype=torch.long), pt, T, 1.0, form="teacher").backward()
    np.testing.assert_allclose(s.grad.numpy(), (np_softmax(zs) - pt.numpy()) / n, atol=1e-7)
    s.grad = None  # the slides' form: (1 / (T N)) (softmax(z_s / T) - p_t(T)), shrinking like 1/T
    distillation_loss(s, torch.zeros(n, dtype=torch.long), pt, T, 1.0, form="slides").backward()
    np.testing.assert_allclose(s.grad.numpy(), (np_softmax(zs / T) - pt.numpy()) / (T * n), atol=1e-8)


def test_distillation_module_uses_teacher_at_t_and_validates():
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(4, 5), nn.Dropout(0.5))
    x, y, s = torch.randn(6, 1, 2, 2), torch.randint(0, 5, (6,)), torch.randn(6, 5)
    kd = {"kind": "kd", "teacher": "t", "T": 3.0, "beta": 0.7}
    obj = Objective([kd], {"t": teacher})
    obj.train()
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    with torch.no_grad():
        t = teacher(x).double().numpy()  # eval mode: dropout off, deterministic
    assert float(obj(s[:, None], y, x)[0]) == pytest.approx(_reference(s.double().numpy(), t, y.numpy(), 3.0, 0.7, "teacher"), rel=1e-5)
    hinton = {**kd, "form": "hinton"}
    assert float(one_loss(hinton, s, y, x, {"t": teacher})) == pytest.approx(_reference(s.double().numpy(), t, y.numpy(), 3.0, 0.7, "hinton"), rel=1e-5)
    with pytest.raises(ConfigError, match=r"objectives\[0\]\.form: unknown distillation form 'both'"):
        Objective([{**kd, "form": "both"}], {"t": teacher})
    with pytest.raises(ConfigError, match=r"objectives\[0\]\.T must be a number in \(0, inf\]"):
        Objective([{**kd, "T": 0.0}], {"t": teacher})
    with pytest.raises(ConfigError, match=r"objectives\[0\]\.beta must be a number in \[0, 1\], got 1.5"):
        Objective([{**kd, "beta": 1.5}], {"t": teacher})
    with pytest.raises(ConfigError, match=r"no teacher model given for 'u'"):
        Objective([{**kd, "teacher": "u"}], {"t": teacher})


def test_objective_values_are_checked_by_their_kind():
    """An objective value is completed with its kind's defaults; an unknown kind, an unknown key or a
    missing required key is one ConfigError naming it."""
    assert losses.check({"kind": "ls"}) == {"kind": "ls", "alpha": 0.0}
    assert losses.check({"kind": "kd", "teacher": "t.pt"}) == {"kind": "kd", "teacher": "t.pt", "T": 1.0, "beta": 1.0,
                                                                "form": "teacher"}
    with pytest.raises(ConfigError, match="objective.kind 'focal' is not an objective; known kinds: ls, kd"):
        losses.check({"kind": "focal"})
    with pytest.raises(ConfigError, match="unknown key\\(s\\) temperature"):
        losses.check({"kind": "kd", "teacher": "t.pt", "temperature": 2})
    with pytest.raises(ConfigError, match="a kd objective needs teacher"):
        losses.check({"kind": "kd"})
    with pytest.raises(ConfigError, match="must be a mapping with a 'kind'"):
        losses.check({"alpha": 0.1})


def test_objective_of_a_group_is_each_members_own_loss_bit_for_bit():
    """A group's objective on ``B x G x K`` logits gives each member exactly (bit for bit) the loss of
    its value alone on ``B x K`` (a run of its own), whatever the other members' kinds; the teacher
    named twice runs once per batch."""
    torch.manual_seed(0)
    k, x, y = 5, torch.randn(6, 1, 2, 2), torch.randint(0, 5, (6,))
    calls = []
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(4, k))
    teacher.register_forward_hook(lambda *_: calls.append(1))
    values = [{"kind": "ls", "alpha": 0.1}, {"kind": "kd", "teacher": "t", "T": 2.0},
              {"kind": "kd", "teacher": "t", "T": 4.0, "beta": 0.5, "form": "hinton"}, {"kind": "ls"}]
    logits = torch.randn(6, len(values), k)
    got = Objective(values, {"t": teacher})(logits, y, x)
    assert len(calls) == 1
    for g, v in enumerate(values):
        assert torch.equal(got[g], one_loss(v, logits[:, g].contiguous(), y, x, {"t": teacher}))


# --------------------------------------------------------------------------- teacher inside the training loop


class _Recorder(nn.Module):
    """Wraps a model; records (training flag, input) of each call made in training mode or by the objective."""

    def __init__(self, inner: nn.Module, record_eval: bool):
        super().__init__()
        self.inner, self.record_eval, self.calls = inner, record_eval, []
        self.classifier = inner.classifier

    def forward(self, x, features=False):
        if self.training or self.record_eval:
            self.calls.append((self.training, [m.training for m in self.inner.modules()], x.detach().clone()))
        return self.inner(x, features=features)


def test_teacher_runs_in_eval_mode_on_the_students_augmented_batch(tmp_path):
    torch.set_num_threads(1)
    data = synthetic_data((96, 30, 30), side=6, name="tiny")
    torch.manual_seed(0)
    inner_teacher = build_model("smallcnn", data, width=4)
    bn_before = {k: v.clone() for k, v in inner_teacher.state_dict().items()}
    teacher = _Recorder(inner_teacher, record_eval=True)
    student = _Recorder(build_model("mlp", data, hidden=(16,)), record_eval=False)
    recipe = Recipe.from_dict({"steps": 6, "batch_size": 32, "lr": 0.05, "augment": {"pad": 2, "flip": True}})
    fit_one(student, data, recipe, {"kind": "kd", "teacher": "t", "T": 2.0}, teachers={"t": teacher}, seed=0,
            checkpoint_path=tmp_path / "c.ckpt", metrics_path=tmp_path / "m.csv", progress=False)
    assert len(teacher.calls) == len(student.calls) == 6
    for (t_mode, t_modes, tx), (s_mode, _, sx) in zip(teacher.calls, student.calls):
        assert s_mode and not t_mode and not any(t_modes)  # student trains, teacher (BN included) is in eval mode
        assert torch.equal(tx, sx)  # exactly the augmented batch the student saw
    raw = {row.tobytes() for row in data.x["train"]}
    assert any(img.numpy().tobytes() not in raw for _, _, sx in student.calls for img in sx)  # augmentation was on
    for k, v in inner_teacher.state_dict().items():  # no BN statistic or weight of the teacher moved
        assert torch.equal(v, bn_before[k]), k


# --------------------------------------------------------------------------- the confidence penalty


@pytest.mark.parametrize("beta", [0.0, 0.3, 0.9])
def test_confidence_penalty_matches_numpy(beta):
    """CE(y, p) - beta H(p) (Pereyra et al. 2017), mean over the batch, against numpy in float64; its
    gradient against the closed form p - y + beta p (log p + H(p)) (per example, / N)."""
    rng = np.random.default_rng(int(beta * 10))
    z, y = rng.normal(size=(9, 6)) * 3, rng.integers(0, 6, 9)
    p = np_softmax(z)
    entropy = -(p * np.log(p)).sum(1)
    expected = (-np.log(p[np.arange(9), y]) - beta * entropy).mean()
    logits = torch.tensor(z, dtype=torch.float32, requires_grad=True)
    value = {"kind": "confidence_penalty", "beta": beta}
    loss = one_loss(value, logits, torch.tensor(y))
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-5)
    loss.backward()
    onehot = np.eye(6)[y]
    grad = (p - onehot + beta * p * (np.log(p) + entropy[:, None])) / 9
    np.testing.assert_allclose(logits.grad.numpy(), grad, atol=1e-6)
    # beta = 0 is plain cross-entropy; a uniform prediction costs (1 - beta) log K
    if beta == 0.0:
        assert float(loss.detach()) == pytest.approx(float(F.cross_entropy(logits.detach(), torch.tensor(y))), rel=1e-6)
    uniform = Objective([value]).uniform_loss(6)
    assert float(uniform[0]) == pytest.approx((1 - beta) * np.log(6), rel=1e-6)
    # (float32: CE and beta H nearly cancel at large beta, so compare absolutely)
    assert float(one_loss(value, torch.zeros(9, 6), torch.tensor(y))) == pytest.approx(float(uniform[0]), abs=1e-6)


def test_confidence_penalty_is_checked_and_trains_beside_ls_in_one_group(tmp_path):
    """beta outside [0, 1) and a missing beta are refused naming the key; one `lspipe train` job
    trains an LS model and a CP model side by side (a grid's group), each bit-identical to its own run
    of the same command, with its objective in its metadata."""
    import json

    from lspipe import cli
    from lspipe.core import data as D
    from lspipe.core.models import load_model

    with pytest.raises(ConfigError, match=r"objectives\[0\]\.beta must be a number in \[0, 1\), got 1"):
        Objective([{"kind": "confidence_penalty", "beta": 1}])
    with pytest.raises(ConfigError, match="a confidence_penalty objective needs beta"):
        Objective([{"kind": "confidence_penalty"}])
    data = tmp_path / "digits.npz"
    D.prepare("digits", "digits", data, val_size=0.2, test_size=0.25)
    values = [{"kind": "ls", "alpha": 0.1}, {"kind": "confidence_penalty", "beta": 0.5}]
    recipe = json.dumps({"steps": 6, "batch_size": 64, "lr": 0.05, "augment": {"pad": 1, "flip": False}})

    def train(where, objectives):
        outs = [str(tmp_path / where / f"m{i}" / "model.pt") for i in range(len(objectives))]
        assert cli.main(["train", "--data", str(data), "--arch", "mlp", "--recipe", recipe, "--seed", "0",
                         "--objectives", json.dumps(objectives), "--out", *outs,
                         "--metrics", *[o.replace("model.pt", "metrics.csv") for o in outs],
                         "--threads", "1", "--no-progress"]) == 0
        return [load_model(o) for o in outs]

    group = train("group", values)
    for i, value in enumerate(values):
        (alone, _), = train(f"alone{i}", [value])
        model, meta = group[i]
        assert meta["objective"] == value and meta["lockstep"]["runs"] == ["m0", "m1"]
        for k, v in alone.state_dict().items():
            assert torch.equal(model.state_dict()[k], v), (value, k)
    assert not torch.equal(group[0][0].state_dict()["classifier.weight"], group[1][0].state_dict()["classifier.weight"])
