"""The claims on teacher grids, from the models keyed by objective and grouped by grid (:func:`by_grid`):
claim 1 (accuracy), claim 2 (tightness), claim 3 (calibration), claim 5 (erasure of information), and what a
user's own dataset came for (:func:`own_data`)."""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from lspipe.base.defaults import default
from lspipe.base.errors import ConfigError
from lspipe.base.runs import fmt, objective_label, objective_token, pick_ls_alpha, record_objective
from lspipe.engine.dumpfile import Dump
from lspipe.experiments.calibration import debiased_squared_ce, reliability, softmax, top_label
from lspipe.experiments.claims.statistics import (DESCRIPTIVE, PRIMARY, REGIME, _close, _mean, _resolution, _sources,
                                                  ce_gap_stats, check, effect_stats, not_compared, not_run)
from lspipe.experiments.mi import mi_noise


# --------------------------------------------------------------------------- models keyed by objective


def objective_of(model: dict) -> dict:
    """A model's objective: its record's ``objective`` (evaluations and calibrations written since it is
    recorded), else the one its run name says, else label smoothing at its recorded alpha
    (:func:`lspipe.base.runs.record_objective`). A confidence-penalty teacher records ``alpha: 0`` but is
    not the hard-target arm: its objective says so."""
    obj = record_objective(model)
    if obj is None:
        raise ConfigError(f"model {model.get('run')!r} of {model.get('dataset')}/{model.get('arch')}: neither its record "
                          "nor its run name nor its alpha says its objective; rerun its evaluation "
                          "(snakemake -R analyse_model)")
    return obj


def objective_key(obj: dict) -> str:
    return objective_token(obj) if obj["kind"] != "ls" else f"a{fmt(obj['alpha'])}"


def is_ls(obj: dict) -> bool:
    return obj["kind"] == "ls"


def by_grid(records: Iterable[dict], what: str | None = None, cell=None) -> dict[tuple, dict]:
    """Records grouped by teacher grid, the one grouping of every claim: ``{(dataset, arch): {cell: {seed: record}}}``.
    A record is an evaluation or calibration JSON (its ``model``) or a row of a table (tightness, an MI curve: its
    own ``dataset``, ``arch``, ``alpha``, ``seed``); each gets ``_objective`` (:func:`objective_of`). ``cell(record)``
    is its cell in the grid, by default its objective's key (:func:`objective_key`). With ``what`` (what the
    records are) a cell holds one record per seed, and a second is refused (:class:`ConfigError` naming both
    files); without, each seed holds the list of its records in their order (the rows of a curve)."""
    out: dict[tuple, dict] = defaultdict(lambda: defaultdict(dict))
    for r in records:
        m = r.get("model", r)
        obj = r["_objective"] = objective_of(m)
        seeds, seed = out[(m["dataset"], m["arch"])][objective_key(obj) if cell is None else cell(r)], int(m["seed"])
        if what is None:
            seeds.setdefault(seed, []).append(r)
        elif seed in seeds:
            raise ConfigError(f"two {what} for {m['dataset']}/{m['arch']} {objective_label(obj)} seed {seed}: "
                              f"{seeds[seed].get('_path', seeds[seed]['model'].get('run'))} and "
                              f"{r.get('_path', m.get('run'))}; remove one (or pass --config to read only what a "
                              "configuration names)")
        else:
            seeds[seed] = r
    return out


def ls_alphas(by_obj: dict[str, dict]) -> dict[float, str]:
    """``{alpha: key}`` of the label-smoothing objectives of a grid (the hard arm is alpha 0)."""
    out = {}
    for key, cell in by_obj.items():
        obj = next(iter(cell.values()))["_objective"]
        if is_ls(obj):
            out[float(obj["alpha"])] = key
    return out


# --------------------------------------------------------------------------- claim 1: accuracy

# The paper's Table 2 (top-1 %, alpha 0 / alpha 0.1) by dataset family: claim 1's regime flag and the forest plot
PAPER_ACCURACY = {"cifar100": (72.1, 72.7, "CIFAR-100 ResNet-56"), "cifar10": (86.8, 86.7, "CIFAR-10 AlexNet"),
                  "imagenet": (80.9, 80.9, "ImageNet Inception-v4")}


def paper_family(dataset: str) -> str | None:
    """The paper's dataset a configured dataset name stands for (``cifar10``, ``cifar100``, ``imagenet``)."""
    name = dataset.lower().replace("-", "").replace("_", "")
    return next((k for k in PAPER_ACCURACY if name.startswith(k)), None)


def accuracy_margin(cfg: dict, hard_accuracy: float | None) -> tuple[float, str]:
    """Claim 1's margin in pp and its source: ``claims.accuracy_margin`` when set, else
    ``claims.accuracy_margin_relative`` x the hard-target model's error rate (100 − accuracy)."""
    if cfg.get("accuracy_margin") is not None:
        return float(cfg["accuracy_margin"]), f"claims.accuracy_margin = {cfg['accuracy_margin']:g} pp"
    r = cfg["accuracy_margin_relative"]
    err = 100.0 - (hard_accuracy if hard_accuracy is not None else 0.0)
    return r * err, (f"claims.accuracy_margin_relative = {r:g} × the α = 0 model's error {err:.3g} % (the paper's "
                     f"Table 2: twice its largest seed sd, 0.3 pp, in units of CIFAR-10 AlexNet's 13.2 % error ≈ 0.05)")


