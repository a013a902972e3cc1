# Paper Fig. 6 ("erasure of information"): the mutual information between a training example
# and its two-class logit difference, over training, from the probe trace that
# `train_teacher` (train.smk) records for every teacher grid with a `probe` (teachers[].probe). Only
# those grids' traces are read here (lspipe.experiments.mi.fig6_plan): the other teachers' probe.h5 is a
# placeholder, which `lspipe mi-curve` refuses.

import re

# the `dataset` and `arch` wildcards of mi_curve: only the probed grids (PLAN.mi.grids: (dataset, arch) ->
# alphas, seeds, title)
MI_DATASET = "|".join(re.escape(d) for d, _ in PLAN.mi.grids) or "(?!)"
MI_ARCH = "|".join(re.escape(a) for _, a in PLAN.mi.grids) or "(?!)"


rule mi_curve:
    """I(X; Y) at every recorded step of one teacher's probe trace (CSV: step, mi, sigma, ...)."""
    input:
        probe=P.probe("{dataset}", "{arch}", lspipe.base.runs.RUN),
    output:
        P.mi_curve("{dataset}", "{arch}", lspipe.base.runs.RUN),
    wildcard_constraints:
        dataset=MI_DATASET,
        arch=MI_ARCH,
    params:
        alpha=lambda wc: float(wc.alpha),
        ddof=config["mi"]["ddof"],
        probe=probe_settings,
    log:
        P.log("mi_curve", "{dataset}", "{arch}", lspipe.base.runs.RUN),
    benchmark:
        P.benchmark("mi_curve", "{dataset}", "{arch}", lspipe.base.runs.RUN)
    localrule: True
    conda:
        ENV_PLOT
    shell:
        "lspipe mi-curve --probe {input.probe:q} --out {output:q} --ddof {params.ddof} "
        "--alpha {params.alpha} --seed {wildcards.seed} --expect-probe {params.probe:q} > {log:q} 2>&1"


rule mi_figure:
    """Paper Fig. 6: MI against training step per alpha (mean, min/max over seeds), and its table."""
    input:
        lambda wc: PLAN.mi.curves(wc.dataset, wc.arch),
    output:
        figs=[
            report(p, category="Fig. 6: mutual information", caption="../report/fig6_mi.rst")
            for p in P.figures("fig6_mi_{dataset}_{arch}")
        ],
        csv=report(
            P.table("mi_{dataset}_{arch}.csv"),
            category="Fig. 6: mutual information",
            caption="../report/fig6_mi_table.rst",
        ),
    wildcard_constraints:
        dataset=MI_DATASET,
        arch=MI_ARCH,
    params:
        alphas=lambda wc: " ".join(fmt(a) for a in PLAN.mi.grids[(wc.dataset, wc.arch)]["alphas"]),
        title=lambda wc: PLAN.mi.grids[(wc.dataset, wc.arch)]["title"],
        dpi=config["figures"]["dpi"],
        scale=config["figures"]["scale"],
    log:
        P.log("mi_figure", "{dataset}_{arch}"),
    benchmark:
        P.benchmark("mi_figure", "{dataset}_{arch}")
    localrule: True
    conda:
        ENV_PLOT
    shell:
        "lspipe mi-figure --curves {input:q} --alphas {params.alphas} --csv {output.csv:q} --out {output.figs:q} "
        "--title {params.title:q} --dpi {params.dpi} --scale {params.scale} > {log:q} 2>&1"

