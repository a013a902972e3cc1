"""The claims report as text: the summary, the banner (what the run found), the decision rule, the
Markdown and reStructuredText reports and the forest plot."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Iterable, Sequence

from lspipe.base.defaults import default
from lspipe.experiments.claims.statistics import (CONTRADICTED, DESCRIPTIVE, NOT_COMPARED, NOT_RUN, NO_SPREAD,
                                                  POWER_SD_LEVEL, POWER_TARGET, PRIMARY, REGIME, RULES_VERSION,
                                                  RULE_VERSIONS, SEEDS_SEARCH_MAX, SENSITIVITY, SUPPORTED, VERDICTS,
                                                  ZERO_SPREAD_SEEDS, _bounds, _seeds_text, conjunction)
from lspipe.experiments.claims.teacher_checks import _pick_text, paper_family


CLAIM_TITLES = {
    1: "Accuracy: label smoothing does not hurt top-1 accuracy (Table 2)",
    2: "Representations: label smoothing tightens each class's cluster relative to the template distances (Fig. 1)",
    3: "Calibration: label smoothing calibrates about as well as temperature scaling (Table 3, Fig. 2)",
    4: ("Distillation: students of a hard-target teacher gain more over the student baseline than students of "
        "label-smoothed teachers (Fig. 5)"),
    5: "Erasure of information: the mutual information falls more during training with label smoothing (Fig. 6)",
    6: ("Distillation toy: the label-smoothed teacher is at least as accurate as the hard-target teacher, and its "
        "student is worse (MNIST, section 4)"),
}


# --------------------------------------------------------------------------- the report


def summarise(checks: Sequence[dict]) -> list[dict]:
    """One entry per (claim, scope): the verdict is the primary check's, with its effect, interval and
    verdict at each :data:`SENSITIVITY` level; descriptive checks (exploratory) are listed with their
    effects, no verdict; regime checks with their own verdicts."""
    groups: dict[tuple[int, str], list[dict]] = defaultdict(list)
    for c in checks:
        groups[(c["claim"], c["scope"])].append(c)
    out = []
    for (claim, scope), cs in sorted(groups.items()):
        prims = [c for c in cs if c["role"] == PRIMARY]
        prim = prims[0] if prims else None
        if len(prims) > 1:  # claim 6: the conjunction of its primary checks
            verdict, primary = conjunction([c["verdict"] for c in prims]), ", ".join(c["id"] for c in prims)
            effect = "; ".join(f"{c['id']} {short_effect(c)}" for c in prims)
            levels = sorted({k for c in prims for k in (c.get("sensitivity") or {})}, key=float)
            sens = {k: conjunction([(c.get("sensitivity") or {}).get(k, c["verdict"]) for c in prims]) for k in levels}
        else:
            verdict, primary = (prim["verdict"], prim["id"]) if prim else (NOT_RUN, None)
            effect, sens = (short_effect(prim) if prim else "—"), (prim or {}).get("sensitivity") or {}
        out.append({"claim": claim, "title": CLAIM_TITLES[claim], "scope": scope,
                    "verdict": verdict, "primary": primary, "effect": effect,
                    "direction": ("; ".join(f"{c['id']} {direction_text(c)}" for c in prims) if len(prims) > 1
                                  else direction_text(prim) if prim else NOT_RUN),
                    "sensitivity": sens,
                    "marking": (prim or {}).get("marking"),
                    "descriptive": [{"id": c["id"], "effect": short_effect(c)} for c in cs if c["role"] == DESCRIPTIVE],
                    "regime": [{"id": c["id"], "verdict": c["verdict"]} for c in cs if c["role"] == REGIME]})
    return out


def _num(x) -> str:
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


def short_effect(c: dict) -> str:
    """``+0.61 [−1.4, +2.6] pp``: mean and interval (or the state of a check without them)."""
    e = c.get("effect")
    if not e or not e.get("n"):
        return c["verdict"]
    u = f" {c['unit']}" if c.get("unit") else ""
    if e["ci"] is None:
        return f"{e['mean']:+.3g}{u} (1 seed)"
    lo, hi = e["ci"]
    return f"{e['mean']:+.3g} [{lo:+.3g}, {hi:+.3g}]{u}"


def effect_text(c: dict) -> str:
    e = c["effect"]
    if not e or e["n"] == 0:
        return "no comparable runs"
    unit = f" {c['unit']}" if c["unit"] else ""
    per_seed = ", ".join(f"s{s}: {v:+.4g}" for s, v in zip(e["seeds"], e["values"]))
    if e["n"] == 1:
        return f"{e['mean']:+.4g}{unit} ({NO_SPREAD}; {per_seed})"
    lo, hi = e["ci"]
    return (f"{e['mean']:+.4g}{unit}, sd {e['std']:.3g}, {100 * e['confidence']:g}% CI [{lo:+.4g}, {hi:+.4g}] over "
            f"{e['n']} seeds ({per_seed})")


def sources_text(src: dict | None) -> str:
    """Files grouped by folder (``folder/{a, b}``) and the keys read."""
    if not src or not src.get("files"):
        return "none recorded (inputs passed in memory)"
    by: dict[str, list[str]] = defaultdict(list)
    for f in src["files"]:
        p = Path(f)
        by[str(p.parent)].append(p.name)
    files = "; ".join(f"{d}/{names[0]}" if len(names) == 1 else f"{d}/{{{', '.join(names)}}}"
                      for d, names in sorted(by.items()))
    return files + (f" (keys: {', '.join(src['keys'])})" if src.get("keys") else "")


def rules_hash(cfg: dict) -> str:
    """sha256 (first 16 hex digits) of the rule version and every decision setting, as canonical JSON."""
    import hashlib
    import json

    text = json.dumps({"rules_version": RULES_VERSION, "settings": cfg}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def model_file(eval_path: str | Path) -> Path | None:
    """``<results>/models/<dataset>/<arch>/<role>/<run>/model.pt`` of ``<results>/eval/<dataset>/<arch>/<role>/<run>.json``."""
    p = Path(eval_path)
    if len(p.parents) < 5 or p.parents[3].name != "eval":
        return None
    return p.parents[4] / "models" / p.parents[2].name / p.parents[1].name / p.parent.name / p.stem / "model.pt"


# The rule version that last changed each claim's rules: a report whose claims' rules are all older than
# the present version is confirmatory for models trained after *their* freeze (version 4 only added claim 6).
CLAIM_RULES_SINCE = {1: 3, 2: 3, 3: 3, 4: 3, 5: 3, 6: 4}


def rules_version_in_effect(checks: Iterable[dict]) -> int:
    """The newest rule version among the claims a report decides (:data:`CLAIM_RULES_SINCE`; claims that
    are not run do not count): its freeze time is the one :func:`analysis_marking` compares the models with."""
    claims_run = {c["claim"] for c in checks if c["verdict"] != NOT_RUN}
    return max((CLAIM_RULES_SINCE.get(k, RULES_VERSION) for k in claims_run), default=RULES_VERSION)


def analysis_marking(eval_paths: Iterable[str | Path], frozen: str | None = None, version: int | None = None) -> dict:
    """Confirmatory when every model the report reads (the model.pt beside each evaluation) was written
    after the rule version in effect was frozen (``version``, :func:`rules_version_in_effect`; default the
    present version, :data:`RULE_VERSIONS`); otherwise a re-analysis: rules written after (some of) these
    models were trained, and perhaps after their verdicts were seen."""
    from datetime import datetime, timezone

    version = RULES_VERSION if version is None else version
    frozen = frozen or RULE_VERSIONS[version][0]
    t0 = datetime.fromisoformat(frozen.replace("Z", "+00:00")).timestamp()
    times, unknown = [], []
    for e in eval_paths:
        m = model_file(e)
        if m is not None and m.exists():
            times.append(m.stat().st_mtime)
        else:
            unknown.append(str(e))
    base = {"rules_version": RULES_VERSION, "rules_in_effect": version, "rules_frozen": frozen}
    if not times and not unknown:
        return {**base, "marking": "re-analysis", "why": "no models read"}
    if unknown:
        return {**base, "marking": "re-analysis", "why": f"the training time of {len(unknown)} model(s) is unknown "
                f"(no model.pt beside their evaluation, e.g. {unknown[0]})"}
    first = datetime.fromtimestamp(min(times), timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    if min(times) >= t0:
        return {**base, "marking": "confirmatory", "why": f"every model was trained after rule version {version} "
                f"was frozen ({frozen}; the first model: {first})"}
    return {**base, "marking": "re-analysis", "why": f"models trained before rule version {version} was frozen "
            f"({frozen}; the first model: {first}): the rules were written after these models, perhaps after their "
            "verdicts were seen"}


def decision_rule_text(cfg: dict) -> list[str]:
    level = 100 * (1 - cfg["confidence"]) / 2
    acc_margin = (f"{cfg['accuracy_margin']:g} pp (claims.accuracy_margin)" if cfg.get("accuracy_margin") is not None
                  else f"{cfg['accuracy_margin_relative']:g} × the α = 0 model's error rate "
                       "(claims.accuracy_margin_relative; claims.accuracy_margin: null)")
    return [
        f"Rule version {RULES_VERSION} (frozen {RULE_VERSIONS[RULES_VERSION][0]}; settings hash {rules_hash(cfg)}); "
        "the changelog of rule versions is docs/claims.md. Confirmatory: every model the report reads was trained "
        "after the rules were frozen; otherwise re-analysis.",
        "Each claim has one primary check, fixed in advance: its verdict is the claim's (claim 6: two, their "
        "conjunction). Descriptive checks are "
        "exploratory: the summary shows their effects only (their sections keep a verdict word, not corrected for "
        "multiplicity). Regime checks test a precondition of the paper's argument and are shown beside the claim, "
        "outside its verdict. Models are keyed by objective: the hard-target arm is label smoothing at α = 0 and "
        "nothing else (a confidence-penalty teacher is a row of its own); two models for one objective and seed are "
        "refused.",
        f"Each check compares one effect per seed (paired by seed where runs are paired) with a bound. With n seeds "
        f"the {100 * cfg['confidence']:g} % interval of the mean effect is mean ± t(n−1) · sd / √n (claims.confidence); "
        f"each end of it is a one-sided test at level {level:g} %. The intervals cover the variation over seeds only, "
        f"conditional on one training subset, one validation split and one test set (claims.bootstrap reports how "
        f"much the test set's sampling would widen them).",
        f"The decision is by the interval alone (symmetric): supported: at least {cfg['min_seeds']} seeds "
        f"(claims.min_seeds) and the whole interval strictly on the claimed side of the bound; contradicted: at least "
        f"{cfg['min_seeds']} seeds and the whole interval strictly beyond the bound; inconclusive: otherwise (fewer "
        f"seeds, an interval that touches or straddles a bound). \"k of n seeds on the claimed side\" is a "
        f"description, not part of the rule. Not compared: runs exist but none can be compared (the config key that "
        f"would make them comparable is named); not run: the configuration does not run the experiment (the key is "
        f"named). The sensitivity column gives the verdict at 90, 95 and 99 %.",
        f"Zero spread: identical per-seed values over fewer than {ZERO_SPREAD_SEEDS} seeds, or of a continuous effect, "
        f"are inconclusive; from {ZERO_SPREAD_SEEDS} seeds on, an effect on a grid of step h (one test image, 100 / N "
        f"pp, for accuracy effects) takes sd = max(sample sd, h / 2).",
        f"Power: each check states its interval's half-width (the smallest decidable effect), P(supported) at the "
        f"observed mean, and the seeds needed for {100 * POWER_TARGET:g} % power of this rule from the noncentral t "
        f"(scipy.stats.nct; for 'within' the two one-sided tests), at the observed mean effect and, for margin checks, "
        f"at a true effect of 0, each with the observed sd and with the sd at its one-sided "
        f"{100 * POWER_SD_LEVEL:g} % chi-square upper confidence bound.",
        f"1 Accuracy, primary: accuracy(LS at claims.ls_alpha) − accuracy(α = 0), percentage points, paired by seed, "
        f"interval above −margin, the margin {acc_margin}. Descriptive: every other nonzero α and every other "
        f"objective of the grid. Regime: accuracy(α = 0) within claims.regime_accuracy_gap = "
        f"{cfg['regime_accuracy_gap']:g} pp of the paper's Table 2 (datasets the paper reports).",
        f"2 Representations: the tightness ratio of three classes projected onto their template plane (as Fig. 1) is "
        f"the mean over the classes of the mean distance of a class's points to their centroid, divided by the mean "
        f"pairwise distance between the three projected templates, with every example of the classes (smaller = "
        f"tighter). Primary: ratio(α = 0) − ratio(LS), averaged over every class triple when there are at most "
        f"{cfg['tightness_triples']} (claims.tightness_triples; else that many seeded random triples, "
        f"claims.tightness_seed), on the {cfg['tightness_split']} split (claims.tightness_split), above 0, paired by "
        f"seed. Descriptive: the same on the other split and each Fig. 1 row (LS = projections.ls_alpha).",
        f"3 Calibration, primary (one-sided non-inferiority): α* is the nonzero α of the grid with the lowest mean "
        f"validation {cfg['calibration_selection'].upper()} at T = 1 (claims.calibration_selection; test data are not "
        f"looked at; an α missing in a seed is left out of the choice and named). The calibration error is the RMS "
        f"over the 15 confidence bins; per model its square is estimated without bias (Kumar, Liang & Ma 2019: per bin "
        f"(acc − conf)² − acc (1 − acc) / (n_b − 1)), because the plug-in ECE of a well-calibrated model sits at its "
        f"floor (about 0.027 at 2,000 test images) and would shrink the gap to temperature scaling. Over seeds, the "
        f"mean squared errors A (LS at α*) and B (α = 0 temperature scaled) get t intervals at one-sided level "
        f"{level / 2:g} % each, and the interval of √A − √B is [√L_A − √U_B, √U_A − √L_B] (Bonferroni: each end a "
        f"one-sided bound at {level:g} % or better); it must lie below {cfg['ece_margin']:g} (claims.ece_margin; the "
        f"paper's own Table 3 gaps, 0.003 and 0.013, pass it). The plug-in ECE and its floor are reported. Descriptive: "
        f"LS at α* lowers the RMS calibration error and the NLL of α = 0 at T = 1. Reported without a verdict: "
        f"NLL(LS α*) − NLL(temperature scaled) (the paper claims nothing there). Regime: the hard-target model's T > 1.",
        f"4 Distillation, primary: per seed, the mean over the temperatures whose γ lies inside the baseline alphas' "
        f"range in every seed of [accuracy of the α = 0 teacher's student at T − baseline(γ)] minus the mean over the "
        f"LS teachers in range of [accuracy of the LS teacher's student at T = 1 − baseline(γ)], above 0; baseline(γ) "
        f"is the same seed's student-baseline curve linearly interpolated at γ (no extrapolation); the largest "
        f"leave-one-out interpolation error is a systematic term added to each end of the interval (fewer than 3 "
        f"baseline alphas: not compared). A temperature or LS teacher missing in a seed is left out and named, not the "
        f"seed. Descriptive: each T (above 0) and each LS teacher (below +margin, as claim 1's). Regime: teacher "
        f"accuracy rises with α (least-squares slope per seed above 0). The loss form is named.",
        f"5 Erasure, primary: (peak − late) MI with LS (claims.ls_alpha) minus (peak − late) with α = 0, paired by "
        f"seed; supported when the interval lies above the MI margin, {cfg['mi_noise_multiple']:g} "
        f"(claims.mi_noise_multiple) × the measured sd of one MI estimate; contradicted only when it lies below 0 (the "
        f"noise margin is not counted twice). Peak is the highest 3-record running mean, late the mean of the last "
        f"fifth of the records. Descriptive: with LS the MI rises then falls; late MI(α = 0) − MI(LS).",
        f"6 Distillation toy (distillation_toy), two primary checks whose conjunction is the verdict (supported when "
        f"both are, contradicted when either is and none is not run or not compared, else inconclusive; an "
        f"intersection-union test, each part at one-sided level {level:g} %): (a) accuracy(LS teacher at "
        f"distillation_toy[].ls_alpha) − accuracy(α = 0 teacher), pp, paired by seed, above −margin (claim 1's "
        f"margin, of the α = 0 teacher); (b) accuracy(student of the α = 0 teacher) − accuracy(student of the LS "
        f"teacher), both at distillation_toy[].temperature, pp, paired by seed, above 0. Descriptive: each teacher's "
        f"student − the student trained alone with hard targets, above 0.",
    ]


def _check_lines(c: dict) -> list[str]:
    head = f"#### {c['id']} ({c['role']}){': ' + c['label'] if c['label'] else ''} — **{c['verdict']}**"
    lines = [head, "", f"- Claim: {c['statement']}."]
    if c["verdict"] in (NOT_RUN, NOT_COMPARED):
        lines.append(f"- {c['verdict'].capitalize()}: {c['reason']}.")
    else:
        lines += [f"- Effect: {effect_text(c)}.", f"- Rule: {c['rule']}.", f"- Reason: {c['reason']}."]
        if c.get("sensitivity"):
            lines.append("- Sensitivity: " + ", ".join(f"{k} %: {v}" for k, v in c["sensitivity"].items()) + ".")
        if c["decidable"] and c["decidable"]["text"]:
            lines.append(f"- Decidable: {c['decidable']['text']}.")
    if c.get("paper"):
        lines.append(f"- The paper: {c['paper']['value']:+.3g} {c['unit']} ({c['paper']['source']}).")
    if c.get("bootstrap"):
        lines.append(f"- Test-image bootstrap: {c['bootstrap']['text']}.")
    if c["numbers"]:
        lines.append("- Numbers: " + "; ".join(f"{k}: {_num(v)}" for k, v in c["numbers"].items()) + ".")
    lines += [f"- Note: {n}." for n in c["notes"]]
    lines += [f"- Sources: {sources_text(c.get('sources'))}.", ""]
    return lines


def _effects(items: list[dict]) -> str:
    return ", ".join(f"{d['id']} {d['effect']}" for d in items) or "—"


def _brief(items: list[dict]) -> str:
    return ", ".join(f"{d['id']} {d['verdict']}" for d in items) or "—"


def _sens(s: dict) -> str:
    return " / ".join(s["sensitivity"].get(f"{100 * c:g}", "—") for c in SENSITIVITY) if s["sensitivity"] else "—"


# --------------------------------------------------------------------------- the banner: what the run found

# the sign of an effect in words: (claim, role, unit) -> (above 0, below 0); others read "above 0" / "below 0"
DIRECTION_WORDS = {
    (1, PRIMARY, "pp"): ("LS raises accuracy", "LS lowers accuracy"),
    (2, PRIMARY, "ratio"): ("LS tightens the clusters", "LS loosens the clusters"),
    (3, PRIMARY, "CE"): ("LS at α* is less calibrated than temperature scaling",
                         "LS at α* is better calibrated than temperature scaling"),
    (3, DESCRIPTIVE, "CE"): ("LS at α* is better calibrated than α = 0 (T = 1)",
                             "LS at α* is less calibrated than α = 0 (T = 1)"),
    (4, PRIMARY, "pp"): ("a hard-target teacher's students gain more", "label-smoothed teachers' students gain more"),
    (5, PRIMARY, "nats"): ("the MI falls more with LS", "the MI falls less with LS"),
}
# the banner also shows this descriptive check beside a claim's primary: (claim, unit) of the check
BANNER_DESCRIPTIVE = {3: "CE"}  # claim 3: LS against hard targets at T = 1 (the calibration effect itself)


def direction_text(c: dict) -> str:
    """The direction of a check's mean effect in words, its mean and interval, and whether the interval
    excludes 0: ``LS tightens the clusters, +0.12 [+0.05, +0.19] ratio (the interval excludes 0)``. A
    description: the verdict is the rule's (a direction can be clear where the verdict is inconclusive)."""
    e = c.get("effect")
    if not e or not e.get("n"):
        return c["verdict"]
    up, down = c.get("direction_words") or DIRECTION_WORDS.get((c["claim"], c["role"], c.get("unit")),
                                                               ("above 0", "below 0"))
    words = up if e["mean"] > 0 else down if e["mean"] < 0 else "no change"
    if e["ci"] is None:
        u = f" {c['unit']}" if c.get("unit") else ""
        return f"{words}, {e['mean']:+.3g}{u} (1 seed: no interval)"
    lo, hi = e["ci"]
    how = "the interval excludes 0" if lo > 0 or hi < 0 else "the interval includes 0"
    return f"{words}, {short_effect(c)} ({how})"


