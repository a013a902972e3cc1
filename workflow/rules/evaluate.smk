# Per-model activation dumps and evaluations (any role: teachers and students), and Table 2.


rule dump_activations:
    """Penultimate activations, logits, labels and the last layer of one model, to HDF5."""
    input:
        model=P.model("{dataset}", "{arch}", "{role}", "{run}"),
        data=lambda wc: checked_data(wc.dataset),
    output:
        P.dump("{dataset}", "{arch}", "{role}", "{run}"),
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
        P.log("dump_activations", "{dataset}", "{arch}", "{role}", "{run}"),
    benchmark:
        P.benchmark("dump_activations", "{dataset}", "{arch}", "{role}", "{run}")
    conda:
        ENV_TRAIN
    shell:
        "lspipe dump-activations --model {input.model:q} --data {input.data:q} --out {output:q} --max-train {params.max_train} "
        "--compression {params.compression} --chunk-rows {params.chunk_rows} --device {params.device} "
        "--threads {threads} > {log:q} 2>&1"


rule evaluate:
    """Accuracy and NLL on the validation and test splits, from the dump."""
    input:
        P.dump("{dataset}", "{arch}", "{role}", "{run}"),
    output:
        P.eval("{dataset}", "{arch}", "{role}", "{run}"),
    log:
        P.log("evaluate", "{dataset}", "{arch}", "{role}", "{run}"),
    benchmark:
        P.benchmark("evaluate", "{dataset}", "{arch}", "{role}", "{run}")
    # seconds of CPU on a dump: on SLURM it runs where Snakemake runs, not as a cluster job
    localrule: True
    conda:
        ENV_TRAIN
    shell:
        "lspipe evaluate --dump {input:q} --out {output:q} > {log:q} 2>&1"


rule accuracy_table:
    """Paper Table 2: top-1 accuracy, mean ± std over seeds, per dataset / arch / alpha."""
    input:
        [P.eval(*m) for m in PLAN.trained_models if m[2] == "teacher"],
    output:
        csv=report(P.table("accuracy.csv"), category="Tables", caption="../report/accuracy_table.rst"),
        md=P.table("accuracy.md"),
    params:
        split=config["accuracy_table"]["split"],
        digits=config["accuracy_table"]["digits"],
    log:
        P.log("accuracy_table"),
    benchmark:
        P.benchmark("accuracy_table")
    localrule: True
    conda:
        ENV_PLOT
    shell:
        "lspipe accuracy-table --evals {input:q} --csv {output.csv:q} --md {output.md:q} "
        "--split {params.split} --digits {params.digits} > {log:q} 2>&1"

