"""Rule evaluate_split: logits (+ embeddings) of one model on one split, and their metrics."""

from kdaug.joblog import device_job
from kdaug.measure.evaluation import metrics_file
from kdaug.measure.extract import extract_outputs

sm = snakemake  # noqa: F821 (injected by Snakemake)
w = sm.wildcards
with device_job(sm.log[0], sm.config["runtime"]):
    extract_outputs(
        sm.input.model,
        sm.input.split,
        sm.output.outputs,
        selection=w.selection,
        embeddings=sm.params.embeddings,
        threads=sm.threads,
        # the cell the output's path names: the model file must hold it
        expect={"dataset": w.dataset, "seed": w.seed, "model": w.model},
    )
    metrics_file(
        sm.output.outputs,
        sm.output.metrics,
        cell=sm.params.cell,
        selection=w.selection,
        split=w.split,
        metrics=sm.params.metrics,
        ece_bins=sm.params.ece_bins,
        vscore_groups=sm.params.vscore_groups,
    )