def seeds_needed_text(c: dict, min_seeds: int) -> str:
    """The seeds a verdict of a check needs: for 80 % power at the observed mean effect and sd (in brackets:
    with the sd at its 80 % upper bound), from :func:`decidability`."""
    d = c.get("decidable") or {}
    pw = d.get("power")
    if pw:
        if pw["at_observed"] is not None and pw["at_observed"] > SEEDS_SEARCH_MAX:
            return "none at the effect seen (outside the claimed range)"
        return f"{_seeds_text(pw['at_observed'])} ({_seeds_text(pw['at_observed_sd_upper'])})"
    e = c.get("effect") or {}
    if not e.get("n"):
        return "—"
    if e.get("ci") is None:
        return f"at least {min_seeds} ({NO_SPREAD})"
    if e.get("method") == "ce_gap" and d.get("half_width") is not None:
        return (f"at least {min_seeds}; no power formula (half-width {d['half_width']:.2g} against the margin "
                f"{c['bound']:g})")
    return "—"


def banner(checks: Sequence[dict], cfg: dict) -> dict:
    """The report's opening, in plain words: the seeds trained against the seeds a verdict needs, and per
    claim (primary check) its direction in this run beside its verdict (claim 3 also shows its calibration
    effect against hard targets, :data:`BANNER_DESCRIPTIVE`); the datasets that are not the paper's (the
    report then ends with :func:`own_data`). ``head``, ``rows`` (claim, direction, verdict, seeds), ``note``,
    ``own`` (a line or None); rendered by :func:`banner_lines` and :func:`render_rst`."""
    k = cfg["min_seeds"]
    prims = sorted((c for c in checks if c["role"] == PRIMARY), key=lambda c: (c["claim"], c["scope"]))
    ns = sorted({c["effect"]["n"] for c in prims if (c.get("effect") or {}).get("n")})
    trained = (str(ns[0]) if len(ns) == 1 else f"{ns[0]} to {ns[-1]}") if ns else "none"
    if not ns:
        head = "No claim had runs to compare: the summary names the config key each one needs."
    elif ns[-1] < k:
        head = (f"Seeds trained: {trained}. A verdict needs at least {k} (claims.min_seeds), so with {trained} "
                f"seed{'s' if ns[-1] > 1 else ''} no claim can be decided (supported or contradicted), whatever its "
                "direction. Below: each claim's direction in this run, and the seeds a verdict would need.")
    else:
        counts: dict[str, int] = defaultdict(int)
        for c in prims:
            counts[c["verdict"]] += 1
        head = (f"Seeds trained: {trained}; a verdict needs at least {k} (claims.min_seeds). Verdicts: "
                + ", ".join(f"{n} {v}" for v, n in sorted(counts.items(), key=lambda kv: VERDICTS.index(kv[0])))
                + (f"; a claim with fewer than {k} seeds cannot be decided." if ns[0] < k else "."))
    rows = []
    for c in prims:
        text = direction_text(c)
        unit = BANNER_DESCRIPTIVE.get(c["claim"])
        extra = next((d for d in checks if unit and d["claim"] == c["claim"] and d["scope"] == c["scope"]
                      and d["role"] == DESCRIPTIVE and d.get("unit") == unit and (d.get("effect") or {}).get("n")), None)
        if extra is not None:
            text = f"{text}; {extra['id']} (exploratory): {direction_text(extra)}"
        rows.append({"claim": f"{c['claim']} {CLAIM_TITLES[c['claim']].split(':')[0].lower()}, {c['scope']}",
                     "direction": text, "verdict": c["verdict"], "check": c["id"],
                     "seeds": f"{(c.get('effect') or {}).get('n') or 0} / {seeds_needed_text(c, k)}"})
    note = (f"Seeds needed: for {100 * POWER_TARGET:g} % power of the rule at the effect and spread seen (in brackets: "
            f"with the sd at its {100 * POWER_SD_LEVEL:g} % upper bound). A direction describes; only a verdict decides "
            f"(rule version {RULES_VERSION}, docs/claims.md).")
    own = sorted({c["scope"].split("/")[0] for c in checks if c["scope"] != "all"
                  and paper_family(c["scope"].split("/")[0]) is None})
    own_line = (f"{', '.join(own)}: not among the paper's datasets; the report ends with what you came for (the α "
                "validation picks for accuracy and for calibration, the temperature scaling needs, and whether to "
                "distil from a smoothed teacher)." if own else None)
    return {"seeds_trained": ns, "min_seeds": k, "head": head, "rows": rows, "note": note, "own": own_line}


