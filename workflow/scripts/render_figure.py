"""Rule render_figure: one figure of an experiment's report, as PNG."""

from kdaug.preload import hand_over

hand_over(snakemake)  # noqa: F821 (injected by Snakemake); in a preloaded process if one is up

from kdaug.joblog import job_log
from kdaug.papers import render_figure

sm = snakemake  # noqa: F821 (injected by Snakemake)
with job_log(sm.log[0]):
    w = sm.wildcards
    metrics_csv = sm.input.get("metrics")
    outputs = list(sm.input.get("outputs", []))
    render_figure(metrics_csv, sm.params.experiment, w.selection, w.figure, outputs, sm.output[0])
