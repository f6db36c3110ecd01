"""Rule compute_metrics: the configured metrics of one (model, selection, split)."""

from kdaug.joblog import job_log
from kdaug.measure.evaluation import metrics_file

sm = snakemake  # noqa: F821 (injected by Snakemake)
with job_log(sm.log[0]):
    metrics_file(
        sm.input[0],
        sm.output[0],
        cell=sm.params.cell,
        selection=sm.wildcards.selection,
        split=sm.wildcards.split,
        metrics=sm.params.metrics,
        ece_bins=sm.params.ece_bins,
        vscore_groups=sm.params.vscore_groups,
    )
