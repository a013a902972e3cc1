# Calibration (paper Table 3 and Fig. 2, lspipe.experiments.calibration), read from the per-model calibration
# JSONs that `analyse_model` (evaluate.smk) writes; the teacher grids compared: PLAN.calibration.

import lspipe.core.tables

rule calibration_table:
    """Paper Table 3: ECE of hard targets, hard targets + temperature scaling, and LS; mean ± std over seeds."""
    input:
        PLAN.calibration.all_jsons(),
    output:
        csv=report(P.table("calibration.csv"), category="Tables", caption="../report/table3_calibration.rst"),
        md=P.table("calibration.md"),
    params:
        ls_alpha=lambda wc: "none" if config["calibration"]["ls_alpha"] is None else config["calibration"]["ls_alpha"],
        digits=config["calibration"]["digits"],
        units=lspipe.core.tables.UNITS_VERSION,  # the CSV's units (accuracy %, ECE fraction): a new version rewrites it
    log:
        P.log("calibration_table"),
    benchmark:
        P.benchmark("calibration_table")
    localrule: True
    conda:
        ENV_PLOT
    shell:
        "lspipe calibration-table --inputs {input:q} --csv {output.csv:q} --md {output.md:q} "
        "--ls-alpha {params.ls_alpha} --digits {params.digits} > {log:q} 2>&1"


rule reliability_figure:
    """Paper Fig. 2: 15-bin reliability diagram of one teacher grid (hard, hard + temperature scaling, LS)."""
    input:
        lambda wc: PLAN.calibration.jsons(wc.dataset, wc.arch),
    output:
        [
            report(p, category="Figures", subcategory="Fig. 2 reliability", caption="../report/fig2_reliability.rst")
            for p in P.figures("fig2_reliability_{dataset}_{arch}")
        ],
    params:
        ls_alpha=lambda wc: PLAN.calibration.ls_alpha(wc.dataset, wc.arch),
        dpi=config["figures"]["dpi"],
        scale=config["figures"]["scale"],
        min_bin_count=config["calibration"]["min_bin_count"],
    log:
        P.log("reliability_figure", "{dataset}_{arch}"),
    benchmark:
        P.benchmark("reliability_figure", "{dataset}_{arch}")
    localrule: True
    conda:
        ENV_PLOT
    shell:
        "lspipe reliability-figure --inputs {input:q} --out {output:q} --ls-alpha {params.ls_alpha} "
        "--dpi {params.dpi} --scale {params.scale} --min-bin-count {params.min_bin_count} > {log:q} 2>&1"
