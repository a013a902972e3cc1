# Paper Fig. 5: students trained alone with label smoothing, distilled from the hard-target
# teacher at each temperature, and distilled from label-smoothed teachers at T = 1 (ls_temperature), per
# `distillation` entry (one per dataset) and seed; the teachers' smoothness index gamma; the
# figure and its table. Run names and the grid come from lspipe.experiments.distill.
#
# A distilled student's teacher model.pt is a plain input, deliberately NOT ancient(): Snakemake 9
# does not propagate a rerun to a downstream job whose inputs from the rerun job are all ancient
# and exist (snakemake/dag.py, update_needrun), so ancient() would leave students of a retrained
# teacher stale. Plain, whenever a teacher job runs (changed recipe or code, --forcerun, ...),
# exactly its students train again (tests/test_distill.py checks this with dry runs).
# The teachers' dumps feed the gamma table as plain inputs for the same reason.

import lspipe.core.tables
import lspipe.experiments.distill

# the `dataset` wildcard of the Fig. 5 rules: only datasets with a distillation entry (PLAN.distillation.entries).
# Student baselines that are the very training run of a teacher (same dataset, arch, recipe, alpha,
# seed; e.g. the paper preset's AlexNet at alpha 0) are trained once, as the teacher: their consumers
# read the teacher's files (PLAN.distillation.twins, lspipe.experiments.distill.trained_as); no
# student job exists for them.
DISTILL_DATASET = f"(?:{'|'.join(PLAN.distillation.entries)})" if PLAN.distillation.entries else r"(?!)"


rule train_student_baseline:
    """Train one student alone with label-smoothed cross-entropy (Fig. 5's student baseline)."""
    input:
        data=lambda wc: checked_data(wc.dataset),
    output:
        model=P.model("{dataset}", "{arch}", "student", lspipe.base.runs.RUN),
        metrics=P.metrics("{dataset}", "{arch}", "student", lspipe.base.runs.RUN),
    wildcard_constraints:
        dataset=DISTILL_DATASET,
    params:
        arch=lambda wc: wc.arch,
        seed=lambda wc: int(wc.seed),
        objectives=lambda wc: objectives_json([{"kind": "ls", "alpha": float(wc.alpha)}]),
        role="student",
        runs=lambda wc: lspipe.base.runs.run_name(wc.alpha, wc.seed),
        **run_params(lambda wc: student_entry(wc)["student_recipe"],
                     lambda wc: [P.model(wc.dataset, wc.arch, "student", lspipe.base.runs.run_name(wc.alpha, wc.seed))]),
        **launch_params(lambda wc: STUDENT_LAYOUT[wc.dataset]),
    threads: config["threads"]
    resources:
        **train_resources(lambda wc: STUDENT_LAYOUT[wc.dataset]),
        mem_mb=config["resources"]["mem_mb"],
        runtime=lambda wc: training_runtime(student_entry(wc)["student_recipe"]),
    log:
        P.log("train_student_baseline", "{dataset}", "{arch}", lspipe.base.runs.RUN),
    benchmark:
        P.benchmark("train_student_baseline", "{dataset}", "{arch}", lspipe.base.runs.RUN)
    conda:
        ENV_TRAIN
    shell:
        train_shell()


