"""The claims report: did this run reproduce "When Does Label Smoothing Help?"?

Pure functions over outputs the workflow has already written (evaluation JSONs, calibration
JSONs, the Fig. 5 smoothness-index CSVs, the per-seed Fig. 6 MI curves, the tightness table
computed here from the activation dumps, and, for the optional test-image bootstrap, the teacher
dumps) that turn each claim of the paper into pre-specified checks: an effect per seed, its
interval over seeds and a verdict. The rules are **rule version** :data:`RULES_VERSION`
(:data:`RULE_VERSIONS` holds each version's freeze time; docs/claims.md the changelog); they are
stated in the report itself (:func:`decision_rule_text`) and the defaults are the schema's
``claims`` section (read through :mod:`lspipe.base.defaults`).

A claim, per dataset/arch, has

* one **primary** check, fixed in advance: it alone gives the claim's verdict;
* **descriptive** checks, exploratory: the summary shows their effects, no verdict words; no
  multiplicity correction (primary only);
* **regime** checks: preconditions of the paper's argument (the hard-target model is overconfident
  and in the paper's accuracy regime; teacher accuracy rises with alpha), outside the verdict.

Models are keyed by their **objective** (:func:`objective_of`: the run name, else label smoothing
at the recorded alpha): the hard-target arm is ``{kind: ls, alpha: 0}`` only; other objectives (a
confidence-penalty teacher records alpha 0) are rows of their own; two models for one objective and
seed are refused.

Primary checks:

1. accuracy: accuracy(LS at ``ls_alpha``) − accuracy(hard), paired by seed, above −margin
   (``accuracy_margin``, or ``accuracy_margin_relative`` × the hard model's error rate);
2. representations: tightness ratio (hard) − (LS), mean over every class triple (at most
   ``tightness_triples``), on ``tightness_split``, above 0;
3. calibration: RMS calibration error of LS at alpha* minus that of the hard model after temperature
   scaling, below ``ece_margin``; the squared errors estimated without bias per model (Kumar et
   al. 2019) and combined in a two-estimate interval (:func:`ce_gap_stats`); alpha* chosen among the
   grid's nonzero alphas by the mean *validation* ECE (or NLL) at T = 1, never by test;
4. distillation: per seed, the mean over the in-range temperatures of (hard-teacher student −
   baseline curve at its gamma) minus the mean over the in-range LS teachers of (LS-teacher student −
   baseline at its gamma), above 0; the largest leave-one-out interpolation error of the baseline
   curve is a systematic term added to each end of the interval;
5. erasure: (peak − late) of the MI with LS minus (peak − late) with hard targets, paired by seed,
   above the MI margin (``mi_noise_multiple`` × the measured sd of one MI estimate) for
   "supported"; "contradicted" needs the interval below 0;
6. the MNIST distillation toy (:func:`toy_claims`): two primary checks, (a) the LS teacher at least
   as accurate as the hard-target teacher (claim 1's margin) and (b) its student worse than the hard
   teacher's student (above 0), whose conjunction (:func:`conjunction`) is the claim's verdict.

Decision rule (:func:`decide`), the interval alone, symmetric: with n seeds the two-sided
``confidence`` interval of the mean effect is ``mean ± t_{n-1} · sd / sqrt(n)`` (plus a systematic
term where one is named); each end is a one-sided test at level ``(1 − confidence) / 2``.
``supported``: n >= ``min_seeds`` and the interval strictly on the claimed side of the bound;
``contradicted``: n >= ``min_seeds`` and the interval strictly beyond the (contradiction) bound;
``inconclusive``: otherwise, and for identical per-seed values over fewer than
:data:`ZERO_SPREAD_SEEDS` seeds or of a continuous effect (from that many seeds on, an effect on a
grid of step h takes ``sd = max(sample sd, h / 2)``); ``not compared``: runs exist, but none can be
compared (the config key that would make them comparable is named); ``not run``: the configuration
does not run the experiment (the key is named); ``number only``: a check that reports a number
(3d). Power (:func:`power`, :func:`decidability`): the noncentral t, seeds for 80 % power at the
observed effect and at 0, also with the sd at its one-sided 80 % chi-square upper bound.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from lspipe.base.defaults import default
from lspipe.base.io import write_json, write_text
from lspipe.experiments.claims import inputs  # noqa: F401 (what the report reads: inputs.ClaimsPlan is Plan.claims)
from lspipe.experiments.claims.rendering import (analysis_marking, banner, decision_rule_text, forest_plot,
                                                 render_markdown, render_rst, rules_hash, summarise)
from lspipe.experiments.claims.statistics import RULES_VERSION, RULE_VERSIONS, _assign_ids, not_run
from lspipe.experiments.claims.student_checks import distillation_claims, toy_claims
from lspipe.experiments.claims.teacher_checks import accuracy_claims, calibration_claims, mi_claims, tightness_claims


def build_checks(*, evals: Sequence[dict] = (), calibrations: Sequence[dict] = (), tightness: Sequence[dict] = (),
                 gamma: dict[str, dict] | None = None, mi_curves: Sequence[dict] = (), cfg: dict,
                 accuracy_split: str = default("accuracy_table.split"), fig1_ls_alpha: float | None = None,
                 has_fig1_rows: bool = False,
                 distillation_splits: dict[str, str] | None = None, gamma_paths: dict[str, str] | None = None,
                 twins: dict[str, dict[str, str]] | None = None, toys: Sequence[dict] = ()) -> list[dict]:
    """Every check of the report. ``gamma`` maps a distillation dataset to its gamma table; ``twins``
    a dataset to {student baseline run: eval path of the teacher it was trained as}; ``toys`` the
    ``distillation_toy`` entries (claim 6)."""
    twin_paths = {str(p) for t in (twins or {}).values() for p in t.values()}
    teachers = [e for e in evals if e["model"]["role"] == "teacher"]
    students = [e for e in evals if e["model"]["role"] == "student" or str(e.get("_path")) in twin_paths]
    checks = accuracy_claims(teachers, cfg, accuracy_split)
    checks += tightness_claims(tightness, cfg, fig1_ls_alpha, has_fig1_rows)
    checks += calibration_claims(calibrations, cfg)
    if gamma:
        for ds, g in sorted(gamma.items()):
            checks += distillation_claims(ds, teachers, students, g, cfg, (distillation_splits or {}).get(ds, "test"),
                                          (gamma_paths or {}).get(ds))
    else:
        checks.append(not_run(4, "all", "distillation (Fig. 5)", "distillation"))
    checks += mi_claims(mi_curves, cfg)
    # claim 6 (the MNIST toy, beyond the paper's image experiments) only where a distillation_toy entry asks for it
    checks += toy_claims(teachers, students, toys, cfg)
    return _assign_ids(checks)


def write_report(checks: Sequence[dict], cfg: dict, md_path, json_path, rst_path=None, *, marking: dict | None = None,
                 forest: Sequence[str | Path] = (), dpi: int = default("figures.dpi"), own: Sequence[dict] = ()) -> None:
    """claims.json (settings, rule version and hash, marking, decision rule, banner, summary, checks, and
    ``what_you_came_for``: :func:`own_data`'s entries, passed as ``own``), claims.md (the banner, then the
    forest plot, when ``forest`` names its files; ``own`` at the end), claims.rst."""
    marking = marking or analysis_marking([])
    for c in checks:
        c["marking"] = marking["marking"]
    forest = [Path(f) for f in forest]
    if forest:
        forest_plot(checks, forest, cfg, dpi)
    png = next((f for f in forest if f.suffix == ".png"), forest[0] if forest else None)
    rel = None
    if png is not None:
        import os

        rel = os.path.relpath(png, Path(md_path).parent)
    write_json(json_path, {"rules_version": RULES_VERSION, "rules_frozen": RULE_VERSIONS[RULES_VERSION][0],
                           "rules_hash": rules_hash(cfg), "marking": marking, "settings": cfg,
                           "decision_rule": decision_rule_text(cfg), "banner": banner(checks, cfg),
                           "summary": summarise(checks), "checks": list(checks), "what_you_came_for": list(own)})
    write_text(md_path, render_markdown(checks, cfg, marking, rel, own))
    if rst_path:
        write_text(rst_path, render_rst(checks, cfg, marking, own))
