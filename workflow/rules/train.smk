# Teacher training over {dataset, arch, alpha, seed}. Two rules share one command: the
# `_probed` variant also records the mutual-information probe (Fig. 6) for the teacher grids
# that configure one; the `dataset` wildcard constraints make the two rules disjoint.

TRAIN_CMD = (
    "lspipe train --data {input.data} --arch {wildcards.arch} --recipe {params.recipe:q} "
    "--seed {wildcards.seed} --alpha {params.alpha} --role teacher --run {params.run} "
    "--device {params.device} --threads {threads} {params.progress} {params.probe} "
    "--out {output.model} --metrics {output.metrics} > {log} 2>&1"
)


rule train_teacher:
    """Train one teacher (label-smoothed cross-entropy) on the GPU when there is one."""
    input:
        data=ancient(f"{R}/data/{{dataset}}.npz"),
    output:
        model=f"{R}/models/{{dataset}}/{{arch}}/teacher/a{{alpha}}_s{{seed}}/model.pt",
        metrics=f"{R}/models/{{dataset}}/{{arch}}/teacher/a{{alpha}}_s{{seed}}/metrics.csv",
    wildcard_constraints:
        dataset=UNPROBED_DATASET,
    params:
        recipe=lambda wc: recipe_json(teacher_params(wc)["recipe"]),
        alpha=lambda wc: float(wc.alpha),
        run=lambda wc: teacher_run(wc.alpha, wc.seed),
        device=config["device"],
        progress="--progress" if config["progress"] else "--no-progress",
        probe="",
    threads: config["threads"]
    resources:
        gpu=GPU,
        mem_mb=config["resources"]["mem_mb"],
        runtime=lambda wc: training_runtime(teacher_params(wc)["recipe"]),
    log:
        f"{R}/logs/train_teacher/{{dataset}}/{{arch}}/a{{alpha}}_s{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/train_teacher/{{dataset}}/{{arch}}/a{{alpha}}_s{{seed}}.tsv"
    conda:
        ENV_TRAIN
    shell:
        TRAIN_CMD


rule train_teacher_probed:
    """Train one teacher and record the mutual-information probe's logits during training."""
    input:
        data=ancient(f"{R}/data/{{dataset}}.npz"),
    output:
        model=f"{R}/models/{{dataset}}/{{arch}}/teacher/a{{alpha}}_s{{seed}}/model.pt",
        metrics=f"{R}/models/{{dataset}}/{{arch}}/teacher/a{{alpha}}_s{{seed}}/metrics.csv",
        probe=f"{R}/models/{{dataset}}/{{arch}}/teacher/a{{alpha}}_s{{seed}}/probe.h5",
    wildcard_constraints:
        dataset=PROBED_DATASET,
    params:
        recipe=lambda wc: recipe_json(teacher_params(wc)["recipe"]),
        alpha=lambda wc: float(wc.alpha),
        run=lambda wc: teacher_run(wc.alpha, wc.seed),
        device=config["device"],
        progress="--progress" if config["progress"] else "--no-progress",
        probe=probe_args,
    threads: config["threads"]
    resources:
        gpu=GPU,
        mem_mb=config["resources"]["mem_mb"],
        runtime=lambda wc: training_runtime(teacher_params(wc)["recipe"]),
    log:
        f"{R}/logs/train_teacher/{{dataset}}/{{arch}}/a{{alpha}}_s{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/train_teacher/{{dataset}}/{{arch}}/a{{alpha}}_s{{seed}}.tsv"
    conda:
        ENV_TRAIN
    shell:
        TRAIN_CMD
