# Paper Fig. 5: students trained alone with label smoothing, distilled from the hard-target
# teacher at each temperature, and distilled from label-smoothed teachers at T = 1, per
# `distillation` entry (one per dataset) and seed; the teachers' smoothness index gamma; the
# figure and its table. Run names and the grid come from lspipe.distill.
#
# A distilled student's teacher model.pt is a plain input, deliberately NOT ancient(): Snakemake 9
# does not propagate a rerun to a downstream job whose inputs from the rerun job are all ancient
# and exist (snakemake/dag.py, update_needrun), so ancient() would leave students of a retrained
# teacher stale. Plain, whenever a teacher job runs (changed recipe or code, --forcerun, ...),
# exactly its students train again (tests/test_distill.py checks this with dry runs).
# The teachers' dumps feed the gamma table as plain inputs for the same reason.

import lspipe.distill

try:
    DISTILL = lspipe.distill.entries_by_dataset(config["distillation"])
except lspipe.config.ConfigError as err:
    raise WorkflowError(str(err))

# the `dataset` wildcard of the Fig. 5 rules: only datasets with a distillation entry
DISTILL_DATASET = f"(?:{'|'.join(DISTILL)})" if DISTILL else r"(?!)"

# Student baselines that are the very training run of a teacher (same dataset, arch, recipe, alpha,
# seed; e.g. the paper preset's AlexNet at alpha 0): trained once, as the teacher. Their consumers
# read the teacher's files (lspipe.distill.trained_as); no student job exists for them.
TEACHER_TWINS = {ds: lspipe.distill.teacher_twins(d, config["teachers"], config["recipes"]) for ds, d in DISTILL.items()}



rule train_student_baseline:
    """Train one student alone with label-smoothed cross-entropy (Fig. 5's student baseline)."""
    input:
        data=lambda wc: checked_data(wc.dataset),
    output:
        model=f"{R}/models/{{dataset}}/{{arch}}/student/a{{alpha}}_s{{seed}}/model.pt",
        metrics=f"{R}/models/{{dataset}}/{{arch}}/student/a{{alpha}}_s{{seed}}/metrics.csv",
    wildcard_constraints:
        dataset=DISTILL_DATASET,
    params:
        recipe=lambda wc: recipe_json(lspipe.distill.entry_for(DISTILL, wc.dataset, wc.arch)["student_recipe"]),
        alpha=lambda wc: float(wc.alpha),
        run=lambda wc: lspipe.distill.baseline_run(wc.alpha, wc.seed),
        device=config["device"],
        progress="--progress" if config["progress"] else "--no-progress",
    threads: config["threads"]
    resources:
        gpu=GPU,
        gpu_model=GPU_MODEL,
        mem_mb=config["resources"]["mem_mb"],
        runtime=lambda wc: training_runtime(lspipe.distill.entry_for(DISTILL, wc.dataset, wc.arch)["student_recipe"]),
    log:
        f"{R}/logs/train_student_baseline/{{dataset}}/{{arch}}/a{{alpha}}_s{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/train_student_baseline/{{dataset}}/{{arch}}/a{{alpha}}_s{{seed}}.tsv"
    conda:
        ENV_TRAIN
    shell:
        "lspipe train --data {input.data:q} --arch {wildcards.arch} --recipe {params.recipe:q} "
        "--seed {wildcards.seed} --alpha {params.alpha} --role student --run {params.run} "
        "--device {params.device} --threads {threads} {params.progress} "
        "--out {output.model:q} --metrics {output.metrics:q} > {log:q} 2>&1"


