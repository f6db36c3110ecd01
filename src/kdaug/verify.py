"""Check that a finished run rendered every report file, and that each is well formed.

``python -m kdaug.verify --configfile config/demo.yaml`` (the same config files as the
run, in order) lists every table, figure, curve and claims file of the run's experiments
and exits 1 naming each one that is missing, empty or malformed: a claims file with an
unknown verdict, a table with no rows or a NaN cell, a PNG that is not one, a Markdown
table with no rows. CI runs it after the demo; the end-to-end test runs it on its slice.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from kdaug.report.claims import is_verdict

VERDICTS = ("holds", "reversed", "not significant", "untested (n=k)", "not in this experiment")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(line for line in fh if not line.startswith("#")))


def file_problem(path: Path) -> str | None:
    """What is wrong with one rendered report file, or None."""
    if not path.exists():
        return "missing"
    if path.stat().st_size == 0:
        return "empty"
    if path.name == "claims.csv":
        verdicts = {r["verdict"] for r in _csv_rows(path)}
        if not verdicts or not all(is_verdict(v) for v in verdicts):
            return f"verdicts {sorted(verdicts)} (expected some of {', '.join(VERDICTS)})"
    elif path.suffix == ".csv" and path.name.startswith("table"):
        rows = _csv_rows(path)
        # table cells (`*_mean`), or Pearson's r of Wang's correlation table
        values = [v for r in rows for k, v in r.items() if k.endswith("_mean") or k == "pearson_r"]
        if not values:
            return "no table cells"
        if any(float(v) != float(v) for v in values):
            return "a NaN cell"
    elif path.suffix == ".png" and path.read_bytes()[:8] != PNG_MAGIC:
        return "not a PNG"
    elif path.suffix == ".md" and path.read_text().count("\n|") < 3:
        return "no Markdown table rows"
    elif path.suffix == ".tex" and "\\bottomrule" not in path.read_text():
        return "not a booktabs tabular"
    return None


def run_problems(config: Mapping[str, Any], root: Path = Path()) -> list[str]:
    """Every problem of the report files of ``config["run"]``'s experiments under ``root``."""
    from kdaug import plan

    problems = []
    for experiment in config["run"]:
        base = root / plan.EXPERIMENT.format(experiment=experiment)
        files = plan.experiment_report_files(config, experiment)
        if not files:
            problems.append(f"{experiment}: renders nothing")
        for name in files:
            problem = file_problem(base / name)
            if problem:
                problems.append(f"{base / name}: {problem}")
    return problems


def main(argv: Iterable[str] | None = None) -> int:
    from kdaug import plan

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", nargs="+", default=[], help="as given to snakemake")
    parser.add_argument("--root", default=".", help="the run's working directory")
    args = parser.parse_args(list(argv) if argv is not None else None)
    config = plan.load_layered_config(["config/config.yaml", *args.configfile])
    plan.apply_narrowing(config)
    problems = run_problems(config, Path(args.root))
    for problem in problems:
        print(problem, file=sys.stderr)
    n = sum(len(plan.experiment_report_files(config, e)) for e in config["run"])
    print(f"{n - len(problems)} of {n} report files present and well formed")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
