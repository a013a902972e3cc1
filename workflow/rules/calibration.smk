# Calibration (paper Table 3 and Fig. 2, lspipe.experiments.calibration), read from the per-model activation
# dumps built by `dump_activations` (evaluate.smk).

import lspipe.experiments.calibration

# Teacher grids in Table 3 / Fig. 2: (dataset, arch, LS alpha, seeds); see lspipe.experiments.calibration.table3_grids.
CALIBRATION_GRIDS = PLAN.calibration_grids
CALIBRATION_LS_ALPHA = {(d, a): ls for d, a, ls, _ in CALIBRATION_GRIDS}
# Per-model calibration JSONs (hard-target and LS runs, every seed) of each grid in Table 3.
CALIBRATION_JSONS = {
    (d, a): [P.calibration(d, a, "teacher", teacher_run(al, s)) for al in (0.0, ls) for s in seeds]
    for d, a, ls, seeds in CALIBRATION_GRIDS
}


rule calibrate:
    """Temperature scaling fitted on the validation split; ECE / NLL / accuracy and reliability bins on test."""
    input:
        P.dump("{dataset}", "{arch}", "{role}", "{run}"),
    output:
        P.calibration("{dataset}", "{arch}", "{role}", "{run}"),
    params:
        bins=config["calibration"]["bins"],
        # the JSON's format (2: validation metrics at T = 1 and ECE floors): a new format reruns every calibrate job
        format=lspipe.experiments.calibration.FORMAT_VERSION,
    log:
        P.log("calibrate", "{dataset}", "{arch}", "{role}", "{run}"),
    benchmark:
        P.benchmark("calibrate", "{dataset}", "{arch}", "{role}", "{run}")
    # seconds of CPU on a dump: on SLURM it runs where Snakemake runs, not as a cluster job
    localrule: True
    conda:
        ENV_PLOT
    shell:
        "lspipe calibrate --dump {input:q} --out {output:q} --bins {params.bins} > {log:q} 2>&1"


rule calibration_table:
    """Paper Table 3: ECE of hard targets, hard targets + temperature scaling, and LS; mean ± std over seeds."""
    input:
        [p for paths in CALIBRATION_JSONS.values() for p in paths],
    output:
        csv=report(P.table("calibration.csv"), category="Tables", caption="../report/table3_calibration.rst"),
        md=P.table("calibration.md"),
    params:
        ls_alpha=lambda wc: "none" if config["calibration"]["ls_alpha"] is None else config["calibration"]["ls_alpha"],
        digits=config["calibration"]["digits"],
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
        lambda wc: CALIBRATION_JSONS[(wc.dataset, wc.arch)],
    output:
        [
            report(p, category="Figures", subcategory="Fig. 2 reliability", caption="../report/fig2_reliability.rst")
            for p in P.figures("fig2_reliability_{dataset}_{arch}")
        ],
    params:
        ls_alpha=lambda wc: CALIBRATION_LS_ALPHA[(wc.dataset, wc.arch)],
        dpi=config["figures"]["dpi"],
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
        "--dpi {params.dpi} --min-bin-count {params.min_bin_count} > {log:q} 2>&1"
