# The claims report ("did this run reproduce the paper?", lspipe.experiments.claims) and claim 2's tightness
# table. What it reads is PLAN.claims.inputs() (lspipe.experiments.claims.inputs.ClaimsPlan): the same plan
# `lspipe claims --config` reads outside Snakemake.

import lspipe.experiments.projection

CLAIMS_INPUTS = PLAN.claims.inputs()


rule tightness_table:
    """Claim 2: tightness ratio of the Fig. 1 class triples and of every (or up to claims.tightness_triples
    random) class triple, on the training and validation examples of every teacher dump."""
    input:
        PLAN.claims.tightness_dumps(),
    output:
        report(P.table("tightness.csv"), category="Claims", caption="../report/tightness_table.rst"),
    params:
        rows=json.dumps(config["projections"]["rows"], sort_keys=True),
        triples=config["claims"]["tightness_triples"],
        seed=config["claims"]["tightness_seed"],
        splits=" ".join(lspipe.experiments.projection.TIGHTNESS_SPLITS),
    log:
        P.log("tightness_table"),
    benchmark:
        P.benchmark("tightness_table")
    localrule: True
    conda:
        ENV_PLOT
    shell:
        "lspipe tightness-table --dumps {input:q} --rows {params.rows:q} --triples {params.triples} --seed {params.seed} "
        "--splits {params.splits} --out {output:q} > {log:q} 2>&1"


rule claims:
    """The claims report: per claim of the paper its primary check (the verdict), descriptive and regime checks;
    its first figure, the forest plot of the primary effects. With claims.bootstrap > 0 it also reads the dumps of
    claims 1 and 3's models (a test-image bootstrap within seeds)."""
    input:
        evals=CLAIMS_INPUTS["evals"],
        calibrations=CLAIMS_INPUTS["calibrations"],
        tightness=CLAIMS_INPUTS["tightness"],
        gamma=CLAIMS_INPUTS["gamma"],
        mi=CLAIMS_INPUTS["mi_curves"],
        dumps=CLAIMS_INPUTS["dumps"],
    output:
        md=P.report("claims.md"),
        json=P.report("claims.json"),
        rst=report(P.report("claims.rst"), category="Claims", caption="../report/claims.rst"),
        forest=[report(p, category="Claims", caption="../report/claims_forest.rst") for p in P.figures("claims_forest")],
    params:
        settings=json.dumps(CLAIMS_INPUTS["settings"], sort_keys=True),
        twins=json.dumps(CLAIMS_INPUTS["twins"], sort_keys=True),
        toys=json.dumps(CLAIMS_INPUTS["toys"], sort_keys=True),
        accuracy_split=CLAIMS_INPUTS["accuracy_split"],
        fig1_ls_alpha=CLAIMS_INPUTS["fig1_ls_alpha"],
        fig1_rows=CLAIMS_INPUTS["fig1_rows"],
        distillation_split=" ".join(f"{d}={s}" for d, s in CLAIMS_INPUTS["distillation_split"].items()),
        tightness=lambda wc, input: f"--tightness {shlex.quote(input.tightness[0])}" if input.tightness else "",
        dpi=config["figures"]["dpi"],
        dumps=lambda wc, input: ("--dumps " + " ".join(shlex.quote(d) for d in input.dumps)) if input.dumps else "",
    log:
        P.log("claims"),
    benchmark:
        P.benchmark("claims")
    localrule: True
    conda:
        ENV_PLOT
    shell:
        "lspipe claims --evals {input.evals:q} --calibrations {input.calibrations:q} {params.tightness} "
        "--gamma {input.gamma:q} --mi-curves {input.mi:q} --settings {params.settings:q} --twins {params.twins:q} "
        "--toys {params.toys:q} "
        "--accuracy-split {params.accuracy_split} --fig1-ls-alpha {params.fig1_ls_alpha} --fig1-rows {params.fig1_rows} "
        "--distillation-split {params.distillation_split} {params.dumps} "
        "--md {output.md:q} --json {output.json:q} --rst {output.rst:q} --forest {output.forest:q} --dpi {params.dpi} "
        "> {log:q} 2>&1"