def accuracy_claims(teacher_evals: Sequence[dict], cfg: dict, split: str = default("accuracy_table.split")) -> list[dict]:
    """Claim 1 per teacher grid: accuracy(LS) − accuracy(hard) in percentage points, paired by seed.
    Models are keyed by objective: the hard arm is label smoothing at alpha 0 and nothing else.
    Primary: ``claims.ls_alpha``; descriptive: every other nonzero alpha and every other objective of
    the grid (a confidence-penalty teacher is a row of its own). Regime: the hard-target model's
    accuracy is in the paper's regime (within ``claims.regime_accuracy_gap`` pp of the paper's
    Table 2, for the datasets the paper reports)."""
    statement = "label smoothing does not hurt top-1 accuracy: accuracy(LS) − accuracy(α = 0), paired by seed"
    out = []
    for (ds, arch), by_obj in sorted(by_grid(teacher_evals, "teacher evaluations").items()):
        scope = f"{ds}/{arch}"
        alphas = ls_alphas(by_obj)
        ls = pick_ls_alpha(alphas, cfg["ls_alpha"])
        hard = next((alphas[a] for a in alphas if _close(a, 0.0)), None)
        if ls is None or hard is None:
            out.append(not_run(1, scope, statement, "teachers[].alphas (alpha 0 and an LS alpha; claims.ls_alpha)"))
            continue
        others = [alphas[a] for a in sorted(alphas) if a > 0 and not _close(a, ls)]
        others += sorted(k for k in by_obj if k not in alphas.values())  # other objectives: rows of their own
        h = by_obj[hard]
        acc_hard_all = _mean(100.0 * r[split]["accuracy"] for r in h.values())
        margin, margin_src = accuracy_margin(cfg, acc_hard_all)
        for key, role in [(alphas[ls], PRIMARY)] + [(k, DESCRIPTIVE) for k in others]:
            s = by_obj[key]
            obj = next(iter(s.values()))["_objective"]
            seeds = sorted(set(h) & set(s))
            acc_h = {k: 100.0 * h[k][split]["accuracy"] for k in seeds}
            acc_s = {k: 100.0 * s[k][split]["accuracy"] for k in seeds}
            used = [h[k] for k in seeds] + [s[k] for k in seeds]
            src = _sources(used, [f"{split}.accuracy", f"{split}.n"])
            name = f"LS α = {obj['alpha']:g}" if is_ls(obj) else objective_label(obj)
            label = f"{name}, {split} split"
            st = statement if is_ls(obj) else (f"{objective_label(obj)} does not hurt top-1 accuracy: "
                                                f"accuracy({obj['kind']}) − accuracy(α = 0), paired by seed")
            if not seeds:
                out.append(not_compared(1, scope, st, "no seed has both models",
                                        f"teachers[].seeds ({sorted(h)} and {sorted(s)})", role, label, sources=src))
                continue
            numbers = {f"accuracy α=0 (%, {split})": _mean(acc_h.values()),
                       f"accuracy {name} (%, {split})": _mean(acc_s.values()),
                       "margin (pp)": f"{margin:.3g} ({margin_src})",
                       "test images (one image = resolution)": min(int(ev[split].get("n") or 0) for ev in used) or "?"}
            fam = paper_family(ds)
            paper = None
            if fam and role == PRIMARY and _close(ls, 0.1):
                p0, p1, what = PAPER_ACCURACY[fam]
                paper = {"value": p1 - p0, "source": f"Table 2, {what}: {p1:g} − {p0:g}"}
            out.append(check(1, scope, st, {k: acc_s[k] - acc_h[k] for k in seeds}, kind="at_least",
                             bound=margin, unit="pp", cfg=cfg, role=role, label=label,
                             resolution=_resolution(used, split), numbers=numbers, sources=src, paper=paper))
        # regime: the hard-target model's accuracy against the paper's
        fam = paper_family(ds)
        st_r = ("the hard-target model is in the paper's accuracy regime: accuracy(α = 0) − the paper's accuracy(α = 0) "
                f"above −claims.regime_accuracy_gap")
        if fam is None:
            out.append(not_compared(1, scope, st_r, f"the paper reports no accuracy for {ds}",
                                    "a dataset the paper reports (cifar10, cifar100, imagenet)", REGIME))
        else:
            p0, _, what = PAPER_ACCURACY[fam]
            out.append(check(1, scope, st_r, {k: 100.0 * r[split]["accuracy"] - p0 for k, r in h.items()},
                             kind="at_least", bound=cfg["regime_accuracy_gap"], unit="pp", cfg=cfg, role=REGIME,
                             numbers={f"the paper's accuracy α=0 ({what}, %)": p0,
                                      f"accuracy α=0 (%, {split})": acc_hard_all},
                             resolution=_resolution(h.values(), split),
                             sources=_sources(h.values(), [f"{split}.accuracy"])))
    if not out:
        out.append(not_run(1, "all", statement, "teachers"))
    return out


# --------------------------------------------------------------------------- claim 2: tightness


