"""The claims report (lspipe.experiments.claims) and the experiment table (lspipe.experiments.experiment_table) on synthetic
inputs built so that a wrong rule gives a wrong verdict: the decision rule at its edges, the
zero-variance guard, pairing by seed, alpha* chosen on validation, the distillation contrast,
the erasure contrast, tightness over several triples and both splits, and the CLI's inputs."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import yaml

from lspipe.engine.dumpfile import write_h5
from lspipe.experiments import claims, projection
from lspipe.experiments.experiment_table import benchmark_seconds, experiment_rows

CFG = claims.statistics.settings()
ABS = {**CFG, "accuracy_margin": 0.5}  # a fixed 0.5 pp accuracy margin (the default is relative to the error rate)


def _eval(ds, arch, role, run, alpha, seed, acc, n=2000):
    return {"model": {"dataset": ds, "arch": arch, "role": role, "run": run, "alpha": alpha, "seed": seed},
            "val": {"accuracy": acc, "nll": 0.5, "n": 500}, "test": {"accuracy": acc, "nll": 0.5, "n": n}}


def _teachers(gains, base=0.80, n=2000, alphas=(0.1,)):
    """Teacher evals of alpha 0 and ``alphas`` with accuracy(alpha) - accuracy(0) = gains[seed] (fractions)."""
    out = []
    for s, g in enumerate(gains):
        out.append(_eval("c10", "resnet20", "teacher", f"a0_s{s}", 0.0, s, base + 0.001 * s, n))
        for a in alphas:
            out.append(_eval("c10", "resnet20", "teacher", f"a{a:g}_s{s}", a, s, base + 0.001 * s + g, n))
    return out


def _stats(values, resolution=0.0, confidence=0.95):
    return claims.statistics.effect_stats(dict(enumerate(values)), confidence, resolution)


# --------------------------------------------------------------------------- decision rule


def test_effect_stats_t_interval_against_scipy():
    from scipy import stats

    vals = {0: 1.0, 1: 2.0, 2: 4.0, 3: 3.5}
    st = claims.statistics.effect_stats(vals, 0.9)
    v = np.array(list(vals.values()))
    lo, hi = stats.t.interval(0.9, len(v) - 1, loc=v.mean(), scale=stats.sem(v))
    assert st["mean"] == pytest.approx(v.mean()) and st["ci"] == pytest.approx([lo, hi])
    assert st["one_sided_level"] == pytest.approx(0.05) and not st["floored"]
    one = claims.statistics.effect_stats({3: 0.7})
    assert one["n"] == 1 and one["std"] is None and one["ci"] is None


@pytest.mark.parametrize("kind,values,bound,expected", [
    ("greater", [1.0, 1.2, 0.9], 0.0, claims.statistics.SUPPORTED),
    ("greater", [-1.0, -1.2, -0.9], 0.0, claims.statistics.CONTRADICTED),
    ("greater", [1.0, -1.0, 0.1], 0.0, claims.statistics.INCONCLUSIVE),
    ("greater", [1.0], 0.0, claims.statistics.INCONCLUSIVE),  # one seed
    # "does not hurt": an interval wholly below 0 but above -margin is supported ...
    ("at_least", [-0.1, -0.2, -0.15], 0.5, claims.statistics.SUPPORTED),
    ("at_least", [-2.0, -2.1, -1.9], 0.5, claims.statistics.CONTRADICTED),
    # ... and an interval below 0 that straddles -margin is neither (a rule testing "excludes 0" would contradict)
    ("at_least", [-0.45, -0.55, -0.5], 0.5, claims.statistics.INCONCLUSIVE),
    ("at_most", [0.1, 0.0, 0.05], 0.5, claims.statistics.SUPPORTED),
    ("at_most", [2.0, 2.1, 1.9], 0.5, claims.statistics.CONTRADICTED),
    ("at_most", [0.3, 0.8, 0.5], 0.5, claims.statistics.INCONCLUSIVE),  # straddles +margin
    ("within", [0.001, -0.002, 0.0], 0.01, claims.statistics.SUPPORTED),
    ("within", [0.05, 0.06, 0.055], 0.01, claims.statistics.CONTRADICTED),
    ("within", [0.0, 0.02, -0.02], 0.01, claims.statistics.INCONCLUSIVE),
])
def test_decide(kind, values, bound, expected):
    st = _stats(values)
    verdict, _ = claims.statistics.decide(st, kind, bound, min_seeds=3)
    assert verdict == expected
    if kind == "at_least" and expected == claims.statistics.INCONCLUSIVE:
        lo, hi = st["ci"]
        assert lo < -bound < hi < 0  # the case the issue names: below 0, straddling -margin


def test_n2_with_a_decisive_interval_needs_min_seeds():
    st = _stats([1.0, 1.01])
    assert st["ci"][0] > 0  # decisive on its own ...
    assert claims.statistics.decide(st, "greater", 0.0, min_seeds=3)[0] == claims.statistics.INCONCLUSIVE  # ... but 2 < min_seeds
    assert claims.statistics.decide(st, "greater", 0.0, min_seeds=2)[0] == claims.statistics.SUPPORTED


def test_an_interval_ending_exactly_on_a_bound_is_not_decisive():
    def st(lo, hi, values):
        return {"n": 3, "mean": (lo + hi) / 2, "ci": [lo, hi], "values": values, "sd_used": 1.0}

    assert claims.statistics.decide(st(0.0, 1.0, [0.4, 0.5, 0.6]), "greater", 0.0, 3)[0] == claims.statistics.INCONCLUSIVE
    assert claims.statistics.decide(st(1e-9, 1.0, [0.4, 0.5, 0.6]), "greater", 0.0, 3)[0] == claims.statistics.SUPPORTED
    assert claims.statistics.decide(st(-1.0, 0.0, [-0.4, -0.5, -0.6]), "greater", 0.0, 3)[0] == claims.statistics.INCONCLUSIVE
    assert claims.statistics.decide(st(-0.5, 0.2, [0, 0, 0]), "at_least", 0.5, 3)[0] == claims.statistics.INCONCLUSIVE
    assert claims.statistics.decide(st(-0.9, -0.5, [-0.7] * 3), "at_least", 0.5, 3)[0] == claims.statistics.INCONCLUSIVE
    assert claims.statistics.decide(st(-0.2, 0.5, [0, 0, 0]), "at_most", 0.5, 3)[0] == claims.statistics.INCONCLUSIVE


def test_the_interval_alone_decides_k_of_n_is_a_description():
    # rule version 3: no "every seed on the claimed side" conjunct (it lost power as seeds were added)
    values = dict(enumerate([1.0] * 30 + [-0.1]))
    st = claims.statistics.effect_stats(values)
    assert claims.statistics.decide(st, "greater", 0.0, 3)[0] == claims.statistics.SUPPORTED
    assert "30 of 31 on the claimed side: a description, not the rule" in claims.statistics.reason_text(
        st, "greater", 0.0, "pp", claims.statistics.SUPPORTED, "x")


def test_zero_variance_never_gives_a_decisive_zero_width_interval():
    # the default run: both seeds differ by exactly 3 of 449 test images
    h = 100 / 449
    two = _stats([3 * h, 3 * h], resolution=h)
    assert two["std"] == 0 and two["floored"] and two["sd_used"] == pytest.approx(h / 2)
    assert two["ci"][1] - two["ci"][0] > 0
    assert claims.statistics.decide(two, "greater", 0.0, min_seeds=2)[0] == claims.statistics.INCONCLUSIVE  # t(1) makes it wide
    assert two["ci"][0] < 0 < 3 * h < two["ci"][1]
    # three identical seeds: half-width t(2) * (h / 2) / sqrt(3), no less
    from scipy.stats import t

    three = _stats([3 * h] * 3, resolution=h)
    assert three["half_width"] == pytest.approx(t.ppf(0.975, 2) * (h / 2) / math.sqrt(3))
    # a continuous effect with zero spread gives no interval at all
    flat = _stats([0.2, 0.2, 0.2])
    verdict, why = claims.statistics.decide(flat, "greater", 0.0, 3)
    assert verdict == claims.statistics.INCONCLUSIVE and "same value" in why
    # the guard in a claim: identical accuracy gains of 3 images in every seed
    c = claims.teacher_checks.accuracy_claims(_teachers([3 / 449] * 3, n=449), {**CFG, "accuracy_margin": 0.0})[0]
    assert c["effect"]["floored"] and c["effect"]["half_width"] > 0 and c["effect"]["resolution"] == pytest.approx(h)


def test_decidable_effect_and_seed_recommendation():
    from scipy.stats import chi2, t

    st = _stats([-1.85, -2.6, -1.4])  # the CPU preset's accuracy effect
    d = claims.statistics.decidability(st, "at_least", 0.5, "pp", 3)
    w = t.ppf(0.975, 2) * st["std"] / math.sqrt(3)
    assert d["half_width"] == pytest.approx(w) and d["undecidable_near_zero"]
    assert "undecidable at 3 seeds" in d["text"] and f"above {-0.5 + w:+.4g} pp" in d["text"]
    pw = d["power"]
    # 80 % power at a true effect of 0: the smallest n whose power reaches 0.8, each n's power by simulation below
    assert pw["sd_upper"] == pytest.approx(st["std"] * math.sqrt(2 / chi2.ppf(0.2, 2)))
    assert d["seeds_needed"] == pw["at_zero"] and pw["at_zero_sd_upper"] > pw["at_zero"] > 3
    assert f"{pw['at_zero']} at a true effect of 0" in d["text"]
    assert pw["at_observed"] == claims.statistics.SEEDS_SEARCH_MAX + 1  # an observed effect beyond the margin is never supported
    narrow = claims.statistics.decidability(_stats([0.1, 0.12, 0.11]), "at_least", 0.5, "pp", 3)
    assert not narrow["undecidable_near_zero"]


# --------------------------------------------------------------------------- claim 1


def test_accuracy_claim_verdicts_and_reason_line():
    sup = claims.teacher_checks.accuracy_claims(_teachers([0.003, 0.004, 0.002]), ABS)
    assert [c["verdict"] for c in sup] == [claims.statistics.SUPPORTED, claims.statistics.NOT_COMPARED] and sup[0]["role"] == claims.statistics.PRIMARY
    assert sup[1]["role"] == claims.statistics.REGIME and "paper reports no accuracy" in sup[1]["reason"]  # "c10": no paper row
    assert sup[0]["effect"]["mean"] == pytest.approx(0.3)  # percentage points, paired by seed
    r = sup[0]["reason"]
    assert "mean +0.3 pp" in r and "s0 +0.3" in r and "excludes 0" in r and "against the margin 0.5 pp" in r
    assert "one-sided test at level 2.5 %" in r
    con = claims.teacher_checks.accuracy_claims(_teachers([-0.03, -0.04, -0.035]), ABS)
    assert con[0]["verdict"] == claims.statistics.CONTRADICTED
    one = claims.teacher_checks.accuracy_claims(_teachers([0.01]), ABS)
    assert one[0]["verdict"] == claims.statistics.INCONCLUSIVE and claims.statistics.NO_SPREAD in one[0]["reason"]
    md = claims.rendering.render_markdown(claims.statistics._assign_ids(one), CFG)
    assert claims.statistics.NO_SPREAD in md and "± 0" not in md


def test_accuracy_other_alphas_are_descriptive():
    c = claims.teacher_checks.accuracy_claims(_teachers([0.003, 0.004, 0.002], alphas=(0.1, 0.3)), {**CFG, "ls_alpha": 0.1})
    assert [(x["role"], x["label"].split(",")[0]) for x in c] == [(claims.statistics.PRIMARY, "LS α = 0.1"),
                                                                 (claims.statistics.DESCRIPTIVE, "LS α = 0.3"),
                                                                 (claims.statistics.REGIME, "")]


def test_pairing_by_seed_removes_seed_offsets():
    # seed offsets of 5 pp dwarf the 0.3 pp effect; unpaired it would straddle zero, paired it is supported
    evals = []
    for s, off in enumerate([0.0, 0.05, -0.05]):
        evals.append(_eval("c", "r", "teacher", f"a0_s{s}", 0.0, s, 0.8 + off))
        evals.append(_eval("c", "r", "teacher", f"a0.1_s{s}", 0.1, s, 0.8 + off + 0.003 + 0.0001 * s))
    c = claims.teacher_checks.accuracy_claims(evals, {**CFG, "accuracy_margin": 0.0})[0]
    assert c["verdict"] == claims.statistics.SUPPORTED


def test_ls_alpha_not_in_grid_is_not_run():
    c = claims.teacher_checks.accuracy_claims(_teachers([0.01, 0.01, 0.01]), {**CFG, "ls_alpha": 0.3})
    assert c[0]["verdict"] == claims.statistics.NOT_RUN and "claims.ls_alpha" in c[0]["config_key"]


def test_nothing_configured_is_not_run_with_keys():
    checks = claims.build_checks(cfg=CFG)
    assert {c["verdict"] for c in checks} == {claims.statistics.NOT_RUN}
    keys = " ".join(c.get("config_key", "") for c in checks)
    for key in ("teachers", "projections.rows", "distillation", "teachers[].probe"):
        assert key in keys
    assert {s["claim"] for s in claims.rendering.summarise(checks)} == {1, 2, 3, 4, 5}  # claim 6 only with a distillation_toy


def test_defaults_come_from_the_schema():
    from lspipe.base.defaults import node

    schema = node("claims")["properties"]
    assert CFG == {k: v["default"] for k, v in schema.items()}
    assert not hasattr(claims, "DEFAULTS")


# --------------------------------------------------------------------------- claim 2: tightness


def test_tightness_of_a_hand_made_configuration():
    # equilateral templates of side 10; class 0 points at distance 1 from their centroid, class 1 at 2, class 2 at 3
    t = np.array([[0.0, 0.0], [10.0, 0.0], [5.0, 5.0 * math.sqrt(3)]])
    pts, lab = [], []
    for c, r in enumerate([1.0, 2.0, 3.0]):
        for ang in (0, math.pi / 2, math.pi, 3 * math.pi / 2):
            pts.append(t[c] + r * np.array([math.cos(ang), math.sin(ang)]))
            lab.append(c)
    out = projection.tightness(np.array(pts), np.array(lab), t)
    assert out["spreads"] == pytest.approx([1.0, 2.0, 3.0])
    assert out["template_distance"] == pytest.approx(10.0)
    assert out["ratio"] == pytest.approx(0.2)


def _direct_ratio(x, y, w, classes):
    spreads = []
    for c in classes:
        pc = [p for p, lab in zip(x, y) if lab == c]
        cx = sum(p[0] for p in pc) / len(pc)
        cy = sum(p[1] for p in pc) / len(pc)
        spreads.append(sum(math.hypot(p[0] - cx, p[1] - cy) for p in pc) / len(pc))
    d = [math.hypot(*(w[i] - w[j])) for i, j in itertools.combinations(classes, 2)]
    return sum(spreads) / 3 / (sum(d) / 3)


def test_tightness_rows_from_a_dump_match_a_direct_computation(tmp_path):
    """With every bias equal, the plane through the templates [w_k, b] is {[x, 1]}: the projection
    is a rigid motion of the raw 2-D features, so the ratio can be computed directly on them.
    Both the training and the validation split are measured."""
    rng = np.random.default_rng(0)
    k = 4
    w = rng.normal(size=(k, 2)) * 5
    b = np.full(k, 0.7)
    data = {}
    for split, n in (("train", 30), ("val", 25)):
        y = np.repeat(np.arange(k), n)
        x = w[y] + rng.normal(size=(len(y), 2)) * (1 + y[:, None])
        data[split] = (x, y)
    splits = {}
    for split, (x, y) in data.items():
        logits = x @ w.T + b
        splits[split] = (y, np.arange(len(y)), lambda s, e, x=x, lg=logits: (x[s:e].astype(np.float32),
                                                                             lg[s:e].astype(np.float32)))
    path = tmp_path / "d.h5"
    write_h5(path, classes=[f"c{i}" for i in range(k)], weight=w, bias=b, splits=splits,
             attrs={"dataset": "toy", "arch": "lin", "alpha": 0.0, "seed": 0, "run": "a0_s0"})
    fig1 = [{"dataset": "toy", "arch": "lin", "classes": ["c2", "c0", "c3"]}]
    out = projection.tightness_rows([path], fig1, seed=0)
    w32 = w.astype(np.float32).astype(float)
    assert {r["split"] for r in out} == {"train", "val"}
    for split, (x, y) in data.items():
        x32 = x.astype(np.float32).astype(float)
        f = [r for r in out if r["kind"] == "fig1" and r["split"] == split]
        assert len(f) == 1 and f[0]["n"] == 3 * len(y) // k
        assert f[0]["ratio"] == pytest.approx(_direct_ratio(x32, y, w32, [2, 0, 3]), rel=1e-6)
        rand = [r for r in out if r["kind"] == "random" and r["split"] == split]
        assert len(rand) == math.comb(k, 3)  # all triples when there are at most claims.tightness_triples
        for r in rand:
            ids = [int(c[1:]) for c in r["classes"].split("|")]
            assert r["ratio"] == pytest.approx(_direct_ratio(x32, y, w32, ids), rel=1e-6)


def test_class_triples_seeded_and_distinct():
    a = projection.class_triples(100, 50, seed=3)
    assert len(a) == 50 == len(set(a)) and a == projection.class_triples(100, 50, seed=3)
    assert all(t[0] < t[1] < t[2] < 100 for t in a)
    assert projection.class_triples(5, 100, 0) == list(itertools.combinations(range(5), 3))
    assert len(projection.class_triples(10, CFG["tightness_triples"], 0)) == 120  # CIFAR-10: all 120


def _tight_rows(ratio, seeds=3, triples=4, splits=("train", "val"), kind="random"):
    """Rows with ratio(alpha, seed, triple, split) given by ``ratio``."""
    rows = []
    for split, s, t, a in itertools.product(splits, range(seeds), range(triples), (0.0, 0.1)):
        rows.append({"dataset": "c", "arch": "r", "alpha": a, "seed": s, "kind": kind, "row": t, "split": split,
                     "classes": f"a{t}|b|c", "ratio": ratio(a, s, t, split)})
    return rows


def test_tightness_over_triples_per_seed_means_and_both_splits():
    # LS tightens by (1 + s / 10) * (triple + 1)^2 / 100 on val (skewed over triples: mean != median), and
    # loosens by 0.05 + s / 100 on train
    def ratio(a, s, t, split):
        base = 0.6 + 0.01 * t
        if a == 0:
            return base
        return base - (1 + s / 10) * (t + 1) ** 2 / 100 if split == "val" else base + 0.05 + s / 100

    checks = claims.teacher_checks.tightness_claims(_tight_rows(ratio), CFG, 0.1, True)
    prim = next(c for c in checks if c["role"] == claims.statistics.PRIMARY)
    assert "val split" in prim["label"] and prim["verdict"] == claims.statistics.SUPPORTED
    expected = [np.mean([(1 + s / 10) * (t + 1) ** 2 / 100 for t in range(4)]) for s in range(3)]
    assert prim["effect"]["values"] == pytest.approx(expected)  # mean over the 4 triples, per seed
    assert prim["numbers"]["class triples"] == 4
    ls_mean = np.mean([ratio(0.1, s, t, "val") for s in range(3) for t in range(4)])
    h_mean = np.mean([ratio(0.0, s, t, "val") for s in range(3) for t in range(4)])
    assert prim["numbers"]["ratio_LS / ratio_hard (α=0.1)"] == pytest.approx(ls_mean / h_mean)
    train = next(c for c in checks if c["role"] == claims.statistics.DESCRIPTIVE and "train split" in c["label"])
    assert train["effect"]["values"] == pytest.approx([-0.05, -0.06, -0.07]) and train["verdict"] == claims.statistics.CONTRADICTED
    # the primary split is configurable; the claim follows it
    other = claims.teacher_checks.tightness_claims(_tight_rows(ratio), {**CFG, "tightness_split": "train"}, 0.1, True)
    assert next(c for c in other if c["role"] == claims.statistics.PRIMARY)["verdict"] == claims.statistics.CONTRADICTED


def test_tightness_fig1_rows_are_descriptive():
    rows = _tight_rows(lambda a, s, t, sp: 0.5 - a - s * a / 10, triples=1)
    rows += _tight_rows(lambda a, s, t, sp: 0.2 + (3 + s) * a, triples=1, kind="fig1")
    checks = claims.statistics._assign_ids(claims.teacher_checks.tightness_claims(rows, CFG, 0.1, True))
    fig1 = [c for c in checks if "Fig. 1" in c["label"]]
    assert len(fig1) == 2 and {c["role"] for c in fig1} == {claims.statistics.DESCRIPTIVE}
    assert {c["verdict"] for c in fig1} == {claims.statistics.CONTRADICTED}
    assert claims.rendering.summarise(checks)[0]["verdict"] == claims.statistics.SUPPORTED  # descriptive checks do not override


# --------------------------------------------------------------------------- claim 3


CONFS = np.array([0.55, 0.65, 0.75, 0.85, 0.95])


def _rel(ce, n=2000):
    """A reliability diagram (5 equal bins of the 15, overconfident by the same d) whose debiased squared
    RMS calibration error is exactly ce^2 (d solved for)."""
    from scipy.optimize import brentq

    from lspipe.experiments.calibration import debiased_squared_ce

    counts = [0] * 15
    idx = [8, 9, 11, 12, 14]
    for i in idx:
        counts[i] = n // 5

    def diagram(d):
        acc, conf = [None] * 15, [None] * 15
        for i, c in zip(idx, CONFS):
            acc[i], conf[i] = float(c - d), float(c)
        return {"count": counts, "accuracy": acc, "confidence": conf, "n": n}

    def f(d):
        r = diagram(d)
        return debiased_squared_ce(r["count"], r["accuracy"], r["confidence"]) - ce**2

    return diagram(brentq(f, 0.0, 0.5, xtol=1e-14))


def _cal(alpha, seed, ece, ece_ts, temp, val_ece, nll=1.0, nll_ts=0.9, val_nll=1.0, floor=0.02, at_bound=False,
         run=None):
    """A calibration JSON whose RMS calibration error (debiased) is ``ece`` at T = 1 and ``ece_ts`` after scaling."""
    return {"model": {"dataset": "c", "arch": "r", "alpha": alpha, "seed": seed, "role": "teacher",
                      "run": run or f"a{alpha:g}_s{seed}"}, "split": "test",
            "bins": 15, "temperature": temp, "fit": {"at_bound": at_bound},
            "val": {"ece": val_ece, "nll": val_nll, "ece_floor": floor},
            "before": {"ece": ece, "nll": nll, "ece_floor": floor, "reliability": _rel(ece)},
            "after": {"ece": ece_ts, "nll": nll_ts, "ece_floor": floor, "reliability": _rel(ece_ts)}}


def _by_id(checks):
    return {c["id"]: c for c in claims.statistics._assign_ids(checks)}


def test_alpha_star_is_chosen_on_validation_not_test():
    res = []
    for s in range(3):
        res += [_cal(0.0, s, 0.15, 0.020 + 0.001 * s, 2.0, 0.15),
                # alpha 0.1 wins on test (0.021) but loses on validation (0.09) ...
                _cal(0.1, s, 0.021 + 0.001 * s, 0.0, 1.0, 0.09),
                # ... alpha 0.3 wins on validation (0.03) and is far off on test (0.09): it must be compared
                _cal(0.3, s, 0.090 + 0.002 * s, 0.0, 1.0, 0.03)]
    c = _by_id(claims.teacher_checks.calibration_claims(res, CFG))
    assert c["3a"]["numbers"]["α*"] == 0.3 and c["3a"]["label"] == "α* = 0.3"
    assert c["3a"]["effect"]["values"] == pytest.approx([0.09 + 0.002 * s - 0.020 - 0.001 * s for s in range(3)])
    assert c["3a"]["verdict"] == claims.statistics.CONTRADICTED
    assert any("largest α" in n for n in c["3a"]["notes"])  # alpha* on the grid's edge is flagged
    assert claims.teacher_checks.choose_alpha({0.1: 0.05, 0.3: 0.05}, [0.1, 0.3])[0] == 0.1  # ties: the smaller alpha
    # by validation NLL instead, alpha 0.1 wins
    res_nll = [dict(r, val={**r["val"], "nll": 0.5 if r["model"]["alpha"] == 0.1 else 1.0}) for r in res]
    assert _by_id(claims.teacher_checks.calibration_claims(res_nll, {**CFG, "calibration_selection": "nll"}))["3a"]["numbers"]["α*"] == 0.1


def test_ls_lowers_ece_but_does_not_reach_temperature_scaling():
    res = []
    for s in range(3):  # LS 0.164 vs hard 0.30 (lower), but temperature scaling reaches 0.027
        res += [_cal(0.0, s, 0.30 + 0.003 * s, 0.027 + 0.002 * s, 3.1 + 0.02 * s, 0.3, nll=2.0 + 0.01 * s,
                     nll_ts=1.3 + 0.02 * s), _cal(0.1, s, 0.164 + 0.01 * s, 0.0, 1.0, 0.16, nll=1.5 + 0.03 * s)]
    checks = claims.statistics._assign_ids(claims.teacher_checks.calibration_claims(res, CFG))
    c = {x["id"]: x for x in checks}
    assert c["3a"]["verdict"] == claims.statistics.CONTRADICTED  # primary: not within 0.02 of temperature scaling
    assert c["3b"]["verdict"] == claims.statistics.SUPPORTED  # descriptive: LS lowers the ECE of hard targets
    # 3d: NLL against temperature scaling is a number, no verdict (the paper claims nothing there)
    assert c["3c"]["verdict"] == claims.statistics.SUPPORTED and c["3d"]["verdict"] == claims.statistics.REPORTED
    assert c["3d"]["effect"]["mean"] == pytest.approx(np.mean([1.5 + 0.03 * s - 1.3 - 0.02 * s for s in range(3)]))
    assert c["3R"]["role"] == claims.statistics.REGIME and c["3R"]["verdict"] == claims.statistics.SUPPORTED  # T > 1
    (s,) = claims.rendering.summarise(checks)
    assert s["verdict"] == claims.statistics.CONTRADICTED and s["primary"] == "3a"
    assert {d["id"] for d in s["descriptive"]} == {"3b", "3c", "3d"}
    assert all(set(d) == {"id", "effect"} for d in s["descriptive"])  # exploratory: effects, no verdict words
    assert s["regime"] == [{"id": "3R", "verdict": claims.statistics.SUPPORTED}]
    assert "ECE floor" in " ".join(c["3a"]["numbers"])
    md = claims.rendering.render_markdown(checks, CFG)
    row = next(line for line in md.splitlines() if line.startswith("| 3."))
    assert "**contradicted** (3a)" in row and "3R supported" in row
    assert "3b supported" not in row and "3b +" in row and claims.statistics.REPORTED not in row


def test_calibration_non_inferiority_is_one_sided():
    res = []
    for s in range(3):  # LS better calibrated than temperature scaling by far: supported, not "outside a band"
        res += [_cal(0.0, s, 0.15, 0.05 + 0.001 * s, 2.0, 0.15), _cal(0.1, s, 0.01, 0.0, 1.0, 0.01)]
    assert _by_id(claims.teacher_checks.calibration_claims(res, CFG))["3a"]["verdict"] == claims.statistics.SUPPORTED


def test_temperature_at_the_search_edge_is_flagged_not_a_finding():
    res = []
    for s in range(3):
        res += [_cal(0.0, s, 0.1, 0.05, 0.01, 0.1, at_bound=s < 2), _cal(0.1, s, 0.05, 0.0, 0.01, 0.05, at_bound=True)]
    c = _by_id(claims.teacher_checks.calibration_claims(res, CFG))
    assert c["3R"]["effect"]["seeds"] == [2] and "left out" in c["3R"]["notes"][0]
    assert any("edge of the search range" in n for n in c["3a"]["notes"])


def test_calibration_without_validation_metrics_is_not_compared():
    res = [dict(_cal(a, s, 0.1, 0.05, 2.0, 0.1)) for a in (0.0, 0.1) for s in range(3)]
    for r in res:
        del r["val"]
    c = _by_id(claims.teacher_checks.calibration_claims(res, CFG))["3a"]
    assert c["verdict"] == claims.statistics.NOT_COMPARED and "calibrate" in c["config_key"]


# --------------------------------------------------------------------------- claim 4


SLOPES = {0: -10.0, 1: 10.0, 2: 0.0}  # seed-dependent baseline slopes (pp per unit alpha)


def _baseline(s, a):
    return 80.0 + 2.0 * s + SLOPES[s] * a


def _distillation(hard_gain, ls_gain, seeds=3, temps=(1, 4, 8), t8_gamma=0.9):
    """Baselines at alphas 0, 0.3, 0.6 with a seed-dependent slope; the hard teacher's students at
    T = 1 (gamma 0.03), 4 (0.3 - 0.01 s) and 8 (out of range); LS teachers 0.1 and 0.3 at T = 1
    (gamma 0.15, 0.35). A student scores baseline(gamma) + gain[seed]."""
    teachers, students, gamma = [], [], {}
    for s in range(seeds):
        for a, acc in ((0.0, 0.90), (0.1, 0.905), (0.3, 0.91)):
            teachers.append(_eval("c", "big", "teacher", f"a{a:g}_s{s}", a, s, acc + 0.002 * s))
        for a in (0.0, 0.3, 0.6):
            students.append(_eval("c", "small", "student", f"a{a:g}_s{s}", a, s, _baseline(s, a) / 100))
        g_t = {1: 0.03, 4: 0.3 - 0.01 * s, 8: t8_gamma}
        for t in temps:
            gamma[("0", s, f"{t:g}")] = g_t[t]
            students.append(_eval("c", "small", "student", f"kd-big-a0-T{t:g}_s{s}", 0.0, s,
                                  (_baseline(s, g_t[t]) + hard_gain[s] + 0.1 * t) / 100))
        gamma[("0", s, "1")] = g_t[1]
        for a, g in ((0.1, 0.15), (0.3, 0.35)):
            gamma[(f"{a:g}", s, "1")] = g
            students.append(_eval("c", "small", "student", f"kd-big-a{a:g}-T1_s{s}", 0.0, s,
                                  (_baseline(s, g) + ls_gain[s] + a) / 100))
    return teachers, students, gamma


def test_interpolate_baseline():
    assert claims.student_checks.interpolate_baseline({0.0: 80.0, 0.3: 82.0}, 0.15) == pytest.approx(81.0)
    assert claims.student_checks.interpolate_baseline({0.0: 80.0, 0.3: 82.0}, 0.5) is None  # no extrapolation
    assert claims.student_checks.interpolation_error({0: {0.0: 80.0, 0.3: 83.0, 0.6: 82.0}}) == pytest.approx([81.0 - 83.0])


def test_distillation_primary_contrast_per_seed():
    hard_gain, ls_gain = [1.0, 1.2, 0.9], [-0.3, -0.1, -0.2]
    t, s, g = _distillation(hard_gain, ls_gain)
    checks = _by_id(claims.student_checks.distillation_claims("c", t, s, g, CFG))
    prim = checks["4a"]
    assert prim["role"] == claims.statistics.PRIMARY and prim["verdict"] == claims.statistics.SUPPORTED
    # by hand: T = 1 and 4 in range (T = 8's gamma 0.9 lies beyond the baseline alphas), both LS teachers
    expected = [np.mean([hard_gain[k] + 0.1, hard_gain[k] + 0.4]) - np.mean([ls_gain[k] + 0.1, ls_gain[k] + 0.3])
                for k in range(3)]
    assert prim["effect"]["values"] == pytest.approx(expected, abs=1e-9)
    assert prim["numbers"]["in-range temperatures"] == "1, 4"
    assert any("T = 8" in n for n in prim["notes"])
    # the loss form and its departure from the slides' equation are named
    assert any("'teacher'" in n and "slides' equation" in n and "T = 1, not at T" in n for n in prim["notes"])
    assert any("leave-one-out" in n for n in prim["notes"])
    # descriptive per-T rows; T = 8 is not compared (naming the key), never inconclusive
    t8 = next(c for c in checks.values() if c["label"] == "T = 8")
    assert t8["verdict"] == claims.statistics.NOT_COMPARED and "baseline_alphas" in t8["config_key"]
    assert next(c for c in checks.values() if c["label"] == "T = 4")["role"] == claims.statistics.DESCRIPTIVE
    assert checks["4R"]["role"] == claims.statistics.REGIME


def test_distillation_contrast_reads_the_ls_teachers_gamma_at_their_temperature():
    """distillation[].ls_temperature: the LS teachers' students at T = 2 (run names ...-T2_...) are placed at
    their teacher's gamma at T = 2, not at T = 1; the same students and gammas give the same contrast."""
    hard_gain, ls_gain = [1.0, 1.2, 0.9], [-0.3, -0.1, -0.2]
    t, s, g = _distillation(hard_gain, ls_gain)
    at1 = _by_id(claims.student_checks.distillation_claims("c", t, s, g, CFG))
    moved, g2 = [], dict(g)
    for ev in s:
        m = dict(ev["model"])
        if m["run"].startswith("kd-big-a0.") and "-T1_" in m["run"]:  # an LS teacher's student
            m["run"] = m["run"].replace("-T1_", "-T2_")
        moved.append({**ev, "model": m})
    for (a, seed, temp), v in g.items():
        if a != "0" and temp == "1":
            g2[(a, seed, "2")] = v  # the LS teachers' gamma at T = 2 ...
            g2[(a, seed, "1")] = 0.99  # ... and a gamma at T = 1 that must not be read (out of range)
    at2 = _by_id(claims.student_checks.distillation_claims("c", t, moved, g2, CFG))
    assert at2["4a"]["effect"]["values"] == pytest.approx(at1["4a"]["effect"]["values"])
    assert "at T = 2" in at2["4a"]["statement"] and "γ of the LS teacher α = 0.1 at T = 2" in at2["4a"]["numbers"]


