"""Fig. 6: the mutual-information estimator and the probe recorder during training."""

from __future__ import annotations

import csv
import math

import h5py
import numpy as np
import pytest
import torch
from scipy import integrate
from scipy.stats import norm

from conftest import fit_one, synthetic_data
from lspipe import cli
from lspipe.base.errors import DataError
from lspipe.core.models import build_model
from lspipe.core.recipe import Recipe
from lspipe.engine.probe import ProbeRecorder
from lspipe.engine.probefile import ProbeTrace
from lspipe.engine.training import Interrupted
from lspipe.experiments.mi import mi_curve, mi_table, mutual_information, pooled_sigma2

# --------------------------------------------------------------------------- estimator


def direct_mi(y: np.ndarray, sigma: float) -> float:
    """The same Gaussian-mixture quantity from densities (scipy.stats.norm.pdf), no log-sum-exp."""
    mu = y.mean(axis=1)
    ys = y.reshape(-1)
    own = norm.pdf(ys, loc=np.repeat(mu, y.shape[1]), scale=sigma)
    mix = norm.pdf(ys[:, None], loc=mu[None, :], scale=sigma).mean(axis=1)
    return float(np.mean(np.log(own / mix)))


def population_mi(means: np.ndarray, sigma: float) -> float:
    """I(X; Y) of X uniform over ``means`` and Y | x ~ N(mean_x, sigma^2), by quadrature over y."""

    def log_mix(y):
        return np.log(norm.pdf(y, loc=means, scale=sigma).mean())

    total = 0.0
    for m in means:
        f = lambda y, m=m: norm.pdf(y, m, sigma) * (norm.logpdf(y, m, sigma) - log_mix(y))  # noqa: E731
        total += integrate.quad(f, m - 12 * sigma, m + 12 * sigma, limit=200)[0]
    return total / len(means)


def test_identical_means_give_zero():
    rng = np.random.default_rng(0)
    e = rng.normal(size=(50, 5))
    y = 3.0 + e - e.mean(axis=1, keepdims=True)  # every example's sample mean is exactly 3
    assert mutual_information(y) == pytest.approx(0.0, abs=1e-12)
    # same population mean for every example: only the small-L floor remains, vanishing as L grows
    y = rng.normal(size=(200, 400))
    assert 0.0 <= mutual_information(y) < 0.01


def test_separated_means_give_log_n():
    rng = np.random.default_rng(1)
    n = 40
    y = 10.0 * np.arange(n)[:, None] + 0.01 * rng.normal(size=(n, 5))
    assert mutual_information(y) == pytest.approx(math.log(n), abs=1e-9)


