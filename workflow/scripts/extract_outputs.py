"""Rule extract_outputs: logits (+ embeddings) of one model on one split."""

from kdaug.joblog import device_job
from kdaug.measure.extract import extract_outputs

sm = snakemake  # noqa: F821 (injected by Snakemake)
with device_job(sm.log[0], sm.config["runtime"]):
    extract_outputs(
        sm.input.model,
        sm.input.split,
        sm.output[0],
        selection=sm.wildcards.selection,
        embeddings=sm.params.embeddings,
        threads=sm.threads,
        # the cell the output's path names: the model file must hold it
        expect={
            "dataset": sm.wildcards.dataset,
            "seed": sm.wildcards.seed,
            "model": sm.wildcards.model,
        },
    )
