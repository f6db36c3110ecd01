"""Fetch an archive from its official URL (or a local mirror) and verify its checksum.

Downloads go to a temporary name beside the target and are renamed only after the
checksum matches, so a killed or corrupt download never looks like a finished one.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import shutil
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import BinaryIO

from kdaug.io import atomic_path

CHUNK = 1 << 20
# Seconds a connection or one read may stall before the download fails (a stalled server
# otherwise hangs the job forever; a slow but moving download is not cut).
DOWNLOAD_TIMEOUT = 60.0


class ChecksumError(RuntimeError):
    """The file's digest differs from the pinned one."""


class DownloadError(RuntimeError):
    """The archive could not be fetched from its URL."""


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


def content_digest(path: Path, algo: str, name: str | None = None) -> str:
    """Digest of a gzip file's decompressed content (what recompression leaves unchanged).
    ``name`` is what an error calls the file (the archive, not the temporary it is
    verified in)."""
    h = hashlib.new(algo)
    try:
        with gzip.open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(CHUNK), b""):
                h.update(chunk)
    except (OSError, EOFError) as err:
        raise ChecksumError(f"{name or path}: not a complete gzip file ({err})") from err
    return h.hexdigest()


def verify(path: Path, checksum: str, *, name: str, content_checksum: str | None = None) -> str:
    """Check ``path`` against its pinned digest; return how it was verified.

    ``content_checksum`` (gzip files only) pins the *decompressed* bytes: repackagers such
    as Debian's ``dataset-fashion-mnist`` recompress the official ``.gz`` files, which
    changes the archive digest but not the data. The archive digest is tried first.
    Raises :class:`ChecksumError` naming the file and both expectations otherwise.
    """
    algo, expected = parse_checksum(checksum)
    actual = file_digest(path, algo)
    if actual == expected:
        return f"archive {algo}"
    hint = "truncated or corrupt download, or a different file"
    if content_checksum is not None:
        calgo, cexpected = parse_checksum(content_checksum)
        cactual = content_digest(path, calgo, name)
        if cactual == cexpected:
            return f"decompressed-content {calgo} (archive {algo} {actual} differs: recompressed)"
        raise ChecksumError(
            f"{name}: {algo} is {actual}, expected {expected}; decompressed {calgo} is "
            f"{cactual}, expected {cexpected} ({hint})"
        )
    raise ChecksumError(f"{name}: {algo} is {actual}, expected {expected} ({hint})")


def _progress_line(label: str, done: int, total: int | None, seconds: float) -> str:
    rate = done / max(seconds, 1e-9)
    eta = f", ETA {(total - done) / rate:.0f}s" if total and rate > 0 else ""
    size = f"/{total / 1e6:.1f}" if total else ""
    return f"{label}: {done / 1e6:.1f}{size} MB at {rate / 1e6:.1f} MB/s{eta}"


def _copy_with_progress(src: BinaryIO, dst: BinaryIO, total: int | None, label: str) -> None:
    """Copy in chunks, printing bytes, rate and ETA about once a second; a stream that
    ends before its announced length is a truncated download."""
    done, start, last = 0, time.monotonic(), 0.0
    for chunk in iter(lambda: src.read(CHUNK), b""):
        dst.write(chunk)
        done += len(chunk)
        now = time.monotonic()
        if now - last >= 1.0:
            last = now
            print(_progress_line(label, done, total, now - start), file=sys.stderr, flush=True)
    print(_progress_line(label, done, total, time.monotonic() - start), file=sys.stderr, flush=True)
    if total is not None and done != total:
        raise ChecksumError(f"{label}: truncated download, got {done} of {total} bytes")


def fetch_archive(
    key: str,
    url: str,
    checksum: str,
    dest: Path,
    mirror: Path | None = None,
    content_checksum: str | None = None,
    timeout: float = DOWNLOAD_TIMEOUT,
) -> str:
    """Place archive ``key`` at ``dest`` from ``mirror`` (if given) or ``url``, verified.

    ``key`` is ``<folder>/<official file name>`` (for example
    ``fashion-mnist/train-images-idx3-ubyte.gz``); a mirror directory holds the same
    layout, so ``/usr/share/datasets`` of Debian's dataset packages is a mirror as is. A
    file missing from the mirror is an error naming the file and the URL to fetch it from.
    Returns how the file was verified (see :func:`verify`). A connection or read that
    stalls for ``timeout`` seconds, or any network error, is a :class:`DownloadError`
    naming the URL and the mirror option.
    """
    dest = Path(dest)
    with atomic_path(dest) as tmp:
        if mirror is not None:
            source = Path(mirror) / key
            if not source.is_file():
                raise FileNotFoundError(
                    f"{key} is not in the mirror directory {mirror} (looked for {source}); "
                    f"download it from {url} and put it there"
                )
            print(f"{key}: copying from mirror {source}", file=sys.stderr, flush=True)
            shutil.copyfile(source, tmp)
        else:
            _download(key, url, tmp, timeout)
        how = verify(tmp, checksum, name=key, content_checksum=content_checksum)
        print(f"{key}: verified by {how}", file=sys.stderr, flush=True)
    return how


def _download(key: str, url: str, tmp: Path, timeout: float) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": "kdaug"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response, open(tmp, "wb") as out:
            length = response.headers.get("Content-Length")
            _copy_with_progress(response, out, int(length) if length else None, key)
    # URLError (no route, DNS, HTTP status), a stall past the timeout, a dropped connection.
    except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as err:
        reason = getattr(err, "reason", None) or str(err) or type(err).__name__
        raise DownloadError(
            f"{key}: downloading {url} failed: {reason} (timeout: {timeout:g} s per connect "
            f"or read). To do without the network, put the file at <dir>/{key} and set "
            "data.mirror: <dir> in the config"
        ) from err