def banner_lines(checks: Sequence[dict], cfg: dict) -> list[str]:
    """The banner (:func:`banner`) in markdown: at most 12 lines for five claims."""
    b = banner(checks, cfg)
    lines = [f"**What this run found.** {b['head']}", "",
             "| claim | direction in this run: mean effect [95 % interval] | verdict | seeds trained / needed |",
             "|---|---|---|---|"]
    lines += [f"| {r['claim']} | {r['direction']} | **{r['verdict']}** | {r['seeds']} |" for r in b["rows"]]
    lines += ["", b["note"]] + ([b["own"]] if b["own"] else [])
    return lines


def _iv(d: dict | None, spec: str = ".3g", unit: str = "") -> str:
    """``97.6 % [95.1, 100.0]`` (``spec`` ``.1f``, unit ``%``) of an interval dict (mean, ci)."""
    if not d or not d.get("n"):
        return "no comparable runs"
    f = lambda x: format(x, spec)  # noqa: E731
    u = f" {unit}" if unit else ""
    if d.get("ci") is None:
        return f"{f(d['mean'])}{u} (1 seed: no interval)"
    lo, hi = d["ci"]
    return f"{f(d['mean'])}{u} [{f(lo)}, {f(hi)}]"


def _excludes_zero(d: dict | None) -> bool | None:
    if not d or d.get("ci") is None:
        return None
    return d["ci"][0] > 0 or d["ci"][1] < 0


