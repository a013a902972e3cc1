rule prepare_data:
    """Prepare one dataset into a single .npz with fixed, seeded, stratified train/val/test splits: its
    images (resident), or an index of its ImageFolder tree (streaming; lspipe.core.source)."""
    output:
        P.data("{dataset}"),
    params:
        # the dataset's settings but its folder, `root` (the job reads it from LSPIPE_DATA_ROOTS: common.smk)
        options=lambda wc: dataset_options(wc.dataset),
        # the source files as they are now (count and digest of relative paths and contents, or of sizes and
        # mtimes for a tree above 256 MiB): adding, replacing or deleting an image changes it, and Snakemake's
        # params trigger prepares the data again; moving the tree (root) does not
        sources=lambda wc: source_digest(wc.dataset),
        # resident or streaming (lspipe.core.stream.choose_storage), and for an index the streaming
        # settings it records (lspipe.core.source.INDEX_SETTINGS): a change prepares the data again
        storage=lambda wc: data_storage(wc.dataset),
        streaming=lambda wc: index_settings(wc.dataset),
    threads: 16
    log:
        P.log("prepare_data", "{dataset}"),
    benchmark:
        P.benchmark("prepare_data", "{dataset}")
    # CPU-only and run once per dataset: on SLURM it runs where Snakemake runs, not as a cluster job
    localrule: True
    conda:
        ENV_TRAIN
    shell:
        "lspipe prepare-data --name {wildcards.dataset} --options {params.options:q} --streaming {params.streaming:q} "
        "--storage {params.storage} --workers {threads} --out {output:q} > {log:q} 2>&1"