rule train_student_distilled:
    """Distil one student from the teacher of the same seed at temperature T (beta, form from the config)."""
    input:
        data=lambda wc: checked_data(wc.dataset),
        teacher=P.model("{dataset}", "{tarch}", "teacher", "a{talpha}_s{seed}"),
    output:
        model=P.model("{dataset}", "{arch}", "student", lspipe.base.runs.KD_RUN),
        metrics=P.metrics("{dataset}", "{arch}", "student", lspipe.base.runs.KD_RUN),
    wildcard_constraints:
        dataset=DISTILL_DATASET,
        tarch=names_pattern(PLAN.archs),
        talpha=r"[0-9.]+(e-?[0-9]+)?",
        T=r"[0-9.]+(e-?[0-9]+)?",
    params:
        arch=lambda wc: wc.arch,
        seed=lambda wc: int(wc.seed),
        objectives=lambda wc: objectives_json([{
            "kind": "kd", "teacher": P.model(wc.dataset, wc.tarch, "teacher", f"a{wc.talpha}_s{wc.seed}"),
            "T": float(wc.T), "beta": float(student_entry(wc)["beta"]), "form": student_entry(wc)["form"],
        }]),
        role="student",
        runs=lambda wc: lspipe.base.runs.kd_run(wc.tarch, wc.talpha, wc.T, wc.seed),
        # what the config trains the teacher with (recipe, objective, seed): a teacher put in place that records
        # otherwise is refused before the student learns from it
        expect_teachers=lambda wc: teachers_expected([P.model(wc.dataset, wc.tarch, "teacher", f"a{wc.talpha}_s{wc.seed}")]),
        **run_params(lambda wc: student_entry(wc)["student_recipe"],
                     lambda wc: [P.model(wc.dataset, wc.arch, "student",
                                         lspipe.base.runs.kd_run(wc.tarch, wc.talpha, wc.T, wc.seed))]),
        **launch_params(lambda wc: STUDENT_LAYOUT[wc.dataset]),
    threads: config["threads"]
    resources:
        **train_resources(lambda wc: STUDENT_LAYOUT[wc.dataset]),
        mem_mb=config["resources"]["mem_mb"],
        runtime=lambda wc: training_runtime(student_entry(wc)["student_recipe"]),
    log:
        P.log("train_student_distilled", "{dataset}", "{arch}", lspipe.base.runs.KD_RUN),
    benchmark:
        P.benchmark("train_student_distilled", "{dataset}", "{arch}", lspipe.base.runs.KD_RUN)
    conda:
        ENV_TRAIN
    shell:
        train_shell("--expect-teachers {params.expect_teachers:q}")


# Lockstep students (distillation[].lockstep, lspipe.engine.training.train_group) train in multi-model jobs: grouped.smk.


rule distillation_gamma:
    """Smoothness index gamma of every needed teacher's soft targets on the training split, at each T."""
    input:
        lambda wc: PLAN.distillation.gamma_dumps(wc.dataset),
    output:
        report(P.table("distillation_gamma_{dataset}.csv"), category="Tables", caption="../report/fig5_gamma.rst"),
    wildcard_constraints:
        dataset=DISTILL_DATASET,
    params:
        temperatures=lambda wc: " ".join(fmt(t) for t in PLAN.distillation.gamma_temperatures(wc.dataset)),
        split="train",
    log:
        P.log("distillation_gamma", "{dataset}"),
    benchmark:
        P.benchmark("distillation_gamma", "{dataset}")
    localrule: True
    conda:
        ENV_PLOT
    shell:
        "lspipe distillation-gamma --dumps {input:q} --temperatures {params.temperatures} --split {params.split} "
        "--out {output:q} > {log:q} 2>&1"


rule distillation_figure:
    """Paper Fig. 5: accuracy against gamma for teachers, student baselines and distilled students."""
    input:
        gamma=lambda wc: PLAN.distillation.gamma_table(wc.dataset),
        teachers=lambda wc: PLAN.distillation.teacher_evals(wc.dataset),
        students=lambda wc: PLAN.distillation.student_evals(wc.dataset),
    output:
        csv=report(P.table("distillation_{dataset}.csv"), category="Tables", caption="../report/fig5_table.rst"),
        figures=[
            report(p, category="Figures", caption="../report/fig5_distillation.rst")
            for p in P.figures("fig5_distillation_{dataset}")
        ],
    wildcard_constraints:
        dataset=DISTILL_DATASET,
    params:
        split=lambda wc: PLAN.distillation.entries[wc.dataset]["split"],
        units=lspipe.core.tables.UNITS_VERSION,  # the CSV's units (accuracy %, ECE fraction): a new version rewrites it
        dpi=config["figures"]["dpi"],
        scale=config["figures"]["scale"],
    log:
        P.log("distillation_figure", "{dataset}"),
    benchmark:
        P.benchmark("distillation_figure", "{dataset}")
    localrule: True
    conda:
        ENV_PLOT
    shell:
        "lspipe distillation-figure --gamma {input.gamma:q} --teacher-evals {input.teachers:q} --student-evals {input.students:q} "
        "--split {params.split} --csv {output.csv:q} --figures {output.figures:q} --dpi {params.dpi} --scale {params.scale} > {log:q} 2>&1"

