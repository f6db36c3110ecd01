"""Fetch an archive from its official URL (or a local mirror) and verify its checksum.

Downloads go to a temporary name beside the target and are renamed only after the
checksum matches, so a killed or corrupt download never looks like a finished one.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import time
import urllib.request
from pathlib import Path
from typing import BinaryIO

from kdaug.io import atomic_path

CHUNK = 1 << 20


class ChecksumError(RuntimeError):
    """The file's digest differs from the pinned one."""


def parse_checksum(checksum: str) -> tuple[str, str]:
    """``"md5:abc..."`` -> ``("md5", "abc...")``; only md5 and sha256 are accepted."""
    algo, _, digest = checksum.partition(":")
    if algo not in {"md5", "sha256"} or not digest:
        raise ValueError(f"checksum must look like 'md5:<hex>' or 'sha256:<hex>'; got {checksum!r}")
    return algo, digest.lower()


def file_digest(path: Path, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(path: Path, checksum: str, *, name: str) -> None:
    """Raise :class:`ChecksumError` naming the file if its digest is not ``checksum``."""
    algo, expected = parse_checksum(checksum)
    actual = file_digest(path, algo)
    if actual != expected:
        raise ChecksumError(
            f"{name}: {algo} is {actual}, expected {expected} "
            f"(truncated or corrupt download, or a different file)"
        )


def _copy_with_progress(src: BinaryIO, dst: BinaryIO, total: int | None, label: str) -> None:
    done, start, last = 0, time.monotonic(), 0.0
    for chunk in iter(lambda: src.read(CHUNK), b""):
        dst.write(chunk)
        done += len(chunk)
        now = time.monotonic()
        if now - last >= 1.0:
            last = now
            rate = done / max(now - start, 1e-9)
            eta = f", ETA {(total - done) / rate:.0f}s" if total and rate > 0 else ""
            size = f"/{total / 1e6:.1f}" if total else ""
            print(
                f"{label}: {done / 1e6:.1f}{size} MB at {rate / 1e6:.1f} MB/s{eta}",
                file=sys.stderr,
                flush=True,
            )


def fetch_archive(
    filename: str, url: str, checksum: str, dest: Path, mirror: Path | None = None
) -> Path:
    """Place ``filename`` at ``dest`` from ``mirror`` (if given) or ``url``, verified.

    With a mirror directory the file must exist there under its official name; a missing
    file is an error that names the file and the URL to fetch it from.
    """
    dest = Path(dest)
    with atomic_path(dest) as tmp:
        if mirror is not None:
            source = Path(mirror) / filename
            if not source.is_file():
                raise FileNotFoundError(
                    f"{filename} is not in the mirror directory {mirror}; "
                    f"download it from {url} and put it there"
                )
            shutil.copyfile(source, tmp)
        else:
            request = urllib.request.Request(url, headers={"User-Agent": "kdaug"})
            with urllib.request.urlopen(request) as response, open(tmp, "wb") as out:
                length = response.headers.get("Content-Length")
                _copy_with_progress(response, out, int(length) if length else None, filename)
        verify(tmp, checksum, name=filename)
    return dest
