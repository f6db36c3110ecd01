"""Rule prepare_split: build one canonical split file from its archives."""

from kdaug.preload import hand_over

hand_over(snakemake)  # noqa: F821 (injected by Snakemake); in a preloaded process if one is up

from pathlib import Path

from kdaug.data.canonical import save_split
from kdaug.data.datasets import build_split
from kdaug.joblog import job_log

sm = snakemake  # noqa: F821 (injected by Snakemake)
with job_log(sm.log[0]):
    params = sm.params.dataset
    files = {role: Path(path) for role, path in sm.input.items()}
    split = build_split(params["builder"], sm.wildcards.split, files, params)
    save_split(sm.output[0], split)
    print(f"{sm.wildcards.dataset}/{sm.wildcards.split}: {len(split)} images {split.images.shape}")
