"""Rule render_report: tables (CSV + Markdown) and figures of one experiment."""

from pathlib import Path

from kdaug.joblog import job_log
from kdaug.render import render_experiment

sm = snakemake  # noqa: F821 (injected by Snakemake)
with job_log(sm.log[0]):
    out_dir = Path(sm.input[0]).parent
    render_experiment(sm.input[0], sm.params.experiment, sm.params.selections, out_dir)