def own_data_lines(own: Sequence[dict], cfg: dict) -> list[str]:
    """The report's last section (markdown; each entry's header a bold line, so that the same lines serve
    reStructuredText): per grid of a user's own dataset, what :func:`own_data` found."""
    lines = []
    pct = f"{100 * cfg['confidence']:g} %"
    for item in own:
        ns = sorted({t["n"] for t in (item["temperature"] or {}).values()}
                    | ({item["accuracy"]["gain_pp"]["n"]} if item["accuracy"] else set()))
        over = (f"{ns[0]} seed{'s' if ns[0] > 1 else ''}" if len(ns) == 1 else f"{ns[0]} to {ns[-1]} seeds") \
            if ns else "the seeds"
        lines += [f"**What you came for: {item['scope']}** ({item['dataset']} is not one of the paper's datasets). "
                  f"What this run's validation split picks, each with its {pct} interval over {over}: descriptions, "
                  "not verdicts.", ""]
        a = item["accuracy"]
        if a is None:
            lines.append("- **α for accuracy**: not chosen (the grid needs α = 0 and a nonzero α with validation "
                         "accuracy in every seed: teachers[].alphas).")
        else:
            val = ", ".join(f"{al:g}: {v:.1f} %" for al, v in sorted(a["validation_accuracy_pct"].items()))
            if a["alpha"] > 0:
                what = (f"test accuracy at α = {a['alpha']:g}: {_iv(a['accuracy_pct'], '.1f', '%')}; against α = 0: "
                        f"{_iv(a['gain_pp'], '+.2f', 'pp')}")
            else:
                what = (f"no smoothing; the best nonzero α on validation, {a['compared_alpha']:g}, changes test accuracy "
                        f"by {_iv(a['gain_pp'], '+.2f', 'pp')} against α = 0")
            opt = " (on the split that chose it: optimistic)" if a["evaluated_on_the_selection_split"] else ""
            lines.append(f"- **α for accuracy: {a['alpha']:g}**, the highest mean validation accuracy (α = {val}); "
                         f"each seed alone picks {_pick_text(a['per_seed_pick'])}. {what.capitalize()}{opt}.")
        cal = item["calibration"]
        if cal is None or cal.get("alpha") is None:
            why = f": {cal['why']}" if cal else " (the grid has no calibration files with α = 0 and a nonzero α)"
            lines.append(f"- **α for calibration**: not chosen{why}.")
        else:
            sel = cal["selection"].upper()
            rms = lambda x: "?" if x is None else f"{x:.3f}"  # noqa: E731
            text = (f"- **α for calibration: {cal['alpha']:g}** (claim 3's α*: the lowest mean validation {sel} at "
                    f"T = 1). Test RMS calibration error {rms(cal['rms_ls'])} at T = 1")
            if cal.get("change_vs_hard"):
                text += (f", against α = 0's {rms(cal['rms_hard'])}: a change of {_iv(cal['change_vs_hard'], '+.3f')} "
                         f"({cal['lowers_hard_check']})")
            text += (f"; against α = 0 temperature scaled ({rms(cal['rms_temperature_scaled'])}): "
                     f"{_iv(cal['versus_temperature_scaling'], '+.3f')} ({cal['check']}).")
            lines.append(text)
        temps = item["temperature"]
        if not temps:
            lines.append("- **Temperature**: no calibration files for this grid.")
        else:
            def t_text(al):
                t = temps[al]
                edge = f", seeds {t['at_bound']} at the edge of the search range left out" if t["at_bound"] else ""
                return f"{_iv(t, '.2f')}{edge}"

            hard = (f"α = 0 needs T = {t_text(0.0)}" if 0.0 in temps else "no α = 0 model")
            others = "; ".join(f"α = {al:g}: {t_text(al)}" for al in sorted(temps) if al > 0)
            lines.append(f"- **Temperature scaling** (T fitted on validation, applied as logits / T): {hard}"
                         + (f"; by α: {others}" if others else "") + ".")
        if not item["distillation"]:
            lines.append("- **Distil from a smoothed teacher?** Not run for this grid (distillation).")
        for d in item["distillation"]:
            e = d["effect_pp"]
            if not e or not e.get("n"):
                lines.append(f"- **Distil from a smoothed teacher?** Not answered ({d['scope']}, {d['verdict']}): "
                             f"{d['why']}.")
                continue
            clear = _excludes_zero(e)
            if clear and e["mean"] > 0:
                answer = "No"
            elif clear and e["mean"] < 0:
                answer = "Yes"
            else:
                answer = ("Not clear" + (f" at {e['n']} seeds (the interval includes 0)" if e.get("ci") is not None
                                         else f" ({NO_SPREAD})"))
            lines.append(f"- **Distil from a smoothed teacher? {answer}.** Claim 4's contrast ({d['check']}, "
                         f"{d['scope']}): the gain over the student baseline at the same smoothness γ of a hard-target "
                         f"teacher's students minus that of label-smoothed teachers' students, {_iv(e, '+.2f', 'pp')}.")
        lines.append("")
    return lines


