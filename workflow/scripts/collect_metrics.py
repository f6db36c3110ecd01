"""Rule collect_metrics: every metrics file of an experiment into one long CSV."""

from kdaug.preload import hand_over

hand_over(snakemake)  # noqa: F821 (injected by Snakemake); in a preloaded process if one is up

from kdaug.joblog import job_log
from kdaug.measure.evaluation import collect

sm = snakemake  # noqa: F821 (injected by Snakemake)
with job_log(sm.log[0]):
    collect(
        list(sm.input),
        sm.output[0],
        experiment=sm.wildcards.experiment,
        splits=sm.params.splits,
    )
