"""The claims report (lspipe.claims) and the experiment table (lspipe.experiments) on synthetic
inputs built to be supported, contradicted or inconclusive, and the tightness ratio against a
direct computation."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from lspipe import claims
from lspipe.activations import write_h5
from lspipe.experiments import benchmark_seconds, experiment_rows

CFG = claims.settings()


def _eval(ds, arch, role, run, alpha, seed, acc):
    return {"model": {"dataset": ds, "arch": arch, "role": role, "run": run, "alpha": alpha, "seed": seed},
            "val": {"accuracy": acc, "nll": 0.5}, "test": {"accuracy": acc, "nll": 0.5}}


def _teachers(gains, base=0.80):
    """Teacher evals of alpha 0 and 0.1 with accuracy(0.1) - accuracy(0) = gains[seed] (fractions)."""
    out = []
    for s, g in enumerate(gains):
        out.append(_eval("c10", "resnet", "teacher", f"a0_s{s}", 0.0, s, base + 0.001 * s))
        out.append(_eval("c10", "resnet", "teacher", f"a0.1_s{s}", 0.1, s, base + 0.001 * s + g))
    return out


# --------------------------------------------------------------------------- decision rule


def test_effect_stats_t_interval_against_scipy():
    from scipy import stats

    vals = {0: 1.0, 1: 2.0, 2: 4.0, 3: 3.5}
    st = claims.effect_stats(vals, 0.9)
    v = np.array(list(vals.values()))
    lo, hi = stats.t.interval(0.9, len(v) - 1, loc=v.mean(), scale=stats.sem(v))
    assert st["mean"] == pytest.approx(v.mean()) and st["ci"] == pytest.approx([lo, hi])
    one = claims.effect_stats({3: 0.7})
    assert one["n"] == 1 and one["std"] is None and one["ci"] is None


@pytest.mark.parametrize("kind,values,bound,expected", [
    ("greater", [1.0, 1.2, 0.9], 0.0, claims.SUPPORTED),
    ("greater", [-1.0, -1.2, -0.9], 0.0, claims.CONTRADICTED),
    ("greater", [1.0, -1.0, 0.1], 0.0, claims.INCONCLUSIVE),
    ("greater", [1.0], 0.0, claims.INCONCLUSIVE),  # one seed
    ("at_least", [-0.1, 0.0, -0.05], 0.5, claims.SUPPORTED),  # within the "does not hurt" margin
    ("at_least", [-2.0, -2.1, -1.9], 0.5, claims.CONTRADICTED),
    ("at_most", [0.1, 0.0, 0.05], 0.5, claims.SUPPORTED),
    ("at_most", [2.0, 2.1, 1.9], 0.5, claims.CONTRADICTED),
    ("within", [0.001, -0.002, 0.0], 0.01, claims.SUPPORTED),
    ("within", [0.05, 0.06, 0.055], 0.01, claims.CONTRADICTED),
    ("within", [0.0, 0.02, -0.02], 0.01, claims.INCONCLUSIVE),
])
def test_decide(kind, values, bound, expected):
    st = claims.effect_stats(dict(enumerate(values)))
    assert claims.decide(st, kind, bound, min_seeds=3)[0] == expected


def test_greater_needs_every_seed():
    # a tight interval above 0 but not every seed positive cannot happen with few seeds; force it with many
    values = dict(enumerate([1.0] * 30 + [-0.1]))
    assert claims.decide(claims.effect_stats(values), "greater", 0.0, 3)[0] == claims.INCONCLUSIVE


def test_combine():
    assert claims.combine([claims.SUPPORTED, claims.NOT_RUN]) == claims.SUPPORTED
    assert claims.combine([claims.SUPPORTED, claims.CONTRADICTED, claims.INCONCLUSIVE]) == claims.CONTRADICTED
    assert claims.combine([claims.SUPPORTED, claims.INCONCLUSIVE]) == claims.INCONCLUSIVE
    assert claims.combine([claims.NOT_RUN]) == claims.NOT_RUN


# --------------------------------------------------------------------------- claim 1


def test_accuracy_claim_verdicts():
    sup = claims.accuracy_claims(_teachers([0.003, 0.004, 0.002]), CFG)
    assert [c["verdict"] for c in sup] == [claims.SUPPORTED]
    assert sup[0]["effect"]["mean"] == pytest.approx(0.3)  # percentage points, paired by seed
    con = claims.accuracy_claims(_teachers([-0.03, -0.04, -0.035]), CFG)
    assert con[0]["verdict"] == claims.CONTRADICTED
    one = claims.accuracy_claims(_teachers([0.01]), CFG)
    assert one[0]["verdict"] == claims.INCONCLUSIVE and claims.NO_SPREAD in one[0]["reason"]
    md = claims.render_markdown(one, CFG)
    assert claims.NO_SPREAD in md and "± 0" not in md


def test_pairing_by_seed_removes_seed_offsets():
    # seed offsets of 5 pp dwarf the 0.3 pp effect; unpaired it would straddle zero, paired it is supported
    evals = []
    for s, off in enumerate([0.0, 0.05, -0.05]):
        evals.append(_eval("c", "r", "teacher", f"a0_s{s}", 0.0, s, 0.8 + off))
        evals.append(_eval("c", "r", "teacher", f"a0.1_s{s}", 0.1, s, 0.8 + off + 0.003 + 0.0001 * s))
    c = claims.accuracy_claims(evals, {**CFG, "accuracy_margin": 0.0})[0]
    assert c["verdict"] == claims.SUPPORTED


def test_ls_alpha_not_in_grid_is_not_run():
    c = claims.accuracy_claims(_teachers([0.01, 0.01, 0.01]), {**CFG, "ls_alpha": 0.3})
    assert c[0]["verdict"] == claims.NOT_RUN and "claims.ls_alpha" in c[0]["config_key"]


def test_nothing_configured_is_not_run_with_keys():
    checks = claims.build_checks(cfg=CFG)
    assert {c["verdict"] for c in checks} == {claims.NOT_RUN}
    keys = " ".join(c.get("config_key", "") for c in checks)
    for key in ("teachers", "projections.rows", "calibration.ls_alpha", "distillation", "teachers[].probe"):
        assert key in keys
    assert {s["claim"] for s in claims.summarise(checks)} == {1, 2, 3, 4, 5}


# --------------------------------------------------------------------------- claim 2: tightness


def test_tightness_of_a_hand_made_configuration():
    # equilateral templates of side 10; class 0 points at distance 1 from their centroid, class 1 at 2, class 2 at 3
    t = np.array([[0.0, 0.0], [10.0, 0.0], [5.0, 5.0 * math.sqrt(3)]])
    pts, lab = [], []
    for c, r in enumerate([1.0, 2.0, 3.0]):
        for ang in (0, math.pi / 2, math.pi, 3 * math.pi / 2):
            pts.append(t[c] + r * np.array([math.cos(ang), math.sin(ang)]))
            lab.append(c)
    out = claims.tightness(np.array(pts), np.array(lab), t)
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
    is a rigid motion of the raw 2-D features, so the ratio can be computed directly on them."""
    rng = np.random.default_rng(0)
    k = 4
    w = rng.normal(size=(k, 2)) * 5
    b = np.full(k, 0.7)
    y = np.repeat(np.arange(k), 25)
    x = w[y] + rng.normal(size=(len(y), 2)) * (1 + y[:, None])
    logits = x @ w.T + b

    def rows(s, e):
        return x[s:e].astype(np.float32), logits[s:e].astype(np.float32)

    split = (y, np.arange(len(y)), rows)
    path = tmp_path / "d.h5"
    write_h5(path, classes=[f"c{i}" for i in range(k)], weight=w, bias=b, splits={"val": split},
             attrs={"dataset": "toy", "arch": "lin", "alpha": 0.0, "seed": 0, "run": "a0_s0"})
    fig1 = [{"dataset": "toy", "arch": "lin", "classes": ["c2", "c0", "c3"]}]
    out = claims.tightness_rows([path], fig1, triples=100, seed=0, split="val")
    x32, w32 = x.astype(np.float32).astype(float), w.astype(np.float32).astype(float)
    f = [r for r in out if r["kind"] == "fig1"]
    assert len(f) == 1 and f[0]["n"] == 75
    assert f[0]["ratio"] == pytest.approx(_direct_ratio(x32, y, w32, [2, 0, 3]), rel=1e-6)
    rand = [r for r in out if r["kind"] == "random"]
    assert len(rand) == math.comb(k, 3)  # all triples when there are fewer than asked for
    for r in rand:
        ids = [int(c[1:]) for c in r["classes"].split("|")]
        assert r["ratio"] == pytest.approx(_direct_ratio(x32, y, w32, ids), rel=1e-6)


