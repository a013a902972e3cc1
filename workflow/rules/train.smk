# Every training job of the workflow, in one rule skeleton. The jobs are the plan's (PLAN.training_jobs,
# lspipe.workflow.jobs: one value each, with its dataset, arch, role, seed, recipe, objectives, run names,
# outputs, teachers, fuse, probe and GPU layout), and so are the rules that run them (PLAN.training_rules):
#
# - train_teacher, train_student_baseline, train_student_distilled: wildcard rules over {dataset, arch, run},
#   one single-model job per match (PLAN.job(dataset, arch, role, run)); each wildcard takes exactly the
#   values of its rule's jobs. A teacher is one objective of its grid (label smoothing at each alpha,
#   teachers[].objectives) and one seed; a student a baseline (label smoothing) or a student distilled from
#   the teacher of its seed (lspipe.experiments.distill). Every single teacher writes model.pt, metrics.csv
#   and probe.h5: the mutual-information probe's trace (Fig. 6, lspipe.experiments.mi) for a grid with
#   `teachers[].probe`, otherwise a small placeholder that `lspipe mi-curve` refuses.
# - one rule per multi-model job, named after it, without wildcards: a fused teacher grid's seed
#   (teachers[].fuse, lspipe.engine.fused: every objective of the seed as one fused network; a probed grid
#   writes each member's probe.h5) and the lockstep students of a seed (distillation[].lockstep: the
#   hard-target teacher's students at every temperature, or the baselines;
#   lspipe.engine.training.train_group). It writes its models' ordinary model.pt and metrics.csv; a
#   `ruleorder` makes it their producer, before the wildcard rules.
#
# Every job is one `lspipe train` (train_shell); a rule differs from the others only in its own options
# (TRAIN_OPTIONS). Everything downstream (dumps, evaluations, figures, one-figure rebuilds) sees the same
# files whichever job made them.
#
# A distilled student's teacher model.pt is a plain input, deliberately NOT ancient(): Snakemake 9
# does not propagate a rerun to a downstream job whose inputs from the rerun job are all ancient
# and exist (snakemake/dag.py, update_needrun), so ancient() would leave students of a retrained
# teacher stale. Plain, whenever a teacher job runs (changed recipe or code, --forcerun, ...),
# exactly its students train again (tests/test_distill.py checks this with dry runs).


# A rule's own options (lspipe.workflow.jobs.TrainingRule.options): the text its shell command adds, and the
# value of the `params:` entry of that name (from the job). Each is a parameter, so Snakemake's params rerun
# trigger sees it: a changed probe retrains its teachers, a changed fuse its group.
TRAIN_OPTIONS = {
    # every probe setting (with its defaults) of the grid, or "" for none; the trace goes to the probe output
    "probe": ("{params.probe} --probe-out {output.probe:q}", lambda job: probe_option(job.probe)),
    # --fuse / --no-fuse, and a probed grid's probe options with one --probe-out per member
    "fuse": ("{params.fuse}", lambda job: ("--fuse" if job.fuse else "--no-fuse") + (
        f" {probe_option(job.probe)} --probe-out {' '.join(shlex.quote(p) for p in job.probes)}" if job.probe else "")),
    # what the config trains each teacher with (recipe, objective, seed): a teacher put in place that records
    # otherwise is refused before a student learns from it
    "expect_teachers": ("--expect-teachers {params.expect_teachers:q}", lambda job: teachers_expected(job.teachers)),
}


# Each rule's shell command (train_shell with its own options' text), by rule name. A rule's shell expression is
# evaluated again when its job runs, inside the rule's run function, where `rule` is the rule's name: by then this
# loop has moved on (`_rule` is the last rule), so the expression below looks its command up by that name.
TRAIN_SHELLS = {r.name: train_shell(" ".join(TRAIN_OPTIONS[o][0] for o in r.options)) for r in PLAN.training_rules}


for _rule in PLAN.training_rules:
    _job = lambda wc, r=_rule: training_job(r, wc)  # noqa: E731 (every function below reads the job through it)

    rule:
        name:
            _rule.name
        input:
            data=lambda wc, j=_job: checked_data(j(wc).dataset),
            teacher=lambda wc, j=_job: list(j(wc).teachers),
        output:
            **_rule.outputs(P),
        wildcard_constraints:
            **{k: names_pattern(v) for k, v in _rule.matches().items()},
        params:
            arch=lambda wc, j=_job: j(wc).arch,
            seed=lambda wc, j=_job: j(wc).seed,
            objectives=lambda wc, j=_job: objectives_json(j(wc).objectives),
            role=_rule.role,
            runs=lambda wc, j=_job: " ".join(j(wc).runs),
            **{o: (lambda wc, j=_job, f=TRAIN_OPTIONS[o][1]: f(j(wc))) for o in _rule.options},
            **run_params(lambda wc, j=_job: j(wc).recipe, lambda wc, j=_job: list(j(wc).models)),
            **launch_params(lambda wc, j=_job: j(wc).layout),
        threads: config["threads"]
        resources:
            **train_resources(lambda wc, j=_job: j(wc).layout),
            mem_mb=config["resources"]["mem_mb"],
            # a multi-model job does (less than) the work of its models' separate runs
            runtime=lambda wc, j=_job: training_runtime(j(wc).recipe) * len(j(wc).runs),
        log:
            P.log(*_rule.log),
        benchmark:
            P.benchmark(*_rule.log)
        conda:
            ENV_TRAIN
        shell:
            TRAIN_SHELLS[locals().get("rule", _rule.name)]

    if _rule.grouped:
        for _single in PLAN.training_rules:
            if not _single.grouped and _single.role == _rule.role:
                workflow.ruleorder(_rule.name, _single.name)
