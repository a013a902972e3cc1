# Learning curves of every teacher grid (lspipe.experiments.learning_curves): training loss and validation accuracy
# over the steps, read from the metrics.csv each training job writes beside its model.pt; the files: PLAN.learning_curves.

rule learning_curves_figure:
    """Training loss and validation accuracy over the steps of one teacher grid, one line per alpha, seeds as bands."""
    input:
        lambda wc: PLAN.learning_curves.metrics(wc.dataset, wc.arch),
    output:
        [
            report(p, category="Figures", subcategory="Learning curves", caption="../report/learning_curves.rst")
            for p in P.figures("learning_curves_{dataset}_{arch}")
        ],
    params:
        title=lambda wc: f"{wc.dataset} / {wc.arch}",
        dpi=config["figures"]["dpi"],
        scale=config["figures"]["scale"],
    log:
        P.log("learning_curves_figure", "{dataset}_{arch}"),
    benchmark:
        P.benchmark("learning_curves_figure", "{dataset}_{arch}")
    localrule: True
    conda:
        ENV_PLOT
    shell:
        "lspipe learning-curves-figure --metrics {input:q} --out {output:q} --title {params.title:q} "
        "--dpi {params.dpi} --scale {params.scale} > {log:q} 2>&1"
