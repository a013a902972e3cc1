# Calibration (paper Table 3 and Fig. 2) and template-plane projections (paper Fig. 1), all read
# from the per-model activation dumps built by `dump_activations` (evaluate.smk).


import lspipe.calibration
import lspipe.projection

try:
    # Teacher grids in Table 3 / Fig. 2: (dataset, arch, LS alpha, seeds); see lspipe.calibration.table3_grids.
    CALIBRATION_GRIDS = lspipe.calibration.table3_grids(config)
    # (dataset, arch, seed) of each Fig. 1 row (the lowest seed of its teacher grid).
    PROJECTION_MODELS = lspipe.projection.projection_models(config)
except lspipe.config.ConfigError as err:
    raise WorkflowError(str(err))

CALIBRATION_LS_ALPHA = {(d, a): ls for d, a, ls, _ in CALIBRATION_GRIDS}
# Per-model calibration JSONs (hard-target and LS runs, every seed) of each grid in Table 3.
CALIBRATION_JSONS = {
    (d, a): [f"{R}/calibration/{d}/{a}/teacher/{teacher_run(al, s)}.json" for al in (0.0, ls) for s in seeds]
    for d, a, ls, seeds in CALIBRATION_GRIDS
}
PROJECTION_DUMPS = {
    kind: [dump_path(d, a, "teacher", teacher_run(alpha, s)) for d, a, s in PROJECTION_MODELS]
    for kind, alpha in (("hard", 0.0), ("ls", config["projections"]["ls_alpha"]))
}


rule calibrate:
    """Temperature scaling fitted on the validation split; ECE / NLL / accuracy and reliability bins on test."""
    input:
        f"{R}/dumps/{{dataset}}/{{arch}}/{{role}}/{{run}}.h5",
    output:
        f"{R}/calibration/{{dataset}}/{{arch}}/{{role}}/{{run}}.json",
    params:
        bins=config["calibration"]["bins"],
    log:
        f"{R}/logs/calibrate/{{dataset}}/{{arch}}/{{role}}/{{run}}.log",
    benchmark:
        f"{R}/benchmarks/calibrate/{{dataset}}/{{arch}}/{{role}}/{{run}}.tsv"
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
        csv=report(f"{R}/tables/calibration.csv", category="Tables", caption="../report/table3_calibration.rst"),
        md=f"{R}/tables/calibration.md",
    params:
        ls_alpha=lambda wc: "none" if config["calibration"]["ls_alpha"] is None else config["calibration"]["ls_alpha"],
        digits=config["calibration"]["digits"],
    log:
        f"{R}/logs/calibration_table.log",
    benchmark:
        f"{R}/benchmarks/calibration_table.tsv"
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
            for p in figure_paths("fig2_reliability_{dataset}_{arch}")
        ],
    params:
        ls_alpha=lambda wc: CALIBRATION_LS_ALPHA[(wc.dataset, wc.arch)],
        dpi=config["figures"]["dpi"],
        min_bin_count=config["calibration"]["min_bin_count"],
    log:
        f"{R}/logs/reliability_figure/{{dataset}}_{{arch}}.log",
    benchmark:
        f"{R}/benchmarks/reliability_figure/{{dataset}}_{{arch}}.tsv"
    localrule: True
    conda:
        ENV_PLOT
    shell:
        "lspipe reliability-figure --inputs {input:q} --out {output:q} --ls-alpha {params.ls_alpha} "
        "--dpi {params.dpi} --min-bin-count {params.min_bin_count} > {log:q} 2>&1"


rule projections_figure:
    """Paper Fig. 1: penultimate activations projected onto the plane of three class templates."""
    input:
        hard=PROJECTION_DUMPS["hard"],
        ls=PROJECTION_DUMPS["ls"],
    output:
        [
            report(p, category="Figures", subcategory="Fig. 1 projections", caption="../report/fig1_projections.rst")
            for p in figure_paths("fig1_projections")
        ],
    params:
        rows=json.dumps(config["projections"]["rows"], sort_keys=True),
        per_class=config["projections"]["per_class"],
        seed=config["projections"]["seed"],
        ls_alpha=config["projections"]["ls_alpha"],
        dpi=config["figures"]["dpi"],
    log:
        f"{R}/logs/projections_figure.log",
    benchmark:
        f"{R}/benchmarks/projections_figure.tsv"
    localrule: True
    conda:
        ENV_PLOT
    shell:
        "lspipe projections --rows {params.rows:q} --hard {input.hard:q} --ls {input.ls:q} --out {output:q} "
        "--per-class {params.per_class} --seed {params.seed} --ls-alpha {params.ls_alpha} "
        "--dpi {params.dpi} > {log:q} 2>&1"


if CALIBRATION_GRIDS:
    ALL_TARGETS.extend([f"{R}/tables/calibration.csv", f"{R}/tables/calibration.md"])
    ALL_TARGETS.extend(p for d, a, *_ in CALIBRATION_GRIDS for p in figure_paths(f"fig2_reliability_{d}_{a}"))
if config["projections"]["rows"]:
    ALL_TARGETS.extend(figure_paths("fig1_projections"))
