"""What made an output: package versions, git commit, device, data digests (recorded in
every model file). The code hashes the rules pass as params are in :mod:`kdaug.codehash`."""

from __future__ import annotations

import contextlib
import hashlib
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import kdaug

PACKAGE_DIR = Path(kdaug.__file__).parent


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def git_commit() -> str | None:
    """HEAD of the checkout the package was installed from, with ``+dirty`` if modified."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=PACKAGE_DIR, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def environment(device: Any) -> dict[str, Any]:
    """Versions and machine facts recorded in every model file."""
    import numpy
    import torch

    info: dict[str, Any] = {
        "kdaug": kdaug.__version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "git_commit": git_commit(),
        "device": str(device),
    }
    if getattr(device, "type", None) == "cuda":
        info["device_name"] = torch.cuda.get_device_name(device)
    for package in ("torchvision", "snakemake"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            info[package] = metadata.version(package)
    return info
