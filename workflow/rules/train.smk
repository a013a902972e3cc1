# Teacher training over {dataset, arch, alpha, seed}. Two rules share one command: the
# `_probed` variant also records the mutual-information probe (Fig. 6) for the teacher grids
# that configure one; the `dataset` wildcard constraints make the two rules disjoint.
# Grids with `fuse: true` train all alphas of a seed in one job instead (train_teacher_fused_*,
# below), so the single-run rules exclude them.

FUSED = [(g["dataset"], g["arch"]) for g in config["teachers"] if g.get("fuse")]
SINGLE_DATASET = _pairs_regex(PROBED + FUSED, negate=True)

TRAIN_CMD = (
    "lspipe train --data {input.data:q} --arch {wildcards.arch} --recipe {params.recipe:q} "
    "--seed {wildcards.seed} --alpha {params.alpha} --role teacher --run {params.run} "
    "--device {params.device} --threads {threads} {params.progress} {params.probe} "
    "--out {output.model:q} --metrics {output.metrics:q} > {log:q} 2>&1"
)


rule train_teacher:
    """Train one teacher (label-smoothed cross-entropy) on the GPU when there is one."""
    input:
        data=lambda wc: checked_data(wc.dataset),
    output:
        model=f"{R}/models/{{dataset}}/{{arch}}/teacher/a{{alpha}}_s{{seed}}/model.pt",
        metrics=f"{R}/models/{{dataset}}/{{arch}}/teacher/a{{alpha}}_s{{seed}}/metrics.csv",
    wildcard_constraints:
        dataset=SINGLE_DATASET,
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
        gpu_model=GPU_MODEL,
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
        data=lambda wc: checked_data(wc.dataset),
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
        gpu_model=GPU_MODEL,
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


# Grid-fused teachers (teachers[].fuse): one job per (dataset, arch, seed) trains every alpha of
# the grid as one fused network (lspipe.fused) and writes each alpha's ordinary model.pt and
# metrics.csv, the files train_teacher would write. The number of outputs differs between grids,
# so there is one rule per fused grid, named train_teacher_fused_<dataset>_<arch>.
for _grid in config["teachers"]:
    if not _grid.get("fuse"):
        continue
    _ds, _arch = _grid["dataset"], _grid["arch"]
    _runs = [f"a{fmt(a)}_s{{seed}}" for a in _grid["alphas"]]

    rule:
        name:
            f"train_teacher_fused_{_ds}_{_arch}"
        input:
            data=lambda wc, ds=_ds: checked_data(ds),
        output:
            models=[f"{model_dir(_ds, _arch, 'teacher', r)}/model.pt" for r in _runs],
            metrics=[f"{model_dir(_ds, _arch, 'teacher', r)}/metrics.csv" for r in _runs],
        params:
            arch=_arch,
            recipe=recipe_json(_grid["recipe"]),
            alphas=" ".join(fmt(a) for a in _grid["alphas"]),
            runs=lambda wc, runs=_runs: " ".join(r.format(seed=wc.seed) for r in runs),
            device=config["device"],
            progress="--progress" if config["progress"] else "--no-progress",
        threads: config["threads"]
        resources:
            gpu=GPU,
            gpu_model=GPU_MODEL,
            mem_mb=config["resources"]["mem_mb"],
            # a fused job does the work of len(alphas) runs; on a GPU it takes less, never more
            runtime=training_runtime(_grid["recipe"]) * len(_grid["alphas"]),
        log:
            f"{R}/logs/train_teacher_fused/{_ds}/{_arch}/s{{seed}}.log",
        benchmark:
            f"{R}/benchmarks/train_teacher_fused/{_ds}/{_arch}/s{{seed}}.tsv"
        conda:
            ENV_TRAIN
        shell:
            "lspipe train-fused --data {input.data:q} --arch {params.arch} --recipe {params.recipe:q} "
            "--seed {wildcards.seed} --alphas {params.alphas} --role teacher --runs {params.runs} "
            "--device {params.device} --threads {threads} {params.progress} "
            "--out {output.models:q} --metrics {output.metrics:q} > {log:q} 2>&1"
