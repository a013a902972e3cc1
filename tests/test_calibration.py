"""ECE / reliability bins (against torchmetrics and by hand), temperature scaling, Table 3 and Fig. 2."""

from __future__ import annotations

import copy
import csv

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lspipe.base.errors import ConfigError
from lspipe.base.io import write_json
from lspipe.experiments import calibration as C

tm = pytest.importorskip("torchmetrics.functional.classification")


def _tm_multiclass(probs, labels, n_bins=15):
    """torchmetrics' multiclass ECE (it bins in float32 internally: compare to about 1e-6)."""
    p = torch.as_tensor(probs, dtype=torch.float64)
    return float(tm.multiclass_calibration_error(p, torch.as_tensor(labels), num_classes=p.shape[1], n_bins=n_bins,
                                                 norm="l1"))


def _tm_binary(conf, correct, n_bins=15):
    return float(tm.binary_calibration_error(torch.as_tensor(conf, dtype=torch.float64),
                                             torch.as_tensor(correct, dtype=torch.long), n_bins=n_bins, norm="l1"))


def _sample_labels(logits, temperature, rng):
    """Labels drawn from softmax(logits / temperature), one per row (inverse CDF)."""
    p = C.softmax(logits, temperature)
    u = rng.random((len(p), 1))
    return np.minimum((p.cumsum(1) < u).sum(1), p.shape[1] - 1)


# --------------------------------------------------------------------------- bins and ECE


def test_bin_edge_convention_by_hand():
    e = C.bin_edges(15)
    conf = np.array([0.0, e[1], np.nextafter(e[1], 1), e[7], 0.5, np.nextafter(1.0, 0), 1.0])
    # right-closed (b/B, (b+1)/B]: an edge belongs to the bin below it; 0 to the first, 1 to the last
    np.testing.assert_array_equal(C.bin_index(conf, 15), [0, 0, 1, 6, 7, 14, 14])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        C.bin_index(np.array([1.2]), 15)


def test_ece_on_edges_by_hand_and_where_torchmetrics_differs():
    # B = 4, edges 0, .25, .5, .75, 1
    conf = np.array([0.25, 0.5, 0.75, 1.0, 0.0])
    correct = np.array([1, 0, 1, 1, 0])
    r = C.reliability(conf, correct, 4)
    np.testing.assert_array_equal(r.count, [2, 1, 1, 1])  # {0.25, 0}, {0.5}, {0.75}, {1.0}
    np.testing.assert_allclose(r.accuracy, [0.5, 0, 1, 1])
    np.testing.assert_allclose(r.confidence, [0.125, 0.5, 0.75, 1.0])
    assert r.ece == pytest.approx(2 / 5 * 0.375 + 1 / 5 * 0.5 + 1 / 5 * 0.25 + 0)
    # an edge confidence in a bin with others: torchmetrics' left-closed bins put 0.25 one bin higher
    conf, correct = np.array([0.25, 0.2]), np.array([1, 0])
    assert C.reliability(conf, correct, 4).ece == pytest.approx(abs(0.5 - 0.225))  # both in (0, .25]
    assert _tm_binary(conf, correct, 4) == pytest.approx(0.5 * 0.2 + 0.5 * 0.75)  # [0, .25) and [.25, .5)
    # 1.0 with other confidences in the last bin: torchmetrics gives 1.0 a bin of its own
    conf, correct = np.array([1.0, 0.9]), np.array([1, 0])
    assert C.reliability(conf, correct, 4).ece == pytest.approx(abs(0.5 - 0.95))
    assert _tm_binary(conf, correct, 4) == pytest.approx(0.5 * 0.9 + 0.5 * 0.0)


def test_ece_matches_torchmetrics_multiclass_off_the_edges():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2.5, (3000, 10))
    labels = rng.integers(0, 10, 3000)
    probs = C.softmax(logits)
    assert not np.isin(probs.max(1), C.bin_edges(15)).any()
    for t in (0.5, 1.0, 3.0):
        assert C.ece(logits, labels, 15, temperature=t) == pytest.approx(_tm_multiclass(C.softmax(logits, t), labels),
                                                                         abs=1e-6)


