"""``lspipe claims``: the claims report of a results folder, or of a configuration.

The report itself (its checks, decision rule and rendering) is :mod:`lspipe.experiments.claims`.
This command sits on the workflow floor because of ``--config``: it validates the configuration
(:func:`lspipe.workflow.plan.build`) and reads exactly the inputs its plan names
(``Plan.claims.inputs()``, :class:`lspipe.experiments.claims.inputs.ClaimsPlan`), as the workflow's ``claims`` rule does.
"""

from __future__ import annotations

import json
from pathlib import Path

from lspipe.base.args import optional_float
from lspipe.base.defaults import default
from lspipe.base.errors import ConfigError
from lspipe.core.config import load_yaml
from lspipe.experiments import claims
from lspipe.workflow.plan import build


def _cmd_claims(a):
    names = ("evals", "calibrations", "tightness", "gamma", "mi_curves", "dumps")
    given = {"evals": a.evals, "calibrations": a.calibrations, "tightness": [a.tightness] if a.tightness else [],
             "gamma": a.gamma, "mi_curves": a.mi_curves, "dumps": a.dumps}
    twins = json.loads(a.twins) if a.twins else {}
    toys = json.loads(a.toys) if a.toys else []
    settings_in = a.settings
    if a.config:
        config = load_yaml(a.config) or {}
        if a.results:
            config["results"] = str(a.results)
        plan = build(config)  # validated, and the experiments' plans (with their checks), once
        if not Path(config["results"]).is_dir():
            raise ConfigError(f"the results folder {config['results']} (config key results) does not exist; run "
                              "the workflow first or pass --results")
        want = plan.claims.inputs()
        missing = [p for k in names for p in want[k] if not Path(p).exists()]
        if missing:
            raise ConfigError(f"{len(missing)} input(s) the config names are missing, e.g. {', '.join(missing[:5])}; "
                              "run the workflow (snakemake) to make them")
        given = {k: given[k] or want[k] for k in names}
        twins = twins or want["twins"]
        toys = toys or want["toys"]
        settings_in = settings_in or want["settings"]
        a.accuracy_split = want["accuracy_split"]
        a.fig1_ls_alpha, a.fig1_rows = want["fig1_ls_alpha"], want["fig1_rows"]
        a.distillation_split = a.distillation_split or [f"{d}={s}" for d, s in want["distillation_split"].items()]
    elif a.results:
        if not Path(a.results).is_dir():
            raise ConfigError(f"the results folder {a.results} does not exist (lspipe claims --results)")
        found = claims.inputs.discover(a.results)
        if not claims.statistics.settings(settings_in).get("bootstrap"):
            found["dumps"] = []
        print(f"found in {a.results}: {claims.inputs.found_text(found)}")
        given = {k: given[k] or found[k] for k in names}
        problems = claims.inputs.mixed_grids(claims.inputs.load_inputs(given))
        if problems:
            raise ConfigError(f"{a.results} mixes the outputs of several configurations (orphans of an earlier "
                              "config?): " + " | ".join(problems) + "; pass the config with --config to read only "
                              "what it names, or remove the orphaned files")
    cfg = claims.statistics.settings(settings_in)
    inputs = claims.inputs.load_inputs(given)
    tightness = inputs["tightness"]
    fig1_rows = a.fig1_rows if a.fig1_rows is not None else sum(r["kind"] == "fig1" for r in tightness)
    checks = claims.build_checks(
        evals=inputs["evals"], calibrations=inputs["calibrations"], tightness=tightness, gamma=inputs["gamma"],
        gamma_paths=inputs["gamma_paths"], mi_curves=inputs["mi_curves"], cfg=cfg, accuracy_split=a.accuracy_split,
        fig1_ls_alpha=a.fig1_ls_alpha, has_fig1_rows=fig1_rows > 0, twins=twins,
        distillation_splits=dict(kv.split("=", 1) for kv in a.distillation_split or []), toys=toys,
    )
    claims.teacher_checks.bootstrap_widening(checks, inputs["calibrations"], claims.inputs.dump_map(given["dumps"] or []), cfg)
    own = claims.teacher_checks.own_data(inputs["evals"], inputs["calibrations"], checks, cfg, a.accuracy_split)
    claims.write_report(checks, cfg, a.md, a.json, a.rst, marking=claims.rendering.analysis_marking(
                            given["evals"], version=claims.rendering.rules_version_in_effect(checks)),
                        forest=a.forest or [], dpi=a.dpi, own=own)
    print(claims.rendering.banner(checks, cfg)["head"])
    for s in claims.rendering.summarise(checks):
        print(f"claim {s['claim']} {s['scope']}: {s['verdict']} (primary check {s['primary']}); {s['direction']}")


