"""Rule render_training_curves: every model's per-epoch history of an experiment, as a
figure (PNG) and its data (CSV)."""

from kdaug.preload import hand_over

hand_over(snakemake)  # noqa: F821 (injected by Snakemake); in a preloaded process if one is up

from kdaug.joblog import job_log
from kdaug.report.curves import render_training_curves

sm = snakemake  # noqa: F821 (injected by Snakemake)
with job_log(sm.log[0]):
    experiment = sm.wildcards.experiment
    render_training_curves(
        sm.params.cells,
        list(sm.input),
        sm.output.csv,
        sm.output.figure,
        f"Training curves of {experiment}",
    )