def test_ece_matches_torchmetrics_with_confidences_0_and_1():
    rng = np.random.default_rng(1)
    # top-label confidences below 14/15 plus exact 1.0 rows: the last bin holds only 1.0, so both agree
    logits = rng.normal(0, 1.0, (500, 5))
    probs = C.softmax(logits)
    assert probs.max() < 14 / 15
    onehot = np.eye(5)[rng.integers(0, 5, 40)]
    probs = np.vstack([probs, onehot])
    labels = np.concatenate([rng.integers(0, 5, 500), onehot.argmax(1) * (rng.random(40) < 0.7)])
    conf, correct = C.top_label(probs, labels)
    assert (conf == 1.0).sum() == 40
    assert C.reliability(conf, correct).ece == pytest.approx(_tm_multiclass(probs, labels), abs=1e-6)
    # confidence exactly 0 (binary form: confidence and outcome pairs), both put it in the first bin
    conf = np.concatenate([np.zeros(30), rng.random(300) * 0.999 + 0.0005])
    assert not np.isin(conf[30:], C.bin_edges(15)).any()
    correct = rng.random(330) < conf
    assert C.reliability(conf, correct).ece == pytest.approx(_tm_binary(conf, correct), abs=1e-10)
    assert C.reliability(conf, correct).count[0] >= 30


def test_reliability_bins_against_an_explicit_loop():
    rng = np.random.default_rng(2)
    conf = np.concatenate([rng.random(400), C.bin_edges(15)])  # edges included
    correct = rng.random(len(conf)) < 0.6
    r = C.reliability(conf, correct, 15)
    edges = C.bin_edges(15)
    for b in range(15):
        lo, hi = edges[b], edges[b + 1]
        inside = ((conf > lo) | (b == 0)) & (conf <= hi)  # (lo, hi], and [0, hi] for the first bin
        assert r.count[b] == inside.sum()
        if inside.any():
            assert r.accuracy[b] == pytest.approx(correct[inside].mean())
            assert r.confidence[b] == pytest.approx(conf[inside].mean())
        else:
            assert np.isnan(r.accuracy[b])
    assert r.count.sum() == len(conf)
    back = C.Reliability.from_dict(r.to_dict())
    np.testing.assert_array_equal(back.count, r.count)
    assert back.ece == r.ece


def test_pooled_bins_equal_the_bins_of_all_predictions_together():
    rng = np.random.default_rng(3)
    parts = [(rng.random(n) ** 0.3, rng.random(n) < 0.7) for n in (200, 50, 120)]
    pooled = C.pooled([C.reliability(c, k) for c, k in parts])
    whole = C.reliability(np.concatenate([c for c, _ in parts]), np.concatenate([k for _, k in parts]))
    np.testing.assert_array_equal(pooled.count, whole.count)
    np.testing.assert_allclose(pooled.accuracy, whole.accuracy, equal_nan=True)
    np.testing.assert_allclose(pooled.confidence, whole.confidence, equal_nan=True)
    assert pooled.ece == pytest.approx(whole.ece)


# --------------------------------------------------------------------------- temperature scaling


def test_nll_matches_torch_cross_entropy():
    rng = np.random.default_rng(4)
    z, y = rng.normal(0, 3, (100, 7)), rng.integers(0, 7, 100)
    for t in (0.3, 1.0, 2.0):
        ref = F.cross_entropy(torch.as_tensor(z) / t, torch.as_tensor(y)).item()
        assert C.nll(z, y, t) == pytest.approx(ref, rel=1e-10)