def add_cli(sub) -> None:
    """``lspipe claims``: the claims report."""
    s = sub.add_parser("claims", help="the claims report: verdict per claim of the paper (claims.md / claims.json)",
                       description="The claims report: for each claim of the paper, the verdict the results support "
                                   "(supported, contradicted, inconclusive), with the numbers behind it. By hand: "
                                   "`lspipe claims --results results --md claims.md --json claims.json` reads a "
                                   "results folder's standard layout; the workflow's claims rule passes --config.")
    s.add_argument("--config", default=None,
                   help="config file: read exactly the inputs the workflow's claims rule reads (and its settings); "
                        "a missing input is an error")
    s.add_argument("--results", default=None,
                   help="results folder; without --config: take every input not given explicitly from its standard "
                        "layout, listing what was found and refusing a folder that mixes several configurations")
    s.add_argument("--evals", nargs="*", default=[], help="per-model evaluation JSONs (teachers and students)")
    s.add_argument("--calibrations", nargs="*", default=[], help="per-model calibration JSONs of every teacher grid")
    s.add_argument("--tightness", default=None, help="CSV from `lspipe tightness-table`")
    s.add_argument("--gamma", nargs="*", default=[], help="distillation_gamma_<dataset>.csv of each distillation entry")
    s.add_argument("--mi-curves", nargs="*", default=[], help="per-seed MI curves <results>/mi/<dataset>/<arch>/*.csv")
    s.add_argument("--dumps", nargs="*", default=[],
                   help="teacher dumps of claims 1 and 3 (the test-image bootstrap, claims.bootstrap > 0)")
    s.add_argument("--settings", type=json.loads, default=None, help="the config's claims section as JSON")
    s.add_argument("--twins", default=None,
                   help="JSON {dataset: {student baseline run: eval JSON of the teacher it was trained as}}")
    s.add_argument("--toys", default=None,
                   help="JSON list of the distillation_toy entries (claim 6): dataset, ls_alpha, temperature, split, "
                        "teacher_arch, student_arch; with --config: the config's")
    s.add_argument("--accuracy-split", default=default("accuracy_table.split"),
                   help="split whose accuracy the claims compare: val or test")
    s.add_argument("--fig1-ls-alpha", type=optional_float, default=None,
                   help="LS alpha of the Fig. 1 rows (projections.ls_alpha); none (default): the smallest nonzero")
    s.add_argument("--fig1-rows", type=int, default=None,
                   help="number of configured Fig. 1 rows (default: those in the tightness table)")
    s.add_argument("--distillation-split", nargs="*", default=[], help="dataset=split of each distillation entry")
    s.add_argument("--md", required=True, help="the report (Markdown)")
    s.add_argument("--json", required=True, help="the report's numbers and verdicts (JSON)")
    s.add_argument("--rst", default=None, help="reStructuredText copy (for the Snakemake report)")
    s.add_argument("--forest", nargs="*", default=[],
                   help="files of the forest plot (each claim's primary effect; format from the suffix), the report's "
                        "first figure")
    s.add_argument("--dpi", type=int, default=default("figures.dpi"), help="resolution of the forest plot's PNG")
    s.set_defaults(func=_cmd_claims)