def tightness_claims(rows: Sequence[dict], cfg: dict, fig1_ls_alpha: float | None, has_fig1_rows: bool) -> list[dict]:
    """Claim 2 per teacher grid, paired by seed: ratio(hard) − ratio(LS) > 0.

    Primary: the mean over every class triple of the table (kind ``random``) on
    ``claims.tightness_split``, LS = ``claims.ls_alpha``. Descriptive: the same on the table's
    other splits, and each Fig. 1 row on each split (LS = ``projections.ls_alpha``).
    """
    statement = "label smoothing tightens the clusters: tightness ratio(α = 0) − ratio(LS) > 0, paired by seed"
    # another objective's dump (e.g. a confidence-penalty teacher, alpha 0) is not the hard arm
    grouped = by_grid([r for r in rows if not r.get("run") or is_ls(objective_of(r))],
                      cell=lambda r: (r.get("split") or "val", r["kind"], int(r["row"]), float(r["alpha"])))
    by: dict[tuple, dict] = defaultdict(dict)  # (ds, arch, split, kind, row) -> alpha -> seed -> row (the last)
    for grid, cells in grouped.items():
        for (split, kind, row, alpha), seeds in cells.items():
            by[(*grid, split, kind, row)][alpha] = {s: rs[-1] for s, rs in seeds.items()}
    grids = {grid: {c[3] for c in cells} for grid, cells in grouped.items()}
    out = []
    primary_split = cfg["tightness_split"]
    if not grids:
        out.append(not_run(2, "all", statement, "teachers[].alphas (alpha 0 and an LS alpha) and claims.tightness_triples"))
    for (ds, arch), alphas in sorted(grids.items()):
        scope = f"{ds}/{arch}"
        splits = sorted({k[2] for k in by if k[:2] == (ds, arch)}, key=lambda s: (s != primary_split, s))
        ls = pick_ls_alpha(alphas, cfg["ls_alpha"])
        if primary_split not in splits:
            out.append(not_compared(2, scope, statement, f"the tightness table has no {primary_split!r} split",
                                    "claims.tightness_split"))
        for split in splits:
            role = PRIMARY if split == primary_split else DESCRIPTIVE
            keys = sorted(k for k in by if k[:4] == (ds, arch, split, "random"))
            label = f"mean over class triples, {split} split"
            if not keys or ls is None or 0.0 not in alphas:
                out.append(not_run(2, scope, statement, "teachers[].alphas (alpha 0 and an LS alpha; claims.ls_alpha) "
                                   "and claims.tightness_triples", role, label))
                continue
            diffs: dict[int, list[float]] = defaultdict(list)
            ratio_h: dict[int, list[float]] = defaultdict(list)
            ratio_s: dict[int, list[float]] = defaultdict(list)
            used = []
            for k in keys:
                h, s = by[k].get(0.0, {}), by[k].get(ls, {})
                for seed in set(h) & set(s):
                    diffs[seed].append(float(h[seed]["ratio"]) - float(s[seed]["ratio"]))
                    ratio_h[seed].append(float(h[seed]["ratio"]))
                    ratio_s[seed].append(float(s[seed]["ratio"]))
                    used += [h[seed], s[seed]]
            src = _sources(used, [f"kind=random, split={split}: ratio per (alpha, seed, triple)"])
            if not diffs:
                out.append(not_compared(2, scope, statement, f"no seed has both α = 0 and α = {ls:g}",
                                        "teachers[].seeds / claims.ls_alpha", role, label, sources=src))
                continue
            counts = {len(v) for v in diffs.values()}
            mh, ms = _mean(itertools.chain(*ratio_h.values())), _mean(itertools.chain(*ratio_s.values()))
            numbers = {"class triples": max(counts), "mean ratio α=0": mh, f"mean ratio α={ls:g}": ms,
                       f"ratio_LS / ratio_hard (α={ls:g})": ms / mh if mh else None,
                       "ratio_LS / ratio_hard per seed": ", ".join(
                           f"s{s} {np.mean(ratio_s[s]) / np.mean(ratio_h[s]):.3f}" for s in sorted(diffs)),
                       "fraction of (triple, seed) pairs tighter with LS":
                           float(np.mean([x > 0 for v in diffs.values() for x in v]))}
            notes = [] if len(counts) == 1 else [f"seeds differ in their number of triples: {sorted(counts)}"]
            out.append(check(2, scope, statement, {s: float(np.mean(v)) for s, v in diffs.items()}, kind="greater",
                             bound=0.0, unit="ratio", cfg=cfg, role=role, label=f"{label}; LS α = {ls:g}",
                             numbers=numbers, notes=notes, sources=src))
        fig1 = sorted(k for k in by if k[:2] == (ds, arch) and k[3] == "fig1")
        for key in sorted(fig1, key=lambda k: (k[4], k[2] != primary_split, k[2])):
            _, _, split, _, i = key
            lsf = pick_ls_alpha(by[key], fig1_ls_alpha)
            label = f"Fig. 1 row {i}, {split} split"
            if lsf is None or 0.0 not in by[key]:
                out.append(not_run(2, scope, statement, "projections.ls_alpha", DESCRIPTIVE, label))
                continue
            h, s = by[key][0.0], by[key][lsf]
            seeds = sorted(set(h) & set(s))
            src = _sources([h[k] for k in seeds] + [s[k] for k in seeds], [f"kind=fig1, row={i}, split={split}: ratio"])
            if not seeds:
                out.append(not_compared(2, scope, statement, "no seed has both models", "teachers[].seeds",
                                        DESCRIPTIVE, label, sources=src))
                continue
            classes = h[seeds[0]]["classes"].replace("|", ", ")
            mh, ms = _mean(float(h[k]["ratio"]) for k in seeds), _mean(float(s[k]["ratio"]) for k in seeds)
            numbers = {"ratio α=0": mh, f"ratio α={lsf:g}": ms, f"ratio_LS / ratio_hard": ms / mh if mh else None}
            out.append(check(2, scope, statement, {k: float(h[k]["ratio"]) - float(s[k]["ratio"]) for k in seeds},
                             kind="greater", bound=0.0, unit="ratio", cfg=cfg, role=DESCRIPTIVE,
                             label=f"{label} ({classes}); LS α = {lsf:g}", numbers=numbers, sources=src))
    if not has_fig1_rows:
        out.append(not_run(2, out[0]["scope"] if out and out[0]["scope"] != "all" else "all", statement,
                           "projections.rows", DESCRIPTIVE, "Fig. 1 rows"))
    return out


# --------------------------------------------------------------------------- claim 3: calibration


def choose_alpha(val_metric: dict[float, float], nonzero: Sequence[float]) -> tuple[float, str | None]:
    """alpha* = the nonzero alpha with the lowest validation metric (ties: the smaller alpha), and a
    note when it sits at an edge of the grid's nonzero alphas (None otherwise)."""
    alphas = sorted(nonzero)
    best = min(alphas, key=lambda a: (val_metric[a], a))
    if len(alphas) == 1:
        return best, "α* is the grid's only nonzero α: no choice was made"
    if best == alphas[-1]:
        return best, f"α* = {best:g} is the grid's largest α: a larger α may calibrate better"
    if best == alphas[0]:
        return best, f"α* = {best:g} is the grid's smallest nonzero α: a smaller α may calibrate better"
    return best, None


# The paper's Table 3 ECE (LS − temperature scaling) by dataset family: drawn beside claim 3's primary in the forest plot
PAPER_ECE_GAP = {"cifar100": (0.024 - 0.021, "Table 3, CIFAR-100 ResNet-56: ECE 0.024 (LS) − 0.021 (TS)"),
                 "imagenet": (0.035 - 0.022, "Table 3, ImageNet Inception-v4: ECE 0.035 (LS) − 0.022 (TS)")}