def test_class_triples_seeded_and_distinct():
    a = claims.class_triples(100, 50, seed=3)
    assert len(a) == 50 == len(set(a)) and a == claims.class_triples(100, 50, seed=3)
    assert all(t[0] < t[1] < t[2] < 100 for t in a)
    assert claims.class_triples(5, 100, 0) == list(itertools.combinations(range(5), 3))


def _tight_rows(hard, ls, kind="random"):
    rows = []
    for s, (h, l) in enumerate(zip(hard, ls)):
        for a, r in ((0.0, h), (0.1, l)):
            rows.append({"dataset": "c", "arch": "r", "alpha": a, "seed": s, "kind": kind, "row": 0,
                         "classes": "a|b|c", "ratio": r})
    return rows


def test_tightness_claim_verdicts():
    sup = claims.tightness_claims(_tight_rows([0.5, 0.6, 0.55], [0.2, 0.25, 0.22]), CFG, 0.1, False)
    assert [c["verdict"] for c in sup] == [claims.NOT_RUN, claims.SUPPORTED]  # no Fig. 1 rows configured
    assert sup[0]["config_key"] == "projections.rows"
    con = claims.tightness_claims(_tight_rows([0.2, 0.25, 0.22], [0.5, 0.6, 0.55], "fig1"), CFG, 0.1, True)
    assert con[0]["verdict"] == claims.CONTRADICTED


