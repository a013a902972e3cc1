# The experiment table (one row per trained model, lspipe.experiments.experiment_table): settings, training time
# (the benchmark file of the job that trained it), accuracy, NLL, ECE; its inputs: PLAN.experiment_table.

import lspipe.core.tables

rule experiments_table:
    """One row per trained model: settings, training time, accuracy, NLL, ECE before/after temperature scaling."""
    input:
        **PLAN.experiment_table.inputs(),
    output:
        csv=report(P.table("experiments.csv"), category="Tables", caption="../report/experiments_table.rst"),
        md=P.table("experiments.md"),
    params:
        units=lspipe.core.tables.UNITS_VERSION,  # the CSV's units (accuracy %, ECE fraction): a new version rewrites it
    log:
        P.log("experiments_table"),
    benchmark:
        P.benchmark("experiments_table")
    localrule: True
    conda:
        ENV_PLOT
    shell:
        "lspipe experiments-table --evals {input.evals:q} --calibrations {input.calibrations:q} --dumps {input.dumps:q} "
        "--benchmarks {input.benchmarks:q} --csv {output.csv:q} --md {output.md:q} > {log:q} 2>&1"