def render_markdown(checks: Sequence[dict], cfg: dict, marking: dict | None = None, forest: str | None = None,
                    own: Sequence[dict] = ()) -> str:
    """claims.md: the banner (:func:`banner_lines`), the forest plot, the summary, the decision rule, every
    check, and, for a user's own dataset, what they came for (:func:`own_data_lines`, from :func:`own_data`)."""
    summary = summarise(checks)
    lines = ["# Did this run reproduce the paper?", ""] + banner_lines(checks, cfg) + [""]
    if forest:
        lines += [f"![Each claim's primary effect, its {100 * cfg['confidence']:g} % interval, its margin and the "
                  f"paper's effect]({forest})", ""]
    lines += ["Claims of Müller, Kornblith & Hinton, *When Does Label Smoothing Help?* (NeurIPS 2019), "
              "checked on this run's outputs. A claim's verdict is its primary check's; the effect comes first, the "
              "verdict is its label.", ""]
    if marking:
        lines += [f"**{marking['marking'].capitalize()}** under rule version {marking['rules_version']} (settings hash "
                  f"{rules_hash(cfg)}): {marking['why']}.", ""]
    lines += ["## Summary", "",
              "| claim | scope | direction: primary effect [95 % interval] | verdict (primary check) | "
              "verdict at 90 / 95 / 99 % | descriptive checks (exploratory: effects only) | regime checks |",
              "|---|---|---|---|---|---|---|"]
    lines += [f"| {s['claim']}. {s['title']} | {s['scope']} | {s['direction']} | **{s['verdict']}** "
              f"({s['primary'] or '—'}) | {_sens(s)} | {_effects(s['descriptive'])} | {_brief(s['regime'])} |"
              for s in summary]
    lines += ["", "## Decision rule", ""] + [f"- {t}" for t in decision_rule_text(cfg)] + [""]
    for claim in sorted({c["claim"] for c in checks}):
        lines += [f"## {claim}. {CLAIM_TITLES[claim]}", ""]
        for s in (s for s in summary if s["claim"] == claim):
            lines += [f"### {s['scope']}: **{s['verdict']}** (primary check {s['primary'] or '—'})", ""]
            order = {PRIMARY: 0, DESCRIPTIVE: 1, REGIME: 2}
            for c in sorted((c for c in checks if c["claim"] == claim and c["scope"] == s["scope"]),
                            key=lambda c: (order[c["role"]], c["id"])):
                lines += _check_lines(c)
    if own:
        lines += ["## What you came for", ""] + own_data_lines(own, cfg)
    return "\n".join(lines) + "\n"


