# The paper's MNIST distillation toy (section 4): teacher and student test error of the hard-target and the
# label-smoothed teacher, their difference paired by seed, and the students alone, per `distillation_toy`
# entry (lspipe.experiments.distill_toy). Its models are the dataset's distillation entry's (distill.smk);
# what it reads is PLAN.distillation_toy.evals(dataset).

TOY_DATASET = f"(?:{'|'.join(PLAN.distillation_toy.entries)})" if PLAN.distillation_toy.entries else r"(?!)"


rule distillation_toy_table:
    """The toy's table: teacher and student error (%) for the hard-target and the LS teacher, intervals over seeds."""
    input:
        unpack(lambda wc: PLAN.distillation_toy.evals(wc.dataset)),
    output:
        csv=report(P.table("distillation_toy_{dataset}.csv"), category="Tables", caption="../report/distillation_toy.rst"),
        md=P.table("distillation_toy_{dataset}.md"),
    wildcard_constraints:
        dataset=TOY_DATASET,
    params:
        ls_alpha=lambda wc: PLAN.distillation_toy.entries[wc.dataset]["ls_alpha"],
        temperature=lambda wc: PLAN.distillation_toy.entries[wc.dataset]["temperature"],
        split=lambda wc: PLAN.distillation_toy.entries[wc.dataset]["split"],
        digits=lambda wc: PLAN.distillation_toy.entries[wc.dataset]["digits"],
        confidence=PLAN.distillation_toy.confidence,
        units=lspipe.core.tables.UNITS_VERSION,  # the CSV's units (error in %): a new version rewrites it
        alone=lambda wc, input: " ".join(
            shlex.quote(f"{role[len('alone_'):]}={path}") for role in input.keys() if role.startswith("alone_")
            for path in input[role]
        ),
    log:
        P.log("distillation_toy_table", "{dataset}"),
    benchmark:
        P.benchmark("distillation_toy_table", "{dataset}")
    localrule: True
    conda:
        ENV_PLOT
    shell:
        "lspipe distillation-toy-table --teacher-hard {input.teacher_hard:q} --teacher-ls {input.teacher_ls:q} "
        "--student-hard {input.student_hard:q} --student-ls {input.student_ls:q} --alone {params.alone} "
        "--ls-alpha {params.ls_alpha} --temperature {params.temperature} --split {params.split} "
        "--confidence {params.confidence} --digits {params.digits} --csv {output.csv:q} --md {output.md:q} > {log:q} 2>&1"
