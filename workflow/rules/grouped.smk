# Multi-model training jobs: one job trains several models whose set depends on the config.
# Fused teacher grids (teachers[].fuse, lspipe.engine.fused: every alpha of a seed as one fused network)
# and lockstep students (distillation[].lockstep: the students of one seed that share batches and the
# hard-target teacher) are `lspipe train` jobs of several objectives (lspipe.engine.training.train_group),
# like every training job; they follow this one pattern, in this one place:
#
# - lspipe.workflow.plan.Plan.grouped_jobs lists the jobs (one dict each: models, objectives, fuse, log name);
# - one rule per job is generated below, named after the job (train_teacher_fused_<dataset>_<arch>_s<seed>,
#   train_students_lockstep_<dataset>_<family>_s<seed>); it has no wildcards, so it matches exactly
#   its own models' paths: their ordinary model.pt and metrics.csv;
# - those paths also match the single-run rule (train_teacher, train_student_*), and a `ruleorder`
#   per generated rule makes the multi-model job their producer.
#
# With fuse / lockstep off no rule is generated and each model trains in its own job. Everything
# downstream (dumps, evaluations, figures, one-figure rebuilds) sees the same files either way. A fused
# grid with a probe (teachers[].probe) also writes each member's probe.h5 (lspipe.engine.probe records
# every member from the fused network's logits), as its single runs would.

for _job in PLAN.grouped_jobs:
    _models = [(_job["dataset"], _job["arch"], _job["role"], r) for r in _job["runs"]]

    rule:
        name:
            _job["name"]
        input:
            data=lambda wc, ds=_job["dataset"]: checked_data(ds),
            teacher=_job["teacher"],
        output:
            model=[P.model(*m) for m in _models],
            metrics=[P.metrics(*m) for m in _models],
            # a probed fused grid: every member's probe trace (none for the others, as before)
            **({"probe": [P.probe(*m[:2], m[3]) for m in _models]} if _job["probe"] else {}),
        params:
            arch=_job["arch"],
            seed=_job["seed"],
            objectives=objectives_json(_job["objectives"]),
            role=_job["role"],
            runs=" ".join(_job["runs"]),
            # --fuse / --no-fuse, and a probed grid's probe options with one --probe-out per member: one
            # value, so the shell text below is every job's (a rule's shell expression is evaluated again
            # when its job runs, after this loop has moved on: it must not read `_job`)
            fuse=("--fuse" if _job["fuse"] else "--no-fuse") + grouped_probe_args(_job["probe"], _models),
            expect_teachers=teachers_expected(_job["teacher"]),
            **run_params(lambda wc, j=_job: j["recipe"], lambda wc, ms=_models: [P.model(*m) for m in ms]),
            **launch_params(lambda wc, j=_job: job_layout(j)),
        threads: config["threads"]
        resources:
            **train_resources(lambda wc, j=_job: job_layout(j)),
            mem_mb=config["resources"]["mem_mb"],
            # a multi-model job does (less than) the work of its models' separate runs
            runtime=training_runtime(_job["recipe"]) * len(_job["runs"]),
        log:
            P.log(*_job["log"]),
        benchmark:
            P.benchmark(*_job["log"])
        conda:
            ENV_TRAIN
        shell:
            train_shell("{params.fuse} --expect-teachers {params.expect_teachers:q}")

    workflow.ruleorder(_job["name"], _job["single"])