rule train_student_distilled:
    """Distil one student from the teacher of the same seed at temperature T (beta, form from the config)."""
    input:
        data=lambda wc: checked_data(wc.dataset),
        teacher=f"{R}/models/{{dataset}}/{{tarch}}/teacher/a{{talpha}}_s{{seed}}/model.pt",
    output:
        model=f"{R}/models/{{dataset}}/{{arch}}/student/kd-{{tarch}}-a{{talpha}}-T{{T}}_s{{seed}}/model.pt",
        metrics=f"{R}/models/{{dataset}}/{{arch}}/student/kd-{{tarch}}-a{{talpha}}-T{{T}}_s{{seed}}/metrics.csv",
    wildcard_constraints:
        dataset=DISTILL_DATASET,
        tarch=r"[a-z0-9]+",
        talpha=r"[0-9.]+(e-?[0-9]+)?",
        T=r"[0-9.]+(e-?[0-9]+)?",
    params:
        recipe=lambda wc: recipe_json(lspipe.distill.entry_for(DISTILL, wc.dataset, wc.arch)["student_recipe"]),
        alpha=0.0,
        run=lambda wc: lspipe.distill.kd_run(wc.tarch, wc.talpha, wc.T, wc.seed),
        temperature=lambda wc: float(wc.T),
        beta=lambda wc: float(lspipe.distill.entry_for(DISTILL, wc.dataset, wc.arch)["beta"]),
        form=lambda wc: lspipe.distill.entry_for(DISTILL, wc.dataset, wc.arch)["form"],
        device=config["device"],
        progress="--progress" if config["progress"] else "--no-progress",
    threads: config["threads"]
    resources:
        gpu=GPU,
        gpu_model=GPU_MODEL,
        mem_mb=config["resources"]["mem_mb"],
        runtime=lambda wc: training_runtime(lspipe.distill.entry_for(DISTILL, wc.dataset, wc.arch)["student_recipe"]),
    log:
        f"{R}/logs/train_student_distilled/{{dataset}}/{{arch}}/kd-{{tarch}}-a{{talpha}}-T{{T}}_s{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/train_student_distilled/{{dataset}}/{{arch}}/kd-{{tarch}}-a{{talpha}}-T{{T}}_s{{seed}}.tsv"
    conda:
        ENV_TRAIN
    shell:
        "lspipe train --data {input.data:q} --arch {wildcards.arch} --recipe {params.recipe:q} "
        "--seed {wildcards.seed} --alpha {params.alpha} --role student --run {params.run} "
        "--teacher {input.teacher:q} --temperature {params.temperature} --beta {params.beta} --form {params.form} "
        "--device {params.device} --threads {threads} {params.progress} "
        "--out {output.model:q} --metrics {output.metrics:q} > {log:q} 2>&1"


# Lockstep students (distillation[].lockstep, lspipe.lockstep): the students of one seed that share
# the hard-target teacher (every T of the grid), and the student baselines of one seed, train in
# one job each: one batch stream, one teacher forward per batch, every student's own loss and SGD
# step. The pattern for such multi-model jobs (as the fused teacher grids in train.smk): one rule
# per job, generated here from the config (lspipe.distill.lockstep_groups decides the groups), whose
# outputs are exactly the ordinary model.pt and metrics.csv of its students; no wildcards, so
# each rule matches only its own students' paths. Those paths also match the single-run rules above;
# the explicit `ruleorder` (Snakemake's `ruleorder:` statement, issued per generated rule) makes the
# lockstep rule their producer. With lockstep: false no rule is generated and every student trains
# in its own job. Everything downstream (dumps, evaluations, Fig. 5, one-figure rebuilds) sees the
# same files either way.
for _ds, _d in DISTILL.items():
    for _grp in lspipe.distill.lockstep_groups(_d, TEACHER_TWINS[_ds]):
        _dirs = [model_dir(_ds, _d["student_arch"], "student", r) for r in _grp["runs"]]
        _kd = _grp["family"] == "kd_hard"
        _name = f"train_students_lockstep_{_ds}_{_grp['family']}_s{_grp['seed']}"
        _teacher = model_path(_ds, _d["teacher_arch"], "teacher", teacher_run(0, _grp["seed"]))
        if _kd:  # every student's objective (lspipe train-lockstep: --teacher/--temperatures or --alphas)
            _members = (f"--teacher {shlex.quote(_teacher)} --temperatures {' '.join(fmt(t) for t in _grp['temperatures'])} "
                        f"--beta {float(_d['beta'])} --form {_d['form']}")
        else:
            _members = f"--alphas {' '.join(fmt(a) for a in _grp['alphas'])}"

        rule:
            name:
                _name
            input:
                data=lambda wc, _ds=_ds: checked_data(_ds),
                teacher=[_teacher] if _kd else [],
            output:
                models=[f"{d}/model.pt" for d in _dirs],
                metrics=[f"{d}/metrics.csv" for d in _dirs],
            params:
                arch=_d["student_arch"],
                recipe=recipe_json(_d["student_recipe"]),
                seed=_grp["seed"],
                members=_members,
                runs=" ".join(_grp["runs"]),
                fuse="--fuse" if _d["fuse_students"] else "--no-fuse",
                device=config["device"],
                progress="--progress" if config["progress"] else "--no-progress",
            threads: config["threads"]
            resources:
                gpu=GPU,
                gpu_model=GPU_MODEL,
                mem_mb=config["resources"]["mem_mb"],
                # a lockstep job does (less than) the work of its students' separate runs
                runtime=training_runtime(_d["student_recipe"]) * len(_grp["runs"]),
            log:
                f"{R}/logs/train_students_lockstep/{_ds}/{_d['student_arch']}/{_grp['family']}_s{_grp['seed']}.log",
            benchmark:
                f"{R}/benchmarks/train_students_lockstep/{_ds}/{_d['student_arch']}/{_grp['family']}_s{_grp['seed']}.tsv"
            conda:
                ENV_TRAIN
            shell:
                "lspipe train-lockstep --data {input.data:q} --arch {params.arch} --recipe {params.recipe:q} "
                "--seed {params.seed} {params.members} --runs {params.runs} {params.fuse} "
                "--device {params.device} --threads {threads} {params.progress} "
                "--out {output.models:q} --metrics {output.metrics:q} > {log:q} 2>&1"

        workflow.ruleorder(_name, "train_student_distilled" if _kd else "train_student_baseline")


