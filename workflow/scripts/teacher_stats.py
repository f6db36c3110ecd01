"""Rule teacher_stats: Wang et al.'s T. stddev, v-bar and r-bar of one student cell."""

from kdaug.preload import hand_over

hand_over(snakemake)  # noqa: F821 (injected by Snakemake); in a preloaded process if one is up

from kdaug.joblog import device_job
from kdaug.measure.teacher_stats import cell_teacher_stats

sm = snakemake  # noqa: F821 (injected by Snakemake)
with device_job(sm.log[0], sm.config["runtime"]):
    cell_teacher_stats(
        sm.params.spec,
        cell=sm.params.cell,
        train_path=sm.input.train,
        teacher_path=sm.input.teacher,
        student_path=sm.input.get("student"),
        output=sm.output[0],
        threads=sm.threads,
        **sm.params.settings,
    )
