"""Rule render_claims: the paper's claims checked across seeds, as a verdict table."""

from kdaug.preload import hand_over

hand_over(snakemake)  # noqa: F821 (injected by Snakemake); in a preloaded process if one is up

from pathlib import Path

from kdaug.joblog import job_log
from kdaug.papers import render_claims

sm = snakemake  # noqa: F821 (injected by Snakemake)
with job_log(sm.log[0]):
    stem = Path(sm.output.csv).with_suffix("")
    verdicts = render_claims(sm.input[0], sm.params.experiment, sm.wildcards.selection, stem)
    for v in verdicts:
        print(f"{v.id}: {v.verdict}")
