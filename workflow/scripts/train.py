"""Rules train_teacher and distill_student: train one cell and write its model file."""

from kdaug.preload import hand_over

hand_over(snakemake)  # noqa: F821 (injected by Snakemake); in a preloaded process if one is up

from kdaug.joblog import device_job
from kdaug.train.training import train_cell

sm = snakemake  # noqa: F821 (injected by Snakemake)
with device_job(sm.log[0], sm.config["runtime"]):
    train_cell(
        sm.params.spec,
        train_path=sm.input.train,
        val_path=sm.input.val,
        output=sm.output[0],
        teacher_path=sm.input.get("teacher"),
        teacher_logits_path=sm.input.get("teacher_logits"),
        weights_path=sm.input.get("weights"),  # published weights instead of training
        threads=sm.threads,
        speed=sm.params.speed,
        code=sm.params.code,  # a checkpoint of other training code is not resumed
    )