# --------------------------------------------------------------------------- claim 3


def _cal(alpha, seed, ece, ece_ts, temp):
    return {"model": {"dataset": "c", "arch": "r", "alpha": alpha, "seed": seed, "role": "teacher"}, "split": "test",
            "temperature": temp, "before": {"ece": ece}, "after": {"ece": ece_ts}}


def test_calibration_claims():
    res = []
    for s in range(3):
        res += [_cal(0.0, s, 0.15 + 0.01 * s, 0.02, 1.9 + 0.1 * s), _cal(0.1, s, 0.025 + 0.001 * s, 0.02, 1.0)]
    lower, t_gt_1, comparable = claims.calibration_claims(res, CFG, None)
    assert lower["verdict"] == t_gt_1["verdict"] == comparable["verdict"] == claims.SUPPORTED
    res = []
    for s in range(3):  # LS is far worse calibrated than temperature scaling; T < 1
        res += [_cal(0.0, s, 0.05, 0.02, 0.7 + 0.01 * s), _cal(0.1, s, 0.12 + 0.01 * s, 0.02, 1.0)]
    lower, t_gt_1, comparable = claims.calibration_claims(res, CFG, None)
    assert lower["verdict"] == t_gt_1["verdict"] == comparable["verdict"] == claims.CONTRADICTED


# --------------------------------------------------------------------------- claim 4


