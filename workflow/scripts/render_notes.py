"""Rule render_notes: an experiment's notes.md (the split roles it lacks, and the report
files left out for them)."""

from kdaug.preload import hand_over

hand_over(snakemake)  # noqa: F821 (injected by Snakemake); in a preloaded process if one is up

from pathlib import Path

from kdaug.io import atomic_path
from kdaug.joblog import job_log

sm = snakemake  # noqa: F821 (injected by Snakemake)
with job_log(sm.log[0]), atomic_path(sm.output[0]) as tmp:
    Path(tmp).write_text(sm.params.notes)