def test_a_mis_paired_seed_changes_the_distillation_verdict():
    """The seed-dependent baseline slopes make the contrast depend on using the student's own seed's
    curve: pairing the students of seed s with the baselines of seed s + 1 must change the verdict."""
    hard_gain, ls_gain = [1.0, 1.2, 0.9], [-0.3, -0.1, -0.2]
    t, s, g = _distillation(hard_gain, ls_gain)
    right = _by_id(claims.student_checks.distillation_claims("c", t, s, g, CFG))["4a"]
    shifted = []
    for ev in s:
        m = dict(ev["model"])
        if not m["run"].startswith("kd-"):  # relabel the baselines: seed k's curve becomes seed k - 1's
            k = (int(m["seed"]) - 1) % 3
            m.update(seed=k, run=m["run"].rsplit("_s", 1)[0] + f"_s{k}")
        shifted.append({**ev, "model": m})
    wrong = _by_id(claims.student_checks.distillation_claims("c", t, shifted, g, CFG))["4a"]
    assert right["verdict"] == claims.statistics.SUPPORTED and wrong["verdict"] != claims.statistics.SUPPORTED
    assert wrong["effect"]["values"] != pytest.approx(right["effect"]["values"])


def test_distillation_with_no_temperature_in_range_is_not_compared():
    t, s, g = _distillation([1.0] * 3, [0.0] * 3)
    g = {k: (0.95 if k[0] == "0" else v) for k, v in g.items()}
    prim = _by_id(claims.student_checks.distillation_claims("c", t, s, g, CFG))["4a"]
    assert prim["verdict"] == claims.statistics.NOT_COMPARED and "baseline_alphas" in prim["config_key"]