@pytest.mark.parametrize("t_true", [0.5, 1.0, 2.5])
def test_temperature_scaling_recovers_the_generating_temperature(t_true):
    rng = np.random.default_rng(int(t_true * 10))
    z = rng.normal(0, 3.0, (10_000, 10))
    y = _sample_labels(z, t_true, rng)
    fit = C.fit_temperature(z, y)
    assert fit.temperature == pytest.approx(t_true, rel=0.04)
    assert not fit.at_bound and fit.nll_after <= fit.nll_before + 1e-12
    # a minimum: the NLL is higher a little to either side
    assert C.nll(z, y, fit.temperature * 1.02) > fit.nll_after < C.nll(z, y, fit.temperature / 1.02)
    # labels generated at t_true but logits scaled: the fit absorbs the scale
    assert C.fit_temperature(4.0 * z, y).temperature == pytest.approx(4.0 * fit.temperature, rel=1e-4)


def test_separable_validation_data_hits_the_bound_with_a_warning():
    z = np.array([[5.0, 0.0], [0.0, 5.0]] * 10)
    y = np.array([0, 1] * 10)
    with pytest.warns(UserWarning, match="edge of the search range"):
        fit = C.fit_temperature(z, y)
    assert fit.at_bound and fit.temperature == pytest.approx(1e-2, rel=1e-2)


def test_calibrate_fits_on_one_split_and_reports_on_the_other():
    rng = np.random.default_rng(7)
    z = rng.normal(0, 4.0, (6000, 10))
    y = _sample_labels(z, 2.0, rng)  # overconfident logits: T about 2
    res = C.calibrate(z[:3000], y[:3000], z[3000:], y[3000:], n_bins=15)
    assert res["temperature"] == pytest.approx(C.fit_temperature(z[:3000], y[:3000]).temperature)
    assert res["after"]["ece"] == pytest.approx(C.ece(z[3000:], y[3000:], 15, res["temperature"]))
    assert res["after"]["ece"] < res["before"]["ece"] and res["after"]["nll"] < res["before"]["nll"]
    assert res["after"]["accuracy"] == res["before"]["accuracy"]  # T > 0 keeps the argmax
    assert sum(res["before"]["reliability"]["count"]) == 3000


def test_calibrate_records_validation_metrics_at_t1_and_ece_floors():
    rng = np.random.default_rng(8)
    z = rng.normal(0, 4.0, (1200, 10))
    y = _sample_labels(z, 2.0, rng)
    res = C.calibrate(z[:400], y[:400], z[400:], y[400:], n_bins=15)
    assert res["format_version"] == C.FORMAT_VERSION == 2
    assert res["val"]["ece"] == pytest.approx(C.ece(z[:400], y[:400], 15, 1.0))  # T = 1, the fitting split
    assert res["val"]["nll"] == pytest.approx(C.nll(z[:400], y[:400], 1.0)) == pytest.approx(res["fit"]["nll_before"])
    for block, zz, t in (("val", z[:400], 1.0), ("before", z[400:], 1.0), ("after", z[400:], res["temperature"])):
        conf = C.softmax(zz, t).max(1)
        assert res[block]["ece_floor"] == pytest.approx(C.expected_ece_calibrated(conf, 15))


def test_poisson_binomial_against_enumeration():
    import itertools

    rng = np.random.default_rng(2)
    p = rng.random(9)
    pmf = np.zeros(10)
    for bits in itertools.product([0, 1], repeat=9):
        pmf[sum(bits)] += np.prod(np.where(bits, p, 1 - p))
    np.testing.assert_allclose(C.poisson_binomial_pmf(p), pmf, atol=1e-15)
    # a long one (blocks and FFT convolution) against the binomial when every p is equal
    from scipy.stats import binom

    np.testing.assert_allclose(C.poisson_binomial_pmf(np.full(3001, 0.37)), binom.pmf(np.arange(3002), 3001, 0.37),
                               atol=1e-12)


