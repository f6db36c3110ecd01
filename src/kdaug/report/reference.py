"""A finished run published as a reference: its report files under one folder with the
provenance that made them, and the claims table the README shows.

    # after `make fashion` (copies tables, claims, figures, notes; writes provenance.json)
    python -m kdaug.report.reference publish results/experiments docs/reference/fashion-mnist \\
        --configfile config/fashion.yaml --command "make fashion" --wall-s 3600
    # the README's claims table (between <!-- fashion-claims --> markers) from that folder
    python -m kdaug.report.reference readme docs/reference/fashion-mnist README.md

``kdaug.report.compare`` compares a user's run with such a folder.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from kdaug.io import atomic_path
from kdaug.provenance import file_sha256, git_commit

# What a reference keeps of an experiment's folder (never models or raw outputs).
KEPT = {".csv", ".md", ".tex", ".png"}
MARKERS = ("<!-- fashion-claims -->", "<!-- /fashion-claims -->")
EXPECT_WORDS = {"greater": ">", "less": "<"}


def publish(
    run: Path,
    dest: Path,
    experiments: Sequence[str],
    *,
    configfiles: Sequence[Path],
    command: str,
    wall_s: float | None,
) -> list[Path]:
    """Copy the report files of ``experiments`` from ``run`` (``results/experiments``) to
    ``dest``, replacing what was there, and write ``dest/provenance.json``."""
    missing = [e for e in experiments if not (run / e).is_dir()]
    if missing:
        raise FileNotFoundError(f"{run}: no report folder for {', '.join(missing)}")
    commit = git_commit()  # before the copy below makes the checkout differ from it
    if dest.exists():
        shutil.rmtree(dest)
    copied = []
    for experiment in experiments:
        for file in sorted((run / experiment).rglob("*")):
            if file.is_file() and file.suffix in KEPT:
                target = dest / file.relative_to(run)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(file, target)
                copied.append(target)
    provenance = {
        "git_commit": commit,
        "command": command,
        "wall_s": wall_s,
        "experiments": list(experiments),
        "config_files": {str(p): file_sha256(p) for p in configfiles},
        "packages": package_versions(),
    }
    with atomic_path(dest / "provenance.json") as tmp:
        tmp.write_text(json.dumps(provenance, indent=2) + "\n")
    return copied


def package_versions() -> dict[str, str]:
    """Versions of what computed and rendered the numbers."""
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": sys.version.split()[0]}
    for name in ("kdaug", "torch", "torchvision", "numpy", "scipy", "pandas", "snakemake"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def claims_frame(reference: Path) -> pd.DataFrame:
    """Every verdict of every claims file under ``reference``, with its experiment."""
    frames = []
    for path in sorted(reference.glob("*/*/claims.csv")):
        frame = pd.read_csv(path)
        frame.insert(0, "experiment", path.parent.parent.name)
        frames.append(frame)
    if not frames:
        raise FileNotFoundError(f"{reference}: no <experiment>/<selection>/claims.csv")
    return pd.concat(frames, ignore_index=True)


def _number(x: Any, digits: int = 3) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}g}"


def _direction(row: Any) -> str:
    """ "a > b" for a paired claim; for a correlation claim, "r(...) > 0" (b is 0) or
    "r(...) > r(baseline)" (b is the baseline statistic's r over the same points)."""
    if getattr(row, "test", "") == "correlation":
        return f"{row.a_label} > {row.b_label}"
    return f"{row.a_label} {EXPECT_WORDS.get(row.expect, row.expect)} {row.b_label}"


def claims_markdown(frame: pd.DataFrame) -> str:
    """claim | paper's direction | ours (mean difference, 95% CI, p, n) | verdict."""
    lines = [
        "| experiment | claim | paper's direction | ours: a - b [95% CI], p, n | verdict |",
        "|---|---|---|---|---|",
    ]
    for row in frame.itertuples(index=False):
        direction = _direction(row)
        ours = (
            f"{_number(row.diff_mean)} [{_number(row.ci_low)}, {_number(row.ci_high)}], "
            f"p = {_number(row.p, 2)}, n = {row.n}"
        )
        cells = [row.experiment, f"{row.claim} (`{row.id}`)", direction, ours,
                 f"**{row.verdict}**"]  # fmt: skip
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    counts = frame["verdict"].value_counts()
    tally = ", ".join(f"{n} {verdict}" for verdict, n in counts.items())
    return "\n".join(lines) + f"\n\n{len(frame)} verdicts: {tally}.\n"


def replace_between_markers(text: str, body: str) -> str:
    start, end = MARKERS
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        raise ValueError(f"no {start} ... {end} markers")
    return pattern.sub(lambda _: f"{start}\n{body}{end}", text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="verb", required=True)
    pub = sub.add_parser("publish", help="copy a run's report files and write provenance")
    pub.add_argument("run", type=Path)
    pub.add_argument("dest", type=Path)
    pub.add_argument("--configfile", type=Path, nargs="+", required=True)
    pub.add_argument("--experiments", nargs="+", help="default: the config's `run`")
    pub.add_argument("--command", required=True)
    pub.add_argument("--wall-s", type=float)
    readme = sub.add_parser("readme", help="write the claims table into the README")
    readme.add_argument("reference", type=Path)
    readme.add_argument("readme", type=Path)
    args = parser.parse_args(argv)
    if args.verb == "publish":
        import yaml

        experiments = args.experiments
        if experiments is None:
            for path in args.configfile:
                experiments = yaml.safe_load(path.read_text()).get("run", experiments)
        copied = publish(args.run, args.dest, experiments, configfiles=args.configfile,
                         command=args.command, wall_s=args.wall_s)  # fmt: skip
        print(f"{len(copied)} files under {args.dest}")
        return 0
    body = claims_markdown(claims_frame(args.reference))
    args.readme.write_text(replace_between_markers(args.readme.read_text(), body))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