def test_distillation_regime_check_does_not_decide_the_claim():
    t, s, g = _distillation([1.0, 1.2, 0.9], [-0.3, -0.1, -0.2])
    t = [dict(ev, test={**ev["test"], "accuracy": 0.9 - ev["model"]["alpha"] * (1 + ev["model"]["seed"] / 10) / 10})
         for ev in t]  # teacher accuracy falls with alpha
    checks = claims.statistics._assign_ids(claims.student_checks.distillation_claims("c", t, s, g, CFG))
    (summary,) = claims.rendering.summarise(checks)
    assert summary["regime"] == [{"id": "4R", "verdict": claims.statistics.CONTRADICTED}]
    assert summary["verdict"] == claims.statistics.SUPPORTED


def test_distillation_uses_only_the_distilled_teachers_grid():
    t, s, g = _distillation([1.0, 1.2, 0.9], [0.0] * 3)
    slope = _by_id(claims.student_checks.distillation_claims("c", t, s, g, CFG))["4R"]
    # another teacher grid of the same dataset (e.g. the paper's AlexNet teachers) must not enter the slope
    other = [_eval("c", "other", "teacher", f"a0_s{k}", 0.0, k, 0.10) for k in range(3)]
    slope2 = _by_id(claims.student_checks.distillation_claims("c", other + t, s, g, CFG))["4R"]
    assert slope2["effect"]["values"] == pytest.approx(slope["effect"]["values"])
    assert slope["effect"]["mean"] == pytest.approx(np.polyfit([0, 0.1, 0.3], [90, 90.5, 91], 1)[0])


