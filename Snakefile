# lspipe: "When Does Label Smoothing Help?" (Mueller, Kornblith, Hinton 2019), end to end.
#
#   snakemake --cores all                                       # default: bundled digits, CPU, < 10 min
#   snakemake --cores all --configfile workflow/presets/paper.yaml --config ...   # the paper, on GPUs
#   snakemake --workflow-profile profiles/slurm --configfile ...                 # on a SLURM cluster
#
# All logic lives in the `lspipe` package; the rules below are thin calls of its CLI.

from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/mi.smk"
include: "workflow/rules/distill.smk"
include: "workflow/rules/claims.smk"


rule all:
    input:
        ALL_TARGETS,
    default_target: True
