# The distillation section's teacher projections (the source slides' last pages): penultimate
# activations of training examples of the distillation grid's teachers, hard targets vs label
# smoothing, on the template plane of three classes; one figure per `distillation` entry with a
# `teacher_projection` (lspipe.experiments.teacher_projection).

import re

import lspipe.experiments.teacher_projection

rule distillation_teacher_projections:
    """Penultimate projections of the distillation teachers (alpha 0 vs LS) on training examples."""
    input:
        # the two teachers drawn: the hard-target one and the label-smoothed one, of the grid's lowest seed
        hard=lambda wc: PLAN.teacher_projection.dump(wc.dataset, "hard"),
        ls=lambda wc: PLAN.teacher_projection.dump(wc.dataset, "ls"),
    output:
        [
            report(p, category="Figures", caption="../report/fig5_teacher_projections.rst")
            for p in P.figures(lspipe.experiments.teacher_projection.FIGURE_STEM)
        ],
    wildcard_constraints:
        dataset="|".join(re.escape(d) for d in PLAN.teacher_projection.settings) or "(?!)",
    params:
        classes=lambda wc: json.dumps(PLAN.teacher_projection.settings[wc.dataset]["classes"]),
        per_class=lambda wc: PLAN.teacher_projection.settings[wc.dataset]["per_class"],
        seed=lambda wc: PLAN.teacher_projection.settings[wc.dataset]["seed"],
        ls_alpha=lambda wc: PLAN.teacher_projection.settings[wc.dataset]["ls_alpha"],
        dpi=config["figures"]["dpi"],
        scale=config["figures"]["scale"],
    log:
        P.log("distillation_teacher_projections", "{dataset}"),
    benchmark:
        P.benchmark("distillation_teacher_projections", "{dataset}")
    localrule: True
    conda:
        ENV_PLOT
    shell:
        "lspipe distillation-teacher-projections --hard {input.hard:q} --ls {input.ls:q} --classes {params.classes:q} "
        "--out {output:q} --per-class {params.per_class} --seed {params.seed} --ls-alpha {params.ls_alpha} "
        "--dpi {params.dpi} --scale {params.scale} > {log:q} 2>&1"