# --------------------------------------------------------------------------- claim 5


def test_curve_shape_peak_on_a_running_mean_late_on_the_last_fifth():
    mi = [0.1, 5.0, 2.2, 2.0, 1.9, 1.8, 1.6, 1.5, 1.2, 1.0]  # a one-record spike at 5.0
    sh = claims.teacher_checks.curve_shape(mi)
    assert sh["peak"] == pytest.approx((5.0 + 2.2 + 2.0) / 3)  # the best 3-record mean, not the raw maximum
    assert sh["late"] == pytest.approx((1.2 + 1.0) / 2) and sh["late_records"] == 2
    assert claims.teacher_checks.curve_shape([0.1, 0.2]) is None
    assert claims.teacher_checks.curve_shape([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])["late_records"] == 2  # ceil(6 / 5)


HARD = [0.1, 2.0, 2.2, 2.1, 2.0, 1.9, 1.9, 1.8, 1.8, 1.8]
SOFT = [0.1, 2.0, 2.2, 2.1, 1.5, 1.0, 0.8, 0.7, 0.7, 0.7]


def _curves(hard, soft, seeds=3, noise=0.01, repeat=True):
    rows = []
    for s in range(seeds):
        for a, shape in ((0.0, hard), (0.1, soft)):
            for i, mi in enumerate(shape):
                v = mi + 0.05 * s * (a > 0) * (i >= 4)  # LS falls a little less in later seeds
                rows.append({"dataset": "c", "arch": "r", "alpha": a, "seed": s, "step": i * 10, "mi": v,
                             "mi_repeat": v + (noise if i % 2 else -noise) if repeat else ""})
    return rows


def test_erasure_contrast_and_noise_margin():
    from lspipe.experiments.mi import mi_noise

    checks = _by_id(claims.teacher_checks.mi_claims(_curves(HARD, SOFT), CFG))
    prim = checks["5a"]
    assert prim["role"] == claims.statistics.PRIMARY and prim["verdict"] == claims.statistics.SUPPORTED
    # (peak - late) with LS minus without, by hand per seed
    for s, v in zip(prim["effect"]["seeds"], prim["effect"]["values"]):
        soft = [x + 0.05 * s * (i >= 4) for i, x in enumerate(SOFT)]
        fall = [max(np.convolve(c, np.ones(3) / 3, "valid")) - np.mean(c[-2:]) for c in (soft, HARD)]
        assert v == pytest.approx(fall[0] - fall[1])
    sigma = math.sqrt(0.01**2 / 2)  # every pair differs by 0.01
    assert mi_noise([(1.0, 1.01), (0.5, 0.49)]) == pytest.approx(sigma)
    assert prim["bound"] == pytest.approx(CFG["mi_noise_multiple"] * sigma)
    assert checks["5b"]["verdict"] == checks["5c"]["verdict"] == claims.statistics.SUPPORTED
    # LS falls no more than hard targets: the primary is contradicted
    assert _by_id(claims.teacher_checks.mi_claims(_curves(SOFT, HARD), CFG))["5a"]["verdict"] == claims.statistics.CONTRADICTED
    # the margin follows the measured noise: with noisy draws the same contrast is no longer decisive
    noisy = _by_id(claims.teacher_checks.mi_claims(_curves(HARD, SOFT, noise=1.0), CFG))["5a"]
    assert noisy["bound"] > max(prim["effect"]["values"]) and noisy["verdict"] != claims.statistics.SUPPORTED


def test_erasure_without_repeat_draw_is_not_compared():
    c = _by_id(claims.teacher_checks.mi_claims(_curves(HARD, SOFT, repeat=False), CFG))["5a"]
    assert c["verdict"] == claims.statistics.NOT_COMPARED and "train_teacher" in c["config_key"]


# --------------------------------------------------------------------------- the report


def test_report_files(tmp_path):
    checks = claims.build_checks(evals=_teachers([0.003, 0.004, 0.002]), cfg=CFG)
    claims.write_report(checks, CFG, tmp_path / "c.md", tmp_path / "c.json", tmp_path / "c.rst")
    data = json.loads((tmp_path / "c.json").read_text())
    assert data["summary"][0]["verdict"] == claims.statistics.SUPPORTED and data["settings"]["min_seeds"] == 3
    assert data["checks"][0]["id"] == "1a" and "sources" in data["checks"][0]
    md = (tmp_path / "c.md").read_text()
    for text in ("## Decision rule", "claims.accuracy_margin", "not run", "exploratory", "Decidable:", "Sources:",
                 f"Rule version {claims.statistics.RULES_VERSION}", "by the interval alone", "noncentral t", "Sensitivity:", "verdict at 90 / 95 / 99 %",
                 "one-sided test at level 2.5 %", "claims.ece_margin", "claims.mi_noise_multiple",
                 "claims.calibration_selection"):
        assert text in md, text
    from docutils.core import publish_parts

    html = publish_parts((tmp_path / "c.rst").read_text(), writer_name="html",
                         settings_overrides={"halt_level": 2})["body"]
    assert "supported" in html


def test_sources_name_files_and_keys(tmp_path):
    evals = _teachers([0.003, 0.004, 0.002])
    for ev in evals:
        ev["_path"] = f"results/eval/c10/resnet20/teacher/{ev['model']['run']}.json"
    c, _regime = claims.teacher_checks.accuracy_claims(evals, CFG)
    assert len(c["sources"]["files"]) == 6 and "test.accuracy" in c["sources"]["keys"]
    text = claims.rendering.sources_text(c["sources"])
    assert text.startswith("results/eval/c10/resnet20/teacher/{a0.1_s0.json,") and "test.accuracy" in text


# --------------------------------------------------------------------------- experiment table


def test_experiment_rows_share_a_fused_jobs_time(tmp_path):
    fused = tmp_path / "fused.tsv"
    fused.write_text("s\th:m:s\tmax_rss\n12.5\t0:00:12\t100\n")
    single = tmp_path / "single.tsv"
    single.write_text("s\th:m:s\tmax_rss\n3.0\t0:00:03\t100\n")
    assert benchmark_seconds(fused) == 12.5 and benchmark_seconds(tmp_path / "missing.tsv") is None
    evals = [_eval("c", "r", "teacher", "a0_s0", 0.0, 0, 0.9), _eval("c", "r", "teacher", "a0.1_s0", 0.1, 0, 0.91),
             _eval("c", "m", "student", "kd-r-a0-T4_s0", 0.0, 0, 0.8)]
    cals = [{"before": {"ece": 0.1}, "after": {"ece": 0.02}, "temperature": 1.5}] * 2
    cals.append({"before": {"ece": 0.1}, "after": {"ece": 0.02}, "temperature": 0.01, "fit": {"at_bound": True}})
    metas = [{"summary": {"steps": 10}}, {"summary": {"steps": 10}},
             {"summary": {"steps": 7}, "teacher": "results/models/c/r/teacher/a0_s0/model.pt", "temperature": 4.0,
              "hinton": False}]
    rows = experiment_rows(evals, cals, metas, [fused, fused, single])
    assert [r["run"] for r in rows] == ["a0_s0", "a0.1_s0", "kd-r-a0-T4_s0"]
    assert [r["train_seconds"] for r in rows] == [12.5, "", 3.0]  # the shared time once, on the first model
    assert rows[0]["train_time_shared"] == rows[1]["train_time_shared"] == "shared by 2 models"
    kd = rows[2]
    assert kd["teacher"] == "r/a0_s0" and kd["temperature"] == 4.0 and kd["form"] == "teacher"
    assert kd["steps"] == 7 and kd["alpha"] == ""
    assert [r["temperature_at_bound"] for r in rows] == [False, False, True]
    metas[2]["form"] = "slides"
    assert experiment_rows(evals, cals, metas, [fused, fused, single])[2]["form"] == "slides"