def _squared_ce(record: dict, part: str) -> float | None:
    """Claim 3's unbiased squared RMS calibration error of one calibration JSON's ``before`` / ``after``
    reliability diagram (:func:`lspipe.experiments.calibration.debiased_squared_ce`); None without one."""
    rel = (record.get(part) or {}).get("reliability")
    if not rel or "count" not in rel:
        return None
    return debiased_squared_ce(rel["count"], rel["accuracy"], rel["confidence"])


def calibration_claims(results: Sequence[dict], cfg: dict) -> list[dict]:
    """Claim 3 per teacher grid, from every teacher's calibration JSON (``lspipe calibrate``).

    Models are keyed by objective (only label smoothing enters; the hard arm is alpha 0). alpha* =
    argmin over the nonzero alphas of the mean over seeds of the validation ECE (or NLL,
    ``claims.calibration_selection``) at T = 1; an alpha missing in a seed of the hard arm is left
    out of the choice (and named), not the seed. Primary: the RMS calibration error of LS at alpha*
    minus that of the hard arm after temperature scaling, on test, interval below ``claims.ece_margin``
    (:func:`ce_gap_stats`: squared errors estimated without bias, Kumar et al. 2019). Descriptive: LS
    lowers the RMS calibration error and the NLL of hard targets at T = 1. Reported, no verdict: NLL(LS)
    − NLL(temperature scaled) (the paper claims nothing there). Regime: the hard-target model's
    fitted T > 1 (a T on the edge of its search range is left out)."""
    rows = [r for r in results if r["model"].get("role", "teacher") == "teacher"]
    groups = by_grid(rows, "calibration files")
    if not groups:
        return [not_run(3, "all", CALIBRATION_STATEMENT, "teachers[].alphas (alpha 0 and a nonzero alpha)")]
    return [c for (ds, arch), by_obj in sorted(groups.items()) for c in _calibration_grid(ds, arch, by_obj, cfg)]


CALIBRATION_STATEMENT = (
    "LS at α* (chosen on validation) is not worse calibrated than temperature scaling: RMS calibration error "
    "CE(LS α*) − CE(α = 0, temperature scaled) < margin, test split (squared errors estimated without bias)")


def _calibration_grid(ds: str, arch: str, by_obj: dict, cfg: dict) -> list[dict]:
    """Claim 3's checks of one grid (:func:`calibration_claims`): alpha* chosen on validation, then the checks."""
    scope, st_a, metric = f"{ds}/{arch}", CALIBRATION_STATEMENT, cfg["calibration_selection"]
    by_alpha = {a: by_obj[k] for a, k in ls_alphas(by_obj).items()}
    nonzero_all = sorted(a for a in by_alpha if a > 0)
    if 0.0 not in by_alpha or not nonzero_all:
        return [not_run(3, scope, st_a, "teachers[].alphas (alpha 0 and a nonzero alpha)")]
    hard_seeds = set(by_alpha[0.0])
    nonzero = [a for a in nonzero_all if hard_seeds <= set(by_alpha[a])]
    dropped = [a for a in nonzero_all if a not in nonzero]
    if not nonzero:  # every alpha misses a seed: fall back to the seeds all of them share
        nonzero = nonzero_all
        dropped = []
    seeds = sorted(set.intersection(*(set(by_alpha[a]) for a in [0.0] + nonzero)))
    all_used = [r for a in by_alpha for r in by_alpha[a].values()]
    src = _sources(all_used, [f"val.{metric} (α* selection, T = 1)", "before.reliability", "after.reliability",
                              "before.ece", "after.ece", "before.ece_floor", "before.nll", "after.nll",
                              "temperature", "fit.at_bound"])
    if not seeds:
        return [not_compared(3, scope, st_a, "no seed has every α of the grid", "teachers[].seeds", sources=src)]
    if any("val" not in by_alpha[a][s] for a in nonzero for s in seeds):
        return [not_compared(3, scope, st_a, "the calibration JSONs have no validation metrics at T = 1 "
                             "(written before lspipe.experiments.calibration format 2)",
                             "rerunning `lspipe calibrate` (snakemake -R analyse_model)", sources=src)]
    val = {a: _mean(by_alpha[a][s]["val"][metric] for s in seeds) for a in nonzero}
    star, edge = choose_alpha(val, nonzero)
    h, s_ = by_alpha[0.0], by_alpha[star]
    sq = {("ls", k): _squared_ce(s_[k], "before") for k in seeds}
    sq.update({("ts", k): _squared_ce(h[k], "after") for k in seeds})
    sq.update({("hard", k): _squared_ce(h[k], "before") for k in seeds})
    if any(v is None for v in sq.values()):
        return [not_compared(3, scope, st_a, "the calibration JSONs have no reliability diagrams",
                             "rerunning `lspipe calibrate` (snakemake -R analyse_model)", sources=src)]
    numbers = _calibration_numbers(by_alpha, star, nonzero, seeds, val, sq, metric)
    at_bound = {(a, k): by_alpha[a][k]["temperature"] for a in by_alpha for k in by_alpha[a]
                if (by_alpha[a][k].get("fit") or {}).get("at_bound")}
    others = sorted(objective_label(next(iter(c.values()))["_objective"]) for k, c in by_obj.items()
                    if not is_ls(next(iter(c.values()))["_objective"]))
    notes = [f"α* chosen among the nonzero alphas {', '.join(f'{a:g}' for a in nonzero)} by the mean validation "
             f"{metric.upper()} at T = 1 over seeds {seeds} (claims.calibration_selection), without test data; "
             "temperature scaling gets one fitted T per model, LS one α per grid (conservative for LS)",
             "the calibration error is the RMS over 15 confidence bins, its square estimated without bias per model "
             "(Kumar, Liang & Ma 2019); the plug-in ECE of a well-calibrated model sits at its floor (about 0.027 "
             "at 2,000 test images), which would shrink the gap to temperature scaling, so the ECE is reported, "
             "not tested; the interval combines two estimates (Bonferroni), see the decision rule"]
    notes += [edge] if edge else []
    if dropped:
        notes.append("left out of the α* choice (missing in a seed of α = 0): α " + ", ".join(f"{a:g}" for a in dropped))
    if others:
        notes.append("other objectives left out (claim 3 compares label smoothing): " + "; ".join(others))
    if at_bound:
        notes.append("temperatures at the edge of the search range (a bound, not a fitted value): " + ", ".join(
            f"α={a:g} s{k}: T = {t:.3g}" for (a, k), t in sorted(at_bound.items())))
    return _calibration_checks(ds, scope, h, s_, star, seeds, sq, numbers, notes, at_bound, src, cfg)


