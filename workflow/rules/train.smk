# Teacher training over {dataset, arch, run} (lspipe.engine.training), one rule for every grid: a run is
# one objective of the grid (label smoothing at each alpha, teachers[].objectives) and one seed
# (PLAN.teacher_runs; run names from lspipe.base.runs.objective_run). Every
# teacher job writes model.pt, metrics.csv and probe.h5: the mutual-information probe's trace
# (Fig. 6, lspipe.experiments.mi) for a grid with `teachers[].probe`, otherwise a small placeholder that
# `lspipe mi-curve` refuses (Fig. 6 reads only the probed grids' traces, lspipe.experiments.mi.fig6_plan).
# Grids with `fuse: true` train all alphas of a seed in one job instead: a multi-model job
# (grouped.smk), which Snakemake prefers to this rule for their files.


rule train_teacher:
    """Train one teacher (one objective of its grid, one seed) on the GPU when there is one."""
    input:
        data=lambda wc: checked_data(wc.dataset),
    output:
        model=P.model("{dataset}", "{arch}", "teacher", "{run}"),
        metrics=P.metrics("{dataset}", "{arch}", "teacher", "{run}"),
        probe=P.probe("{dataset}", "{arch}", "{run}"),
    params:
        arch=lambda wc: wc.arch,
        seed=lambda wc: teacher_run_of(wc)["seed"],
        objectives=lambda wc: objectives_json([teacher_run_of(wc)["objective"]]),
        role="teacher",
        runs=lambda wc: wc.run,
        probe=probe_args,
        **run_params(lambda wc: teacher_params(wc)["recipe"],
                     lambda wc: [P.model(wc.dataset, wc.arch, "teacher", wc.run)]),
        **launch_params(lambda wc: TEACHER_LAYOUT[(wc.dataset, wc.arch)]),
    threads: config["threads"]
    resources:
        **train_resources(lambda wc: TEACHER_LAYOUT[(wc.dataset, wc.arch)]),
        mem_mb=config["resources"]["mem_mb"],
        runtime=lambda wc: training_runtime(teacher_params(wc)["recipe"]),
    log:
        P.log("train_teacher", "{dataset}", "{arch}", "{run}"),
    benchmark:
        P.benchmark("train_teacher", "{dataset}", "{arch}", "{run}")
    conda:
        ENV_TRAIN
    shell:
        train_shell("{params.probe} --probe-out {output.probe:q}")