def _distillation(kd_gain, seeds=3):
    """Baseline curve 80 % at alpha 0 -> 82 % at alpha 0.3 (per seed); hard-teacher students at
    gamma 0.15 score baseline(0.15) = 81 % + kd_gain; LS-teacher students at the baseline."""
    teachers, students, gamma = [], [], {}
    for s in range(seeds):
        for a, acc in ((0.0, 0.90), (0.3, 0.91)):
            teachers.append(_eval("c", "big", "teacher", f"a{a:g}_s{s}", a, s, acc + 0.002 * s))
        for a, acc in ((0.0, 0.80), (0.3, 0.82)):
            students.append(_eval("c", "small", "student", f"a{a:g}_s{s}", a, s, acc))
        gamma[("0", s, "4")] = 0.15
        gamma[("0", s, "1")] = 0.01
        gamma[("0.3", s, "1")] = 0.3
        students.append(_eval("c", "small", "student", f"kd-big-a0-T4_s{s}", 0.0, s, 0.81 + kd_gain[s]))
        students.append(_eval("c", "small", "student", f"kd-big-a0.3-T1_s{s}", 0.0, s, 0.82 - 0.001 * s))
    return teachers, students, gamma


def test_interpolate_baseline():
    assert claims.interpolate_baseline({0.0: 80.0, 0.3: 82.0}, 0.15) == pytest.approx(81.0)
    assert claims.interpolate_baseline({0.0: 80.0, 0.3: 82.0}, 0.5) is None  # no extrapolation


def test_distillation_claims_supported_and_contradicted():
    t, s, g = _distillation([0.02, 0.025, 0.03])
    res = claims.distillation_claims("c", t, s, g, CFG)
    assert len(res) == 4  # teacher slope, hard teacher at T = 4, LS teacher, best student
    kd_hard = next(c for c in res if "T = 4" in c["statement"])
    assert kd_hard["verdict"] == claims.SUPPORTED
    assert kd_hard["effect"]["mean"] == pytest.approx(2.5)  # pp over the baseline interpolated at gamma 0.15
    assert any("interpolated" in n for n in kd_hard["notes"])
    kd_ls = next(c for c in res if "teacher α = 0.3" in c["statement"])
    assert kd_ls["verdict"] == claims.SUPPORTED  # at most 0.2 pp below the baseline: "no better than"
    assert claims.combine(c["verdict"] for c in res) == claims.SUPPORTED
    t, s, g = _distillation([-0.05, -0.04, -0.045])
    res = claims.distillation_claims("c", t, s, g, CFG)
    kd_hard = next(c for c in res if "T = 4" in c["statement"])
    best = next(c for c in res if "best student" in c["statement"])
    assert kd_hard["verdict"] == claims.CONTRADICTED and best["verdict"] == claims.CONTRADICTED


def test_distillation_gamma_outside_baseline_range_is_not_compared():
    t, s, g = _distillation([0.02, 0.02, 0.02])
    g = {k: (0.9 if k[2] == "4" else v) for k, v in g.items()}
    kd_hard = next(c for c in claims.distillation_claims("c", t, s, g, CFG) if "T = 4" in c["statement"])
    assert kd_hard["verdict"] == claims.INCONCLUSIVE and kd_hard["effect"]["n"] == 0
    assert any("no extrapolation" in n for n in kd_hard["notes"])


# --------------------------------------------------------------------------- claim 5


def _curves(shape_hard, shape_ls, seeds=3):
    rows = []
    for s in range(seeds):
        for a, shape in ((0.0, shape_hard), (0.1, shape_ls)):
            for step, mi in enumerate(shape):
                rows.append({"dataset": "c", "arch": "r", "alpha": a, "seed": s, "step": step * 10,
                             "mi": mi + 0.01 * s})
    return rows


def test_mi_claims():
    rise_fall, lower = claims.mi_claims(_curves([0.1, 3.0, 2.5], [0.1, 3.0, 0.8]), CFG)
    assert rise_fall["verdict"] == lower["verdict"] == claims.SUPPORTED
    rise_fall, lower = claims.mi_claims(_curves([0.1, 2.0, 1.0], [0.1, 1.0, 3.0]), CFG)  # LS rises only, ends higher
    assert rise_fall["verdict"] == lower["verdict"] == claims.CONTRADICTED
    rise_fall, lower = claims.mi_claims(_curves([0.1, 3.0, 2.5], [0.1, 3.0, 0.8], seeds=1), CFG)
    assert rise_fall["verdict"] == lower["verdict"] == claims.INCONCLUSIVE


