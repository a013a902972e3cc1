# Teacher training over {dataset, arch, alpha, seed} (lspipe.engine.training), one rule for every grid. Every
# teacher job writes model.pt, metrics.csv and probe.h5: the mutual-information probe's trace
# (Fig. 6, lspipe.experiments.mi) for a grid with `teachers[].probe`, otherwise a small placeholder that
# `lspipe mi-curve` refuses (Fig. 6 reads only the probed grids' traces, lspipe.experiments.mi.fig6_plan).
# Grids with `fuse: true` train all alphas of a seed in one job instead: a multi-model job
# (grouped.smk), which Snakemake prefers to this rule for their files.


rule train_teacher:
    """Train one teacher (label-smoothed cross-entropy) on the GPU when there is one."""
    input:
        data=lambda wc: checked_data(wc.dataset),
    output:
        model=P.model("{dataset}", "{arch}", "teacher", lspipe.base.runs.RUN),
        metrics=P.metrics("{dataset}", "{arch}", "teacher", lspipe.base.runs.RUN),
        probe=P.probe("{dataset}", "{arch}", lspipe.base.runs.RUN),
    params:
        arch=lambda wc: wc.arch,
        recipe=lambda wc: recipe_json(teacher_params(wc)["recipe"]),
        seed=lambda wc: int(wc.seed),
        objectives=lambda wc: objectives_json([{"kind": "ls", "alpha": float(wc.alpha)}]),
        role="teacher",
        runs=lambda wc: teacher_run(wc.alpha, wc.seed),
        probe=probe_args,
        device=config["device"],
        progress=PROGRESS,
    threads: config["threads"]
    resources:
        gpu=GPU,
        gpu_model=GPU_MODEL,
        mem_mb=config["resources"]["mem_mb"],
        runtime=lambda wc: training_runtime(teacher_params(wc)["recipe"]),
    log:
        P.log("train_teacher", "{dataset}", "{arch}", lspipe.base.runs.RUN),
    benchmark:
        P.benchmark("train_teacher", "{dataset}", "{arch}", lspipe.base.runs.RUN)
    conda:
        ENV_TRAIN
    shell:
        train_shell("{params.probe} --probe-out {output.probe:q}")