def test_two_groups_give_log_2():
    rng = np.random.default_rng(2)
    n = 60
    groups = np.repeat([-20.0, 20.0], n // 2)
    e = rng.normal(size=(n, 5))
    y = groups[:, None] + e - e.mean(axis=1, keepdims=True)  # identical means within each group
    assert mutual_information(y) == pytest.approx(math.log(2), abs=1e-9)


@pytest.mark.parametrize("ddof", [0, 1])
def test_matches_direct_density_computation(ddof):
    rng = np.random.default_rng(3)
    mu = rng.normal(scale=1.5, size=30)
    y = mu[:, None] + rng.normal(size=(30, 5))
    copies = y.shape[1]
    sigma = np.sqrt(((y - y.mean(1, keepdims=True)) ** 2).sum() / (len(y) * (copies - ddof)))
    assert pooled_sigma2(y, ddof) == pytest.approx(sigma**2, rel=1e-12)
    assert mutual_information(y, ddof=ddof) == pytest.approx(direct_mi(y, sigma), rel=1e-10)
    # the blocked log-sum-exp gives the same number
    assert mutual_information(y, ddof=ddof, block=7) == pytest.approx(mutual_information(y, ddof=ddof), rel=1e-12)


def test_converges_to_population_mixture_integral():
    means = np.array([0.0, 0.5, 1.5, 3.0, 3.2])
    truth = population_mi(means, 1.0)
    assert 0.3 < truth < math.log(len(means))
    y = means[:, None] + np.random.default_rng(4).normal(size=(len(means), 20000))
    assert mutual_information(y) == pytest.approx(truth, abs=0.01)


def test_degenerate_sigma_zero_is_the_partition_entropy():
    y = np.repeat(np.array([[1.0], [1.0], [2.0], [5.0]]), 4, axis=1)
    assert mutual_information(y) == pytest.approx(np.mean(np.log(4 / np.array([2, 2, 1, 1]))))
    assert mutual_information(np.ones((6, 3))) == 0.0
    # ... which is the formula's limit sigma -> 0 with the means held fixed
    e = np.random.default_rng(5).normal(size=y.shape)
    for eps in (1e-3, 1e-6):
        y_eps = y + eps * (e - e.mean(axis=1, keepdims=True))
        assert mutual_information(y_eps) == pytest.approx(mutual_information(y), abs=1e-9)


def test_bounds_and_bad_input():
    rng = np.random.default_rng(6)
    for scale in (0.0, 0.3, 3.0, 300.0):
        y = scale * rng.normal(size=(25, 1)) + rng.normal(size=(25, 4))
        raw = mutual_information(y, clip=False)
        assert -1e-12 <= raw <= math.log(25) + 1e-12
        assert 0.0 <= mutual_information(y) <= math.log(25)
    with pytest.raises(ValueError, match="L >= 2"):
        mutual_information(np.ones((5, 1)))
    with pytest.raises(ValueError, match="NaN"):
        mutual_information(np.full((5, 3), np.nan))


# --------------------------------------------------------------------------- the probe during training


RECIPE = {"steps": 12, "batch_size": 32, "lr": 0.05, "augment": {"pad": 1, "flip": True}, "checkpoint_every": 2}
PROBE = {"classes": ["zero", "two"], "per_class": 6, "copies": 3, "every": 2, "seed": 5}


def _train(tmp, data, probe: bool, **kw):
    torch.manual_seed(0)
    model = build_model("smallcnn", data)
    recipe = Recipe.from_dict(RECIPE)
    cbs = [ProbeRecorder(tmp / "probe.h5", data, device="cpu", recipe=recipe, **PROBE)] if probe else []
    fit_one(model, data, recipe, {"kind": "ls", "alpha": 0.1}, seed=3, device="cpu", checkpoint_path=tmp / "model.pt.ckpt",
            metrics_path=tmp / "metrics.csv", callbacks=cbs, progress=False, **kw)
    return model


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Every test here runs with one torch thread (conftest's one_torch_thread)."""


def test_trace_layout_and_training_unchanged(tmp_path):
    data = synthetic_data(signal=40, class_names=["zero", "one", "two"], index_offset=1000, name="syn")
    a, b = tmp_path / "plain", tmp_path / "probed"
    plain = _train(a, data, probe=False)
    rng_plain = torch.random.get_rng_state()
    probed = _train(b, data, probe=True)
    assert torch.equal(torch.random.get_rng_state(), rng_plain)  # the global RNG was not touched
    sa, sb = plain.state_dict(), probed.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k

    assert not (b / "probe.h5.partial").exists()
    tr = ProbeTrace(b / "probe.h5")
    assert tr.complete
    assert tr.steps.tolist() == [0, 2, 4, 6, 8, 10, 12]
    assert tr.logits.shape == (7, 12, 3, 3) and tr.logits.dtype == np.float32
    assert tr.probe_classes == ["zero", "two"] and tr.probe_class_indices == [0, 2]
    assert sorted(tr.labels.tolist()) == [0] * 6 + [2] * 6
    assert np.array_equal(data.y["train"][tr.index], tr.labels)
    with h5py.File(b / "probe.h5") as f:
        assert np.array_equal(f["source_index"][()], data.index["train"][tr.index])
    # the last record is the trained model's logits on augmented copies: the copies' mean is
    # close to the un-augmented logits, and Y is the difference of the two classes' columns
    probed.eval()
    with torch.no_grad():
        clean = probed(torch.from_numpy(data.x["train"][tr.index])).numpy()
    assert np.abs(tr.logits[-1].mean(axis=1) - clean).max() < 2.0
    assert np.allclose(tr.differences()[-1], tr.logits[-1][..., 0] - tr.logits[-1][..., 2])
    assert tr.differences()[-1].std(axis=1).max() > 0  # the copies differ (augmentation)
    rows = mi_curve(tr)
    assert [r["step"] for r in rows] == tr.steps.tolist()
    assert rows[3]["mi"] == pytest.approx(mutual_information(tr.differences()[3]))
    # the repeat draw: the same examples and model, another independent augmentation draw
    assert tr.logits_repeat.shape == tr.logits.shape
    assert not np.array_equal(tr.logits_repeat, tr.logits)
    assert np.abs(tr.logits_repeat[-1].mean(axis=1) - clean).max() < 2.0
    assert rows[3]["mi_repeat"] == pytest.approx(mutual_information(tr.differences(repeat=True)[3]))


def test_record_leaves_model_and_generators_alone():
    data = synthetic_data(signal=40, class_names=["zero", "one", "two"], index_offset=1000, name="syn")
    torch.manual_seed(0)
    model = build_model("smallcnn", data).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rec = ProbeRecorder("unused.h5", data, recipe=Recipe.from_dict(RECIPE), **PROBE)
    rng = torch.random.get_rng_state()
    first = rec.logits(model, 4)
    assert model.training
    assert torch.equal(torch.random.get_rng_state(), rng)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k  # BatchNorm running statistics included
    assert np.array_equal(rec.logits(model, 4), first)  # the draws depend on (seed, step) only
    assert not np.array_equal(rec.logits(model, 6), first)
    repeat = rec.logits(model, 4, draw=1)  # the repeat draw: seeded by (seed, step, 1), not draw 0's stream
    assert np.array_equal(rec.logits(model, 4, draw=1), repeat) and not np.array_equal(repeat, first)
    assert all(not np.array_equal(repeat, rec.logits(model, s)) for s in range(0, 12, 2))
    # the probe examples are chosen with the probe's seed
    other = ProbeRecorder("unused.h5", data, recipe=Recipe.from_dict(RECIPE), **{**PROBE, "seed": 6})
    assert not np.array_equal(other.index, rec.index)


def test_resume_gives_the_uninterrupted_trace(tmp_path):
    data = synthetic_data(signal=40, class_names=["zero", "one", "two"], index_offset=1000, name="syn")
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    _train(whole, data, probe=True)
    # 3 steps per epoch, checkpoints at epochs 2, 4: stopping after epoch 3 (step 9) leaves a
    # record (step 8) newer than the checkpoint (step 6), which the resumed run must drop
    with pytest.raises(Interrupted):
        _train(parts, data, probe=True, stop_after_epochs=3)
    assert not (parts / "probe.h5").exists()
    with h5py.File(parts / "probe.h5.partial") as f:
        assert f["steps"][()].tolist() == [0, 2, 4, 6, 8]
    _train(parts, data, probe=True)
    a, b = ProbeTrace(whole / "probe.h5"), ProbeTrace(parts / "probe.h5")
    assert b.steps.tolist() == a.steps.tolist() == [0, 2, 4, 6, 8, 10, 12]
    assert np.array_equal(a.logits, b.logits) and np.array_equal(a.logits_repeat, b.logits_repeat)


def test_resume_without_partial_trace_fails_clearly(tmp_path):
    data = synthetic_data(signal=40, class_names=["zero", "one", "two"], index_offset=1000, name="syn")
    with pytest.raises(Interrupted):
        _train(tmp_path, data, probe=True, stop_after_epochs=2)
    (tmp_path / "probe.h5.partial").unlink()
    with pytest.raises(DataError, match="missing.*retrain from scratch"):
        _train(tmp_path, data, probe=True)


def test_probe_class_errors():
    data = synthetic_data(signal=40, class_names=["zero", "one", "two"], index_offset=1000, name="syn")
    with pytest.raises(DataError, match="unknown class name 'seven'.*zero, one, two"):
        ProbeRecorder("x.h5", data, classes=["zero", "seven"])
    with pytest.raises(DataError, match="per_class=40 exceeds the 32 training examples"):
        ProbeRecorder("x.h5", data, classes=["zero", "one"], per_class=40)
    with pytest.raises(DataError, match="two different classes"):
        ProbeRecorder("x.h5", data, classes=["one", "one"])
    with pytest.raises(DataError, match="copies >= 2"):
        ProbeRecorder("x.h5", data, classes=["zero", "one"], copies=1)


# --------------------------------------------------------------------------- CLI: curve, table, figure


def _fake_trace(path, y_by_step: dict[int, np.ndarray]):
    """A complete probe trace whose class-0 minus class-1 logit difference is ``y``."""
    steps = sorted(y_by_step)
    n, copies = y_by_step[steps[0]].shape
    logits = np.zeros((len(steps), n, copies, 3), np.float32)
    for r, s in enumerate(steps):
        logits[r, ..., 0] = y_by_step[s]
    with h5py.File(path, "w") as f:
        f["logits"], f["steps"] = logits, np.asarray(steps)
        f["labels"], f["index"] = np.zeros(n, np.int64), np.arange(n)
        f.create_dataset("classes", data=np.asarray(["a", "b", "c"], dtype=object), dtype=h5py.string_dtype())
        f.attrs.update(probe_classes=["a", "b"], probe_class_indices=[0, 1], complete=True)


def test_cli_curve_table_and_figure(tmp_path):
    rng = np.random.default_rng(7)
    curves, expected = [], {}
    for alpha in (0.0, 0.1):
        for seed in (0, 1):
            ys = {s: (s / 10 + 1) * rng.normal(size=(8, 1)) + rng.normal(size=(8, 4)) for s in (0, 10, 20)}
            _fake_trace(tmp_path / "p.h5", ys)
            out = tmp_path / f"a{alpha}_s{seed}.csv"
            assert cli.main(["mi-curve", "--probe", str(tmp_path / "p.h5"), "--out", str(out),
                             "--alpha", str(alpha), "--seed", str(seed)]) == 0
            with open(out) as fh:
                rows = list(csv.DictReader(fh))
            assert [int(r["step"]) for r in rows] == [0, 10, 20]
            for r in rows:
                expected.setdefault((alpha, int(r["step"])), []).append(mutual_information(ys[int(r["step"])]))
                assert float(r["mi"]) == pytest.approx(expected[(alpha, int(r["step"]))][-1])
                assert int(r["n"]) == 8 and float(r["log_n"]) == pytest.approx(math.log(8))
            curves.append(str(out))
    figs = [tmp_path / "fig.pdf", tmp_path / "fig.png"]
    assert cli.main(["mi-figure", "--curves", *curves, "--csv", str(tmp_path / "t.csv"), "--alphas", "0.1",
                     "--out", *map(str, figs), "--dpi", "50"]) == 0
    assert all(f.stat().st_size > 1000 for f in figs)
    with open(tmp_path / "t.csv") as fh:
        table = list(csv.DictReader(fh))
    assert {float(r["alpha"]) for r in table} == {0.1}
    for r in table:
        v = expected[(0.1, int(r["step"]))]
        assert int(r["seeds"]) == 2
        assert float(r["mi_mean"]) == pytest.approx(np.mean(v))
        assert float(r["mi_min"]) == pytest.approx(min(v)) and float(r["mi_max"]) == pytest.approx(max(v))
        assert float(r["mi_std"]) == pytest.approx(np.std(v, ddof=1))


def test_mi_noise_from_repeat_draws_against_a_direct_simulation(tmp_path):
    """sqrt(mean (MI_a - MI_b)^2 / 2) estimates the sd of one MI estimate: checked on draws of a
    known model (per-example means fixed, Gaussian copies), against the sd over many independent
    draws; a trace without a repeat draw (format 1) gives an empty mi_repeat."""
    from lspipe.experiments.mi import mi_noise

    rng = np.random.default_rng(11)
    mu = rng.normal(size=(40, 1))
    draws = [mutual_information(mu + rng.normal(size=(40, 5))) for _ in range(400)]
    assert mi_noise(list(zip(draws[::2], draws[1::2]))) == pytest.approx(np.std(draws, ddof=1), rel=0.15)
    assert mi_noise([]) is None
    _fake_trace(tmp_path / "p.h5", {0: mu + rng.normal(size=(40, 5)), 5: mu + rng.normal(size=(40, 5))})
    tr = ProbeTrace(tmp_path / "p.h5")
    assert tr.logits_repeat is None and tr.differences(repeat=True) is None
    assert {r["mi_repeat"] for r in mi_curve(tr)} == {""}


def test_table_rejects_mismatched_curves():
    rows = [{"alpha": 0.0, "seed": 0, "step": 0, "mi": 0.1, "n": 8, "copies": 4},
            {"alpha": 0.0, "seed": 1, "step": 5, "mi": 0.1, "n": 8, "copies": 4}]
    with pytest.raises(DataError, match="different steps"):
        mi_table(rows)


def test_incomplete_trace_is_refused(tmp_path):
    _fake_trace(tmp_path / "p.h5", {0: np.ones((3, 2))})
    with h5py.File(tmp_path / "p.h5", "r+") as f:
        f.attrs["complete"] = False
    assert cli.main(["mi-curve", "--probe", str(tmp_path / "p.h5"), "--out", str(tmp_path / "c.csv"),
                     "--alpha", "0", "--seed", "0"]) == 2


# --------------------------------------------------------------------------- workflow


def test_default_variance_is_the_notes_maximum_likelihood_and_recorded(tmp_path):
    """Default ddof = 0: sigma^2 pooled over all N * L values (the paper notes); the CSVs say so,
    and curves of different conventions are not averaged together."""
    rng = np.random.default_rng(3)
    y = rng.normal(size=(8, 1)) + 0.5 * rng.normal(size=(8, 4))
    ml_sigma = np.sqrt(((y - y.mean(1, keepdims=True)) ** 2).mean())  # divide by N * L
    assert mutual_information(y) == pytest.approx(direct_mi(y, ml_sigma), rel=1e-10)
    assert mutual_information(y) != pytest.approx(mutual_information(y, ddof=1), rel=1e-6)
    _fake_trace(tmp_path / "p.h5", {0: y, 5: y + 1.0})
    paths = {}
    for ddof in (None, 1):
        out = tmp_path / f"c{ddof}.csv"
        extra = [] if ddof is None else ["--ddof", str(ddof)]
        assert cli.main(["mi-curve", "--probe", str(tmp_path / "p.h5"), "--out", str(out), "--alpha", "0",
                         "--seed", "0", *extra]) == 0
        with open(out) as fh:
            rows = list(csv.DictReader(fh))
        assert {int(r["ddof"]) for r in rows} == {0 if ddof is None else 1}
        assert float(rows[0]["sigma"]) == pytest.approx(ml_sigma if ddof is None else np.sqrt(ml_sigma**2 * 4 / 3))
        paths[ddof] = str(out)
    figs = [str(tmp_path / "f.png")]
    assert cli.main(["mi-figure", "--curves", paths[None], "--csv", str(tmp_path / "t.csv"), "--out", *figs,
                     "--dpi", "50"]) == 0
    with open(tmp_path / "t.csv") as fh:
        assert {int(r["ddof"]) for r in csv.DictReader(fh)} == {0}
    assert cli.main(["mi-figure", "--curves", paths[None], paths[1], "--csv", str(tmp_path / "t2.csv"),
                     "--out", *figs]) == 2  # mixed conventions: a clear error, not an average
