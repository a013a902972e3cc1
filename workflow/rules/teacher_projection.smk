# The distillation section's teacher projections (the source slides' last pages): penultimate
# activations of training examples of the distillation grid's teachers, hard targets vs label
# smoothing, on the template plane of three classes; one figure per `distillation` entry with a
# `teacher_projection` (lspipe.experiments.teacher_projection).

import re

import lspipe.experiments.teacher_projection

TEACHER_PROJECTIONS = PLAN.teacher_projections

# the two teachers drawn: the hard-target one and the label-smoothed one, of the grid's lowest seed
TEACHER_PROJECTION_DUMPS = {
    d: {kind: P.dump(d, p["teacher_arch"], "teacher", teacher_run(a, p["teacher_seed"]))
        for kind, a in (("hard", 0.0), ("ls", p["ls_alpha"]))}
    for d, p in TEACHER_PROJECTIONS.items()
}


rule distillation_teacher_projections:
    """Penultimate projections of the distillation teachers (alpha 0 vs LS) on training examples."""
    input:
        hard=lambda wc: TEACHER_PROJECTION_DUMPS[wc.dataset]["hard"],
        ls=lambda wc: TEACHER_PROJECTION_DUMPS[wc.dataset]["ls"],
    output:
        [
            report(p, category="Figures", caption="../report/fig5_teacher_projections.rst")
            for p in P.figures(lspipe.experiments.teacher_projection.FIGURE_STEM)
        ],
    wildcard_constraints:
        dataset="|".join(re.escape(d) for d in TEACHER_PROJECTIONS) or "(?!)",
    params:
        classes=lambda wc: json.dumps(TEACHER_PROJECTIONS[wc.dataset]["classes"]),
        per_class=lambda wc: TEACHER_PROJECTIONS[wc.dataset]["per_class"],
        seed=lambda wc: TEACHER_PROJECTIONS[wc.dataset]["seed"],
        ls_alpha=lambda wc: TEACHER_PROJECTIONS[wc.dataset]["ls_alpha"],
        dpi=config["figures"]["dpi"],
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
        "--dpi {params.dpi} > {log:q} 2>&1"

