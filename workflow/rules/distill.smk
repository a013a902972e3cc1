# Paper Fig. 5: the teachers' smoothness index gamma and the figure with its table, per `distillation`
# entry (one per dataset). The students themselves (trained alone with label smoothing, distilled from the
# hard-target teacher at each temperature, and from the label-smoothed teachers at T = 1,
# distillation[].ls_temperature) are training jobs
# of the plan (PLAN.training_jobs, lspipe.workflow.jobs; run names and the grid from
# lspipe.experiments.distill), trained by the rules of train.smk. Student baselines that are the very training
# run of a teacher (same dataset, arch, recipe, alpha, seed; e.g. the paper preset's AlexNet at alpha 0) are
# trained once, as the teacher: their consumers read the teacher's files (PLAN.distillation.twins,
# lspipe.experiments.distill.trained_as).
#
# The teachers' dumps feed the gamma table as plain inputs, deliberately NOT ancient() (see train.smk): a
# retrained teacher recomputes its gamma.

import lspipe.core.tables

# the `dataset` wildcard of the Fig. 5 rules: only datasets with a distillation entry (PLAN.distillation.entries)
DISTILL_DATASET = names_pattern(PLAN.distillation.entries)


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

