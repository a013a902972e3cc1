# The claims report ("did this run reproduce the paper?", lspipe.claims) and the experiment table
# (one row per trained model, lspipe.experiments). Both read outputs the other rules files write,
# so this file is included after all of them.

import lspipe.claims

CLAIMS = config["claims"]


def claims_ls_alpha(group):
    """The LS alpha of a teacher grid compared in claims 1, 2 and 5 (None: the grid has none)."""
    return lspipe.claims.pick_ls_alpha(group["alphas"], CLAIMS["ls_alpha"])


def tightness_dumps():
    """Teacher dumps whose tightness claim 2 needs: alpha 0, the claims' LS alpha and, for grids
    drawn in Fig. 1, projections.ls_alpha; every seed. Empty when no grid has alpha 0 and LS."""
    fig1 = {(r["dataset"], r["arch"]) for r in config["projections"]["rows"]}
    out = []
    for g in config["teachers"]:
        if 0.0 not in [float(a) for a in g["alphas"]]:
            continue
        alphas = {claims_ls_alpha(g)}
        if (g["dataset"], g["arch"]) in fig1:
            alphas.add(lspipe.claims.pick_ls_alpha(g["alphas"], config["projections"]["ls_alpha"]))
        alphas.discard(None)
        if alphas:
            out += [dump_path(g["dataset"], g["arch"], "teacher", teacher_run(a, s))
                    for a in sorted({0.0} | alphas) for s in g["seeds"]]
    return out


def trained_models():
    """(dataset, arch, role, run) of every model the workflow trains: teachers, then students."""
    models = [(d, a, "teacher", r) for d, a, r in all_teacher_runs()]
    for d, entry in DISTILL.items():
        models += [(d, entry["student_arch"], "student", r.name) for r in lspipe.distill.student_runs(entry)]
    return models


def training_benchmark(dataset, arch, role, run):
    """Benchmark TSV of the job that trains a model; models trained by one job share the file."""
    if role == "teacher":
        group = teacher_group(dataset, arch)
        if group.get("fuse"):
            seed = run.rsplit("_s", 1)[1]
            return f"{R}/benchmarks/train_teacher_fused/{dataset}/{arch}/s{seed}.tsv"
        return f"{R}/benchmarks/train_teacher/{dataset}/{arch}/{run}.tsv"
    job = "train_student_distilled" if run.startswith("kd-") else "train_student_baseline"
    return f"{R}/benchmarks/{job}/{dataset}/{arch}/{run}.tsv"


TIGHTNESS_DUMPS = tightness_dumps()
TRAINED = trained_models()


rule tightness_table:
    """Claim 2: tightness ratio of the Fig. 1 class triples and of random class triples, per teacher dump."""
    input:
        TIGHTNESS_DUMPS,
    output:
        report(f"{R}/tables/tightness.csv", category="Claims", caption="../report/tightness_table.rst"),
    params:
        rows=json.dumps(config["projections"]["rows"], sort_keys=True),
        triples=CLAIMS["tightness_triples"],
        seed=CLAIMS["tightness_seed"],
        split=CLAIMS["tightness_split"],
    log:
        f"{R}/logs/tightness_table.log",
    benchmark:
        f"{R}/benchmarks/tightness_table.tsv"
    localrule: True
    conda:
        ENV_PLOT
    shell:
        "lspipe tightness --dumps {input} --rows {params.rows:q} --triples {params.triples} --seed {params.seed} "
        "--split {params.split} --out {output} > {log} 2>&1"


rule claims:
    """The claims report: one section per claim of the paper with its numbers, effect, spread over seeds and verdict."""
    input:
        evals=[eval_path(*m) for m in TRAINED],
        calibrations=[p for paths in CALIBRATION_JSONS.values() for p in paths],
        tightness=[f"{R}/tables/tightness.csv"] if TIGHTNESS_DUMPS else [],
        gamma=[f"{R}/tables/distillation_gamma_{d}.csv" for d in DISTILL],
        mi=[p for paths in MI_CURVES.values() for p in paths],
    output:
        md=f"{R}/claims.md",
        json=f"{R}/claims.json",
        rst=report(f"{R}/claims.rst", category="Claims", caption="../report/claims.rst"),
    params:
        settings=json.dumps(CLAIMS, sort_keys=True),
        accuracy_split=config["accuracy_table"]["split"],
        calibration_ls_alpha="none" if config["calibration"]["ls_alpha"] is None else config["calibration"]["ls_alpha"],
        fig1_ls_alpha=config["projections"]["ls_alpha"],
        fig1_rows=len(config["projections"]["rows"]),
        distillation_split=" ".join(f"{d}={e['split']}" for d, e in DISTILL.items()),
        tightness=lambda wc, input: f"--tightness {input.tightness}" if input.tightness else "",
    log:
        f"{R}/logs/claims.log",
    benchmark:
        f"{R}/benchmarks/claims.tsv"
    localrule: True
    conda:
        ENV_PLOT
    shell:
        "lspipe claims --evals {input.evals} --calibrations {input.calibrations} {params.tightness} "
        "--gamma {input.gamma} --mi-curves {input.mi} --settings {params.settings:q} "
        "--accuracy-split {params.accuracy_split} --calibration-ls-alpha {params.calibration_ls_alpha} "
        "--fig1-ls-alpha {params.fig1_ls_alpha} --fig1-rows {params.fig1_rows} "
        "--distillation-split {params.distillation_split} "
        "--md {output.md} --json {output.json} --rst {output.rst} > {log} 2>&1"


rule experiments_table:
    """One row per trained model: settings, training time, accuracy, NLL, ECE before/after temperature scaling."""
    input:
        evals=[eval_path(*m) for m in TRAINED],
        calibrations=[f"{R}/calibration/{d}/{a}/{role}/{run}.json" for d, a, role, run in TRAINED],
        dumps=[dump_path(*m) for m in TRAINED],
        benchmarks=[training_benchmark(*m) for m in TRAINED],
    output:
        csv=report(f"{R}/tables/experiments.csv", category="Tables", caption="../report/experiments_table.rst"),
        md=f"{R}/tables/experiments.md",
    log:
        f"{R}/logs/experiments_table.log",
    benchmark:
        f"{R}/benchmarks/experiments_table.tsv"
    localrule: True
    conda:
        ENV_PLOT
    shell:
        "lspipe experiments --evals {input.evals} --calibrations {input.calibrations} --dumps {input.dumps} "
        "--benchmarks {input.benchmarks} --csv {output.csv} --md {output.md} > {log} 2>&1"


ALL_TARGETS.extend(
    [f"{R}/claims.md", f"{R}/claims.json", f"{R}/claims.rst", f"{R}/tables/experiments.csv", f"{R}/tables/experiments.md"]
)
if TIGHTNESS_DUMPS:
    ALL_TARGETS.append(f"{R}/tables/tightness.csv")
