"""bench/startup_share.py: job start-up = Snakemake's job wall time - the job log's
in-job time, summed per rule; on a hand-made run whose numbers are worked out below."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest

from kdaug.joblog import job_log, process_age

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("startup_share", ROOT / "bench/startup_share.py")
startup_share = importlib.util.module_from_spec(spec)
spec.loader.exec_module(startup_share)

SNAKEMAKE_LOG = """\
Building DAG of jobs...
[Wed Dec  2 16:32:24 2026]
rule evaluate_split:
    input: a.pt
    output: a.npz
    log: logs/a.log
    jobid: 3
    wildcards: x=1

[Wed Dec  2 16:32:24 2026]
localrule render_table:
    output: t.md
    log: logs/t.log
    jobid: 7

[Wed Dec  2 16:32:26 2026]
Finished jobid: 7 (Rule: render_table)
1 of 3 steps (33%) done
[Wed Dec  2 16:32:34 2026]
Finished jobid: 3 (Rule: evaluate_split)
[Wed Dec  2 16:32:35 2026]
rule evaluate_split:
    log: logs/b.log
    jobid: 4

[Wed Dec  2 16:32:41 2026]
Finished jobid: 4 (Rule: evaluate_split)
"""


def test_startup_share_per_rule_from_hand_made_logs(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    # wall times from the stamps: job 3 10 s, job 7 2 s, job 4 6 s
    for name, in_job in [("a", 7.5), ("t", 0.5), ("b", 5.0)]:
        (tmp_path / "logs" / f"{name}.log").write_text(
            f"work\n===== job time: {in_job:.2f} s in the job of {in_job + 1:.2f} s since "
            "the process started =====\n"
        )
    table = startup_share.summarise(startup_share.startup_table(tmp_path, SNAKEMAKE_LOG))
    assert table.loc["evaluate_split", "jobs"] == 2
    assert table.loc["evaluate_split", "wall_s"] == 16
    assert table.loc["evaluate_split", "startup_s"] == pytest.approx(16 - 12.5)
    assert table.loc["render_table", "startup_share"] == pytest.approx(1.5 / 2)
    assert table.loc["all", "startup_s"] == pytest.approx(18 - 13.0)
    assert table.loc["all", "process_s"] == pytest.approx(13.0 + 3)


def test_a_job_log_ends_with_its_timing_line(tmp_path: Path) -> None:
    log = tmp_path / "job.log"
    with job_log(log):
        time.sleep(0.05)
    in_job, age = startup_share.job_timing(log)
    assert 0.05 <= in_job < 5
    assert age >= in_job  # the process is older than the job it ran
    assert process_age() >= age - 0.02  # /proc counts in clock ticks (10 ms)


def test_epoch_seconds_come_from_the_job_log_not_its_history(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    epochs = (
        "device cpu: precision fp32\n"
        "epoch 1/2 lr=0.05 train_loss=1.7 val_accuracy=0.64 seconds=2.5 eta=2s\n"
        "epoch 2/2 lr=0.005 train_loss=0.7 val_accuracy=0.78 seconds=1.25 eta=0s\n"
    )
    timing = "===== job time: 4.00 s in the job of 4.50 s since the process started =====\n"
    (tmp_path / "logs/a.log").write_text(epochs + timing)
    # the history twin repeats every attempt's lines; counting it would double the epochs
    (tmp_path / "logs/a.log.history").write_text(epochs + timing)
    for name in ("t", "b"):
        (tmp_path / "logs" / f"{name}.log").write_text("work seconds=9\n" + timing)
    jobs = startup_share.startup_table(tmp_path, SNAKEMAKE_LOG)
    table = startup_share.summarise(jobs)
    assert table.loc["evaluate_split", "epochs_s"] == pytest.approx(3.75)
    assert table.loc["render_table", "epochs_s"] == 0
    assert table.loc["all", "epochs_s"] == pytest.approx(3.75)
    assert startup_share.run_elapsed_s(jobs) == 17  # 16:32:24 to 16:32:41
