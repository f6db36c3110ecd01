"""Which GPU a job runs on when several jobs share one machine.

Snakemake's ``--resources gpu=K`` only counts: it limits how many GPU jobs run at once but
assigns no device, so every job would see all GPUs and use the first. Each training or
evaluation script therefore calls :func:`claim_gpu` before CUDA starts: the job takes a
free *slot* (an exclusive ``flock`` on a file per GPU and slot, released by the kernel when
the process ends, even on SIGKILL) and narrows ``CUDA_VISIBLE_DEVICES`` to that GPU.

- ``runtime.gpu_slots`` jobs may share one GPU (small models leave a GPU idle; run
  ``--resources gpu=<GPUs x slots>``). Slots are filled across GPUs first.
- Inside a SLURM job the allocation is already in ``CUDA_VISIBLE_DEVICES``: it is used as
  is, never narrowed.
- With one GPU or none there is nothing to choose; the job is left as it is.
"""

from __future__ import annotations

import fcntl
import glob
import os
import tempfile
import time
from collections.abc import Callable, MutableMapping
from pathlib import Path

_HELD: list[int] = []  # descriptors of the slot locks this process holds (until it exits)


def visible_gpus(env: MutableMapping[str, str]) -> list[str] | None:
    """The GPU ids ``CUDA_VISIBLE_DEVICES`` lists (``None`` when it is unset)."""
    value = env.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return None
    return [g.strip() for g in value.split(",") if g.strip() and g.strip() != "-1"]


def count_gpus() -> int:
    """NVIDIA devices on this machine, without starting CUDA (``/dev/nvidiaN`` nodes)."""
    return len(glob.glob("/dev/nvidia[0-9]*"))


def default_lock_dir() -> Path:
    """One lock folder per user and machine, shared by every Snakemake run on it."""
    return Path(tempfile.gettempdir()) / f"kdaug-gpu-slots-{os.getuid()}"


def _try_lock(path: Path) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def claim_gpu(
    slots_per_gpu: int = 1,
    *,
    lock_dir: str | os.PathLike[str] | None = None,
    num_gpus: int | None = None,
    env: MutableMapping[str, str] | None = None,
    poll_seconds: float = 2.0,
    log: Callable[[str], None] = lambda s: None,
) -> str | None:
    """Pin this process to one GPU slot and return the GPU id (``None``: CPU or nothing to
    choose). Blocks, polling, while every slot is taken (more jobs than ``gpu=`` allows)."""
    env = os.environ if env is None else env
    if slots_per_gpu < 1:
        raise ValueError(f"gpu slots per GPU must be >= 1; got {slots_per_gpu}")
    visible = visible_gpus(env)
    if "SLURM_JOB_ID" in env and visible:
        log(f"SLURM job: using the allocated CUDA_VISIBLE_DEVICES={','.join(visible)}")
        return visible[0]
    if visible is None:
        visible = [str(i) for i in range(count_gpus() if num_gpus is None else num_gpus)]
    gpus = visible
    if len(gpus) <= 1:
        return gpus[0] if gpus else None
    folder = Path(lock_dir) if lock_dir is not None else default_lock_dir()
    folder.mkdir(parents=True, exist_ok=True)
    waited = False
    while True:
        for slot in range(slots_per_gpu):  # spread over GPUs before doubling up
            for gpu in gpus:
                fd = _try_lock(folder / f"gpu{gpu}-slot{slot}.lock")
                if fd is not None:
                    _HELD.append(fd)
                    env["CUDA_VISIBLE_DEVICES"] = gpu
                    log(f"GPU {gpu} (slot {slot} of {slots_per_gpu}) of {','.join(gpus)}")
                    return gpu
        if not waited:
            log(f"all {len(gpus)} x {slots_per_gpu} GPU slots are taken; waiting")
            waited = True
        time.sleep(poll_seconds)