def _calibration_numbers(by_alpha: dict, star: float, nonzero: list, seeds: list, val: dict, sq: dict,
                         metric: str) -> dict:
    """The numbers claim 3 reports for one grid: the selection, the RMS calibration errors, the ECE and NLL."""
    h, s_ = by_alpha[0.0], by_alpha[star]
    ece = {a: _mean(by_alpha[a][s]["before"]["ece"] for s in seeds) for a in [0.0] + nonzero}

    def rms(arm):
        return math.sqrt(max(0.0, _mean(sq[(arm, k)] for k in seeds)))

    numbers = {
        f"validation {metric.upper()} at T = 1 by α (selects α*)": ", ".join(f"α={a:g}: {v:.4f}" for a, v in val.items()),
        "α*": star,
        "RMS calibration error, debiased (√ of the mean squared estimate): "
        f"LS α*={star:g} / α=0 temperature scaled / α=0 at T = 1": f"{rms('ls'):.4f} / {rms('ts'):.4f} / {rms('hard'):.4f}",
        "test ECE (plug-in, biased upwards) at T = 1 by α": ", ".join(f"α={a:g}: {v:.4f}" for a, v in ece.items()),
        f"test ECE α*={star:g}": _mean(s_[k]["before"]["ece"] for k in seeds),
        "test ECE α=0, temperature scaled": _mean(h[k]["after"]["ece"] for k in seeds),
        "plug-in ECE difference LS α* − temperature scaled (biased towards 0 near calibration)":
            _mean(s_[k]["before"]["ece"] - h[k]["after"]["ece"] for k in seeds),
    }
    floors = {"LS α*": [s_[k]["before"].get("ece_floor") for k in seeds],
              "α=0 temperature scaled": [h[k]["after"].get("ece_floor") for k in seeds]}
    n_test = h[seeds[0]]["before"].get("reliability", {}).get("n")
    if all(v is not None for f in floors.values() for v in f):
        numbers["ECE floor (expected plug-in ECE if perfectly calibrated, same N and confidences)"] = "; ".join(
            f"{k}: {_mean(v):.4f}" for k, v in floors.items()) + (f" (N = {n_test}, {h[seeds[0]]['bins']} bins)"
                                                                  if n_test else "")
    numbers.update({
        f"test NLL α*={star:g}": _mean(s_[k]["before"]["nll"] for k in seeds),
        "test NLL α=0, temperature scaled": _mean(h[k]["after"]["nll"] for k in seeds),
        "test NLL α=0, T = 1": _mean(h[k]["before"]["nll"] for k in seeds),
    })
    return numbers


def _calibration_checks(ds: str, scope: str, h: dict, s_: dict, star: float, seeds: list, sq: dict, numbers: dict, notes: list,
                        at_bound: dict, src: dict, cfg: dict) -> list[dict]:
    """Claim 3's checks of one grid, its alpha* chosen: the primary, two descriptive, a number and the regime."""
    ls_sq = {k: sq[("ls", k)] for k in seeds}
    ts_sq = {k: sq[("ts", k)] for k in seeds}
    hard_sq = {k: sq[("hard", k)] for k in seeds}
    fam = paper_family(ds)
    paper = ({"value": PAPER_ECE_GAP[fam][0], "source": PAPER_ECE_GAP[fam][1] + " (plug-in ECE)"}
             if fam in PAPER_ECE_GAP else None)
    out = [check(3, scope, CALIBRATION_STATEMENT, {}, kind="at_most", bound=cfg["ece_margin"], unit="CE", cfg=cfg,
                 role=PRIMARY, label=f"α* = {star:g}", numbers=numbers, notes=notes, sources=src, paper=paper,
                 stats_at=lambda c, a=ls_sq, b=ts_sq: ce_gap_stats(a, b, c))]
    out.append(check(3, scope, "LS at α* lowers the RMS calibration error of hard targets at T = 1: "
                     "CE(α = 0) − CE(LS α*) > 0, test split", {}, kind="greater", bound=0.0, unit="CE", cfg=cfg,
                     label=f"α* = {star:g}", numbers={k: v for k, v in numbers.items() if "ECE" in k or "RMS" in k},
                     sources=src, stats_at=lambda c, a=hard_sq, b=ls_sq: ce_gap_stats(a, b, c)))
    out.append(check(3, scope, "LS at α* lowers the NLL (a proper score) of hard targets at T = 1: "
                     "NLL(α = 0) − NLL(LS α*) > 0, paired by seed, test split",
                     {k: h[k]["before"]["nll"] - s_[k]["before"]["nll"] for k in seeds}, kind="greater",
                     bound=0.0, unit="nats", cfg=cfg, label=f"α* = {star:g}",
                     numbers={k: v for k, v in numbers.items() if "NLL" in k}, sources=src))
    out.append(check(3, scope, "NLL (a proper score) of LS at α* against temperature scaling: "
                     "NLL(LS α*) − NLL(α = 0, temperature scaled), a number (the paper claims nothing here)",
                     {k: s_[k]["before"]["nll"] - h[k]["after"]["nll"] for k in seeds}, kind="number",
                     bound=0.0, unit="nats", cfg=cfg, label=f"α* = {star:g}",
                     numbers={k: v for k, v in numbers.items() if "NLL" in k}, sources=src))
    temps = {k: float(r["temperature"]) - 1.0 for k, r in h.items() if (0.0, k) not in at_bound}
    left = sorted(k for k in h if (0.0, k) in at_bound)
    out.append(check(3, scope, "the hard-target model is overconfident: its fitted temperature T − 1 > 0",
                     temps, kind="greater", bound=0.0, unit="T", cfg=cfg, role=REGIME,
                     numbers={"T (fitted on the validation split)": _mean(float(r["temperature"]) for r in h.values())},
                     notes=[f"seeds {left} left out: T at the edge of the search range"] if left else [],
                     sources=_sources(h.values(), ["temperature", "fit.at_bound"])))
    return out