rule distillation_gamma:
    """Smoothness index gamma of every needed teacher's soft targets on the training split, at each T."""
    input:
        lambda wc: [
            dump_path(wc.dataset, DISTILL[wc.dataset]["teacher_arch"], "teacher", teacher_run(a, s))
            for a, s in lspipe.distill.gamma_teacher_runs(DISTILL[wc.dataset])
        ],
    output:
        report(f"{R}/tables/distillation_gamma_{{dataset}}.csv", category="Tables", caption="../report/fig5_gamma.rst"),
    wildcard_constraints:
        dataset=DISTILL_DATASET,
    params:
        temperatures=lambda wc: " ".join(fmt(t) for t in lspipe.distill.gamma_temperatures(DISTILL[wc.dataset])),
        split="train",
    log:
        f"{R}/logs/distillation_gamma/{{dataset}}.log",
    benchmark:
        f"{R}/benchmarks/distillation_gamma/{{dataset}}.tsv"
    localrule: True
    conda:
        ENV_PLOT
    shell:
        "lspipe distill-gamma --dumps {input:q} --temperatures {params.temperatures} --split {params.split} "
        "--out {output:q} > {log:q} 2>&1"


rule distillation_figure:
    """Paper Fig. 5: accuracy against gamma for teachers, student baselines and distilled students."""
    input:
        gamma=f"{R}/tables/distillation_gamma_{{dataset}}.csv",
        teachers=lambda wc: [
            eval_path(wc.dataset, DISTILL[wc.dataset]["teacher_arch"], "teacher", teacher_run(a, s))
            for a, s in lspipe.distill.teacher_curve_runs(DISTILL[wc.dataset])
        ],
        students=lambda wc: [
            eval_path(wc.dataset, DISTILL[wc.dataset]["student_arch"], *lspipe.distill.trained_as(r.name, TEACHER_TWINS[wc.dataset]))
            for r in lspipe.distill.student_runs(DISTILL[wc.dataset])
        ],
    output:
        csv=report(f"{R}/tables/distillation_{{dataset}}.csv", category="Tables", caption="../report/fig5_table.rst"),
        figures=[
            report(p, category="Figures", caption="../report/fig5_distillation.rst")
            for p in figure_paths("fig5_distillation_{dataset}")
        ],
    wildcard_constraints:
        dataset=DISTILL_DATASET,
    params:
        split=lambda wc: DISTILL[wc.dataset]["split"],
        dpi=config["figures"]["dpi"],
    log:
        f"{R}/logs/distillation_figure/{{dataset}}.log",
    benchmark:
        f"{R}/benchmarks/distillation_figure/{{dataset}}.tsv"
    localrule: True
    conda:
        ENV_PLOT
    shell:
        "lspipe distill-figure --gamma {input.gamma:q} --teacher-evals {input.teachers:q} --student-evals {input.students:q} "
        "--split {params.split} --csv {output.csv:q} --figures {output.figures:q} --dpi {params.dpi} > {log:q} 2>&1"


for _d in DISTILL:
    ALL_TARGETS.extend(
        [f"{R}/tables/distillation_gamma_{_d}.csv", f"{R}/tables/distillation_{_d}.csv"]
        + figure_paths(f"fig5_distillation_{_d}")
    )
