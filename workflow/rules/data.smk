# Data preparation, one job per dataset. A streamed dataset (datasets.<name>.storage: streaming: an index
# of an ImageFolder tree such as ImageNet, which stats every file and decodes some or all of the images)
# is prepared by a CPU job of its own, `prepare_data_streamed`, which SLURM runs on a compute node with
# resources.prepare's cores, memory and time; every other dataset (the digits, CIFAR, a resident or `auto`
# tree) by `prepare_data`, a local rule, run where Snakemake runs. The two rules are one job with the same
# output, parameters and command; the dataset's name says which one makes it.

rule prepare_data:
    """Prepare one dataset into a single .npz with fixed, seeded, stratified train/val/test splits: its
    images (resident), or an index of its ImageFolder tree (streaming; lspipe.core.source)."""
    output:
        P.data("{dataset}"),
    wildcard_constraints:
        dataset=prepared_by(streamed=False),
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


# A streamed dataset (its index) is prepared as a CPU job of its own: on SLURM a job on a compute node, not the
# login node (resources.prepare); otherwise prepare_data, whose output, parameters and command it takes.
use rule prepare_data as prepare_data_streamed with:
    wildcard_constraints:
        dataset=prepared_by(streamed=True),
    threads: config["resources"]["prepare"]["threads"]
    resources:
        # --cpus-per-task on SLURM, as asked (a dry run caps `threads` at its own cores)
        cpus_per_task=config["resources"]["prepare"]["threads"],
        mem_mb=config["resources"]["prepare"]["mem_mb"],
        runtime=config["resources"]["prepare"]["runtime"],
    localrule: False
