rule prepare_data:
    """Prepare one dataset into a single .npz with fixed, seeded, stratified train/val/test splits."""
    output:
        P.data("{dataset}"),
    params:
        options=lambda wc: json.dumps(config["datasets"][wc.dataset], sort_keys=True),
        # the source files as they are now (count and digest of paths, sizes, mtimes): adding,
        # replacing or deleting an image changes it, and Snakemake's params trigger prepares the data again
        sources=lambda wc: source_digest(wc.dataset),
    log:
        P.log("prepare_data", "{dataset}"),
    benchmark:
        P.benchmark("prepare_data", "{dataset}")
    # CPU-only and run once per dataset: on SLURM it runs where Snakemake runs, not as a cluster job
    localrule: True
    conda:
        ENV_TRAIN
    shell:
        "lspipe prepare-data --name {wildcards.dataset} --options {params.options:q} --out {output:q} > {log:q} 2>&1"
