# The claims report ("did this run reproduce the paper?", lspipe.claims). It reads outputs the
# other rules files write, so this file is included after them.

CLAIMS = config["claims"]
# teacher dumps of claim 2's tightness (alpha 0, the compared LS alphas, every seed)
TIGHTNESS_DUMPS = [P.dump(d, a, "teacher", teacher_run(alpha, s)) for d, a, alpha, s in PLAN.tightness_models]
# (dataset, arch, role, run) of every trained model
TRAINED = PLAN.trained_models


rule tightness_table:
    """Claim 2: tightness ratio of the Fig. 1 class triples and of random class triples, per teacher dump."""
    input:
        TIGHTNESS_DUMPS,
    output:
        report(P.table("tightness.csv"), category="Claims", caption="../report/tightness_table.rst"),
    params:
        rows=json.dumps(config["projections"]["rows"], sort_keys=True),
        triples=CLAIMS["tightness_triples"],
        seed=CLAIMS["tightness_seed"],
        split=CLAIMS["tightness_split"],
    log:
        P.log("tightness_table"),
    benchmark:
        P.benchmark("tightness_table")
    localrule: True
    conda:
        ENV_PLOT
    shell:
        "lspipe tightness-table --dumps {input:q} --rows {params.rows:q} --triples {params.triples} --seed {params.seed} "
        "--split {params.split} --out {output:q} > {log:q} 2>&1"


rule claims:
    """The claims report: one section per claim of the paper with its numbers, effect, spread over seeds and verdict."""
    input:
        evals=[P.eval(*m) for m in TRAINED],
        calibrations=[p for paths in CALIBRATION_JSONS.values() for p in paths],
        tightness=[P.table("tightness.csv")] if TIGHTNESS_DUMPS else [],
        gamma=[P.table(f"distillation_gamma_{d}.csv") for d in DISTILL],
        mi=[p for paths in MI_CURVES.values() for p in paths],
    output:
        md=P.report("claims.md"),
        json=P.report("claims.json"),
        rst=report(P.report("claims.rst"), category="Claims", caption="../report/claims.rst"),
    params:
        settings=json.dumps(CLAIMS, sort_keys=True),
        accuracy_split=config["accuracy_table"]["split"],
        calibration_ls_alpha="none" if config["calibration"]["ls_alpha"] is None else config["calibration"]["ls_alpha"],
        fig1_ls_alpha=config["projections"]["ls_alpha"],
        fig1_rows=len(config["projections"]["rows"]),
        distillation_split=" ".join(f"{d}={e['split']}" for d, e in DISTILL.items()),
        tightness=lambda wc, input: f"--tightness {shlex.quote(input.tightness[0])}" if input.tightness else "",
    log:
        P.log("claims"),
    benchmark:
        P.benchmark("claims")
    localrule: True
    conda:
        ENV_PLOT
    shell:
        "lspipe claims --evals {input.evals:q} --calibrations {input.calibrations:q} {params.tightness} "
        "--gamma {input.gamma:q} --mi-curves {input.mi:q} --settings {params.settings:q} "
        "--accuracy-split {params.accuracy_split} --calibration-ls-alpha {params.calibration_ls_alpha} "
        "--fig1-ls-alpha {params.fig1_ls_alpha} --fig1-rows {params.fig1_rows} "
        "--distillation-split {params.distillation_split} "
        "--md {output.md:q} --json {output.json:q} --rst {output.rst:q} > {log:q} 2>&1"
