# Per-model analysis (any role: teachers and students): the activation dump, the evaluation and the
# calibration of each trained model, in one job; and Table 2.

import lspipe.core.tables
import lspipe.experiments.calibration


rule analyse_model:
    """One model's analysis, in one job: its penultimate activations, logits, labels and last layer (the dump,
    HDF5), its accuracy and NLL on the validation and test splits (the evaluation), and temperature scaling
    fitted on the validation split with ECE / NLL / accuracy and reliability bins on test (the calibration).
    The files of the sub-commands dump-activations, evaluate and calibrate, in one process (lspipe.experiments.per_model)."""
    input:
        model=P.model("{dataset}", "{arch}", "{role}", "{run}"),
        data=lambda wc: checked_data(wc.dataset),
    output:
        dump=P.dump("{dataset}", "{arch}", "{role}", "{run}"),
        eval=P.eval("{dataset}", "{arch}", "{role}", "{run}"),
        calibration=P.calibration("{dataset}", "{arch}", "{role}", "{run}"),
    params:
        max_train=lambda wc: config["dump"]["max_train"] or 0,
        compression=config["dump"]["compression"],
        chunk_rows=config["dump"]["chunk_rows"],
        bins=config["calibration"]["bins"],
        # the calibration JSON's format (2: validation metrics at T = 1 and ECE floors): a new format reruns every model's analysis
        format=lspipe.experiments.calibration.FORMAT_VERSION,
        device=config["device"],
        # images per batch of a streamed dataset's dump (the last bits of float32 logits may depend on it); 0: resident
        eval_batch_size=lambda wc: config["streaming"]["eval_batch_size"] if data_storage(wc.dataset) == "streaming" else 0,
    threads: config["threads"]
    resources:
        gpu=GPU,
        gpu_model=GPU_MODEL,
        mem_mb=config["resources"]["mem_mb"],
        runtime=config["resources"]["min_runtime"],
    log:
        P.log("analyse_model", "{dataset}", "{arch}", "{role}", "{run}"),
    benchmark:
        P.benchmark("analyse_model", "{dataset}", "{arch}", "{role}", "{run}")
    conda:
        ENV_TRAIN
    shell:
        "lspipe analyse-model --model {input.model:q} --data {input.data:q} --out {output.dump:q} "
        "--eval-out {output.eval:q} --calibration-out {output.calibration:q} --bins {params.bins} "
        "--max-train {params.max_train} --compression {params.compression} --chunk-rows {params.chunk_rows} "
        "--eval-batch-size {params.eval_batch_size} "
        "--device {params.device} --threads {threads} > {log:q} 2>&1"


rule accuracy_table:
    """Paper Table 2: top-1 accuracy, mean ± std over seeds, per dataset / arch / alpha."""
    input:
        PLAN.accuracy.evals(),
    output:
        csv=report(P.table("accuracy.csv"), category="Tables", caption="../report/accuracy_table.rst"),
        md=P.table("accuracy.md"),
    params:
        split=config["accuracy_table"]["split"],
        digits=config["accuracy_table"]["digits"],
        units=lspipe.core.tables.UNITS_VERSION,  # the CSV's units (accuracy %, ECE fraction): a new version rewrites it
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

