"""The SLURM profile end to end: demo experiments submitted through the real
snakemake-executor-plugin-slurm to a real single-node SLURM cluster
(``../shared/tools/local-slurm.sh`` stands one up; CI runs it before the tests)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from kdaug import plan
from test_workflow import ROOT, SNAKEMAKE, check_report_file, load_config, workdir

pytestmark = pytest.mark.workflow

# One demo experiment that uses every cluster rule but teacher_stats: prepare_split (3),
# train_teacher (1), distill_student (3), evaluate_model (4), attack_model (4); the quick
# rules run locally (localrules). Every SLURM job is a fresh Python + Snakemake start on a
# 2-core node, so each job costs ~20-40 s beyond its work: 15 jobs took 4 min here and two
# experiments (33 jobs) ran past 25 min on CI's machine. The whole demo is CI's `make demo`.
EXPERIMENTS = ["choi2023_digits_robustness"]
CLUSTER_JOBS = 3 + 1 + 3 + 4 + 4


@pytest.fixture(scope="module")
def cluster() -> None:
    if shutil.which("sbatch") is None or subprocess.run(["sinfo"], capture_output=True).returncode:
        if os.environ.get("CI"):
            pytest.fail(
                "CI must run this test: no SLURM cluster (run ../shared/tools/local-slurm.sh)"
            )
        pytest.skip("no SLURM cluster here (../shared/tools/local-slurm.sh stands one up)")


def test_demo_experiments_run_through_slurm(cluster, tmp_path) -> None:
    wd = workdir(tmp_path)
    shutil.copy(ROOT / "tests/configs/slurm_ci.yaml", wd / "config/slurm_ci.yaml")
    run = f"run=[{','.join(EXPERIMENTS)}]"
    # `timeout -k`: a plugin stuck polling ignores a plain SIGTERM (local-slurm.sh header)
    proc = subprocess.run(
        ["timeout", "-k", "30", "1500", SNAKEMAKE, "--workflow-profile", "profiles/slurm",
         "--configfile", "config/demo.yaml", "config/fast.yaml", "config/slurm_ci.yaml",
         "--config", run, "--slurm-status-command", "squeue",
         "--slurm-init-seconds-before-status-checks", "5"],
        cwd=wd, capture_output=True, text=True,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    # every training/evaluation job went through sbatch and got a SLURM job id
    submitted = re.findall(r"Job \d+ has been submitted with SLURM jobid (\d+)", out)
    rules = re.findall(r"slurm_logs/rule_(\w+?)/", out)
    assert len(submitted) >= CLUSTER_JOBS, out[-3000:]
    assert {"prepare_split", "train_teacher", "distill_student", "evaluate_model",
            "attack_model"} <= set(rules)  # fmt: skip
    assert "sbatch call: sbatch" in out or submitted
    config = load_config("config/config.yaml", "config/demo.yaml", "tests/configs/fast.yaml")
    for experiment in EXPERIMENTS:
        base = wd / "results/experiments" / experiment
        for name in plan.experiment_report_files(config, experiment):
            check_report_file(base / name)
