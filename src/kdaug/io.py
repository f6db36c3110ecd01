"""Atomic file writes: a reader (or Snakemake) never sees half a file."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import secrets
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only on success.

    The temporary file lives in the same directory so that the final ``os.replace`` is an
    atomic rename on POSIX file systems; on any exception it is removed.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_temporary(target)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def _create_temporary(target: Path) -> Path:
    """Create an empty, unique file beside ``target`` with the mode a plain ``open()``
    gives (0666 less the umask, and a directory's default ACL applies).

    ``tempfile.mkstemp`` creates files 0600 whatever the umask, and the rename would carry
    that mode to the result, so collaborators sharing ``results/`` could not read it.
    """
    for _ in range(100):
        tmp = target.parent / f".{target.name}.{secrets.token_hex(6)}.tmp"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"no free temporary name beside {target}")


def write_atomic(path: str | os.PathLike[str], writer: Callable[[Path], Any]) -> None:
    """Call ``writer(tmp_path)`` and move the result to ``path`` atomically."""
    with atomic_path(path) as tmp:
        writer(tmp)


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON, atomically."""
    write_atomic(path, lambda p: p.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n"))


def read_json(path: str | os.PathLike[str]) -> Any:
    return json.loads(Path(path).read_text())


# The long metrics CSV: one row per cell x selection x split x metric. Metric jobs write
# it, the report layer reads it.
LONG_COLUMNS = (
    "experiment", "dataset", "seed", "role", "teacher_arch", "teacher_aug", "kd",
    "student_arch", "student_aug", "selection", "split", "metric", "value",
)  # fmt: skip


# The last line of a long CSV: a row count, so that a file cut short (a copy interrupted
# at a line boundary, a full disk) is an error rather than a table of missing cells.
# Outside kdaug, ``pandas.read_csv(path, comment="#")`` skips it.
LONG_FOOTER = "# end of long CSV: {rows} rows"
_FOOTER = re.compile(r"# end of long CSV: (\d+) rows")


class TruncatedFileError(ValueError):
    """A file ends before its writer finished it."""


def write_long_csv(path: str | os.PathLike[str], rows: Iterable[Mapping[str, Any]]) -> None:
    """Write the long CSV atomically, ending with :data:`LONG_FOOTER`."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, LONG_COLUMNS)
        writer.writeheader()
        count = 0
        for row in rows:
            writer.writerow({k: "" if row.get(k) is None else row[k] for k in LONG_COLUMNS})
            count += 1
        fh.write(LONG_FOOTER.format(rows=count) + "\r\n")  # the csv module's line ending


def read_long_csv(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    """The rows of a long CSV, as strings; a file without its footer, or with another
    number of rows than the footer counts, is a :class:`TruncatedFileError` naming it."""
    with open(path, newline="") as fh:
        body, _, last = fh.read().rstrip("\r\n").rpartition("\n")
    footer = _FOOTER.fullmatch(last)
    rows = list(csv.DictReader(io.StringIO(body + "\n", newline=""))) if footer else []
    if footer is None or len(rows) != int(footer[1]):
        found = f"{len(rows)} rows of {footer[1]}" if footer else "no end-of-file line"
        raise TruncatedFileError(
            f"{path}: truncated or incomplete long CSV ({found}); rebuild it: delete it, or "
            f"run snakemake {path} -R collect_metrics"
        )
    return rows