# --------------------------------------------------------------------------- CLI: what it reads


def _write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def _results(root, gains=(0.003, 0.004, 0.002), alphas=(0.1,)):
    for ev in _teachers(list(gains), alphas=alphas):
        m = ev["model"]
        _write(root / "eval" / m["dataset"] / m["arch"] / "teacher" / f"{m['run']}.json", ev)
    return root


def test_cli_reads_a_results_folder(tmp_path):
    from lspipe.cli import main

    res = _results(tmp_path / "results")
    assert main(["claims", "--results", str(res), "--md", str(tmp_path / "c.md"), "--json", str(tmp_path / "c.json")]) == 0
    data = json.loads((tmp_path / "c.json").read_text())
    verdicts = {(s["claim"], s["scope"]): s["verdict"] for s in data["summary"]}
    assert verdicts[(1, "c10/resnet20")] == claims.statistics.SUPPORTED
    assert {v for (c, _), v in verdicts.items() if c != 1} == {claims.statistics.NOT_RUN}
    assert data["checks"][0]["sources"]["files"][0].startswith(str(res))


def test_cli_refuses_a_missing_folder_and_mixed_grids(tmp_path, capsys):
    """Issue 20, item 8: a folder that does not exist is an error (it gave exit 0 and an all-"not run"
    report), and a folder holding the orphans of an earlier config (here an alpha the config dropped,
    left with one seed, and a student whose teacher is not in the gamma table) is refused, naming them."""
    from lspipe.cli import main

    out = ["--md", str(tmp_path / "c.md"), "--json", str(tmp_path / "c.json")]
    assert main(["claims", "--results", str(tmp_path / "nowhere"), *out]) == 2
    assert "does not exist" in capsys.readouterr().err and not (tmp_path / "c.json").exists()

    res = _results(tmp_path / "results")
    orphan = _eval("c10", "resnet20", "teacher", "a0.3_s0", 0.3, 0, 0.7)
    _write(res / "eval" / "c10" / "resnet20" / "teacher" / "a0.3_s0.json", orphan)
    assert main(["claims", "--results", str(res), *out]) == 2
    err = capsys.readouterr().err
    assert "mixes the outputs of several configurations" in err and "α 0.3: seeds [0]" in err and "--config" in err
    (res / "eval" / "c10" / "resnet20" / "teacher" / "a0.3_s0.json").unlink()

    (res / "tables").mkdir()
    (res / "tables" / "distillation_gamma_c10.csv").write_text(
        "dataset,arch,run,alpha,seed,temperature,split,n,train_size,gamma\n"
        "c10,resnet20,a0_s0,0,0,1,train,10,10,0.1\nc10,resnet20,a0_s0,0,0,2,train,10,10,0.2\n")
    _write(res / "eval" / "c10" / "small" / "student" / "kd-resnet20-a0-T2_s0.json",
           _eval("c10", "small", "student", "kd-resnet20-a0-T2_s0", 0.0, 0, 0.5))
    _write(res / "eval" / "c10" / "small" / "student" / "kd-resnet20-a0.2-T1_s0.json",  # teacher alpha 0.2 was dropped
           _eval("c10", "small", "student", "kd-resnet20-a0.2-T1_s0", 0.0, 0, 0.5))
    assert main(["claims", "--results", str(res), *out]) == 2
    assert "kd-resnet20-a0.2-T1_s0.json: its teacher (α 0.2, seed 0, T 1) is not in distillation_gamma_c10.csv" in \
        capsys.readouterr().err