def _rst_escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace("*", "\\*").replace("|", "\\|").replace("`", "\\`").replace("_ ", "\\_ ")


def render_rst(checks: Sequence[dict], cfg: dict, marking: dict | None = None, own: Sequence[dict] = ()) -> str:
    """The same report as reStructuredText (for the Snakemake report's first page)."""
    e = _rst_escape
    lines = ["Did this run reproduce the paper?", "---------------------------------", ""]
    b = banner(checks, cfg)
    lines += [f"**What this run found.** {e(b['head'])}", ""]
    lines += [f"* {e(r['claim'])}: {e(r['direction'])}; **{r['verdict']}**; seeds trained / needed: {e(r['seeds'])}"
              for r in b["rows"]]
    lines += ["", e(b["note"]) + (" " + e(b["own"]) if b["own"] else ""), ""]
    if marking:
        lines += [f"{e(marking['marking'].capitalize())} under rule version {marking['rules_version']}: "
                  f"{e(marking['why'])}.", ""]
    for s in summarise(checks):
        lines.append(f"* {s['claim']}. {e(s['title'])}, {e(s['scope'])}: {e(s['direction'])}, **{s['verdict']}** "
                     f"(primary check {s['primary'] or '-'}; at 90 / 95 / 99 %: {e(_sens(s))}); descriptive: "
                     f"{e(_effects(s['descriptive']))}; regime: {e(_brief(s['regime']))}")
    lines += ["", "Decision rule: " + e(" ".join(decision_rule_text(cfg))), ""]
    for c in checks:
        head = (f"* Check {c['id']} ({c['role']}), {e(c['scope'])}{', ' + e(c['label']) if c['label'] else ''}: "
                f"**{c['verdict']}**. {e(c['statement'])}.")
        if c["verdict"] in (NOT_RUN, NOT_COMPARED):
            lines.append(f"{head} {e(c['reason'])}.")
            continue
        body = f" Effect: {e(effect_text(c))}. {e(c['reason'])}."
        if c["decidable"] and c["decidable"]["text"]:
            body += f" Decidable: {e(c['decidable']['text'])}."
        if c["numbers"]:
            body += " " + e("; ".join(f"{k}: {_num(v)}" for k, v in c["numbers"].items())) + "."
        body += f" Sources: {e(sources_text(c.get('sources')))}."
        lines.append(head + body)
    if own:  # the markdown lines: bold and "- " bullets are reStructuredText too; the rest escaped
        lines += [""] + [e(line).replace("\\*\\*", "**") for line in own_data_lines(own, cfg)]
    return "\n".join(lines) + "\n"


