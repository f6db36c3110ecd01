"""Did my run reproduce the reference? Compare a finished run's tables with a committed
reference run of the same config, cell by cell.

Every table CSV (:mod:`kdaug.report.tables`: ``<column>_mean``, ``_std``, ``_n``,
``_ci_low``, ``_ci_high`` per value column) that the reference holds is read from both
places and matched on its key columns. Per cell: our mean, the reference's mean, the
difference, and whether our mean lies inside the reference's 95% interval over seeds
(``inside``; no interval with fewer than 2 seeds). Claims files are compared by verdict.

    python -m kdaug.report.compare docs/reference/fashion-mnist results/experiments
    python -m kdaug.report.compare REF RUN --csv comparison.csv   # also write every cell

Exit status 0 when every table and claims file of the reference was found in the run
(whatever the differences: a comparison is a report, not a test), 1 when some are missing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from kdaug.report.tables import SUMMARY_FIELDS

CLAIM_KEYS = ("id", "a_label", "b_label")


def value_columns(frame: pd.DataFrame) -> list[str]:
    """The value columns of a table CSV: those with a ``_mean`` field."""
    return [c.removesuffix("_mean") for c in frame.columns if c.endswith("_mean")]


def key_columns(frame: pd.DataFrame) -> list[str]:
    fields = {f"{v}_{f}" for v in value_columns(frame) for f in SUMMARY_FIELDS}
    return [c for c in frame.columns if c not in fields]


def _row_label(keys: pd.Series) -> str:
    return " / ".join("" if pd.isna(v) else str(v) for v in keys)


def compare_table(reference: pd.DataFrame, run: pd.DataFrame) -> pd.DataFrame:
    """One row per (table row, value column) of the reference: means, difference, and
    whether the run's mean is inside the reference's interval (NA without one)."""
    keys = key_columns(reference)
    merged = reference.merge(run, on=keys, how="left", suffixes=("_ref", "_run"))
    rows = []
    for column in value_columns(reference):
        low, high = merged[f"{column}_ci_low_ref"], merged[f"{column}_ci_high_ref"]
        ours, ref = merged.get(f"{column}_mean_run"), merged[f"{column}_mean_ref"]
        if ours is None:  # the run's table has no such column
            ours = pd.Series(float("nan"), index=merged.index)
        has_interval = low.notna() & high.notna() & ours.notna()
        inside = ((ours >= low) & (ours <= high)).where(has_interval, pd.NA)
        part = merged[keys].copy()
        part["column"] = column
        part["reference"] = ref
        part["run"] = ours
        part["difference"] = ours - ref
        part["ref_ci_low"], part["ref_ci_high"] = low, high
        part["inside"] = inside
        rows.append(part)
    out = pd.concat(rows, ignore_index=True)
    # an empty key cell (a teacher row's student columns) reads NaN whatever the dtype
    label = out[keys].apply(_row_label, axis=1)
    out = out.drop(columns=keys)
    out.insert(0, "row", label)  # a table whose key column is itself named "row" too
    return out


def compare_claims(reference: pd.DataFrame, run: pd.DataFrame) -> pd.DataFrame:
    """Verdicts side by side, per claim (and model where a claim has several rows)."""
    keys = [k for k in CLAIM_KEYS if k in reference.columns and k in run.columns]
    merged = reference.merge(run, on=keys, how="left", suffixes=("_ref", "_run"))
    out = merged[keys].copy()
    out["reference"] = merged["verdict_ref"]
    out["run"] = merged["verdict_run"]
    out["same"] = merged["verdict_ref"] == merged["verdict_run"]
    return out


def compare_runs(reference: Path, run: Path) -> tuple[pd.DataFrame, list[str]]:
    """Every table and claims CSV under ``reference`` against the same path under ``run``:
    one frame of cells (with ``file``) and the files the run lacks."""
    frames, missing = [], []
    for ref_file in sorted(reference.rglob("*.csv")):
        relative = ref_file.relative_to(reference)
        run_file = run / relative
        is_claims = ref_file.name == "claims.csv"
        with open(ref_file) as fh:
            header = fh.readline()
        if not is_claims and "_mean" not in header:
            continue  # not a table (training curves, collected metrics)
        if not run_file.is_file():
            missing.append(str(relative))
            continue
        ref_frame, run_frame = pd.read_csv(ref_file), pd.read_csv(run_file)
        part = (compare_claims if is_claims else compare_table)(ref_frame, run_frame)
        part.insert(0, "file", str(relative))
        frames.append(part)
    return (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()), missing


def summary(cells: pd.DataFrame) -> str:
    """Lines a person reads first: per file, cells inside the interval / with one, and
    claims with the same verdict."""
    lines = []
    for file, part in cells.groupby("file", sort=True):
        if "inside" in part and part["inside"].notna().any():
            judged = part["inside"].dropna()
            lines.append(
                f"{file}: {int(judged.sum())}/{len(judged)} cells inside the reference's "
                f"95% interval; largest |difference| {part['difference'].abs().max():.4g}"
            )
        elif "same" in part and part["same"].notna().any():
            same = part["same"].dropna()
            lines.append(f"{file}: {int(same.sum())}/{len(same)} claims with the same verdict")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("reference", type=Path, help="e.g. docs/reference/fashion-mnist")
    parser.add_argument("run", type=Path, help="e.g. results/experiments")
    parser.add_argument("--csv", type=Path, help="write every compared cell here")
    args = parser.parse_args(argv)
    for folder in (args.reference, args.run):
        if not folder.is_dir():
            parser.error(f"{folder}: no such folder")
    cells, missing = compare_runs(args.reference, args.run)
    if cells.empty and not missing:
        parser.error(f"{args.reference}: no table or claims CSV under it")
    print(summary(cells))
    for name in missing:
        print(f"missing in {args.run}: {name}", file=sys.stderr)
    if args.csv is not None:
        cells.to_csv(args.csv, index=False)
    return 1 if missing else 0


if __name__ == "__main__":
    raise SystemExit(main())