def test_ece_floor_matches_a_simulation_of_a_perfectly_calibrated_model():
    """The exact expected ECE of a model whose example i is correct with probability c_i, against a
    seeded simulation through the ordinary ECE code (reliability): 4000 draws, within 4 standard errors.
    The floor at 2,000 test images lies in the 0.016-0.027 the issue simulated for CIFAR-10."""
    rng = np.random.default_rng(0)
    conf = np.clip(rng.beta(5, 2, 2000), 0.1, 1.0)
    exact = C.expected_ece_calibrated(conf, 15)
    sims = np.array([C.reliability(conf, rng.random(conf.size) < conf, 15).ece for _ in range(4000)])
    assert abs(exact - sims.mean()) < 4 * sims.std() / np.sqrt(len(sims))
    assert 0.016 < exact < 0.027
    # more examples, lower floor (about 1 / sqrt(N))
    assert C.expected_ece_calibrated(np.tile(conf, 25), 15) < exact / 4


# --------------------------------------------------------------------------- Table 3 and Fig. 2


def _result(ds, arch, alpha, seed, ece_b, ece_a, t, acc=0.9):
    rel = C.reliability(np.array([0.95, 0.85, 0.6]), np.array([1, 1, 0])).to_dict()
    return {"model": {"dataset": ds, "arch": arch, "alpha": alpha, "seed": seed, "role": "teacher", "run": "x"},
            "bins": 15, "split": "test", "temperature": t,
            "before": {"ece": ece_b, "nll": 1.0, "accuracy": acc, "reliability": rel},
            "after": {"ece": ece_a, "nll": 0.8, "accuracy": acc, "reliability": rel}}


@pytest.fixture
def results(tmp_path):
    rows = [_result("c100", "resnet56", 0.0, 0, 0.15, 0.02, 1.8), _result("c100", "resnet56", 0.0, 1, 0.17, 0.03, 2.0),
            _result("c100", "resnet56", 0.05, 0, 0.03, 0.02, 1.0), _result("c100", "resnet56", 0.05, 1, 0.02, 0.02, 1.0),
            _result("c100", "resnet56", 0.1, 0, 0.09, 0.02, 0.8),
            _result("c10", "alexnet", 0.0, 0, 0.08, 0.01, 1.5), _result("c10", "alexnet", 0.1, 0, 0.04, 0.01, 0.9)]
    paths = []
    for i, r in enumerate(rows):
        paths.append(tmp_path / f"r{i}.json")
        write_json(paths[-1], r)
    return paths


def test_debiased_squared_ce_plugin_part_matches_torchmetrics_l2():
    """Without its variance term (bins of one example are left out of both) the estimate is the plug-in
    squared RMS calibration error: torchmetrics' l2 calibration error, squared (confidences off the edges)."""
    from torchmetrics.functional.classification import multiclass_calibration_error

    rng = np.random.default_rng(3)
    logits = rng.normal(size=(3000, 10)) * 2
    labels = rng.integers(0, 10, 3000)
    conf, correct = C.top_label(C.softmax(logits), labels)
    rel = C.reliability(conf, correct, 15)
    var = np.array([a * (1 - a) / (n - 1) if n >= 2 else 0.0 for a, n in zip(np.nan_to_num(rel.accuracy), rel.count)])
    got = C.debiased_squared_ce(rel.count, rel.accuracy, rel.confidence) + float(np.sum(rel.count / rel.n * var))
    tm = float(multiclass_calibration_error(torch.from_numpy(C.softmax(logits)), torch.from_numpy(labels), 10,
                                            n_bins=15, norm="l2"))
    assert rel.count.min() != 1 and got == pytest.approx(tm**2, rel=1e-5)
    assert C.debiased_squared_ce(rel.to_dict()["count"], rel.to_dict()["accuracy"], rel.to_dict()["confidence"]) == \
        pytest.approx(got - float(np.sum(rel.count / rel.n * var)))