def forest_plot(checks: Sequence[dict], paths: Sequence[str | Path], cfg: dict,
                dpi: int = default("figures.dpi")) -> None:
    """The report's first figure: one row per primary check (claim and scope) with its own axis (the
    claims' units differ): the mean effect and its interval, the bound(s) of the rule (dashed; claim
    5's contradiction bound 0 dotted), 0, and the paper's own effect where the paper gives one
    (a diamond). The verdict is the row's label, at its right."""
    from lspipe.core.plotting import new_figure, save_figure  # matplotlib: only when a figure is drawn

    rows = [c for c in checks if c["role"] == PRIMARY]
    fig, axes = new_figure(len(rows) or 1, 1, size=(6.4, 0.85 * max(1, len(rows)) + 0.9))
    legend = {}
    colours = {SUPPORTED: "C2", CONTRADICTED: "C3"}
    for ax, c in zip(axes[:, 0], rows):
        e = c.get("effect")
        ax.set_yticks([])
        ax.spines["left"].set_visible(False)
        ax.set_title(f"{c['id']} {c['scope']}: {CLAIM_TITLES[c['claim']].split(':')[0]} ({c.get('unit') or 'effect'})",
                     fontsize=8, loc="left")
        ax.text(1.01, 0.5, c["verdict"], transform=ax.transAxes, fontsize=8, va="center", fontweight="bold",
                color=colours.get(c["verdict"], "0.3"))
        xs = [0.0]
        if e and e.get("n"):
            xs.append(e["mean"])
            if e["ci"]:
                lo, hi = e["ci"]
                h = ax.errorbar([e["mean"]], [0], xerr=[[e["mean"] - lo], [hi - e["mean"]]], fmt="o", color="C0",
                                capsize=4, lw=2)
                legend.setdefault(f"this run: mean and {100 * cfg['confidence']:g} % interval over seeds", h)
                xs += [lo, hi]
            else:
                (h,) = ax.plot([e["mean"]], [0], "o", color="C0")
                legend.setdefault("this run (1 seed: no interval)", h)
        if c.get("kind") in ("greater", "at_least", "at_most", "within"):
            lo_b, hi_b = _bounds(c["kind"], c["bound"])
            for b in (x for x in (lo_b, hi_b) if x is not None):
                legend.setdefault("bound of the rule (supported beyond it)", ax.axvline(b, color="C3", ls="--", lw=1))
                xs.append(b)
            if c.get("contra") is not None and c["contra"] != c["bound"]:
                legend.setdefault("contradicted below", ax.axvline(c["contra"], color="C3", ls=":", lw=1.2))
        ax.axvline(0.0, color="0.5", lw=0.6)
        if c.get("paper"):
            (h,) = ax.plot([c["paper"]["value"]], [0], "D", color="C1", ms=6)
            legend.setdefault("the paper's effect", h)
            xs.append(c["paper"]["value"])
        span = max(xs) - min(xs) or 1.0
        ax.set_xlim(min(xs) - 0.1 * span, max(xs) + 0.1 * span)
        ax.set_ylim(-1, 1)
    fig.suptitle("Each claim's primary effect (the verdict is the label)", fontsize=9)
    fig.tight_layout(rect=(0, 0.06, 0.92, 1))
    fig.legend(legend.values(), legend.keys(), loc="lower center", ncol=2, fontsize=7)
    save_figure(fig, paths, dpi)
