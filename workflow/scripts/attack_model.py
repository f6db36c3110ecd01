"""Rule attack_model: FGSM / I-FGSM accuracy of one (model, selection, split)."""

from kdaug.preload import hand_over

hand_over(snakemake)  # noqa: F821 (injected by Snakemake); in a preloaded process if one is up

from kdaug.joblog import device_job
from kdaug.measure.robustness import attack_file

sm = snakemake  # noqa: F821 (injected by Snakemake)
with device_job(sm.log[0], sm.config["runtime"]):
    attack_file(
        sm.input.model,
        sm.input.split,
        sm.output[0],
        cell=sm.params.cell,
        selection=sm.wildcards.selection,
        split=sm.wildcards.split,
        threads=sm.threads,
        **sm.params.settings,
    )
