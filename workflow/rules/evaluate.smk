# Per-model activation dumps and evaluations (any role: teachers and students), and Table 2.


rule dump_activations:
    """Penultimate activations, logits, labels and the last layer of one model, to HDF5."""
    input:
        model=f"{R}/models/{{dataset}}/{{arch}}/{{role}}/{{run}}/model.pt",
        data=lambda wc: checked_data(wc.dataset),
    output:
        f"{R}/dumps/{{dataset}}/{{arch}}/{{role}}/{{run}}.h5",
    params:
        max_train=lambda wc: config["dump"]["max_train"] or 0,
        compression=config["dump"]["compression"],
        chunk_rows=config["dump"]["chunk_rows"],
        device=config["device"],
    threads: config["threads"]
    resources:
        gpu=GPU,
        gpu_model=GPU_MODEL,
        mem_mb=config["resources"]["mem_mb"],
        runtime=config["resources"]["min_runtime"],
    log:
        f"{R}/logs/dump_activations/{{dataset}}/{{arch}}/{{role}}/{{run}}.log",
    benchmark:
        f"{R}/benchmarks/dump_activations/{{dataset}}/{{arch}}/{{role}}/{{run}}.tsv"
    conda:
        ENV_TRAIN
    shell:
        "lspipe dump --model {input.model:q} --data {input.data:q} --out {output:q} --max-train {params.max_train} "
        "--compression {params.compression} --chunk-rows {params.chunk_rows} --device {params.device} "
        "--threads {threads} > {log:q} 2>&1"


rule evaluate:
    """Accuracy and NLL on the validation and test splits, from the dump."""
    input:
        f"{R}/dumps/{{dataset}}/{{arch}}/{{role}}/{{run}}.h5",
    output:
        f"{R}/eval/{{dataset}}/{{arch}}/{{role}}/{{run}}.json",
    log:
        f"{R}/logs/evaluate/{{dataset}}/{{arch}}/{{role}}/{{run}}.log",
    benchmark:
        f"{R}/benchmarks/evaluate/{{dataset}}/{{arch}}/{{role}}/{{run}}.tsv"
    # seconds of CPU on a dump: on SLURM it runs where Snakemake runs, not as a cluster job
    localrule: True
    conda:
        ENV_TRAIN
    shell:
        "lspipe evaluate --dump {input:q} --out {output:q} > {log:q} 2>&1"


rule accuracy_table:
    """Paper Table 2: top-1 accuracy, mean ± std over seeds, per dataset / arch / alpha."""
    input:
        [eval_path(d, a, "teacher", r) for d, a, r in all_teacher_runs()],
    output:
        csv=report(f"{R}/tables/accuracy.csv", category="Tables", caption="../report/accuracy_table.rst"),
        md=f"{R}/tables/accuracy.md",
    params:
        split=config["accuracy_table"]["split"],
        digits=config["accuracy_table"]["digits"],
    log:
        f"{R}/logs/accuracy_table.log",
    benchmark:
        f"{R}/benchmarks/accuracy_table.tsv"
    localrule: True
    conda:
        ENV_PLOT
    shell:
        "lspipe accuracy-table --evals {input:q} --csv {output.csv:q} --md {output.md:q} "
        "--split {params.split} --digits {params.digits} > {log:q} 2>&1"


ALL_TARGETS.extend([f"{R}/tables/accuracy.csv", f"{R}/tables/accuracy.md"])