@pytest.mark.parametrize("off", [0.0, 0.03])
def test_debiased_squared_ce_is_unbiased_where_the_plugin_ece_is_not(off):
    """Simulated models whose true accuracy is confidence - off on 2,000 test images: the mean of the
    estimate over many test sets is the true squared calibration error (off^2, up to the spread of the
    true accuracies within a bin), while the plug-in ECE sits well above |off| near 0."""
    rng = np.random.default_rng(4)
    est, plug = [], []
    for _ in range(400):
        conf = rng.uniform(0.3, 1.0, 2000)
        correct = rng.random(2000) < np.clip(conf - off, 0, 1)
        rel = C.reliability(conf, correct, 15)
        est.append(C.debiased_squared_ce(rel.count, rel.accuracy, rel.confidence))
        plug.append(rel.ece)
    se = np.std(est) / np.sqrt(len(est))
    # clipping at 1 and 0 does not occur here (conf - 0.03 > 0.27); the truth is off^2 within each bin
    assert np.mean(est) == pytest.approx(off**2, abs=4 * se + 2e-5)
    if off == 0.0:
        assert np.mean(plug) > 0.015  # the plug-in floor the debiased estimate removes



def test_calibration_table_mean_std_over_seeds(results, tmp_path):
    rows = C.calibration_table(results, tmp_path / "t.csv", tmp_path / "t.md", ls_alpha=None, digits=3)
    assert [(r["dataset"], r["arch"]) for r in rows] == [("c10", "alexnet"), ("c100", "resnet56")]
    r = rows[1]
    assert r["ls_alpha"] == 0.05 and r["hard_seeds"] == 2 and r["ls_seeds"] == 2  # smallest nonzero alpha
    assert r["ece_hard_frac_mean"] == pytest.approx(0.16) and r["ece_hard_frac_std"] == pytest.approx(np.std([0.15, 0.17], ddof=1))
    assert r["ece_ts_frac_mean"] == pytest.approx(0.025) and r["temperature_mean"] == pytest.approx(1.9)
    assert r["ece_ls_frac_mean"] == pytest.approx(0.025)
    assert rows[0]["ece_ls_frac_std"] == 0.0 and rows[0]["ls_alpha"] == 0.1
    assert r["accuracy_hard_pct_mean"] == pytest.approx(90.0) and r["accuracy_ls_pct_std"] == 0.0  # JSONs: 0.9
    with open(tmp_path / "t.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 2
    md = (tmp_path / "t.md").read_text()
    assert "| c100 | resnet56 | 0.160 ± 0.014 | 0.025 ± 0.007 (T = 1.90) | 0.025 ± 0.007 (α = 0.05) |" in md
    rows = C.calibration_table(results, tmp_path / "t.csv", tmp_path / "t.md", ls_alpha=0.1)
    assert rows[1]["ece_ls_frac_mean"] == pytest.approx(0.09)
    with pytest.raises(ConfigError, match="calibration.ls_alpha 0.3 has no model"):
        C.calibration_table(results, tmp_path / "t.csv", tmp_path / "t.md", ls_alpha=0.3)


def test_reliability_figure_is_written(results, tmp_path):
    from matplotlib.image import imread

    out = [tmp_path / "f.png", tmp_path / "f.pdf"]
    C.reliability_figure(results[:5], out, ls_alpha=None, dpi=50)
    assert imread(out[0]).shape[0] > 50 and out[1].stat().st_size > 1000
    with pytest.raises(ValueError, match="one dataset/arch"):
        C.reliability_figure(results, out)


def test_table3_grids_from_the_config():
    cfg = {"teachers": [{"dataset": "a", "arch": "x", "alphas": [0.0, 0.1, 0.05], "seeds": [0, 1]},
                        {"dataset": "b", "arch": "y", "alphas": [0.1, 0.2], "seeds": [0]},  # no hard targets
                        {"dataset": "c", "arch": "z", "alphas": [0.0], "seeds": [3]}],  # no LS model
           "calibration": {"ls_alpha": None}}
    assert C.table3_grids(cfg) == [("a", "x", 0.05, [0, 1])]
    cfg2 = copy.deepcopy(cfg)
    cfg2["calibration"]["ls_alpha"] = 0.1
    with pytest.raises(ConfigError, match=r"calibration.ls_alpha 0.1 is not in teachers\[2\].alphas"):
        C.table3_grids(cfg2)
    cfg2["teachers"].pop()
    assert C.table3_grids(cfg2) == [("a", "x", 0.1, [0, 1])]