def _config(tmp_path, results):
    cfg = {"results": str(results), "datasets": {"c10": {"source": "digits"}},
           "recipes": {"r": {"steps": 10}},
           "teachers": [{"dataset": "c10", "arch": "resnet20", "recipe": "r", "alphas": [0.0, 0.1], "seeds": [0, 1, 2]}],
           "claims": {"ls_alpha": 0.1}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_cli_with_config_reads_only_what_the_config_names(tmp_path, capsys):
    from lspipe.cli import main

    res = _results(tmp_path / "results", alphas=(0.1, 0.3))  # alpha 0.3: not in the config (an orphan)
    _write(res / "eval" / "c10" / "resnet20" / "teacher" / "a0.2_s1.json", _eval("c10", "resnet20", "teacher", "a0.2_s1",
                                                                                0.2, 1, 0.1))
    cfg = _config(tmp_path, res)
    out = ["--md", str(tmp_path / "c.md"), "--json", str(tmp_path / "c.json")]
    assert main(["claims", "--config", str(cfg), *out]) == 2  # calibrations and the tightness table are missing
    assert "missing" in capsys.readouterr().err
    for ev in _teachers([0.003, 0.004, 0.002], alphas=(0.1,)):
        m = ev["model"]
        _write(res / "calibration" / "c10" / "resnet20" / "teacher" / f"{m['run']}.json",
               dict(_cal(m["alpha"], m["seed"], 0.1, 0.05, 2.0, 0.1), model={**m, "role": "teacher"}))
    (res / "tables").mkdir()
    claims_rows = _tight_rows(lambda a, s, t, sp: 0.5 - a)
    for r in claims_rows:
        r.update(dataset="c10", arch="resnet20")
    from lspipe.core.tables import write_csv

    write_csv(res / "tables" / "tightness.csv", claims_rows, list(claims_rows[0]))
    assert main(["claims", "--config", str(cfg), *out]) == 0
    data = json.loads((tmp_path / "c.json").read_text())
    acc = [c for c in data["checks"] if c["claim"] == 1 and c["role"] != claims.statistics.REGIME]
    assert [c["label"] for c in acc] == ["LS α = 0.1, test split"]  # the orphaned 0.3 and 0.2 are not read
    assert all("a0.3" not in f and "a0.2" not in f for c in data["checks"] for f in c["sources"]["files"])
    assert main(["claims", "--config", str(cfg), "--results", str(tmp_path / "nowhere"), *out]) == 2
    assert "does not exist" in capsys.readouterr().err


# --------------------------------------------------------------------------- the audit's 32 cases (issue 29)
# Synthetic inputs with a known truth; each must give the verdict its truth calls for. Monte Carlo
# checks use fixed seeds and enough replicates for their bounds to hold with a wide margin.


def _cp(ev, acc):
    """A confidence-penalty teacher of the same seed: its metadata says alpha 0, its run name says otherwise."""
    m = dict(ev["model"], run=f"confidence_penalty-beta0.5_s{ev['model']['seed']}", alpha=0.0)
    return {"model": m, "val": dict(ev["val"]), "test": dict(ev["test"], accuracy=acc),
            "_path": f"results/eval/c10/resnet20/teacher/{m['run']}.json"}


def _with_paths(evals):
    for ev in evals:
        ev["_path"] = f"results/eval/{ev['model']['dataset']}/{ev['model']['arch']}/teacher/{ev['model']['run']}.json"
    return evals


@pytest.mark.parametrize("cp_first", [False, True])  # cases 1-2: whichever file comes last
def test_case_confidence_penalty_does_not_replace_the_hard_arm(cp_first):
    evals = _with_paths(_teachers([0.003, 0.004, 0.002]))
    cps = [_cp(ev, 0.10) for ev in evals if ev["model"]["alpha"] == 0.0]  # far worse: it would flip the verdict
    checks = claims.teacher_checks.accuracy_claims(cps + evals if cp_first else evals + cps, ABS)
    prim = next(c for c in checks if c["role"] == claims.statistics.PRIMARY)
    assert prim["verdict"] == claims.statistics.SUPPORTED and prim["effect"]["mean"] == pytest.approx(0.3)
    assert not any("confidence_penalty" in f for f in prim["sources"]["files"])
    assert sorted(prim["sources"]["files"]) == sorted(ev["_path"] for ev in evals)
    # case 6: the other objective is a row of its own, against the hard arm
    cp_row = next(c for c in checks if "confidence_penalty" in c["label"])
    assert cp_row["role"] == claims.statistics.DESCRIPTIVE and cp_row["verdict"] == claims.statistics.CONTRADICTED
    assert {f for f in cp_row["sources"]["files"] if "confidence_penalty" in f} == {c["_path"] for c in cps}


def test_case_confidence_penalty_calibration_file_is_left_out():  # case 3
    res = []
    for s in range(3):
        res += [_cal(0.0, s, 0.15, 0.020 + 0.001 * s, 2.0, 0.15), _cal(0.1, s, 0.03 + 0.001 * s, 0.0, 1.0, 0.03),
                _cal(0.0, s, 0.4, 0.3, 2.0, 0.4, run=f"confidence_penalty-beta0.5_s{s}")]
    for r in res:
        r["_path"] = f"cal/{r['model']['run']}.json"
    c = _by_id(claims.teacher_checks.calibration_claims(res, CFG))["3a"]
    assert not any("confidence_penalty" in f for f in c["sources"]["files"])
    assert c["effect"]["values"] == pytest.approx([0.03 + 0.001 * s - 0.020 - 0.001 * s for s in range(3)])
    assert any("confidence_penalty beta = 0.5" in n for n in c["notes"])


def test_case_confidence_penalty_teacher_stays_out_of_the_teacher_slope():  # case 4
    t, s, g = _distillation([1.0, 1.2, 0.9], [0.0] * 3)
    slope = _by_id(claims.student_checks.distillation_claims("c", t, s, g, CFG))["4R"]
    cps = [dict(ev, model=dict(ev["model"], run=f"confidence_penalty-beta0.5_s{ev['model']['seed']}"),
                test=dict(ev["test"], accuracy=0.5)) for ev in t if ev["model"]["alpha"] == 0.0]
    slope2 = _by_id(claims.student_checks.distillation_claims("c", t + cps, s, g, CFG))["4R"]
    assert slope2["effect"]["values"] == pytest.approx(slope["effect"]["values"])


def test_case_two_models_for_one_objective_and_seed_are_refused():  # case 5
    from lspipe.base.errors import UserError

    evals = _with_paths(_teachers([0.003, 0.004, 0.002]))
    twin = dict(evals[0], _path="elsewhere/a0_s0.json")
    with pytest.raises(UserError, match="two teacher evaluations .* α = 0 seed 0: .*a0_s0.json and elsewhere"):
        claims.teacher_checks.accuracy_claims(evals + [twin], ABS)


def _sim_sq(rng, off, n=2000):
    """One model's debiased squared calibration error on n test images in 5 bins of the 15
    (confidences CONFS), its true accuracy conf − off; and its plug-in ECE."""
    k = n // 5
    acc = rng.binomial(k, CONFS - off) / k
    from lspipe.experiments.calibration import debiased_squared_ce

    return debiased_squared_ce([k] * 5, acc, CONFS), float(np.mean(np.abs(acc - CONFS)))


@pytest.mark.parametrize("seeds", [3, 7, 10])  # cases 7-9
def test_case_ece_bias_a_gap_of_003_is_not_within_002(seeds):
    """Temperature scaling perfectly calibrated, LS 0.03 off, 2,000 test images: the rule must not call
    it 'within 0.02' (nominal rate 2.5 %), at 3, 7 and 10 seeds. The plug-in ECE difference, whose
    calibrated arm sits at its floor, calls it within more often as seeds are added."""
    rng = np.random.default_rng(seeds)
    reps, new, old = 200, 0, 0
    for _ in range(reps):
        a = [_sim_sq(rng, 0.03) for _ in range(seeds)]
        b = [_sim_sq(rng, 0.0) for _ in range(seeds)]
        st = claims.statistics.ce_gap_stats({i: x[0] for i, x in enumerate(a)}, {i: x[0] for i, x in enumerate(b)})
        new += claims.statistics.decide(st, "at_most", 0.02, 3)[0] == claims.statistics.SUPPORTED
        plug = claims.statistics.effect_stats({i: a[i][1] - b[i][1] for i in range(seeds)})
        old += claims.statistics.decide(plug, "at_most", 0.02, 3)[0] == claims.statistics.SUPPORTED
    assert new / reps <= 0.025
    if seeds == 10:
        assert old / reps > 0.1  # the defect the rule removes (about 0.24 here)


def test_case_ece_no_gap_is_supported_with_power():  # case 10: the rule is not "never supported"
    rng = np.random.default_rng(0)
    reps, sup = 100, 0
    for _ in range(reps):
        a = {i: _sim_sq(rng, 0.0, 10000)[0] for i in range(7)}
        b = {i: _sim_sq(rng, 0.0, 10000)[0] for i in range(7)}
        sup += claims.statistics.decide(claims.statistics.ce_gap_stats(a, b), "at_most", 0.02, 3)[0] == claims.statistics.SUPPORTED
    assert sup / reps > 0.9


def test_case_ce_gap_interval_against_its_definition():  # case 11: the two-estimate interval, computed another way
    from scipy.stats import t

    a, b = {0: 0.004, 1: 0.005, 2: 0.0045}, {0: 0.0004, 1: 0.0001, 2: 0.0003}
    st = claims.statistics.ce_gap_stats(a, b, 0.9)
    q = t.ppf(1 - 0.1 / 4, 2)
    va, vb = np.array(list(a.values())), np.array(list(b.values()))
    ua, la = va.mean() + q * va.std(ddof=1) / math.sqrt(3), va.mean() - q * va.std(ddof=1) / math.sqrt(3)
    ub, lb = vb.mean() + q * vb.std(ddof=1) / math.sqrt(3), vb.mean() - q * vb.std(ddof=1) / math.sqrt(3)
    assert st["ci"] == pytest.approx([math.sqrt(la) - math.sqrt(ub), math.sqrt(ua) - math.sqrt(max(lb, 0))])
    assert st["mean"] == pytest.approx(math.sqrt(va.mean()) - math.sqrt(vb.mean()))


@pytest.mark.parametrize("seeds,expected", [(3, 0.122), (10, 0.555), (20, 0.884)])  # cases 12-14
def test_case_the_every_seed_rule_is_gone_power_matches_simulation(seeds, expected):
    """Distillation's observed effect (mean 0.61, sd 0.82 over seeds): P(supported) of the interval-alone
    rule, simulated, matches the noncentral t; the old every-seed conjunct gave 0.13, 0.08, 0.006."""
    rng = np.random.default_rng(seeds)
    reps = 1500
    sup = sum(claims.statistics.decide(claims.statistics.effect_stats(dict(enumerate(rng.normal(0.61, 0.82, seeds)))), "greater", 0.0,
                            3)[0] == claims.statistics.SUPPORTED for _ in range(reps))
    assert claims.statistics.power("greater", 0.61, 0.0, 0.82, seeds, 0.025) == pytest.approx(expected, abs=0.002)
    assert sup / reps == pytest.approx(expected, abs=4 * math.sqrt(expected * (1 - expected) / reps) + 0.005)


def test_case_seeds_for_80_percent_power_accuracy():  # case 15: the figures for accuracy (sd 0.61 pp)
    assert claims.statistics.power("at_least", 0.0, 0.5, 0.61, 9, 0.025) == pytest.approx(0.58, abs=0.01)  # "9 seeds" was 58 %
    n = claims.statistics.seeds_for_power("at_least", 0.0, 0.5, 0.61, 0.025)
    assert n == 14
    rng = np.random.default_rng(1)

    def simulated(k, reps=2000):
        return np.mean([claims.statistics.decide(claims.statistics.effect_stats(dict(enumerate(rng.normal(0.0, 0.61, k)))), "at_least",
                                      0.5, 3)[0] == claims.statistics.SUPPORTED for _ in range(reps)])

    assert simulated(n) > 0.78 and simulated(n - 2) < 0.8
    up = claims.statistics.sd_upper(0.61, 3)
    assert claims.statistics.seeds_for_power("at_least", 0.0, 0.5, up, 0.025) > n


def test_case_sd_upper_bound_covers_80_percent():  # case 16: the chi-square bound, by simulation
    rng = np.random.default_rng(2)
    sds = rng.normal(0, 1.0, (4000, 3)).std(axis=1, ddof=1)
    cover = np.mean([claims.statistics.sd_upper(s, 3) >= 1.0 for s in sds])
    assert cover == pytest.approx(0.8, abs=0.025)


def test_case_within_uses_both_one_sided_tests():  # case 17
    p = claims.statistics.power("within", 0.0, 0.5, 0.4, 10, 0.025)
    one = claims.statistics.power("at_least", 0.0, 0.5, 0.4, 10, 0.025)
    assert p == pytest.approx(2 * one - 1) and claims.statistics.seeds_for_power("within", 0.6, 0.5, 0.4, 0.025) > 1000


def test_case_symmetric_rule_contradicts_as_it_supports():  # case 18
    up = claims.statistics.effect_stats(dict(enumerate([1.0, 1.3, 0.7, 1.1])))
    down = claims.statistics.effect_stats(dict(enumerate([-1.0, -1.3, -0.7, -1.1])))
    assert claims.statistics.decide(up, "greater", 0.0, 3)[0] == claims.statistics.SUPPORTED
    assert claims.statistics.decide(down, "greater", 0.0, 3)[0] == claims.statistics.CONTRADICTED


def test_case_erasure_below_the_noise_margin_is_not_contradicted():  # cases 19-20
    def curves(extra, seeds=4, noise=0.05):  # LS falls `extra` (+ a little per seed) nats more than hard targets
        rows = []
        for s in range(seeds):
            for a, shape in ((0.0, HARD), (0.1, [x - (extra + 0.005 * s) * (i >= 8) for i, x in enumerate(HARD)])):
                rows += [{"dataset": "c", "arch": "r", "alpha": a, "seed": s, "step": i, "mi": v,
                          "mi_repeat": v + (noise if i % 2 else -noise)} for i, v in enumerate(shape)]
        return rows

    # a real, precisely measured extra fall (about 0.05 nats), smaller than 3 x the MI noise (3 x 0.035)
    prim = _by_id(claims.teacher_checks.mi_claims(curves(0.05), CFG))["5a"]
    lo, hi = prim["effect"]["ci"]
    assert 0 < lo and hi < prim["bound"]  # the interval excludes 0 and lies below the margin
    assert prim["verdict"] == claims.statistics.INCONCLUSIVE and prim["contra"] == 0.0
    # LS falls less than hard targets: contradicted (the interval below 0)
    assert _by_id(claims.teacher_checks.mi_claims(curves(-0.05), CFG))["5a"]["verdict"] == claims.statistics.CONTRADICTED


def _distill_case(base, hard_g, ls_g, gain=0.0, seeds=3, alphas=(0.0, 0.3, 0.6), drop=()):
    """Students scoring exactly the true baseline curve ``base(gamma)`` (+ ``gain`` for the hard teacher's),
    with a little seed noise; ``drop``: (family, key, seed) runs left out."""
    teachers, students, gamma = [], [], {}
    noise = [0.0, 0.05, -0.05, 0.02, -0.02]
    for s in range(seeds):
        for a in (0.0, 0.3):
            teachers.append(_eval("c", "big", "teacher", f"a{a:g}_s{s}", a, s, 0.9 + 0.01 * a))
        for a in alphas:
            students.append(_eval("c", "small", "student", f"a{a:g}_s{s}", a, s, base(a) / 100))
        for t, g in hard_g.items():
            gamma[("0", s, f"{t:g}")] = g
            if ("T", t, s) not in drop:
                students.append(_eval("c", "small", "student", f"kd-big-a0-T{t:g}_s{s}", 0.0, s,
                                      (base(g) + gain + noise[s]) / 100))
        for a, g in ls_g.items():
            gamma[(f"{a:g}", s, "1")] = g
            if ("LS", a, s) not in drop:
                students.append(_eval("c", "small", "student", f"kd-big-a{a:g}-T1_s{s}", 0.0, s,
                                      (base(g) - noise[s] / 2) / 100))
    return teachers, students, gamma


def concave(a):
    return 80 + 20 * a - 30 * a * a


def test_case_a_concave_baseline_with_no_effect_is_not_supported():  # case 21
    t, s, g = _distill_case(concave, {1: 0.15, 2: 0.45}, {0.3: 0.3, 0.6: 0.6})
    prim = _by_id(claims.student_checks.distillation_claims("c", t, s, g, CFG))["4a"]
    assert prim["effect"]["mean"] == pytest.approx(0.675, abs=0.05)  # the interpolation bias, no effect at all
    no_sys = claims.statistics.effect_stats(dict(zip(prim["effect"]["seeds"], prim["effect"]["values"])))
    assert claims.statistics.decide(no_sys, "greater", 0.0, 3)[0] == claims.statistics.SUPPORTED  # the defect without the systematic term
    assert prim["effect"]["systematic"] == pytest.approx(2.7)  # LOO at 0.3 from 0 and 0.6
    assert prim["verdict"] == claims.statistics.INCONCLUSIVE and any("systematic term" in n for n in prim["notes"])


def test_case_a_linear_baseline_with_a_real_effect_is_supported():  # case 22
    t, s, g = _distill_case(lambda a: 80 + 5 * a, {1: 0.15, 2: 0.45}, {0.3: 0.3, 0.6: 0.6}, gain=1.0)
    prim = _by_id(claims.student_checks.distillation_claims("c", t, s, g, CFG))["4a"]
    assert prim["effect"]["systematic"] == pytest.approx(0.0, abs=1e-9) and prim["verdict"] == claims.statistics.SUPPORTED


def test_case_two_baseline_alphas_cannot_bound_the_interpolation_error():  # case 23
    t, s, g = _distill_case(lambda a: 80 + 5 * a, {1: 0.15}, {0.3: 0.3}, gain=1.0, alphas=(0.0, 0.6))
    prim = _by_id(claims.student_checks.distillation_claims("c", t, s, g, CFG))["4a"]
    assert prim["verdict"] == claims.statistics.NOT_COMPARED and "baseline_alphas" in prim["config_key"]


def test_case_a_missing_temperature_drops_the_temperature_not_the_seed():  # case 24
    t, s, g = _distill_case(lambda a: 80 + 5 * a, {1: 0.15, 2: 0.45}, {0.3: 0.3, 0.6: 0.6}, gain=1.0,
                            drop={("T", 2, 1)})
    prim = _by_id(claims.student_checks.distillation_claims("c", t, s, g, CFG))["4a"]
    assert prim["effect"]["n"] == 3 and prim["numbers"]["in-range temperatures"] == "1"
    assert any("T = 2 (seeds [1] missing)" in n for n in prim["notes"])


def test_case_a_missing_ls_teacher_drops_the_teacher_not_the_seed():  # case 25
    t, s, g = _distill_case(lambda a: 80 + 5 * a, {1: 0.15, 2: 0.45}, {0.3: 0.3, 0.6: 0.6}, gain=1.0,
                            drop={("LS", 0.6, 2)})
    prim = _by_id(claims.student_checks.distillation_claims("c", t, s, g, CFG))["4a"]
    assert prim["effect"]["n"] == 3 and prim["numbers"]["in-range LS teachers"] == "0.3"
    assert any("LS teacher α = 0.6 (seeds [2] missing)" in n for n in prim["notes"])


def test_case_a_missing_calibration_alpha_drops_the_alpha_not_the_seed():  # case 26
    res = []
    for s in range(3):
        res += [_cal(0.0, s, 0.15, 0.02 + 0.001 * s, 2.0, 0.15), _cal(0.1, s, 0.03 + 0.002 * s, 0.0, 1.0, 0.05)]
        if s != 1:
            res.append(_cal(0.3, s, 0.09, 0.0, 1.0, 0.01))  # best on validation, but missing in seed 1
    c = _by_id(claims.teacher_checks.calibration_claims(res, CFG))["3a"]
    assert c["numbers"]["α*"] == 0.1 and c["effect"]["n"] == 3
    assert any("left out of the α* choice" in n and "0.3" in n for n in c["notes"])


@pytest.mark.parametrize("seeds,expected", [(3, claims.statistics.INCONCLUSIVE), (4, claims.statistics.INCONCLUSIVE),
                                            (5, claims.statistics.SUPPORTED)])  # cases 27-29
def test_case_zero_spread_needs_five_seeds(seeds, expected):
    h = 100 / 2000
    c = claims.teacher_checks.accuracy_claims(_teachers([6 / 2000] * seeds), {**CFG, "accuracy_margin": 0.0})[0]
    assert c["effect"]["std"] == 0 and c["effect"]["values"] == pytest.approx([6 * h] * seeds)
    assert c["verdict"] == expected
    if expected == claims.statistics.INCONCLUSIVE:
        assert "fewer than 5 seeds" in c["reason"]


def test_case_relative_accuracy_margin_and_the_regime_flag():  # cases 30-31
    evals = []
    for s, g in enumerate([-0.015, -0.016, -0.014]):  # 53 % teachers on CIFAR-10, LS 1.5 pp worse
        evals.append(_eval("cifar10", "resnet20", "teacher", f"a0_s{s}", 0.0, s, 0.53 + 0.002 * s))
        evals.append(_eval("cifar10", "resnet20", "teacher", f"a0.1_s{s}", 0.1, s, 0.53 + 0.002 * s + g))
    checks = _by_id(claims.teacher_checks.accuracy_claims(evals, CFG))
    err = 100 - np.mean([53.0, 53.2, 53.4])
    assert checks["1a"]["bound"] == pytest.approx(0.05 * err)  # 2.33 pp at 46.8 % error
    assert checks["1a"]["verdict"] == claims.statistics.SUPPORTED
    assert claims.teacher_checks.accuracy_claims(evals, ABS)[0]["verdict"] == claims.statistics.CONTRADICTED  # a fixed 0.5 pp margin
    assert checks["1R"]["role"] == claims.statistics.REGIME and checks["1R"]["verdict"] == claims.statistics.CONTRADICTED  # 86.8 % in the paper
    assert checks["1a"]["paper"]["value"] == pytest.approx(-0.1)


def test_case_summary_prints_no_verdict_words_for_exploratory_checks():  # case 32
    checks = claims.statistics._assign_ids(claims.teacher_checks.accuracy_claims(_teachers([0.003, 0.004, 0.002], alphas=(0.1, 0.3)), ABS))
    md = claims.rendering.render_markdown(checks, ABS)
    row = next(line for line in md.splitlines() if line.startswith("| 1."))
    assert "1b +0.3 [" in row and "1b supported" not in row
    s = claims.rendering.summarise(checks)[0]
    assert s["sensitivity"] == {"90": claims.statistics.SUPPORTED, "95": claims.statistics.SUPPORTED, "99": claims.statistics.SUPPORTED}


# --------------------------------------------------------------------------- versions, marking, sensitivity, forest


def test_rule_version_hash_and_marking(tmp_path):
    assert claims.rendering.rules_hash(CFG) == claims.rendering.rules_hash(dict(CFG)) != claims.rendering.rules_hash({**CFG, "ece_margin": 0.03})
    ev = tmp_path / "results" / "eval" / "c" / "r" / "teacher" / "a0_s0.json"
    model = tmp_path / "results" / "models" / "c" / "r" / "teacher" / "a0_s0" / "model.pt"
    model.parent.mkdir(parents=True)
    model.write_bytes(b"x")
    assert claims.rendering.model_file(ev) == model
    frozen = claims.statistics.RULE_VERSIONS[claims.statistics.RULES_VERSION][0]
    import os
    from datetime import datetime

    t0 = datetime.fromisoformat(frozen.replace("Z", "+00:00")).timestamp()
    os.utime(model, (t0 - 3600, t0 - 3600))
    assert claims.rendering.analysis_marking([ev])["marking"] == "re-analysis"
    os.utime(model, (t0 + 3600, t0 + 3600))
    assert claims.rendering.analysis_marking([ev])["marking"] == "confirmatory"
    assert claims.rendering.analysis_marking([tmp_path / "x.json"])["marking"] == "re-analysis"  # training time unknown
    # version 4 added claim 6 only: a report without it keeps version 3's freeze time (and its marking)
    t3 = datetime.fromisoformat(claims.statistics.RULE_VERSIONS[3][0].replace("Z", "+00:00")).timestamp()
    os.utime(model, (t3 + 60, t3 + 60))
    assert t3 + 60 < t0 and claims.rendering.analysis_marking([ev])["marking"] == "re-analysis"
    without_toy = claims.build_checks(evals=_teachers([0.003, 0.004, 0.002]), cfg=ABS)
    assert claims.rendering.rules_version_in_effect(without_toy) == 3
    assert claims.rendering.analysis_marking([ev], version=3)["marking"] == "confirmatory"
    os.utime(model, (t0 + 3600, t0 + 3600))
    checks = claims.build_checks(evals=_teachers([0.003, 0.004, 0.002]), cfg=ABS)
    claims.write_report(checks, ABS, tmp_path / "c.md", tmp_path / "c.json", marking=claims.rendering.analysis_marking([ev]),
                        forest=[tmp_path / "f.pdf", tmp_path / "f.png"])
    data = json.loads((tmp_path / "c.json").read_text())
    assert data["rules_version"] == claims.statistics.RULES_VERSION and data["rules_hash"] == claims.rendering.rules_hash(ABS)
    assert data["marking"]["marking"] == "confirmatory" and data["checks"][0]["marking"] == "confirmatory"
    md = (tmp_path / "c.md").read_text()
    assert md.index("![") < md.index("## Summary") and "(f.png)" in md and "**Confirmatory**" in md
    assert (tmp_path / "f.pdf").stat().st_size > 0 and (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"


def test_sensitivity_follows_the_level():
    st = _stats([0.3, 0.5, 0.45, 0.2, 0.6])
    c = claims.statistics.check(1, "s", "x", dict(enumerate([0.3, 0.5, 0.45, 0.2, 0.6])), kind="greater", bound=0.3, unit="",
                     cfg=CFG)
    assert st["ci"][0] < 0.3 < st["mean"]
    verdicts = [claims.statistics.decide(_stats([0.3, 0.5, 0.45, 0.2, 0.6], confidence=k), "greater", 0.3, 3)[0]
                for k in claims.statistics.SENSITIVITY]
    assert list(c["sensitivity"].values()) == verdicts


def test_test_image_bootstrap_matches_the_per_image_formula(tmp_path):
    """claims.bootstrap: one resample of the test images shared by every seed; for claim 1 the sd of the
    seeds' mean accuracy difference over resamples is, computed another way, sd_i(d_i) / sqrt(N) with
    d_i the image's correctness difference averaged over seeds."""
    rng = np.random.default_rng(5)
    n, k = 600, 4
    labels = rng.integers(0, k, n)
    dumps, evals, correct = {}, [], {}
    for s in range(3):
        for a in (0.0, 0.1):
            logits = rng.normal(size=(n, k))
            hit = rng.random(n) < (0.6 if a == 0 else 0.62)
            logits[np.arange(n), labels] += np.where(hit, 10.0, -10.0)
            path = tmp_path / "dumps" / "c" / "r" / "teacher" / f"a{a:g}_s{s}.h5"
            path.parent.mkdir(parents=True, exist_ok=True)
            feats = np.zeros((n, 2), np.float32)
            write_h5(path, classes=[str(i) for i in range(k)], weight=np.zeros((k, 2)), bias=np.zeros(k),
                     splits={"test": (labels, np.arange(n), lambda b, e, lg=logits: (feats[b:e], lg[b:e].astype(np.float32)))},
                     attrs={"dataset": "c", "arch": "r", "alpha": a, "seed": s, "run": f"a{a:g}_s{s}"})
            dumps[(a, s)] = path
            correct[(a, s)] = logits.argmax(1) == labels
            evals.append(_eval("c", "r", "teacher", f"a{a:g}_s{s}", a, s, float(correct[(a, s)].mean()), n=n))
    cfg = {**ABS, "bootstrap": 2000, "bootstrap_seed": 1}
    checks = claims.statistics._assign_ids(claims.teacher_checks.accuracy_claims(evals, cfg))
    claims.teacher_checks.bootstrap_widening(checks, [], claims.inputs.dump_map(dumps.values()), cfg)
    b = checks[0]["bootstrap"]
    d = 100 * np.mean([correct[(0.1, s)].astype(float) - correct[(0.0, s)] for s in range(3)], axis=0)
    assert b["sd_test"] == pytest.approx(d.std(ddof=0) / math.sqrt(n), rel=0.06)
    from scipy.stats import norm

    w = checks[0]["effect"]["half_width"]
    assert b["half_width_with_test"] == pytest.approx(math.sqrt(w**2 + (norm.ppf(0.975) * b["sd_test"]) ** 2))


# --------------------------------------------------------------------------- the banner and what a user came for


def _t_interval(values, confidence=0.95):
    from scipy import stats

    v = np.asarray(values, float)
    return list(stats.t.interval(confidence, len(v) - 1, loc=v.mean(), scale=stats.sem(v)))


def _five_claims(seeds, acc_gain, ls_ce=0.03):
    """Accuracy (c10/resnet20), calibration (c/r) and distillation (c/big → small) on ``seeds`` seeds."""
    ev = _teachers(acc_gain[:seeds], alphas=(0.1, 0.3))
    cal = []
    for s in range(seeds):
        cal += [_cal(0.0, s, 0.15 + 0.002 * s, 0.02 + 0.001 * s, 1.8 + 0.1 * s, 0.15),
                _cal(0.1, s, 0.05, 0.0, 1.1, 0.06), _cal(0.3, s, ls_ce + 0.002 * s, 0.0, 0.9 - 0.01 * s, 0.04)]
    t, st, g = _distillation([1.0, 1.5, 1.2][:seeds], [0.0, 0.2, 0.1][:seeds], seeds=seeds)
    evals = ev + t + st
    return evals, cal, claims.build_checks(evals=evals, calibrations=cal, gamma={"c": g}, cfg=CFG)


def test_banner_says_two_seeds_decide_nothing_and_what_each_claim_needs():
    _, _, checks = _five_claims(2, [-0.004, -0.006])
    b = claims.rendering.banner(checks, CFG)
    assert b["seeds_trained"] == [2] and "with 2 seeds no claim can be decided (supported or contradicted)" in b["head"]
    assert "claims.min_seeds" in b["head"]
    rows = {r["check"] + " " + r["claim"].split(", ")[1]: r for r in b["rows"]}
    acc = next(c for c in checks if c["id"] == "1a" and c["scope"] == "c10/resnet20")
    # the direction is the sign of the mean, the interval's relation to 0 is stated, the verdict is the rule's
    row = rows["1a c10/resnet20"]
    assert row["direction"].startswith("LS lowers accuracy, -0.5 [") and row["verdict"] == claims.statistics.INCONCLUSIVE
    lo, hi = _t_interval([100 * g for g in (-0.004, -0.006)])
    assert acc["effect"]["ci"] == pytest.approx([lo, hi])
    assert ("excludes 0" if hi < 0 else "includes 0") in row["direction"]
    pw = acc["decidable"]["power"]
    assert row["seeds"] == f"2 / {pw['at_observed']} ({pw['at_observed_sd_upper']})"
    # claim 3 shows the calibration effect against hard targets (3b) beside its primary, with both intervals
    cal = rows["3a c/r"]
    assert "LS at α* is better calibrated than α = 0 (T = 1)" in cal["direction"] and "3b (exploratory)" in cal["direction"]
    assert "no power formula" in cal["seeds"]
    assert rows["4a c/big → small"]["direction"].startswith("a hard-target teacher's students gain more")
    # the markdown report opens with it: within 15 lines, the summary keeps a direction column
    md = claims.rendering.render_markdown(checks, CFG)
    top = md.splitlines()[:15]
    assert top[0] == "# Did this run reproduce the paper?" and any("What this run found" in x for x in top)
    assert sum(x.startswith("| 1 accuracy") or x.startswith("| 3 calibration") for x in top) == 3
    assert any("not among the paper's datasets" in x for x in top)  # c, c10: a pointer to what they came for
    summary_row = next(line for line in md.splitlines() if line.startswith("| 1. ") and "c10/resnet20" in line)
    assert "LS lowers accuracy, -0.5 [" in summary_row and "**inconclusive** (1a)" in summary_row


def test_banner_counts_verdicts_when_seeds_suffice_and_knows_the_papers_datasets():
    ev = _teachers([0.003, 0.004, 0.002])
    for e in ev:
        e["model"]["dataset"] = "cifar10"
    checks = claims.build_checks(evals=ev, cfg=ABS)
    b = claims.rendering.banner(checks, ABS)
    assert b["seeds_trained"] == [3] and "Verdicts: 1 supported, 4 not run" in b["head"]
    assert b["own"] is None  # cifar10 is the paper's: no "what you came for"
    assert claims.teacher_checks.own_data(ev, [], checks, ABS) == []
    assert claims.rendering.direction_text(checks[0]).endswith("(the interval excludes 0)")
    one = claims.build_checks(evals=_teachers([0.003]), cfg=ABS)
    assert claims.rendering.direction_text(one[0]) == "LS raises accuracy, +0.3 pp (1 seed: no interval)"


def test_own_data_alpha_for_accuracy_is_picked_on_validation_not_test():
    evals = []
    for s in range(3):  # validation prefers 0.3, test prefers 0.1; seed 2 alone prefers 0.1 on validation
        for a, val, test in ((0.0, 0.80, 0.80), (0.1, 0.81, 0.85), (0.3, 0.82 - 0.02 * (s == 2), 0.81 + 0.001 * s)):
            e = _eval("mine", "net", "teacher", f"a{a:g}_s{s}", a, s, test)
            e["val"]["accuracy"] = val + 0.001 * s
            evals.append(e)
    (item,) = claims.teacher_checks.own_data(evals, [], [], CFG)
    acc = item["accuracy"]
    assert acc["alpha"] == 0.3 and acc["per_seed_pick"] == {0: 0.3, 1: 0.3, 2: 0.1}
    gains = [100 * (0.81 + 0.001 * s - 0.80) for s in range(3)]
    assert acc["gain_pp"]["mean"] == pytest.approx(np.mean(gains))
    assert acc["gain_pp"]["ci"] == pytest.approx(_t_interval(gains))
    assert acc["accuracy_pct"]["ci"] == pytest.approx(_t_interval([100 * (0.81 + 0.001 * s) for s in range(3)]))
    # validation picks alpha 0: the best nonzero alpha's test effect is what it gives up
    for e in evals:
        if e["model"]["alpha"] == 0.0:
            e["val"]["accuracy"] = 0.9
    (item,) = claims.teacher_checks.own_data(evals, [], [], CFG)
    assert item["accuracy"]["alpha"] == 0.0 and item["accuracy"]["compared_alpha"] == 0.3
    text = "\n".join(claims.rendering.own_data_lines([item], CFG))
    assert "**α for accuracy: 0**" in text and "the best nonzero α on validation, 0.3" in text
    # an accuracy's interval stays within 0-100 % (two seeds near 100 %: t(1) reaches beyond)
    iv = claims.teacher_checks._interval({0: 99.8, 1: 99.0}, CFG, within=(0.0, 100.0))
    assert iv["ci"] == pytest.approx([_t_interval([99.8, 99.0])[0], 100.0]) and _t_interval([99.8, 99.0])[1] > 100


def test_own_data_calibration_temperature_and_teacher():
    from lspipe.experiments.calibration import debiased_squared_ce

    evals, cal, checks = _five_claims(3, [0.003, 0.004, 0.002])
    cal[-1]["fit"]["at_bound"] = True  # alpha 0.3, seed 2: its T is a bound, not a fit
    own = {i["scope"]: i for i in claims.teacher_checks.own_data(evals, cal, checks, CFG)}
    assert set(own) == {"c/r", "c10/resnet20", "c/big"}
    c = own["c/r"]
    by = {x["id"]: x for x in checks if x["scope"] == "c/r"}
    assert c["calibration"]["alpha"] == by["3a"]["numbers"]["α*"] == 0.3
    rms = {a: math.sqrt(np.mean([debiased_squared_ce(**{k: r["before"]["reliability"][v] for k, v in (
        ("count", "count"), ("accuracy", "accuracy"), ("confidence", "confidence"))}) for r in cal
        if r["model"]["alpha"] == a])) for a in (0.0, 0.3)}
    assert c["calibration"]["rms_ls"] == pytest.approx(rms[0.3]) and c["calibration"]["rms_hard"] == pytest.approx(rms[0.0])
    assert c["calibration"]["change_vs_hard"]["mean"] == pytest.approx(rms[0.3] - rms[0.0])
    assert c["calibration"]["change_vs_hard"]["ci"] == pytest.approx([-x for x in by["3b"]["effect"]["ci"][::-1]])
    assert c["calibration"]["versus_temperature_scaling"]["ci"] == by["3a"]["effect"]["ci"]
    t = c["temperature"]
    assert t[0.0]["mean"] == pytest.approx(1.9) and t[0.0]["ci"] == pytest.approx(_t_interval([1.8, 1.9, 2.0]))
    assert t[0.3]["seeds"] == [0, 1] and t[0.3]["at_bound"] == [2]
    # distillation: hard-target teachers' students gain clearly more -> do not smooth the teacher
    (d,) = own["c/big"]["distillation"]
    four = next(x for x in checks if x["id"] == "4a")
    assert d["effect_pp"]["ci"] == four["effect"]["ci"] and d["effect_pp"]["ci"][0] > 0
    text = "\n".join(claims.rendering.own_data_lines(list(own.values()), CFG))
    assert "**Distil from a smoothed teacher? No.**" in text
    assert "α = 0 needs T = 1.90 [" in text and "seeds [2] at the edge of the search range left out" in text
    assert "**α for calibration: 0.3**" in text and "(3b)" in text and "(3a)" in text
    # the same data with the LS teachers' students ahead: use a smoothed teacher
    t_, st, g = _distillation([0.0] * 3, [2.0, 2.2, 2.1])
    checks2 = claims.build_checks(evals=t_ + st, gamma={"c": g}, cfg=CFG)
    (item,) = claims.teacher_checks.own_data(t_ + st, [], checks2, CFG)
    assert "Distil from a smoothed teacher? Yes." in "\n".join(claims.rendering.own_data_lines([item], CFG))


def test_report_ends_with_what_you_came_for(tmp_path):
    evals, cal, checks = _five_claims(2, [0.003, 0.004])
    own = claims.teacher_checks.own_data(evals, cal, checks, CFG)
    claims.write_report(checks, CFG, tmp_path / "c.md", tmp_path / "c.json", tmp_path / "c.rst", own=own)
    data = json.loads((tmp_path / "c.json").read_text())
    assert data["banner"]["seeds_trained"] == [2] and len(data["what_you_came_for"]) == 3
    md = (tmp_path / "c.md").read_text()
    tail = md[md.index("## What you came for"):]
    assert "## " not in tail[3:] and "**What you came for: c/r**" in tail
    from docutils.core import publish_parts

    html = publish_parts((tmp_path / "c.rst").read_text(), writer="html", settings_overrides={"halt_level": 2})["body"]
    assert "What you came for: c/r" in html and "What this run found" in html