# --------------------------------------------------------------------------- claim 5: MI


def curve_shape(mi: Sequence[float]) -> dict:
    """first, peak (max of the 3-record running mean), late (mean of the last fifth of the records,
    at least one) of one MI curve in record order; None for fewer than 3 records."""
    v = np.asarray(mi, dtype=float)
    if len(v) < 3:
        return None
    running = np.convolve(v, np.ones(3) / 3, mode="valid")
    k = max(1, math.ceil(len(v) / 5))
    return {"first": float(v[0]), "peak": float(running.max()), "late": float(v[-k:].mean()), "late_records": k}


def mi_claims(curves: Sequence[dict], cfg: dict) -> list[dict]:
    """Claim 5 per probed grid from per-seed MI curves (rows of ``lspipe mi-curve`` CSVs, with
    ``dataset`` and ``arch`` added). LS = ``claims.ls_alpha``; the MI margin is
    ``claims.mi_noise_multiple`` × the sd of one MI estimate measured from the repeat draw
    (:func:`lspipe.experiments.mi.mi_noise`, pooled over the grid's records). Primary: (peak − late)(LS) −
    (peak − late)(α = 0) > margin, paired by seed. Descriptive: with LS the MI rises then falls
    (min(peak − first, peak − late) > margin); late MI(α = 0) − MI(LS) > margin."""
    # another objective's probe (e.g. a confidence-penalty teacher, alpha 0) is not the hard arm
    grouped = by_grid([r for r in curves if not r.get("run") or is_ls(objective_of(r))], cell=lambda r: float(r["alpha"]))

    def point(r):
        rep = r.get("mi_repeat")
        return int(r["step"]), float(r["mi"]), None if rep in (None, "") else float(rep)

    by = {grid: {a: {s: [point(r) for r in rs] for s, rs in seeds.items()} for a, seeds in cells.items()}
          for grid, cells in grouped.items()}  # (ds, arch) -> alpha -> seed -> (step, mi, repeat) points
    rows_by = {grid: [r for seeds in cells.values() for rs in seeds.values() for r in rs] for grid, cells in grouped.items()}
    st_a = ("the MI falls more with LS: (peak − late)(LS) − (peak − late)(α = 0) > margin, paired by seed "
            "(peak: the highest 3-record running mean; late: the mean of the last fifth of the records)")
    st_b = "with LS the MI rises then falls: min(peak − first, peak − late) > margin"
    st_c = "late in training the MI is lower with LS: late MI(α = 0) − late MI(LS) > margin"
    if not by:
        return [not_run(5, "all", st_a, "teachers[].probe")]
    out = []
    for (ds, arch), by_alpha in sorted(by.items()):
        scope = f"{ds}/{arch}"
        src = _sources(rows_by[(ds, arch)], ["step", "mi", "mi_repeat (the repeat draw)"])
        ls = pick_ls_alpha(by_alpha, cfg["ls_alpha"])
        if ls is None or 0.0 not in by_alpha:
            out.append(not_run(5, scope, st_a, "mi.alphas (alpha 0 and an LS alpha; claims.ls_alpha)"))
            continue
        pairs = [(m, rp) for a in by_alpha for pts in by_alpha[a].values() for _, m, rp in pts if rp is not None]
        sigma = mi_noise(pairs)
        if sigma is None:
            out.append(not_compared(5, scope, st_a, "the probe traces have no repeat draw (recorded before "
                                    "lspipe.experiments.mi format 2), so the MI noise level, and with it the margin, is unknown",
                                    "retraining the probed teachers (snakemake -R train_teacher)", sources=src))
            continue
        margin = cfg["mi_noise_multiple"] * sigma
        shape = {}
        for a in (0.0, ls):
            for s, pts in by_alpha[a].items():
                shape[(a, s)] = curve_shape([m for _, m, _ in sorted(pts)])
        if any(v is None for v in shape.values()):
            out.append(not_compared(5, scope, st_a, "a curve has fewer than 3 records",
                                    "teachers[].probe.every (at least 3 records per curve)", sources=src))
            continue
        nums = {"MI noise: sd of one estimate (repeat draws)": sigma, "repeat-draw pairs": len(pairs),
                f"MI margin (claims.mi_noise_multiple = {cfg['mi_noise_multiple']:g} × sd)": margin}
        for a in (0.0, ls):
            ss = sorted(by_alpha[a])
            nums[f"α={a:g} first / peak / late (nats, mean over seeds)"] = " / ".join(
                f"{_mean(shape[(a, s)][k] for s in ss):.3f}" for k in ("first", "peak", "late"))
        k = shape[(ls, sorted(by_alpha[ls])[0])]["late_records"]
        notes = [f"late = the mean of the last {k} record{'s' if k > 1 else ''} (a fifth of the records)",
                 "the noise margin decides only 'supported'; 'contradicted' needs the interval below 0 (LS falls "
                 "less than hard targets), so a real extra fall smaller than the margin is inconclusive, not contradicted",
                 "log 2 ≈ 0.693 nats: only the class is distinguishable"]
        seeds = sorted(set(by_alpha[0.0]) & set(by_alpha[ls]))

        def fall(a, s):
            return shape[(a, s)]["peak"] - shape[(a, s)]["late"]

        out.append(check(5, scope, st_a, {s: fall(ls, s) - fall(0.0, s) for s in seeds}, kind="greater", bound=margin, contra=0.0,
                         unit="nats", cfg=cfg, role=PRIMARY, label=f"LS α = {ls:g}", numbers=nums, notes=notes,
                         sources=src))
        out.append(check(5, scope, st_b, {s: min(shape[(ls, s)]["peak"] - shape[(ls, s)]["first"], fall(ls, s))
                                          for s in sorted(by_alpha[ls])}, kind="greater", bound=margin, contra=0.0, unit="nats",
                         cfg=cfg, label=f"LS α = {ls:g}", numbers=nums, sources=src))
        out.append(check(5, scope, st_c, {s: shape[(0.0, s)]["late"] - shape[(ls, s)]["late"] for s in seeds},
                         kind="greater", bound=margin, contra=0.0, unit="nats", cfg=cfg, label=f"LS α = {ls:g}", numbers=nums,
                         sources=src))
    return out


