# kd-augment: data augmentation in knowledge distillation, end to end.
# The logic lives in the kdaug package; this file and workflow/rules/ only wire it.
from snakemake.utils import min_version, validate

from kdaug import plan, render

min_version("9.0")

# Snakemake's message for a YAML syntax error names no file or line: read the default
# config first (files given with --configfile are read before this file runs; see
# plan.check_config_files).
plan.check_config_files(["config/config.yaml"])


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


# Op names first: the schema's message for a misspelt op names neither key nor op. The
# cross-reference checks import torch (~2.5 s): a cluster job's own Snakemake, which
# reads the config the submitting one already checked, skips them.
if workflow.is_main_process:
    plan.check_augmentation_ops(config)
validate(config, "config/schema.yaml")
if workflow.is_main_process:
    plan.check_config(config)
plan.apply_narrowing(config)


wildcard_constraints:
    **plan.WILDCARDS,


# conda: paths are relative to the rule files in workflow/rules/.
CONDA_ENV = "../../envs/kdaug.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


# Quick jobs run where Snakemake runs, not through the cluster's queue: downloads (compute
# nodes often have no internet), metrics on stored outputs, collection and rendering.
localrules:
    all,
    download_archive,
    collect_metrics,
    render_table,
    render_figure,
    render_claims,


rule all:
    default_target: True
    input:
        [f for e in config["run"] for f in plan.experiment_outputs(config, e)],
