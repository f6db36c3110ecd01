"""Send a workflow script's output to its per-job log file under ``logs/``."""

from __future__ import annotations

import contextlib
import io
import os
import socket
import sys
import time
import traceback
from collections.abc import Iterator, Mapping
from typing import Any, TextIO

from kdaug.preload import in_child, process_age


def timing_line(in_job: float, age: float | None) -> str:
    """The last line of every job log: time inside the job's work and, where known, the
    process's age, whose difference is the start-up (Python, imports, Snakemake's
    preamble) that ``bench/startup_share.py`` sums over a run."""
    where = "" if age is None else f" of {age:.2f} s since the process started"
    return f"===== job time: {in_job:.2f} s in the job{where} ====="


def history_path(path: str | os.PathLike[str]) -> str:
    """Where every attempt of a job is logged: ``<log>.history``."""
    return os.fspath(path) + ".history"


class _Tee(io.TextIOBase):
    """Writes to several text files at once (line-buffered files: a killed job loses no
    finished line)."""

    def __init__(self, *files: TextIO) -> None:
        self.files = files

    def write(self, text: str) -> int:
        for f in self.files:
            f.write(text)
        return len(text)

    def flush(self) -> None:
        for f in self.files:
            f.flush()

    def fileno(self) -> int:  # for code that asks (faulthandler...): the job's log
        return self.files[0].fileno()

    def isatty(self) -> bool:
        return False


@contextlib.contextmanager
def job_log(path: str | os.PathLike[str] | None) -> Iterator[None]:
    """Redirect stdout and stderr to ``path``; a failure's traceback is written there too
    before it propagates.

    Snakemake deletes a job's log file before it runs the job, so the log of a killed or
    failed attempt would be gone after the rerun. Every attempt is therefore also appended
    to :func:`history_path` (``<log>.history``, a file Snakemake does not know and leaves
    alone), after a header line saying when, where and under which process it started.
    """
    if path is None:
        yield
        return
    os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
    started = time.strftime("%Y-%m-%d %H:%M:%S %z")
    with (
        open(path, "a", buffering=1) as fh,
        open(history_path(path), "a", buffering=1) as history,
    ):
        how = "forked by the preload server, " if in_child() else ""
        history.write(f"===== attempt started {started} on {socket.gethostname()} "
                      f"({how}pid {os.getpid()}) =====\n")  # fmt: skip
        tee = _Tee(fh, history)
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(tee), contextlib.redirect_stderr(tee):
            try:
                yield
            except BaseException:
                traceback.print_exc()
                raise
            print(timing_line(time.perf_counter() - t0, process_age()))


@contextlib.contextmanager
def device_job(path: str | os.PathLike[str] | None, runtime: Mapping[str, Any]) -> Iterator[None]:
    """:func:`job_log`, and a GPU slot for this job (:func:`kdaug.devices.claim_gpu`,
    ``runtime.gpu_slots`` jobs per GPU) taken before anything starts CUDA."""
    from kdaug.devices import claim_gpu

    with job_log(path):
        claim_gpu(int(runtime.get("gpu_slots", 1)), log=lambda s: print(s, file=sys.stderr))
        yield
