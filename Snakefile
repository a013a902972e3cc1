# lspipe: "When Does Label Smoothing Help?" (Mueller, Kornblith, Hinton 2019), end to end.
#
#   snakemake --cores all                                       # default: bundled digits, CPU, < 10 min
#   snakemake --cores all --configfile workflow/presets/paper.yaml --config ...   # the paper, on GPUs
#   snakemake --workflow-profile profiles/slurm --configfile ...                 # on a SLURM cluster
#
# All logic lives in the `lspipe` package; the rules below are thin calls of its CLI.

from snakemake.utils import min_version

min_version("9.0")


# A configuration stands alone: config.yaml (the digits demo) is read only when no --configfile is
# given. Files passed with --configfile (a preset, several merged in order) replace it entirely,
# so none of the demo's sections or datasets leak into them; --config overrides apply either way.
# Every key a configuration leaves out takes the schema's default (workflow/schemas/).
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/calibration.smk"
include: "workflow/rules/projection.smk"
include: "workflow/rules/mi.smk"
include: "workflow/rules/distill.smk"
include: "workflow/rules/distillation_toy.smk"
include: "workflow/rules/teacher_projection.smk"
include: "workflow/rules/claims.smk"
include: "workflow/rules/experiments.smk"
include: "workflow/rules/learning_curves.smk"


rule all:
    input:
        PLAN.final_targets(),
    default_target: True
