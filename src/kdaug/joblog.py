"""Send a workflow script's output to its per-job log file under ``logs/``."""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from collections.abc import Iterator, Mapping
from typing import Any


@contextlib.contextmanager
def job_log(path: str | os.PathLike[str] | None) -> Iterator[None]:
    """Redirect stdout and stderr to ``path`` (appending, so a resumed job keeps its
    history); a failure's traceback is written there too before it propagates."""
    if path is None:
        yield
        return
    os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
    with (
        open(path, "a", buffering=1) as fh,
        contextlib.redirect_stdout(fh),
        contextlib.redirect_stderr(fh),
    ):
        try:
            yield
        except BaseException:
            traceback.print_exc()
            raise


@contextlib.contextmanager
def device_job(path: str | os.PathLike[str] | None, runtime: Mapping[str, Any]) -> Iterator[None]:
    """:func:`job_log`, and a GPU slot for this job (:func:`kdaug.devices.claim_gpu`,
    ``runtime.gpu_slots`` jobs per GPU) taken before anything starts CUDA."""
    from kdaug.devices import claim_gpu

    with job_log(path):
        claim_gpu(int(runtime.get("gpu_slots", 1)), log=lambda s: print(s, file=sys.stderr))
        yield