# --------------------------------------------------------------------------- variance beyond seeds: test-image bootstrap


def _test_predictions(path: str | Path, temperature: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(top-label confidence, correct) of a dump's test split at ``temperature``."""
    s = Dump(path).split("test")
    return top_label(softmax(s.logits, temperature), s.labels)


def bootstrap_widening(checks: Sequence[dict], calibrations: Sequence[dict], dumps: dict[tuple, str], cfg: dict) -> None:
    """Adds ``bootstrap`` to the primary checks of claims 1 and 3: how much the test set's sampling would
    widen their interval. One resample of the test images per replicate, shared by every seed and model
    (the test set is one, shared), ``claims.bootstrap`` replicates (seed ``claims.bootstrap_seed``); the
    effect's mean over seeds is recomputed on each, and its sd over replicates, sd_test, is combined with
    the interval's: half-width ``sqrt(w² + (z · sd_test)²)``, z the normal quantile of the interval's level
    (w the seed-only half-width; the seeds' own sd holds part of the test sampling already, so this is
    an upper-side figure). ``dumps`` maps ``(dataset, arch, alpha, seed)`` to a teacher dump (label smoothing)."""
    reps = int(cfg.get("bootstrap") or 0)
    if reps <= 0:
        return
    rng = np.random.default_rng(cfg["bootstrap_seed"])
    temps = {(c["model"]["dataset"], c["model"]["arch"], float(c["model"]["alpha"]), int(c["model"]["seed"])):
             float(c["temperature"]) for c in calibrations if is_ls(objective_of(c["model"]))}
    cache: dict[tuple, tuple] = {}

    def pred(ds, arch, alpha, seed, t=1.0):
        key = (ds, arch, alpha, seed, t)
        if key not in cache:
            cache[key] = _test_predictions(dumps[(ds, arch, alpha, seed)], t)
        return cache[key]

    for c in checks:
        if c["role"] != PRIMARY or c["claim"] not in (1, 3) or not (c.get("effect") or {}).get("ci"):
            continue
        ds, arch = c["scope"].split("/", 1)
        e, seeds = c["effect"], c["effect"]["seeds"]
        if c["claim"] == 1:
            alpha = float(c["label"].split("=")[1].split(",")[0])
            need = [(ds, arch, a, s) for a in (0.0, alpha) for s in seeds]
        else:
            alpha = float(c["numbers"]["α*"])
            need = [(ds, arch, a, s) for a in (0.0, alpha) for s in seeds]
            if any((ds, arch, 0.0, s) not in temps for s in seeds):
                continue
        if any(k not in dumps for k in need):
            c["bootstrap"] = {"text": "not computed: the dumps of some compared models are not among the inputs"}
            continue
        n_test = len(pred(ds, arch, 0.0, seeds[0])[1])
        stats = []
        for _ in range(reps):
            idx = rng.integers(0, n_test, n_test)
            if c["claim"] == 1:
                stats.append(float(np.mean([100.0 * (pred(ds, arch, alpha, s)[1][idx].mean()
                                                     - pred(ds, arch, 0.0, s)[1][idx].mean()) for s in seeds])))
            else:
                def sq(conf, correct):
                    r = reliability(conf[idx], correct[idx], 15)
                    return debiased_squared_ce(r.count, r.accuracy, r.confidence)

                a = np.mean([sq(*pred(ds, arch, alpha, s)) for s in seeds])
                b = np.mean([sq(*pred(ds, arch, 0.0, s, temps[(ds, arch, 0.0, s)])) for s in seeds])
                stats.append(math.sqrt(max(a, 0.0)) - math.sqrt(max(b, 0.0)))
        sd_test = float(np.std(stats, ddof=1))
        w = e["half_width"]
        from scipy.stats import norm

        z = float(norm.ppf(0.5 + e["confidence"] / 2))  # sd_test is known from many replicates: a normal quantile
        w2 = math.sqrt(w**2 + (z * sd_test) ** 2)
        u = f" {c['unit']}" if c["unit"] else ""
        c["bootstrap"] = {"replicates": reps, "seed": cfg["bootstrap_seed"], "sd_test": sd_test,
                          "half_width": w, "half_width_with_test": w2, "widening": w2 / w if w else None,
                          "text": (f"the test set's sampling ({reps} resamples of its {n_test} images, shared by every "
                                   f"seed) has sd {sd_test:.3g}{u} on the mean effect; with it the half-width would be "
                                   f"{w2:.3g}{u} instead of {w:.3g}{u} (× {w2 / w:.2f}); the verdict stays the seed-only "
                                   "interval's")}


# --------------------------------------------------------------------------- what a user's own dataset came for


def _pick_text(picks: dict[int, float]) -> str:
    return ", ".join(f"s{s}: {a:g}" for s, a in sorted(picks.items()))


def _interval(values: dict[int, float], cfg: dict, resolution: float = 0.0,
              within: tuple[float, float] | None = None) -> dict:
    """Mean and t interval over seeds (:func:`effect_stats`), in the report's plain form; ``within``: the
    quantity's range (accuracy 0-100 %, a temperature above 0), to which the interval is clipped."""
    e = effect_stats(values, cfg["confidence"], resolution)
    ci = e["ci"]
    if ci is not None and within is not None:
        ci = [max(ci[0], within[0]), min(ci[1], within[1])]
    return {"n": e["n"], "seeds": e["seeds"], "values": e["values"], "mean": e["mean"], "ci": ci,
            "confidence": e["confidence"]}


def _accuracy_pick(by_obj: dict, split: str, cfg: dict) -> dict | None:
    """The alpha validation picks for accuracy in one grid: the highest mean validation accuracy over the
    seeds every label-smoothing alpha shares (alpha 0 included; ties: the smaller alpha), with each seed's
    own pick, and the chosen alpha's test effect against alpha 0 (for alpha 0: that of the best nonzero
    alpha), paired by seed."""
    alphas = ls_alphas(by_obj)
    if 0.0 not in alphas or len(alphas) < 2:
        return None
    cells = {a: by_obj[k] for a, k in alphas.items()}
    seeds = sorted(set.intersection(*(set(c) for c in cells.values())))
    if not seeds or any("val" not in cells[a][s] or split not in cells[a][s] for a in cells for s in seeds):
        return None
    val = {a: _mean(100.0 * cells[a][s]["val"]["accuracy"] for s in seeds) for a in sorted(cells)}
    pick = max(sorted(val), key=lambda a: (val[a], -a))
    picks = {s: max(sorted(cells), key=lambda a, s=s: (cells[a][s]["val"]["accuracy"], -a)) for s in seeds}
    nonzero = [a for a in sorted(val) if a > 0]
    compared = pick if pick > 0 else max(nonzero, key=lambda a: (val[a], -a))
    used = [cells[a][s] for a in (0.0, compared) for s in seeds]
    gain = {s: 100.0 * (cells[compared][s][split]["accuracy"] - cells[0.0][s][split]["accuracy"]) for s in seeds}
    acc = {s: 100.0 * cells[pick][s][split]["accuracy"] for s in seeds}
    res = _resolution(used, split)  # one test image: equal accuracies over seeds give no zero-width interval
    return {"alpha": pick, "validation_accuracy_pct": val, "per_seed_pick": picks, "compared_alpha": compared,
            "split": split, "accuracy_pct": _interval(acc, cfg, res, (0.0, 100.0)),
            "gain_pp": _interval(gain, cfg, res),
            "evaluated_on_the_selection_split": split == "val"}


def _temperatures(cal_by_obj: dict, cfg: dict) -> dict:
    """The temperature scaling fits per label-smoothing alpha (mean and interval over seeds; a T at the
    edge of its search range is a bound, not a fit: left out and named)."""
    out = {}
    for a, key in sorted(ls_alphas(cal_by_obj).items()):
        cell = cal_by_obj[key]
        fitted = {s: float(r["temperature"]) for s, r in cell.items() if not (r.get("fit") or {}).get("at_bound")}
        out[a] = {**_interval(fitted, cfg, within=(0.0, math.inf)), "at_bound": sorted(s for s in cell if s not in fitted)}
    return out


def _negated(e: dict) -> dict:
    """An interval dict (n, mean, ci, confidence) of minus the effect."""
    ci = e.get("ci")
    return {"n": e.get("n"), "mean": None if e.get("mean") is None else -e["mean"],
            "ci": None if ci is None else [-ci[1], -ci[0]], "confidence": e.get("confidence")}


def _squared_rms(c: dict, arm: str) -> float | None:
    sq = (c.get("effect") or {}).get("squared", {}).get(arm)
    return math.sqrt(max(0.0, float(np.mean(sq)))) if sq else None


def own_data(evals: Sequence[dict], calibrations: Sequence[dict], checks: Sequence[dict], cfg: dict,
             split: str = default("accuracy_table.split")) -> list[dict]:
    """What a user of a dataset that is not one of the paper's (:func:`paper_family` None) came for, per
    teacher grid: the alpha validation picks for accuracy (:func:`_accuracy_pick`), the alpha claim 3
    picks on validation for calibration (its alpha*, with claim 3's intervals against alpha 0 at T = 1
    and against temperature scaling), the temperature scaling needs (from the calibration JSONs), and
    whether to distil from a smoothed teacher (claim 4's primary contrast), each with its interval over
    seeds. Nothing here is a verdict: the decision rule is the claims'."""
    teachers = [e for e in evals if e["model"].get("role", "teacher") == "teacher"]
    ev_groups = by_grid(teachers, "teacher evaluations")
    cal_groups = by_grid([c for c in calibrations if c["model"].get("role", "teacher") == "teacher"],
                              "calibration files")
    out = []
    for ds, arch in sorted(set(ev_groups) | set(cal_groups)):
        if paper_family(ds) is not None:
            continue
        scope = f"{ds}/{arch}"
        item = {"dataset": ds, "arch": arch, "scope": scope, "accuracy": None, "calibration": None,
                "temperature": None, "distillation": []}
        if (ds, arch) in ev_groups:
            item["accuracy"] = _accuracy_pick(ev_groups[(ds, arch)], split, cfg)
        prim3 = next((c for c in checks if c["claim"] == 3 and c["scope"] == scope and c["role"] == PRIMARY), None)
        if prim3 and prim3.get("effect") and prim3["effect"].get("n"):
            lowers = next((c for c in checks if c["claim"] == 3 and c["scope"] == scope and c["role"] == DESCRIPTIVE
                           and c["unit"] == "CE"), None)
            e3, eb = prim3["effect"], (lowers or {}).get("effect") or {}
            item["calibration"] = {
                "alpha": float(prim3["numbers"]["α*"]), "selection": cfg["calibration_selection"], "check": prim3["id"],
                "rms_ls": _squared_rms(prim3, "ls"), "rms_temperature_scaled": _squared_rms(prim3, "reference"),
                "rms_hard": _squared_rms(lowers, "ls") if lowers else None,  # 3b: CE(α = 0) − CE(LS α*)
                "versus_temperature_scaling": {k: e3.get(k) for k in ("n", "mean", "ci", "confidence")},
                "change_vs_hard": _negated(eb) if eb else None,  # CE(LS α*) − CE(α = 0) at T = 1: 3b negated
                "lowers_hard_check": (lowers or {}).get("id")}
        elif prim3:
            item["calibration"] = {"alpha": None, "why": prim3["reason"]}
        if (ds, arch) in cal_groups:
            item["temperature"] = _temperatures(cal_groups[(ds, arch)], cfg)
        for c in checks:
            if c["claim"] != 4 or c["role"] != PRIMARY or not c["scope"].startswith(f"{ds}/{arch} → "):
                continue
            e = c.get("effect") or {}
            item["distillation"].append({"scope": c["scope"], "check": c["id"], "verdict": c["verdict"],
                                         "effect_pp": {k: e.get(k) for k in ("n", "mean", "ci", "confidence")}
                                         if e else None,
                                         "why": c["reason"] if not e else None})
        out.append(item)
    return out
