# Template-plane projections (paper Fig. 1, lspipe.experiments.projection), read from the teachers' activation
# dumps built by `analyse_model` (evaluate.smk); the teacher of each row: PLAN.projection.

rule projections_figure:
    """Paper Fig. 1: penultimate activations projected onto the plane of three class templates."""
    input:
        hard=PLAN.projection.dumps("hard"),
        ls=PLAN.projection.dumps("ls"),
    output:
        [
            report(p, category="Figures", subcategory="Fig. 1 projections", caption="../report/fig1_projections.rst")
            for p in P.figures("fig1_projections")
        ],
    params:
        rows=json.dumps(config["projections"]["rows"], sort_keys=True),
        per_class=config["projections"]["per_class"],
        seed=config["projections"]["seed"],
        ls_alpha=config["projections"]["ls_alpha"],
        dpi=config["figures"]["dpi"],
        scale=config["figures"]["scale"],
    log:
        P.log("projections_figure"),
    benchmark:
        P.benchmark("projections_figure")
    localrule: True
    conda:
        ENV_PLOT
    shell:
        "lspipe projections-figure --rows {params.rows:q} --hard {input.hard:q} --ls {input.ls:q} --out {output:q} "
        "--per-class {params.per_class} --seed {params.seed} --ls-alpha {params.ls_alpha} "
        "--dpi {params.dpi} --scale {params.scale} > {log:q} 2>&1"