def test_report_files(tmp_path):
    checks = claims.accuracy_claims(_teachers([0.003, 0.004, 0.002]), CFG) + claims.build_checks(cfg=CFG)[1:]
    claims.write_report(checks, CFG, tmp_path / "c.md", tmp_path / "c.json", tmp_path / "c.rst")
    data = json.loads((tmp_path / "c.json").read_text())
    assert data["summary"][0]["verdict"] == claims.SUPPORTED and data["settings"]["min_seeds"] == 3
    md = (tmp_path / "c.md").read_text()
    assert "## Decision rule" in md and "claims.accuracy_margin" in md and "not run" in md
    from docutils.core import publish_parts

    html = publish_parts((tmp_path / "c.rst").read_text(), writer_name="html",
                         settings_overrides={"halt_level": 2})["body"]
    assert "supported" in html


# --------------------------------------------------------------------------- experiment table


def test_experiment_rows_share_a_fused_jobs_time(tmp_path):
    fused = tmp_path / "fused.tsv"
    fused.write_text("s\th:m:s\tmax_rss\n12.5\t0:00:12\t100\n")
    single = tmp_path / "single.tsv"
    single.write_text("s\th:m:s\tmax_rss\n3.0\t0:00:03\t100\n")
    assert benchmark_seconds(fused) == 12.5 and benchmark_seconds(tmp_path / "missing.tsv") is None
    evals = [_eval("c", "r", "teacher", "a0_s0", 0.0, 0, 0.9), _eval("c", "r", "teacher", "a0.1_s0", 0.1, 0, 0.91),
             _eval("c", "m", "student", "kd-r-a0-T4_s0", 0.0, 0, 0.8)]
    cals = [{"before": {"ece": 0.1}, "after": {"ece": 0.02}, "temperature": 1.5}] * 3
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
    metas[2]["form"] = "slides"
    assert experiment_rows(evals, cals, metas, [fused, fused, single])[2]["form"] == "slides"


def test_distillation_uses_only_the_distilled_teachers_grid():
    t, s, g = _distillation([0.02, 0.025, 0.03])
    slope = next(c for c in claims.distillation_claims("c", t, s, g, CFG) if "slope" in c["statement"])
    # another teacher grid of the same dataset (e.g. the paper's AlexNet teachers) must not enter the slope
    other = [_eval("c", "other", "teacher", f"a0_s{k}", 0.0, k, 0.10) for k in range(3)]
    slope2 = next(c for c in claims.distillation_claims("c", other + t, s, g, CFG) if "slope" in c["statement"])
    assert slope2["effect"]["values"] == pytest.approx(slope["effect"]["values"])
    assert slope["effect"]["mean"] == pytest.approx(100 * 0.01 / 0.3)  # pp per unit alpha


def test_cli_reads_a_results_folder(tmp_path):
    from lspipe.cli import main

    res = tmp_path / "results"
    for ev in _teachers([0.003, 0.004, 0.002]):
        m = ev["model"]
        p = res / "eval" / m["dataset"] / m["arch"] / "teacher" / f"{m['run']}.json"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(ev))
    assert main(["claims", "--results", str(res), "--md", str(tmp_path / "c.md"), "--json", str(tmp_path / "c.json")]) == 0
    data = json.loads((tmp_path / "c.json").read_text())
    verdicts = {(s["claim"], s["scope"]): s["verdict"] for s in data["summary"]}
    assert verdicts[(1, "c10/resnet")] == claims.SUPPORTED
    assert {v for (c, _), v in verdicts.items() if c != 1} == {claims.NOT_RUN}
