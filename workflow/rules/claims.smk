# The claims report ("did this run reproduce the paper?", lspipe.claims) and the experiment table
# (one row per trained model, lspipe.experiments). Both read outputs the other rules files write,
# so this file is included after all of them.

import lspipe.claims
import lspipe.experiments

CLAIMS = config["claims"]
# teacher dumps of claim 2's tightness (alpha 0, the compared LS alphas, every seed)
TIGHTNESS_DUMPS = [
    dump_path(d, a, "teacher", teacher_run(alpha, s)) for d, a, alpha, s in lspipe.claims.tightness_models(config)
]
# (dataset, arch, role, run) of every trained model, and the benchmark file of the job that trained it
TRAINED = lspipe.experiments.trained_models(config)
TRAINED_BENCHMARKS = [lspipe.experiments.training_benchmark(config, *m) for m in TRAINED]


rule tightness_table:
    """Claim 2: tightness ratio of the Fig. 1 class triples and of random class triples, per teacher dump."""
    input:
        TIGHTNESS_DUMPS,
    output:
        report(f"{R}/tables/tightness.csv", category="Claims", caption="../report/tightness_table.rst"),
    params:
        rows=json.dumps(config["projections"]["rows"], sort_keys=True),
        triples=CLAIMS["tightness_triples"],
        seed=CLAIMS["tightness_seed"],
        split=CLAIMS["tightness_split"],
    log:
        f"{R}/logs/tightness_table.log",
    benchmark:
        f"{R}/benchmarks/tightness_table.tsv"
    localrule: True
    conda:
        ENV_PLOT
    shell:
        "lspipe tightness --dumps {input:q} --rows {params.rows:q} --triples {params.triples} --seed {params.seed} "
        "--split {params.split} --out {output:q} > {log:q} 2>&1"


rule claims:
    """The claims report: one section per claim of the paper with its numbers, effect, spread over seeds and verdict."""
    input:
        evals=[eval_path(*m) for m in TRAINED],
        calibrations=[p for paths in CALIBRATION_JSONS.values() for p in paths],
        tightness=[f"{R}/tables/tightness.csv"] if TIGHTNESS_DUMPS else [],
        gamma=[f"{R}/tables/distillation_gamma_{d}.csv" for d in DISTILL],
        mi=[p for paths in MI_CURVES.values() for p in paths],
    output:
        md=f"{R}/claims.md",
        json=f"{R}/claims.json",
        rst=report(f"{R}/claims.rst", category="Claims", caption="../report/claims.rst"),
    params:
        settings=json.dumps(CLAIMS, sort_keys=True),
        accuracy_split=config["accuracy_table"]["split"],
        calibration_ls_alpha="none" if config["calibration"]["ls_alpha"] is None else config["calibration"]["ls_alpha"],
        fig1_ls_alpha=config["projections"]["ls_alpha"],
        fig1_rows=len(config["projections"]["rows"]),
        distillation_split=" ".join(f"{d}={e['split']}" for d, e in DISTILL.items()),
        tightness=lambda wc, input: f"--tightness {shlex.quote(input.tightness[0])}" if input.tightness else "",
    log:
        f"{R}/logs/claims.log",
    benchmark:
        f"{R}/benchmarks/claims.tsv"
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


rule experiments_table:
    """One row per trained model: settings, training time, accuracy, NLL, ECE before/after temperature scaling."""
    input:
        evals=[eval_path(*m) for m in TRAINED],
        calibrations=[f"{R}/calibration/{d}/{a}/{role}/{run}.json" for d, a, role, run in TRAINED],
        dumps=[dump_path(*m) for m in TRAINED],
        benchmarks=TRAINED_BENCHMARKS,
    output:
        csv=report(f"{R}/tables/experiments.csv", category="Tables", caption="../report/experiments_table.rst"),
        md=f"{R}/tables/experiments.md",
    log:
        f"{R}/logs/experiments_table.log",
    benchmark:
        f"{R}/benchmarks/experiments_table.tsv"
    localrule: True
    conda:
        ENV_PLOT
    shell:
        "lspipe experiments --evals {input.evals:q} --calibrations {input.calibrations:q} --dumps {input.dumps:q} "
        "--benchmarks {input.benchmarks:q} --csv {output.csv:q} --md {output.md:q} > {log:q} 2>&1"


ALL_TARGETS.extend(
    [f"{R}/claims.md", f"{R}/claims.json", f"{R}/claims.rst", f"{R}/tables/experiments.csv", f"{R}/tables/experiments.md"]
)
if TIGHTNESS_DUMPS:
    ALL_TARGETS.append(f"{R}/tables/tightness.csv")
