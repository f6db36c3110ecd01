"""Rule download_archive: fetch one official archive (or copy it from the mirror), verified."""

from kdaug.preload import hand_over

hand_over(snakemake)  # noqa: F821 (injected by Snakemake); in a preloaded process if one is up

from pathlib import Path

from kdaug.data.download import fetch_archive
from kdaug.joblog import job_log

sm = snakemake  # noqa: F821 (injected by Snakemake)
with job_log(sm.log[0]):
    mirror = sm.params.mirror
    fetch_archive(
        sm.wildcards.archive,
        sm.params.url,
        sm.params.checksum,
        Path(sm.output[0]),
        Path(mirror) if mirror else None,
        content_checksum=sm.params.content_checksum,
    )
