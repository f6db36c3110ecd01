"""Rule evaluate_model: logits (+ embeddings) of one model on each of its evaluation
splits, and their metrics, loading the model once."""

from kdaug.preload import hand_over

hand_over(snakemake)  # noqa: F821 (injected by Snakemake); in a preloaded process if one is up

from kdaug.joblog import device_job
from kdaug.measure.evaluation import metrics_file
from kdaug.measure.extract import extract_outputs

sm = snakemake  # noqa: F821 (injected by Snakemake)
w = sm.wildcards
splits = sm.params.splits
with device_job(sm.log[0], sm.config["runtime"]):
    extract_outputs(
        sm.input.model,
        dict(zip(splits, sm.input.splits, strict=True)),
        sm.output.outputs,
        selection=w.selection,
        embeddings_for=sm.params.embeddings_for,
        threads=sm.threads,
        # the cell the output's path names: the model file must hold it
        expect={"dataset": w.dataset, "seed": w.seed, "model": w.model},
    )
    metrics_file(
        sm.output.outputs,
        sm.output.metrics,
        cell=sm.params.cell,
        selection=w.selection,
        splits=splits,
        metrics=sm.params.metrics,
        ece_bins=sm.params.ece_bins,
        vscore_groups=sm.params.vscore_groups,
    )
