"""Rule render_figure: one figure of an experiment's report, as PNG."""

from kdaug.joblog import job_log
from kdaug.render import render_figure

sm = snakemake  # noqa: F821 (injected by Snakemake)
with job_log(sm.log[0]):
    w = sm.wildcards
    render_figure(sm.input[0], sm.params.experiment, w.selection, w.figure, sm.output[0])
