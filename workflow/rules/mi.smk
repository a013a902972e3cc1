# Paper Fig. 6 ("erasure of information"): the mutual information between a training example
# and its two-class logit difference, over training, from the probe trace that
# `train_teacher_probed` records for every teacher grid with a `probe` (teachers[].probe).

import re

import lspipe.mi

try:
    MI_PLAN = lspipe.mi.fig6_plan(config)  # (dataset, arch) -> alphas, seeds, title
except lspipe.config.ConfigError as err:
    raise WorkflowError(str(err))

MI_CURVES = {
    key: [f"{R}/mi/{key[0]}/{key[1]}/{teacher_run(a, s)}.csv" for a in p["alphas"] for s in p["seeds"]]
    for key, p in MI_PLAN.items()
}


rule mi_curve:
    """I(X; Y) at every recorded step of one teacher's probe trace (CSV: step, mi, sigma, ...)."""
    input:
        probe=f"{R}/models/{{dataset}}/{{arch}}/teacher/a{{alpha}}_s{{seed}}/probe.h5",
    output:
        f"{R}/mi/{{dataset}}/{{arch}}/a{{alpha}}_s{{seed}}.csv",
    params:
        alpha=lambda wc: float(wc.alpha),
        ddof=config["mi"]["ddof"],
        probe=probe_settings,
    log:
        f"{R}/logs/mi_curve/{{dataset}}/{{arch}}/a{{alpha}}_s{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/mi_curve/{{dataset}}/{{arch}}/a{{alpha}}_s{{seed}}.tsv"
    localrule: True
    conda:
        ENV_PLOT
    shell:
        "lspipe mi-curve --probe {input.probe:q} --out {output:q} --ddof {params.ddof} "
        "--alpha {params.alpha} --seed {wildcards.seed} --expect-probe {params.probe:q} > {log:q} 2>&1"


rule mi_figure:
    """Paper Fig. 6: MI against training step per alpha (mean, min/max over seeds), and its table."""
    input:
        lambda wc: MI_CURVES[(wc.dataset, wc.arch)],
    output:
        figs=[
            report(p, category="Fig. 6: mutual information", caption="../report/fig6_mi.rst")
            for p in figure_paths("fig6_mi_{dataset}_{arch}")
        ],
        csv=report(
            f"{R}/tables/mi_{{dataset}}_{{arch}}.csv",
            category="Fig. 6: mutual information",
            caption="../report/fig6_mi_table.rst",
        ),
    wildcard_constraints:
        dataset="|".join(re.escape(d) for d, _ in MI_PLAN) or "(?!)",
        arch="|".join(re.escape(a) for _, a in MI_PLAN) or "(?!)",
    params:
        alphas=lambda wc: " ".join(fmt(a) for a in MI_PLAN[(wc.dataset, wc.arch)]["alphas"]),
        title=lambda wc: MI_PLAN[(wc.dataset, wc.arch)]["title"],
        dpi=config["figures"]["dpi"],
    log:
        f"{R}/logs/mi_figure/{{dataset}}_{{arch}}.log",
    benchmark:
        f"{R}/benchmarks/mi_figure/{{dataset}}_{{arch}}.tsv"
    localrule: True
    conda:
        ENV_PLOT
    shell:
        "lspipe mi-figure --curves {input:q} --alphas {params.alphas} --csv {output.csv:q} --out {output.figs:q} "
        "--title {params.title:q} --dpi {params.dpi} > {log:q} 2>&1"


ALL_TARGETS.extend(
    path for d, a in MI_PLAN for path in figure_paths(f"fig6_mi_{d}_{a}") + [f"{R}/tables/mi_{d}_{a}.csv"]
)
