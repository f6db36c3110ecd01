"""How much of a finished Snakemake run went to job start-up rather than work.

Reads the run's Snakemake log (``.snakemake/log/<latest>.snakemake.log``: when each job
started and finished) and each job's own log (its last line, written by
``kdaug.joblog.job_log``: seconds inside the job's work and the process's age). A job's
start-up is its wall time minus its in-job time: Python, imports, Snakemake's script
preamble and scheduling. Prints one table per rule and the totals; a figure, not a test.

    python bench/startup_share.py [WORKDIR] [--log SNAKEMAKE_LOG]
"""

from __future__ import annotations

import argparse
import re
import sys
from datetime import datetime
from pathlib import Path

import pandas as pd

STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")
RULE = re.compile(r"^(?:local)?rule (\w+):$")
JOBID = re.compile(r"^\s+jobid: (\d+)$")
LOG = re.compile(r"^\s+log: (.+)$")
FINISHED = re.compile(r"^Finished jobid: (\d+)")
EPOCH = re.compile(r"^epoch \d+/\d+ .*\bseconds=([\d.]+)", re.MULTILINE)
TIMING = re.compile(r"===== job time: ([\d.]+) s in the job(?: of ([\d.]+) s since)?")


def parse_run(log_text: str) -> pd.DataFrame:
    """One row per job of a Snakemake log: rule, jobid, log file, start, finish."""
    jobs: dict[int, dict] = {}
    stamp = None
    current: dict | None = None
    for line in log_text.splitlines():
        if m := STAMP.match(line):
            stamp = datetime.strptime(m.group(1), "%a %b %d %H:%M:%S %Y")
        elif m := RULE.match(line):
            current = {"rule": m.group(1), "start": stamp, "log": None}
        elif current is not None and (m := JOBID.match(line)):
            jobs[int(m.group(1))] = current
        elif current is not None and (m := LOG.match(line)):
            current["log"] = m.group(1).split(",")[0].strip()
        elif (m := FINISHED.match(line)) and int(m.group(1)) in jobs:
            jobs[int(m.group(1))]["finish"] = stamp
    frame = pd.DataFrame.from_dict(jobs, orient="index")
    return frame.dropna(subset=["start", "finish"]).rename_axis("jobid").reset_index()


def job_timing(log_file: Path) -> tuple[float, float] | None:
    """(in-job seconds, process age) from a job log's timing line, or None."""
    if not log_file.is_file():
        return None
    matches = TIMING.findall(log_file.read_text(errors="replace"))
    if not matches:
        return None
    in_job, age = matches[-1]
    return float(in_job), float(age) if age else float("nan")


def epoch_seconds(log_file: Path) -> float:
    """Seconds of the training epochs a job log reports (0 for a job that trains none)."""
    if not log_file.is_file():
        return 0.0
    return sum(float(s) for s in EPOCH.findall(log_file.read_text(errors="replace")))


def startup_table(workdir: Path, log_text: str) -> pd.DataFrame:
    jobs = parse_run(log_text)
    jobs["wall_s"] = (jobs["finish"] - jobs["start"]).dt.total_seconds()
    timings = [job_timing(workdir / str(p)) if p else None for p in jobs["log"]]
    jobs["in_job_s"] = [t[0] if t else float("nan") for t in timings]
    jobs["process_s"] = [t[1] if t else float("nan") for t in timings]
    jobs["epochs_s"] = [epoch_seconds(workdir / str(p)) if p else 0.0 for p in jobs["log"]]
    return jobs.dropna(subset=["in_job_s"])


def run_elapsed_s(jobs: pd.DataFrame) -> float:
    """First job's start to last job's finish, in seconds (Snakemake's 1 s stamps)."""
    return (jobs["finish"].max() - jobs["start"].min()).total_seconds()


def summarise(jobs: pd.DataFrame) -> pd.DataFrame:
    per_rule = jobs.groupby("rule").agg(
        jobs=("jobid", "size"),
        wall_s=("wall_s", "sum"),
        in_job_s=("in_job_s", "sum"),
        process_s=("process_s", "sum"),
        epochs_s=("epochs_s", "sum"),
    )
    per_rule.loc["all"] = per_rule.sum()
    per_rule["startup_s"] = per_rule["wall_s"] - per_rule["in_job_s"]
    per_rule["startup_share"] = per_rule["startup_s"] / per_rule["wall_s"]
    per_rule["startup_per_job_s"] = per_rule["startup_s"] / per_rule["jobs"]
    return per_rule.sort_values("wall_s", ascending=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workdir", nargs="?", default=".", type=Path)
    parser.add_argument("--log", type=Path, help="a Snakemake log (default: the latest)")
    parser.add_argument("--cores", type=int, default=2, help="the run's --cores (default 2)")
    args = parser.parse_args(argv)
    log = args.log
    if log is None:
        logs = sorted((args.workdir / ".snakemake/log").glob("*.snakemake.log"))
        if not logs:
            sys.exit(f"no Snakemake log under {args.workdir / '.snakemake/log'}")
        log = logs[-1]
    jobs = startup_table(args.workdir, log.read_text())
    if jobs.empty:
        sys.exit(f"{log}: no job with a timing line in its log (run from this code)")
    print(f"# start-up share of {log} (job wall time from Snakemake's 1 s stamps)")
    table = summarise(jobs)
    print(table.round(2).to_markdown())
    elapsed, epochs = run_elapsed_s(jobs), table.loc["all", "epochs_s"]
    print(
        f"\ntraining epochs: {epochs:.1f} s = {epochs / table.loc['all', 'wall_s']:.0%} of "
        f"{table.loc['all', 'wall_s']:.0f} job-seconds, {epochs / (args.cores * elapsed):.0%} "
        f"of {args.cores} cores x {elapsed:.0f} s (first job's start to last job's finish)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
