"""Rule render_table: one table of an experiment's report, as CSV and Markdown."""

from kdaug.preload import hand_over

hand_over(snakemake)  # noqa: F821 (injected by Snakemake); in a preloaded process if one is up

from pathlib import Path

from kdaug.joblog import job_log
from kdaug.papers import render_table

sm = snakemake  # noqa: F821 (injected by Snakemake)
with job_log(sm.log[0]):
    stem = Path(sm.output.csv).with_suffix("")
    w = sm.wildcards
    render_table(sm.input[0], sm.params.experiment, w.selection, w.table, stem)
